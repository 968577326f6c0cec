"""Calling the generated blocked kernels (``blocked.py``): the compiler settings they need, and shared zeros."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from contextlib import contextmanager
from functools import lru_cache

import numba
import numpy as np

from numconv.kernels.cpu import blocked

#: (lanes, columns) -> kernel
KERNELS = blocked.KERNELS


@contextmanager
def vectorizer_settings():
    """LLVM's SLP vectoriser on and its loop vectoriser off while a blocked kernel compiles (Numba's defaults are
    the reverse, which leaves the accumulators scalar). A user's own NUMBA_SLP_VECTORIZE or NUMBA_LOOP_VECTORIZE
    wins. Numba reads these settings only when it compiles, so the rest of the process is unaffected."""
    saved = numba.config.SLP_VECTORIZE, numba.config.LOOP_VECTORIZE
    if "NUMBA_SLP_VECTORIZE" not in os.environ:
        numba.config.SLP_VECTORIZE = 1
    if "NUMBA_LOOP_VECTORIZE" not in os.environ:
        numba.config.LOOP_VECTORIZE = 0
    try:
        yield
    finally:
        numba.config.SLP_VECTORIZE, numba.config.LOOP_VECTORIZE = saved


#: (kernel, argument types) that have been compiled, or loaded from the cache, with the vectoriser settings
_compiled = set()
_compiling = threading.Lock()


def run_vectorized(kernel, *args) -> None:
    """Call ``kernel`` (a Numba dispatcher that must be compiled with :func:`vectorizer_settings`) on ``args``.

    The settings are process-wide, so the first call for each kind of arguments, which compiles, holds a lock
    while they are changed; later calls find the compiled kernel and change nothing, so calls from several Python
    threads run side by side."""
    key = (kernel, tuple((a.dtype.char, a.ndim) if isinstance(a, np.ndarray) else type(a) for a in args))
    if key in _compiled:
        kernel(*args)
        return
    with _compiling, vectorizer_settings():
        kernel(*args)
        _compiled.add(key)


def fma(shape: tuple, *args) -> None:
    """Run the blocked kernel of ``shape`` (lanes, columns) on ``args`` (see codegen.py for their meaning)."""
    kernel = KERNELS[shape]
    ahead = _ahead.pop(kernel, None)
    if ahead is not None:  # compiled by another process: wait, then Numba loads it from the cache
        ahead.wait()
    run_vectorized(kernel, *args)


#: blocked kernel -> the process compiling it into Numba's cache (see compile_ahead)
_ahead = {}


def compile_ahead(dtype="float32") -> int:
    """Start compiling each blocked kernel that Numba's cache lacks in a process of its own; returns how many.

    The two blocked kernels are most of a first run's compile time (7-8 s each on a 2-core machine, against
    about 8 s for all the other kernels a model uses together), and Numba compiles one function at a time per
    process, so a first run compiles them side by side on other cores while it goes on with the rest; its first
    call of each waits for that process and loads the kernel from the cache. With the cache filled, nothing starts.
    """
    started = 0
    for shape, kernel in KERNELS.items():
        if kernel in _ahead or _in_cache(kernel):
            continue
        code = (f"from numconv.kernels.cpu import launch; "
                f"launch.run_once({shape!r}, {np.dtype(dtype).name!r})")
        _ahead[kernel] = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started += 1
    return started


def _in_cache(kernel) -> bool:
    """Whether Numba's cache holds any compiled version of ``kernel`` (its index for the current source)."""
    try:
        return bool(kernel._cache._cache_file._load_index())
    except (AttributeError, OSError):  # another Numba's internals, or an unreadable cache: compile in-process
        return True


def run_once(shape: tuple, dtype: str) -> None:
    """Run a one-output-row convolution through the blocked kernel of ``shape``, as a real call does, so that
    the kernel is compiled for ``dtype`` and saved to Numba's cache (what a :func:`compile_ahead` process runs)."""
    from numconv.kernels.cpu import conv

    lanes = shape[0]
    for_lanes = shape == (16, 14)  # channels as lanes; the wide kernel runs rows of positions
    x = np.ones((1, 1, 1, 1, 1 if for_lanes else lanes), dtype)
    weight = np.ones((lanes if for_lanes else 1, 1, 1, 1, 1), dtype)
    out = np.empty((1, weight.shape[0], 1, 1, x.shape[4]), dtype)
    run = conv.conv_forward if for_lanes else conv.conv_forward_wide
    run(x, weight, None, out, (1, 1, 1), (0, 0, 0), (1, 1, 1), 1)


@lru_cache(maxsize=64)
def zeros(size: int, dtype: str) -> np.ndarray:
    """A shared array of zeros; the kernels only read it."""
    return np.zeros(size, dtype)


_workspaces = threading.local()


def workspace(tag: str, size: int, dtype) -> np.ndarray:
    """A flat scratch array of ``size`` elements, kept per thread and per ``tag`` and reused by later calls.

    Fresh memory costs a page fault per page on first touch (on a small virtual machine that was measured at more
    than the time to fill it), so the padded inputs and packed operands of the convolutions reuse their buffers.
    A tag is used by one step of one call at a time; the contents are garbage on return. The largest buffer of each
    tag stays allocated (a 3D layer's packed output gradient can take hundreds of megabytes):
    :func:`release_workspaces` frees them.
    """
    cache = getattr(_workspaces, "arrays", None)
    if cache is None:
        cache = _workspaces.arrays = {}
    dtype = np.dtype(dtype)
    array = cache.get((tag, dtype.str))
    if array is None or array.size < size:
        array = np.empty(size, dtype)
        cache[(tag, dtype.str)] = array
    return array[:size]


def release_workspaces() -> None:
    """Free this thread's scratch buffers (they are allocated again when next needed)."""
    _workspaces.arrays = {}
