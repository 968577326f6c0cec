"""CPU kernels compiled by Numba's ``@njit(parallel=True, cache=True)``.

Numba's threading layer is left to Numba (OpenMP where available). It was measured against the ``workqueue``
layer on 2 cores: OpenMP starts a parallel region in about 2 microseconds and workqueue in about 50, which made a
LeNet-5 training step (some sixty kernel launches) twice as fast under OpenMP. The kernels call no BLAS, so
OpenMP's spinning workers do not meet BLAS threads inside numconv; a program that alternates numconv with its own
BLAS calls on a small machine may prefer NUMBA_THREADING_LAYER=workqueue.
"""
from numconv.kernels.cpu import conv, dense, loss, norm, pointwise, pool

__all__ = ["conv", "dense", "loss", "norm", "pointwise", "pool"]
