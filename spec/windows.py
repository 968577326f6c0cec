"""The index equations of a window op, derived with SymPy.

Along one axis, pad the input with ``p_l`` elements before and ``p_r`` after. Output ``n`` looks at the padded
positions ``s*n + d*j`` for taps ``j = 0 .. k-1``; shifting back by the left padding gives the input position

    i(n, j) = s*n - p_l + d*j.

Output ``n`` exists while its last tap stays inside the padded input, ``s*n + d*(k-1) <= L + p_l + p_r - 1``; solving
that for ``n`` and counting ``0 .. n_max`` gives the output size ``floor(n_max) + 1``. Pooling's ``ceil_mode`` counts
``ceiling(n_max) + 1`` windows instead, dropping the last one when it would start past the input and its left
padding. A grouped convolution with C input and O output channels joins output channel ``o`` to input channels
``floor(o / (O/g)) * (C/g) + c``, ``c < C/g``.

A transposed convolution runs the same equation backwards: its output ``i`` gathers every (input ``n``, tap ``j``)
with ``s*n - p_l + d*j = i``, that is ``n = (i + p_l - d*j) / s`` where that is a whole number in ``0 .. L_in - 1``,
and its output length ``(L_in - 1)*s - 2*p + d*(k-1) + output_padding + 1`` is the largest input length whose
convolution has ``L_in`` outputs, less ``s - 1 - output_padding``.

Nothing here imports numconv: these are the equations the kernels and ``numconv.geometry`` are held to.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache

import sympy as sp

n, j = sp.symbols("n j", integer=True, nonnegative=True)
L, k, s, d = sp.symbols("L k s d", integer=True, positive=True)
p_l, p_r = sp.symbols("p_l p_r", integer=True, nonnegative=True)
o, c, C, O, g = sp.symbols("o c C O g", integer=True, nonnegative=True)

#: the input position read by tap ``j`` of output ``n`` (the padded position ``s*n + d*j`` shifted by ``p_l``)
INPUT_INDEX = (s * n + d * j) - p_l


def _derive_last_output():
    """n_max: the largest real n whose last tap lands on the last padded position."""
    last_tap = INPUT_INDEX.subs(j, k - 1)
    (solution,) = sp.solve(sp.Eq(last_tap, L + p_r - 1), n)
    return sp.simplify(solution)


N_MAX = _derive_last_output()
#: number of outputs along an axis, floor rounding (convolution and default pooling)
OUTPUT_SIZE = sp.floor(N_MAX) + 1
#: number of outputs with ceil_mode before PyTorch's correction
CEIL_OUTPUT_SIZE = sp.ceiling(N_MAX) + 1
#: the first input channel joined to output channel o in a grouped convolution
GROUP_INPUT_CHANNEL = sp.floor(o / (O / g)) * (C / g) + c

_input_index = sp.lambdify((n, j, s, p_l, d), INPUT_INDEX, modules="math")

i, q = sp.symbols("i q", integer=True, nonnegative=True)
L_in = sp.symbols("L_in", integer=True, positive=True)
#: the input of a transposed convolution that tap ``j`` carries to output ``i``: INPUT_INDEX solved for n
TRANSPOSED_SOURCE = sp.solve(sp.Eq(INPUT_INDEX, i), n)[0]
#: a transposed convolution's output length for input length L_in, ``q`` its output_padding: the convolution's
#: input length L whose n_max is exactly L_in - 1 (p_r = p_l), plus q
TRANSPOSED_OUTPUT_SIZE = sp.solve(sp.Eq(N_MAX.subs(p_r, p_l), L_in - 1), L)[0] + q
_transposed_source = sp.lambdify((i, j, s, p_l, d), TRANSPOSED_SOURCE, modules="math")


@lru_cache(maxsize=None)
def output_size(size: int, kernel: int, stride: int, pad_left: int, pad_right: int, dilation: int,
                ceil_mode: bool = False) -> int:
    """The symbolic output size evaluated exactly for one axis (pooling passes ``pad_right == pad_left``)."""
    values = {L: size, k: kernel, s: stride, p_l: pad_left, p_r: pad_right, d: dilation}
    if not ceil_mode:
        return int(OUTPUT_SIZE.subs(values))
    count = int(CEIL_OUTPUT_SIZE.subs(values))
    # the last window must start inside the input or its left padding
    if int(INPUT_INDEX.subs({n: count - 1, j: 0, s: stride, p_l: pad_left, d: dilation})) >= size:
        count -= 1
    return count


def group_input_channels(out_channel: int, in_channels: int, out_channels: int, groups: int) -> list[int]:
    """The input channels joined to ``out_channel``."""
    values = {o: out_channel, C: in_channels, O: out_channels, g: groups}
    first = int(GROUP_INPUT_CHANNEL.subs({**values, c: 0}))
    return [first + channel for channel in range(in_channels // groups)]


def transposed_output_size(size: int, kernel: int, stride: int, pad: int, output_padding: int,
                           dilation: int) -> int:
    """A transposed convolution's output length along one axis, from the symbolic equation."""
    return int(TRANSPOSED_OUTPUT_SIZE.subs({L_in: size, k: kernel, s: stride, p_l: pad, d: dilation,
                                            q: output_padding}))


