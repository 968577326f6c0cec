"""Large host arrays in reused memory (numconv.kernels.memory): a block serves a new array only once every array and
view of the old one is gone, the cached blocks stay within their limit, and results never see a block's old
contents."""
import gc
import subprocess
import sys
import threading

import numpy as np
import pytest

import numconv.functional as F
from numconv import backend
from numconv.kernels import memory
from numconv.kernels.cpu import launch

LARGE = (memory.HOST_MIN_BYTES // 4 + 1000,)  # float32 elements: just past the size that is pooled


@pytest.fixture(autouse=True)
def empty_pool():
    memory.release_host_cache()
    yield
    memory.release_host_cache()


def _cached() -> int:
    return memory.host_statistics()["bytes_cached"]


def test_a_block_is_reused_only_after_the_array_and_its_views_are_gone():
    first = backend.empty(LARGE, np.float32)
    address = first.ctypes.data
    view = first[10:].reshape(-1)
    view[:] = 7.0
    del first
    gc.collect()
    second = backend.empty(LARGE, np.float32)
    assert not np.shares_memory(second, view)
    second[:] = -1.0
    assert np.all(view == 7.0)
    del view
    gc.collect()
    assert _cached() >= LARGE[0] * 4
    third = backend.empty(LARGE, np.float32)
    assert third.ctypes.data == address
    assert _cached() == 0
    assert third.flags.c_contiguous and third.flags.writeable and third.ctypes.data % memory.HOST_ALIGNMENT == 0


def test_small_arrays_and_other_sizes_get_their_own_memory(monkeypatch):
    small = backend.empty((100,), np.float32)
    assert small.base is None
    monkeypatch.setattr(memory, "HOST_POOL", False)  # NUMCONV_HOST_POOL=0
    assert backend.empty(LARGE, np.float32).base is None
    monkeypatch.setattr(memory, "HOST_POOL", True)
    big = backend.empty(LARGE, np.float32)
    address = big.ctypes.data
    del big
    other = backend.empty((LARGE[0] * 2,), np.float32)  # another size: a block of its own
    assert other.ctypes.data != address
    assert backend.empty(LARGE, np.int32).ctypes.data == address  # the same bytes in another dtype


def test_cached_blocks_stay_within_their_limit(monkeypatch):
    size = memory.HOST_MIN_BYTES
    monkeypatch.setattr(memory._host_pool, "cache_limit", 3 * size)
    arrays = [backend.empty((size // 4,), np.float32) for _ in range(4)]
    addresses = [a.ctypes.data for a in arrays]
    for k in range(4):
        arrays[k] = None
    assert _cached() == 3 * size
    again = [backend.empty((size // 4,), np.float32) for _ in range(4)]
    # the three blocks kept serve again; the fourth was let go, and a new block takes its place
    assert len({a.ctypes.data for a in again} & set(addresses[:3])) == 3
    assert memory.host_statistics()["bytes_in_use"] >= 4 * size
    del again
    assert memory.release_host_cache() == 3 * size
    assert _cached() == 0


def test_an_output_in_a_reused_block_holds_this_call_s_values(rng):
    x = rng.standard_normal((2, 8, 256, 256)).astype(np.float32)  # 4 MiB: outputs of this size are pooled
    stale = backend.empty(x.shape, np.float32)
    stale[:] = np.nan
    address = stale.ctypes.data
    del stale
    y = F.relu(x)
    assert y.ctypes.data == address
    np.testing.assert_array_equal(y, np.maximum(x, 0))


def test_frozen_values_do_not_outlive_the_array_whose_block_is_reused(rng):
    x = rng.standard_normal((1, 256, 5, 5)).astype(np.float32)
    weight = backend.empty((256, 256, 4, 4), np.float32)  # 4 MiB
    weight[:] = rng.standard_normal(weight.shape).astype(np.float32)
    launch.freeze(weight)
    F.conv2d(x, weight)  # packs the frozen weight once and keeps it while the weight lives
    address = weight.ctypes.data
    del weight
    again = backend.empty((256, 256, 4, 4), np.float32)
    assert again.ctypes.data == address
    again[:] = 1.0
    window_sums = np.lib.stride_tricks.sliding_window_view(x, (4, 4), axis=(2, 3)).sum(axis=(1, 4, 5))
    np.testing.assert_allclose(F.conv2d(x, again), np.broadcast_to(window_sums[:, None], (1, 256, 2, 2)),
                               rtol=1e-4)


def test_threads_never_share_a_live_block():
    errors = []

    def work(seed):
        rng = np.random.default_rng(seed)
        for _ in range(30):
            arrays = [backend.empty(LARGE, np.float32) for _ in range(rng.integers(1, 4))]
            for k, a in enumerate(arrays):
                a[:] = seed * 10 + k
            for k, a in enumerate(arrays):
                if not np.all(a == seed * 10 + k):
                    errors.append(seed)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_an_array_let_go_inside_the_pool_s_critical_section_gives_its_block_back_later():
    """A garbage collection can run inside the pool's locked section and finalise an array there: its block must
    wait for the next call rather than take the lock again (a deadlock)."""
    array = backend.empty(LARGE, np.float32)
    released = threading.Event()

    def let_go():
        nonlocal array
        with memory._host_pool._lock:
            array = None
        released.set()

    thread = threading.Thread(target=let_go, daemon=True)
    thread.start()
    thread.join(10)
    assert released.is_set()
    assert _cached() >= LARGE[0] * 4


_HEAP_CYCLES = """
import resource, sys
import numpy as np
if sys.argv[1] == "numconv":
    import numconv  # noqa: F401
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    arrays = [np.ones(128 * 1024, np.float32) for _ in range(3)]  # 512 KiB each: under the pool's size
    del arrays
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


@pytest.mark.skipif(not memory._glibc(), reason="glibc's heap only")
def test_arrays_under_the_pool_s_size_are_not_faulted_in_again_every_step():
    """Three 512 KiB arrays made and let go 20 times, in a new process: without numconv, glibc maps each afresh
    (a page fault per 4 KiB page touched); once numconv is imported, its heap keeps them."""
    def faults(*imports):
        done = subprocess.run([sys.executable, "-c", _HEAP_CYCLES, *imports], capture_output=True, text=True,
                              timeout=120, check=True)
        return float(done.stdout)

    assert faults("numpy") > 100
    assert faults("numconv") < 32
