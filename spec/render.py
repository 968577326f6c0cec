"""The index equations of one window op, printed in the notation of "Conv Nets: A Modular Perspective".

A convolution applies one module ``A`` to every window of its input: ``y_0 = A(x_0, x_1)``,
``y_1 = A(x_1, x_2)``. This module prints those lines for one configuration; every index comes from
:mod:`spec.windows`.

Notation:

* A subscript is written bare when it is one character (``y_0``) and in braces otherwise (``y_{12}``,
  ``x_{-1}``, ``x_{0,1}``); spatial indices follow the array axes (depth, height, width), comma-separated.
* The first index varies fastest everywhere: inside a window (``x_{0,0}, x_{1,0}, x_{0,1}, x_{1,1}``) and
  in the order of the printed lines (``y_{0,0}``, ``y_{1,0}``, ``y_{0,1}``, ...), as in the essay's
  ``x_{n,m}, x_{n+1,m}``.
* With ``channels`` the channel comes first, separated from the spatial indices by a semicolon: ``x_{c;n}``,
  ``y_{o;n,m}``. It is the first index, so it too varies fastest: a window lists all channels of one position
  (the vector ``x_n`` of the essay) before the next position. Output channel ``o`` of a convolution is the
  module ``A_o``; with ``groups`` its window holds only the input channels of its group.
* A tap that falls in the padding is written ``0`` (convolution, average pooling) or ``-∞`` (max pooling,
  which ignores padding). A tap of a ``ceil_mode`` window beyond the padded input is not part of the window
  and is not listed.
* Max pooling is ``max(...)``; average pooling is ``mean(...)`` over the listed terms, padding zeros included:
  that count is PyTorch's divisor with the default ``count_include_pad=True``.
* ``expand`` writes a convolution out as ``σ(w_0·x_0 + w_1·x_1 + b)``: weights ``w_j`` / ``w_{j,k}`` without
  channels, ``w_{o,c,j}`` with them (``c`` counts within the group, as the weight's second axis does) and bias
  ``b_o``; padding terms are zero and are left out. An expanded average pool is ``(x_0 + x_1)/2``; max
  pooling is explicit already and prints the same either way.
"""
from __future__ import annotations

import argparse
import itertools
import re

from spec.windows import (
    Axis, Window, group_input_channels, transposed_output_size, transposed_sources, window_from,
)

__all__ = ["OPS", "explain_lines", "main"]

#: op name -> (kind, number of spatial axes)
OPS = {
    **{f"conv{n}d": ("conv", n) for n in (1, 2, 3)},
    **{f"max_pool{n}d": ("max", n) for n in (1, 2, 3)},
    **{f"avg_pool{n}d": ("avg", n) for n in (1, 2, 3)},
    **{f"conv_transpose{n}d": ("transpose", n) for n in (1, 2, 3)},
}

_PAD_SYMBOL = {"conv": "0", "avg": "0", "max": "-∞"}


def _dims_text(values) -> str:
    return "x".join(str(v) for v in values) if isinstance(values, tuple) else str(values)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _per_axis(value, ndim: int, name: str, op: str, minimum: int) -> tuple[int, ...]:
    """``value`` (an int, repeated, or a tuple of ``ndim`` ints) as a tuple, each at least ``minimum``."""
    if not (_is_int(value) or isinstance(value, (tuple, list))):
        raise ValueError(f"{name} must be an int or a tuple of {ndim} ints, got {value!r}")
    values = (value,) * ndim if _is_int(value) else tuple(value)
    if len(values) != ndim:
        raise ValueError(f"{name}={_dims_text(values)} has {len(values)} values but {op} has {ndim} spatial "
                         f"axes: give one int or {ndim} ints")
    if not all(_is_int(v) for v in values):
        raise ValueError(f"{name}={_dims_text(values)} must hold ints")
    if any(v < minimum for v in values):
        raise ValueError(f"{name}={_dims_text(values)} must be >= {minimum} on every axis")
    return values


def _subscript(text: str) -> str:
    return f"_{text}" if len(text) == 1 else f"_{{{text}}}"


def _indexed(symbol: str, position: tuple[int, ...], channel: int | None = None) -> str:
    text = ",".join(str(i) for i in position)
    if channel is not None:
        text = f"{channel};{text}"
    return symbol + _subscript(text)


def _first_fastest(tuples):
    """Index tuples ordered with the first index varying fastest."""
    return sorted(tuples, key=lambda t: tuple(reversed(t)))


def _in_padded_input(axes: tuple[Axis, ...], position: tuple[int, ...]) -> bool:
    return all(-axis.pad_left <= i < axis.size + axis.right for axis, i in zip(axes, position))


def _window_terms(window: Window, out_position):
    """(tap, input position, inside the input?) for the taps of one window that lie in the padded input, the
    first tap index fastest."""
    taps = [t for t in window.window(out_position) if _in_padded_input(window.axes, t[1])]
    return sorted(taps, key=lambda t: tuple(reversed(t[0])))


