"""The public functions, in the shape of ``torch.nn.functional``: same names, argument order and defaults.

Layouts are PyTorch's: (N, C, L), (N, C, H, W), (N, C, D, H, W); weights (out_channels, in_channels // groups,
*kernel). Inputs are float32 or float64 and every output has the input's dtype; mixing dtypes is a TypeError.

Each op has ``<op>_backward(grad_output, *the forward's arrays, **the forward's keywords)`` returning one gradient per
forward array argument, in order, with ``None`` where that argument was ``None`` (``dropout_backward`` takes the mask
instead). The backward of a layer with weights (convolution, linear) takes ``needs_input_grad=False`` to skip the
input's gradient, returned as ``None``: a network's first layer needs only its weights' gradients. Validation
happens here, once: the kernels below assume valid, C-contiguous arrays.

Arrays on a CUDA device (numba device arrays, or anything exposing ``__cuda_array_interface__``) run the CUDA kernels
and give numba device arrays; mixing host and device arrays in one call is a TypeError. Nothing is copied to the
host on the way: shapes and dtypes are read from the arrays' attributes, strided arrays are made contiguous on the
device, and where a check needs values (labels, max-pooling indices) only its outcome comes back. Two things cross
over by design: dropout's mask is drawn on the host from the caller's generator (the same seed gives the same mask
on both backends) and then copied to the device, and ``cross_entropy`` with ``'mean'`` or ``'sum'`` returns a host
0-d array on both backends (the sum is taken on the device; one number comes back).
"""
from __future__ import annotations

import functools
import math

import numpy as np

from numconv import checks, geometry
from numconv.backend import (
    as_device_array, backend_of, device_support, empty, is_device_array, kernels, to_backend, to_device, to_host,
    zeros,
)

__all__ = [
    "conv1d", "conv2d", "conv3d", "conv1d_backward", "conv2d_backward", "conv3d_backward", "freeze", "bind_conv",
    "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "conv_transpose1d_backward", "conv_transpose2d_backward", "conv_transpose3d_backward",
    "max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_backward", "max_pool2d_backward", "max_pool3d_backward",
    "avg_pool1d", "avg_pool2d", "avg_pool3d", "avg_pool1d_backward", "avg_pool2d_backward", "avg_pool3d_backward",
    "global_avg_pool", "global_avg_pool_backward",
    "linear", "linear_backward", "add", "add_backward", "mul", "mul_backward", "cat", "cat_backward", "relu",
    "relu_backward", "leaky_relu", "leaky_relu_backward", "sigmoid", "sigmoid_backward", "tanh", "tanh_backward",
    "softmax", "softmax_backward",
    "dropout", "dropout_backward", "skip_dropout_draws",
    "local_response_norm", "local_response_norm_backward", "batch_norm", "batch_norm_backward",
    "cross_entropy", "cross_entropy_backward",
]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# --- validation ---------------------------------------------------------------------------------------------------


def _float_array(value, name: str, ndim: int | None = None, dtype=None, min_ndim: int | None = None):
    """``value`` as a C-contiguous, writeable float32/float64 array (copied only when needed). A device array stays
    on its device: it is checked through its attributes, and a strided one is copied there."""
    if value is None:
        raise TypeError(f"{name} must be an array, got None")
    device = is_device_array(value)
    array = as_device_array(value) if device else np.asarray(value)
    shape = tuple(array.shape)
    if array.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got dtype {array.dtype}")
    if dtype is not None and array.dtype != dtype:
        raise TypeError(f"{name} has dtype {array.dtype} but the input has dtype {dtype}; convert one of them")
    if ndim is not None and len(shape) != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {shape}")
    if min_ndim is not None and len(shape) < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimensions, got shape {shape}")
    if 0 in shape:
        raise ValueError(f"{name} must not be empty, got shape {shape}")
    if device:
        return _device_contiguous(array)
    if not (array.flags.c_contiguous and array.flags.writeable):
        # one compiled kernel per dtype: strided, Fortran-ordered and read-only arrays become plain C arrays here
        array = np.array(array, order="C", copy=True)
    return array


def _device_contiguous(array):
    """A C-contiguous device array: ``array`` itself, or a copy made on the device."""
    return array if array.is_c_contiguous() else device_support().contiguous(array)


def _check_shape(array: np.ndarray, expected: tuple, name: str) -> None:
    if array.shape != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}, got {array.shape}")


def _gradient_arrays(out, weight, bias, dtype, backend):
    """The (grad_weight, grad_bias) arrays a backward writes the parameters' gradients into: ``out`` when given
    (its arrays must match ``weight`` and ``bias``: shape, dtype, backend, C order, writeable; None for an absent
    bias), else new ones (grad_bias None without a bias)."""
    if out is None:
        return tuple(None if parameter is None else empty(parameter.shape, dtype, backend)
                     for parameter in (weight, bias))
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise TypeError(f"out must be a (grad_weight, grad_bias) pair, got {type(out).__name__}")
    arrays = []
    for index, (target, parameter) in enumerate(zip(out, (weight, bias))):
        name = f"out[{index}]"
        if parameter is None or target is None:
            if (parameter is None) != (target is None):
                what = "the parameter is absent" if parameter is None else "the parameter has a gradient"
                raise ValueError(f"{name} must be None exactly where the parameter is None; {what}, got "
                                 f"{'None' if target is None else type(target).__name__}")
            arrays.append(None)
            continue
        on_device = is_device_array(target)
        if not (on_device or isinstance(target, np.ndarray)):
            raise TypeError(f"{name} must be a NumPy or device array, got {type(target).__name__}")
        if ("cuda" if on_device else "cpu") != backend:
            raise TypeError(f"{name} must be on the same device as the operands ({backend}), got "
                            f"{'cuda' if on_device else 'cpu'}")
        target = as_device_array(target) if on_device else target
        if target.dtype != dtype:
            raise TypeError(f"{name} must have dtype {dtype}, got {target.dtype}")
        _check_shape(target, parameter.shape, name)
        contiguous = target.is_c_contiguous() if on_device else target.flags.c_contiguous
        if not contiguous or not (on_device or target.flags.writeable):
            raise ValueError(f"{name} must be a writeable C-contiguous array")
        arrays.append(target)
    return tuple(arrays)


def _as_3d_spatial(array):
    """View (N, C, *spatial) with 1 to 3 spatial axes as (N, C, D, H, W), missing leading axes of size 1."""
    return array.reshape(_as_3d_shape(array.shape))


def _as_3d_shape(shape: tuple) -> tuple:
    """The shape that ``_as_3d_spatial`` gives an array of ``shape``."""
    return tuple(shape[:2]) + (1,) * (5 - len(shape)) + tuple(shape[2:])


def _triple(values: tuple[int, ...], fill: int) -> tuple[int, int, int]:
    return (fill,) * (3 - len(values)) + tuple(values)


# --- convolution --------------------------------------------------------------------------------------------------


def freeze(*weights) -> None:
    """Promise that the host arrays ``weights`` will never change again, so that the CPU convolutions prepare them
    once (packed, or transformed for Winograd, and checked for NaN) instead of on every call, and keep what they
    prepared for as long as each array's memory lives: an inference session's weights. An array changed after
    this gives stale, wrong results; freeze private copies. Device arrays are left as they are (the CUDA kernels
    read weights as given)."""
    from numconv.kernels.cpu import launch

    for index, weight in enumerate(weights):
        if is_device_array(weight):
            continue
        if not isinstance(weight, np.ndarray):
            raise TypeError(f"weights[{index}] must be a NumPy or device array, got {type(weight).__name__}")
        launch.freeze(weight)


