"""The CPU pooling kernels' paths, against PyTorch and the naive reference: max pooling without indices (its own
kernel) gives the values of the call with indices, NaN, infinities, ties and signed zeros included; windows whose
values are all -inf point at their first input; rows short enough to be pooled a plane at a time and long rows,
planes widened where ceil_mode's last windows overhang, whole-window passes (each window of ``WHOLE_WINDOWS``),
tap-by-tap passes (dilation, other windows), border columns computed window by window; the average's backward
summed in float64; the rows route (a window of each of its loops, no padding, long rows, widened or not); the
average's backward over windows that tile the input."""
import numpy as np
import pytest

import numconv.functional as F
from numconv.kernels.cpu.pool import (
    PHASE_WINDOWS, ROW_WINDOWS, SHORT_ROW, TILE_WIDTHS, WHOLE_WINDOWS, _phase_window, _row_window, _tile_width,
)
from tests import naive

torch = pytest.importorskip("torch")

MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
AVG_POOL = {1: (F.avg_pool1d, F.avg_pool1d_backward), 2: (F.avg_pool2d, F.avg_pool2d_backward),
            3: (F.avg_pool3d, F.avg_pool3d_backward)}
TORCH_MAX_POOL = {1: torch.nn.functional.max_pool1d, 2: torch.nn.functional.max_pool2d,
                  3: torch.nn.functional.max_pool3d}

# (spatial shape, kernel, stride, padding, dilation, ceil_mode): padding at most half the window, as PyTorch takes it
CASES = [
    # short rows: AlexNet's 3 x 3 windows of stride 2, a plane per pass; LeNet's 2 x 2, a block per row (the rows
    # route's short rows)
    ((13, 13), 3, 2, 0, 1, False),
    ((12, 12), 2, 2, 0, 1, False),
    # the same with padding and ceil_mode: border rows and columns
    ((13, 11), 3, 2, 1, 1, True),
    # long rows: a row per pass, with and without border columns
    ((5, 41), 3, 2, 0, 1, False),
    ((4, 40), 3, 2, 1, 1, True),
    # taps one at a time (dilation, windows not taken whole: strides 3 and 5, a 1 x 3 window of stride 1), and
    # M5's window of 4 of stride 4, taken whole
    ((9, 23), 3, 2, 1, 2, False),
    ((7, 37), (2, 3), (1, 3), (1, 1), 1, False),
    ((6, 44), (3, 2), (2, 5), (1, 1), 1, True),
    ((70,), 4, 4, 0, 1, False),
    ((33,), 3, 1, 1, 1, False),
    ((4, 9, 34), 2, 2, 0, 1, False),
    ((5, 7, 9), 3, 2, 1, 1, True),
]
# ceil_mode without padding: the last windows overhang the input's end, and each plane is pooled widened (NiN's
# 32 x 32; short rows; 1D; 3D, overhanging in depth too; taps one at a time)
WIDENED_CASES = [
    ((32, 32), 3, 2, 0, 1, True),
    ((13, 14), 3, 2, 0, 1, True),
    ((42,), 3, 2, 0, 1, True),
    ((5, 6, 7), 2, 2, 0, 1, True),
    ((6, 44), (3, 2), (2, 5), 0, 1, True),
]


def _special_input(rng, shape, dtype):
    """Small integers (ties everywhere) with NaN, both infinities and negative zeros sprinkled in."""
    x = rng.integers(-3, 4, size=shape).astype(dtype)
    draw = rng.random(shape)
    x[draw < 0.04] = np.nan
    x[(draw >= 0.04) & (draw < 0.1)] = -np.inf
    x[(draw >= 0.1) & (draw < 0.12)] = np.inf
    x[(draw >= 0.12) & (draw < 0.2)] = -0.0
    return x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES + WIDENED_CASES)
