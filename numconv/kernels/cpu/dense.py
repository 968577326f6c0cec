"""Fully-connected kernels for the CPU: y = x W^T + b and its gradients, and what convolution shares: the bias
gradient, and the packing of channels side by side for every position. Arrays are C-contiguous and already validated.

The three matrix products run on the convolution's register-blocked kernels (``codegen.py``): a vector of
neighbouring elements of a contiguous row times one broadcast number per column. The forward pass vectorises over
the batch (the input packed once, ``lanes`` samples side by side for each input feature: a small copy) and
broadcasts weight rows, so the weight matrix is never repacked; it is streamed once per 16 samples, or, for 17 to
32 samples and a weight of at least ``PAIRED_MIN_WEIGHT_BYTES``, once for all of them on the 32 x 7 kernel
(AlexNet's fc6 at batch 32: 19.5 -> 13.0 ms).
Up to ``DOT_MAX_BATCH`` samples (inference, one image at a time) would leave most lanes of a 16-sample vector
empty; there each output is instead a dot product along a weight row (``_dot_rows``), vectorised over input
features, which streams the weight at memory speed (fc6 at batch 1: 14.3 -> 5.4 ms). Larger batches take the dot
products too where the weight's rows are short and the input small (``takes_dot_tiles``: LeNet-5's dense layers),
in tiles of 4 samples by 4 output features: the input is not packed, and the rows stay in the caches.

Both gradients vectorise over input features, 64 at a time (the 64 x 4 kernel; 16 x 14 when there are fewer than
64), so that their results leave through the kernel's vector stores along rows of ``grad_input`` and
``grad_weight``. The operand that supplies the vectors is first copied into panels, ``panels[f, r, k] =
matrix[r, start_f + k]``, so that a task reads one contiguous panel instead of 64 elements from each of thousands of
rows: read in place, rows a power-of-two multiple of 4 KiB apart fall into a few cache sets and the rows of a
strip were fetched again for every other strip (the input gradient of AlexNet's fc6 took 5x its forward pass).
An operand small enough to stay in the second-level cache (``IN_PLACE_MAX_BYTES``) is read in place instead.
The weight's panels (as large as the weight) and the input's are scratch buffers kept between calls
(``launch.workspace``). The weight gradient's tasks go along each group of 16 rows of ``grad_weight``, so that its
stores, a matrix as large as the weight after a sum of only batch-size terms, fill memory row by row.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import prange

from numconv.kernels.cpu import tuning
from numconv.kernels.cpu.launch import fma, workspace, zeros
from numconv.kernels.cpu.parallel import PACK_MIN_WORK, parallel_kernel

#: the kernels of this module: what the spec registry must cover
__all__ = [
    "linear_forward", "linear_grad_input", "linear_grad_weight", "bias_grad", "bias_add", "linear_forward_paired",
    "linear_forward_dot", "linear_forward_lanes", "linear_grad_input_panels", "linear_grad_weight_panels",
]

_U = np.uint64
_LANES = tuning.LANES
#: lanes of a vector operand (a panel, a block of samples) -> the (lanes, columns) kernel that reads it
_KERNEL = {lanes: (lanes, columns) for lanes, columns in tuning.SHAPES}
#: the forward pass of 17 to 32 samples takes them as one 32-lane block (the 32 x 7 kernel) for weights at least
#: this large: streamed from memory, they are read once instead of twice (fc6, fc7, fc8 of AlexNet at batch 32:
#: 1.3-1.5x faster); a smaller weight stays in cache between blocks of 16, and a model without a large one need not
#: compile the 32 x 7 kernel on its first run. With more than one 32-lane block the transposed input outgrows the
#: cache between columns: 48 and 128 samples measured slower than in blocks of 16
PAIRED_MIN_WEIGHT_BYTES = 4 * 2 ** 20
#: the forward pass of at most this many samples takes dot products along the weight's rows: 2.5-8x faster than
#: the 16-lane blocks at one sample, 1.2-3x at four, about even at eight (AlexNet's fc6, fc7 and fc8; LeNet-5's fc1)
DOT_MAX_BATCH = 4
#: a forward pass of more samples takes dot products too, in tiles of 4 x 4 (``takes_dot_tiles``), where a weight
#: row takes at most this many bytes (4 of them stay in the first-level cache while every sample's tile reads them)
#: and the input at most ``DOT_MAX_INPUT_BYTES`` (it is read again for each 4 weight rows, from the second-level
#: cache). Against the 16- and 32-lane blocks, best of 8 turns alternating in one process, AMD Zen 5, 2 threads
#: (us): LeNet-5's dense layers at batch 64, 400 -> 120 21.5 against 37.3, 120 -> 84 13.8 against 13.8, 84 -> 10 2.5
#: against 9.0; at 256, 71 against 109, 37 against 52; 32 x 400 -> 120 16.9 against 22.5; 128 x 1024 -> 1024 784
#: against 1070, 256 x 1024 -> 1024 (an input of 1 MiB) 1765 against 2147. Slower with longer rows: 64 x 2048 -> 1024
#: 1262 against 1029, 32 x 4096 -> 1000 1081 against 597, 16 x 9216 -> 4096 11.0 against 5.4 ms
DOT_MAX_ROW_BYTES = 4096
DOT_MAX_INPUT_BYTES = 2 ** 20
#: the dot products run parallel from this many multiply-adds (times the threads beyond the first), as measured
#: above (us, one thread against two): LeNet-5's first dense layer at batch 32 (1.5 million) 17.4 against 14.8, at 64
#: (3.1 million) 32.9 against 22.8; its second at 64 (0.65 million) 14.9 against 11.4, at 256 54 against 38; its
#: third at 64 (54,000) 3.3 against 4.4; 400 -> 120 for one sample (48,000) 3.3 against 4.2
DOT_MIN_WORK = 2 ** 19
#: lanes of a panel -> rows of ``grad_weight`` a block of the weight gradient computes: 16 (four strips of the
#: 64 x 4 kernel) measured faster than 4, 32 or 64 on fc6 and fc7; one strip of the 16 x 14 kernel
_BLOCK_ROWS = {tuning.LANES: tuning.COLUMNS, tuning.WIDE_LANES: 4 * tuning.WIDE_COLUMNS}
#: rows of the matrix that one task of :func:`_pack_panels` copies into every panel
_PACK_ROWS = 8
#: the gradients read the operand that supplies their vectors (the weight for the input gradient, the input for the
#: weight gradient) in place, without panels, where it is at most this large and its rows hold a vector: it then
#: stays in the second-level cache, and a pack and a parallel call are saved (LeNet-5's dense layers at batch 64:
#: the first's input gradient 67 -> 46 us, its weight gradient 54 -> 39, the second's 23 -> 15 and 23 -> 16; about
#: even at 128 x 500 -> 256, whose weight is 512 KiB; AlexNet's fc6 and fc7 at batch 32 1.4-1.9x slower in place)
IN_PLACE_MAX_BYTES = 256 * 1024


def streams_weight(weight) -> bool:
    """Whether ``weight`` (out_features, in_features) has at least ``PAIRED_MIN_WEIGHT_BYTES`` (its forward pass then
    takes a batch of 17 to 32 samples as one 32-lane block)."""
    return weight.nbytes >= PAIRED_MIN_WEIGHT_BYTES


@lru_cache(maxsize=128)
def _batch_lanes_tables(batch: int, in_features: int, out_features: int, lanes: int = _LANES):
    """Forward: blocks of ``lanes`` samples (the input packed by :func:`pack_positions`: block b, feature i at
    (b * in_features + i) * lanes), columns the output features, the sum over input features."""
    padded = -(-batch // lanes) * lanes
    blocks = np.arange(padded // lanes)
    return dict(
        voff=(np.arange(in_features) * lanes).astype(_U), vb=(blocks * in_features * lanes).astype(_U),
        xr=np.arange(in_features).astype(_U), xc=(np.arange(out_features) * in_features).astype(_U),
        xb=np.zeros(blocks.size, _U), rlo=np.zeros(blocks.size, _U), rhi=np.full(blocks.size, in_features, _U),
        ocol=np.arange(out_features).astype(_U), oblk=(blocks * lanes * out_features).astype(_U),
        ostride=_U(out_features), lanes=np.minimum(lanes, batch - blocks * lanes).astype(np.int64),
        padded=padded,
    )


@parallel_kernel(cache=True, min_work=PACK_MIN_WORK)
def pack_positions(source, groups, packed, first_row):
    """packed (groups * blocks, R, L)[g * blocks + ob, n * S + p - first_row, k] = source (N, O, S)[n, g * group_out
    + L * ob + k, p] for the R rows n * S + p from ``first_row`` on, zero past the group's last channel: L channels
    side by side for every position (L lanes per block: packed's last axis). The convolution's weight gradient packs
    its output gradient so (O output channels, S output positions; all N * S rows, or a run of them at a time), its
    ``lanes`` formulation its weights (one sample of O output channels, S = input channels x taps), the forward pass
    here its input (one sample of O = batch rows, S = input features). Positions go in chunks of 256 within a
    sample, so that the tile written stays in the first-level cache while each of the L rows is read in order (row
    by row: 1.1-1.5x faster than lane by lane with 32 lanes)."""
    out_channels, size = source.shape[1], source.shape[2]
    lanes = packed.shape[2]
    rows = packed.shape[1]
    group_out = out_channels // groups
    blocks = packed.shape[0] // groups
    chunks = (size + 255) // 256
    first_sample = first_row // size
    samples = (first_row + rows + size - 1) // size - first_sample
    for task in prange(packed.shape[0] * samples * chunks):
        b = task // (samples * chunks)
        n = first_sample + (task // chunks) % samples
        # the chunk's positions, cut to the rows packed (none where the chunk lies outside them)
        start = max((task % chunks) * 256, first_row - n * size)
        stop = max(start, min((task % chunks) * 256 + 256, size, first_row + rows - n * size))
        g = b // blocks
        first = g * group_out + (b % blocks) * lanes
        valid = min(lanes, g * group_out + group_out - first)
        tile = packed[b, n * size + start - first_row:n * size + stop - first_row]
        if valid < lanes:
            # zeros first, a contiguous fill in whole vectors, then the channels over them: lane by lane, LeNet-5's
            # first layer's 6 channels in 16 lanes took 10 passes of single stores for the zeros (its weight
            # gradient's pack, 64 samples: 187 -> 117 us; 16 channels of 4096 positions in 32 lanes 264 -> 164)
            flat = tile.reshape(-1)
            for i in range(flat.shape[0]):
                flat[i] = 0.0
        for k in range(valid):
            row = source[n, first + k, start:stop]
            for p in range(stop - start):
                tile[p, k] = row[p]


@lru_cache(maxsize=128)
def _panel_layout(in_features: int):
    """(lanes of a panel, the first input feature of each panel, features used of each panel). Panels are 64 wide,
    or 16 when there are fewer than 64 features; the last is moved back to end at the row's end (recomputing a
    few features), and a row narrower than a panel fills the first ``in_features`` lanes."""
    lanes = tuning.WIDE_LANES if in_features >= tuning.WIDE_LANES else _LANES
    starts = np.minimum(np.arange(0, in_features, lanes), max(in_features - lanes, 0)).astype(np.int64)
    return lanes, starts, min(lanes, in_features)


@parallel_kernel(cache=True)
def _pack_panels(matrix, starts, width, panels):
    """panels[f, r, k] = matrix[r, starts[f] + k] for k < width, and 0 for the rest of each panel's row.
    matrix (R, W); starts (F,); panels (F, R, lanes). A task copies ``_PACK_ROWS`` whole rows, read in order."""
    rows = matrix.shape[0]
    lanes = panels.shape[2]
    for task in prange((rows + _PACK_ROWS - 1) // _PACK_ROWS):
        first = task * _PACK_ROWS
        for f in range(starts.shape[0]):
            start = starts[f]
            for r in range(first, min(first + _PACK_ROWS, rows)):
                for k in range(width):
                    panels[f, r, k] = matrix[r, start + k]
                for k in range(width, lanes):
                    panels[f, r, k] = 0


def _panels(tag: str, matrix: np.ndarray, starts: np.ndarray, width: int, lanes: int) -> np.ndarray:
    """``matrix`` copied into panels (:func:`_pack_panels`), in this thread's scratch buffer ``tag``; flat."""
    panels = workspace(tag, starts.size * matrix.shape[0] * lanes, matrix.dtype)
    _pack_panels(matrix, starts, width, panels.reshape(starts.size, matrix.shape[0], lanes))
    return panels