def explain_lines(op, input_shape, kernel, stride=None, padding=None, dilation=None, channels=None, groups=1,
                  ceil_mode=False, expand=False, out_channels=None, output_padding=None) -> list[str]:
    """The equations of ``op`` (``conv1d`` .. ``avg_pool3d``), one line per output element.

    ``input_shape``, ``kernel``, ``stride``, ``padding``, ``dilation``: an int (every axis) or one int per
    spatial axis. ``stride`` defaults to 1 for convolutions and to ``kernel`` for pools. ``channels`` is the
    number of input channels (``None``: no channel index); ``out_channels`` defaults to ``channels``. Raises
    ``ValueError`` for a configuration the op does not accept.
    """
    if op not in OPS:
        raise ValueError(f"op must be one of {', '.join(OPS)}, got {op!r}")
    kind, ndim = OPS[op]
    shape = _per_axis(input_shape, ndim, "input", op, 1)
    kernels = _per_axis(kernel, ndim, "kernel", op, 1)
    if stride is None:
        strides = kernels if kind != "conv" else (1,) * ndim
    else:
        strides = _per_axis(stride, ndim, "stride", op, 1)
    pads = _per_axis(0 if padding is None else padding, ndim, "padding", op, 0)
    dilations = _per_axis(1 if dilation is None else dilation, ndim, "dilation", op, 1)
    if kind in ("conv", "transpose") and ceil_mode:
        raise ValueError(f"ceil_mode applies to pooling, not to {op}")
    if kind != "transpose" and output_padding is not None:
        raise ValueError(f"output_padding applies to transposed convolutions, not to {op}")
    if kind == "avg" and any(d != 1 for d in dilations):
        raise ValueError(f"{op} has no dilation, got dilation={_dims_text(dilations)}")
    if kind in ("max", "avg") and any(2 * p > k for p, k in zip(pads, kernels)):
        raise ValueError(f"padding={_dims_text(pads)} must be at most half of kernel={_dims_text(kernels)}")

    c_in = c_out = None
    if channels is not None:
        if not _is_int(channels) or channels < 1:
            raise ValueError(f"channels must be a positive int, got {channels!r}")
        c_in = channels
        c_out = channels if out_channels is None else out_channels
        if not _is_int(c_out) or c_out < 1:
            raise ValueError(f"out_channels must be a positive int, got {out_channels!r}")
    elif out_channels is not None:
        raise ValueError(f"out_channels={out_channels!r} needs channels (the input channels)")
    if not _is_int(groups) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    if kind in ("max", "avg"):
        if groups != 1:
            raise ValueError(f"groups applies to convolutions, not to {op}, got groups={groups}")
        if c_out != c_in:
            raise ValueError(f"{op} keeps its {c_in} channels, got out_channels={c_out}")
    elif groups != 1:
        if c_in is None:
            raise ValueError(f"groups={groups} needs channels")
        if c_in % groups or c_out % groups:
            raise ValueError(f"groups={groups} must divide channels={c_in} and out_channels={c_out}")

    if kind == "transpose":
        extra = _per_axis(0 if output_padding is None else output_padding, ndim, "output_padding", op, 0)
        if any(e >= st for e, st in zip(extra, strides)):
            raise ValueError(f"output_padding={_dims_text(extra)} must be smaller than stride={_dims_text(strides)}")
        return _transposed_lines(shape, kernels, strides, pads, extra, dilations, c_in, c_out, groups)

    window = window_from(shape, kernels, strides, pads, dilations, ceil_mode=bool(ceil_mode))
    if any(size < 1 for size in window.out_shape):
        raise ValueError(f"kernel={_dims_text(kernels)} with dilation={_dims_text(dilations)} spans more "
                         f"than input={_dims_text(shape)} with padding={_dims_text(pads)}: no output")

    lines = []
    for position in _first_fastest(window.outputs()):
        terms = _window_terms(window, position)
        if c_in is None:
            lines.append(_line(kind, expand, _indexed("y", position), None, [(None, 0, t) for t in terms]))
            continue
        for out_channel in range(c_out):
            joined = (group_input_channels(out_channel, c_in, c_out, groups) if kind == "conv"
                      else [out_channel])
            entries = [(c, local, t) for t in terms for local, c in enumerate(joined)]
            lines.append(_line(kind, expand, _indexed("y", position, out_channel), out_channel, entries))
    return lines


