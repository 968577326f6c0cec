"""The CPU convolution's plans: the blocked kernel's offset tables for each formulation and for the weight
gradient, and the input gradient's plan (its stride phases, the same with the batch's samples as lanes, or one
sub-pixel convolution).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from numconv.kernels.cpu import tuning
from numconv.kernels.cpu.conv_cost import best_use, rows_shape, samples_share, useful_shares
from numconv.kernels.cpu.conv_layout import Layout, filled_taps, offsets

_U = np.uint64


@lru_cache(maxsize=64)
def lanes_tables(layout: Layout, lanes: int):
    """Tables of the ``lanes`` formulation: blocks of ``lanes`` output channels of packed weights, columns the
    output positions of the whole batch."""
    taps, inputs, outputs = offsets(layout)
    plane, reduction = layout.plane, layout.group_in * taps.size
    per_group = -(-layout.group_out // lanes)
    blocks = np.arange(layout.groups * per_group)
    group, local = blocks // per_group, (blocks % per_group) * lanes
    n = np.arange(layout.batch)[:, None]
    return dict(
        voff=(np.arange(reduction) * lanes).astype(_U),
        vb=(blocks * reduction * lanes).astype(_U),
        xr=(np.arange(layout.group_in)[:, None] * plane + taps[None, :]).ravel().astype(_U),
        xc=(n * (layout.in_channels * plane) + inputs[None, :]).ravel().astype(_U),
        xb=(group * layout.group_in * plane).astype(_U),
        rlo=np.zeros(blocks.size, _U),
        rhi=np.full(blocks.size, reduction, _U),
        ocol=(n * layout.out_sample + outputs[None, :]).ravel().astype(_U),
        oblk=((group * layout.group_out + local) * layout.out_plane).astype(_U),
        lanes=np.minimum(lanes, layout.group_out - local).astype(np.int64),
        per_group=per_group,
    )


def _weight_columns(layout: Layout, taps, channels, blocks: int, scale: int) -> dict:
    """The tables that the formulations whose columns are a group's output channels share (the weights broadcast,
    ``blocks`` blocks): the sum over (input channel, tap) through the vector operand (``scale`` elements per input
    position), the weights' rows and columns, and each group's output channels (``channels``: where each starts) as
    offsets from its first."""
    reduction = layout.group_in * taps.size
    group_base = channels[::layout.group_out]
    return dict(
        voff=((np.arange(layout.group_in)[:, None] * layout.plane + taps[None, :]).ravel() * scale).astype(_U),
        xr=(np.arange(reduction) * layout.group_out).astype(_U),
        xc=np.arange(layout.group_out).astype(_U),
        xb=np.zeros(blocks, _U),
        rlo=np.zeros(blocks, _U),
        rhi=np.full(blocks, reduction, _U),
        ocols=[(channels[g * layout.group_out:(g + 1) * layout.group_out] - group_base[g]).astype(_U)
               for g in range(layout.groups)],
        group_base=[int(b) for b in group_base],
    )


@lru_cache(maxsize=64)
def rows_tables(layout: Layout, lanes: int):
    """Tables of one group; the group is selected by offsetting the buffers."""
    taps, inputs, outputs = offsets(layout)
    length, kind = rows_shape(layout, lanes)
    positions = layout.positions
    out_plane, out_sample = layout.out_plane, layout.out_sample
    channels = np.array([layout.channel_offset(o) for o in range(layout.out_channels)], np.int64)
    starts = np.minimum(np.arange(0, length, lanes), length - lanes)
    if kind == "flat":
        row_in, row_out, ostride = inputs[0] + starts, outputs[0] + starts, 1
    elif kind == "row":
        first = np.arange(positions[0] * positions[1])[:, None] * positions[2] + starts[None, :]
        row_in, row_out, ostride = inputs[first.ravel()], outputs[first.ravel()], layout.out_step[2]
    else:  # 'padded': runs over (OH, padded width) per depth slice, into a scratch output of that shape
        slabs = np.arange(positions[0])[:, None]
        row_in = (inputs[slabs * positions[1] * positions[2]] + starts[None, :]).ravel()
        row_out = (slabs * length + starts[None, :]).ravel()
        ostride = 1
        out_plane = positions[0] * length
        out_sample = layout.out_channels * out_plane
        channels = np.arange(layout.out_channels, dtype=np.int64) * out_plane
    n = np.arange(layout.batch)[:, None]
    vb = (n * (layout.in_channels * layout.plane) + row_in[None, :]).ravel()
    return dict(
        _weight_columns(layout, taps, channels, vb.size, 1),
        vb=vb.astype(_U),
        oblk=(n * out_sample + row_out[None, :]).ravel().astype(_U),
        ostride=_U(ostride),
        lanes=np.full(vb.size, lanes, np.int64),
        scratch=layout.batch * out_sample if kind == "padded" else 0,
        scratch_width=length // positions[1] if kind == "padded" else 0,
    )


@lru_cache(maxsize=64)
def samples_tables(layout: Layout, lanes: int):
    """Tables of the ``samples`` formulation for one group (selected by offsetting the buffers, as for ``rows``):
    blocks of ``lanes`` samples at one output position, read from the padded buffer packed sample by sample
    ((N / lanes rounded up, in_channels * plane, lanes): ``conv._pad_by_sample``), columns the group's output
    channels, lane k's results a sample after lane k - 1's. The sum goes tap by tap (every input channel of a tap
    before the next tap), so that each block's runs only over the taps that ``filled_taps`` leaves it: those of
    LeNet-5's second layer's input gradient read 18 x 18 planes around the 10 x 10 output gradient, and half of all
    its taps read the zeros around it."""
    taps, inputs, outputs = offsets(layout)
    plane, group_in = layout.plane, layout.group_in
    blocks = np.arange(-(-layout.batch // lanes))[:, None]
    vb = ((blocks * layout.in_channels * plane + inputs[None, :]) * lanes).ravel()
    channels = np.array([layout.channel_offset(o) for o in range(layout.out_channels)], np.int64)
    first, stop = filled_taps(layout)
    channel = np.arange(group_in)[None, :]
    return dict(
        _weight_columns(layout, taps, channels, vb.size, lanes),
        voff=((channel * plane + taps[:, None]) * lanes).ravel().astype(_U),
        xr=((channel * taps.size + np.arange(taps.size)[:, None]) * layout.group_out).ravel().astype(_U),
        rlo=np.tile(first * group_in, blocks.size).astype(_U),
        rhi=np.tile(stop * group_in, blocks.size).astype(_U),
        vb=vb.astype(_U),
        oblk=(blocks * lanes * layout.out_sample + outputs[None, :]).ravel().astype(_U),
        ostride=_U(layout.out_sample),
        lanes=np.repeat(np.minimum(layout.batch - blocks[:, 0] * lanes, lanes), inputs.size).astype(np.int64),
        scratch=0,
    )


def _sum_chunks(total: int, longest: int, base_tasks: int, forced_chunks=None) -> int:
    """How many chunks a weight gradient's sum over ``total`` (n, position) terms is split into: chunks of at most
    ``longest`` terms, more where ``base_tasks`` (the tasks of one chunk) are fewer than ``tuning.MIN_TASKS``, as
    long as a chunk keeps ``tuning.REDUCTION_MIN_CHUNK`` terms; ``forced_chunks`` (at most ``total``) where given."""
    if forced_chunks is not None:
        return min(forced_chunks, total)
    return max(-(-total // longest),
               min(-(-tuning.MIN_TASKS // base_tasks), max(total // tuning.REDUCTION_MIN_CHUNK, 1)))


@lru_cache(maxsize=64)
def reduction_tables(layout: Layout, shape: tuple, forced_chunks=None):
    """Tables for the weight gradient on the blocked kernel of ``shape`` (lanes, columns): blocks (chunk, group,
    ``lanes`` output channels), columns (input channel, tap), the sum over (n, position) split into chunks."""
    lanes, columns_per_task = shape
    taps, inputs, _ = offsets(layout)
    plane = layout.plane
    columns = layout.group_in * taps.size
    total = layout.batch * inputs.size
    per_group = -(-layout.group_out // lanes)
    base_tasks = layout.groups * per_group * -(-columns // columns_per_task)
    chunks = _sum_chunks(total, tuning.REDUCTION_CHUNK_ELEMENTS // lanes, base_tasks, forced_chunks)
    blocks = np.arange(chunks * layout.groups * per_group)
    chunk, within = blocks // (layout.groups * per_group), blocks % (layout.groups * per_group)
    group, local = within // per_group, (within % per_group) * lanes
    n = np.arange(layout.batch)[:, None]
    kernel_size = columns  # the weight gradient's row: (input channel, tap)
    return dict(
        voff=(np.arange(total) * lanes).astype(_U),
        vb=(within * total * lanes).astype(_U),
        xr=(n * (layout.in_channels * plane) + inputs[None, :]).ravel().astype(_U),
        xc=(np.arange(layout.group_in)[:, None] * plane + taps[None, :]).ravel().astype(_U),
        xb=(group * layout.group_in * plane).astype(_U),
        rlo=(chunk * total // chunks).astype(_U),
        rhi=((chunk + 1) * total // chunks).astype(_U),
        ocol=np.arange(columns).astype(_U),
        oblk=((chunk * layout.out_channels + group * layout.group_out + local) * kernel_size).astype(_U),
        lanes=np.minimum(lanes, layout.group_out - local).astype(np.int64),
        chunks=chunks,
        per_group=per_group,
    )


@lru_cache(maxsize=64)
def taps_tables(layout: Layout, shape: tuple, forced_chunks=None):
    """Tables for the weight gradient with the window's taps along a row as lanes, on the blocked kernel of ``shape``
    (lanes, columns): blocks (chunk, group, input channel, depth tap, row tap, run of ``lanes`` neighbouring taps
    along the row; the last run moved back to end at the window's end, its first taps computed twice), read from the
    padded input at each position's window; columns a group's output channels, the output gradient broadcast; the sum
    over (n, position) split into chunks by :func:`_sum_chunks`, of at most
    ``tuning.TAPS_CHUNK_ELEMENTS`` elements of the output gradient. Needs at least ``lanes`` taps along the row and
    dilation 1 there, so that a run's taps are neighbouring inputs."""
    lanes, columns_per_task = shape
    _, inputs, outputs = offsets(layout)
    _, size_h, size_w = layout.padded
    depth_taps, row_taps, taps = layout.kernel
    window = math.prod(layout.kernel)
    group_in, group_out = layout.group_in, layout.group_out
    total = layout.batch * inputs.size
    runs = np.minimum(np.arange(0, taps, lanes), taps - lanes)
    group, channel, depth, row, run = (axis.ravel() for axis in np.meshgrid(
        np.arange(layout.groups), np.arange(group_in), np.arange(depth_taps), np.arange(row_taps), runs,
        indexing="ij"))
    per_chunk = group.size
    base_tasks = per_chunk * -(-group_out // columns_per_task)
    chunks = _sum_chunks(total, tuning.TAPS_CHUNK_ELEMENTS // group_out, base_tasks, forced_chunks)
    chunk = np.repeat(np.arange(chunks), per_chunk)
    run_at = (group * group_in + channel) * layout.plane + (
        depth * layout.dilation[0] * size_h + row * layout.dilation[1]) * size_w + run
    weight_at = (group * group_out * group_in + channel) * window + (depth * row_taps + row) * taps + run
    n = np.arange(layout.batch)[:, None]
    return dict(
        voff=(n * (layout.in_channels * layout.plane) + inputs[None, :]).ravel().astype(_U),
        vb=np.tile(run_at, chunks).astype(_U),
        xr=(n * (layout.out_channels * layout.out_plane) + outputs[None, :]).ravel().astype(_U),
        xc=(np.arange(group_out) * layout.out_plane).astype(_U),
        xb=np.tile(group * group_out * layout.out_plane, chunks).astype(_U),
        rlo=(chunk * total // chunks).astype(_U),
        rhi=((chunk + 1) * total // chunks).astype(_U),
        ocol=(np.arange(group_out) * group_in * window).astype(_U),
        oblk=(chunk * layout.out_channels * group_in * window + np.tile(weight_at, chunks)).astype(_U),
        lanes=np.full(chunks * per_chunk, lanes, np.int64),
        chunks=chunks,
    )


def _phases(size, kernel, stride, pad, dilation):
    """Per input phase f (positions f, f + s, ...): (f, count, taps reversed, first offset). Input position
    f + s q collects weight[t] * g[q + (f + pad - t d) / s] over the taps t that divide evenly; reversed, the taps
    read g at q + first + m * d / gcd(s, d), m = 0, 1, ... (a stride-1 convolution)."""
    phases = []
    for f in range(min(stride, size)):
        count = (size - f + stride - 1) // stride
        taps = [t for t in range(kernel) if (f + pad - t * dilation) % stride == 0]
        first = (f + pad - taps[-1] * dilation) // stride if taps else 0
        phases.append((f, count, taps[::-1], first))
    return phases


def _subpixel_axis(size, kernel, stride, pad, dilation):
    """One axis of the sub-pixel form: (offset of sub-tap 0, sub-taps E, positions Q, tap index (stride, E) with
    ``kernel`` where phase f has no tap at that offset). Input position f + s q collects weight[t] * g[q + e] with
    e = (f + pad - t d) / s; all phases share the offsets e_min .. e_min + E - 1."""
    pairs = [(f, t, (f + pad - t * dilation) // stride) for f in range(stride) for t in range(kernel)
             if (f + pad - t * dilation) % stride == 0]
    low = min(e for _, _, e in pairs)
    extent = max(e for _, _, e in pairs) - low + 1
    index = np.full((stride, extent), kernel, np.int64)
    for f, t, e in pairs:
        index[f, e - low] = t
    return low, extent, -(-size // stride), index


@dataclass(frozen=True)
class GradInputPlan:
    strategy: str        # 'phases', 'samples' (the phases with the batch's samples as lanes) or 'subpixel'
    left: tuple          # padding before the output gradient, per axis
    size: tuple          # its padded size
    phases: tuple        # ((phase, taps per axis, layout) or (phase, None, None) where a phase has no tap), ...
    subpixel: object     # the sub-pixel layout, or None
    subpixel_index: tuple
    subpixel_padded: bool  # whether the sub-pixel output covers more than the input (then it is cropped)
    uses: tuple          # (phases, sub-pixel, samples) estimated useful shares


@lru_cache(maxsize=128)
def grad_input_plan(g_shape, w_shape, x_shape, stride, padding, dilation, groups) -> GradInputPlan:
    batch, out_channels = g_shape[:2]
    in_channels, in_shape = x_shape[1], x_shape[2:]
    axes = [_phases(in_shape[a], w_shape[2 + a], stride[a], padding[a], dilation[a]) for a in range(3)]
    steps = tuple(dilation[a] // math.gcd(stride[a], dilation[a]) for a in range(3))
    sub = [_subpixel_axis(in_shape[a], w_shape[2 + a], stride[a], padding[a], dilation[a]) for a in range(3)]
    # one padded copy of the gradient serves every phase and the sub-pixel form: left padding for the most
    # negative offset, right padding for the furthest tap
    left = tuple(max([0, -sub[a][0]] + [-first for _, _, taps, first in axes[a] if taps]) for a in range(3))
    size = tuple(max([left[a] + g_shape[2 + a], left[a] + sub[a][0] + sub[a][2] - 1 + sub[a][1]]
                     + [left[a] + first + count - 1 + (len(taps) - 1) * steps[a] + 1
                        for _, count, taps, first in axes[a] if taps])
                 for a in range(3))
    filled = tuple((left[a], left[a] + g_shape[2 + a]) for a in range(3))  # where the output gradient lies
    phases, work, useful, by_sample = [], 0.0, 0.0, 0.0
    for (f_d, n_d, taps_d, first_d) in axes[0]:
        for (f_h, n_h, taps_h, first_h) in axes[1]:
            for (f_w, n_w, taps_w, first_w) in axes[2]:
                if not (taps_d and taps_h and taps_w):
                    phases.append(((f_d, f_h, f_w), None, None))
                    continue
                layout = Layout(batch, out_channels, size, (left[0] + first_d, left[1] + first_h, left[2] + first_w),
                                 (1, 1, 1), steps, (len(taps_d), len(taps_h), len(taps_w)), groups, (n_d, n_h, n_w),
                                 in_channels, tuple(in_shape), (f_d, f_h, f_w), tuple(stride), filled=filled)
                phases.append(((f_d, f_h, f_w), (tuple(taps_d), tuple(taps_h), tuple(taps_w)), layout))
                amount = n_d * n_h * n_w * len(taps_d) * len(taps_h) * len(taps_w)
                work += amount
                useful += amount * best_use(layout)
                by_sample += amount * samples_share(layout)
    phase_use = useful / work if work else 1.0
    samples_use = by_sample / work if work else 0.0
    # the sub-pixel form: every phase an extra output channel, written into an output padded to a multiple of
    # the stride
    count = math.prod(stride)
    out_size = tuple(sub[a][2] * stride[a] for a in range(3))
    out_plane = math.prod(out_size)
    offsets = tuple(c * out_plane + (f_d * out_size[1] + f_h) * out_size[2] + f_w
                    for c in range(in_channels) for f_d in range(stride[0]) for f_h in range(stride[1])
                    for f_w in range(stride[2]))
    subpixel = Layout(batch, out_channels, size, tuple(left[a] + sub[a][0] for a in range(3)), (1, 1, 1), (1, 1, 1),
                       tuple(sub[a][1] for a in range(3)), groups, tuple(sub[a][2] for a in range(3)),
                       in_channels * count, out_size, (0, 0, 0), tuple(stride), offsets, in_channels * out_plane,
                       filled)
    uses = useful_shares(subpixel)
    taps_used = math.prod(w_shape[2:]) / (count * math.prod(sub[a][1] for a in range(3)))
    subpixel_use = taps_used * max(uses.values()) if uses else 0.0
    strategy = "subpixel" if count > 1 and subpixel_use > phase_use * tuning.SUBPIXEL_ADVANTAGE else "phases"
    if samples_use > max(phase_use, subpixel_use if strategy == "subpixel" else 0.0) * tuning.ADVANTAGE:
        strategy = "samples"
    return GradInputPlan(strategy, left, size, tuple(phases), subpixel if uses else None,
                          tuple(sub[a][3] for a in range(3)), out_size != tuple(in_shape),
                          (phase_use, subpixel_use, samples_use))
