"""The CPU convolution's cost model: which formulation of the blocked kernel (``lanes``, ``rows`` or ``wide``)
applies to a layout, and the estimated share of useful work of each (the constants are ``tuning.py``'s); and the
same estimate for ``samples``, which only the input gradient takes (its buffer is packed by sample).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from numconv.kernels.cpu import tuning
from numconv.kernels.cpu.conv_layout import Layout, offsets


@lru_cache(maxsize=256)
def rows_shape(layout: Layout, lanes: int):
    """(run length, kind) for the ``rows`` and ``wide`` formulations, or None where they do not apply. A vector holds
    ``lanes`` consecutive positions, which must be consecutive elements of the padded buffer: along an output row
    at stride 1 (kind 'row'), along a whole plane for a 1x1 convolution without padding ('flat'), or, for a
    stride-1 convolution whose rows are too short, along the padded rows of a plane (OH x padded width; the
    columns past the output's width are computed into a scratch output and dropped: 'padded')."""
    _, inputs, outputs = offsets(layout)
    size = inputs.size
    if size >= lanes and layout.kernel == (1, 1, 1):
        steps = np.arange(size)
        if np.array_equal(inputs - inputs[0], steps) and np.array_equal(outputs - outputs[0], steps):
            return size, "flat"
    if layout.stride[2] == 1 and layout.positions[2] >= lanes:
        return layout.positions[2], "row"
    if (layout.stride == (1, 1, 1) and layout.out_step == (1, 1, 1) and layout.out_offset == (0, 0, 0)
            and layout.channel_offsets is None and tuple(layout.out_shape) == tuple(layout.positions)
            and layout.positions[1] * layout.padded[2] >= lanes):
        return layout.positions[1] * layout.padded[2], "padded"
    return None


def _use(count: int, unit: int) -> float:
    return count / (unit * math.ceil(count / unit))


#: formulation -> (lanes per vector operand, columns per task)
SHAPES = {"lanes": (tuning.LANES, tuning.COLUMNS), "rows": (tuning.LANES, tuning.COLUMNS),
           "wide": (tuning.WIDE_LANES, tuning.WIDE_COLUMNS), "samples": (tuning.WIDE_LANES, tuning.WIDE_COLUMNS)}


def aliased_plane(positions: int) -> bool:
    """Whether a plane of ``positions`` numbers is a multiple of ``tuning.ALIASED_PLANE``: the same position of its
    channels then falls into the same few sets of the first-level cache."""
    return positions % tuning.ALIASED_PLANE == 0


def takes_paired(channels: int, reduction: int) -> bool:
    """Whether the ``lanes`` formulation runs the 32-lane kernel for groups of ``channels`` lane channels whose
    outputs each sum ``reduction`` products: where the channels fill 32-lane blocks as well as 16-lane ones and the
    sum is at least ``tuning.PAIRED_MIN_REDUCTION`` long."""
    return (reduction >= tuning.PAIRED_MIN_REDUCTION
            and _use(channels, tuning.PAIRED_LANES) >= _use(channels, tuning.LANES))


def paired_shape(channels: int, reduction: int) -> tuple:
    """(lanes, columns) of the blocked kernel for blocks of ``channels`` lane channels whose outputs each sum
    ``reduction`` terms: the 32-lane kernel where :func:`takes_paired`, else the 16-lane one (``tuning.SHAPES``:
    32 x 7 and 16 x 14 with AVX-512, 32 x 3 and 16 x 5 with AVX2). The ``lanes`` formulation asks with a
    group's output channels and its products per output; the weight gradient with a group's output channels and the
    batch's positions."""
    if takes_paired(channels, reduction):
        return tuning.PAIRED_LANES, tuning.PAIRED_COLUMNS
    return tuning.LANES, tuning.COLUMNS


def lanes_shape(layout: Layout) -> tuple:
    """(lanes, columns) of the blocked kernel that the ``lanes`` formulation runs: :func:`paired_shape`'s, or, in
    place of the 16-lane kernel, one of ``tuning.ROW_SHAPES`` as wide as the output's rows where they are shorter
    than its strips and computed at stride 1 (each strip is then one row, its inputs consecutive)."""
    shape = paired_shape(layout.group_out, layout.group_in * math.prod(layout.kernel))
    if shape == (tuning.LANES, tuning.COLUMNS) and layout.stride[2] == 1:
        for row_shape in tuning.ROW_SHAPES:
            if row_shape[1] == layout.positions[2]:
                return row_shape
    return shape


def wide_shape(layout: Layout) -> tuple:
    """(lanes, columns) of the blocked kernel that the ``wide`` formulation runs: one of ``tuning.WIDE_ROW_SHAPES``
    whose blocks tile the output's rows exactly where they are computed at stride 1 (rows of a multiple of its
    lanes) and where it leaves fewer lanes and columns unused than 64 x 4 (``tuning.WIDE_LANES``,
    ``tuning.WIDE_COLUMNS``), else 64 x 4: 4 output channels a group fill a strip of 64 x 4 but take two of 112 x 3,
    and keep the split of a long sum over input channels (``conv._channel_chunks``, for one strip): a first layer's
    input gradient from 64 channels to 4 over (4, 4, 16, 112, 112), on 112 x 3 unsplit 72-74 ms, on 64 x 4 in 6
    chunks 63-65 (AMD Zen 5)."""
    wide = (tuning.WIDE_LANES, tuning.WIDE_COLUMNS)
    if layout.stride[2] == 1:
        wide_use = _use(layout.positions[2], wide[0]) * _use(layout.group_out, wide[1])
        for lanes, columns in tuning.WIDE_ROW_SHAPES:
            if layout.positions[2] % lanes == 0 and _use(layout.group_out, columns) > wide_use:
                return lanes, columns
    return wide


@lru_cache(maxsize=256)
def useful_shares(layout: Layout) -> dict:
    """The estimated share of useful work of each formulation that applies (see tuning.py)."""
    uses = {}
    reduction = layout.group_in * math.prod(layout.kernel)

    def storing(lanes, stored, cost=tuning.STORE_COST):  # the share of a task's time spent multiplying
        return reduction * lanes / 16 / (reduction * lanes / 16 + cost * stored)

    paired = lanes_shape(layout)[0] == tuning.PAIRED_LANES
    if layout.channel_offsets is None:
        used = min(layout.group_out, tuning.LANES)
        cost = tuning.STORE_COST if used == tuning.LANES else tuning.TILE_STORE_COST
        kernel = tuning.PAIRED_EFFICIENCY if paired else 1.0
        aliases = aliased_plane(layout.plane) and aliased_plane(layout.out_plane)
        aliased = tuning.ALIASED_LANES if aliases else 1.0
        uses["lanes"] = (_use(layout.group_out, tuning.LANES) * tuning.EFFICIENCY["lanes"] * kernel * aliased
                         * storing(tuning.LANES, used, cost))
    for form in ("rows", "wide"):
        lanes, columns = wide_shape(layout) if form == "wide" else SHAPES[form]
        rows = rows_shape(layout, lanes)
        if rows is not None:
            length, kind = rows
            long_rows = length >= tuning.LONG_ROW and layout.group_in >= tuning.LONG_ROW_MIN_CHANNELS and not paired
            bonus = tuning.LONG_ROW_BONUS if long_rows else 1.0
            kept = layout.positions[2] / layout.padded[2] if kind == "padded" else 1.0
            unaligned = 1.0 if kind == "flat" else tuning.UNALIGNED_ROWS
            whole_row = (lanes, columns) in tuning.WIDE_ROW_SHAPES
            speed = tuning.WIDE_ROW_EFFICIENCY if whole_row else 1.0
            cost = tuning.WIDE_ROW_STORE_COST if whole_row else tuning.STORE_COST
            uses[form] = (_use(length, lanes) * kept * _use(layout.group_out, columns) * tuning.EFFICIENCY[form]
                          * speed * unaligned * bonus * storing(lanes, lanes, cost))
    return uses


@lru_cache(maxsize=256)
def samples_share(layout: Layout) -> float:
    """The estimated share of useful work of the ``samples`` formulation (it applies to every layout): lanes the
    batch's samples, ``tuning.WIDE_LANES`` per block, columns a group's output channels on the ``wide`` kernel,
    every result stored through the tile (a lane's results lie a sample apart); 0 where a block's vectors or its
    strips of columns exceed ``tuning.SAMPLES_MAX_BLOCK_BYTES`` or ``tuning.SAMPLES_MAX_STRIPS``."""
    lanes, columns = SHAPES["samples"]
    reduction = layout.group_in * math.prod(layout.kernel)
    if (reduction * lanes * 4 > tuning.SAMPLES_MAX_BLOCK_BYTES
            or -(-layout.group_out // columns) > tuning.SAMPLES_MAX_STRIPS):
        return 0.0
    multiplies = reduction * lanes / tuning.LANES
    return (_use(layout.batch, lanes) * _use(layout.group_out, columns) * tuning.EFFICIENCY["wide"]
            * tuning.SAMPLES_ADVANTAGE * multiplies / (multiplies + tuning.TILE_STORE_COST * lanes))


@lru_cache(maxsize=256)
def algorithm(layout: Layout) -> str:
    """'lanes', 'rows' or 'wide' (see tuning.py): the formulation whose lanes and columns do the least wasted
    work; ``lanes`` unless another beats it by ``tuning.ADVANTAGE``."""
    uses = useful_shares(layout)
    best = max(uses, key=uses.get)
    if "lanes" in uses and uses[best] < uses["lanes"] * tuning.ADVANTAGE:
        return "lanes"
    return best


def best_use(layout: Layout) -> float:
    return max(useful_shares(layout).values())
