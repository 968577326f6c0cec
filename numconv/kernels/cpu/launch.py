"""Calling the generated blocked kernels (``blocked.py``): the compiler settings they need, and shared zeros."""
from __future__ import annotations

import os
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
    run_vectorized(KERNELS[shape], *args)


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
