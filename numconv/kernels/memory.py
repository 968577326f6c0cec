"""Memory handed out again: :class:`BlockPool` keeps freed blocks by rounded size for the next request of that
size. The CUDA backend routes numba-cuda's device allocations through one (``cuda/memory.py``); the host's large
arrays come from another (:func:`empty`).

A fresh large host array costs more than its size suggests: NumPy takes it from the operating system, which maps and
zeroes every page on first touch. A convolution writing a 206 MB output (the anchor suite's video_c1) spent 7 of its
38 ms there, and a training step allocates every activation and gradient anew (AlexNet's: 78-149 ms of system time
a step). :func:`empty` serves arrays of at least ``HOST_MIN_BYTES`` from blocks that earlier arrays have finished
with. Each such array is made from a small owner object, its ``base``; every view of the array keeps the array, and
so the owner, alive, and when the last of them is gone the owner gives the block back. At most ``HOST_CACHE_LIMIT``
bytes of blocks wait unused; :func:`release_host_cache` frees them, and ``NUMCONV_HOST_POOL=0`` turns the pool off
(and leaves glibc's heap threshold, ``HEAP_THRESHOLD_BYTES``, as the process sets it).
"""
from __future__ import annotations

import collections
import math
import os
import threading

import numpy as np

__all__ = ["BlockPool", "empty", "host_statistics", "release_host_cache"]


