"""The CUDA backend's caching pool: the pool itself with a stand-in driver, and, under the simulator (which has no
device memory of its own to pool), training steps whose every device allocation comes from it: once the pool holds a
step's blocks every allocation is a reuse, and the results are those of plain allocation."""
import weakref

import numpy as np
import pytest

from numconv import backend, layers, optim, train
from numconv.kernels.cuda.memory import BlockPool

cuda = pytest.importorskip("numba.cuda")


class _Driver:
    """Hands out numbered handles and remembers which it freed."""

    def __init__(self):
        self.allocated, self.freed = [], []

    def allocate(self, size):
        self.allocated.append(size)
        return len(self.allocated)

    def free(self, handle):
        self.freed.append(handle)


def test_a_freed_block_is_handed_out_again_for_the_same_rounded_size():
    driver = _Driver()
    pool = BlockPool(driver.allocate, driver.free)
    first = pool.take(1000)
    assert first[:2] == (1, 1024) and driver.allocated == [1024]
    pool.give_back(first)
    again = pool.take(700)  # rounds to the same 1024 bytes
    assert again[0] == 1 and driver.allocated == [1024]
    other = pool.take(2000)
    assert other[:2] == (2, 2048) and driver.allocated == [1024, 2048]
    assert pool.statistics() == {"driver_allocations": 2, "reuses": 1, "bytes_in_use": 3072, "bytes_cached": 0,
                                 "peak_bytes_in_use": 3072}
    pool.give_back(again)
    pool.give_back(other)
    assert pool.release_cached() == 3072 and sorted(driver.freed) == [1, 2]
    assert pool.take(1)[:2] == (3, 512)  # nothing cached any more


def test_blocks_from_before_a_reset_are_not_kept():
    driver = _Driver()
    pool = BlockPool(driver.allocate, driver.free)
    block = pool.take(512)
    pool.reset()
    pool.give_back(block)  # its memory went with the old context
    assert pool.statistics()["bytes_cached"] == 0 and pool.take(512)[0] == 2


class _SimulatedMemory:
    """A pool block seen as an array: every view of it keeps this object alive, so its finalizer runs when the last
    view is gone, as numba's finalizer does when the last array holding a ``MemoryPointer`` is gone."""

    def __init__(self, buffer, shape, dtype):
        self.buffer = buffer
        self.__array_interface__ = {"shape": tuple(shape), "typestr": dtype.str, "version": 3,
                                    "data": (buffer.ctypes.data, False)}


class _SimulatedPool:
    """The simulator's device allocations served from a :class:`BlockPool` whose blocks are host buffers: a new
    block is full of 0xFF bytes (NaN as floats), a reused one holds what its last user left, as device memory does."""

    def __init__(self):
        self.pool = BlockPool(lambda size: np.full(size, 0xFF, dtype=np.uint8), lambda handle: None)

    def device_array(self, shape, dtype=np.float64, stream=0):
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

        shape, dtype = (shape,) if np.ndim(shape) == 0 else tuple(shape), np.dtype(dtype)
        block = self.pool.take(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
        memory = _SimulatedMemory(block[0], shape, dtype)
        weakref.finalize(memory, self.pool.give_back, block)
        return FakeCUDAArray(np.asarray(memory), stream=stream)

    def to_device(self, host, stream=0):
        host = np.asarray(host)
        target = self.device_array(host.shape, host.dtype, stream)
        target._ary[...] = host
        return target


def _lenet_like(seed):
    """LeNet-5's kinds of layer in LeNet-5's order, small enough for the simulator: input (N, 1, 8, 8)."""
    rng = np.random.default_rng(seed)
    return layers.Sequential(
        layers.Conv2d(1, 2, 3, padding=1, rng=rng), layers.ReLU(), layers.MaxPool2d(2),
        layers.Conv2d(2, 3, 3, rng=rng), layers.ReLU(), layers.MaxPool2d(2),
        layers.Flatten(),
        layers.Linear(3, 5, rng=rng), layers.ReLU(),
        layers.Linear(5, 4, rng=rng), layers.ReLU(),
        layers.Linear(4, 3, rng=rng),
    )


def _train_steps(steps, pool=None):
    """``steps`` SGD steps of the LeNet-like network on the device; the losses, the final weights and, with a pool,
    each step's (new blocks, reused blocks)."""
    model = _lenet_like(0).to("cuda")
    optimizer = optim.SGD(model, lr=0.05, momentum=0.9, weight_decay=1e-3)
    rng = np.random.default_rng(1)
    inputs = rng.standard_normal((3, 1, 8, 8)).astype(np.float32)
    targets = rng.integers(0, 3, 3)
    losses, blocks = [], []
    for _ in range(steps):
        before = pool.pool.statistics() if pool else None
        losses.append(train.step(model, optimizer, backend.to_device(inputs), backend.to_device(targets), 3))
        if pool:
            after = pool.pool.statistics()
            blocks.append((after["driver_allocations"] - before["driver_allocations"],
                           after["reuses"] - before["reuses"]))
    return losses, model.state_dict(), blocks


@pytest.mark.skipif(not cuda.is_available(), reason="needs the CUDA simulator or a GPU")
def test_training_steps_from_the_pool_reuse_every_block_after_the_first_and_compute_the_same(monkeypatch):
    if not backend.kernels("cuda").support.simulated():
        pytest.skip("serves the simulator's allocations from a pool; on a GPU scripts/gpu_check.py counts the real one")
    plain_losses, plain_state, _ = _train_steps(3)
    pool = _SimulatedPool()
    monkeypatch.setattr(cuda, "device_array", pool.device_array)
    monkeypatch.setattr(cuda, "to_device", pool.to_device)
    losses, state, blocks = _train_steps(3, pool)
    assert losses == plain_losses and losses[2] < losses[0]
    for name, value in plain_state.items():
        np.testing.assert_array_equal(state[name], value, err_msg=name)
    allocations = [new + reused for new, reused in blocks]
    # every op's output, the batch, the gradients and the reductions' scratch: tens of blocks a step, the same each
    # step; the first step fills the pool, the second adds the momentum buffers the first step left alive
    assert allocations[0] == allocations[1] == allocations[2] > 20
    assert blocks[0][0] > 10 and blocks[2][0] == 0
