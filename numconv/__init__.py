"""numconv: convolutional networks in 1D, 2D and 3D whose every kernel is compiled by Numba and checked against
SymPy-derived equations."""
from numconv.vectors import prefer_full_width

prefer_full_width()  # before the first @njit below fixes Numba's CPU features

from numconv.kernels.cache import install  # noqa: E402

install()  # before the first kernel is defined: cached kernels follow the modules they depend on

from numconv import data, functional, geometry, init, layers, models, optim, train, viz  # noqa: E402
from numconv.backend import backend_of, to_device, to_host  # noqa: E402

__version__ = "0.1.0"

__all__ = ["data", "functional", "geometry", "init", "layers", "models", "optim", "train", "viz", "backend_of",
           "to_device", "to_host",
           "__version__"]
