"""Compiled kernels, one subpackage per backend with the same module and function names: ``cpu`` (Numba
``@njit``) and, where available, ``cuda``. Kernels take C-contiguous arrays, preallocated outputs and plain ints."""
from numconv.kernels.threads import load_tbb

# when numconv is imported, before anything can start Numba's threads and so fix their layer for the process:
# numba.get_num_threads() or set_num_threads() start them too, and a program (or numconv's own benchmarks and MPI
# setup) that called either before the first kernel ran on OpenMP, which forked processes cannot use
load_tbb()
