"""CPU kernels compiled by Numba's ``@njit(parallel=True, cache=True)``."""
from numconv.kernels.cpu import conv, dense, loss, norm, pointwise, pool

__all__ = ["conv", "dense", "loss", "norm", "pointwise", "pool"]