def _conv_setup(x, weight, bias, stride, padding, dilation, groups, ndim):
    x = _float_array(x, "input", ndim + 2)
    weight = _float_array(weight, "weight", ndim + 2, x.dtype)
    if type(groups) is int and _plain_ints((stride, padding, dilation), 3):
        out_spatial, args = _conv_call(x.shape[1:], weight.shape, stride, padding, dilation, groups)
    else:
        out_spatial, args = _conv_window(x.shape[1:], weight.shape, stride, padding, dilation, groups)
    if bias is not None:
        bias = _float_array(bias, "bias", 1, x.dtype)
        _check_shape(bias, (weight.shape[0],), "bias")
    out_shape = (x.shape[0], weight.shape[0]) + out_spatial
    return x, weight, bias, out_shape, args


def _conv_window(in_shape, weight_shape, stride, padding, dilation, groups) -> tuple:
    """(output's spatial shape, the kernels' (stride, padding, dilation, groups) as triples) of a convolution of an
    input of (channels, *spatial) ``in_shape``, after checking the groups and the window."""
    geometry.check_groups(in_shape[0], weight_shape, groups)
    geo = geometry.conv_geometry(in_shape[1:], weight_shape[2:], stride, padding, dilation)
    return geo.output_shape, (_triple(geo.stride, 1), _triple(geo.padding, 0), _triple(geo.dilation, 1), int(groups))


#: ``_conv_window``, remembered for window parameters and groups of plain ints (``_plain_ints``): a layer asks for
#: the same window at every step, and checking it took a quarter of a small convolution's call
_conv_call = functools.lru_cache(maxsize=256)(_conv_window)


def _conv(x, weight, bias, stride, padding, dilation, groups, ndim, relu=False):
    x, weight, bias, out_shape, args = _conv_setup(x, weight, bias, stride, padding, dilation, groups, ndim)
    backend = backend_of(x, weight, bias)
    kernel = kernels(backend).conv
    forward = kernel.conv_forward_relu if checks.flag(relu, "relu") else kernel.conv_forward
    out = empty(out_shape, x.dtype, backend)
    if bias is None:
        bias = zeros(weight.shape[0], x.dtype, backend)
    forward(_as_3d_spatial(x), _as_3d_spatial(weight), bias, _as_3d_spatial(out), *args)
    return out


def _conv_backward(grad_output, x, weight, bias, stride, padding, dilation, groups, ndim, needs_input_grad, out):
    x, weight, bias, out_shape, args = _conv_setup(x, weight, bias, stride, padding, dilation, groups, ndim)
    needs_input_grad = checks.flag(needs_input_grad, "needs_input_grad")
    grad_output = _float_array(grad_output, "grad_output", ndim + 2, x.dtype)
    _check_shape(grad_output, out_shape, "grad_output")
    backend = backend_of(grad_output, x, weight, bias)
    k = kernels(backend)
    grad_input = None
    grad_weight, grad_bias = _gradient_arrays(out, weight, bias, x.dtype, backend)
    g3 = _as_3d_spatial(grad_output)
    if needs_input_grad:
        grad_input = empty(x.shape, x.dtype, backend)
        k.conv.conv_grad_input(g3, _as_3d_spatial(weight), _as_3d_spatial(grad_input), *args)
    k.conv.conv_grad_weight(g3, _as_3d_spatial(x), _as_3d_spatial(grad_weight), *args)
    if bias is not None:
        k.dense.bias_grad(grad_output.reshape(out_shape[0], out_shape[1], -1), grad_bias)
    return grad_input, grad_weight, grad_bias


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, relu=False):
    """1D convolution (cross-correlation, as in PyTorch). input (N, C, L); weight (O, C // groups, K); bias (O,)
    or None. ``padding`` is an int, a 1-tuple, 'valid' or 'same'. Returns (N, O, L_out). With ``relu``, the ReLU
    of that, applied as each output is stored (``relu(conv1d(...))`` in one pass over the output; NaN stays NaN)."""
    return _conv(input, weight, bias, stride, padding, dilation, groups, 1, relu)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, relu=False):
    """2D convolution. input (N, C, H, W); weight (O, C // groups, KH, KW); bias (O,) or None.
    Returns (N, O, H_out, W_out); with ``relu``, its ReLU, as ``conv1d``."""
    return _conv(input, weight, bias, stride, padding, dilation, groups, 2, relu)


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, relu=False):
    """3D convolution. input (N, C, D, H, W); weight (O, C // groups, KD, KH, KW); bias (O,) or None.
    Returns (N, O, D_out, H_out, W_out); with ``relu``, its ReLU, as ``conv1d``."""
    return _conv(input, weight, bias, stride, padding, dilation, groups, 3, relu)


def bind_conv(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, relu=False):
    """The convolution ``conv1d``, ``conv2d`` or ``conv3d`` (by ``input``'s dimensions) checked once, for inputs of
    ``input``'s shape, dtype and backend: returns ``run(x)``, which gives the same as the matching ``convNd(x, weight,
    bias, ...)`` (its ReLU with ``relu``) and checks of ``x`` only that it is such an array (a TypeError or ValueError
    otherwise), for calls repeated on one geometry, such as an inference session's steps: the checks, the window
    arithmetic and the choice of the kernels are not done again (a small convolution's call took 19 us, 14 of them
    there, and 70-130 us when Python's objects had left the caches, against 3 and 15 for the kernel alone). ``run``
    reads ``weight`` and ``bias`` at every call: the arrays given here, which must keep their shapes and dtype."""
    x = _float_array(input, "input", min_ndim=3)
    if x.ndim > 5:
        raise ValueError(f"input must have 1 to 3 spatial dimensions, got shape {tuple(x.shape)}")
    ndim = x.ndim - 2
    x, weight, bias, out_shape, args = _conv_setup(x, weight, bias, stride, padding, dilation, groups, ndim)
    backend = backend_of(x, weight, bias)
    kernel = kernels(backend).conv
    forward = kernel.conv_forward_relu if checks.flag(relu, "relu") else kernel.conv_forward
    if bias is None:
        bias = zeros(weight.shape[0], x.dtype, backend)
    weight5, shape, dtype = _as_3d_spatial(weight), tuple(x.shape), x.dtype
    in_shape5, out_shape5 = _as_3d_shape(shape), _as_3d_shape(out_shape)

    def run(x):
        if not (type(x) is np.ndarray and backend == "cpu" and x.shape == shape and x.dtype == dtype
                and x.flags.c_contiguous and x.flags.writeable):
            x = _float_array(x, "input", ndim + 2)
            if x.dtype != dtype:
                raise TypeError(f"input has dtype {x.dtype}; the convolution was bound to {dtype} inputs")
            _check_shape(x, shape, "input")
            backend_of(x, weight, bias)  # a TypeError where host and device arrays mix
        out = empty(out_shape, dtype, backend)
        forward(x.reshape(in_shape5), weight5, bias, out.reshape(out_shape5), *args)
        return out

    return run


def conv1d_backward(grad_output, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
                     needs_input_grad=True, out=None):
    """Gradients of ``conv1d``: (grad_input or None if not ``needs_input_grad``, grad_weight, grad_bias or None);
    ``out``, a (grad_weight, grad_bias) pair of arrays, receives the last two instead of new arrays."""
    return _conv_backward(grad_output, input, weight, bias, stride, padding, dilation, groups, 1, needs_input_grad,
                          out)


def conv2d_backward(grad_output, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
                     needs_input_grad=True, out=None):
    """Gradients of ``conv2d``: (grad_input or None if not ``needs_input_grad``, grad_weight, grad_bias or None);
    ``out``, a (grad_weight, grad_bias) pair of arrays, receives the last two instead of new arrays."""
    return _conv_backward(grad_output, input, weight, bias, stride, padding, dilation, groups, 2, needs_input_grad,
                          out)


def conv3d_backward(grad_output, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
                     needs_input_grad=True, out=None):
    """Gradients of ``conv3d``: (grad_input or None if not ``needs_input_grad``, grad_weight, grad_bias or None);
    ``out``, a (grad_weight, grad_bias) pair of arrays, receives the last two instead of new arrays."""
    return _conv_backward(grad_output, input, weight, bias, stride, padding, dilation, groups, 3, needs_input_grad,
                          out)


