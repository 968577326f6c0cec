"""A caching pool for device memory: every op allocates its output, and a driver allocation (``cuMemAlloc``) for each
one costs microseconds and synchronises; the pool keeps freed blocks and hands them out again.

Numba's External Memory Management interface (numba-cuda's ``set_memory_manager``) routes every device allocation of
the process through :class:`CachingMemoryManager`, which takes blocks from a :class:`BlockPool`
(``numconv.kernels.memory``, which serves the host's large arrays too). A block returns to
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
import weakref

from numconv.kernels.memory import BlockPool

__all__ = ["BlockPool", "use_caching_pool", "in_use", "statistics", "reset_peak"]


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
