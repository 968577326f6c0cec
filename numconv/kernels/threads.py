"""Numba's threading layer for the CPU kernels: TBB.

Numba runs ``parallel=True`` kernels on one of three layers, chosen at the first parallel launch in the process:
TBB when it can load Intel's library, else OpenMP, else its own ``workqueue``. Only TBB is safe both when the
process forks (GNU OpenMP kills every child of a process that has used it: "fork() called from a process already
using GNU OpenMP, this is unsafe", and the parent's pool then waits forever) and when several Python threads launch
kernels at once (``workqueue`` aborts). numconv depends on the ``tbb`` package, but pip puts its library in the
environment's ``lib/`` folder, where Numba's TBB layer does not look: :func:`load_tbb` loads it first, so that
Numba finds it. A ``NUMBA_THREADING_LAYER`` the user set wins. It runs when ``numconv.kernels`` is imported (by
``import numconv``); a program that started Numba's threads before importing numconv keeps the layer they took.
"""
from __future__ import annotations

import ctypes
import importlib.metadata
import os

__all__ = ["load_tbb"]

#: the names of the TBB runtime library that Numba's TBB layer links against, per platform
_LIBRARY_NAMES = ("libtbb.so.12", "libtbb.12.dylib", "tbb12.dll")


def load_tbb() -> bool:
    """Load the ``tbb`` package's library into the process so that Numba's TBB layer can start; returns whether
    it did. Nothing happens when the user chose a layer (``NUMBA_THREADING_LAYER``) or the package is absent."""
    if os.environ.get("NUMBA_THREADING_LAYER", "default") != "default":
        return False
    try:
        files = importlib.metadata.files("tbb") or ()
    except importlib.metadata.PackageNotFoundError:
        return False
    for file in files:
        if file.name in _LIBRARY_NAMES:
            try:
                ctypes.CDLL(str(file.locate()), mode=ctypes.RTLD_GLOBAL)
            except OSError:  # a damaged install: Numba falls back to OpenMP
                return False
            return True
    return False
