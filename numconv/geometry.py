"""Window arithmetic: the single source of truth for output sizes, window starts and padding.

Along one axis, output position ``n`` of a window op reads the input positions

    i(n, j) = stride * n - pad + dilation * j,    j = 0 .. kernel - 1

and the number of outputs is ``floor((size + pad_left + pad_right - dilation * (kernel - 1) - 1) / stride) + 1``
(pooling may round up instead: ``ceil_mode``). A grouped convolution connects output channel ``o`` to the input
channels ``o // (out_channels // groups) * (in_channels // groups) + c`` for ``c < in_channels // groups``.

The Python functions validate parameters and raise ``ValueError``/``TypeError`` naming the parameter and its value;
the ``@njit`` helpers at the bottom are what the kernels use, and assume valid input.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from numconv.checks import is_int

__all__ = [
    "ConvGeometry",
    "PoolGeometry",
    "as_tuple",
    "padding_sides",
    "same_padding",
    "is_int",
    "conv_geometry",
    "conv_output_size",
    "conv_transpose_geometry",
    "conv_transpose_output_size",
    "pool_geometry",
    "pool_output_size",
    "check_groups",
    "window_position",
    "output_at_distance",
    "covering_output",
    "covering_output_range",
    "valid_output_range",
    "avg_pool_divisor",
]


def as_tuple(value, ndim: int, name: str) -> tuple[int, ...]:
    """``value`` as a tuple of ``ndim`` Python ints: an int is repeated, a tuple or list must have length ``ndim``."""
    if is_int(value):
        return (int(value),) * ndim
    if isinstance(value, (tuple, list)):
        if len(value) != ndim:
            raise ValueError(f"{name} must be an int or a tuple of {ndim} ints, got {value!r} (length {len(value)})")
        if not all(is_int(v) for v in value):
            raise TypeError(f"{name} must contain only ints, got {value!r}")
        return tuple(int(v) for v in value)
    raise TypeError(f"{name} must be an int or a tuple of {ndim} ints, got {value!r} ({type(value).__name__})")


def padding_sides(padding, ndim: int, name: str = "padding") -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(before, after) padding of each axis from an int, a tuple of ``ndim`` ints (the same on both sides), or a
    tuple of ``ndim`` (before, after) pairs (ONNX's pads that differ between the sides); every value >= 0."""
    if isinstance(padding, (tuple, list)) and len(padding) == ndim and padding and all(
            isinstance(pair, (tuple, list)) for pair in padding):
        if not all(len(pair) == 2 and all(is_int(v) for v in pair) for pair in padding):
            raise TypeError(f"{name} must be an int, a tuple of {ndim} ints or a tuple of {ndim} (before, after) "
                            f"pairs of ints, got {padding!r}")
        before, after = tuple(int(pair[0]) for pair in padding), tuple(int(pair[1]) for pair in padding)
    else:
        before = after = as_tuple(padding, ndim, name)
    _check_at_least(before + after, 0, name, padding)
    return before, after