# --- transposed convolution ---------------------------------------------------------------------------------------
# The adjoint of a convolution: its forward is the convolution's input gradient, its input gradient the
# convolution's forward, its weight gradient the convolution's with the two operands exchanged, so it runs on the
# same proven (and tuned) kernels.


def _conv_transpose_setup(x, weight, bias, stride, padding, output_padding, groups, dilation, ndim):
    x = _float_array(x, "input", ndim + 2)
    weight = _float_array(weight, "weight", ndim + 2, x.dtype)
    groups = checks.integer(groups, "groups", 1)
    if weight.shape[0] != x.shape[1]:
        raise ValueError(f"weight of a transposed convolution has shape (in_channels, out_channels // groups, "
                         f"*kernel); its {weight.shape[0]} input channels do not match the input's {x.shape[1]}")
    out_channels = weight.shape[1] * groups
    geometry.check_groups(out_channels, weight.shape, groups)
    if bias is not None:
        bias = _float_array(bias, "bias", 1, x.dtype)
        _check_shape(bias, (out_channels,), "bias")
    window = (stride, padding, output_padding, dilation)
    if _plain_ints(window, 3):
        out_spatial, triples = _conv_transpose_call(x.shape[2:], weight.shape[2:], *window)
    else:
        out_spatial, triples = _conv_transpose_window(x.shape[2:], weight.shape[2:], *window)
    out_shape = (x.shape[0], out_channels) + out_spatial
    return x, weight, bias, out_shape, triples + (groups,)


def _conv_transpose_window(shape, kernel_size, stride, padding, output_padding, dilation) -> tuple:
    """(the output's spatial shape, the kernels' (stride, padding, dilation) as triples) of a transposed
    convolution of spatial ``shape``, after checking the window."""
    geo = geometry.conv_transpose_geometry(shape, kernel_size, stride, padding, output_padding, dilation)
    return geo.input_shape, (_triple(geo.stride, 1), _triple(geo.padding, 0), _triple(geo.dilation, 1))


#: ``_conv_transpose_window``, remembered for window parameters of plain ints (as ``_conv_call``)
_conv_transpose_call = functools.lru_cache(maxsize=256)(_conv_transpose_window)


def _conv_transpose(x, weight, bias, stride, padding, output_padding, groups, dilation, ndim):
    x, weight, bias, out_shape, args = _conv_transpose_setup(x, weight, bias, stride, padding, output_padding,
                                                             groups, dilation, ndim)
    backend = backend_of(x, weight, bias)
    k = kernels(backend)
    out = empty(out_shape, x.dtype, backend)
    k.conv.conv_grad_input(_as_3d_spatial(x), _as_3d_spatial(weight), _as_3d_spatial(out), *args)
    if bias is not None:
        k.dense.bias_add(out.reshape(out_shape[0], out_shape[1], -1), bias)
    return out


def _conv_transpose_backward(grad_output, x, weight, bias, stride, padding, output_padding, groups, dilation, ndim,
                             needs_input_grad, out):
    x, weight, bias, out_shape, args = _conv_transpose_setup(x, weight, bias, stride, padding, output_padding,
                                                             groups, dilation, ndim)
    needs_input_grad = checks.flag(needs_input_grad, "needs_input_grad")
    grad_output = _float_array(grad_output, "grad_output", ndim + 2, x.dtype)
    _check_shape(grad_output, out_shape, "grad_output")
    backend = backend_of(grad_output, x, weight, bias)
    k = kernels(backend)
    g5 = _as_3d_spatial(grad_output)
    grad_input = None
    if needs_input_grad:
        grad_input = empty(x.shape, x.dtype, backend)
        k.conv.conv_forward(g5, _as_3d_spatial(weight), zeros(weight.shape[0], x.dtype, backend),
                            _as_3d_spatial(grad_input), *args)
    grad_weight, grad_bias = _gradient_arrays(out, weight, bias, x.dtype, backend)
    k.conv.conv_grad_weight(_as_3d_spatial(x), g5, _as_3d_spatial(grad_weight), *args)
    if bias is not None:
        k.dense.bias_grad(grad_output.reshape(out_shape[0], out_shape[1], -1), grad_bias)
    return grad_input, grad_weight, grad_bias


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """1D transposed convolution (PyTorch's conv_transpose1d, the gradient of conv1d with respect to its input).
    input (N, C, L); weight (C, O // groups, K); bias (O,) or None. Returns (N, O, L_out) with
    L_out = (L - 1)·stride - 2·padding + dilation·(K - 1) + output_padding + 1."""
    return _conv_transpose(input, weight, bias, stride, padding, output_padding, groups, dilation, 1)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """2D transposed convolution. input (N, C, H, W); weight (C, O // groups, KH, KW); bias (O,) or None.
    Returns (N, O, H_out, W_out), each size as in :func:`conv_transpose1d`."""
    return _conv_transpose(input, weight, bias, stride, padding, output_padding, groups, dilation, 2)


def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """3D transposed convolution. input (N, C, D, H, W); weight (C, O // groups, KD, KH, KW); bias (O,) or None.
    Returns (N, O, D_out, H_out, W_out)."""
    return _conv_transpose(input, weight, bias, stride, padding, output_padding, groups, dilation, 3)


def conv_transpose1d_backward(grad_output, input, weight, bias=None, stride=1, padding=0, output_padding=0,
                              groups=1, dilation=1, needs_input_grad=True, out=None):
    """Gradients of ``conv_transpose1d``: (grad_input or None, grad_weight, grad_bias or None); ``out`` as in
    :func:`conv1d_backward`."""
    return _conv_transpose_backward(grad_output, input, weight, bias, stride, padding, output_padding, groups,
                                    dilation, 1, needs_input_grad, out)


def conv_transpose2d_backward(grad_output, input, weight, bias=None, stride=1, padding=0, output_padding=0,
                              groups=1, dilation=1, needs_input_grad=True, out=None):
    """Gradients of ``conv_transpose2d``: (grad_input or None, grad_weight, grad_bias or None); ``out`` as in
    :func:`conv2d_backward`."""
    return _conv_transpose_backward(grad_output, input, weight, bias, stride, padding, output_padding, groups,
                                    dilation, 2, needs_input_grad, out)


def conv_transpose3d_backward(grad_output, input, weight, bias=None, stride=1, padding=0, output_padding=0,
                              groups=1, dilation=1, needs_input_grad=True, out=None):
    """Gradients of ``conv_transpose3d``: (grad_input or None, grad_weight, grad_bias or None); ``out`` as in
    :func:`conv3d_backward`."""
    return _conv_transpose_backward(grad_output, input, weight, bias, stride, padding, output_padding, groups,
                                    dilation, 3, needs_input_grad, out)


# --- pooling ------------------------------------------------------------------------------------------------------


def _pool_setup(x, kernel_size, stride, padding, dilation, ceil_mode, ndim):
    """(x validated, the kernels' window, the output's shape) of a pooling (``_pool_window``)."""
    x = _float_array(x, "input", ndim + 2)
    if type(ceil_mode) is bool and _plain_ints((kernel_size, stride, padding, dilation), 3):
        out_spatial, window = _pool_call(tuple(x.shape[2:]), kernel_size, stride, padding, dilation, ceil_mode)
    else:
        out_spatial, window = _pool_window(x.shape[2:], kernel_size, stride, padding, dilation, ceil_mode)
    return x, window, x.shape[:2] + out_spatial


def _plain_ints(value, depth: int = 2) -> bool:
    """Whether ``value`` is None, an int, or a tuple of those (nested up to ``depth``), with no other types: then
    equal values validate alike, and a geometry can be remembered for them."""
    if value is None or type(value) is int:
        return True
    if depth == 0 or type(value) is not tuple:
        return False
    for item in value:  # a loop, not all() over a generator: this runs on every call of a layer
        if type(item) is not int and not _plain_ints(item, depth - 1):  # an int item needs no call
            return False
    return True


