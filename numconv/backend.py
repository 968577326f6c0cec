"""Which backend an array belongs to, and the kernels and allocation for that backend.

NumPy arrays go to the CPU kernels. Device arrays belong to the CUDA backend: numba's device arrays (and the CUDA
simulator's stand-ins for them, which mark themselves with ``__cuda_ndarray__``), and any object exposing
``__cuda_array_interface__`` (CuPy arrays, PyTorch CUDA tensors), which the CUDA backend wraps as numba device
arrays without copying. Recognising an array never imports numba's CUDA target, so NumPy-only use never loads it.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import weakref

import numpy as np

from numconv.kernels import memory

__all__ = ["backend_of", "kernels", "is_device_array", "empty", "zeros", "to_device", "to_host", "as_device_array",
           "device_support", "to_backend", "fill", "copy_into", "astype", "BACKENDS", "retire", "is_retired"]

#: the names of the backends, which are also the names of the devices a model can be moved to
BACKENDS = ("cpu", "cuda")


def is_device_array(array) -> bool:
    """True for arrays that live in GPU memory: they expose ``__cuda_array_interface__``, or are numba device
    arrays (real, or the simulator's, which do not expose the interface)."""
    if type(array) is np.ndarray:  # the common case, answered without attribute lookups
        return False
    if hasattr(array, "__cuda_array_interface__"):
        return True
    try:
        return getattr(type(array), "__cuda_ndarray__", False) is True
    except Exception:  # an object whose type lookups fail is not a device array
        return False


def backend_of(*arrays) -> str:
    """``'cpu'`` or ``'cuda'`` for the given arrays (``None`` entries are ignored); mixing the two is a TypeError."""
    for array in arrays:  # the common case, NumPy arrays alone: answered without building a set
        if array is not None and type(array) is not np.ndarray:
            break
    else:
        return "cpu"
    found = set()
    for array in arrays:
        if array is None:
            continue
        found.add("cuda" if is_device_array(array) else "cpu")
    if len(found) > 1:
        raise TypeError("arrays on the host (numpy) and on a CUDA device were mixed in one call; move them first")
    return found.pop() if found else "cpu"


_pool_decided = False
#: whether numba-cuda's CUDA target loaded (:func:`check_cuda_target`), once per process
_target_checked = False


def _cuda():
    """numba's CUDA module, or a RuntimeError saying why the CUDA backend cannot run here. The first call routes
    device allocations through numconv's caching pool (numconv.kernels.cuda.memory) where it still can."""
    global _pool_decided
    try:
        cuda = importlib.import_module("numba.cuda")
    except ImportError as error:
        raise RuntimeError(
            "the CUDA backend needs the numba-cuda package: pip install 'numconv[cuda]' (or numba-cuda[cu12] / "
            f"numba-cuda[cu13] for the CUDA compiler libraries); importing numba.cuda failed: {error}"
        ) from error
    if not _pool_decided:
        _pool_decided = True
        importlib.import_module("numconv.kernels.cuda.memory").use_caching_pool()
    if not cuda.is_available():
        raise RuntimeError(
            "the CUDA backend found no usable CUDA GPU (numba.cuda.is_available() is False: no NVIDIA driver or "
            "device); to run the CUDA kernels without a GPU, set NUMBA_ENABLE_CUDASIM=1 before numba is first "
            "imported (Numba's CUDA simulator, slow)"
        )
    if not _target_checked:
        check_cuda_target()
    return cuda


def check_cuda_target() -> None:
    """Load numba-cuda's implementations of NumPy on the GPU, which it otherwise loads inside the first kernel
    launch; a RuntimeError says what to install when they cannot load with this NumPy (numba-cuda 0.30.4 registers
    ``np.row_stack``, which NumPy 2.5 removed: every launch failed with an AttributeError deep in numba-cuda). The
    simulator has no such target: nothing to load."""
    global _target_checked
    if not importlib.import_module("numconv.kernels.cuda.support").simulated():
        try:
            importlib.import_module("numba.cuda.cudaimpl")
        except AttributeError as error:
            raise RuntimeError(
                f"numba-cuda {_version('numba-cuda')} cannot run with NumPy {np.__version__}: loading its CUDA "
                f"target failed with AttributeError: {error}; install the versions numconv's cuda extra asks for "
                "(pip install 'numconv[cuda]': NumPy below 2.5)"
            ) from error
    _target_checked = True


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "(version unknown)"


#: the CPU kernel package, once imported (every operation asks for it: an import call each time cost microseconds);
#: the CUDA package is looked up each time, since whether it can run is checked each time
_cpu_package = None


def kernels(backend: str):
    """The kernel package of ``backend``. For ``'cuda'`` a RuntimeError explains a missing numba-cuda or GPU."""
    global _cpu_package
    if backend == "cpu":
        if _cpu_package is None:
            _cpu_package = importlib.import_module("numconv.kernels.cpu")
        return _cpu_package
    if backend == "cuda":
        _cuda()
        return importlib.import_module("numconv.kernels.cuda")
    raise ValueError(f"backend must be 'cpu' or 'cuda', got {backend!r}")


def empty(shape, dtype, backend: str = "cpu"):
    """An uninitialised C-contiguous array on ``backend`` (on the host, a large one in reused memory:
    ``numconv.kernels.memory``)."""
    if backend == "cpu":
        return memory.empty(shape if type(shape) is tuple else (shape,) if np.ndim(shape) == 0 else shape, dtype)
    if backend == "cuda":
        shape = (shape,) if np.ndim(shape) == 0 else shape
        return _cuda().device_array(tuple(int(s) for s in shape), dtype=np.dtype(dtype))
    raise ValueError(f"backend must be 'cpu' or 'cuda', got {backend!r}")


def zeros(shape, dtype, backend: str = "cpu"):
    """A C-contiguous array of zeros on ``backend`` (filled on the device for ``'cuda'``)."""
    if backend == "cpu":
        return np.zeros(shape, dtype=dtype)
    array = empty(shape, dtype, backend)
    device_support().fill(array, 0)
    return array


def device_support():
    """The CUDA backend's device utilities (fill, cast, strided copy, value range, sum), after checking that the
    backend can run."""
    kernels("cuda")
    return importlib.import_module("numconv.kernels.cuda.support")


def as_device_array(array):
    """A numba device array for ``array``: numba's own (and the simulator's) unchanged, any other object with
    ``__cuda_array_interface__`` wrapped without a copy. A TypeError for host arrays."""
    if not is_device_array(array):
        raise TypeError(f"expected an array on a CUDA device, got {type(array).__name__}")
    if getattr(type(array), "__cuda_ndarray__", False) is True:
        return array
    return _cuda().as_cuda_array(array)


def to_device(array):
    """``array`` on the CUDA device: a host array is copied there (C-contiguous); a device array is returned as it
    is (wrapped as a numba device array if it is another library's); ``None`` stays ``None``."""
    if array is None:
        return None
    if is_device_array(array):
        return as_device_array(array)
    return _cuda().to_device(np.asarray(array, order="C"))


def to_host(array):
    """``array`` on the host as a NumPy array: a device array is copied back; NumPy arrays (and anything else
    NumPy can read, such as scalars) are returned by ``np.asarray`` without a copy; ``None`` stays ``None``."""
    if array is None:
        return None
    if is_device_array(array):
        return as_device_array(array).copy_to_host()
    return np.asarray(array)


#: arrays that a module replaced (``Module.to``, ``astype``), by id, while something still holds them
_retired = weakref.WeakValueDictionary()


def retire(array) -> None:
    """Record that ``array`` was replaced by a moved or converted copy: updating it would change nothing."""
    _retired[id(array)] = array


def is_retired(array) -> bool:
    """Whether ``array`` was replaced by a moved or converted copy (see :func:`retire`)."""
    return _retired.get(id(array)) is array


def to_backend(array, backend: str):
    """``array`` on ``backend``: ``to_device`` for ``'cuda'``, a C-contiguous host array for ``'cpu'``."""
    if backend == "cuda":
        return to_device(array)
    if backend == "cpu":
        return np.ascontiguousarray(to_host(array))
    raise ValueError(f"device must be one of {BACKENDS}, got {backend!r}")


def fill(array, value) -> None:
    """Set every element of the C-contiguous ``array`` (host or device) to ``value``, in place."""
    if is_device_array(array):
        device_support().fill(as_device_array(array), value)
    else:
        array[...] = value


def copy_into(target, source) -> None:
    """Copy the host array ``source`` into ``target`` (host or device, same shape), converting to its dtype where
    NumPy's 'same_kind' rule allows (a TypeError otherwise)."""
    source = np.asarray(source)
    if not np.can_cast(source.dtype, target.dtype, casting="same_kind"):
        raise TypeError(f"cannot copy {source.dtype} values into a {target.dtype} array")
    if is_device_array(target):
        target.copy_to_device(np.ascontiguousarray(source, dtype=target.dtype))
    else:
        np.copyto(target, source, casting="same_kind")


def astype(array, dtype):
    """A C-contiguous copy of ``array`` converted to ``dtype``, on the array's own backend."""
    if is_device_array(array):
        return device_support().cast(as_device_array(array), np.dtype(dtype))
    return np.array(array, dtype=dtype, order="C", copy=True)
