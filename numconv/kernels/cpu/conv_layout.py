"""The shape of one call of the CPU convolution's blocked kernel: a :class:`Layout` (which padded buffer a
convolution reads, which output it writes, through which positions and taps) and its offsets.

Part of ``conv.py``'s kernels (see its docstring): ``conv_cost.py`` picks a formulation for a layout, ``conv_plan.py``
turns layouts into the kernel's offset tables and plans the input gradient, ``conv.py`` runs them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class Layout:
    """A convolution read from a padded buffer (N, in_channels, *padded) and written into an output array
    (N, out_channels, *out_shape).

    Output position q (per axis, ``positions`` of them) reads padded index ``origin + stride * q + dilation * tap``
    and is written at ``out_offset + out_step * q`` (strided for the phases of an input gradient). Output channel
    o starts at ``o * prod(out_shape)`` within its sample, or at ``channel_offsets[o]`` when given (the sub-pixel
    channels of an input gradient interleave within one plane); ``out_channels`` is then the number of these
    channels and ``sample_size`` the output's size per sample. ``filled``, where given, is the box of the padded
    buffer ((start, stop) per axis) outside which it holds only zeros: the ``samples`` formulation skips the taps that
    read there (an input gradient's padded output gradient, 18 x 18 around 10 x 10 in LeNet-5's second layer).
    """

    batch: int
    in_channels: int
    padded: tuple
    origin: tuple
    stride: tuple
    dilation: tuple
    kernel: tuple
    groups: int
    positions: tuple
    out_channels: int
    out_shape: tuple
    out_offset: tuple = (0, 0, 0)
    out_step: tuple = (1, 1, 1)
    channel_offsets: tuple | None = None
    sample_size: int | None = None
    filled: tuple | None = None

    def __post_init__(self):
        # the cost model's and the offset tables' caches hash a layout on every call: once here, where hashing the
        # fields took a microsecond a lookup (six lookups in a small convolution's call)
        object.__setattr__(self, "_hash", hash(tuple(getattr(self, field.name) for field in fields(self))))

    def __hash__(self) -> int:
        return self._hash

    @property
    def group_in(self) -> int:
        return self.in_channels // self.groups

    @property
    def group_out(self) -> int:
        return self.out_channels // self.groups

    @property
    def plane(self) -> int:
        return math.prod(self.padded)

    @property
    def out_plane(self) -> int:
        return math.prod(self.out_shape)

    @property
    def out_sample(self) -> int:
        return self.sample_size or self.out_channels * self.out_plane

    def channel_offset(self, o: int) -> int:
        return o * self.out_plane if self.channel_offsets is None else self.channel_offsets[o]


def _grid(shape) -> list:
    return np.meshgrid(*(np.arange(s, dtype=np.int64) for s in shape), indexing="ij")


@lru_cache(maxsize=64)
def offsets(layout: Layout):
    """(tap offsets (K,), input offsets of each output position (S,), output offsets of each position (S,))."""
    size_d, size_h, size_w = layout.padded
    t_d, t_h, t_w = _grid(layout.kernel)
    taps = ((t_d * layout.dilation[0] * size_h + t_h * layout.dilation[1]) * size_w + t_w * layout.dilation[2]).ravel()
    q_d, q_h, q_w = _grid(layout.positions)
    inputs = (((layout.origin[0] + q_d * layout.stride[0]) * size_h + layout.origin[1] + q_h * layout.stride[1])
              * size_w + layout.origin[2] + q_w * layout.stride[2]).ravel()
    out_h, out_w = layout.out_shape[1], layout.out_shape[2]
    off, step = layout.out_offset, layout.out_step
    outputs = (((off[0] + q_d * step[0]) * out_h + off[1] + q_h * step[1]) * out_w + off[2] + q_w * step[2]).ravel()
    return taps, inputs, outputs


@lru_cache(maxsize=64)
def filled_taps(layout: Layout):
    """(first, stop) (S,) per output position: the taps, numbered in the window's row-major order, from the first to
    the last that reads inside ``layout.filled`` (every tap where it is None); first == stop where none does. Taps
    between the two may still read zeros (a window's corner over a row of padding)."""
    filled = layout.filled or tuple((0, size) for size in layout.padded)
    low, high = [], []
    for a in range(3):
        start = layout.origin[a] + np.arange(layout.positions[a], dtype=np.int64) * layout.stride[a]
        begin, end = filled[a]
        dilation = layout.dilation[a]
        # taps t with begin <= start + t * dilation < end, within the window
        low.append(np.clip(-((start - begin) // dilation), 0, layout.kernel[a]))
        high.append(np.clip((end - 1 - start) // dilation + 1, 0, layout.kernel[a]))
    low_d, low_h, low_w = np.meshgrid(*low, indexing="ij")
    high_d, high_h, high_w = np.meshgrid(*high, indexing="ij")
    empty = ((low_d >= high_d) | (low_h >= high_h) | (low_w >= high_w)).ravel()
    _, size_h, size_w = layout.kernel
    first = ((low_d * size_h + low_h) * size_w + low_w).ravel()
    stop = (((high_d - 1) * size_h + high_h - 1) * size_w + high_w).ravel()
    return np.where(empty, 0, first), np.where(empty, 0, stop)


def forward_layout(x_shape, weight_shape, positions, stride, padding, dilation, groups) -> Layout:
    """The layout of a forward convolution; one object per geometry, so that the per-layout caches of the cost model
    and the offset tables find it by identity (building it and comparing equal copies took a third of a small
    convolution's Python time)."""
    return _forward_layout(tuple(x_shape), tuple(weight_shape), tuple(positions), tuple(stride), tuple(padding),
                           tuple(dilation), int(groups))


@lru_cache(maxsize=256)
def _forward_layout(x_shape, weight_shape, positions, stride, padding, dilation, groups) -> Layout:
    kernel = tuple(weight_shape[2:])
    padded = tuple(max(x_shape[2 + a] + padding[a], (positions[a] - 1) * stride[a] + (kernel[a] - 1) * dilation[a] + 1)
                   for a in range(3))
    return Layout(x_shape[0], x_shape[1], padded, (0, 0, 0), tuple(stride), tuple(dilation), kernel, int(groups),
                   tuple(positions), weight_shape[0], tuple(positions))