def _pool_window(shape, kernel_size, stride, padding, dilation, ceil_mode) -> tuple:
    """(the output's spatial shape, the kernels' window: kernel, stride, padding, dilation and the padding past the
    end, as triples) of a pooling of spatial ``shape``, after checking the window."""
    geo = geometry.pool_geometry(shape, kernel_size, stride, padding, dilation, ceil_mode)
    return geo.output_shape, (_triple(geo.kernel_size, 1), _triple(geo.stride, 1), _triple(geo.padding, 0),
                              _triple(geo.dilation, 1), _triple(geo.padding_end, 0))


#: ``_pool_window``, remembered for window parameters of plain ints: a layer asks for the same window at every step
_pool_call = functools.lru_cache(maxsize=256)(_pool_window)


def _max_pool(x, kernel_size, stride, padding, dilation, ceil_mode, return_indices, ndim):
    return_indices = checks.flag(return_indices, "return_indices")
    x, (kernel, stride, padding, dilation, _), out_shape = _pool_setup(x, kernel_size, stride, padding, dilation,
                                                                        ceil_mode, ndim)
    backend = backend_of(x)
    out = empty(out_shape, x.dtype, backend)
    window = (kernel, stride, padding, dilation)
    if not return_indices:
        kernels(backend).pool.max_pool_forward_values(_as_3d_spatial(x), _as_3d_spatial(out), *window)
        return out
    indices = empty(out_shape, np.int64, backend)
    kernels(backend).pool.max_pool_forward(_as_3d_spatial(x), _as_3d_spatial(out), _as_3d_spatial(indices), *window)
    return out, indices


def _max_pool_backward(grad_output, x, kernel_size, stride, padding, dilation, ceil_mode, indices, ndim):
    x, window, out_shape = _pool_setup(x, kernel_size, stride, padding, dilation, ceil_mode, ndim)
    grad_output = _float_array(grad_output, "grad_output", ndim + 2, x.dtype)
    _check_shape(grad_output, out_shape, "grad_output")
    if indices is None:
        _, indices = _max_pool(x, kernel_size, stride, padding, dilation, ceil_mode, True, ndim)
    else:
        indices = _indices_array(indices, out_shape)
    backend = backend_of(grad_output, x, indices)
    grad_input = empty(x.shape, x.dtype, backend)
    # the kernel checks the indices' range as it scatters (a separate pass cost an eighth of the backward)
    outside = kernels(backend).pool.max_pool_backward(
        _as_3d_spatial(grad_output), _as_3d_spatial(indices), _as_3d_spatial(grad_input), *window[:4])
    if outside:
        plane = int(np.prod(x.shape[2:]))
        values = indices.copy_to_host() if is_device_array(indices) else indices
        raise ValueError(f"indices must lie in [0, {plane}) (flat within each plane), got values from "
                         f"{values.min()} to {values.max()}")
    return (grad_input,)


def _indices_array(indices, out_shape):
    """max_pool's indices, checked for dtype and shape and made contiguous where they are (host or device); their
    range is checked by the kernel that reads them."""
    on_device = is_device_array(indices)
    indices = as_device_array(indices) if on_device else np.asarray(indices)
    if indices.dtype != np.int64:
        raise TypeError(f"indices must be int64 as max_pool returns them, got dtype {indices.dtype}")
    _check_shape(indices, out_shape, "indices")
    return _device_contiguous(indices) if on_device else np.ascontiguousarray(indices)


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """1D max pooling. input (N, C, L). With ``return_indices`` also returns int64 indices of each maximum, flat
    within each (n, c) row; ties go to the first maximum."""
    return _max_pool(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 1)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """2D max pooling. input (N, C, H, W); indices are flat within each (H, W) plane (h * W + w)."""
    return _max_pool(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 2)


def max_pool3d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """3D max pooling. input (N, C, D, H, W); indices are flat within each (D, H, W) volume."""
    return _max_pool(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 3)


def max_pool1d_backward(grad_output, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                        return_indices=False, indices=None):
    """Gradient of ``max_pool1d``: (grad_input,). Pass the forward's ``indices`` to skip the search."""
    return _max_pool_backward(grad_output, input, kernel_size, stride, padding, dilation, ceil_mode, indices, 1)


def max_pool2d_backward(grad_output, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                        return_indices=False, indices=None):
    """Gradient of ``max_pool2d``: (grad_input,). Pass the forward's ``indices`` to skip the search."""
    return _max_pool_backward(grad_output, input, kernel_size, stride, padding, dilation, ceil_mode, indices, 2)


def max_pool3d_backward(grad_output, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                        return_indices=False, indices=None):
    """Gradient of ``max_pool3d``: (grad_input,). Pass the forward's ``indices`` to skip the search."""
    return _max_pool_backward(grad_output, input, kernel_size, stride, padding, dilation, ceil_mode, indices, 3)


def _avg_pool(x, kernel_size, stride, padding, ceil_mode, count_include_pad, ndim):
    x, (kernel, stride, padding, _, padding_end), out_shape = _pool_setup(x, kernel_size, stride, padding, 1,
                                                                           ceil_mode, ndim)
    include = checks.flag(count_include_pad, "count_include_pad")
    backend = backend_of(x)
    out = empty(out_shape, x.dtype, backend)
    kernels(backend).pool.avg_pool_forward(_as_3d_spatial(x), _as_3d_spatial(out), kernel, stride, padding,
                                           padding_end, include)
    return out


def _avg_pool_backward(grad_output, x, kernel_size, stride, padding, ceil_mode, count_include_pad, ndim):
    x, (kernel, stride, padding, _, padding_end), out_shape = _pool_setup(x, kernel_size, stride, padding, 1,
                                                                           ceil_mode, ndim)
    include = checks.flag(count_include_pad, "count_include_pad")
    grad_output = _float_array(grad_output, "grad_output", ndim + 2, x.dtype)
    _check_shape(grad_output, out_shape, "grad_output")
    backend = backend_of(grad_output, x)
    grad_input = empty(x.shape, x.dtype, backend)
    kernels(backend).pool.avg_pool_backward(_as_3d_spatial(grad_output), _as_3d_spatial(grad_input), kernel, stride,
                                            padding, padding_end, include)
    return (grad_input,)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """1D average pooling. input (N, C, L)."""
    return _avg_pool(input, kernel_size, stride, padding, ceil_mode, count_include_pad, 1)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """2D average pooling. input (N, C, H, W)."""
    return _avg_pool(input, kernel_size, stride, padding, ceil_mode, count_include_pad, 2)


def avg_pool3d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """3D average pooling. input (N, C, D, H, W)."""
    return _avg_pool(input, kernel_size, stride, padding, ceil_mode, count_include_pad, 3)


def avg_pool1d_backward(grad_output, input, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True):
    """Gradient of ``avg_pool1d``: (grad_input,)."""
    return _avg_pool_backward(grad_output, input, kernel_size, stride, padding, ceil_mode, count_include_pad, 1)


def avg_pool2d_backward(grad_output, input, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True):
    """Gradient of ``avg_pool2d``: (grad_input,)."""
    return _avg_pool_backward(grad_output, input, kernel_size, stride, padding, ceil_mode, count_include_pad, 2)


def avg_pool3d_backward(grad_output, input, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True):
    """Gradient of ``avg_pool3d``: (grad_input,)."""
    return _avg_pool_backward(grad_output, input, kernel_size, stride, padding, ceil_mode, count_include_pad, 3)


def global_avg_pool(input):
    """Mean over every spatial axis (Network in Network's classifier). input (N, C, *spatial) -> (N, C)."""
    x = _float_array(input, "input", min_ndim=3)
    backend = backend_of(x)
    out = empty(x.shape[:2], x.dtype, backend)
    kernels(backend).pool.global_avg_pool_forward(x.reshape(x.shape[0], x.shape[1], -1), out)
    return out


