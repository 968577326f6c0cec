"""A caching pool for device memory: every op allocates its output, and a driver allocation (``cuMemAlloc``) for each
one costs microseconds and synchronises; the pool keeps freed blocks and hands them out again.

Numba's External Memory Management interface (numba-cuda's ``set_memory_manager``) routes every device allocation of
the process through :class:`CachingMemoryManager`, which takes blocks from a :class:`BlockPool`. A block returns to
the pool when the last array that uses it is gone (numba ties the buffer's life to its ``MemoryPointer``), and is
handed out again to the next request of the same rounded size. numconv runs every kernel on the default stream, whose
work executes in order, so a block reused by a later op is written only after the earlier ops that read it are
done. When the driver runs out of memory, the pool frees what it caches and tries once more.

The pool is installed when numconv first uses the CUDA backend, if no CUDA context exists yet in the process (a
context keeps the memory manager it was created with); ``NUMCONV_CUDA_POOL=0`` leaves numba's own allocation.
Under the simulator there is no device memory to pool. :func:`statistics` says what the pool did.
"""
from __future__ import annotations

import functools
import os
import threading
import weakref

__all__ = ["BlockPool", "use_caching_pool", "in_use", "statistics", "reset_peak"]


class BlockPool:
    """Free blocks by rounded size, handed out again before anything new is allocated.

    ``allocate(size)`` returns a handle to ``size`` new bytes, ``free(handle)`` gives them back to the driver. A block
    is ``(handle, rounded size, generation)``; blocks taken before :meth:`reset` are not kept when they come back.
    """

    #: sizes are rounded up to a multiple of this many bytes (CuPy's pool rounds to 512 too)
    GRANULE = 512

    def __init__(self, allocate, free):
        self._allocate, self._free = allocate, free
        self._free_blocks = {}  # rounded size -> [handle, ...]
        self._lock = threading.Lock()
        self._generation = 0
        self.driver_allocations = 0
        self.reuses = 0
        self.bytes_in_use = 0
        self.bytes_cached = 0
        self.peak_bytes_in_use = 0

    def rounded(self, size: int) -> int:
        return max(1, -(-int(size) // self.GRANULE)) * self.GRANULE

    def take(self, size: int) -> tuple:
        """A block of at least ``size`` bytes: a cached one of the same rounded size, or a new one."""
        rounded = self.rounded(size)
        with self._lock:
            cached = self._free_blocks.get(rounded)
            if cached:
                handle = cached.pop()
                self.bytes_cached -= rounded
                self.reuses += 1
                return self._hand_out(handle, rounded)
        handle = self._allocate(rounded)
        with self._lock:
            self.driver_allocations += 1
            return self._hand_out(handle, rounded)

    def _hand_out(self, handle, rounded: int) -> tuple:
        self.bytes_in_use += rounded
        self.peak_bytes_in_use = max(self.peak_bytes_in_use, self.bytes_in_use)
        return handle, rounded, self._generation

    def give_back(self, block: tuple) -> None:
        """``block`` is no longer used: keep it for the next request of its size."""
        handle, rounded, generation = block
        with self._lock:
            if generation != self._generation:
                return  # taken before a reset: its memory went with the context
            self.bytes_in_use -= rounded
            self.bytes_cached += rounded
            self._free_blocks.setdefault(rounded, []).append(handle)

    def release_cached(self) -> int:
        """Free every cached block to the driver; returns the bytes freed."""
        with self._lock:
            blocks = [(size, handle) for size, handles in self._free_blocks.items() for handle in handles]
            self._free_blocks.clear()
            freed, self.bytes_cached = self.bytes_cached, 0
        for _, handle in blocks:
            self._free(handle)
        return freed

    def reset(self) -> None:
        """Forget every block (the context that owned them is gone)."""
        with self._lock:
            self._free_blocks.clear()
            self._generation += 1
            self.bytes_in_use = self.bytes_cached = 0

    def reset_peak(self) -> None:
        """Start the peak over from the bytes in use now."""
        with self._lock:
            self.peak_bytes_in_use = self.bytes_in_use

    def statistics(self) -> dict:
        with self._lock:
            return {"driver_allocations": self.driver_allocations, "reuses": self.reuses,
                    "bytes_in_use": self.bytes_in_use, "bytes_cached": self.bytes_cached,
                    "peak_bytes_in_use": self.peak_bytes_in_use}


_pool: BlockPool | None = None


def _manager_class():
    """The EMM plugin class, defined on first use (it needs numba-cuda's driver module, a real GPU's)."""
    from numba.cuda.cudadrv import driver as cuda_driver
    from numba.cuda.cudadrv.driver import (
        CudaAPIError, GetIpcHandleMixin, HostOnlyCUDAMemoryManager, MemoryInfo, MemoryPointer,
    )

    def allocate(size):
        try:
            return cuda_driver.driver.cuMemAlloc(size)
        except CudaAPIError as error:
            if error.code != cuda_driver.binding.CUresult.CUDA_ERROR_OUT_OF_MEMORY:
                raise
        _pool.release_cached()
        return cuda_driver.driver.cuMemAlloc(size)

    class CachingMemoryManager(GetIpcHandleMixin, HostOnlyCUDAMemoryManager):
        """numba-cuda's device allocations through the :class:`BlockPool`."""

        def initialize(self):
            global _pool
            if _pool is None:
                _pool = BlockPool(allocate, cuda_driver.driver.cuMemFree)
            if self.deallocations.memory_capacity == cuda_driver._SizeNotSet:
                self.deallocations.memory_capacity = self.get_memory_info().total

        def memalloc(self, size):
            block = _pool.take(size)
            return MemoryPointer(weakref.proxy(self.context), block[0], size,
                                 finalizer=functools.partial(_pool.give_back, block))

        def get_memory_info(self):
            free, total = cuda_driver.driver.cuMemGetInfo()
            return MemoryInfo(free=free, total=total)

        def reset(self):
            super().reset()
            if _pool is not None:
                _pool.release_cached()
                _pool.reset()

        @property
        def interface_version(self):
            return 1

    return CachingMemoryManager


def use_caching_pool() -> bool:
    """Route numba-cuda's device allocations through the pool, where that can still happen: not under the
    simulator, not when ``NUMCONV_CUDA_POOL=0``, and before the process's first CUDA context. Returns whether the
    pool is in use."""
    from numba import cuda
    from numba.cuda.cudadrv import driver as cuda_driver

    if os.environ.get("NUMCONV_CUDA_POOL", "1") == "0" or os.environ.get("NUMBA_ENABLE_CUDASIM", "0") != "0":
        return False
    if cuda_driver._memory_manager is not None:  # chosen when numba creates its first context, and kept by it
        return in_use()
    cuda.set_memory_manager(_manager_class())
    return True


def in_use() -> bool:
    """Whether numba-cuda allocates through the pool in this process."""
    from numba.cuda.cudadrv import driver as cuda_driver

    return getattr(getattr(cuda_driver, "_memory_manager", None), "__name__", "") == "CachingMemoryManager"


def reset_peak() -> None:
    """Start the pool's peak of bytes in use over (nothing when the pool is not in use)."""
    if _pool is not None:
        _pool.reset_peak()


def statistics() -> dict:
    """What the pool has done: driver allocations, reuses, bytes in use and cached (zeros when it is not in use)."""
    if _pool is None:
        return {"driver_allocations": 0, "reuses": 0, "bytes_in_use": 0, "bytes_cached": 0, "peak_bytes_in_use": 0}
    return _pool.statistics()
