"""What the CUDA launchers share: grid arithmetic, the launch itself, specialisations of kernels whose shared-memory
sizes are compile-time constants, the block-wide tree reduction, and small device utilities that the functional
layer uses to validate and prepare device arrays without copying them to the host (fill, cast, strided copy, value
range, first label out of range, sum).

Every ``@cuda.jit`` kernel here and in the sibling modules is compiled with ``cache=True``. Kernels built by a
factory (a closure over tile sizes and the dtype) are cached too: numba keys the cache on the closure's values.
"""
from __future__ import annotations

import contextlib
import functools
import sys
import threading
import time
from typing import NamedTuple

import numpy as np
from numba import cuda

from numconv import config

#: the float64 type for shared arrays of sums (kernels name it as a module global: the simulator's stand-in for the
#: cuda module inside a kernel has no types)
FLOAT64 = cuda.float64


def simulated() -> bool:
    """Whether numba runs CUDA kernels in its simulator (decided when numba was first imported)."""
    try:
        from numba.cuda.core.config import ENABLE_CUDASIM
    except ImportError:  # older numba-cuda releases keep the flag in numba's own config
        from numba.core.config import ENABLE_CUDASIM
    return bool(ENABLE_CUDASIM)


def _lock_simulator_shared_arrays() -> None:
    """Make the simulator's ``cuda.shared.array`` safe between the threads of a block.

    The simulator finds a block's shared array by the line that asks for it, with a lookup and then an insertion
    that no lock guards: two threads of a block that switch between the two get different arrays, and each then
    reads garbage where the other wrote (a wrong result in about one launch of 40 with a short switch interval).
    The replacement does the same lookup under a lock. Applied only under the simulator, and only to the version
    whose internals it knows.
    """
    from numba.cuda.simulator import kernelapi

    shared = getattr(kernelapi, "FakeCUDAShared", None)
    if (shared is None or getattr(shared.array, "locked", False) or not hasattr(shared(0), "_allocations")
            or not hasattr(kernelapi, "numpy_support")):
        return
    lock = threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:  # dynamic shared memory, or an error: nothing to look up
            return unlocked(self, shape, dtype, alignment)
        if isinstance(dtype, kernelapi.types.Type):
            dtype = kernelapi.numpy_support.as_dtype(dtype)
        frame = sys._getframe(1)
        caller = (frame.f_code.co_filename, frame.f_lineno)
        with lock:
            found = self._allocations.get(caller)
            if found is None:
                found = self._allocations[caller] = np.empty(shape, dtype)
        return found

    unlocked = shared.array
    array.locked = True
    shared.array = array


class _SimulatedBlock:
    """The ``__syncthreads`` barrier of one simulated block: threads that have returned no longer count."""

    def __init__(self, threads: int):
        self.condition = threading.Condition()
        self.live, self.waiting, self.generation = threads, 0, 0

    def synchronise(self) -> None:
        with self.condition:
            self.waiting += 1
            if self.waiting == self.live:
                self._release()
                return
            generation = self.generation
            while generation == self.generation:
                self.condition.wait()

    def leave(self) -> None:
        with self.condition:
            self.live -= 1
            if self.live and self.waiting == self.live:
                self._release()

    def _release(self) -> None:
        self.waiting = 0
        self.generation += 1
        self.condition.notify_all()


def _synchronise_simulated_blocks_without_polling() -> None:
    """Give the simulator's blocks a barrier that threads wait on, instead of its polling loop.

    The simulator runs a block's threads as Python threads and finds out whether all of them have reached
    ``syncthreads`` (or returned) by asking each, over and over, from the launching thread: that loop took about
    four fifths of a simulated launch, competing with the threads it waits for. Here each thread waits on the
    block's condition and the launching thread joins them; an exception in a thread is raised as the simulator
    raises it. Applied only under the simulator, and only to the version whose internals it knows.
    """
    from numba.cuda.simulator import kernel as simulator

    manager, thread = getattr(simulator, "BlockManager", None), getattr(simulator, "BlockThread", None)
    if (manager is None or thread is None or getattr(manager.run, "barrier", False)
            or not all(hasattr(thread, name) for name in ("syncthreads", "run"))):
        return

    def run(self, grid_point, *args):
        block = _SimulatedBlock(int(np.prod(self._block_dim)))

        def target():
            try:
                self._f(*args)
            finally:
                block.leave()

        threads = [thread(target, self, grid_point, block_point, self._debug)
                   for block_point in np.ndindex(*self._block_dim)]
        for each in threads:
            each.simulated_block = block
            each.start()
        for each in threads:
            each.join()
        for each in threads:
            if each.exception:
                raise each.exception[0].with_traceback(each.exception[1])

    def syncthreads(self):
        block = getattr(self, "simulated_block", None)
        if block is None:
            return polling_syncthreads(self)
        block.synchronise()

    polling_syncthreads = thread.syncthreads
    run.barrier = True
    manager.run = run
    thread.syncthreads = syncthreads