def global_avg_pool_backward(grad_output, input):
    """Gradient of ``global_avg_pool``: (grad_input,)."""
    x = _float_array(input, "input", min_ndim=3)
    grad_output = _float_array(grad_output, "grad_output", 2, x.dtype)
    _check_shape(grad_output, x.shape[:2], "grad_output")
    backend = backend_of(grad_output, x)
    grad_input = empty(x.shape, x.dtype, backend)
    kernels(backend).pool.global_avg_pool_backward(grad_output, grad_input.reshape(x.shape[0], x.shape[1], -1))
    return (grad_input,)


# --- dense and element-wise ---------------------------------------------------------------------------------------


def _linear_setup(x, weight, bias):
    x = _float_array(x, "input", min_ndim=1)
    weight = _float_array(weight, "weight", 2, x.dtype)
    features = tuple(x.shape)[-1]
    if features != weight.shape[1]:
        raise ValueError(
            f"input has {features} features (shape {x.shape}) but weight of shape {weight.shape} expects "
            f"{weight.shape[1]}"
        )
    if bias is not None:
        bias = _float_array(bias, "bias", 1, x.dtype)
        _check_shape(bias, (weight.shape[0],), "bias")
    return x, weight, bias


def linear(input, weight, bias=None):
    """y = x W^T + b. input (*, in_features); weight (out_features, in_features); bias (out_features,) or None.
    Returns (*, out_features)."""
    x, weight, bias = _linear_setup(input, weight, bias)
    backend = backend_of(x, weight, bias)
    out = empty(tuple(x.shape)[:-1] + (weight.shape[0],), x.dtype, backend)
    if bias is None:
        bias = zeros(weight.shape[0], x.dtype, backend)
    kernels(backend).dense.linear_forward(
        x.reshape(-1, tuple(x.shape)[-1]), weight, bias, out.reshape(-1, weight.shape[0])
    )
    return out


def linear_backward(grad_output, input, weight, bias=None, needs_input_grad=True, out=None):
    """Gradients of ``linear``: (grad_input or None if not ``needs_input_grad``, grad_weight, grad_bias or None);
    ``out``, a (grad_weight, grad_bias) pair of arrays, receives the last two instead of new arrays."""
    x, weight, bias = _linear_setup(input, weight, bias)
    needs_input_grad = checks.flag(needs_input_grad, "needs_input_grad")
    grad_output = _float_array(grad_output, "grad_output", x.ndim, x.dtype)
    _check_shape(grad_output, tuple(x.shape)[:-1] + (weight.shape[0],), "grad_output")
    backend = backend_of(grad_output, x, weight, bias)
    k = kernels(backend)
    g2 = grad_output.reshape(-1, weight.shape[0])
    grad_input = None
    grad_weight, grad_bias = _gradient_arrays(out, weight, bias, x.dtype, backend)
    features = tuple(x.shape)[-1]
    if needs_input_grad:
        grad_input = empty(x.shape, x.dtype, backend)
        k.dense.linear_grad_input(g2, weight, grad_input.reshape(-1, features))
    k.dense.linear_grad_weight(g2, x.reshape(-1, features), grad_weight)
    if bias is not None:
        k.dense.bias_grad(g2.reshape(g2.shape[0], g2.shape[1], 1), grad_bias)
    return grad_input, grad_weight, grad_bias


def add(input, other):
    """input + other, element-wise, for arrays of the same shape (a residual connection's join)."""
    x, y, backend = _same_shapes(input, other)
    out = empty(x.shape, x.dtype, backend)
    kernels(backend).pointwise.add_forward(x.reshape(-1), y.reshape(-1), out.reshape(-1))
    return out


def add_backward(grad_output):
    """Gradients of ``add``: (grad_input, grad_other), both grad_output itself."""
    grad_output = _float_array(grad_output, "grad_output")
    return grad_output, grad_output


def _cat_setup(tensors, dim):
    if not isinstance(tensors, (list, tuple)):
        raise TypeError(f"tensors must be a list or tuple of arrays, got {type(tensors).__name__}")
    if not tensors:
        raise ValueError("tensors must hold at least one array, got none")
    dim = checks.integer(dim, "dim", None)
    parts = [_float_array(tensors[0], "tensors[0]", min_ndim=2)]
    if dim not in (1, 1 - parts[0].ndim):
        raise ValueError(f"numconv concatenates along the channel axis only (dim=1), got dim={dim}")
    for k, part in enumerate(tensors[1:], 1):
        part = _float_array(part, f"tensors[{k}]", parts[0].ndim, parts[0].dtype)
        if part.shape[0] != parts[0].shape[0] or part.shape[2:] != parts[0].shape[2:]:
            raise ValueError(f"tensors[{k}] has shape {tuple(part.shape)}; every array must match tensors[0]'s "
                             f"{tuple(parts[0].shape)} except along the channels")
        parts.append(part)
    out_shape = (parts[0].shape[0], sum(part.shape[1] for part in parts)) + tuple(parts[0].shape[2:])
    return parts, out_shape


def cat(tensors, dim=1):
    """The arrays one after another along the channel axis (dim=1), as torch.cat: (N, C_k, *spatial) ->
    (N, sum C_k, *spatial) (SqueezeNet's and Inception's joins)."""
    parts, out_shape = _cat_setup(tensors, dim)
    backend = backend_of(*parts)
    out = empty(out_shape, parts[0].dtype, backend)
    offset = 0
    for part in parts:
        kernels(backend).pointwise.concat_channels_forward(part.reshape(part.shape[0], part.shape[1], -1),
                                                           out.reshape(out_shape[0], out_shape[1], -1), offset)
        offset += part.shape[1]
    return out


def cat_backward(grad_output, tensors, dim=1):
    """Gradients of ``cat``: one per array, the matching channels of grad_output."""
    parts, out_shape = _cat_setup(tensors, dim)
    grad_output = _float_array(grad_output, "grad_output", len(out_shape), parts[0].dtype)
    _check_shape(grad_output, out_shape, "grad_output")
    backend = backend_of(grad_output, *parts)
    grads, offset = [], 0
    for part in parts:
        grad = empty(part.shape, part.dtype, backend)
        kernels(backend).pointwise.concat_channels_backward(
            grad_output.reshape(out_shape[0], out_shape[1], -1), grad.reshape(part.shape[0], part.shape[1], -1),
            offset)
        grads.append(grad)
        offset += part.shape[1]
    return tuple(grads)


def _elementwise(module: str, kernel_name: str, input, *scalars, inplace: bool = False):
    """out = the element-wise kernel ``module.kernel_name`` of input, any shape; ``out`` is ``input`` itself when
    ``inplace``. ``scalars`` are taken in the input's dtype, as PyTorch takes them: a float32 LeakyReLU multiplies by
    float32(slope), the value an ONNX attribute holds, so that a model and its ONNX round trip agree bit for bit."""
    x = _float_array(input, "input")
    backend = backend_of(x)
    if inplace and not (as_device_array(input).is_c_contiguous() if is_device_array(input) else x is input):
        raise ValueError("inplace=True writes into input, which must then be a C-contiguous, writeable float array; "
                         f"got a {type(input).__name__} that would have to be copied first")
    out = x if inplace else empty(x.shape, x.dtype, backend)
    getattr(getattr(kernels(backend), module), kernel_name)(x.reshape(-1), *map(x.dtype.type, scalars),
                                                            out.reshape(-1))
    return out


def _elementwise_backward(module: str, kernel_name: str, grad_output, saved, saved_name: str, *scalars):
    """(grad_input,) of an element-wise op from what its backward reads (its input or its output); ``scalars`` in
    its dtype, as the forward's."""
    saved = _float_array(saved, saved_name)
    grad_output = _float_array(grad_output, "grad_output", saved.ndim, saved.dtype)
    _check_shape(grad_output, saved.shape, "grad_output")
    backend = backend_of(grad_output, saved)
    grad_input = empty(saved.shape, saved.dtype, backend)
    getattr(getattr(kernels(backend), module), kernel_name)(grad_output.reshape(-1), saved.reshape(-1),
                                                            *map(saved.dtype.type, scalars), grad_input.reshape(-1))
    return (grad_input,)