def _reads_in_place(operand: np.ndarray) -> bool:
    """Whether a gradient reads ``operand`` (rows, features) in place rather than through panels
    (``IN_PLACE_MAX_BYTES``; a row narrower than a 16-lane vector always goes through a panel)."""
    return operand.nbytes <= IN_PLACE_MAX_BYTES and operand.shape[1] >= _LANES


@lru_cache(maxsize=128)
def _grad_input_tables(batch: int, in_features: int, out_features: int, in_place: bool):
    """Input gradient: a block per panel of the weight (its rows the sum over output features), columns the
    samples (``grad_output`` rows), results along ``grad_input`` rows. ``in_place``: the vectors are read from the
    weight itself, each panel's columns of each row."""
    lanes, starts, width = _panel_layout(in_features)
    panels = np.arange(starts.size)
    row_step, panel_step = (in_features, starts) if in_place else (lanes, panels * out_features * lanes)
    return dict(
        lanes_per_panel=lanes, starts=starts, width=width,
        voff=(np.arange(out_features) * row_step).astype(_U), vb=panel_step.astype(_U),
        xr=np.arange(out_features).astype(_U), xc=(np.arange(batch) * out_features).astype(_U),
        xb=np.zeros(panels.size, _U), rlo=np.zeros(panels.size, _U), rhi=np.full(panels.size, out_features, _U),
        ocol=(np.arange(batch) * in_features).astype(_U), oblk=starts.astype(_U), ostride=_U(1),
        lanes=np.full(panels.size, width, np.int64),
    )