class BlockPool:
    """Free blocks by rounded size, handed out again before anything new is allocated.

    ``allocate(size)`` returns a handle to ``size`` new bytes, ``free(handle)`` gives them back to the driver. A block
    is ``(handle, rounded size, generation)``; blocks taken before :meth:`reset` are not kept when they come back.
    Sizes are rounded up to a multiple of ``granule`` bytes; with a ``cache_limit``, a block that would take the
    cached bytes past it is freed instead of kept.
    """

    #: sizes are rounded up to a multiple of this many bytes by default (CuPy's pool rounds to 512 too)
    GRANULE = 512

    def __init__(self, allocate, free, granule: int = GRANULE, cache_limit: int | None = None):
        self._allocate, self._free = allocate, free
        self.granule, self.cache_limit = granule, cache_limit
        self._free_blocks = {}  # rounded size -> [handle, ...]
        self._lock = threading.Lock()
        self._generation = 0
        self.driver_allocations = 0
        self.reuses = 0
        self.bytes_in_use = 0
        self.bytes_cached = 0
        self.peak_bytes_in_use = 0

    def rounded(self, size: int) -> int:
        return max(1, -(-int(size) // self.granule)) * self.granule

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
            kept = self.cache_limit is None or self.bytes_cached + rounded <= self.cache_limit
            if kept:
                self.bytes_cached += rounded
                self._free_blocks.setdefault(rounded, []).append(handle)
        if not kept:
            self._free(handle)

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


#: whether large host arrays come from the pool (``NUMCONV_HOST_POOL=0``: NumPy's own allocation for all)
HOST_POOL = os.environ.get("NUMCONV_HOST_POOL", "1") != "0"
#: host requests of at least this many bytes come from the pool; smaller ones are plain NumPy arrays, which glibc
#: makes from any memory freed lately (still in the caches), where the pool reuses only a block of the same size.
#: With 4 MiB, glibc handed C3D-small's 2 MiB activations back to the system and faulted them in again on every
#: training step (265-480 page faults a step at batch 8, in most processes); with 1 MiB it took 0.82 and 0.87 of the
#: time (medians of 12 rounds alternating in one process), LeNet-5 (0.99), M5 (1.00) and NiN (0.97) unchanged.
#: 128 KiB (glibc's first threshold for mapping fresh pages) ends the faults that glibc's moving threshold still
#: lets through now and then (224 a step in 2 of 8 processes), but cost LeNet-5 3-5%: its blocks came back cold
HOST_MIN_BYTES = 1 << 20
#: the most bytes of host blocks kept while no array uses them
HOST_CACHE_LIMIT = 1 << 30
#: host block sizes are rounded up to a multiple of this many bytes, so that nearby sizes share blocks
HOST_GRANULE = 1 << 16
#: where a host block's data starts: a page boundary
HOST_ALIGNMENT = 4096
#: glibc's heap keeps what is freed below its threshold for mapping fresh pages, and hands its top back to the system
#: once more than twice that threshold lies free there; the threshold starts at 128 KiB and rises to the size of any
#: larger mapping the process frees (mallopt(3), "dynamic mmap threshold"). The arrays under ``HOST_MIN_BYTES`` come
#: from that heap, so a process whose first frees raised the threshold a little handed its small activations back
#: and faulted them in again every step (C3D-small at batch 8: 224 faults a step, 4.8 ms instead of 4.2, in 2 of 6
#: processes, and some steps of a third). Freeing one mapping of this size when numconv is imported raises the
#: threshold as such a free would, in every process: no faults a step in 14 of 14
HEAP_THRESHOLD_BYTES = 8 << 20


def _host_block(size: int) -> tuple:
    """(``size`` bytes from a page boundary, as a uint8 array; their address, asked once: ``ctypes.data`` takes a
    microsecond)."""
    raw = np.empty(size + HOST_ALIGNMENT, np.uint8)
    address = raw.ctypes.data
    skip = -address % HOST_ALIGNMENT
    return raw[skip:skip + size], address + skip


def _glibc() -> bool:
    """Whether the process's C library is glibc (``os.confstr`` is absent on Windows, the name unknown elsewhere)."""
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError, AttributeError):
        return False


def _raise_heap_threshold() -> None:
    """Raise glibc's dynamic mmap threshold to ``HEAP_THRESHOLD_BYTES`` (where the C library is another, nothing)."""
    if _glibc():
        np.empty(HEAP_THRESHOLD_BYTES, np.uint8)  # mapped and freed at once; its pages are never touched


if HOST_POOL:
    _raise_heap_threshold()
_host_pool = BlockPool(_host_block, lambda block: None, HOST_GRANULE, HOST_CACHE_LIMIT)
#: blocks whose arrays are gone, to be given back by the next call of this module: an owner's finaliser may run
#: inside the pool's critical section (a garbage collection that an allocation there starts), so it takes no lock
_returned = collections.deque()


def _give_back_returned() -> None:
    while True:
        try:
            block = _returned.popleft()
        except IndexError:  # empty (another thread may have taken the last one since)
            return
        _host_pool.give_back(block)


class _HostOwner:
    """The base of one array made from a host block: gives the block back when the array and its views are gone."""

    __slots__ = ("__array_interface__", "_block")

    def __init__(self, block: tuple, shape: tuple, dtype: np.dtype):
        self._block = block
        self.__array_interface__ = {"data": (block[0][1], False), "shape": shape, "typestr": dtype.str,
                                    "version": 3}

    def __del__(self):
        if _returned is not None:  # None while the interpreter shuts down
            _returned.append(self._block)


def empty(shape, dtype) -> np.ndarray:
    """An uninitialised C-contiguous host array of ``shape`` and ``dtype``, from the pool where it is large."""
    dtype = np.dtype(dtype)
    shape = tuple(map(int, shape))
    nbytes = math.prod(shape) * dtype.itemsize
    if not HOST_POOL or nbytes < HOST_MIN_BYTES or dtype.hasobject:
        return np.empty(shape, dtype)
    _give_back_returned()
    return np.asarray(_HostOwner(_host_pool.take(nbytes), shape, dtype))


def host_statistics() -> dict:
    """What the host pool has done: new blocks ("driver_allocations"), reuses, bytes in use and cached."""
    _give_back_returned()
    return _host_pool.statistics()


def release_host_cache() -> int:
    """Free the host blocks that no array uses; returns the bytes freed."""
    _give_back_returned()
    return _host_pool.release_cached()
