"""The CPU engine's algorithm choices and their edges: which formulation each anchor layer gets, every formulation
against the NumPy reference on sizes the spec registry's small configurations do not reach (odd sizes, channel
counts that are not multiples of 16, groups, float64), and the generated kernel module being up to date."""
import os
import subprocess
import sys

import numba
import numpy as np
import pytest
from llvmlite import binding

import numconv.functional as F
from numconv import vectors
from numconv.kernels.cpu import blocked, codegen, launch, packed, tuning, winograd, winograd_codegen, winograd_weight
from numconv.kernels.cpu import conv as cpu_conv
from numconv.kernels.cpu import conv_cost, conv_layout, conv_plan
from tests import naive

#: the blocked kernels of one and of two vectors per column that this CPU's registers take (16 x 14 and 32 x 7 with
#: AVX-512's 32, 16 x 5 and 32 x 3 with AVX2's 16)
SINGLE, PAIRED = (tuning.LANES, tuning.COLUMNS), (tuning.PAIRED_LANES, tuning.PAIRED_COLUMNS)
#: the count of vector registers that the machine-dependent choices below were measured for
REGISTERS = vectors.registers()
#: whether a vector load crossing a cache line costs two (Intel's AVX-512 CPUs): the rows' vectors then pay for it
SPLITS = vectors.splits_line_loads()
#: whether 512-bit multiply-adds run at full width, two a cycle (Intel's AVX-512 CPUs, AMD Zen 5): the direct kernels
#: then keep up with what trades multiply-adds for transforms and copies, and take the 32-lane kernel for short sums
FULL = vectors.full_width_fma()
#: whether windows one row tall go to Winograd's F(2, 3) at all: not where the 32-lane direct kernel keeps up (AMD
#: Zen 5: full-width multiply-adds, and vector loads across cache lines at no extra cost)
ROW_WINOGRAD = SPLITS or not FULL


def _five(shape):
    return tuple(shape[:2]) + (1,) * (5 - len(shape)) + tuple(shape[2:])


def _triple(value, ndim, fill):
    values = (value,) * ndim if isinstance(value, int) else tuple(value)
    return (fill,) * (3 - ndim) + values


def _layouts(x_shape, w_shape, stride=1, padding=0, dilation=1, groups=1):
    ndim = len(x_shape) - 2
    stride, padding, dilation = (_triple(v, ndim, f) for v, f in ((stride, 1), (padding, 0), (dilation, 1)))
    out = tuple((x_shape[2 + a] + 2 * padding[3 - ndim + a] - dilation[3 - ndim + a] * (w_shape[2 + a] - 1) - 1)
                // stride[3 - ndim + a] + 1 for a in range(ndim))
    y_shape = (x_shape[0], w_shape[0]) + out
    forward = conv_layout.forward_layout(_five(x_shape), _five(w_shape), _five(y_shape)[2:], stride, padding, dilation,
                                       groups)
    plan = conv_plan.grad_input_plan(_five(y_shape), _five(w_shape), _five(x_shape), stride, padding, dilation, groups)
    return forward, plan


def test_generated_kernels_are_up_to_date():
    assert codegen.TARGET.read_text() == codegen.module_source(), "run python -m numconv.kernels.cpu.codegen"
    assert winograd_codegen.TARGET.read_text() == winograd_codegen.module_source(), \
        "run python -m numconv.kernels.cpu.winograd_codegen"


def test_the_kernels_of_this_cpu_are_those_its_registers_hold():
    assert tuning.SHAPES == blocked.SHAPES[REGISTERS]
    assert tuning.ROW_SHAPES == blocked.ROW_SHAPES[REGISTERS]
    assert winograd.WIDTH == winograd_codegen.WIDTHS[REGISTERS]
    # the accumulators and one step's vector operand fit: registers of 16 float32 (AVX-512) or 8 (AVX2)
    per_register = 16 if REGISTERS == 32 else 8
    for lanes, columns in tuning.KERNEL_SHAPES:
        assert lanes // per_register * (columns + 1) <= REGISTERS, (lanes, columns)


@pytest.mark.parametrize("shape", list(blocked.KERNELS))
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("sum_length", ["short", "long", "long, many blocks"])
@pytest.mark.parametrize("relu", [False, True])
def test_every_generated_kernel_computes_its_blocked_products(shape, transposed, sum_length, relu, rng):
    """Each kernel, whether this CPU's registers take it or not, on a matrix product with a partial block of lanes
    and a partial strip of columns: out = A B + the lane and column terms (0 where negative with ``relu``, as a
    convolution whose ReLU is fused stores them), stored with the lanes strided (one
    output row per lane) or contiguous (the vector stores of the rows formulations). Its tasks run block by block,
    or strip by strip where a block's vectors over the whole sum outgrow the first-level cache and all the blocks'
    fit the second-level one (``blocked.STRIPS_OUTER_MIN_BLOCK``, ``STRIPS_OUTER_MAX_BYTES``)."""
    lanes, width = shape
    inner = 7 if sum_length == "short" else blocked.STRIPS_OUTER_MIN_BLOCK // (4 * lanes) + 1
    full_blocks = blocked.STRIPS_OUTER_MAX_BYTES // (4 * lanes * inner) + 1 if sum_length == "long, many blocks" else 2
    operands, want = _blocked_product(rng, lanes, full_blocks * lanes + 3, inner, 3 * width + 2, transposed, relu)
    v, vb, rlo, rhi = operands[0], operands[2], operands[7], operands[8]
    assert blocked.takes_strips_outer(v, vb, rlo, rhi, lanes) is (sum_length == "long")
    launch.fma(shape, *operands, relu=relu)
    np.testing.assert_allclose(_product_result(operands[9], want.shape, transposed), want, rtol=1e-5,
                               atol=1e-5 * np.sqrt(inner / 7))


@pytest.mark.parametrize("shape", list(blocked.SPLIT_KERNELS))
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("strips_outer", [False, True])
def test_every_split_kernel_computes_its_blocked_products(shape, transposed, relu, strips_outer, rng):
    """Each kernel that splits its sum (``codegen.split_kernel_source``), whether this CPU's registers take it or not,
    on the product of ``test_every_generated_kernel_computes_its_blocked_products``: a sum of three whole chunks and a
    partial one, four strips (the last partial) two to a task, a partial block of lanes, the tasks block by block or
    run of strips by run of strips; every result of the chunks before the last comes back through the task's scratch,
    so a lost or misplaced one shows."""
    lanes, width = shape
    chunk, inner = 16, 3 * 16 + 5
    operands, want = _blocked_product(rng, lanes, 2 * lanes + 3, inner, 3 * width + 2, transposed, relu)
    launch.fma_split(shape, *operands, chunk=chunk, per_task=2, strips_outer=strips_outer, relu=relu)
    np.testing.assert_allclose(_product_result(operands[9], want.shape, transposed), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch,size,streamed,splits", [(3, 13, False, True), (1, 13, False, False),
                                                       (4, 13, True, True), (1, 28, False, False)])