@lru_cache(maxsize=128)
def _grad_weight_tables(batch: int, in_features: int, out_features: int, in_place: bool):
    """Weight gradient: a block per (group of ``_BLOCK_ROWS`` output features, panel of the input), the groups
    outermost so that consecutive tasks store along the same rows of ``grad_weight``; the last group is moved back
    to end at the last output feature. Columns the output features of a group (``xb`` selects the group), the sum
    over the batch. ``in_place``: the vectors are read from the input itself, each panel's columns of each row."""
    lanes, starts, width = _panel_layout(in_features)
    rows = min(_BLOCK_ROWS[lanes], out_features)
    firsts = np.minimum(np.arange(0, out_features, rows), out_features - rows)
    first, panel = (a.ravel() for a in np.meshgrid(firsts, np.arange(starts.size), indexing="ij"))
    row_step, panel_step = (in_features, starts[panel]) if in_place else (lanes, panel * batch * lanes)
    return dict(
        lanes_per_panel=lanes, starts=starts, width=width,
        voff=(np.arange(batch) * row_step).astype(_U), vb=panel_step.astype(_U),
        xr=(np.arange(batch) * out_features).astype(_U), xc=np.arange(rows).astype(_U), xb=first.astype(_U),
        rlo=np.zeros(first.size, _U), rhi=np.full(first.size, batch, _U),
        ocol=(np.arange(rows) * in_features).astype(_U), oblk=(first * in_features + starts[panel]).astype(_U),
        ostride=_U(1), lanes=np.full(first.size, width, np.int64),
    )


