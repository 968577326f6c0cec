"""The Winograd F(2x2, 3x3) weight gradient: a 2D convolution with 3 x 3 windows at stride 1 and dilation 1, any
padding and groups (a 3D one with a single depth tap at depth stride 1 and no depth padding too: its depth slices are
more samples).

The forward pass of a 2 x 2 output tile is Y = A^T [(G w G^T) * (B^T d B)] A for the 4 x 4 input tile d under it, so
the gradient of a weight is the sum over tiles k of G^T [(A dY_k A^T) * (B^T d_k B)] G: per transform position xi
(16 of them) one product of (output channels x input channels) summed over the tiles,
M_xi[o, c] = sum_k (A dY_k A^T)_xi[o] (B^T d_k B)_xi[c], then dW = G^T M G, 16 multiplies per tile and channel pair
where the direct kernel takes 36. B and A hold 0 and +-1, G 0, 1 and +-1/2: every constant is a binary fraction.

One call:

1. the input packed channel-innermost (``dense.pack_positions``: blocks of ``LANES`` input channels) and its 4 x 4
   tiles transformed, V (16, G, CB, K, LANES) (``_input_tiles``), zeros past a group's channels;
2. the output gradient packed channel-innermost (a group's output channels side by side) and its 2 x 2 tiles
   transformed, U (G, K, 16, Og) (``_gradient_tiles``);
3. the 16 products on the blocked kernel of ``SHAPE`` (lanes the input channels, columns the output channels, the
   sum over tiles split into chunks of at most ``tuning.WINOGRAD_WEIGHT_CHUNK_TILES`` tiles);
4. G^T M G, the chunks' products added in float64 (``_weight_from_products``).

Steps 1-4 run over passes of as many samples as ``tuning.WINOGRAD_WEIGHT_PASS_BYTES`` of transformed tiles hold,
so that the scratch memory is bounded whatever the batch (a 512-channel layer on 56 x 56 at batch 32 would
otherwise transform 1.6 GB); the passes' gradients are added in float64.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import prange

from numconv.kernels.cpu import tuning
from numconv.kernels.cpu.dense import pack_positions
from numconv.kernels.cpu.launch import fma, workspace, zeros
from numconv.kernels.cpu.parallel import parallel_kernel

#: the blocked kernel of the products: 64 input channels per vector (four per column's broadcast number), measured
#: 203-209 GFLOP/s on AlexNet's third and fifth layers' products at batch 16 (16 x 14: 140-167, 32 x 7: 178-193)
SHAPE = (tuning.WIDE_LANES, tuning.WIDE_COLUMNS)
LANES = SHAPE[0]

_U = np.uint64


def applies(x_shape, weight_shape, stride, padding, dilation) -> bool:
    """Whether the weight gradient of a (N, C, D, H, W) convolution is one this computes: 3 x 3 windows in each plane
    at stride 1 and dilation 1, one depth tap at depth stride 1 without depth padding."""
    return (tuple(weight_shape[2:]) == (1, 3, 3) and tuple(stride) == (1, 1, 1) and tuple(dilation) == (1, 1, 1)
            and padding[0] == 0)


def worthwhile(x_shape, weight_shape, groups, out_shape) -> bool:
    """Where the transforms pay: a group has at least ``tuning.WINOGRAD_WEIGHT_MIN_CHANNELS`` input and output
    channels (each tile's transforms then serve that many products), and the output at least
    ``tuning.WINOGRAD_WEIGHT_MIN_TILES`` 2 x 2 tiles (``out_shape``: batch, depth, height and width)."""
    batch, depth, height, width = out_shape
    tiles = batch * depth * -(-height // 2) * -(-width // 2)
    return (min(x_shape[1] // groups, weight_shape[0] // groups) >= tuning.WINOGRAD_WEIGHT_MIN_CHANNELS
            and tiles >= tuning.WINOGRAD_WEIGHT_MIN_TILES)


@parallel_kernel(cache=True)
def _input_tiles(packed, height, width, pad_h, pad_w, tiles_h, tiles_w, transformed):
    """transformed (16, G, CB, K, L)[i * 4 + j, g, b, k] = (B^T d B)[i, j] for the input tile d of tile k = (n, ty, tx):
    rows 2 ty - pad_h .. + 3, columns 2 tx - pad_w .. + 3 of packed (G * CB, N * H * W, L)'s sample n (zeros outside
    the input). One task per (block, n, tile row)."""
    blocks, _, lanes = packed.shape
    samples = packed.shape[1] // (height * width)
    groups = transformed.shape[1]
    per_group = blocks // groups
    for task in prange(blocks * samples * tiles_h):
        ty = task % tiles_h
        n = (task // tiles_h) % samples
        block = task // (tiles_h * samples)
        g, b = block // per_group, block % per_group
        d = np.empty((16, lanes), packed.dtype)
        rows = np.empty((16, lanes), packed.dtype)
        for tx in range(tiles_w):
            for i in range(4):
                y = 2 * ty - pad_h + i
                for j in range(4):
                    x = 2 * tx - pad_w + j
                    if 0 <= y < height and 0 <= x < width:
                        d[i * 4 + j] = packed[block, (n * height + y) * width + x]
                    else:
                        d[i * 4 + j] = 0.0
            for j in range(4):  # B^T d: rows d0 - d2, d1 + d2, d2 - d1, d1 - d3
                for lane in range(lanes):
                    d0, d1, d2, d3 = d[j, lane], d[4 + j, lane], d[8 + j, lane], d[12 + j, lane]
                    rows[j, lane] = d0 - d2
                    rows[4 + j, lane] = d1 + d2
                    rows[8 + j, lane] = d2 - d1
                    rows[12 + j, lane] = d1 - d3
            k = (n * tiles_h + ty) * tiles_w + tx
            for i in range(4):  # ... times B: columns t0 - t2, t1 + t2, t2 - t1, t1 - t3
                for lane in range(lanes):
                    t0, t1, t2, t3 = rows[i * 4, lane], rows[i * 4 + 1, lane], rows[i * 4 + 2, lane], \
                        rows[i * 4 + 3, lane]
                    transformed[i * 4, g, b, k, lane] = t0 - t2
                    transformed[i * 4 + 1, g, b, k, lane] = t1 + t2
                    transformed[i * 4 + 2, g, b, k, lane] = t2 - t1
                    transformed[i * 4 + 3, g, b, k, lane] = t1 - t3


@parallel_kernel(cache=True)
def _gradient_tiles(packed, out_h, out_w, tiles_h, tiles_w, transformed):
    """transformed (G, K, 16, Og), flat: [g, k, i * 4 + j] = (A e A^T)[i, j] for the 2 x 2 output-gradient tile e of
    tile k = (n, ty, tx) in packed (G, N * OH * OW, Og) (zeros past the output's last row or column), A = [[1, 0],
    [1, 1], [1, -1], [0, -1]]. One task per (group, n, tile row); unsigned offsets, so that the loop over the output
    channels vectorises, and each tile's 16 rows are one run."""
    groups, _, channels = packed.shape
    samples = packed.shape[1] // (out_h * out_w)
    tiles = samples * tiles_h * tiles_w
    step = np.uint64(channels)  # from one of a tile's 16 rows to the next
    for task in prange(groups * samples * tiles_h):
        ty = task % tiles_h
        n = (task // tiles_h) % samples
        g = task // (tiles_h * samples)
        rows = np.empty((4, channels), packed.dtype)
        for tx in range(tiles_w):
            for i in range(2):
                for j in range(2):
                    y, x = 2 * ty + i, 2 * tx + j
                    if y < out_h and x < out_w:
                        rows[i * 2 + j] = packed[g, (n * out_h + y) * out_w + x]
                    else:
                        rows[i * 2 + j] = 0.0
            base = np.uint64((g * tiles + (n * tiles_h + ty) * tiles_w + tx) * 16 * channels)
            # A e, e the tile [[a, b], [c, d]]: rows (a, b), (a + c, b + d), (a - c, b - d), (-c, -d); each row
            # (p, q) times A^T: (p, p + q, p - q, -q)
            for o in range(np.uint64(channels)):
                a, b, c, d = rows[0, o], rows[1, o], rows[2, o], rows[3, o]
                at = base + o
                transformed[at] = a
                transformed[at + step] = a + b
                transformed[at + 2 * step] = a - b
                transformed[at + 3 * step] = -b
                transformed[at + 4 * step] = a + c
                transformed[at + 5 * step] = a + c + b + d
                transformed[at + 6 * step] = a + c - b - d
                transformed[at + 7 * step] = -b - d
                transformed[at + 8 * step] = a - c
                transformed[at + 9 * step] = a - c + b - d
                transformed[at + 10 * step] = a - c - b + d
                transformed[at + 11 * step] = d - b
                transformed[at + 12 * step] = -c
                transformed[at + 13 * step] = -c - d
                transformed[at + 14 * step] = d - c
                transformed[at + 15 * step] = d


@parallel_kernel(cache=True)
def _weight_from_products(products, total, first):
    """total (O, Cg, 1, 3, 3), float64: [g * Og + o, c] = (``first``) or += G^T M G for M[i, j] = the sum over chunks
    of products (chunks, 16, G, Og, CB * L)[:, i * 4 + j, g, o, c], added in float64; G = [[1, 0, 0],
    [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]. One task per output channel, its input channels innermost."""
    chunks, _, groups, group_out, _ = products.shape
    group_in = total.shape[1]
    for task in prange(groups * group_out):
        g, o = task // group_out, task % group_out
        m = np.empty((16, group_in))
        for t in range(16):
            for c in range(group_in):
                m[t, c] = products[0, t, g, o, c]
            for chunk in range(1, chunks):
                for c in range(group_in):
                    m[t, c] += products[chunk, t, g, o, c]
        columns = np.empty((12, group_in))  # M G: m0 + (m1 + m2) / 2, (m1 - m2) / 2, (m1 + m2) / 2 + m3 per row
        for i in range(4):
            for c in range(group_in):
                m0, m1, m2, m3 = m[i * 4, c], m[i * 4 + 1, c], m[i * 4 + 2, c], m[i * 4 + 3, c]
                columns[i * 3, c] = m0 + 0.5 * (m1 + m2)
                columns[i * 3 + 1, c] = 0.5 * (m1 - m2)
                columns[i * 3 + 2, c] = 0.5 * (m1 + m2) + m3
        for c in range(group_in):  # G^T (M G): the same down the columns
            for kx in range(3):
                s0, s1, s2, s3 = columns[kx, c], columns[3 + kx, c], columns[6 + kx, c], columns[9 + kx, c]
                rows = (s0 + 0.5 * (s1 + s2), 0.5 * (s1 - s2), 0.5 * (s1 + s2) + s3)
                for ky in range(3):
                    if first:
                        total[task, c, 0, ky, kx] = rows[ky]
                    else:
                        total[task, c, 0, ky, kx] += rows[ky]


@lru_cache(maxsize=32)
def _tables(groups: int, in_blocks: int, group_out: int, group_in: int, tiles: int, chunks: int):
    """The blocked kernel's tables for the 16 products: blocks (chunk, xi, group, block of input channels), columns
    the group's output channels, each block's sum over its chunk of the tiles."""
    lanes = LANES
    blocks = np.arange(chunks * 16 * groups * in_blocks)
    chunk, within = blocks // (16 * groups * in_blocks), blocks % (16 * groups * in_blocks)
    xi_group = within // in_blocks
    block = within % in_blocks
    row = in_blocks * lanes
    return dict(
        voff=(np.arange(tiles) * lanes).astype(_U),
        vb=(within * tiles * lanes).astype(_U),
        xr=(np.arange(tiles) * 16 * group_out).astype(_U),
        xc=np.arange(group_out).astype(_U),
        xb=(((xi_group % groups) * tiles * 16 + xi_group // groups) * group_out).astype(_U),
        rlo=(chunk * tiles // chunks).astype(_U),
        rhi=((chunk + 1) * tiles // chunks).astype(_U),
        ocol=(np.arange(group_out) * row).astype(_U),
        oblk=(((chunk * 16 * groups + xi_group) * group_out) * row + block * lanes).astype(_U),
        lanes=np.minimum(lanes, group_in - block * lanes).astype(np.int64),
    )


def grad_weight(grad_output, x, grad_weight_out, padding, groups, chunks=None, pass_bytes=None) -> None:
    """grad_weight[o, c] = sum over the batch and output positions of grad_output * the input under each tap, by
    Winograd. grad_output (N, O, D, OH, OW); x (N, C, D, H, W); grad_weight (O, C // groups, 1, 3, 3), overwritten;
    ``padding`` the (front, top, left) padding (the front 0); all C-contiguous, one float dtype.

    The samples (depth slices) go in passes whose transformed tiles take at most ``pass_bytes`` (by default
    ``tuning.WINOGRAD_WEIGHT_PASS_BYTES``; at least one sample a pass), their weight gradients added in float64; within
    a pass the sum over tiles is split into ``chunks`` (by default of ``tuning.WINOGRAD_WEIGHT_CHUNK_TILES`` tiles
    each; at most one per tile)."""
    batch, channels, depth, height, width = x.shape
    out_channels, out_h, out_w = grad_output.shape[1], grad_output.shape[3], grad_output.shape[4]
    samples = batch * depth  # one depth tap without depth padding: each depth slice is a sample of a 2D convolution
    group_in, group_out = channels // groups, out_channels // groups
    in_blocks = -(-group_in // LANES)
    tiles_h, tiles_w = -(-out_h // 2), -(-out_w // 2)
    per_sample = tiles_h * tiles_w
    dtype = x.dtype
    budget = tuning.WINOGRAD_WEIGHT_PASS_BYTES if pass_bytes is None else pass_bytes
    tile_bytes = 16 * groups * (in_blocks * LANES + group_out) * dtype.itemsize
    samples_per_pass = max(1, budget // (per_sample * tile_bytes))
    planes = np.ascontiguousarray(x.transpose(0, 2, 1, 3, 4)) if depth > 1 else x
    planes = planes.reshape(samples, channels, height * width)
    gradient = np.ascontiguousarray(grad_output.transpose(0, 2, 1, 3, 4)) if depth > 1 else grad_output
    gradient = gradient.reshape(samples, out_channels, out_h * out_w)
    total = workspace("winograd weight sums", grad_weight_out.size, np.float64).reshape(grad_weight_out.shape)
    for first in range(0, samples, samples_per_pass):
        count = min(samples_per_pass, samples - first)
        tiles = count * per_sample
        pass_chunks = -(-tiles // tuning.WINOGRAD_WEIGHT_CHUNK_TILES) if chunks is None else min(chunks, tiles)
        packed_input = workspace("winograd weight input", groups * in_blocks * count * height * width * LANES, dtype)
        packed_input = packed_input.reshape(groups * in_blocks, count * height * width, LANES)
        pack_positions(planes[first:first + count], groups, packed_input, 0)
        input_tiles = workspace("winograd weight input tiles", 16 * groups * in_blocks * tiles * LANES, dtype)
        _input_tiles(packed_input, height, width, padding[1], padding[2], tiles_h, tiles_w,
                     input_tiles.reshape(16, groups, in_blocks, tiles, LANES))
        packed_gradient = workspace("winograd weight gradient", groups * count * out_h * out_w * group_out, dtype)
        packed_gradient = packed_gradient.reshape(groups, count * out_h * out_w, group_out)
        pack_positions(gradient[first:first + count], groups, packed_gradient, 0)
        gradient_tiles = workspace("winograd weight gradient tiles", 16 * groups * tiles * group_out, dtype)
        _gradient_tiles(packed_gradient, out_h, out_w, tiles_h, tiles_w, gradient_tiles)
        t = _tables(groups, in_blocks, group_out, group_in, tiles, pass_chunks)
        products = workspace("winograd weight products",
                             pass_chunks * 16 * groups * group_out * in_blocks * LANES, dtype)
        fma(SHAPE, input_tiles, t["voff"], t["vb"], gradient_tiles, t["xr"], t["xc"], t["xb"], t["rlo"], t["rhi"],
            products, t["ocol"], t["oblk"], _U(1), t["lanes"], zeros(t["vb"].size * LANES, dtype.str),
            zeros(group_out, dtype.str))
        _weight_from_products(products.reshape(pass_chunks, 16, groups, group_out, in_blocks * LANES), total,
                              first == 0)
    grad_weight_out[...] = total
