"""Compiled kernels, one subpackage per backend with the same module and function names: ``cpu`` (Numba
``@njit``) and, where available, ``cuda``. Kernels take C-contiguous arrays, preallocated outputs and plain ints."""
