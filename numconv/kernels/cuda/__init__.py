"""CUDA kernels compiled by numba-cuda's ``@cuda.jit(cache=True)``: for every CPU kernel a launcher with the same
module, name, signature and semantics, taking device arrays (numba device arrays, or anything exposing
``__cuda_array_interface__``). Launch shapes and tile sizes come from :mod:`numconv.config`."""
from numba.cuda.core import caching

from numconv.kernels.cache import install

install(caching)  # before the first kernel below: cached kernels follow the modules they depend on

from numconv.kernels.cuda import activation, conv, dense, loss, norm, pointwise, pool  # noqa: E402

__all__ = ["activation", "conv", "dense", "loss", "norm", "pointwise", "pool"]
