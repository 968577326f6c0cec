"""Which backend an array belongs to, and the kernels and allocation for that backend.

NumPy arrays go to the CPU kernels. Arrays exposing ``__cuda_array_interface__`` (Numba device arrays, CuPy arrays,
PyTorch CUDA tensors) belong to the CUDA backend.
"""
from __future__ import annotations

import importlib

import numpy as np

__all__ = ["backend_of", "kernels", "is_device_array"]


def is_device_array(array) -> bool:
    """True for arrays that live in GPU memory (they expose ``__cuda_array_interface__``)."""
    return hasattr(array, "__cuda_array_interface__")


def backend_of(*arrays) -> str:
    """``'cpu'`` or ``'cuda'`` for the given arrays (``None`` entries are ignored); mixing the two is a TypeError."""
    found = set()
    for array in arrays:
        if array is None:
            continue
        found.add("cuda" if is_device_array(array) else "cpu")
    if len(found) > 1:
        raise TypeError("arrays on the host (numpy) and on a CUDA device were mixed in one call; move them first")
    return found.pop() if found else "cpu"


def kernels(backend: str):
    """The kernel package of ``backend``."""
    if backend == "cpu":
        return importlib.import_module("numconv.kernels.cpu")
    if backend == "cuda":
        raise NotImplementedError("the CUDA backend is not available in this version of numconv")
    raise ValueError(f"backend must be 'cpu' or 'cuda', got {backend!r}")


def empty(shape, dtype, backend: str = "cpu"):
    """An uninitialised C-contiguous array on ``backend``."""
    if backend == "cpu":
        return np.empty(shape, dtype=dtype)
    raise NotImplementedError("the CUDA backend is not available in this version of numconv")