def relu(input, inplace=False):
    """max(x, 0), element-wise, any shape. With ``inplace``, as PyTorch's, the result is written into ``input``
    (which must be C-contiguous and writeable) and ``input`` is returned."""
    return _elementwise("pointwise", "relu_forward", input, inplace=checks.flag(inplace, "inplace"))


def relu_backward(grad_output, input):
    """Gradient of ``relu``: (grad_input,), grad_output where input > 0, else 0."""
    return _elementwise_backward("pointwise", "relu_backward", grad_output, input, "input")


def _same_shapes(input, other):
    """Two float arrays of one shape, dtype and backend, for an element-wise op of two operands."""
    x = _float_array(input, "input")
    y = _float_array(other, "other", dtype=x.dtype)
    _check_shape(y, x.shape, "other")
    return x, y, backend_of(x, y)


def mul(input, other):
    """input * other, element-wise, for arrays of the same shape (a gate, or ONNX's Mul)."""
    x, y, backend = _same_shapes(input, other)
    out = empty(x.shape, x.dtype, backend)
    kernels(backend).activation.multiply_forward(x.reshape(-1), y.reshape(-1), out.reshape(-1))
    return out


def mul_backward(grad_output, input, other):
    """Gradients of ``mul``: (grad_input, grad_other) = (grad_output * other, grad_output * input)."""
    x, y, backend = _same_shapes(input, other)
    grad_output = _float_array(grad_output, "grad_output", x.ndim, x.dtype)
    _check_shape(grad_output, x.shape, "grad_output")
    backend = backend_of(grad_output, x, y)
    grads = []
    for factor in (y, x):
        grad = empty(x.shape, x.dtype, backend)
        kernels(backend).activation.multiply_forward(grad_output.reshape(-1), factor.reshape(-1), grad.reshape(-1))
        grads.append(grad)
    return tuple(grads)


def leaky_relu(input, negative_slope=0.01):
    """x where x > 0, else negative_slope * x, element-wise, any shape."""
    return _elementwise("activation", "leaky_relu_forward", input, checks.real(negative_slope, "negative_slope"))


def leaky_relu_backward(grad_output, input, negative_slope=0.01):
    """Gradient of ``leaky_relu``: (grad_input,)."""
    return _elementwise_backward("activation", "leaky_relu_backward", grad_output, input, "input",
                                 checks.real(negative_slope, "negative_slope"))


def sigmoid(input):
    """The logistic function 1 / (1 + exp(-x)), element-wise, any shape."""
    return _elementwise("activation", "sigmoid_forward", input)


def sigmoid_backward(grad_output, output):
    """Gradient of ``sigmoid`` from its output y: (grad_output * y * (1 - y),)."""
    return _elementwise_backward("activation", "sigmoid_backward", grad_output, output, "output")


def tanh(input):
    """tanh(x), element-wise, any shape."""
    return _elementwise("activation", "tanh_forward", input)


def tanh_backward(grad_output, output):
    """Gradient of ``tanh`` from its output y: (grad_output * (1 - y^2),)."""
    return _elementwise_backward("activation", "tanh_backward", grad_output, output, "output")


def _softmax_rows(x, dim):
    """(rows, K) of x with axis ``dim`` last, and how to put an array of that form back in x's shape."""
    dim = checks.integer(dim, "dim")
    if not -x.ndim <= dim < x.ndim:
        raise ValueError(f"dim must lie in [{-x.ndim}, {x.ndim}) for an input of shape {tuple(x.shape)}, got {dim}")
    dim %= x.ndim
    if all(size == 1 for size in x.shape[dim + 1:]):  # already rows: a view
        shape = tuple(x.shape)
        return x.reshape(-1, shape[dim]), lambda rows: rows.reshape(shape)
    if is_device_array(x):
        raise ValueError(f"softmax on the device runs over the last axis (or one followed by unit axes), got dim={dim} "
                         f"for shape {tuple(x.shape)}")
    moved = np.ascontiguousarray(np.moveaxis(x, dim, -1))
    return moved.reshape(-1, x.shape[dim]), lambda rows: np.ascontiguousarray(
        np.moveaxis(rows.reshape(moved.shape), -1, dim))


def softmax(input, dim=-1):
    """exp(x) / sum of exp(x) along ``dim``, stable for logits of any magnitude (PyTorch's ``F.softmax``)."""
    x = _float_array(input, "input")
    rows, back = _softmax_rows(x, dim)
    backend = backend_of(x)
    out = empty(rows.shape, x.dtype, backend)
    kernels(backend).activation.softmax_forward(rows, out)
    return back(out)


def softmax_backward(grad_output, output, dim=-1):
    """Gradient of ``softmax`` from its output y: (y * (grad_output - sum along dim of grad_output * y),)."""
    y = _float_array(output, "output")
    grad_output = _float_array(grad_output, "grad_output", y.ndim, y.dtype)
    _check_shape(grad_output, y.shape, "grad_output")
    backend = backend_of(grad_output, y)
    y_rows, back = _softmax_rows(y, dim)
    g_rows, _ = _softmax_rows(grad_output, dim)
    grad_input = empty(y_rows.shape, y.dtype, backend)
    kernels(backend).activation.softmax_backward(g_rows, y_rows, grad_input)
    return (back(grad_input),)


def _dropout_scale(p: float) -> float:
    return 0.0 if p == 1.0 else 1.0 / (1.0 - p)


def dropout(input, p=0.5, training=True, rng=None, return_mask=False, *, batch_share=None):
    """Inverted dropout: in training, zero each element with probability ``p`` and scale the rest by 1 / (1 - p);
    in evaluation return the input unchanged.

    ``rng`` is a ``numpy.random.Generator``; with ``None`` a fresh, unseeded one is used (not reproducible).
    With ``return_mask`` also returns the boolean keep-mask, for ``dropout_backward``.

    ``batch_share=(first_row, global_rows)`` says that ``input`` holds rows ``first_row …`` of a global batch of
    ``global_rows`` samples split across processes: the mask is then the part of the mask that one process would
    draw for the whole global batch, and ``rng`` ends where that one process's would. Each sample's mask thus
    depends only on its global row, so N processes drop what one would. ``rng`` must be able to skip ahead
    (numpy's PCG64, the default, or PCG64DXSM).
    """
    p = checks.probability(p)
    training = checks.flag(training, "training")
    return_mask = checks.flag(return_mask, "return_mask")
    x = _float_array(input, "input")
    backend = backend_of(x)
    if not training:
        return (x, _all_kept(tuple(x.shape), backend)) if return_mask else x
    if rng is None:
        rng = np.random.default_rng()
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {rng!r} ({type(rng).__name__})")
    # drawn on the host from the caller's generator, so a seed gives the same mask on every backend
    mask = _keep_mask(rng, tuple(x.shape), p, batch_share)
    if backend == "cuda":
        mask = to_device(mask)
    out = empty(x.shape, x.dtype, backend)
    kernels(backend).pointwise.dropout_forward(x.reshape(-1), mask.reshape(-1), _dropout_scale(p), out.reshape(-1))
    return (out, mask) if return_mask else out


def _keep_mask(rng: np.random.Generator, shape: tuple, p: float, batch_share) -> np.ndarray:
    """Dropout's keep-mask: one uniform double per element, in C order, kept where it is >= p. With
    ``batch_share=(first_row, global_rows)`` only rows ``first_row …`` of the global batch's mask are drawn."""
    if batch_share is None:
        return rng.random(shape, dtype=np.float64) >= p
    first_row, global_rows = _check_batch_share(batch_share, shape[0])
    per_sample = math.prod(shape[1:])
    skip_dropout_draws(rng, first_row * per_sample)
    mask = rng.random(shape, dtype=np.float64) >= p
    skip_dropout_draws(rng, (global_rows - first_row - shape[0]) * per_sample)
    return mask