if simulated():
    _lock_simulator_shared_arrays()
    _synchronise_simulated_blocks_without_polling()


def blocks_for(count: int, threads: int) -> int:
    """Blocks of ``threads`` needed to give every one of ``count`` items a thread (at least one block)."""
    return max(1, -(-int(count) // int(threads)))


class LaunchRecord(NamedTuple):
    """One launch seen by :func:`recording_launches`: the kernel's name, the seconds the host spent in the launch
    call, CUDA events recorded just before and after the kernel on the default stream (None under the simulator,
    whose kernels finish inside the call), and the launch's grid and block."""
    kernel: str
    host_seconds: float
    start: object
    end: object
    grid: object = None
    block: object = None


#: the list that :func:`recording_launches` fills, while one is open
_recorded_launches = None


@contextlib.contextmanager
def recording_launches():
    """Record every launch made inside the block as a :class:`LaunchRecord` in the list it yields: how a step's
    time splits between the kernels and the host's work of launching them. The events cost a little time of
    their own: profile with it, do not time with it."""
    global _recorded_launches
    if _recorded_launches is not None:
        raise RuntimeError("launches are already being recorded")
    _recorded_launches = records = []
    try:
        yield records
    finally:
        _recorded_launches = None


def _launch_recorded(kernel, grid, block, args) -> None:
    events = (cuda.event(), cuda.event()) if not simulated() else (None, None)
    if events[0] is not None:
        events[0].record()
    started = time.perf_counter()
    kernel[grid, block](*args)
    host_seconds = time.perf_counter() - started
    if events[1] is not None:
        events[1].record()
    name = getattr(getattr(kernel, "py_func", None), "__qualname__", type(kernel).__name__)
    _recorded_launches.append(LaunchRecord(name, host_seconds, *events, grid, block))


def launch(kernel, grid, block, *args) -> None:
    """``kernel[grid, block](*args)``; under the simulator with a short thread switch interval for the launch."""
    if not simulated():
        if _recorded_launches is None:
            kernel[grid, block](*args)
        else:
            _launch_recorded(kernel, grid, block, args)
        return
    previous = sys.getswitchinterval()
    sys.setswitchinterval(config.SIMULATOR_SWITCH_INTERVAL)
    try:
        if _recorded_launches is None:
            kernel[grid, block](*args)
        else:
            _launch_recorded(kernel, grid, block, args)
    finally:
        sys.setswitchinterval(previous)


def device_function(function):
    """A CUDA device function compiled from the Python source of the ``@njit`` function ``function``: how the bodies
    in numconv.kernels.scalar that take arrays are shared (the simulator's device arrays cannot reach compiled CPU
    code, so the ``@njit`` function itself cannot be called from a simulated kernel)."""
    return cuda.jit(device=True)(function.py_func)


def launch_flat(kernel, size: int, *args) -> None:
    """``kernel`` with one thread per element of a ``size``-element iteration space, in blocks of
    ``config.THREADS_PER_BLOCK``."""
    threads = config.THREADS_PER_BLOCK
    launch(kernel, blocks_for(size, threads), threads, *args)


def specialise(factory):
    """Memoise a kernel factory: one compiled kernel per distinct set of (hashable) constants."""
    return functools.lru_cache(maxsize=None)(factory)


def numba_type(dtype):
    """The numba scalar type of a numpy dtype, for shared and local arrays."""
    return {np.dtype(np.float32): cuda.float32, np.dtype(np.float64): cuda.float64,
            np.dtype(np.int64): cuda.int64}[np.dtype(dtype)]


def power_of_two_at_most(limit: int, count: int) -> int:
    """The smallest power of two >= ``count``, capped at the power of two ``limit`` (a reduction's block size)."""
    threads = 1
    while threads < count and threads < limit:
        threads *= 2
    return threads


def reduce_threads(count: int) -> int:
    """Threads per block for a reduction over ``count`` terms."""
    limit = config.REDUCE_THREADS
    if limit < 1 or limit & (limit - 1):
        raise ValueError(f"numconv.config.REDUCE_THREADS must be a power of two, got {limit}")
    return power_of_two_at_most(limit, count)


@cuda.jit(device=True)
def tree_sum(shared, tid, threads):
    """Sum ``shared[:threads]`` into ``shared[0]`` (``threads`` a power of two); every thread of the block calls
    this, and ``shared[0]`` is valid for all of them on return."""
    step = threads // 2
    while step > 0:
        if tid < step:
            shared[tid] += shared[tid + step]
        cuda.syncthreads()
        step //= 2


@cuda.jit(device=True)
def tree_max(shared, tid, threads):
    """The largest of ``shared[:threads]`` into ``shared[0]``, like :func:`tree_sum`. A NaN is kept only where it
    compares larger, as the CPU kernels' ``if value > top`` scans do."""
    step = threads // 2
    while step > 0:
        if tid < step:
            if shared[tid + step] > shared[tid]:
                shared[tid] = shared[tid + step]
        cuda.syncthreads()
        step //= 2


# --- device utilities for the functional layer ----------------------------------------------------------------------


@cuda.jit(cache=True)
def _fill(array, value):
    i = cuda.grid(1)
    if i < array.shape[0]:
        array[i] = value


def fill(array, value) -> None:
    """Set every element of the C-contiguous device ``array`` to ``value``."""
    flat = array.reshape(-1)
    threads = config.THREADS_PER_BLOCK
    launch(_fill, blocks_for(flat.shape[0], threads), threads, flat, value)


@cuda.jit(cache=True)
def _cast(source, target):
    i = cuda.grid(1)
    if i < source.shape[0]:
        target[i] = source[i]


def cast(source, dtype):
    """A C-contiguous device copy of the C-contiguous device ``source`` converted to ``dtype``."""
    target = cuda.device_array(tuple(source.shape), dtype=dtype)
    threads = config.THREADS_PER_BLOCK
    launch(_cast, blocks_for(source.size, threads), threads, source.reshape(-1), target.reshape(-1))
    return target


@cuda.jit(cache=True)
def _gather5(source, target):
    i = cuda.grid(1)
    if i < target.shape[0]:
        s1, s2, s3, s4 = source.shape[1], source.shape[2], source.shape[3], source.shape[4]
        e = i % s4
        rest = i // s4
        d = rest % s3
        rest //= s3
        c = rest % s2
        rest //= s2
        b = rest % s1
        a = rest // s1
        target[i] = source[a, b, c, d, e]


def contiguous(array):
    """A C-contiguous device copy of a strided device array of up to five dimensions, made on the device."""
    shape = tuple(array.shape)
    if len(shape) > 5:
        raise ValueError(f"a non-contiguous device array must have at most 5 dimensions to be copied on the device, "
                         f"got shape {shape}; make it contiguous first")
    if any(stride < 0 for stride in array.strides):
        raise ValueError(f"a device array with negative strides {tuple(array.strides)} cannot be copied on the "
                         f"device; make it contiguous first")
    padded = (1,) * (5 - len(shape)) + shape
    strides = (0,) * (5 - len(shape)) + tuple(array.strides)
    if simulated():
        view = type(array)(np.lib.stride_tricks.as_strided(array._ary, padded, strides))
    else:
        view = cuda.devicearray.DeviceNDArray(padded, strides, array.dtype, gpu_data=array.gpu_data)
    target = cuda.device_array(shape, dtype=array.dtype)
    threads = config.THREADS_PER_BLOCK
    launch(_gather5, blocks_for(target.size, threads), threads, view, target.reshape(-1))
    return target


@cuda.jit(cache=True)
def _first_outside(values, low, high, result):
    i = cuda.grid(1)
    if i < values.shape[0] and (values[i] < low or values[i] >= high):
        cuda.atomic.min(result, 0, i)


def first_outside(values, low: int, high: int) -> int:
    """Index of the first element of the 1-d integer device array outside ``[low, high)``, or -1."""
    size = values.shape[0]
    result = cuda.to_device(np.array([size], dtype=np.int64))
    threads = config.THREADS_PER_BLOCK
    launch(_first_outside, blocks_for(size, threads), threads, values, low, high, result)
    (index,) = result.copy_to_host()
    return -1 if index == size else int(index)


@specialise
def _total_kernel(threads):
    @cuda.jit(cache=True)
    def total(values, result):
        partial = cuda.shared.array(threads, FLOAT64)
        tid = cuda.threadIdx.x
        acc = 0.0
        for i in range(tid, values.shape[0], threads):
            acc += values[i]
        partial[tid] = acc
        cuda.syncthreads()
        tree_sum(partial, tid, threads)
        if tid == 0:
            result[0] = partial[0]

    return total


def total(values) -> float:
    """The sum of a float device array in float64, as a Python float (one block; for loss vectors)."""
    flat = values.reshape(-1)
    threads = reduce_threads(flat.shape[0])
    result = cuda.device_array(1, dtype=np.float64)
    launch(_total_kernel(threads), 1, threads, flat, result)
    return float(result.copy_to_host()[0])


__all__ = [
    "FLOAT64", "simulated", "blocks_for", "launch", "launch_flat", "device_function", "specialise", "numba_type",
    "reduce_threads", "tree_sum", "tree_max", "fill", "cast", "contiguous", "first_outside", "total",
    "LaunchRecord", "recording_launches",
]
