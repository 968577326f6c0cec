"""CPU kernels compiled by Numba's ``@njit(parallel=True, cache=True)``.

Threading: importing this package makes Numba use its ``workqueue`` threading layer, unless the environment
variable NUMBA_THREADING_LAYER says otherwise or a parallel Numba function has already run in this process (the
layer is then fixed). On a machine with few cores the OpenMP layer's idle workers spin after every parallel region
and compete with the next one and with BLAS or PyTorch threads: measured on 2 cores, a small ReLU took 12 ms under
OpenMP after a BLAS call and 0.16 ms under workqueue. The workqueue layer does not allow parallel kernels to be
launched from several Python threads at the same time; programs that do so should set NUMBA_THREADING_LAYER=omp
(or tbb, when installed).
"""
import os

import numba

if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

from numconv.kernels.cpu import conv, dense, loss, norm, pointwise, pool  # noqa: E402

__all__ = ["conv", "dense", "loss", "norm", "pointwise", "pool"]