def test_max_pool_values_equal_the_indexed_call_and_torch(case, dtype, rng):
    spatial, kernel, stride, padding, dilation, ceil_mode = case
    ndim = len(spatial)
    x = _special_input(rng, (3, 5) + spatial, dtype)
    options = dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode)
    values = MAX_POOL[ndim](x, **options)
    indexed, indices = MAX_POOL[ndim](x, return_indices=True, **options)
    want, want_indices = TORCH_MAX_POOL[ndim](torch.from_numpy(x), return_indices=True, **options)
    np.testing.assert_array_equal(values, indexed)
    np.testing.assert_array_equal(values, want.numpy())
    np.testing.assert_array_equal(indices, want_indices.numpy())
    # the same maximum of equal values: the first, so a -0.0 and a 0.0 stay apart
    numbers = ~np.isnan(values)
    np.testing.assert_array_equal(np.signbit(values[numbers]), np.signbit(indexed[numbers]))
    np.testing.assert_array_equal(np.signbit(values[numbers]), np.signbit(want.numpy()[numbers]))


@pytest.mark.parametrize("case", CASES[:6] + WIDENED_CASES)
def test_windows_of_minus_infinity_point_at_their_first_input(case, rng):
    """No value beats -inf: the window's first input inside it is its maximum (never the padding before it, nor
    what a plane was widened with after it), in the passes and at the borders, as in PyTorch."""
    spatial, kernel, stride, padding, dilation, ceil_mode = case
    ndim = len(spatial)
    x = np.full((2, 3) + spatial, -np.inf, np.float32)
    x[0, 0].flat[::7] = rng.standard_normal(x[0, 0].size)[::7]
    options = dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode)
    values, indices = MAX_POOL[ndim](x, return_indices=True, **options)
    want, want_indices = TORCH_MAX_POOL[ndim](torch.from_numpy(x), return_indices=True, **options)
    np.testing.assert_array_equal(values, want.numpy())
    np.testing.assert_array_equal(indices, want_indices.numpy())
    assert indices.min() >= 0
    np.testing.assert_array_equal(MAX_POOL[ndim](x, **options), want.numpy())


AVG_CASES = [
    ((13, 13), 3, 2, 0, False, True),
    ((12, 12), 2, 2, 1, True, False),
    ((5, 41), 3, 2, 1, True, False),
    ((70,), 4, 4, 0, False, True),
    ((2, 36), (2, 5), (1, 2), (0, 2), False, False),
    ((5, 7, 34), 3, 2, 1, True, True),
    # widened planes (ceil_mode without padding), NiN's included
    ((32, 32), 3, 2, 0, True, True),
    ((13, 14), 3, 2, 0, True, False),
    ((42,), 3, 2, 0, True, True),
    ((5, 6, 7), 2, 2, 0, True, False),
]


@pytest.mark.parametrize("case", AVG_CASES)
def test_average_pooling_sums_in_float64(case, rng):
    """The forward sums each window in float64 and divides once; the backward sums each input's terms in float64
    and rounds once: both agree with the float64 reference rounded to float32, to the last bit but for the
    reference's own float64 roundings."""
    spatial, kernel, stride, padding, ceil_mode, count_include_pad = case
    ndim = len(spatial)
    forward, backward = AVG_POOL[ndim]
    x = rng.standard_normal((3, 4) + spatial).astype(np.float32)
    options = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode,
                   count_include_pad=count_include_pad)
    y = forward(x, **options)
    geometry = [np.broadcast_to(v, (ndim,)).tolist() for v in (kernel, stride, padding)]
    args = (*geometry, ceil_mode, count_include_pad)
    np.testing.assert_allclose(y, naive.avg_pool(x.astype(np.float64), *args), rtol=6e-8, atol=1e-12)
    g = rng.standard_normal(y.shape).astype(np.float32)
    (grad,) = backward(g, x, **options)
    want = naive.avg_pool_backward(g.astype(np.float64), x.astype(np.float64), *args)
    np.testing.assert_allclose(grad, want, rtol=6e-8, atol=1e-12)