def _check_batch_share(batch_share, rows: int) -> tuple[int, int]:
    if (not isinstance(batch_share, tuple) or len(batch_share) != 2
            or not all(checks.is_int(value) for value in batch_share)):
        raise TypeError(f"batch_share must be a (first_row, global_rows) pair of ints, got {batch_share!r}")
    first_row, global_rows = (int(value) for value in batch_share)
    if first_row < 0 or first_row + rows > global_rows:
        raise ValueError(f"batch_share={batch_share!r} does not hold this input's {rows} rows")
    return first_row, global_rows


def skip_dropout_draws(rng: np.random.Generator, count: int) -> None:
    """Move ``rng`` past the random numbers of ``count`` mask elements without drawing them (each element of a
    dropout mask takes one 64-bit draw): a process with no rows of a global batch keeps its generator in step
    with the others."""
    # PCG64's advance counts 64-bit draws; Philox's counts blocks of four, and MT19937 and SFC64 cannot skip
    if not isinstance(rng.bit_generator, (np.random.PCG64, np.random.PCG64DXSM)):
        raise TypeError(f"dropout across processes needs a generator that can skip ahead (numpy's PCG64, the "
                        f"default, or PCG64DXSM), got {type(rng.bit_generator).__name__}")
    if count:
        rng.bit_generator.advance(count)


def _all_kept(shape: tuple, backend: str):
    if backend == "cpu":
        return np.ones(shape, dtype=bool)
    mask = empty(shape, np.bool_, backend)
    device_support().fill(mask, True)
    return mask


def dropout_backward(grad_output, mask, p=0.5):
    """Gradient of ``dropout`` in training given its mask: (grad_input,) = grad_output * mask / (1 - p)."""
    p = checks.probability(p)
    grad_output = _float_array(grad_output, "grad_output")
    device = is_device_array(mask)
    mask = as_device_array(mask) if device else np.asarray(mask)
    if mask.dtype != np.bool_:
        raise TypeError(f"mask must be the boolean mask dropout returned, got dtype {mask.dtype}")
    _check_shape(mask, grad_output.shape, "mask")
    mask = _device_contiguous(mask) if device else np.ascontiguousarray(mask)
    backend = backend_of(grad_output, mask)
    grad_input = empty(grad_output.shape, grad_output.dtype, backend)
    kernels(backend).pointwise.dropout_backward(
        grad_output.reshape(-1), mask.reshape(-1), _dropout_scale(p), grad_input.reshape(-1)
    )
    return (grad_input,)


# --- normalisation and loss ---------------------------------------------------------------------------------------


def _lrn_setup(x, size, alpha, beta, k):
    x = _float_array(x, "input", min_ndim=3)
    return x, (checks.integer(size, "size", 1), checks.real(alpha, "alpha"), checks.real(beta, "beta"),
               checks.real(k, "k"))


def local_response_norm(input, size, alpha=1e-4, beta=0.75, k=1.0):
    """Local response normalisation across channels (AlexNet), PyTorch's formula:
    y = x / (k + alpha / size * sum of x^2 over ``size`` neighbouring channels) ** beta. input (N, C, *)."""
    x, params = _lrn_setup(input, size, alpha, beta, k)
    backend = backend_of(x)
    out = empty(x.shape, x.dtype, backend)
    flat = (x.shape[0], x.shape[1], -1)
    kernels(backend).norm.lrn_forward(x.reshape(flat), out.reshape(flat), *params)
    return out


def local_response_norm_backward(grad_output, input, size, alpha=1e-4, beta=0.75, k=1.0):
    """Gradient of ``local_response_norm``: (grad_input,)."""
    x, params = _lrn_setup(input, size, alpha, beta, k)
    grad_output = _float_array(grad_output, "grad_output", x.ndim, x.dtype)
    _check_shape(grad_output, x.shape, "grad_output")
    backend = backend_of(grad_output, x)
    grad_input = empty(x.shape, x.dtype, backend)
    flat = (x.shape[0], x.shape[1], -1)
    kernels(backend).norm.lrn_backward(grad_output.reshape(flat), x.reshape(flat), grad_input.reshape(flat), *params)
    return (grad_input,)


def _channel_vector(value, name: str, x, writeable: bool = False):
    """A (C,) array of x's dtype on x's backend, for per-channel parameters and statistics. ``writeable``: it is
    updated in place (running statistics), so it must already be the contiguous array the caller holds."""
    if value is None:
        return None
    channels = x.shape[1]
    if writeable:
        device = is_device_array(value)
        array = as_device_array(value) if device else value
        if not device and not isinstance(array, np.ndarray):
            raise TypeError(f"{name} must be a numpy or device array (it is updated in place), got "
                            f"{type(value).__name__}")
        if array.dtype != x.dtype:
            raise TypeError(f"{name} has dtype {array.dtype} but the input has dtype {x.dtype}; convert one of them")
        contiguous = array.is_c_contiguous() if device else (array.flags.c_contiguous and array.flags.writeable)
        if not contiguous:
            raise ValueError(f"{name} must be a writeable C-contiguous array: it is updated in place")
    else:
        array = _float_array(value, name, 1, x.dtype)
    _check_shape(array, (channels,), name)
    return array


def _batch_norm_setup(x, running_mean, running_var, weight, bias, training, momentum, eps):
    x = _float_array(x, "input", min_ndim=2)
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"training must be a bool, got {training!r}")
    eps = checks.real(eps, "eps", above=0.0)
    momentum = checks.probability(momentum, "momentum")
    # in training the running statistics are updated in place; in evaluation they are only read
    running_mean = _channel_vector(running_mean, "running_mean", x, writeable=bool(training))
    running_var = _channel_vector(running_var, "running_var", x, writeable=bool(training))
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must both be arrays or both be None")
    if not training and running_mean is None:
        raise ValueError("batch_norm with training=False needs running_mean and running_var")
    count = x.size // x.shape[1]
    if training and count < 2:
        raise ValueError(f"batch_norm in training needs more than one value per channel, got input of shape "
                         f"{tuple(x.shape)}")
    weight = _channel_vector(weight, "weight", x)
    bias = _channel_vector(bias, "bias", x)
    backend = backend_of(x, running_mean, running_var, weight, bias)
    return x, running_mean, running_var, weight, bias, bool(training), momentum, eps, backend


def _batch_statistics(x, backend):
    """The batch's per-channel mean and biased variance: (C,) arrays on x's backend."""
    mean, var = empty((x.shape[1],), x.dtype, backend), empty((x.shape[1],), x.dtype, backend)
    kernels(backend).norm.batch_norm_statistics(x.reshape(x.shape[0], x.shape[1], -1), mean, var)
    return mean, var