def transposed_sources(out_index: int, size: int, kernel: int, stride: int, pad: int, dilation: int) -> list:
    """(input index, tap) pairs that a transposed convolution sums into output ``out_index`` along one axis."""
    pairs = []
    for tap in range(kernel):
        source = _transposed_source(out_index, tap, stride, pad, dilation)
        if source == int(source) and 0 <= source < size:
            pairs.append((int(source), tap))
    return pairs


@dataclass(frozen=True)
class Axis:
    """One spatial axis of a window op."""

    size: int
    kernel: int
    stride: int = 1
    pad_left: int = 0
    pad_right: int | None = None
    dilation: int = 1
    ceil_mode: bool = False

    @property
    def right(self) -> int:
        return self.pad_left if self.pad_right is None else self.pad_right

    @property
    def out_size(self) -> int:
        return output_size(self.size, self.kernel, self.stride, self.pad_left, self.right, self.dilation,
                           self.ceil_mode)

    def input_index(self, out_index: int, tap: int) -> int:
        """Input position of ``tap`` in window ``out_index``; outside ``[0, size)`` it is padding."""
        return _input_index(out_index, tap, self.stride, self.pad_left, self.dilation)

    def in_input(self, position: int) -> bool:
        return 0 <= position < self.size


@dataclass(frozen=True)
class Window:
    """A window op over several axes, ordered as the arrays are (depth, height, width)."""

    axes: tuple[Axis, ...]

    @property
    def out_shape(self) -> tuple[int, ...]:
        return tuple(axis.out_size for axis in self.axes)

    @property
    def kernel_shape(self) -> tuple[int, ...]:
        return tuple(axis.kernel for axis in self.axes)

    def outputs(self):
        """Every output position, as tuples in C order."""
        return itertools.product(*(range(size) for size in self.out_shape))

    def taps(self):
        """Every tap (kernel position) in C order."""
        return itertools.product(*(range(size) for size in self.kernel_shape))

    def window(self, out_position):
        """(tap, input position, inside the input?) for every tap of the window at ``out_position``."""
        for tap in self.taps():
            position = tuple(axis.input_index(m, t) for axis, m, t in zip(self.axes, out_position, tap))
            inside = all(axis.in_input(i) for axis, i in zip(self.axes, position))
            yield tap, position, inside


def window_from(input_shape, kernel, stride=None, padding=None, dilation=None, ceil_mode=False,
                padding_right=None) -> Window:
    """A :class:`Window` from per-axis tuples (``stride`` defaults to 1, ``padding`` to 0, ``dilation`` to 1)."""
    ndim = len(input_shape)
    stride = stride or (1,) * ndim
    padding = padding or (0,) * ndim
    dilation = dilation or (1,) * ndim
    padding_right = padding_right or padding
    return Window(tuple(
        Axis(input_shape[a], kernel[a], stride[a], padding[a], padding_right[a], dilation[a], ceil_mode)
        for a in range(ndim)
    ))