def takes_dot_tiles(x, weight) -> bool:
    """Whether the forward pass of ``x`` (N, I) through ``weight`` (O, I) takes dot products in tiles of 4 x 4
    rather than the blocked kernels' lanes of samples (``DOT_MAX_ROW_BYTES``, ``DOT_MAX_INPUT_BYTES``)."""
    return weight.shape[1] * weight.itemsize <= DOT_MAX_ROW_BYTES and x.nbytes <= DOT_MAX_INPUT_BYTES


def linear_forward(x, weight, bias, out):
    """out[n, o] = bias[o] + sum_i x[n, i] * weight[o, i]. x (N, I); weight (O, I); bias (O,); out (N, O)."""
    if x.shape[0] <= DOT_MAX_BATCH or takes_dot_tiles(x, weight):
        _dot_rows(x, weight, bias, out)
        return
    paired = _LANES < x.shape[0] <= tuning.PAIRED_LANES and streams_weight(weight)
    _linear_forward(x, weight, bias, out, tuning.PAIRED_LANES if paired else _LANES)


def linear_forward_lanes(x, weight, bias, out):
    """``linear_forward`` on the 16-lane kernel whatever the sizes, for the spec registry."""
    _linear_forward(x, weight, bias, out, _LANES)


def linear_forward_paired(x, weight, bias, out):
    """``linear_forward`` on the 32 x 7 kernel whatever the sizes, for the spec registry."""
    _linear_forward(x, weight, bias, out, tuning.PAIRED_LANES)


def linear_forward_dot(x, weight, bias, out):
    """``linear_forward`` as dot products along the weight's rows whatever the sizes, for the spec registry."""
    _dot_rows(x, weight, bias, out)