def test_the_weight_gradient_splits_the_sum_in_its_tasks_where_blocks_are_large(batch, size, streamed, splits, rng,
                                                                               monkeypatch):
    """Where the packed output gradient's blocks outgrow the first-level cache (``tuning.SPLIT_MIN_BLOCK_BYTES``) and
    many strips reuse each, the weight gradient runs the 32-lane kernel's variant that splits the sum in its tasks, as
    the forward pass does: 64 -> 128 channels, 5 x 5 on 13 x 13, 3 samples (507 positions a block, 65 KB), packed
    whole or (4 samples, the thresholds lowered) in two chunks packed one by one; one sample's 21 KB blocks stay
    whole, and so do 28 x 28 planes (padded, 1024 numbers: ``tuning.ALIASED_PLANE``). Against the float64 loops."""
    if streamed:
        monkeypatch.setattr(tuning, "STREAMED_MIN_BYTES", 0)
        monkeypatch.setattr(tuning, "REDUCTION_CHUNK_ELEMENTS", 2 ** 14)
        cpu_conv.reduction_tables.cache_clear()
    x = rng.standard_normal((batch, 64, size, size)).astype(np.float32)
    g = rng.standard_normal((batch, 128, size, size)).astype(np.float32)
    w = np.zeros((128, 64, 5, 5))
    _, want, _ = naive.conv_backward(g.astype(np.float64), x.astype(np.float64), w, (1, 1), [(2, 2), (2, 2)],
                                     (1, 1), 1)
    chunks, packs = [], []
    split, pack = cpu_conv._fma_split, cpu_conv.pack_positions
    monkeypatch.setattr(cpu_conv, "_fma_split", lambda *args, **options: (chunks.append(options["chunk"]),
                                                                          split(*args, **options)))
    monkeypatch.setattr(cpu_conv, "pack_positions", lambda *args: (packs.append(args[2].shape), pack(*args)))
    got = np.empty((128, 64, 1, 5, 5), np.float32)
    try:
        cpu_conv.conv_grad_weight(g.reshape(_five(g.shape)), x.reshape(_five(x.shape)), got, (1, 1, 1), (0, 2, 2),
                                  (1, 1, 1), 1)
    finally:  # no tables of the lowered chunk size left for later tests
        cpu_conv.reduction_tables.cache_clear()
    assert len(packs) == (2 if streamed else 1)
    assert len(chunks) == (len(packs) if splits else 0) and all(chunk < batch * size * size for chunk in chunks)
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def _blocked_product(rng, lanes: int, rows: int, inner: int, columns: int, transposed: bool, relu: bool):
    """The blocked kernels' operands (``codegen.py``'s, without ``floor``) for out = A B + the lane and column terms,
    A (rows, inner) in blocks of ``lanes``, stored with the lanes strided (one output row per lane) or, with
    ``transposed``, contiguous; and that product in float64 (0 where negative with ``relu``)."""
    a = rng.standard_normal((rows, inner)).astype(np.float32)
    b = rng.standard_normal((inner, columns)).astype(np.float32)
    blocks = -(-rows // lanes)
    packed = np.zeros((blocks * lanes, inner), np.float32)
    packed[:rows] = a
    # V[vb[blk] + voff[r] + k] = A[blk * lanes + k, r]: blocks of lanes, each (inner, lanes)
    v = packed.reshape(blocks, lanes, inner).transpose(0, 2, 1).reshape(-1).copy()
    u = np.uint64
    voff = (np.arange(inner) * lanes).astype(u)
    vb = (np.arange(blocks) * lanes * inner).astype(u)
    xr, xc = (np.arange(inner) * columns).astype(u), np.arange(columns).astype(u)
    init_lane = rng.standard_normal(blocks * lanes).astype(np.float32)
    init_col = rng.standard_normal(columns).astype(np.float32)
    out = np.full(rows * columns, np.nan, np.float32)
    if transposed:  # out (columns, rows): each column's lanes contiguous
        ocol, oblk, ostride = (np.arange(columns) * rows).astype(u), (np.arange(blocks) * lanes).astype(u), u(1)
    else:  # out (rows, columns): one row per lane
        ocol, oblk, ostride = np.arange(columns).astype(u), (np.arange(blocks) * lanes * columns).astype(u), u(columns)
    counts = np.minimum(lanes, rows - np.arange(blocks) * lanes).astype(np.int64)
    rlo, rhi = np.zeros(blocks, u), np.full(blocks, inner, u)
    want = a.astype(np.float64) @ b.astype(np.float64) + init_lane[:rows, None] + init_col[None, :]
    if relu:
        want = np.maximum(want, 0.0)
        assert (want == 0).mean() > 0.3  # the floor is reached
    return (v, voff, vb, b.reshape(-1), xr, xc, np.zeros(blocks, u), rlo, rhi, out, ocol, oblk, ostride, counts,
            init_lane, init_col), want


def _product_result(out: np.ndarray, shape: tuple, transposed: bool) -> np.ndarray:
    rows, columns = shape
    return out.reshape(columns, rows).T if transposed else out.reshape(rows, columns)


@pytest.mark.parametrize("x_shape,w_shape,groups,chosen,chosen_unfrozen", [
    ((16, 256, 13, 13), (384, 256, 3, 3), 1, True, True),   # AlexNet's third and fourth layers
    ((16, 384, 13, 13), (384, 192, 3, 3), 2, True, True),
    ((4, 64, 8, 56, 56), (128, 64, 3, 3, 3), 1, True, True),  # 3D: F(2, 3) along the depth too
    ((8, 16, 8, 8, 8), (32, 16, 3, 3, 3), 1, True, True),    # three depth taps of 16 channels: 48 products per sum
    ((16, 32, 13, 13), (32, 16, 3, 3), 2, False, False),    # 2D with 16 channels a group: too few products per sum
    ((8, 32, 8, 8, 8), (16, 32, 3, 3, 3), 1, False, False),   # too few output channels
    ((64, 6, 28, 28), (16, 6, 3, 3), 1, False, False),      # too few channels for the transforms to pay
    ((1, 256, 6, 6), (384, 256, 3, 3), 1, False, False),     # one sample: 9 output tiles, too few for its weights
    # 16 and 49 tiles: enough for a frozen weight (16 not on Intel), too few for a weight transformed in the call
    ((1, 256, 7, 7), (384, 256, 3, 3), 1, not SPLITS, False),
    ((1, 256, 13, 13), (384, 256, 3, 3), 1, True, False),
    ((4, 256, 13, 13), (384, 256, 3, 3), 1, True, True),  # 196
    # 5 x 5 as four sub-windows: AlexNet's second layer, NiN's second 5 x 5 at one sample (64 tiles), its first
    # (3 input channels: 12 products per sum), too few tiles for a 5 x 5, a 5 x 3 window, and 7 taps (not served)
    ((16, 96, 27, 27), (256, 48, 5, 5), 2, True, True),
    ((16, 256, 13, 13), (384, 256, 5, 5), 1, True, True),
    ((1, 96, 16, 16), (192, 96, 5, 5), 1, True, not SPLITS),  # 64 tiles; transformed in the call, 512 on Intel
    ((8, 96, 16, 16), (192, 96, 5, 5), 1, True, True),
    ((64, 3, 32, 32), (192, 3, 5, 5), 1, False, False),
    ((1, 64, 8, 8), (64, 64, 5, 5), 1, False, False),         # 16 tiles
    ((4, 64, 8, 16), (64, 64, 5, 3), 1, True, not SPLITS),  # 128 tiles
    ((16, 64, 16, 16), (64, 64, 7, 7), 1, False, False),
    # windows one row tall by F(2, 3): the audio layer at batch 8 (1000 positions), but not at 32 (16,000 tiles) on
    # Intel, M5's last 3-tap layer (992 tiles), 5 taps; one sample (500 tiles) on Intel only; never on AMD Zen 5
    # (the direct kernel as fast forward, faster backward); not with 64 channels, on 124 tiles, nor 3 x 1 (one
    # column wide)
    ((8, 128, 1000), (128, 128, 3), 1, ROW_WINOGRAD, ROW_WINOGRAD),
    ((32, 128, 1000), (128, 128, 3), 1, not FULL, not FULL),
    ((32, 256, 61), (512, 256, 3), 1, ROW_WINOGRAD, ROW_WINOGRAD),
    ((8, 128, 250), (128, 128, 5), 1, ROW_WINOGRAD, ROW_WINOGRAD),
    ((1, 128, 1000), (128, 128, 3), 1, SPLITS, SPLITS),
    ((32, 64, 1000), (64, 64, 3), 1, False, False),
    ((1, 128, 248), (128, 128, 3), 1, False, False),
    ((32, 128, 100, 10), (128, 128, 3, 1), 1, False, False),
])
def test_winograd_takes_wide_3x3_and_5x5_stride_1_layers_only(x_shape, w_shape, groups, chosen, chosen_unfrozen):
    """``chosen`` for a frozen weight (transformed once), ``chosen_unfrozen`` for one transformed in every call."""
    x5, w5 = _five(x_shape), _five(w_shape)
    auto = cpu_conv._AUTOMATIC
    # each axis padded to keep its size (stride 1)
    same = (w5[2] // 2, w5[3] // 2, w5[4] // 2)
    for frozen, expected in ((True, chosen), (False, chosen_unfrozen)):
        assert cpu_conv._use_winograd(x5, w5, (1, 1, 1), same, (1, 1, 1), groups, auto, frozen) is expected
        assert not cpu_conv._use_winograd(x5, w5, (1, 2, 2), same, (1, 1, 1), groups, auto, frozen)
        assert not cpu_conv._use_winograd(x5, w5, (1, 1, 1), same, (1, 1, 2), groups, auto, frozen)
        # a depth stride or dilation leaves each plane's windows at stride 1: still Winograd's
        assert cpu_conv._use_winograd(x5, w5, (2, 1, 1), same, (2, 1, 1), groups, auto, frozen) is expected
    # the input gradient (same spatial size) is the transposed convolution: also Winograd, but not with padding
    # beyond the window (its flipped form would need a negative one), and a depth stride splits it into phases; its
    # flipped weight is a new array, transformed in every call
    assert cpu_conv._use_winograd_grad_input(w5, x5, (1, 1, 1), same, (1, 1, 1), groups, auto) is chosen_unfrozen
    assert not cpu_conv._use_winograd_grad_input(w5, x5, (1, 1, 1), (0, w5[3], w5[4] - 1), (1, 1, 1), groups,
                                                 auto)
    assert not cpu_conv._use_winograd_grad_input(w5, x5, (2, 1, 1), same, (1, 1, 1), groups, auto)


@pytest.mark.parametrize("x_shape,w_shape,kwargs,forward,grad_input", [
    # AlexNet's layers: small planes, many channels: 16 output channels per vector
    ((16, 256, 13, 13), (384, 256, 3, 3), dict(padding=1), "lanes", "phases"),
    ((16, 96, 27, 27), (256, 48, 5, 5), dict(padding=2, groups=2), "lanes", "phases"),
    # a strided first layer: its input gradient is one sub-pixel convolution over 3 x 16 phase channels
    ((16, 3, 227, 227), (96, 3, 11, 11), dict(stride=4), "lanes", "subpixel"),
    # ... and M5's over 4 x 1 (on AVX2 the estimates keep its 4 phases on the 64 x 1 kernel: 51 ms, where the
    # sub-pixel form measured 35)
    ((32, 1, 16000), (128, 1, 80), dict(stride=4), "lanes", "subpixel" if REGISTERS == 32 else "phases"),
    # long rows: 64 positions per block (1x1: whole planes); not on AVX2, where the 64 x 1 kernel loads nine
    # numbers per eight multiply-adds (NiN's: 48 ms, lanes 23; the audio's: 52 and 29), nor on AMD Zen 5, where the
    # 32-lane kernel ties (and NiN's layer takes the packed panels)
    ((32, 192, 32, 32), (160, 192, 1, 1), {}, "wide" if REGISTERS == 32 and not (FULL and not SPLITS) else "lanes",
     "phases"),
    # the 32-lane kernel (on Zen 4 about even with wide: 16.6 ms by wide, 16.7 by lanes; on Zen 5 8.1-8.6 against
    # 9.6-10.5)
    ((32, 128, 1000), (128, 128, 3), dict(padding=1), "lanes", "phases"),
    # LeNet's first layer: 6 output channels, rows of 28; the vectors run along the padded rows of each plane
    ((64, 1, 28, 28), (6, 1, 5, 5), dict(padding=2), "wide", "phases"),
    # three input planes: long rows earn no bonus over the lanes, and 64 positions per vector (four multiply-adds
    # per number loaded) do not beat the lanes either: with AVX2's 64 x 1 kernel (NiN's first layer: lanes 14.3 ms,
    # wide 26.3; the video's: 80 and 147), on Zen 4 (NiN's: 11.1 against 13.5; the video's 52.0 against 51.4), on an
    # Intel Xeon (the 32 x 7 kernel: NiN's 7.99 against 15.3; the video's 37.2 against 54.3), on Zen 5 (32 x 7:
    # NiN's 6.2-6.3 against 7.4-7.6); but on Zen 5 the video's rows of 112 fill the wide kernel whose blocks tile
    # them (112 x 3), where 64 x 4 left 16 of 128 lanes unused: 0.90-0.91x the time of 32 x 7 by lanes
    ((64, 3, 32, 32), (192, 3, 5, 5), dict(padding=2), "lanes", "phases"),
    ((4, 3, 16, 112, 112), (64, 3, 3, 3, 3), dict(padding=1),
     "wide" if REGISTERS == 32 and FULL and not SPLITS else "lanes", "phases"),
    # LeNet's second layer: its input gradient's 6 channels over 64 samples a vector, where the wide rows of 18
    # padded positions keep 14 (0.50 against 0.57-0.65 ms); at batch 32 half the lanes would idle (0.47 against
    # 0.38); on AVX2 the 64 x 1 kernel would take 6 strips of one channel (not measured there: not taken)
    ((64, 6, 14, 14), (16, 6, 5, 5), {}, "lanes", "samples" if REGISTERS == 32 else "phases"),
    ((32, 6, 14, 14), (16, 6, 5, 5), {}, "lanes", "phases"),
    # more input channels than two strips of columns, or a block's sum too long: each strip streams its vectors.
    # The forward: lanes (an Intel Xeon with two 512-bit FMA units: wide 0.65 ms, lanes 0.68; AMD Zen 5, 32 x 7: wide
    # 0.43, lanes 0.34); and lanes for 7 x 7 taps of 8 channels (there 1.57 against 2.43)
    ((64, 16, 14, 14), (32, 16, 3, 3), dict(padding=1), "lanes", "phases"),
    ((64, 8, 16, 16), (32, 8, 7, 7), dict(padding=3), "lanes", "phases"),
])
def test_anchor_layers_get_the_expected_algorithms(x_shape, w_shape, kwargs, forward, grad_input):
    layout, plan = _layouts(x_shape, w_shape, **kwargs)
    assert conv_cost.algorithm(layout) == forward
    assert plan.strategy == grad_input


@pytest.mark.parametrize("x_shape,w_shape,stride", [
    ((1, 3, 227, 227), (96, 3, 11, 11), 4),   # AlexNet's first layer at batch 1: 363 products, 3 blocks of 32
    ((16, 3, 227, 227), (32, 3, 11, 11), 4),  # ... with 32 output channels
    ((8, 16, 32, 32), (32, 16, 5, 5), 2),     # 400 products
])
def test_strided_layers_whose_channels_fill_32_lanes_run_on_the_32_lane_kernel(x_shape, w_shape, stride):
    """Where Winograd over their stride phases does not pay (too few tiles or output channels, too many
    multiplies), not over their stride phases either: the 32 x 7 kernel (32 x 3 on AVX2) on the strided layer
    itself (faster than the blocked kernels over the phases)."""
    x5, w5 = _five(x_shape), _five(w_shape)
    out = tuple((x5[a] - w5[a]) // s + 1 for a, s in ((3, stride), (4, stride)))
    route = cpu_conv._forward_route(x5, w5, (1,) + out, (1, stride, stride), (0, 0, 0), (1, 1, 1), 1,
                                    cpu_conv._AUTOMATIC, False)
    assert not route.winograd and not route.phase_winograd and not route.phases
    assert conv_cost.algorithm(route.layout) == "lanes"
    assert conv_cost.lanes_shape(route.layout) == PAIRED


@pytest.mark.parametrize("x_shape,w_shape,kwargs,shape", [
    # LeNet-5's second layer: rows of 10 outputs, each a strip of the 16 x 10 kernel whose inputs are consecutive
    # (AMD Zen 5: 0.118 ms against 0.149 by 16 x 14, whose strips span two rows), where this CPU has one
    ((64, 6, 14, 14), (16, 6, 5, 5), {}, tuning.ROW_SHAPES[0] if tuning.ROW_SHAPES else SINGLE),
    ((2, 3, 12), (16, 3, 3), {}, tuning.ROW_SHAPES[0] if tuning.ROW_SHAPES else SINGLE),
    ((64, 6, 14, 23), (16, 6, 5, 5), dict(stride=(1, 2)), SINGLE),  # rows of 10 at stride 2: inputs apart
    ((64, 6, 14, 24), (16, 6, 5, 5), {}, SINGLE),  # rows of 20: two strips of 14 in three are consecutive
    ((8, 16, 14, 14), (32, 16, 5, 5), {}, PAIRED),  # 32 channels summing 400 products: the 32-lane kernel
])
def test_rows_shorter_than_a_strip_take_the_kernel_as_wide_as_them(x_shape, w_shape, kwargs, shape):
    layout, _ = _layouts(x_shape, w_shape, **kwargs)
    assert conv_cost.lanes_shape(layout) == shape


@pytest.mark.parametrize("x_shape,w_shape,stride,groups,chosen", [
    # AlexNet's first layer: 48 phase channels of 3 x 3 taps, 0.53 of the direct kernel's multiplies; 0.78-0.79 of
    # its time from batch 2 (1568 tiles of 2 x 2), 0.91-1.03 at batch 1 (784) on Zen 4; but where the multiply-adds
    # run at full width, against the 32-lane kernel, 1.05-1.10 at batch 16 and 32, 0.95-1.02 at 2 and 8 (an Intel
    # Xeon), 1.07-1.10 at 16 (AMD Zen 5)
    ((16, 3, 227, 227), (96, 3, 11, 11), 4, 1, not FULL),
    ((2, 3, 227, 227), (96, 3, 11, 11), 4, 1, not FULL),
    ((1, 3, 227, 227), (96, 3, 11, 11), 4, 1, False),
    ((16, 3, 227, 227), (48, 3, 11, 11), 4, 1, True),   # 16 x 14 the direct kernel: 0.75-0.79 on the Xeon
    ((16, 4, 227, 227), (96, 2, 11, 11), 4, 2, True),
    ((16, 4, 227, 227), (64, 2, 11, 11), 4, 2, False),  # 32 output channels a group
    ((16, 3, 227, 227), (96, 3, 10, 10), 4, 1, False),  # 0.64 of the multiplies: 0.98 of the time
    ((16, 32, 56, 56), (64, 32, 5, 5), 2, 1, False),    # 0.64: 1.09
    ((16, 3, 227, 227), (96, 3, 7, 7), 4, 1, False),    # 2 x 2 taps a phase
    ((32, 1, 1, 16000), (128, 1, 1, 80), 4, 1, False),  # 1D (M5's first layer): 20 taps a phase
])
def test_strided_layers_with_three_taps_per_phase_take_phase_winograd(x_shape, w_shape, stride, groups, chosen):
    x5, w5 = _five(x_shape), _five(w_shape)
    strides = (1, 1, stride) if x_shape[2] == 1 else (1, stride, stride)
    out = tuple((x5[a] - w5[a]) // strides[a - 2] + 1 for a in (2, 3, 4))
    auto = cpu_conv._AUTOMATIC
    assert cpu_conv._use_phase_winograd(x5, w5, out, strides, (0, 0, 0), (1, 1, 1), groups, auto) is chosen
    assert not cpu_conv._use_phase_winograd(x5, w5, out, strides, (0, 0, 0), (1, 2, 2), groups, auto)
    assert not cpu_conv._use_phase_winograd(x5, w5, out, strides, (0, 0, 0), (1, 1, 1), groups,
                                            cpu_conv._Forced("lanes"))


@pytest.mark.parametrize("x_shape,w_shape,stride,dilation,chosen", [
    # M5's first layer: 4 phase planes, rows of 3981 positions, for the 64 x 4 kernel; on AVX2 the 64 x 1 kernel
    # does not repay them (16.5 ms by lanes on the strided layer, 30 over the phases), nor where the 32-lane kernel
    # takes its 80 products: on an Intel Xeon, where the rows' vectors cross cache lines (32 x 7 on the strided
    # layer: 4.7-4.8 ms, 6.15 over the phases), and on AMD Zen 5 (3.57 against 3.55: even)
    ((32, 1, 1, 16000), (128, 1, 1, 80), 4, 1, REGISTERS == 32 and not FULL),
    ((32, 1, 1, 8000), (128, 1, 1, 80), 4, 1, REGISTERS == 32 and not FULL),
    ((32, 1, 1, 16000), (128, 1, 1, 80), 4, 2, False),  # dilated: the phases would interleave
    ((8, 16, 64, 64), (32, 16, 3, 3), 2, 1, False),     # 64 phase channels of 2 x 2 taps: 44% of them zero weights
])
def test_strided_layers_run_over_their_phase_planes_where_rows_pay(x_shape, w_shape, stride, dilation, chosen):
    x5, w5 = _five(x_shape), _five(w_shape)
    strides = (1, 1, stride) if x_shape[2] == 1 else (1, stride, stride)
    dilations = (1, 1, dilation) if x_shape[2] == 1 else (1, dilation, dilation)
    out = tuple((x5[a] - dilations[a - 2] * (w5[a] - 1) - 1) // strides[a - 2] + 1 for a in (2, 3, 4))
    layout = conv_layout.forward_layout(x5, w5, out, strides, (0, 0, 0), dilations, 1)
    assert cpu_conv._use_phases(layout, x5, w5, (0, 0, 0), cpu_conv._AUTOMATIC) is chosen
    assert not cpu_conv._use_phases(layout, x5, w5, (0, 0, 0), cpu_conv._Forced("lanes"))


def test_short_rows_run_along_the_padded_plane():
    layout, plan = _layouts((64, 1, 28, 28), (6, 1, 5, 5), padding=2)
    assert conv_cost.rows_shape(layout, 64) == (28 * 32, "padded")
    (_, _, grad_layout), = plan.phases
    assert conv_cost.algorithm(grad_layout) == "wide"


def test_padded_buffers_shift_each_plane_and_crop_what_falls_outside(rng):
    """The padded buffer (and the padded rows' cut, pads of zero and a narrower size) holds each input at its
    index plus the pads, zeros elsewhere, for pads that widen or crop (negative) any axis, and sizes that cut any axis
    short; every element of the buffer is written."""
    for _ in range(60):
        planes = int(rng.integers(1, 4))
        in_shape = tuple(int(v) for v in rng.integers(1, 6, 3))
        pads = tuple(int(v) for v in rng.integers(-2, 4, 3))
        size = tuple(int(v) for v in rng.integers(1, 8, 3))
        x = rng.standard_normal((planes,) + in_shape).astype(np.float32)
        buf = np.full(planes * int(np.prod(size)), np.nan, np.float32)
        cpu_conv._pad_rows(x.reshape(-1), buf, planes, *in_shape, *pads, *size)
        expected = np.zeros((planes,) + size, np.float32)
        # the slices of both that the shift maps onto each other, axis by axis
        inside = [(max(p, 0), min(p + n, s)) for p, n, s in zip(pads, in_shape, size)]
        if all(lo < hi for lo, hi in inside):
            expected[(slice(None),) + tuple(slice(lo, hi) for lo, hi in inside)] = x[(slice(None),) + tuple(
                slice(lo - p, hi - p) for (lo, hi), p in zip(inside, pads))]
        np.testing.assert_array_equal(buf.reshape(expected.shape), expected, err_msg=f"{in_shape} {pads} {size}")


def test_samples_buffers_pack_each_padded_plane_sample_by_sample(rng):
    """The samples formulation's buffer holds lane k of block b at sample b * lanes + k of the padded buffer
    (``_pad_rows``'s: each input at its index plus the pads), zeros around it and past the batch; every element is
    written."""
    for _ in range(40):
        batch, channels, lanes = int(rng.integers(1, 10)), int(rng.integers(1, 4)), int(rng.integers(1, 5))
        in_shape = tuple(int(v) for v in rng.integers(1, 5, 3))
        pads = tuple(int(v) for v in rng.integers(0, 3, 3))
        size = tuple(int(n + p + e) for n, p, e in zip(in_shape, pads, rng.integers(0, 3, 3)))
        x = rng.standard_normal((batch, channels) + in_shape).astype(np.float32)
        blocks = -(-batch // lanes)
        buf = np.full(blocks * channels * int(np.prod(size)) * lanes, np.nan, np.float32)
        cpu_conv._pad_by_sample(x.reshape(-1), buf, batch, channels, *in_shape, *pads, *size, lanes)
        padded = np.zeros((blocks * lanes, channels) + size, np.float32)
        padded[(slice(0, batch), slice(None)) + tuple(slice(p, p + n) for p, n in zip(pads, in_shape))] = x
        expected = padded.reshape((blocks, lanes, channels) + size).transpose(0, 2, 3, 4, 5, 1)
        np.testing.assert_array_equal(buf.reshape(expected.shape), expected,
                                      err_msg=f"{batch} {lanes} {in_shape} {pads} {size}")


def test_samples_sums_run_from_the_first_to_the_last_tap_that_reads_the_output_gradient(rng):
    """Each position's sum in the samples formulation (``filled_taps``) starts at its first tap, in the window's
    row-major order, that reads inside the output gradient within its padded buffer and ends after its last, so
    that every tap it skips reads a zero; a position whose every tap reads zeros sums nothing."""
    skipped = 0
    for _ in range(60):
        ndim = int(rng.integers(1, 4))
        x_spatial = tuple(int(v) for v in rng.integers(1, 9, ndim))
        kernel = tuple(int(v) for v in rng.integers(1, 5, ndim))
        stride, dilation = (tuple(int(v) for v in rng.integers(1, 3, ndim)) for _ in range(2))
        padding = tuple(int(rng.integers(0, k * d)) for k, d in zip(kernel, dilation))
        if min(x + 2 * p - d * (k - 1) for x, p, d, k in zip(x_spatial, padding, dilation, kernel)) < 1:
            continue  # no output
        _, plan = _layouts((2, 3) + x_spatial, (4, 3) + kernel, stride, padding, dilation)
        for _, _, layout in plan.phases:
            if layout is None:
                continue
            first, stop = conv_layout.filled_taps(layout)
            taps = np.stack(np.meshgrid(*(np.arange(k) for k in layout.kernel), indexing="ij"), -1).reshape(-1, 3)
            positions = np.stack(np.meshgrid(*(np.arange(n) for n in layout.positions), indexing="ij"), -1)
            for p, q in enumerate(positions.reshape(-1, 3)):
                read = np.array(layout.origin) + np.array(layout.stride) * q + np.array(layout.dilation) * taps
                inside = np.all([(read[:, a] >= begin) & (read[:, a] < end)
                                 for a, (begin, end) in enumerate(layout.filled)], axis=0)
                where = np.flatnonzero(inside)
                want = (where[0], where[-1] + 1) if where.size else (0, 0)
                assert (first[p], stop[p]) == want, (layout, q)
                skipped += len(taps) - (stop[p] - first[p])
    assert skipped > 0


@pytest.mark.parametrize("x_shape,w_shape,kwargs,grad_input,shape", [
    # AlexNet's second layer: 128 output channels a group on the 32-lane kernel; its input gradient's 48 channels a
    # group fill 16-lane blocks only, and its 27-wide rows, padded, fill 64-position vectors (the wide kernel), but
    # not on AVX2, where lanes ran it in 55 ms and 64 x 1 in 116, nor on Zen 4 (37.7 against 40.5), nor where the
    # rows' vectors across cache lines cost two loads (Intel's)
    ((16, 96, 27, 27), (256, 48, 5, 5), dict(padding=2, groups=2), "wide" if FULL and not SPLITS else "lanes",
     PAIRED),
    # M5's fourth layer: 512 output channels summing 768 products each take the 32-lane kernel
    ((32, 256, 31), (512, 256, 3), dict(padding=1), "lanes", PAIRED),
    ((32, 128, 31), (512, 128, 3), dict(padding=1), "lanes", PAIRED),  # 384 products: 1.4x faster than 16 x 14
    # 192 products: 16 lanes on Zen 4, but 32 on AVX2 (NiN's 1 x 1: 19.5 ms against 23.5) and where the multiply-adds
    # run at full width (Intel's AVX-512 CPUs: NiN's 1 x 1 on 16 x 16 planes, 5.44 against 9.07; AMD Zen 5: this
    # layer, 0.52 against 0.69)
    ((32, 64, 31), (512, 64, 3), dict(padding=1), "lanes", SINGLE if REGISTERS == 32 and not FULL else PAIRED),
    # 96 products: 16 lanes, but 32 at full width (from 64 products: NiN's first layer, 75, 7.99 against 9.66 on a
    # Xeon, 6.2 against 7.0 on Zen 5)
    ((32, 32, 31), (512, 32, 3), dict(padding=1), "lanes", PAIRED if FULL else SINGLE),
    ((32, 16, 31), (512, 16, 3), dict(padding=1), "lanes", SINGLE),  # 48 products: 16 lanes everywhere
])
def test_the_estimates_weigh_each_kernels_speed(x_shape, w_shape, kwargs, grad_input, shape):
    layout, plan = _layouts(x_shape, w_shape, **kwargs)
    (_, _, grad_layout), = plan.phases
    assert conv_cost.algorithm(grad_layout) == grad_input
    assert conv_cost.algorithm(layout) == "lanes"
    assert conv_cost.lanes_shape(layout) == shape


#: the ``wide`` kernel whose blocks tile rows of 112 where this CPU has one, else 64 x 4 (64 x 1 with AVX2)
WIDE_ROW = (tuning.WIDE_ROW_SHAPES or ((tuning.WIDE_LANES, tuning.WIDE_COLUMNS),))[0]
WIDE = (tuning.WIDE_LANES, tuning.WIDE_COLUMNS)


@pytest.mark.parametrize("x_shape,w_shape,chosen,shape", [
    # the video's first layer: rows of 112 at stride 1, 81 products; by 112 x 3 0.90-0.91x the time of 32 x 7 by
    # lanes, where 64 x 4 leaves 16 of each row's 128 lanes unused (AMD Zen 5)
    ((4, 3, 16, 112, 112), (64, 3, 3, 3, 3), "wide", WIDE_ROW),
    ((8, 16, 112, 112), (16, 16, 3, 3), "wide", WIDE_ROW),  # 0.91x
    ((16, 3, 112, 112), (32, 3, 3, 3), "wide", WIDE_ROW),   # 0.81x
    # 864 products: 112 x 3 1.14x the time of 32 x 7
    ((2, 32, 8, 112, 112), (32, 32, 3, 3, 3), "lanes", WIDE_ROW),
    # rows of 224, two blocks each: 0.72x the time of lanes (64 x 4, which the estimates took before, 0.82x)
    ((8, 3, 224, 224), (64, 3, 3, 3), "wide", WIDE_ROW),
    ((4, 3, 8, 224, 224), (32, 3, 3, 3, 3), "wide", WIDE_ROW),  # 0.94x (64 x 4 1.10x)
    # rows of 111, 113 and 168: 64 x 4
    ((4, 3, 16, 111, 111), (64, 3, 3, 3, 3), None, WIDE),
    # 4 output channels: a strip of 64 x 4, two of 112 x 3
    ((4, 3, 16, 112, 112), (4, 3, 3, 3, 3), None, WIDE),
    ((4, 3, 16, 113, 113), (64, 3, 3, 3, 3), None, WIDE),
    ((4, 3, 16, 168, 168), (64, 3, 3, 3, 3), None, WIDE),
])
def test_rows_of_112_take_the_wide_kernel_whose_blocks_tile_them(x_shape, w_shape, chosen, shape):
    layout, _ = _layouts(x_shape, w_shape, padding=1)
    assert conv_cost.wide_shape(layout) == shape
    if chosen is not None and REGISTERS == 32 and FULL and not SPLITS:  # measured there
        assert conv_cost.algorithm(layout) == chosen


def test_a_first_layer_input_gradient_with_three_channels_uses_wide_rows():
    _, plan = _layouts((4, 3, 16, 112, 112), (64, 3, 3, 3, 3), padding=1)
    (_, _, layout), = plan.phases
    assert conv_cost.algorithm(layout) == "wide"


@pytest.mark.parametrize("x_shape,w_shape,padding,chunks", [
    # 64 channels x 3 depth taps, rows of 114 (a video's first layer's input gradient): 6 chunks of 32 planes
    ((4, 64, 16, 112, 112), (3, 64, 3, 3, 3), 1, 6),
    # ... to 4 channels: on 64 x 4, one strip (on 112 x 3, two strips, unsplit: 72-74 ms against 63-65)
    ((4, 64, 16, 112, 112), (4, 64, 3, 3, 3), 1, 6),
    ((16, 128, 16000), (1, 128, 3), 0, 4),      # 128 planes in one row
    ((8, 128, 224, 224), (3, 128, 3, 3), 1, 4),
    ((8, 64, 112, 112), (3, 64, 3, 3), 1, 1),   # 87.5 KB of rows a row of outputs: none
    ((4, 64, 8, 28, 28), (3, 64, 3, 3, 3), 1, 1),  # short rows
    ((8, 64, 224, 224), (3, 64, 1, 1), 0, 1),   # a matrix product: no rows shared
    ((8, 64, 224, 224), (3, 64, 3, 3), 1, 2),
])
def test_rows_reading_many_large_input_rows_sum_over_chunks_of_channels(x_shape, w_shape, padding, chunks):
    layout, _ = _layouts(x_shape, w_shape, padding=padding)
    chosen = conv_cost.algorithm(layout)
    assert chosen in ("rows", "wide")
    assert cpu_conv._channel_chunks(layout, chosen, 4, cpu_conv._AUTOMATIC) == chunks


@pytest.mark.parametrize("x_shape,w_shape,stride,taps", [
    ((32, 1, 8000), (128, 1, 80), 4, True),         # M5's first layer: 80 taps in runs at 0, 32 and 48
    ((32, 1, 16000), (64, 1, 32), 2, True),
    ((16, 8, 8000), (32, 8, 64), 1, True),          # 512 products per output gradient's element
    ((16, 16, 4000), (64, 16, 40), 1, False),       # runs at 0 and 8: 0.62 of the taps computed
    ((16, 16, 4000), (64, 16, 64), 1, False),       # 1024 products
    ((32, 16, 4000), (64, 16, 20), 2, False),       # fewer taps than lanes
    ((16, 3, 227, 227), (96, 3, 11, 11), 4, False),  # AlexNet's first layer
])
def test_the_weight_gradient_takes_long_rows_of_taps_over_few_channels_as_lanes(x_shape, w_shape, stride, taps):
    layout, _ = _layouts(x_shape, w_shape, stride=stride)
    shape = (tuning.PAIRED_LANES, tuning.PAIRED_COLUMNS)
    assert cpu_conv._taps_shape(layout, cpu_conv._AUTOMATIC) == (shape if taps else None)
    # another formulation forced keeps it out
    assert cpu_conv._taps_shape(layout, cpu_conv._PAIRED) is None


@pytest.mark.parametrize("threshold,streamed", [(2 ** 16, True), (2 ** 30, False)])
def test_an_output_gradient_too_large_for_the_caches_is_packed_chunk_by_chunk(threshold, streamed, rng, monkeypatch):
    """Where the packed output gradient would take ``tuning.STREAMED_MIN_BYTES`` (here lowered to 64 KB: one block of
    32 output channels x 4800 positions, 614 KB), the weight gradient packs each chunk's rows just before summing
    them, runs that start inside a sample, and sums the same products in the same order as packed whole."""
    monkeypatch.setattr(tuning, "STREAMED_MIN_BYTES", threshold)
    x = rng.standard_normal((3, 8, 1, 40, 40)).astype(np.float32)
    g = rng.standard_normal((3, 32, 1, 40, 40)).astype(np.float32)
    packs = []
    whole = cpu_conv.pack_positions
    monkeypatch.setattr(cpu_conv, "pack_positions",
                        lambda source, groups, packed, first: packs.append((first, packed.shape[1]))
                        or whole(source, groups, packed, first))
    got = np.empty((32, 8, 1, 3, 3), np.float32)
    cpu_conv.conv_grad_weight(g, x, got, (1, 1, 1), (0, 1, 1), (1, 1, 1), 1)
    want = naive.conv_backward(g[:, :, 0].astype(np.float64), x[:, :, 0].astype(np.float64),
                               np.zeros((32, 8, 3, 3)), (1, 1), [(1, 1), (1, 1)], (1, 1), 1)[1]
    np.testing.assert_allclose(got[:, :, 0], want, rtol=1e-4, atol=1e-3)
    if streamed:
        # consecutive runs covering the 4800 rows, one starting inside a sample (of 1600 rows)
        assert len(packs) > 1 and packs[0][0] == 0 and sum(rows for _, rows in packs) == 4800
        assert all(first + rows == following for (first, rows), (following, _) in zip(packs, packs[1:]))
        assert any(first % 1600 for first, _ in packs)
        # ... and to the bit what packing it whole gives
        monkeypatch.setattr(tuning, "STREAMED_MIN_BYTES", 2 ** 30)
        whole_result = np.empty_like(got)
        cpu_conv.conv_grad_weight(g, x, whole_result, (1, 1, 1), (0, 1, 1), (1, 1, 1), 1)
        np.testing.assert_array_equal(got, whole_result)
    else:
        assert packs == [(0, 4800)]


def test_the_taps_as_lanes_refuse_rows_shorter_than_the_lanes():
    x, g = np.zeros((1, 1, 1, 1, 40), np.float32), np.zeros((1, 2, 1, 1, 21), np.float32)
    with pytest.raises(ValueError, match="taps as lanes"):
        cpu_conv.conv_grad_weight_taps(g, x, np.zeros((2, 1, 1, 1, 20), np.float32), (1, 1, 1), (0, 0, 0),
                                       (1, 1, 1), 1)


CASES = [
    # (x shape, w shape, stride, padding, dilation, groups)
    ((3, 5, 17, 19), (21, 5, 3, 3), 1, 1, 1, 1),
    ((2, 6, 2, 2), (2, 3, 2, 2), 1, 0, 1, 2),
    ((2, 4, 9, 70), (6, 2, 3, 3), (2, 1), (1, 1), (1, 2), 2),
    ((2, 3, 131), (5, 3, 7), 3, 2, 1, 1),
    ((2, 2, 250), (3, 2, 9), 4, 0, 2, 1),
    ((2, 33, 7, 9), (17, 33, 1, 1), 1, 0, 1, 1),
    # enough channels per group for Winograd to be chosen: two blocks of 16 lanes, the second partial
    ((2, 64, 7, 9), (66, 32, 3, 3), 1, (2, 1), 1, 2),
    # a row of 36 taps: the weight gradient with the taps as lanes (runs of 32 at 0 and 4)
    ((2, 3, 70), (5, 3, 36), 2, 1, 1, 1),
    # 3D with 3x3 windows in each plane: Winograd sums over the depth taps, with depth padding, stride, dilation
    ((1, 32, 1, 4, 4), (32, 32, 1, 3, 3), 1, 1, 1, 1),
    ((1, 32, 2, 4, 4), (32, 32, 1, 3, 3), (2, 1, 1), (0, 1, 1), 1, 1),
    ((2, 16, 5, 4, 5), (32, 16, 3, 3, 3), 1, 1, (2, 1, 1), 1),
    ((1, 16, 5, 4, 4), (32, 16, 3, 3, 3), (2, 1, 1), 1, 1, 1),
    ((1, 3, 5, 9, 70), (4, 3, 3, 2, 3), 1, (1, 0, 1), 1, 1),
    ((1, 2, 4, 6, 40), (4, 2, 2, 3, 3), (1, 2, 2), 1, 1, 1),
    # 3 x 3 x 3 at depth stride and dilation 1: F(2, 3) along the depth too, over an odd count of output planes with
    # partial blocks of channels, and over two with groups and no depth padding
    ((2, 17, 5, 4, 5), (18, 17, 3, 3, 3), 1, 1, 1, 1),
    ((1, 32, 4, 6, 6), (34, 16, 3, 3, 3), 1, (0, 1, 1), 1, 2),
    # 5 taps along a plane's axis: Winograd sums over F(2, 3) and F(2, 2) sub-windows (NiN's and AlexNet's 5 x 5
    # layers in small; the second with 64 tiles, chosen by default)
    ((2, 4, 7, 6), (6, 2, 5, 5), 1, 2, 1, 2),
    ((4, 32, 8, 8), (33, 32, 5, 5), 1, 2, 1, 1),
    ((1, 3, 3, 6, 9), (4, 3, 2, 5, 3), 1, (1, 4, 0), 1, 1),
    # windows one row tall, by F(2, 3): 1D with a partial second block of channels and an odd length, 5 taps with
    # groups and the largest padding, and 1 x 3 over several rows
    ((2, 17, 13), (18, 17, 3), 1, 1, 1, 1),
    ((2, 8, 9), (6, 4, 5), 1, 4, 1, 2),
    ((1, 3, 4, 11), (5, 3, 1, 3), 1, (0, 1), 1, 1),
    # strided, with 3 x 3 taps per stride phase (as AlexNet's first layer)
    ((2, 3, 23, 25), (32, 3, 11, 11), 4, (1, 2), 1, 1),
    ((1, 4, 9, 11), (34, 2, 5, 6), 2, 0, 1, 2),
    # 64 samples and few channels, whose input gradient takes the samples as lanes by default; and 70 (two blocks of
    # 64 samples, the second partial) with a stride whose phases see different taps
    ((64, 3, 8, 9), (16, 3, 5, 5), 1, 0, 1, 1),
    # rows of 10 outputs at stride 1: ``lanes`` runs the kernel as wide as them, where this CPU has one
    ((3, 4, 7, 11), (5, 4, 2, 2), 1, 0, 1, 1),
    ((70, 2, 7, 6), (4, 1, 3, 2), (2, 1), (1, 0), 1, 2),
    # enough channels and tiles for the weight gradient to go to Winograd by default (two blocks of 64 input
    # channels, 40 tiles of 2 x 2, the last row and column of them partial)
    ((2, 128, 9, 7), (128, 128, 3, 3), 1, 1, 1, 1),
]


def _applies(case, variant) -> bool:
    """Whether forcing ``variant`` on ``case`` selects it: rows and wide need every layout to offer them, the
    sub-pixel form needs a strided input gradient."""
    forward_layout, plan = _layouts(*case)
    if variant in ("rows", "wide"):
        return variant in conv_cost.useful_shares(forward_layout) and all(
            layout is None or variant in conv_cost.useful_shares(layout) for _, _, layout in plan.phases)
    if variant == "subpixel":
        return plan.subpixel is not None
    if variant == "taps":
        x_shape, w_shape, stride, padding, dilation, _ = case
        return w_shape[-1] >= tuning.PAIRED_LANES and _triple(dilation, len(x_shape) - 2, 1)[2] == 1
    if variant == "channel_chunks":
        try:
            cpu_conv._channel_chunks(forward_layout, "wide", 4, cpu_conv._WIDE_CHUNKS)
        except ValueError:
            return False
        return "wide" in conv_cost.useful_shares(forward_layout)
    if variant == "phases":
        x_shape, w_shape, stride, padding, dilation, _ = case
        ndim = len(x_shape) - 2
        return cpu_conv._phases_apply(_five(x_shape), _five(w_shape), _triple(stride, ndim, 1),
                                      _triple(padding, ndim, 0), _triple(dilation, ndim, 1))
    if variant == "phase_winograd":
        x_shape, w_shape, stride, padding, dilation, _ = case
        ndim = len(x_shape) - 2
        return cpu_conv._phase_winograd_applies(_five(x_shape), _five(w_shape), _triple(stride, ndim, 1),
                                                _triple(padding, ndim, 0), _triple(dilation, ndim, 1))
    if variant == "winograd_weight":
        x_shape, w_shape, stride, padding, dilation, _ = case
        ndim = len(x_shape) - 2
        return winograd_weight.applies(_five(x_shape), _five(w_shape), _triple(stride, ndim, 1),
                                       _triple(padding, ndim, 0), _triple(dilation, ndim, 1))
    if variant == "winograd":
        x_shape, w_shape, stride, padding, dilation, _ = case
        ndim = len(x_shape) - 2
        strides = _triple(stride, ndim, 1)
        # the input gradient's Winograd needs stride 1 along the depth too (one phase)
        return strides[0] == 1 and winograd.applies(_five(x_shape), _five(w_shape), strides,
                                                    _triple(padding, ndim, 0), _triple(dilation, ndim, 1))
    return True


VARIANTS = ("auto", "lanes", "rows", "wide", "subpixel", "split", "winograd", "phases", "samples",
            "winograd_weight", "phase_winograd", "channel_chunks", "taps", "streamed", "split_tasks",
            "streamed_split_tasks")
VARIANT_CASES = [(case, variant) for case in CASES for variant in VARIANTS if _applies(case, variant)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case,variant", VARIANT_CASES, ids=[f"{c[0]}{c[1]}-{v}" for c, v in VARIANT_CASES])
def test_every_algorithm_matches_the_reference(case, dtype, variant, rng, monkeypatch):
    """Each algorithm's forward pass, input gradient and weight gradient against the float64 loops; the forward pass
    with its ReLU fused is the same forward pass, 0 where negative, to the bit."""
    x_shape, w_shape, stride, padding, dilation, groups = case
    ndim = len(x_shape) - 2
    tup = lambda v: (v,) * ndim if isinstance(v, int) else tuple(v)  # noqa: E731
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    args = (tup(stride), [(p, p) for p in tup(padding)], tup(dilation), groups)
    want = naive.conv(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), *args)
    g = rng.standard_normal(want.shape).astype(dtype)
    want_x, want_w, _ = naive.conv_backward(g.astype(np.float64), x.astype(np.float64), w.astype(np.float64), *args)
    c = cpu_conv
    forward, grad_input, grad_weight = {
        "auto": (c.conv_forward, c.conv_grad_input, c.conv_grad_weight),
        "lanes": (c.conv_forward_lanes, c.conv_grad_input_lanes, c.conv_grad_weight),
        "rows": (c.conv_forward_rows, c.conv_grad_input_rows, c.conv_grad_weight),
        "wide": (c.conv_forward_wide, c.conv_grad_input_wide, c.conv_grad_weight),
        "subpixel": (c.conv_forward, c.conv_grad_input_subpixel, c.conv_grad_weight),
        "split": (c.conv_forward, c.conv_grad_input, c.conv_grad_weight_split),
        "winograd": (c.conv_forward_winograd, c.conv_grad_input_winograd, c.conv_grad_weight),
        "phases": (c.conv_forward_phases, c.conv_grad_input, c.conv_grad_weight),
        "samples": (c.conv_forward, c.conv_grad_input_samples, c.conv_grad_weight),
        "winograd_weight": (c.conv_forward, c.conv_grad_input, c.conv_grad_weight_winograd),
        "phase_winograd": (c.conv_forward_phase_winograd, c.conv_grad_input, c.conv_grad_weight),
        "channel_chunks": (c.conv_forward_channel_chunks, c.conv_grad_input, c.conv_grad_weight),
        "taps": (c.conv_forward, c.conv_grad_input, c.conv_grad_weight_taps),
        "streamed": (c.conv_forward, c.conv_grad_input, c.conv_grad_weight_streamed),
        "split_tasks": (c.conv_forward, c.conv_grad_input, c.conv_grad_weight_split_tasks),
        "streamed_split_tasks": (c.conv_forward, c.conv_grad_input, c.conv_grad_weight_streamed_split_tasks)}[variant]
    five = lambda a: a.reshape(_five(a.shape))  # noqa: E731
    geometry = (_triple(stride, ndim, 1), _triple(padding, ndim, 0), _triple(dilation, ndim, 1), groups)
    y, grad_x, grad_w = np.empty(want.shape, dtype), np.empty_like(x), np.empty_like(w)
    forward(five(x), five(w), b, five(y), *geometry)
    grad_input(five(g), five(w), five(grad_x), *geometry)
    grad_weight(five(g), five(x), five(grad_w), *geometry)
    tolerance = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)
    scale = lambda a: max(1.0, float(np.abs(a).max()))  # noqa: E731
    np.testing.assert_allclose(y / scale(want), want / scale(want), **tolerance)
    np.testing.assert_allclose(grad_x / scale(want_x), want_x / scale(want_x), **tolerance)
    np.testing.assert_allclose(grad_w / scale(want_w), want_w / scale(want_w), **tolerance)
    # a bias shifted by the outputs' median, so that about half of them are negative
    shifted, plain, rectified = (b - np.median(y)).astype(dtype), np.empty_like(y), np.full_like(y, np.nan)
    forward(five(x), five(w), shifted, five(plain), *geometry)
    unfused = cpu_conv._conv_forward
    monkeypatch.setattr(cpu_conv, "_conv_forward", lambda *args: unfused(*args, relu=True))
    forward(five(x), five(w), shifted, five(rectified), *geometry)
    np.testing.assert_array_equal(rectified, np.maximum(plain, 0))
    assert (plain < 0).any() and (plain > 0).any()


@pytest.mark.parametrize("x_shape,w_shape,groups,chosen", [
    # where the multiply-adds run at full width none (AlexNet's third layer: 1.68 of the direct kernel's time on a
    # Xeon, 1.32 on AMD Zen 5)
    ((16, 256, 13, 13), (384, 256, 3, 3), 1, not FULL),   # AlexNet's third layer: 0.75 of the direct kernel's time
    ((16, 384, 13, 13), (256, 192, 3, 3), 2, not FULL),   # its fifth, 192 -> 128 channels a group
    ((64, 192, 8, 8), (192, 192, 3, 3), 1, not FULL),     # NiN's 3 x 3 layer at batch 64
    ((2, 192, 8, 8), (192, 192, 3, 3), 1, not FULL),      # ... at batch 2: 32 tiles
    ((1, 192, 8, 8), (192, 192, 3, 3), 1, False),     # ... at batch 1: 16 tiles, too few to repay the transforms
    ((64, 96, 16, 16), (96, 96, 3, 3), 1, False),     # 96 channels: 1.2x slower than the direct kernel
    ((16, 128, 14, 14), (128, 128, 5, 5), 1, False),  # 5 x 5: not computed
])
def test_winograd_takes_the_weight_gradient_of_wide_3x3_layers_only(x_shape, w_shape, groups, chosen):
    out = (x_shape[0], w_shape[0], 1) + tuple(x_shape[2:])
    x5, w5 = _five(x_shape), _five(w_shape)
    padding = (0, w_shape[2] // 2, w_shape[3] // 2)
    assert cpu_conv._use_winograd_grad_weight(out, x5, w5, (1, 1, 1), padding, (1, 1, 1), groups,
                                              cpu_conv._AUTOMATIC) is chosen
    # a forced formulation of the direct kernel keeps it
    assert not cpu_conv._use_winograd_grad_weight(out, x5, w5, (1, 1, 1), padding, (1, 1, 1), groups,
                                                  cpu_conv._PAIRED)


@pytest.mark.parametrize("pass_bytes,passes", [(None, 1), (1, 3)])
def test_the_winograd_weight_gradient_goes_over_the_batch_in_passes_its_memory_allows(pass_bytes, passes, rng,
                                                                                     monkeypatch):
    """Where the transformed tiles of a batch outgrow ``tuning.WINOGRAD_WEIGHT_PASS_BYTES``, the samples go in passes
    (here one each) whose gradients are added: the same result as the direct kernel, in as many passes."""
    if pass_bytes is not None:
        monkeypatch.setattr(tuning, "WINOGRAD_WEIGHT_PASS_BYTES", pass_bytes)
    monkeypatch.setattr(tuning, "WINOGRAD_WEIGHT_MIN_CHANNELS", 128)  # where the CPU's estimates take it
    calls = []
    transform = winograd_weight._input_tiles
    monkeypatch.setattr(winograd_weight, "_input_tiles", lambda *args: calls.append(1) or transform(*args))
    x = rng.standard_normal((3, 128, 1, 9, 8)).astype(np.float32)
    g = rng.standard_normal((3, 128, 1, 9, 8)).astype(np.float32)
    want, got = np.empty((128, 128, 1, 3, 3), np.float32), np.full((128, 128, 1, 3, 3), np.nan, np.float32)
    cpu_conv.conv_grad_weight_paired(g, x, want, (1, 1, 1), (0, 1, 1), (1, 1, 1), 1)
    cpu_conv.conv_grad_weight(g, x, got, (1, 1, 1), (0, 1, 1), (1, 1, 1), 1)
    assert len(calls) == passes
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_forced_winograd_weight_gradient_refuses_what_it_does_not_compute():
    """Strided, dilated, 5 x 5 and depth-padded layers are ValueErrors naming what it computes, not wrong results."""
    g = np.zeros((1, 2, 1, 3, 3), np.float32)
    for x_shape, w_shape, stride, padding, dilation in [
            ((1, 2, 1, 7, 7), (2, 2, 1, 3, 3), (1, 2, 2), (0, 0, 0), (1, 1, 1)),
            ((1, 2, 1, 7, 7), (2, 2, 1, 3, 3), (1, 1, 1), (0, 0, 0), (1, 2, 2)),
            ((1, 2, 1, 7, 7), (2, 2, 1, 5, 5), (1, 1, 1), (0, 0, 0), (1, 1, 1)),
            ((1, 2, 1, 5, 5), (2, 2, 1, 3, 3), (1, 1, 1), (1, 0, 0), (1, 1, 1))]:
        with pytest.raises(ValueError, match="3x3 windows in each plane"):
            cpu_conv.conv_grad_weight_winograd(g, np.zeros(x_shape, np.float32), np.empty(w_shape, np.float32),
                                               stride, padding, dilation, 1)


def test_forced_winograd_refuses_windows_and_padding_it_does_not_compute():
    """Forcing the Winograd kernels where they do not apply is a ValueError that says what they compute, not a
    wrong result: 7 taps along an axis, and an input gradient whose flipped window would need negative padding."""
    x = np.zeros((1, 4, 1, 9, 9), np.float32)
    w7, w5 = np.zeros((4, 4, 1, 7, 7), np.float32), np.zeros((4, 4, 1, 5, 5), np.float32)
    with pytest.raises(ValueError, match="3x3 or 5x5 windows"):
        cpu_conv.conv_forward_winograd(x, w7, np.zeros(4, np.float32), np.empty((1, 4, 1, 9, 9), np.float32),
                                       (1, 1, 1), (0, 3, 3), (1, 1, 1), 1)
    with pytest.raises(ValueError, match="1x3 or 1x5 one row tall"):  # 3 x 1: one column wide
        cpu_conv.conv_forward_winograd(x, np.zeros((4, 4, 1, 3, 1), np.float32), np.zeros(4, np.float32),
                                       np.empty((1, 4, 1, 9, 9), np.float32), (1, 1, 1), (0, 1, 0), (1, 1, 1), 1)
    with pytest.raises(ValueError, match="kernel / stride rounding up to 3"):  # 7 / 4: 2 taps a phase
        cpu_conv.conv_forward_phase_winograd(x, w7, np.zeros(4, np.float32), np.empty((1, 4, 1, 1, 1), np.float32),
                                             (1, 4, 4), (0, 0, 0), (1, 1, 1), 1)
    with pytest.raises(ValueError, match="taps less one"):
        cpu_conv.conv_grad_input_winograd(np.zeros((1, 4, 1, 15, 9), np.float32), w5, np.empty_like(x), (1, 1, 1),
                                          (0, 5, 2), (1, 1, 1), 1)


@pytest.mark.parametrize("w_shape,stride_d,dilation_d,out_depth,transformed", [
    ((32, 16, 3, 3, 3), 1, 1, 8, True),    # C3D-small's second layer: tiles of 2 x 2 x 2 outputs
    ((32, 16, 3, 3, 3), 1, 1, 3, True),    # an odd count of planes: the last tile's second plane is dropped
    ((32, 16, 3, 3, 3), 1, 1, 1, False),   # one plane: 64 multiplies for 48
    ((32, 16, 3, 3, 3), 2, 1, 8, False),   # a depth stride or dilation: one 2D window per depth tap
    ((32, 16, 3, 3, 3), 1, 2, 8, False),
    ((32, 16, 2, 3, 3), 1, 1, 8, False),   # 2 or 5 depth taps, 5 x 5 in the plane: no such kernel
    ((32, 16, 5, 3, 3), 1, 1, 8, False),
    ((32, 16, 3, 5, 5), 1, 1, 8, False),
])
def test_winograd_transforms_the_depth_of_3x3x3_windows_at_depth_stride_1(w_shape, stride_d, dilation_d, out_depth,
                                                                           transformed):
    assert winograd.transforms_depth(w_shape, stride_d, dilation_d, out_depth) is transformed


def _count_winograd_tasks(monkeypatch, tasks: list) -> None:
    """Wrap the fused 3 x 3 Winograd kernels this CPU runs (one block of output channels at a time, and two) so that
    each call appends ("winograd", its task count) to ``tasks`` before it runs."""
    from numconv.kernels.cpu import winograd_kernels

    def counting(fused):
        def counting_winograd(P, U, bias, K, out, groups, group_out, oblocks, th, tw, stride_d, depth_offsets,
                              per_task, chunks, *rest):
            tasks.append(("winograd", groups * chunks * -(-P.shape[0] * out.shape[2] * th * tw // per_task)))
            fused(P, U, bias, K, out, groups, group_out, oblocks, th, tw, stride_d, depth_offsets, per_task, chunks,
                  *rest)
        return counting_winograd

    monkeypatch.setitem(winograd_kernels.KERNELS, (3, 3, winograd.WIDTH),
                        counting(winograd_kernels.KERNELS[3, 3, winograd.WIDTH]))
    monkeypatch.setitem(winograd_kernels.PAIRED, (3, 3), counting(winograd_kernels.PAIRED[3, 3]))


def test_winograd_shares_output_channels_when_tiles_are_fewer_than_threads(rng, monkeypatch):
    """A Winograd call with one block of tiles (16 tiles: a 3 x 3 layer on 8 x 8 at batch 1) splits its output
    channels into a task per thread, as far as its blocks of 16 output channels go; every output is computed once
    and right (the output starts as NaN)."""
    tasks = []
    _count_winograd_tasks(monkeypatch, tasks)
    x = rng.standard_normal((1, 32, 1, 8, 8)).astype(np.float32)
    w = rng.standard_normal((48, 32, 1, 3, 3)).astype(np.float32)
    b = rng.standard_normal(48).astype(np.float32)
    y = np.full((1, 48, 1, 8, 8), np.nan, np.float32)
    cpu_conv.conv_forward_winograd(x, w, b, y, (1, 1, 1), (0, 1, 1), (1, 1, 1), 1)
    assert tasks == [("winograd", min(3, numba.get_num_threads()))]  # 3 blocks of 16 output channels
    want = naive.conv(x[:, :, 0].astype(np.float64), w[:, :, 0].astype(np.float64), b.astype(np.float64), (1, 1),
                      [(1, 1), (1, 1)], (1, 1), 1)
    np.testing.assert_allclose(y[:, :, 0], want, rtol=1e-4, atol=1e-4)


def test_calls_with_more_tasks_than_ranges_run_every_task(rng, monkeypatch):
    """A parallel call splits its tasks into at most ``parallel.RANGES`` ranges; with more tasks than that, each
    range runs several, and every output is still computed (the outputs start as NaN, so a skipped task shows)."""
    from numconv.kernels.cpu import launch, parallel

    tasks = []

    def counting(kernel, width):
        def run(V, voff, vb, X, xr, xc, *rest):
            tasks.append((width, vb.shape[0] * -(-xc.shape[0] // width)))
            kernel(V, voff, vb, X, xr, xc, *rest)
        return run

    def counting_split(kernel, width):
        def run(V, voff, vb, X, xr, xc, *rest):
            strips = -(-xc.shape[0] // width)
            tasks.append((width, vb.shape[0] * -(-strips // rest[-1])))  # rest[-1]: strips a task
            kernel(V, voff, vb, X, xr, xc, *rest)
        return run

    for (lanes, width), kernel in list(launch.KERNELS.items()):
        monkeypatch.setitem(launch.KERNELS, (lanes, width), counting(kernel, width))
    # the paired variant's blocks (32 channels of 32 x 9 taps, 36 KB) split their sums: a strip a task here
    monkeypatch.setattr(tuning, "SPLIT_MAX_STRIPS", 1)
    for (lanes, width), kernel in list(launch.SPLIT_KERNELS.items()):
        monkeypatch.setitem(launch.SPLIT_KERNELS, (lanes, width), counting_split(kernel, width))
    _count_winograd_tasks(monkeypatch, tasks)
    # 16 groups of 32 channels: 576 Winograd tasks of 32 tiles, and over 256 tasks per blocked-kernel call
    x = rng.standard_normal((2, 512, 1, 34, 34)).astype(np.float32)
    w = rng.standard_normal((512, 32, 1, 3, 3)).astype(np.float32)
    b = rng.standard_normal(512).astype(np.float32)
    geometry = ((1, 1, 1), (0, 1, 1), (1, 1, 1), 16)
    args = ((1, 1), [(1, 1), (1, 1)], (1, 1), 16)
    want = naive.conv(x[:, :, 0].astype(np.float64), w[:, :, 0].astype(np.float64), b.astype(np.float64), *args)
    g = rng.standard_normal(want.shape).astype(np.float32)
    want_x, want_w, _ = naive.conv_backward(g.astype(np.float64), x[:, :, 0].astype(np.float64),
                                            w[:, :, 0].astype(np.float64), *args)
    c = cpu_conv
    for variant in ("lanes", "rows", "wide", "paired", "winograd"):
        tasks.clear()
        y = np.full((2, 512, 1, 34, 34), np.nan, np.float32)
        getattr(c, f"conv_forward_{variant}")(x, w, b, y, *geometry)
        grad_x = np.full_like(x, np.nan)
        getattr(c, f"conv_grad_input_{variant}")(g[:, :, None], w, grad_x, *geometry)
        assert max(count for _, count in tasks) > parallel.RANGES, (variant, tasks)
        np.testing.assert_allclose(y[:, :, 0], want, rtol=1e-4, atol=1e-3, err_msg=variant)
        np.testing.assert_allclose(grad_x[:, :, 0], want_x, rtol=1e-4, atol=1e-3, err_msg=variant)
    tasks.clear()
    grad_w = np.full_like(w, np.nan)
    c.conv_grad_weight(g[:, :, None], x, grad_w, *geometry)
    assert max(count for _, count in tasks) > parallel.RANGES, tasks
    np.testing.assert_allclose(grad_w[:, :, 0], want_w, rtol=1e-4, atol=2e-3)


def test_weight_gradient_sums_long_reductions_accurately(rng):
    """A float32 weight gradient over 2 x 40000 positions: chunked sums added in float64 stay close."""
    x = rng.standard_normal((2, 1, 40000)).astype(np.float32)
    w = rng.standard_normal((3, 1, 5)).astype(np.float32)
    g = rng.standard_normal((2, 3, 39996)).astype(np.float32)
    _, grad_w, _ = F.conv1d_backward(g, x, w)
    want = naive.conv_backward(g.astype(np.float64), x.astype(np.float64), w.astype(np.float64), (1,), [(0, 0)],
                               (1,), 1)[1]
    np.testing.assert_allclose(grad_w, want, rtol=2e-5, atol=2e-3)


@pytest.mark.parametrize("x_shape, w_shape, groups, paired", [
    ((2, 3, 48, 48), (64, 3, 3, 3), 1, True),       # two blocks of 32 lanes, 2 x 46 x 46 positions: 2 chunks
    ((1, 4, 30, 30), (64, 2, 3, 3), 2, True),       # 32 channels a group, 784 positions
    ((1, 4, 21, 21), (64, 2, 3, 3), 2, True),       # 361 positions
    ((1, 4, 20, 21), (64, 2, 3, 3), 2, REGISTERS == 16 or FULL),  # 342: too short a sum on Zen 4 only
    ((1, 4, 14, 15), (64, 2, 3, 3), 2, FULL),     # 156 positions: long enough where multiply-adds run at full width
    ((1, 4, 9, 9), (64, 2, 3, 3), 2, False),        # 49 positions: too short a sum on any CPU
    ((2, 3, 40, 40), (48, 3, 3, 3), 1, False),      # 48 channels fill 16-lane blocks, not 32-lane ones
    ((2, 3, 40, 40), (16, 3, 3, 3), 1, False),
])
def test_the_weight_gradient_takes_32_channel_blocks_for_long_sums(x_shape, w_shape, groups, paired, rng,
                                                                    monkeypatch):
    """Groups whose output channels fill 32-lane blocks, summing over at least ``tuning.PAIRED_MIN_REDUCTION``
    positions (360; 192 on AVX2; 64 where 512-bit multiply-adds run at full width), take the 32-lane kernel for the
    weight gradient, other layers the 16-lane one; either way the values are the float64 sums'."""
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    out_size = tuple(s - 2 for s in x_shape[2:])
    g = rng.standard_normal((x_shape[0], w_shape[0]) + out_size).astype(np.float32)
    taken = []
    monkeypatch.setattr(cpu_conv, "_fma_shape", lambda shape, *args: (taken.append(shape), launch.fma(shape, *args)))
    grad_w = np.full(_five(w_shape), np.nan, np.float32)
    cpu_conv.conv_grad_weight(g.reshape(_five(g.shape)), x.reshape(_five(x_shape)), grad_w, (1, 1, 1), (0, 0, 0),
                              (1, 1, 1), groups)
    assert taken == [PAIRED if paired else SINGLE]
    want = naive.conv_backward(g.astype(np.float64), x.astype(np.float64), w.astype(np.float64), (1, 1),
                               [(0, 0), (0, 0)], (1, 1), groups)[1]
    np.testing.assert_allclose(grad_w.reshape(w_shape), want, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("batch, paired", [(16, False), (20, True), (32, True), (33, False)])
def test_a_large_dense_layer_takes_up_to_32_samples_in_one_block(batch, paired, rng, monkeypatch):
    """A weight of over 4 MiB is streamed once for 17 to 32 samples (the 32-lane kernel), in blocks of 16
    otherwise; either way the values are the float64 product's."""
    from numconv.kernels.cpu import dense

    x = rng.standard_normal((batch, 1100)).astype(np.float32)
    w = rng.standard_normal((1000, 1100)).astype(np.float32)
    bias = rng.standard_normal(1000).astype(np.float32)
    assert dense.streams_weight(w)
    taken = []
    monkeypatch.setattr(dense, "fma", lambda shape, *args: (taken.append(shape), launch.fma(shape, *args)))
    out = np.full((batch, 1000), np.nan, np.float32)
    dense.linear_forward(x, w, bias, out)
    assert taken == [PAIRED if paired else SINGLE]
    want = x.astype(np.float64) @ w.astype(np.float64).T + bias
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("batch", [1, 3, 4, 5])
def test_a_dense_forward_of_up_to_four_samples_takes_dot_products_along_the_weight_rows(batch, rng, monkeypatch):
    """Up to four samples run as dot products along the weight's rows, more (over rows longer than the tiles of
    dot products take) on the 16-lane blocks; both give the float64 product's values, the bias included."""
    from numconv.kernels.cpu import dense, launch

    x = rng.standard_normal((batch, 1033)).astype(np.float32)
    w = rng.standard_normal((75, 1033)).astype(np.float32)
    bias = rng.standard_normal(75).astype(np.float32)
    assert not dense.takes_dot_tiles(x, w)
    taken = []
    monkeypatch.setattr(dense, "fma", lambda shape, *args: (taken.append(shape), launch.fma(shape, *args)))
    out = np.full((batch, 75), np.nan, np.float32)
    dense.linear_forward(x, w, bias, out)
    assert taken == ([] if batch <= dense.DOT_MAX_BATCH else [SINGLE])
    want = x.astype(np.float64) @ w.astype(np.float64).T + bias
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("batch, in_features, out_features, dtype, tiles", [
    (64, 400, 120, np.float32, True), (7, 1024, 10, np.float32, True), (9, 513, 6, np.float64, False),
    (1025, 256, 5, np.float32, False),
])
def test_a_dense_forward_with_short_weight_rows_and_a_small_input_takes_tiles_of_dot_products(
        batch, in_features, out_features, dtype, tiles, rng, monkeypatch):
    """LeNet-5's dense layers at a training batch (weight rows of at most 4 KiB, an input of at most 1 MiB) run as
    dot products in tiles of 4 samples x 4 features, with the samples and features past the last tile one at a time;
    longer rows (513 float64 numbers) or a larger input (1025 x 256 float32) take the 16-lane blocks. Either way the
    values are the float64 product's, the bias included, on one thread and on two."""
    from numconv.kernels.cpu import dense, launch
    from numconv.kernels.cpu.parallel import every_call

    x = rng.standard_normal((batch, in_features)).astype(dtype)
    w = rng.standard_normal((out_features, in_features)).astype(dtype)
    bias = rng.standard_normal(out_features).astype(dtype)
    assert dense.takes_dot_tiles(x, w) == tiles
    want = x.astype(np.float64) @ w.astype(np.float64).T + bias
    for version in ("serial", "parallel"):
        taken = []
        monkeypatch.setattr(dense, "fma", lambda shape, *args: (taken.append(shape), launch.fma(shape, *args)))
        out = np.full((batch, out_features), np.nan, dtype)
        with every_call(version):
            dense.linear_forward(x, w, bias, out)
        assert taken == ([] if tiles else [SINGLE])
        np.testing.assert_allclose(out, want, rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-3)


def test_scratch_buffers_can_be_released(rng):
    from numconv.kernels.cpu import launch

    x = rng.standard_normal((2, 3, 9, 9)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    before = F.conv2d(x, w, padding=1)
    launch.release_workspaces()
    np.testing.assert_array_equal(F.conv2d(x, w, padding=1), before)


def _counting_fills(monkeypatch):
    """Count the weight preparations (packing, transposing, Winograd's transform) that the convolutions run."""
    from numconv.kernels.cpu import launch

    fills = []

    def counted(source, tag, size, dtype, fill, key=()):
        return launch.prepared(source, tag, size, dtype, lambda array: (fills.append(tag), fill(array)), key)

    monkeypatch.setattr(cpu_conv, "_prepared", counted)
    monkeypatch.setattr(winograd, "prepared", counted)
    return fills


def _layer_with_frozen_copy(rng, x_shape, w_shape):
    """A float32 input, weight and bias of these shapes, and a frozen copy of the weight (``F.freeze``)."""
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    bias = rng.standard_normal(w_shape[0]).astype(np.float32)
    frozen = w.copy()
    F.freeze(frozen)
    return x, w, bias, frozen


#: variant -> (kernel, x shape, weight shape, stride, padding, groups): weights packed (lanes), transposed (rows),
#: Winograd-transformed; a strided first layer's packed for the 32-lane kernel; one spread over its stride phases
FROZEN_CASES = {
    "lanes": ("conv_forward_lanes", (2, 32, 1, 7, 6), (32, 16, 1, 3, 3), (1, 1, 1), (0, 1, 1), 2),
    "rows": ("conv_forward_rows", (2, 32, 1, 7, 6), (32, 16, 1, 3, 3), (1, 1, 1), (0, 1, 1), 2),
    "winograd": ("conv_forward_winograd", (2, 32, 1, 7, 6), (32, 16, 1, 3, 3), (1, 1, 1), (0, 1, 1), 2),
    "paired": ("conv_forward", (2, 3, 1, 23, 21), (32, 3, 1, 11, 11), (1, 4, 4), (0, 1, 0), 1),
    "phases": ("conv_forward_phases", (2, 3, 1, 9, 21), (32, 3, 1, 3, 8), (1, 1, 4), (0, 1, 0), 1),
}


@pytest.mark.parametrize("variant", sorted(FROZEN_CASES))
def test_frozen_weights_are_prepared_once_and_give_the_same_values(variant, rng, monkeypatch):
    kernel, x_shape, w_shape, stride, padding, groups = FROZEN_CASES[variant]
    fills = _counting_fills(monkeypatch)
    run = getattr(cpu_conv, kernel)
    x, w, bias, frozen = _layer_with_frozen_copy(rng, x_shape, w_shape)
    args = (stride, padding, (1, 1, 1), groups)
    out_size = tuple((x_shape[a] + 2 * padding[a - 2] - w_shape[a]) // stride[a - 2] + 1 for a in (3, 4))
    want = np.empty((x_shape[0], w_shape[0], 1) + out_size, np.float32)
    run(x, w, bias, want, *args)
    assert len(fills) == 1
    for call in range(3):
        out = np.full_like(want, np.nan)
        run(x, frozen, bias, out, *args)
        np.testing.assert_array_equal(out, want)
    assert len(fills) == 2  # once for the plain weight, once for all three calls with the frozen one
    reference = naive.conv(x[:, :, 0].astype(np.float64), w[:, :, 0].astype(np.float64), bias, stride[1:],
                           [(p, p) for p in padding[1:]], (1, 1), groups)
    np.testing.assert_allclose(want[:, :, 0], reference, rtol=1e-4, atol=1e-4)


def test_few_tiles_take_winograd_only_for_a_frozen_weight(rng, monkeypatch):
    """One sample of 64 -> 64 channels on 8 x 16 (32 tiles): a frozen weight, transformed once, by Winograd; the same
    weight not frozen, whose transform would run in the call, on the direct kernel; both equal to the naive sum."""
    runs = []
    transform = winograd.conv_forward
    monkeypatch.setattr(winograd, "conv_forward", lambda *args, **kw: runs.append(args) or transform(*args, **kw))
    x, w, bias, frozen = _layer_with_frozen_copy(rng, (1, 64, 1, 8, 16), (64, 64, 1, 3, 3))
    args = ((1, 1, 1), (0, 1, 1), (1, 1, 1), 1)
    reference = naive.conv(x[:, :, 0].astype(np.float64), w[:, :, 0].astype(np.float64), bias, (1, 1),
                           [(1, 1), (1, 1)], (1, 1), 1)
    for weight, by_winograd in ((w, False), (frozen, True)):
        out = np.full((1, 64, 1, 8, 16), np.nan, np.float32)
        cpu_conv.conv_forward(x, weight, bias, out, *args)
        assert len(runs) == int(by_winograd)
        np.testing.assert_allclose(out[:, :, 0], reference, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("x_shape,w_shape,kwargs,forward,grad_input", [
    # NiN's 1 x 1 layers on 32 x 32 planes (a multiple of 1024 floats: tuning.PACKED_MIN_COLUMNS_ALIASED), 160 and 96
    # output channels; their input gradients 192 and 160 input channels
    ((32, 192, 32, 32), (160, 192, 1, 1), {}, FULL, FULL),
    ((16, 160, 32, 32), (96, 160, 1, 1), {}, FULL, FULL),
    ((16, 192, 32, 32), (32, 192, 1, 1), {}, False, FULL),  # too few output channels for the copy to pay
    # on 8 x 8 (not aliased: tuning.PACKED_MIN_COLUMNS), 192 channels; NiN's last layer, 10 output channels
    ((64, 192, 8, 8), (192, 192, 1, 1), {}, FULL, FULL),
    ((64, 192, 8, 8), (10, 192, 1, 1), {}, False, FULL),
    ((64, 32, 16, 16), (64, 32, 1, 1), {}, False, False),
    # a plane shorter than a vector's positions; strided, padded and 3 x 3 layers are not 1 x 1 products
    ((64, 192, 4, 4), (192, 192, 1, 1), {}, False, False),
    ((32, 192, 32, 32), (160, 192, 1, 1), dict(stride=2), False, False),
    ((32, 192, 32, 32), (160, 192, 1, 1), dict(padding=1), False, False),
    ((32, 192, 32, 32), (160, 192, 3, 3), dict(padding=1), False, False),
    # 3D and grouped: positions flattened, a product per group
    ((8, 128, 8, 16, 16), (128, 128, 1, 1, 1), {}, FULL, FULL),
    ((16, 192, 32, 32), (192, 96, 1, 1), dict(groups=2), FULL, FULL),
])
def test_1x1_layers_take_packed_panels_where_the_copy_pays(x_shape, w_shape, kwargs, forward, grad_input):
    x5, w5 = _five(x_shape), _five(w_shape)
    stride = (1,) + (kwargs.get("stride", 1),) * 2
    padding = (0,) + (kwargs.get("padding", 0),) * 2
    groups = kwargs.get("groups", 1)
    out = tuple((x5[a] + 2 * padding[a - 2] - w5[a]) // stride[a - 2] + 1 for a in (2, 3, 4))
    auto = cpu_conv._AUTOMATIC
    assert cpu_conv._forward_route(x5, w5, out, stride, padding, (1, 1, 1), groups, auto, False).packed is forward
    assert cpu_conv._use_packed(x5, w5, stride, padding, auto, w5[1]) is grad_input
    # a forced formulation never takes them
    forced = cpu_conv._Forced(algorithm="lanes")
    assert not cpu_conv._forward_route(x5, w5, out, stride, padding, (1, 1, 1), groups, forced, False).packed


def test_packed_panels_run_the_automatic_1x1_layers_where_they_pay(rng, monkeypatch):
    """With the thresholds at one channel, every CPU's automatic forward pass and input gradient of a 1 x 1 layer
    (two chunks of 256 positions, the second partial, in each of two groups) go through the packed panels, and give
    the plain sums; a strided one does not."""
    monkeypatch.setattr(tuning, "PACKED_MIN_COLUMNS", 1)
    monkeypatch.setattr(tuning, "PACKED_MIN_COLUMNS_ALIASED", 1)
    runs = []
    products = packed.channel_products
    monkeypatch.setattr(packed, "channel_products", lambda *args, **kw: runs.append(kw) or products(*args, **kw))
    x = rng.standard_normal((2, 6, 1, 15, 21)).astype(np.float32)
    w = rng.standard_normal((10, 3, 1, 1, 1)).astype(np.float32)
    bias = rng.standard_normal(10).astype(np.float32)
    args = ((1, 1, 1), (0, 0, 0), (1, 1, 1), 2)
    out = np.full((2, 10, 1, 15, 21), np.nan, np.float32)
    cpu_conv.conv_forward(x, w, bias, out, *args)
    want = naive.conv(x[:, :, 0].astype(np.float64), w[:, :, 0].astype(np.float64), bias, (1, 1), [(0, 0), (0, 0)],
                      (1, 1), 2)
    np.testing.assert_allclose(out[:, :, 0], want, rtol=1e-5, atol=1e-5)
    grad_output = rng.standard_normal(out.shape).astype(np.float32)
    grad_input = np.full_like(x, np.nan)
    cpu_conv.conv_grad_input(grad_output, w, grad_input, *args)
    gathered = np.full_like(x, np.nan)
    cpu_conv.conv_grad_input_gather(grad_output, w, gathered, *args)
    np.testing.assert_allclose(grad_input, gathered, rtol=1e-5, atol=1e-5)
    assert runs == [{"transposed": False, "relu": False}, {"transposed": True}]
    strided = np.empty((2, 10, 1, 8, 11), np.float32)
    cpu_conv.conv_forward(x, w, bias, strided, (1, 2, 2), (0, 0, 0), (1, 1, 1), 2)
    assert len(runs) == 2


def test_a_frozen_strided_weight_is_spread_over_its_phases_and_transformed_once(rng, monkeypatch):
    fills = _counting_fills(monkeypatch)
    x, w, bias, frozen = _layer_with_frozen_copy(rng, (2, 3, 1, 23, 21), (32, 3, 1, 11, 11))
    args = ((1, 4, 4), (0, 1, 0), (1, 1, 1), 1)
    want = np.empty((2, 32, 1, 4, 3), np.float32)
    cpu_conv.conv_forward_phase_winograd(x, w, bias, want, *args)
    assert fills == ["winograd weights"]
    for call in range(3):
        out = np.full_like(want, np.nan)
        cpu_conv.conv_forward_phase_winograd(x, frozen, bias, out, *args)
        np.testing.assert_array_equal(out, want)
    assert fills == ["winograd weights"] * 2  # the three calls with the frozen weight transform it once
    reference = naive.conv(x[:, :, 0].astype(np.float64), w[:, :, 0].astype(np.float64), bias, (4, 4),
                           [(1, 1), (0, 0)], (1, 1), 1)
    np.testing.assert_allclose(want[:, :, 0], reference, rtol=1e-4, atol=1e-4)


def test_the_automatic_forward_takes_winograd_over_the_phases_where_it_pays(rng, monkeypatch):
    """With the thresholds met (here lowered to a small layer's 12 tiles and 16 output channels), ``conv_forward``
    runs Winograd's kernel on the phase planes, and its output is the strided convolution's."""
    monkeypatch.setattr(tuning, "PHASE_WINOGRAD_MIN_TILES", 12)
    monkeypatch.setattr(tuning, "PHASE_WINOGRAD_MIN_OUT_CHANNELS", 16)
    cpu_conv._forward_route.cache_clear()
    calls = []
    fused = winograd.conv_forward
    monkeypatch.setattr(winograd, "conv_forward", lambda x, *rest, **kw: calls.append((x.shape, rest[-1])) or fused(
        x, *rest, **kw))
    x = rng.standard_normal((2, 3, 1, 23, 25)).astype(np.float32)
    w = rng.standard_normal((16, 3, 1, 11, 11)).astype(np.float32)
    bias = rng.standard_normal(16).astype(np.float32)
    out = np.full((2, 16, 1, 4, 5), np.nan, np.float32)
    cpu_conv.conv_forward(x, w, bias, out, (1, 4, 4), (0, 1, 2), (1, 1, 1), 1)
    cpu_conv._forward_route.cache_clear()
    assert calls == [((2, 3, 1, 23, 25), (4, 4))]  # the input itself, packed as its 4 x 4 phases' planes
    reference = naive.conv(x[:, :, 0].astype(np.float64), w[:, :, 0].astype(np.float64), bias, (4, 4),
                           [(1, 1), (2, 2)], (1, 1), 1)
    np.testing.assert_allclose(out[:, :, 0], reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())


@pytest.mark.parametrize("variant", ["lanes", "rows", "winograd"])
def test_one_frozen_weight_serves_layers_of_different_groups(variant, rng):
    """The prepared form depends on the groups as well as on the weight: each layer gets its own (24 output
    channels: one group fills one vector and a half, two groups three quarters of one each)."""
    run = getattr(cpu_conv, f"conv_forward_{variant}")
    w = rng.standard_normal((24, 8, 1, 3, 3)).astype(np.float32)
    bias = np.zeros(24, np.float32)
    frozen = w.copy()
    F.freeze(frozen)
    for channels, groups in ((8, 1), (16, 2), (8, 1)):
        x = rng.standard_normal((1, channels, 1, 6, 6)).astype(np.float32)
        want, got = (np.empty((1, 24, 1, 4, 4), np.float32) for _ in range(2))
        run(x, w, bias, want, (1, 1, 1), (0, 0, 0), (1, 1, 1), groups)
        run(x, frozen, bias, got, (1, 1, 1), (0, 0, 0), (1, 1, 1), groups)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("shape", [(4, 3, 3, 3), (32, 32, 3, 3), (8, 16, 1, 1)])
def test_a_weight_that_is_not_frozen_is_read_afresh_on_every_call(shape, rng):
    """Training changes weights in place between calls: every formulation (here lanes, Winograd and rows) must see
    the change."""
    x = rng.standard_normal((2, shape[1], 8, 8)).astype(np.float32)
    w = rng.standard_normal(shape).astype(np.float32)
    F.conv2d(x, w, padding=shape[2] // 2)
    w *= -2.0
    got = F.conv2d(x, w, padding=shape[2] // 2)
    want = naive.conv(x.astype(np.float64), w.astype(np.float64), None, (1, 1),
                              [(shape[2] // 2,) * 2] * 2, (1, 1), 1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


def test_what_was_prepared_for_a_frozen_weight_goes_with_it(rng):
    import gc

    from numconv.kernels.cpu import launch

    w = rng.standard_normal((32, 8, 3, 3)).astype(np.float32)
    F.freeze(w)
    F.conv2d(rng.standard_normal((1, 8, 6, 6)).astype(np.float32), w)
    assert any(entry[0]() is w for entry in launch._frozen.values())
    held = len(launch._frozen)
    del w
    gc.collect()
    assert len(launch._frozen) == held - 1


def test_freeze_refuses_what_is_not_an_array():
    with pytest.raises(TypeError, match=r"weights\[1\] must be a NumPy or device array, got list"):
        F.freeze(np.zeros(3, np.float32), [1.0, 2.0])


_WIDTH_PROBE = """
import sys
{before}
import numba
import numconv
from numba import njit


@njit
def scale_add(a, b, out):
    for i in range(out.size):
        out[i] += a[i] * b[i]


scale_add.compile("(float32[::1], float32[::1], float32[::1])")
asm = next(iter(scale_add.inspect_asm().values()))
print(numba.config.CPU_FEATURES, "zmm" in asm)
"""


def _probe(before: str = "", **environment) -> tuple:
    """(Numba's CPU features, whether a simple float32 loop compiled to 512-bit registers) in a new process that runs
    ``before`` and then imports numconv."""
    result = subprocess.run([sys.executable, "-c", _WIDTH_PROBE.format(before=before)], capture_output=True,
                            text=True, env=dict(os.environ, **environment), timeout=300)
    assert result.returncode == 0, result.stderr
    features, wide = result.stdout.split()
    return features, wide == "True"


_AVX512 = binding.get_host_cpu_features().get("avx512f", False)


def test_kernels_use_the_whole_vector_width_of_the_cpu():
    features, wide = _probe()
    # with AVX-512, LLVM's preference for 256-bit vectors is turned off and a vectorised loop uses 512-bit ones
    assert (features.endswith(",-" + vectors.NARROW) and wide) if _AVX512 else (features == "None" and not wide)
    # the test suite itself runs with the same setting (conftest imports numba first, but defines no function)
    assert (numba.config.CPU_FEATURES or "").endswith(",-" + vectors.NARROW) == _AVX512


def test_the_users_cpu_features_and_an_earlier_jit_are_left_alone():
    # another library's @njit fixed Numba's CPU target first: numconv changes nothing, and the loop gets LLVM's own
    # width for this CPU (256 bits on the Xeons that prefer them, 512 on AMD's Zen 4, which does not)
    features, llvms_width = _probe("import numba; numba.njit(lambda: 1)()")
    assert features == "None"
    host = binding.get_host_cpu_features().flatten()
    assert _probe(NUMBA_CPU_FEATURES=host) == (host, llvms_width)


_REGISTERS_PROBE = """
from numconv import vectors
from numconv.kernels.cpu import tuning, winograd
print(vectors.registers(), tuning.SHAPES, winograd.WIDTH)
"""


def _run_with_features(source: str, avx512: bool, cpu_name: str | None = None) -> subprocess.CompletedProcess:
    """A process that runs ``source`` with the host's CPU features, AVX-512 given or taken away (and, given
    ``cpu_name``, Numba told to compile for that CPU); it must compile nothing."""
    features = [f for f in binding.get_host_cpu_features().flatten().split(",") if not f[1:].startswith("avx512")]
    if avx512:
        features += ["+avx512f", "+avx512vl", "+avx512bw", "+avx512dq"]
    env = dict(os.environ, NUMBA_CPU_FEATURES=",".join(features))
    if cpu_name is not None:
        env["NUMBA_CPU_NAME"] = cpu_name
    return subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize("avx512", [True, False])
def test_the_kernels_follow_the_vector_registers_numba_compiles_for(avx512):
    """The features Numba compiles for choose the blocks: with AVX-512 (32 registers) the 32-register set, without it
    (AVX2's 16: here the host's features with AVX-512 taken away or given, in a process that compiles nothing) the
    16-register set and its Winograd strips."""
    result = _run_with_features(_REGISTERS_PROBE, avx512)
    assert result.returncode == 0, result.stderr
    registers = 32 if avx512 else 16
    assert result.stdout.split("\n")[0] == (f"{registers} {blocked.SHAPES[registers]} "
                                            f"{winograd_codegen.WIDTHS[registers]}")


_WIDE_PROBE = """
from numconv import vectors
from numconv.kernels.cpu import tuning
print(vectors.double_pumped(), vectors.full_width_fma(), vectors.splits_line_loads(), tuning.EFFICIENCY["wide"],
      tuning.UNALIGNED_ROWS, tuning.PAIRED_MIN_REDUCTION, tuning.WINOGRAD_PAIRED, tuning.PACKED_MIN_COLUMNS,
      tuning.WINOGRAD_WEIGHT_MIN_CHANNELS, tuning.WINOGRAD_ROW_MIN_TILES)
"""


@pytest.mark.parametrize("cpu_name,avx512,expected", [
    # AMD Zen 4: 512-bit operations in two 256-bit halves
    ("znver4", True, "True False False 1.0 1.0 360 False inf 128 960"),
    # Zen 5: two full 512-bit multiply-adds a cycle; the direct kernels keep up with Winograd's weight gradient and
    # its rows, and the packed panels pay
    ("znver5", True, "False True False 1.2 1.0 64 True 128 inf inf"),
    # Intel's AVX-512 CPUs: two full multiply-adds a cycle, and a load across a cache line costs two
    ("sapphirerapids", True, "False True True 1.2 0.78 64 True 128 inf 240"),
    ("rocketlake", True, "False True True 1.2 0.78 64 True 128 inf 240"),
    # AVX2 alone: 256-bit code, the 16-register kernels
    ("znver4", False, "False False False 0.6 1.0 192 False inf 128 960"),
    # ... on Intel's too (the split loads are priced for AVX-512)
    ("skylake", False, "False False False 0.6 1.0 192 False inf 128 960"),
])
def test_the_wide_kernels_edge_follows_how_the_cpu_runs_512_bit_multiply_adds(cpu_name, avx512, expected):
    result = _run_with_features(_WIDE_PROBE, avx512, cpu_name)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == expected
