"""CPU kernels compiled by Numba (``cache=True``); those with parallel loops twice, parallel and on one thread for
small calls (``parallel.py``).

The parallel loops run on Numba's TBB threading layer (``numconv/kernels/threads.py``), which is safe under
``fork()`` and under calls from several Python threads at once; where TBB cannot load, Numba falls back to OpenMP,
then to its ``workqueue``.
"""
from numconv.kernels.cpu import activation, conv, dense, loss, norm, pointwise, pool

__all__ = ["activation", "conv", "dense", "loss", "norm", "pointwise", "pool"]