def same_padding(input_shape, kernel_size, stride, dilation, extra_at_end: bool = True):
    """ONNX's SAME_UPPER (``extra_at_end``) or SAME_LOWER padding as (before, after) pairs: the output has
    ceil(size / stride) positions, and an odd total goes to the end (UPPER) or the beginning (LOWER)."""
    pairs = []
    for size, k, s, d in zip(input_shape, kernel_size, stride, dilation):
        total = max((-(-size // s) - 1) * s + d * (k - 1) + 1 - size, 0)
        small, large = total // 2, total - total // 2
        pairs.append((small, large) if extra_at_end else (large, small))
    return tuple(pairs)


def _check_at_least(values: tuple[int, ...], minimum: int, name: str, given) -> None:
    if any(v < minimum for v in values):
        raise ValueError(f"{name} must be >= {minimum} on every axis, got {given!r}")


def conv_output_size(size: int, kernel: int, stride: int, pad_left: int, pad_right: int, dilation: int) -> int:
    """Number of windows along one axis (floor rounding)."""
    return (size + pad_left + pad_right - dilation * (kernel - 1) - 1) // stride + 1


def pool_output_size(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil_mode: bool,
                     pad_end: int | None = None) -> int:
    """Number of pooling windows along one axis (``pad`` before it, ``pad_end`` after, equal unless given); with
    ``ceil_mode`` a last partial window is kept only if it starts inside the input or its left padding (PyTorch's
    rule)."""
    span = size + pad + (pad if pad_end is None else pad_end) - dilation * (kernel - 1) - 1
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= size + pad:
        out -= 1
    return out


@dataclass(frozen=True)
class ConvGeometry:
    """A validated convolution along ``ndim`` spatial axes.

    ``padding`` is the padding before each axis; ``padding_right`` the padding after it (equal to ``padding``
    except where given per side, or for ``padding='same'`` with an odd total, where the extra element goes on the
    right).
    """

    input_shape: tuple[int, ...]
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    padding_right: tuple[int, ...]
    dilation: tuple[int, ...]
    output_shape: tuple[int, ...]

    @property
    def ndim(self) -> int:
        return len(self.input_shape)


@dataclass(frozen=True)
class PoolGeometry:
    """A validated pooling window along ``ndim`` spatial axes: ``padding`` before each axis, ``padding_end``
    after it."""

    input_shape: tuple[int, ...]
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    ceil_mode: bool
    output_shape: tuple[int, ...]
    padding_end: tuple[int, ...]

    @property
    def ndim(self) -> int:
        return len(self.input_shape)


def _window_tuples(ndim: int, kernel_size, stride, dilation) -> tuple:
    """(kernel, stride, dilation), each a tuple of ``ndim`` positive ints, of a convolution or its transpose."""
    kernel = as_tuple(kernel_size, ndim, "kernel_size")
    _check_at_least(kernel, 1, "kernel_size", kernel_size)
    strides = as_tuple(stride, ndim, "stride")
    _check_at_least(strides, 1, "stride", stride)
    dilations = as_tuple(dilation, ndim, "dilation")
    _check_at_least(dilations, 1, "dilation", dilation)
    return kernel, strides, dilations


def conv_geometry(input_shape, kernel_size, stride=1, padding=0, dilation=1) -> ConvGeometry:
    """Validate a convolution's window parameters and compute its output shape.

    ``input_shape`` and ``kernel_size`` are the spatial sizes (no batch or channel axes). ``padding`` is an int, a
    tuple, a tuple of (before, after) pairs, ``'valid'`` (no padding) or ``'same'`` (output size equals input size;
    stride 1 only).
    """
    input_shape = tuple(int(s) for s in input_shape)
    ndim = len(input_shape)
    kernel, strides, dilations = _window_tuples(ndim, kernel_size, stride, dilation)
    if isinstance(padding, str):
        if padding == "valid":
            left = right = (0,) * ndim
        elif padding == "same":
            if any(s != 1 for s in strides):
                raise ValueError(f"padding='same' needs stride 1 on every axis, got stride={stride!r}")
            totals = [d * (k - 1) for k, d in zip(kernel, dilations)]
            left = tuple(t // 2 for t in totals)
            right = tuple(t - t // 2 for t in totals)
        else:
            raise ValueError(f"padding must be an int, a tuple of ints, 'valid' or 'same', got {padding!r}")
    else:
        left, right = padding_sides(padding, ndim)
    for axis in range(ndim):
        extent = dilations[axis] * (kernel[axis] - 1) + 1
        padded = input_shape[axis] + left[axis] + right[axis]
        if extent > padded:
            raise ValueError(
                f"kernel_size {kernel!r} with dilation {dilations!r} spans {extent} on axis {axis}, more than the "
                f"padded input size {padded} (input {input_shape!r}, padding {padding!r})"
            )
    output = tuple(
        conv_output_size(input_shape[a], kernel[a], strides[a], left[a], right[a], dilations[a]) for a in range(ndim)
    )
    return ConvGeometry(input_shape, kernel, strides, left, right, dilations, output)


def conv_transpose_output_size(size: int, kernel: int, stride: int, pad: int, output_padding: int,
                               dilation: int) -> int:
    """Length of a transposed convolution's output along one axis: the input length of the convolution whose input
    gradient it is, ``output_padding`` choosing among the lengths that convolution maps to ``size``."""
    return (size - 1) * stride - 2 * pad + dilation * (kernel - 1) + output_padding + 1


def conv_transpose_geometry(input_shape, kernel_size, stride=1, padding=0, output_padding=0,
                            dilation=1) -> ConvGeometry:
    """Validate a transposed convolution and return the geometry of the convolution it is the adjoint of: its
    ``input_shape`` is the transposed convolution's output shape, its ``output_shape`` the transposed
    convolution's input shape. ``padding`` is an int or a tuple (PyTorch's ConvTranspose takes no 'same');
    ``output_padding`` must be smaller than the stride on each axis."""
    input_shape = tuple(int(s) for s in input_shape)
    ndim = len(input_shape)
    kernel, strides, dilations = _window_tuples(ndim, kernel_size, stride, dilation)
    if isinstance(padding, str):
        raise ValueError(f"padding of a transposed convolution must be an int or a tuple of ints, got {padding!r}")
    pads = as_tuple(padding, ndim, "padding")
    _check_at_least(pads, 0, "padding", padding)
    extra = as_tuple(output_padding, ndim, "output_padding")
    _check_at_least(extra, 0, "output_padding", output_padding)
    if any(e >= s for e, s in zip(extra, strides)):
        raise ValueError(f"output_padding must be smaller than the stride on every axis, got output_padding="
                         f"{output_padding!r} with stride={stride!r}")
    output = tuple(conv_transpose_output_size(input_shape[a], kernel[a], strides[a], pads[a], extra[a], dilations[a])
                   for a in range(ndim))
    if min(output) < 1:
        raise ValueError(f"a transposed convolution of input {input_shape!r} with kernel_size {kernel!r}, stride "
                         f"{strides!r}, padding {pads!r} and dilation {dilations!r} has output size {output!r}: "
                         "the padding removes more than the output has")
    # with output_padding below the stride, the convolution of ``output`` gives back ``input_shape`` exactly
    return conv_geometry(output, kernel, strides, pads, dilations)


def pool_geometry(input_shape, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False) -> PoolGeometry:
    """Validate a pooling window and compute its output shape. ``stride=None`` means ``stride=kernel_size``.
    ``padding`` is an int, a tuple, or a tuple of (before, after) pairs; each side may be as wide as the window less
    one (ONNX's limit; PyTorch's is half the window), provided every window holds an input element."""
    input_shape = tuple(int(s) for s in input_shape)
    ndim = len(input_shape)
    kernel = as_tuple(kernel_size, ndim, "kernel_size")
    _check_at_least(kernel, 1, "kernel_size", kernel_size)
    strides = kernel if stride is None else as_tuple(stride, ndim, "stride")
    _check_at_least(strides, 1, "stride", stride)
    pads, pads_end = padding_sides(padding, ndim)
    dilations = as_tuple(dilation, ndim, "dilation")
    _check_at_least(dilations, 1, "dilation", dilation)
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise TypeError(f"ceil_mode must be a bool, got {ceil_mode!r}")
    for axis in range(ndim):
        extent = dilations[axis] * (kernel[axis] - 1) + 1
        if max(pads[axis], pads_end[axis]) >= extent:
            raise ValueError(
                f"padding must be smaller than the window ({extent} with dilation) on every axis, got "
                f"padding={padding!r} with kernel_size={kernel_size!r}"
            )
    output = tuple(
        pool_output_size(input_shape[a], kernel[a], strides[a], pads[a], dilations[a], bool(ceil_mode), pads_end[a])
        for a in range(ndim)
    )
    for axis in range(ndim):
        # a ceil_mode window may hang past the input, but every window must hold at least one input element
        if output[axis] < 1 or not _windows_touch_input(input_shape[axis], output[axis], kernel[axis],
                                                        strides[axis], pads[axis], dilations[axis]):
            extent = dilations[axis] * (kernel[axis] - 1) + 1
            raise ValueError(
                f"kernel_size {kernel!r} with dilation {dilations!r} spans {extent} on axis {axis}, which leaves "
                f"a window without input (input {input_shape!r}, padding {padding!r}, ceil_mode={ceil_mode})"
            )
    return PoolGeometry(input_shape, kernel, strides, pads, dilations, bool(ceil_mode), output, pads_end)


def _windows_touch_input(size: int, out_size: int, kernel: int, stride: int, pad: int, dilation: int) -> bool:
    """Whether every one of ``out_size`` windows has a tap inside ``[0, size)``: the union over taps of the
    outputs each tap reaches must cover them all."""
    if out_size < 1:
        return False
    ranges = sorted(valid_output_range(size, out_size, stride, pad, dilation, tap) for tap in range(kernel))
    covered = 0
    for lo, hi in ranges:
        if lo > covered:
            return False
        covered = max(covered, hi)
    return covered >= out_size


def check_groups(in_channels: int, weight_shape: tuple[int, ...], groups) -> None:
    """Check that a weight of shape ``(out_channels, in_channels // groups, *kernel)`` fits ``in_channels``."""
    if not is_int(groups):
        raise TypeError(f"groups must be an int, got {groups!r}")
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups!r}")
    out_channels, weight_in = weight_shape[0], weight_shape[1]
    if in_channels % groups:
        raise ValueError(f"groups={groups} does not divide the input's {in_channels} channels")
    if out_channels % groups:
        raise ValueError(f"groups={groups} does not divide the weight's {out_channels} output channels")
    if weight_in * groups != in_channels:
        raise ValueError(
            f"weight of shape {tuple(weight_shape)!r} expects {weight_in * groups} input channels with "
            f"groups={groups}, but the input has {in_channels}"
        )


# --- helpers compiled into the kernels --------------------------------------------------------------------------


@njit(cache=True, inline="always")
def window_position(out_index, stride, pad, dilation, tap):
    """The input position that tap ``tap`` of output ``out_index``'s window reads: ``stride*out_index - pad +
    dilation*tap`` (outside ``[0, size)`` it reads padding)."""
    return stride * out_index - pad + dilation * tap


@njit(cache=True, inline="always")
def output_at_distance(distance, stride):
    """The output ``o`` with ``stride * o == distance``, where ``distance = in_index + pad - dilation * tap`` (the
    inverse of :func:`window_position`), or -1 when the distance is negative or no multiple of the stride. No
    division at stride 1 (the caller may have the distance from tables)."""
    if distance < 0:
        return -1
    if stride == 1:
        return distance
    whole = distance // stride
    return whole if whole * stride == distance else -1


@njit(cache=True, inline="always")
def covering_output(in_index, stride, pad, dilation, tap):
    """The output whose window reads input ``in_index`` with tap ``tap``, or -1 where there is none (see
    :func:`output_at_distance`); the caller checks the upper bound."""
    return output_at_distance(in_index + pad - dilation * tap, stride)


@njit(cache=True, inline="always")
def covering_output_range(in_index, kernel, stride, pad, out_size):
    """Outputs ``o`` in ``[lo, hi)`` whose (dilation 1) window ``stride*o - pad + (0 .. kernel-1)`` contains input
    ``in_index``. (lo never passes hi for a pooling geometry, also with padding up to the window.)"""
    first = in_index + pad - kernel + 1
    lo = 0 if first <= 0 else (first + stride - 1) // stride
    return lo, min((in_index + pad) // stride + 1, out_size)


@njit(cache=True, inline="always")
def phase_taps(phase, kernel, stride, pad):
    """The (dilation 1) taps that reach the inputs ``phase + stride * m`` of one stride phase: ``(count, shift)``,
    tap number ``j`` in ``[0, count)`` being ``(phase + pad) % stride + stride * j``, read by output
    ``m + shift - j``. ``count`` is 0 where no tap reaches the phase (a window shorter than its stride)."""
    first = (phase + pad) % stride
    count = 0 if first >= kernel else (kernel - 1 - first) // stride + 1
    return count, (phase + pad) // stride


@njit(cache=True)
def valid_output_range(in_size, out_size, stride, pad, dilation, tap):
    """Output positions ``n`` in ``[lo, hi)`` whose input position ``stride*n - pad + dilation*tap`` lies in
    ``[0, in_size)``; the kernels loop over these and so never test bounds in their inner loop."""
    offset = dilation * tap - pad
    # smallest n with stride*n + offset >= 0
    lo = 0 if offset >= 0 else (-offset + stride - 1) // stride
    # largest n with stride*n + offset <= in_size - 1, plus one
    last = in_size - 1 - offset
    hi = 0 if last < 0 else last // stride + 1
    if hi > out_size:
        hi = out_size
    if lo > hi:
        lo = hi
    return lo, hi


@njit(cache=True)
def avg_pool_divisor(out_index, in_size, kernel, stride, pad, pad_end, count_include_pad):
    """Divisor contributed by one axis to an average-pooling window (PyTorch's rule): the window clipped to the
    padded input (``pad`` before it, ``pad_end`` after) when padding counts, else clipped to the input itself."""
    start = out_index * stride - pad
    end = min(start + kernel, in_size + pad_end)
    if count_include_pad:
        return end - start
    return min(end, in_size) - max(start, 0)
