"""numconv: convolutional networks in 1D, 2D and 3D whose every kernel is compiled by Numba and checked against
SymPy-derived equations."""
from numconv import functional, geometry
from numconv.backend import backend_of

__version__ = "0.1.0"

__all__ = ["functional", "geometry", "backend_of", "__version__"]