def _ones_if_none(weight, x, backend):
    return weight if weight is not None else to_backend(np.ones(x.shape[1], dtype=x.dtype), backend)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Batch normalisation (Ioffe and Szegedy 2015), PyTorch's ``F.batch_norm``: per channel c,
    y = (x - mean[c]) / sqrt(var[c] + eps) * weight[c] + bias[c]. input (N, C, *); the rest (C,) or None.

    ``training``: mean and var are the batch's (biased variance), and running_mean/running_var (when given) are
    updated in place, r = (1 - momentum) r + momentum * batch value, the variance made unbiased (M / (M - 1), M the
    values per channel) as PyTorch keeps it. Otherwise the running statistics are used and left alone."""
    x, running_mean, running_var, weight, bias, training, momentum, eps, backend = _batch_norm_setup(
        input, running_mean, running_var, weight, bias, training, momentum, eps)
    k = kernels(backend).norm
    if training:
        mean, var = _batch_statistics(x, backend)
        if running_mean is not None:
            count = x.size // x.shape[1]
            k.running_average(running_mean, mean, momentum, 1.0)
            k.running_average(running_var, var, momentum, count / (count - 1))
    else:
        mean, var = running_mean, running_var
    weight = _ones_if_none(weight, x, backend)
    bias = bias if bias is not None else zeros((x.shape[1],), x.dtype, backend)
    out = empty(x.shape, x.dtype, backend)
    flat = (x.shape[0], x.shape[1], -1)
    k.batch_norm_forward(x.reshape(flat), mean, var, weight, bias, eps, out.reshape(flat))
    return out


def batch_norm_backward(grad_output, input, running_mean, running_var, weight=None, bias=None, training=False,
                        eps=1e-5, out=None):
    """Gradients of ``batch_norm``: (grad_input, grad_weight, grad_bias), the last two None where weight or bias
    is. With ``training`` the mean and variance are the batch's, recomputed from ``input`` (functions of it);
    otherwise the running statistics, constants. The running statistics are not updated. ``out``, a (grad_weight,
    grad_bias) pair (None where the parameter is), receives the last two instead of new arrays."""
    x, running_mean, running_var, weight, bias, training, _, eps, backend = _batch_norm_setup(
        input, running_mean, running_var, weight, bias, training, 0.0, eps)
    grad_output = _float_array(grad_output, "grad_output", x.ndim, x.dtype)
    _check_shape(grad_output, x.shape, "grad_output")
    backend = backend_of(grad_output, x)
    mean, var = _batch_statistics(x, backend) if training else (running_mean, running_var)
    channels = x.shape[1]
    grad_input = empty(x.shape, x.dtype, backend)
    grad_weight, grad_bias = _gradient_arrays(out, weight, bias, x.dtype, backend)
    flat = (x.shape[0], channels, -1)
    # the kernel writes both gradients (and may read them back): an absent parameter's goes to scratch of its own
    sums = [empty((channels,), x.dtype, backend) if grad is None else grad for grad in (grad_weight, grad_bias)]
    kernels(backend).norm.batch_norm_backward(grad_output.reshape(flat), x.reshape(flat), mean, var,
                                              _ones_if_none(weight, x, backend), eps, training,
                                              grad_input.reshape(flat), *sums)
    return grad_input, grad_weight, grad_bias


_REDUCTIONS = ("mean", "sum", "none")


class _Labels:
    """Checked cross-entropy labels: ``target`` (N,) int64 on the logits' backend, -1 where a row is ignored;
    ``class_weight`` (K,) there; ``smoothing``; and ``weight_total``, the sum of w[target] over the rows not ignored
    (what 'mean' divides by, as PyTorch's loss does)."""

    def __init__(self, logits, target, weight, ignore_index, reduction, label_smoothing):
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.smoothing = checks.probability(label_smoothing, "label_smoothing")
        ignore_index = checks.integer(ignore_index, "ignore_index")
        batch, classes = logits.shape
        # labels and class weights live where the logits do, as every array of one call must
        self.backend = backend_of(logits, target if is_device_array(target) else np.asarray(target), weight)
        host_weight = None
        if weight is not None:
            host_weight = _float_array(to_host(weight) if is_device_array(weight) else weight, "weight", 1,
                                       logits.dtype)
            _check_shape(host_weight, (classes,), "weight")
        device_labels = is_device_array(target)
        if device_labels and host_weight is None and not 0 <= ignore_index < classes:
            fast = _device_target(logits, target)
            if fast is not None:  # every label a class and none ignored: the labels never leave the device
                self.target, self.weight_total = fast, float(batch)
                self.class_weight = to_backend(np.ones(classes, dtype=logits.dtype), self.backend)
                return
        labels = np.asarray(to_host(target) if device_labels else target)
        if labels.dtype.kind not in "iu":
            raise TypeError(f"target must hold integer class labels, got dtype {labels.dtype}")
        _check_shape(labels, (batch,), "target")
        ignored = labels == ignore_index
        outside = ~ignored & ((labels < 0) | (labels >= classes))
        if outside.any():
            raise ValueError(f"target labels must lie in [0, {classes}) or equal ignore_index={ignore_index}, got "
                             f"{labels[outside][0]}")
        labels = np.where(ignored, -1, labels).astype(np.int64)
        class_weight = host_weight if host_weight is not None else np.ones(classes, dtype=logits.dtype)
        self.weight_total = float(class_weight[labels[~ignored]].sum(dtype=np.float64))
        self.target = to_backend(labels, self.backend)
        self.class_weight = to_backend(class_weight, self.backend)


def _device_target(logits, target):
    """Labels on the device as int64 there when every one is a class (the first out of range found there, so only
    it would come back); None when some label is not, for the host to sort out (ignored rows, or an error)."""
    target = as_device_array(target)
    if target.dtype.kind not in "iu":
        raise TypeError(f"target must hold integer class labels, got dtype {target.dtype}")
    _check_shape(target, logits.shape[:1], "target")
    support = device_support()
    target = _device_contiguous(target)
    if support.first_outside(target, 0, logits.shape[1]) >= 0:
        return None
    return target if target.dtype == np.int64 else support.cast(target, np.int64)


def cross_entropy(logits, target, weight=None, *, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Softmax cross-entropy, fused and stable for logits of any magnitude, PyTorch's ``F.cross_entropy``.
    logits (N, K) float; target (N,) int labels in [0, K) or equal to ``ignore_index`` (such rows count for
    nothing); ``weight`` (K,) class weights; ``label_smoothing`` s spreads s of the target's probability evenly over
    the K classes. Returns a 0-d array ('mean': the sum over the rows divided by the sum of their targets' weights;
    'sum') or the (N,) losses ('none')."""
    logits = _float_array(logits, "logits", 2)
    labels = _Labels(logits, target, weight, ignore_index, reduction, label_smoothing)
    backend = labels.backend
    losses = empty(logits.shape[:1], logits.dtype, backend)
    kernels(backend).loss.cross_entropy_forward(logits, labels.target, labels.class_weight, labels.smoothing, losses)
    if reduction == "none":
        return losses
    # on the device the sum is taken there and only it comes back: the result is a host 0-d array on both backends
    total = losses.sum(dtype=np.float64) if backend == "cpu" else device_support().total(losses)
    if reduction == "sum":
        return np.asarray(total, dtype=logits.dtype)
    mean = total / labels.weight_total if labels.weight_total else math.nan  # every row ignored: PyTorch's NaN
    return np.asarray(mean, dtype=logits.dtype)


def cross_entropy_backward(grad_output, logits, target, weight=None, *, ignore_index=-100, reduction="mean",
                           label_smoothing=0.0):
    """Gradient of ``cross_entropy``: (grad_logits, None). ``grad_output`` is a scalar for 'mean' and 'sum' and
    an (N,) array for 'none'."""
    logits = _float_array(logits, "logits", 2)
    labels = _Labels(logits, target, weight, ignore_index, reduction, label_smoothing)
    batch = logits.shape[0]
    backend = labels.backend
    if reduction == "none":
        grad_losses = _float_array(grad_output, "grad_output", 1, logits.dtype)
        _check_shape(grad_losses, (batch,), "grad_output")
        backend_of(grad_losses, logits)
    else:
        if is_device_array(grad_output):
            grad_output = to_host(grad_output)  # a scalar: the one number comes back
        scale = checks.real(np.asarray(grad_output).item() if np.ndim(grad_output) == 0 else grad_output, "grad_output")
        if reduction == "mean":
            scale = scale / labels.weight_total if labels.weight_total else math.nan
        if backend == "cpu":
            grad_losses = np.full(batch, scale, dtype=logits.dtype)
        else:
            grad_losses = empty((batch,), logits.dtype, backend)
            device_support().fill(grad_losses, scale)
    grad_logits = empty(logits.shape, logits.dtype, backend)
    kernels(backend).loss.cross_entropy_backward(grad_losses, logits, labels.target, labels.class_weight,
                                                 labels.smoothing, grad_logits)
    return grad_logits, None