@pytest.mark.parametrize("window", WHOLE_WINDOWS)
def test_each_window_taken_whole_meets_torch_on_long_rows(window, rng):
    """Rows of 21 outputs and more (pooled a row per pass), padded, for every window that the loops take whole:
    max values and indices equal PyTorch's, averages the float64 reference's."""
    height, width, step = window
    ndim = 2 if height > 1 else 1
    spatial = ((height + 4,) if ndim == 2 else ()) + (step * 20 + width,)
    kernel, stride = (height, width)[2 - ndim:], (step, step)[2 - ndim:]
    padding = tuple(k // 2 for k in kernel)
    x = _special_input(rng, (2, 3) + spatial, np.float32)
    options = dict(kernel_size=kernel, stride=stride, padding=padding)
    values, indices = MAX_POOL[ndim](x, return_indices=True, **options)
    want, want_indices = TORCH_MAX_POOL[ndim](torch.from_numpy(x), return_indices=True, **options)
    assert values.shape[-1] >= 21
    np.testing.assert_array_equal(values, want.numpy())
    np.testing.assert_array_equal(indices, want_indices.numpy())
    np.testing.assert_array_equal(MAX_POOL[ndim](x, **options), want.numpy())
    x = rng.standard_normal((2, 3) + spatial).astype(np.float32)
    forward, backward = AVG_POOL[ndim]
    y = forward(x, **options)
    args = (list(kernel), list(stride), list(padding), False, True)
    np.testing.assert_allclose(y, naive.avg_pool(x.astype(np.float64), *args), rtol=6e-8, atol=1e-12)
    g = rng.standard_normal(y.shape).astype(np.float32)
    (grad,) = backward(g, x, **options)
    want_grad = naive.avg_pool_backward(g.astype(np.float64), x.astype(np.float64), *args)
    np.testing.assert_allclose(grad, want_grad, rtol=6e-8, atol=1e-12)
    np.testing.assert_array_equal(grad, _ordered_avg_backward(g, x.shape, kernel, stride, padding))


def _ordered_avg_backward(g, x_shape, kernel, stride, padding):
    """The average's backward as documented, to the last bit: each input's terms (its windows' gradient times the
    float64 reciprocal of the window's size, padding counted) summed in float64 in output order from 0.0, and
    rounded once."""
    ndim = len(kernel)
    grad = np.zeros(x_shape[:2] + tuple(s + 2 * p for s, p in zip(x_shape[2:], padding)), np.float64)
    shares = g.astype(np.float64) * (1.0 / float(np.prod(kernel)))
    for out in np.ndindex(*g.shape[2:]):
        window = tuple(slice(o * s, o * s + k) for o, s, k in zip(out, stride, kernel))
        grad[(slice(None), slice(None)) + window] += shares[(slice(None), slice(None)) + out][(...,) + (None,) * ndim]
    inside = tuple(slice(p, p + s) for p, s in zip(padding, x_shape[2:]))
    return grad[(slice(None), slice(None)) + inside].astype(g.dtype)


def _assert_max_pool_meets_torch(x, ndim, values, indices, options):
    """``values`` and ``indices`` (numconv's max-pooling of ``x`` with ``options``, indices returned) and the call
    without indices equal PyTorch's, NaN, ties and signed zeros included."""
    want, want_indices = TORCH_MAX_POOL[ndim](torch.from_numpy(x), return_indices=True, **options)
    np.testing.assert_array_equal(values, want.numpy())
    np.testing.assert_array_equal(indices, want_indices.numpy())
    only_values = MAX_POOL[ndim](x, **options)
    np.testing.assert_array_equal(only_values, want.numpy())
    numbers = ~np.isnan(only_values)
    np.testing.assert_array_equal(np.signbit(only_values[numbers]), np.signbit(want.numpy()[numbers]))


# a window of each of the rows route's loops: a depth of one, of two, and windows split into phases (the spec rows
# check every window of ROW_WINDOWS, each compiled with its own constants)
ROW_LOOPS = [(1, 2, 2, 2), (2, 2, 2, 2), (1, 3, 3, 2)]


@pytest.mark.parametrize("window", ROW_LOOPS)
def test_each_loop_of_the_rows_route_meets_torch(window, rng):
    """Rows of 21 outputs without padding, and of 22 with ceil_mode's last window overhanging the input by a column
    (in 2D and 3D, its last row of windows by a row too; pooled from a widened copy, or, for the maximum alone of
    windows split into phases, with the last row and column repeated), for each loop of the rows route: max values
    and indices equal PyTorch's, NaN, ties and signed zeros included, and averages the float64 reference's."""
    assert set(ROW_LOOPS) <= set(ROW_WINDOWS)
    depth, height, width, step = window
    ndim = 3 if depth > 1 else 2 if height > 1 else 1
    kernel, stride = (depth, height, width)[3 - ndim:], (step,) * ndim
    for extra, ceil_mode in ((0, False), (1, True)):
        spatial = (depth * 2 + 1, height + 5, step * 20 + width + extra)[3 - ndim:]
        options = dict(kernel_size=kernel, stride=stride, ceil_mode=ceil_mode)
        x = _special_input(rng, (2, 3) + spatial, np.float32)
        values, indices = MAX_POOL[ndim](x, return_indices=True, **options)
        geometry = [(lead,) * (3 - ndim) + tuple(v) for lead, v in ((1, kernel), (1, stride), (0, (0,) * ndim),
                                                                     (1, (1,) * ndim))]
        assert _row_window((1,) * (3 - ndim) + spatial, (1,) * (3 - ndim) + values.shape[2:], *geometry) is not None
        assert values.shape[-1] == 21 + extra
        _assert_max_pool_meets_torch(x, ndim, values, indices, options)
        x = rng.standard_normal((2, 3) + spatial).astype(np.float32)
        y = AVG_POOL[ndim][0](x, **options)
        args = (list(kernel), list(stride), [0] * ndim, ceil_mode, True)
        np.testing.assert_allclose(y, naive.avg_pool(x.astype(np.float64), *args), rtol=6e-8, atol=1e-12)


# the windows whose rows the rows route takes when they are shorter than SHORT_ROW: no overlap, a power of two of
# inputs (``_short_rows_of``)
SHORT_WINDOWS = [window for window in ROW_WINDOWS if window[2] <= window[3]]


@pytest.mark.parametrize("window", SHORT_WINDOWS)
def test_rows_shorter_than_a_block_meet_torch(window, rng):
    """Rows of 1 to 15 outputs, for each window whose short rows the rows route takes: max values and indices equal
    PyTorch's, NaN, ties and signed zeros included, and averages the float64 reference's (the average's short rows
    from SHORT_AVERAGE_ROW outputs: 14 and 15 here, the others a plane at a time). Over planes of fewer
    outputs than a block (each row computed on its own) and of more (blocks running on into the next rows), a plane
    per task and several (more planes than tasks), floor mode's unused last inputs, and the input's last rows, whose
    blocks would read past its end."""
    assert len(SHORT_WINDOWS) == 4
    depth, height, width, step = window
    ndim = 3 if depth > 1 else 2 if height > 1 else 1
    kernel = (depth, height, width)[3 - ndim:]
    for out_w, out_h, extra, planes in ((1, 3, 0, (1, 2)), (5, 6, 1, (2, 3)), (14, 4, 0, (35, 2)),
                                       (15, 1, 1, (3, 1))):
        spatial = (depth * 2, height * out_h + extra, step * out_w + extra * (step - width))[3 - ndim:]
        options = dict(kernel_size=kernel, stride=kernel)
        x = _special_input(rng, planes + spatial, np.float32)
        values, indices = MAX_POOL[ndim](x, return_indices=True, **options)
        assert values.shape[-1] == out_w < SHORT_ROW
        assert _row_window((1,) * (3 - ndim) + spatial, (1,) * (3 - ndim) + values.shape[2:],
                           (1,) * (3 - ndim) + kernel, (1,) * (3 - ndim) + kernel, (0, 0, 0), (1, 1, 1))
        _assert_max_pool_meets_torch(x, ndim, values, indices, options)
        x = rng.standard_normal(planes + spatial).astype(np.float32)
        y = AVG_POOL[ndim][0](x, **options)
        np.testing.assert_allclose(y, naive.avg_pool(x.astype(np.float64), list(kernel), list(kernel), [0] * ndim,
                                                     False, True), rtol=6e-8, atol=1e-12)


TORCH_AVG_POOL = {1: torch.nn.functional.avg_pool1d, 2: torch.nn.functional.avg_pool2d,
                  3: torch.nn.functional.avg_pool3d}


@pytest.mark.parametrize("width", TILE_WIDTHS)
def test_the_average_backward_over_tiling_windows_is_one_share_per_input(width, rng):
    """Windows as long as their strides tile the input: each input's gradient is its window's share, the float64
    quotient rounded once (PyTorch's float64 gradient rounded to float32, to the bit), and 0 where no window reaches
    (floor mode's last slices, rows and columns); a last window that overhangs (ceil_mode) divides by what it
    covers."""
    for spatial, ceil_mode in (((width * 3 + 1,), False), ((width + 1, width * 5 + 2), True),
                               ((2 * width + 1, width, width * 5 - 1), False), ((width + 1, 5, width * 6), True)):
        ndim = len(spatial)
        assert _tile_width((1,) * (3 - ndim) + (width,) * ndim, (1,) * (3 - ndim) + (width,) * ndim, (0,) * 3,
                           (0,) * 3) is not None
        x = rng.standard_normal((2, 3) + spatial).astype(np.float32)
        x64 = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
        y64 = TORCH_AVG_POOL[ndim](x64, width, width, ceil_mode=ceil_mode)
        g = rng.standard_normal(tuple(y64.shape)).astype(np.float32)
        (grad,) = AVG_POOL[ndim][1](g, x, width, width, ceil_mode=ceil_mode)
        y64.backward(torch.from_numpy(g.astype(np.float64)))
        np.testing.assert_array_equal(grad, x64.grad.numpy().astype(np.float32))


def test_the_average_backward_phases_route_sums_in_output_order(rng):
    """The phases route (each window of PHASE_WINDOWS: AlexNet's 3 x 3 and a 4 x 4, both of stride 2), with and
    without padding, over rows of whole groups of columns and of a column more, and over volumes whose slices one and
    two output depths cover: every input's gradient, to the bit, is the float64 sum of its windows' shares in output
    order, rounded once; NaN and infinities reach only the inputs of their windows."""
    assert PHASE_WINDOWS == ((2, 2),)
    for kernel, padding, spatial in (((3, 3), 0, (55, 55)), ((3, 3), 1, (6, 35)), ((4, 4), 1, (9, 41)),
                                     ((4, 4), 2, (8, 34)), ((1, 3, 3), 0, (3, 5, 33)), ((2, 3, 3), 1, (4, 5, 36))):
        ndim = len(spatial)
        geometry = (1,) * (3 - ndim) + kernel, (1,) * (3 - ndim) + (1,) * (ndim - 2) + (2, 2)
        out_w = (spatial[-1] + 2 * padding - kernel[-1]) // 2 + 1
        assert _phase_window((1, 1, out_w), *geometry) is not None
        stride = geometry[1][3 - ndim:]
        x = rng.standard_normal((2, 3) + spatial).astype(np.float32)
        forward, backward = AVG_POOL[ndim]
        options = dict(kernel_size=kernel, stride=stride, padding=padding)
        g = rng.standard_normal(forward(x, **options).shape).astype(np.float32)
        (grad,) = backward(g, x, **options)
        np.testing.assert_array_equal(grad, _ordered_avg_backward(g, x.shape, kernel, stride, (padding,) * ndim))
    # windows of 2 x 2 x 3 and 1 x 2 x 3 inputs (the others fall in the padding), in planes of their own
    g[0, 0, 1, 2, 3], g[1, 2, 0, 2, 5] = np.nan, np.inf
    (grad,) = backward(g, x, **options)
    np.testing.assert_array_equal(grad, _ordered_avg_backward(g, x.shape, kernel, stride, (padding,) * ndim))
    assert np.isnan(grad).sum() == 12 and np.isinf(grad).sum() == 6