@parallel_kernel(cache=True, fastmath={"reassoc", "contract"}, min_work=DOT_MIN_WORK,
                 work=lambda x, weight, bias, out: x.shape[0] * weight.size)
def _dot_rows(x, weight, bias, out):
    """out[n, o] = bias[o] + sum_i x[n, i] * weight[o, i]: dot products along the input's and the weight's rows, in
    the input's dtype. Over more than ``DOT_MAX_BATCH`` samples, in tiles of 4 samples by 4 output features: 16 sums,
    each a vector of partial sums over input features, while 8 rows are read (a load per two multiply-adds); the
    tiles of each 4 weight rows one after the other, so that those rows stay in the first-level cache. The outputs
    that no tile holds (every output of up to ``DOT_MAX_BATCH`` samples, the samples past the last tile, every sample
    of the features past the last tile) are dot products one at a time, each weight row read once for all of its
    samples (a few samples' pass streams the weight at memory speed). The sums' order is left to the compiler
    (``reassoc``)."""
    batch, in_features = x.shape
    out_features = weight.shape[0]
    sample_tiles, feature_tiles = (batch // 4 if batch > DOT_MAX_BATCH else 0), out_features // 4
    tiles = sample_tiles * feature_tiles
    # the weight rows whose dot products are taken one at a time: all, where samples are left past the last tile (or
    # no tile is taken), else those past the last tile. Only they get tasks: Numba splits a parallel loop into one
    # equal range per thread, and empty tasks left LeNet-5's fc1 at batch 64 (480 tiles and 120 rows with nothing to
    # do) 300 tiles on one thread and 180 on the other
    first_single = 0 if sample_tiles == 0 or batch % 4 else 4 * feature_tiles
    zero = out.dtype.type(0)
    for task in prange(tiles + out_features - first_single):
        if task < tiles:
            n, o = 4 * (task % sample_tiles), 4 * (task // sample_tiles)
            x0, x1, x2, x3 = x[n], x[n + 1], x[n + 2], x[n + 3]
            w0, w1, w2, w3 = weight[o], weight[o + 1], weight[o + 2], weight[o + 3]
            s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
            s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = zero
            for i in range(in_features):
                a0, a1, a2, a3 = x0[i], x1[i], x2[i], x3[i]
                b0, b1, b2, b3 = w0[i], w1[i], w2[i], w3[i]
                s00 += a0 * b0
                s01 += a0 * b1
                s02 += a0 * b2
                s03 += a0 * b3
                s10 += a1 * b0
                s11 += a1 * b1
                s12 += a1 * b2
                s13 += a1 * b3
                s20 += a2 * b0
                s21 += a2 * b1
                s22 += a2 * b2
                s23 += a2 * b3
                s30 += a3 * b0
                s31 += a3 * b1
                s32 += a3 * b2
                s33 += a3 * b3
            c0, c1, c2, c3 = bias[o], bias[o + 1], bias[o + 2], bias[o + 3]
            out[n, o], out[n, o + 1], out[n, o + 2], out[n, o + 3] = c0 + s00, c1 + s01, c2 + s02, c3 + s03
            out[n + 1, o], out[n + 1, o + 1], out[n + 1, o + 2], out[n + 1, o + 3] = \
                c0 + s10, c1 + s11, c2 + s12, c3 + s13
            out[n + 2, o], out[n + 2, o + 1], out[n + 2, o + 2], out[n + 2, o + 3] = \
                c0 + s20, c1 + s21, c2 + s22, c3 + s23
            out[n + 3, o], out[n + 3, o + 1], out[n + 3, o + 2], out[n + 3, o + 3] = \
                c0 + s30, c1 + s31, c2 + s32, c3 + s33
        else:
            o = first_single + task - tiles
            row = weight[o]
            for n in range(4 * sample_tiles if o < 4 * feature_tiles else 0, batch):
                sample = x[n]
                total = bias[o]
                for i in range(in_features):
                    total += sample[i] * row[i]
                out[n, o] = total


def _linear_forward(x, weight, bias, out, lanes: int) -> None:
    batch, in_features = x.shape
    out_features = weight.shape[0]
    t = _batch_lanes_tables(batch, in_features, out_features, lanes)
    # the samples, ``lanes`` side by side for each input feature (NumPy's transposed copy of AlexNet's fc6 input at
    # batch 32 took 539 us, this 69)
    packed = workspace("linear input blocks", t["padded"] * in_features, x.dtype)
    pack_positions(x.reshape(1, batch, in_features), 1, packed.reshape(-1, in_features, lanes), 0)
    fma(_KERNEL[lanes], packed, t["voff"], t["vb"], weight.reshape(-1), t["xr"], t["xc"], t["xb"],
        t["rlo"], t["rhi"], out.reshape(-1), t["ocol"], t["oblk"], t["ostride"], t["lanes"],
        zeros(t["vb"].size * lanes, x.dtype.str), bias)


def linear_grad_input(grad_output, weight, grad_input):
    """grad_input[n, i] = sum_o grad_output[n, o] * weight[o, i]. grad_output (N, O); weight (O, I);
    grad_input (N, I)."""
    _linear_grad_input(grad_output, weight, grad_input, _reads_in_place(weight))


def linear_grad_input_panels(grad_output, weight, grad_input):
    """``linear_grad_input`` through the weight's panels whatever the sizes, for the spec registry."""
    _linear_grad_input(grad_output, weight, grad_input, False)


def _linear_grad_input(grad_output, weight, grad_input, in_place: bool) -> None:
    batch, out_features = grad_output.shape
    in_features = weight.shape[1]
    t = _grad_input_tables(batch, in_features, out_features, in_place)
    lanes = t["lanes_per_panel"]
    vectors = weight.reshape(-1) if in_place else _panels("linear weight panels", weight, t["starts"], t["width"],
                                                          lanes)
    fma(_KERNEL[lanes], vectors, t["voff"], t["vb"], grad_output.reshape(-1), t["xr"], t["xc"], t["xb"], t["rlo"],
        t["rhi"], grad_input.reshape(-1), t["ocol"], t["oblk"], t["ostride"], t["lanes"],
        zeros(t["vb"].size * lanes, grad_output.dtype.str), zeros(batch, grad_output.dtype.str))


def linear_grad_weight(grad_output, x, grad_weight):
    """grad_weight[o, i] = sum_n grad_output[n, o] * x[n, i]. grad_output (N, O); x (N, I); grad_weight (O, I)."""
    _linear_grad_weight(grad_output, x, grad_weight, _reads_in_place(x))


def linear_grad_weight_panels(grad_output, x, grad_weight):
    """``linear_grad_weight`` through the input's panels whatever the sizes, for the spec registry."""
    _linear_grad_weight(grad_output, x, grad_weight, False)


def _linear_grad_weight(grad_output, x, grad_weight, in_place: bool) -> None:
    batch, out_features = grad_output.shape
    in_features = x.shape[1]
    t = _grad_weight_tables(batch, in_features, out_features, in_place)
    lanes = t["lanes_per_panel"]
    vectors = x.reshape(-1) if in_place else _panels("linear input panels", x, t["starts"], t["width"], lanes)
    fma(_KERNEL[lanes], vectors, t["voff"], t["vb"], grad_output.reshape(-1), t["xr"], t["xc"], t["xb"], t["rlo"],
        t["rhi"], grad_weight.reshape(-1), t["ocol"], t["oblk"], t["ostride"], t["lanes"],
        zeros(t["vb"].size * lanes, x.dtype.str), zeros(t["xc"].size, x.dtype.str))


@parallel_kernel(cache=True, fastmath={"reassoc"})
def bias_grad(grad_output, grad_bias):
    """grad_bias[c] = sum over n and s of grad_output[n, c, s]: the bias gradient of linear (S = 1) and of
    convolution (S = flattened output positions). grad_output (N, C, S); grad_bias (C,). Summed in float64; the
    order of the additions is left to the compiler, so that the sum vectorises."""
    batch, channels, size = grad_output.shape
    for c in prange(channels):
        total = 0.0
        for n in range(batch):
            row = grad_output[n, c]
            for s in range(size):
                total += row[s]
        grad_bias[c] = total


@parallel_kernel(cache=True)
def bias_add(out, bias):
    """out[n, c, s] += bias[c]: the bias of a transposed convolution, whose other terms the convolution's input
    gradient kernel writes. out (N, C, S); bias (C,). The adjoint of :func:`bias_grad`."""
    batch, channels, size = out.shape
    for plane in prange(batch * channels):
        n = plane // channels
        c = plane - n * channels
        value = bias[c]
        row = out[n, c]
        for s in range(size):
            row[s] += value