def _transposed_lines(shape, kernels, strides, pads, extra, dilations, c_in, c_out, groups) -> list[str]:
    """A transposed convolution, one line per output: the sum of every input the taps carry there,
    ``y_i = w_j·x_m + ... + b`` over the (m, j) with ``s·m - p + d·j = i`` (weights ``w_{c,o,j}`` with channels)."""
    out_shape = tuple(transposed_output_size(*axis) for axis in zip(shape, kernels, strides, pads, extra, dilations))
    if any(size < 1 for size in out_shape):
        raise ValueError(f"padding={_dims_text(pads)} removes more than the output of input={_dims_text(shape)} "
                         f"and kernel={_dims_text(kernels)} has: no output")
    axes = tuple(zip(shape, kernels, strides, pads, dilations))
    lines = []
    for position in _first_fastest(itertools.product(*(range(size) for size in out_shape))):
        pairs = list(itertools.product(*(transposed_sources(i, *axis) for i, axis in zip(position, axes))))
        for out_channel in ([None] if c_in is None else range(c_out)):
            products = []
            if out_channel is None:
                channels = [(None, None)]
            else:
                per_group = c_out // groups
                group, local = divmod(out_channel, per_group)
                channels = [(c, local) for c in range(group * (c_in // groups), (group + 1) * (c_in // groups))]
            for channel, local in channels:
                for pair in pairs:
                    source, tap = tuple(m for m, _ in pair), tuple(j for _, j in pair)
                    weight_index = tap if channel is None else (channel, local) + tap
                    products.append(f"{_indexed('w', weight_index)}·{_indexed('x', source, channel)}")
            bias = "b" if out_channel is None else _indexed("b", (out_channel,))
            lines.append(f"{_indexed('y', position, out_channel)} = {' + '.join(products + [bias])}")
    return lines


def _line(kind: str, expand: bool, target: str, out_channel: int | None, entries) -> str:
    """One equation; ``entries`` are (input channel or None, channel within the group,
    (tap, position, inside))."""
    if kind == "conv" and expand:
        products = []
        for channel, local, (tap, position, inside) in entries:
            if not inside:
                continue  # w·0 adds nothing to the polynomial
            weight_index = tap if out_channel is None else (out_channel, local) + tap
            products.append(f"{_indexed('w', weight_index)}·{_indexed('x', position, channel)}")
        bias = "b" if out_channel is None else _indexed("b", (out_channel,))
        return f"{target} = σ({' + '.join(products + [bias])})"
    arguments = [_indexed("x", position, channel) if inside else _PAD_SYMBOL[kind]
                 for channel, _, (_, position, inside) in entries]
    if kind == "avg" and expand:
        summed = [_indexed("x", position, channel) for channel, _, (_, position, inside) in entries if inside]
        numerator = summed[0] if len(summed) == 1 else f"({' + '.join(summed)})"
        return f"{target} = {numerator}/{len(arguments)}"
    if kind == "conv":
        module = "A" if out_channel is None else _indexed("A", (out_channel,))
    else:
        module = {"max": "max", "avg": "mean"}[kind]
    return f"{target} = {module}({', '.join(arguments)})"


def _dims(text: str) -> int | tuple[int, ...]:
    """``3`` -> 3, ``2x3x3`` -> (2, 3, 3)."""
    if not re.fullmatch(r"-?\d+(x-?\d+)*", text):
        raise argparse.ArgumentTypeError(f"expected an int or ints joined by 'x' (3 or 2x3), got {text!r}")
    values = tuple(int(part) for part in text.split("x"))
    return values[0] if len(values) == 1 else values


class _Parser(argparse.ArgumentParser):
    """Errors in one line (the flag, its value and why) with exit status 2, as numconv's own commands."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m spec explain",
        description="Print the equations y = A(x, ...) of one window op, one line per output element.",
    )
    parser.add_argument("op", choices=list(OPS), metavar="OP", help=f"one of {', '.join(OPS)}")
    parser.add_argument("--input", type=_dims, required=True, help="spatial input size: 3, 3x3 or 2x3x3")
    parser.add_argument("--kernel", type=_dims, required=True, help="kernel size: 2 (every axis) or 2x2")
    parser.add_argument("--stride", type=_dims, help="default 1 (convolution) or the kernel (pooling)")
    parser.add_argument("--padding", type=_dims, help="zeros before and after each axis, default 0")
    parser.add_argument("--dilation", type=_dims, help="spacing of the taps, default 1")
    parser.add_argument("--channels", type=int, help="input channels (default: no channel index)")
    parser.add_argument("--out-channels", type=int, help="convolution output channels, default --channels")
    parser.add_argument("--groups", type=int, default=1, help="channel groups of a convolution, default 1")
    parser.add_argument("--ceil-mode", action="store_true", help="pooling: count a last partial window")
    parser.add_argument("--output-padding", type=_dims, help="transposed convolution: extra outputs at the end")
    parser.add_argument("--expand", action="store_true", help="write the module out: σ(w·x + ... + b)")
    return parser


def main(argv: list[str]) -> int:
    """``python -m spec explain OP --input ... --kernel ...``; a bad configuration exits with status 2."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        lines = explain_lines(args.op, args.input, args.kernel, args.stride, args.padding, args.dilation,
                              args.channels, args.groups, args.ceil_mode, args.expand, args.out_channels,
                              args.output_padding)
    except ValueError as error:
        parser.error(str(error))
    for line in lines:
        print(line)
    return 0
