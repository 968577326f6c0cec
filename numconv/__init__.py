"""numconv: convolutional networks in 1D, 2D and 3D whose every kernel is compiled by Numba and checked against
SymPy-derived equations."""
from numconv import data, functional, geometry, init, layers, models, optim, train, viz
from numconv.backend import backend_of, to_device, to_host

__version__ = "0.1.0"

__all__ = ["data", "functional", "geometry", "init", "layers", "models", "optim", "train", "viz", "backend_of",
           "to_device", "to_host",
           "__version__"]
