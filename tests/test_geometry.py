"""numconv.geometry held equal to the symbolic formulas of spec.windows, and the validation of every public
function.

Window sizes: an exhaustive grid of small configurations, then random ones (hypothesis). Bad input: one table
row per mistake, asserting the exception type and that the message names the parameter and shows the bad
value.
"""
from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numconv import functional as F
from numconv import checks, geometry, layers, optim
from spec.windows import Axis, output_size, window_from

SIZES = range(1, 10)
KERNELS = range(1, 6)
STRIDES = range(1, 4)
PADDINGS = range(0, 4)
DILATIONS = range(1, 4)


def _extent(kernel: int, dilation: int) -> int:
    return dilation * (kernel - 1) + 1


# --- output sizes: exhaustive grid --------------------------------------------------------------------------


def test_conv_output_size_equals_symbolic_formula_on_grid():
    checked = 0
    grid = itertools.product(SIZES, KERNELS, STRIDES, PADDINGS, DILATIONS)
    for size, kernel, stride, pad_left, dilation in grid:
        for pad_right in (pad_left, pad_left + 1):  # pad_left + 1: 'same' with an odd total
            if _extent(kernel, dilation) > size + pad_left + pad_right:
                continue  # geometry rejects it
            expected = output_size(size, kernel, stride, pad_left, pad_right, dilation)
            got = geometry.conv_output_size(size, kernel, stride, pad_left, pad_right, dilation)
            assert got == expected, (size, kernel, stride, pad_left, pad_right, dilation)
            checked += 1
    assert checked > 2500


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_pool_output_size_equals_symbolic_formula_on_grid(ceil_mode):
    checked = 0
    grid = itertools.product(SIZES, KERNELS, STRIDES, PADDINGS, DILATIONS)
    for size, kernel, stride, pad, dilation in grid:
        if 2 * pad > kernel or _extent(kernel, dilation) > size + 2 * pad:
            continue  # geometry rejects it
        expected = output_size(size, kernel, stride, pad, pad, dilation, ceil_mode)
        got = geometry.pool_output_size(size, kernel, stride, pad, dilation, ceil_mode)
        assert got == expected, (size, kernel, stride, pad, dilation, ceil_mode)
        assert got >= 1
        checked += 1
    assert checked > 500


def test_ceil_mode_window_longer_than_the_input():
    assert output_size(1, 2, 2, 0, 0, 1, ceil_mode=True) == 1
    assert geometry.pool_geometry((1,), 2, ceil_mode=True).output_shape == (1,)


def test_pool_window_without_any_input_is_rejected():
    # taps at -1 and 2 of a length-1 input: ceil_mode keeps the window, but it reads only padding
    with pytest.raises(ValueError, match="kernel_size"):
        geometry.pool_geometry((1,), 2, stride=1, padding=1, dilation=3, ceil_mode=True)


def test_ceil_mode_keeps_a_partial_window_only_when_it_starts_inside():
    # size 5, kernel 2, stride 2: windows start at 0, 2, 4; the last one is partial (reads 4 and 5)
    assert geometry.pool_output_size(5, 2, 2, 0, 1, False) == 2
    assert geometry.pool_output_size(5, 2, 2, 0, 1, True) == 3
    # size 5, kernel 2, stride 2, padding 1: a fourth window would start at 6 - 1 = 5, past the input
    assert geometry.pool_output_size(5, 2, 2, 1, 1, True) == 3


# --- conv_geometry / pool_geometry shapes -------------------------------------------------------------------

CONV_SHAPES = [
    # (input, kernel, stride, padding, dilation)
    ((7,), (3,), 1, 0, 1),
    ((7,), (3,), 2, 1, 2),
    ((5, 6), (3, 2), (2, 1), (1, 0), (1, 2)),
    ((4, 5, 6), (2, 3, 1), (1, 2, 3), (0, 1, 0), (2, 1, 1)),
    ((3, 3, 3), (3, 3, 3), 1, 1, 1),
]


@pytest.mark.parametrize("input_shape, kernel, stride, padding, dilation", CONV_SHAPES)
def test_conv_geometry_shape(input_shape, kernel, stride, padding, dilation):
    geo = geometry.conv_geometry(input_shape, kernel, stride, padding, dilation)
    ndim = len(input_shape)
    per_axis = [geometry.as_tuple(v, ndim, "v") for v in (stride, padding, dilation)]
    assert geo.output_shape == window_from(input_shape, kernel, *per_axis).out_shape
    assert geo.ndim == ndim
    assert geo.padding == geo.padding_right == per_axis[1]


POOL_SHAPES = [
    # (input, kernel, stride, padding, dilation, ceil_mode)
    ((7,), (3,), None, 1, 1, False),
    ((7,), (2,), None, 0, 1, True),
    ((5, 6), (3, 2), (2, 1), (1, 0), (1, 2), True),
    ((4, 5, 6), (2, 3, 2), None, (1, 1, 0), 1, True),
    ((4, 5, 6), (2, 3, 2), 1, 0, (2, 1, 1), False),
]


@pytest.mark.parametrize("input_shape, kernel, stride, padding, dilation, ceil_mode", POOL_SHAPES)
def test_pool_geometry_shape(input_shape, kernel, stride, padding, dilation, ceil_mode):
    geo = geometry.pool_geometry(input_shape, kernel, stride, padding, dilation, ceil_mode)
    ndim = len(input_shape)
    strides = kernel if stride is None else geometry.as_tuple(stride, ndim, "stride")
    pads = geometry.as_tuple(padding, ndim, "padding")
    dilations = geometry.as_tuple(dilation, ndim, "dilation")
    assert geo.stride == strides
    assert geo.output_shape == window_from(input_shape, kernel, strides, pads, dilations, ceil_mode).out_shape


@pytest.mark.parametrize("input_shape, kernel, dilation", [
    ((6,), (3,), 1),            # total 2: even, split 1 + 1
    ((6,), (4,), 1),            # total 3: odd, 1 + 2
    ((5,), (2,), 3),            # total 3 through dilation
    ((5, 4), (2, 3), (1, 2)),   # totals 1 and 4
    ((3, 4, 5), (2, 2, 3), 1),  # totals 1, 1, 2
    ((4,), (1,), 1),            # total 0
])
def test_same_padding_keeps_the_size_and_puts_the_extra_on_the_right(input_shape, kernel, dilation):
    geo = geometry.conv_geometry(input_shape, kernel, 1, "same", dilation)
    assert geo.output_shape == input_shape
    dilations = geometry.as_tuple(dilation, len(input_shape), "dilation")
    for left, right, k, d in zip(geo.padding, geo.padding_right, kernel, dilations):
        total = d * (k - 1)
        assert left + right == total
        assert right - left == total % 2
    window = window_from(input_shape, kernel, None, geo.padding, dilations, padding_right=geo.padding_right)
    assert window.out_shape == input_shape


@pytest.mark.parametrize("input_shape, kernel", [((7,), (3,)), ((5, 6), (2, 3)), ((4, 4, 4), (1, 2, 3))])
def test_valid_padding_is_zero_padding(input_shape, kernel):
    geo = geometry.conv_geometry(input_shape, kernel, 1, "valid")
    assert geo.padding == geo.padding_right == (0,) * len(input_shape)
    assert geo.output_shape == geometry.conv_geometry(input_shape, kernel, 1, 0).output_shape
    assert geo.output_shape == tuple(s - k + 1 for s, k in zip(input_shape, kernel))


# --- valid_output_range -------------------------------------------------------------------------------------


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_valid_output_range_equals_brute_force(ceil_mode):
    checked = 0
    grid = itertools.product(range(1, 8), KERNELS, STRIDES, PADDINGS, DILATIONS)
    for size, kernel, stride, pad, dilation in grid:
        if 2 * pad > kernel or _extent(kernel, dilation) > size + 2 * pad:
            continue
        axis = Axis(size, kernel, stride, pad, pad, dilation, ceil_mode)
        for tap in range(kernel):
            inside = [n for n in range(axis.out_size) if axis.in_input(axis.input_index(n, tap))]
            lo, hi = geometry.valid_output_range(size, axis.out_size, stride, pad, dilation, tap)
            assert 0 <= lo <= hi <= axis.out_size
            assert list(range(lo, hi)) == inside, (size, kernel, stride, pad, dilation, tap)
            checked += 1
    assert checked > 1000


def test_valid_output_range_when_no_output_reads_the_input():
    # a tap that always lands in the right padding: size 1, pad 3, tap 3 reads position 0 only at n = 0 ...
    assert geometry.valid_output_range(1, 2, 1, 3, 1, 3) == (0, 1)
    # ... and tap 4 reads positions 1 and 2: never inside
    lo, hi = geometry.valid_output_range(1, 2, 1, 3, 1, 4)
    assert lo == hi
    # a tap that always lands in the left padding
    lo, hi = geometry.valid_output_range(4, 1, 1, 3, 1, 0)
    assert lo == hi


# --- groups -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("in_channels, weight_shape, groups", [
    (4, (6, 4, 3), 1), (4, (6, 2, 3), 2), (6, (6, 1, 3, 3), 6), (4, (8, 1, 3), 4), (96, (256, 48, 5, 5), 2),
])
def test_check_groups_accepts(in_channels, weight_shape, groups):
    geometry.check_groups(in_channels, weight_shape, groups)


@pytest.mark.parametrize("in_channels, weight_shape, groups, error, words", [
    (3, (6, 1, 3), 2, ValueError, ["groups=2", "3"]),
    (4, (3, 2, 3), 2, ValueError, ["groups=2", "3"]),
    (4, (6, 4, 3), 2, ValueError, ["weight", "(6, 4, 3)", "4"]),
    (4, (6, 3, 3), 1, ValueError, ["weight", "(6, 3, 3)", "4"]),
    (4, (6, 4, 3), 0, ValueError, ["groups", "0"]),
    (4, (6, 4, 3), -1, ValueError, ["groups", "-1"]),
    (4, (6, 2, 3), 2.0, TypeError, ["groups", "2.0"]),
    (4, (6, 4, 3), True, TypeError, ["groups", "True"]),
])
def test_check_groups_rejects(in_channels, weight_shape, groups, error, words):
    with pytest.raises(error) as info:
        geometry.check_groups(in_channels, weight_shape, groups)
    _assert_names(info.value, words)


# --- random configurations ----------------------------------------------------------------------------------


@st.composite
def conv_configs(draw):
    ndim = draw(st.integers(1, 3))
    # (size, kernel, stride, padding, dilation) per axis
    axis = st.tuples(st.integers(1, 12), st.integers(1, 6), st.integers(1, 4), st.integers(0, 4),
                     st.integers(1, 4))
    return ndim, [draw(axis) for _ in range(ndim)]


@settings(max_examples=150, deadline=None)
@given(conv_configs())
def test_conv_geometry_matches_spec_or_rejects_exactly_when_spec_has_no_output(config):
    _, axes = config
    size, kernel, stride, pad, dilation = (tuple(a[i] for a in axes) for i in range(5))
    expected = window_from(size, kernel, stride, pad, dilation).out_shape
    if min(expected) < 1:
        with pytest.raises(ValueError, match="padded input size"):
            geometry.conv_geometry(size, kernel, stride, pad, dilation)
    else:
        assert geometry.conv_geometry(size, kernel, stride, pad, dilation).output_shape == expected


@settings(max_examples=200, deadline=None)
@given(conv_configs(), st.booleans(), st.data())
def test_pool_geometry_matches_spec(config, ceil_mode, data):
    """Padding before and after each axis (drawn apart), up to the window's extent, as ONNX allows."""
    _, axes = config
    size, kernel, stride, pad, dilation = (tuple(a[i] for a in axes) for i in range(5))
    pad_end = tuple(data.draw(st.integers(0, 4)) for _ in axes)
    padding = tuple(zip(pad, pad_end))
    if any(max(p, e) >= _extent(k, d) for p, e, k, d in zip(pad, pad_end, kernel, dilation)):
        # axes are checked in order: an earlier axis may fail for its length first
        with pytest.raises(ValueError, match="padding must be smaller than the window|kernel_size"):
            geometry.pool_geometry(size, kernel, stride, padding, dilation, ceil_mode)
        return
    window = window_from(size, kernel, stride, pad, dilation, ceil_mode, padding_right=pad_end)
    expected = window.out_shape
    if min(expected) < 1 or not all(any(ok for _, _, ok in window.window(position)) for position in window.outputs()):
        # no window, or a window of padding alone: nothing to pool
        with pytest.raises(ValueError, match="kernel_size"):
            geometry.pool_geometry(size, kernel, stride, padding, dilation, ceil_mode)
        return
    geo = geometry.pool_geometry(size, kernel, stride, padding, dilation, ceil_mode)
    assert geo.output_shape == expected and geo.padding_end == pad_end
    # every window starts inside the input or its left padding, as ceil_mode requires
    for out_size, s, p, n in zip(expected, stride, pad, size):
        assert (out_size - 1) * s - p < n


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 40), st.integers(1, 8), st.integers(1, 5), st.integers(0, 6), st.integers(1, 4),
       st.integers(0, 7))
def test_valid_output_range_property(size, kernel, stride, pad, dilation, tap):
    tap = tap % kernel
    axis = Axis(size, kernel, stride, pad, pad, dilation)
    if axis.out_size < 1:
        return
    lo, hi = geometry.valid_output_range(size, axis.out_size, stride, pad, dilation, tap)
    inside = [n for n in range(axis.out_size) if axis.in_input(axis.input_index(n, tap))]
    assert list(range(lo, hi)) == inside


# --- bad input ----------------------------------------------------------------------------------------------


def _assert_names(error: Exception, words) -> None:
    message = str(error)
    for word in words:
        assert word in message, f"{word!r} missing from {message!r}"


def _x(*shape, dtype=np.float32):
    return np.zeros(shape, dtype=dtype)


def _rows(table):
    """pytest params from (id, error, words the message must contain, call[, reason for a strict xfail])."""
    rows = []
    for name, error, words, call, *gap in table:
        marks = [pytest.mark.xfail(strict=True, reason=gap[0])] if gap else []
        rows.append(pytest.param(call, error, words, id=name, marks=marks))
    return rows


GEOMETRY_BAD = [
    ("conv kernel larger than padded input", ValueError, ["kernel_size", "(5,)", "padded input size 3"],
     lambda: geometry.conv_geometry((3,), 5)),
    ("conv dilated kernel larger than padded input", ValueError,
     ["kernel_size", "dilation", "(1, 3)", "spans 7"],
     lambda: geometry.conv_geometry((5, 5), 3, 1, 0, (1, 3))),
    ("conv stride 0", ValueError, ["stride", "0"],
     lambda: geometry.conv_geometry((5,), 2, 0)),
    ("conv stride 0 on one axis", ValueError, ["stride", "(1, 0)"],
     lambda: geometry.conv_geometry((5, 5), 2, (1, 0))),
    ("conv dilation 0", ValueError, ["dilation", "0"],
     lambda: geometry.conv_geometry((5,), 2, 1, 0, 0)),
    ("conv kernel 0", ValueError, ["kernel_size", "0"],
     lambda: geometry.conv_geometry((5,), 0)),
    ("conv negative padding", ValueError, ["padding", "-1"],
     lambda: geometry.conv_geometry((5,), 2, 1, -1)),
    ("conv padding tuple too long", ValueError, ["padding", "(1, 1, 1)", "length 3"],
     lambda: geometry.conv_geometry((5, 5), 2, 1, (1, 1, 1))),
    ("conv stride tuple too short", ValueError, ["stride", "(1, 1)", "length 2"],
     lambda: geometry.conv_geometry((5, 5, 5), 2, (1, 1))),
    ("conv same with stride 2", ValueError, ["padding='same'", "stride=2"],
     lambda: geometry.conv_geometry((5,), 3, 2, "same")),
    ("conv unknown padding string", ValueError, ["padding", "'full'"],
     lambda: geometry.conv_geometry((5,), 3, 1, "full")),
    ("conv float stride", TypeError, ["stride", "1.5"],
     lambda: geometry.conv_geometry((5,), 3, 1.5)),
    ("conv bool stride", TypeError, ["stride", "True"],
     lambda: geometry.conv_geometry((5,), 3, True)),
    ("conv bool in padding tuple", TypeError, ["padding", "(True, 0)"],
     lambda: geometry.conv_geometry((5, 5), 3, 1, (True, 0))),
    ("conv padding None", TypeError, ["padding", "None"],
     lambda: geometry.conv_geometry((5,), 3, 1, None)),
    ("pool padding a whole window", ValueError, ["padding", "3", "smaller than the window", "kernel_size"],
     lambda: geometry.pool_geometry((5,), 3, None, 3)),
    ("pool padding pair of three", TypeError, ["padding", "(before, after) pairs", "(1, 0, 0)"],
     lambda: geometry.pool_geometry((5, 5), 3, None, ((1, 0, 0), (0, 0)))),
    ("conv negative padding after", ValueError, ["padding", "-1"],
     lambda: geometry.conv_geometry((5, 5), 3, 1, ((1, 0), (0, -1)))),
    ("pool kernel larger than padded input", ValueError, ["kernel_size", "(4, 4)", "without input"],
     lambda: geometry.pool_geometry((2, 2), 4, None, (2, 0))),
    ("pool stride 0", ValueError, ["stride", "0"],
     lambda: geometry.pool_geometry((5,), 2, 0)),
    ("pool dilation 0", ValueError, ["dilation", "0"],
     lambda: geometry.pool_geometry((5,), 2, None, 0, 0)),
    ("pool negative padding", ValueError, ["padding", "-1"],
     lambda: geometry.pool_geometry((5,), 2, None, -1)),
    ("pool kernel tuple wrong length", ValueError, ["kernel_size", "(2, 2, 2)"],
     lambda: geometry.pool_geometry((5, 5), (2, 2, 2))),
    ("pool ceil_mode not a bool", TypeError, ["ceil_mode", "1"],
     lambda: geometry.pool_geometry((5,), 2, None, 0, 1, 1)),
    ("pool bool kernel", TypeError, ["kernel_size", "True"],
     lambda: geometry.pool_geometry((5,), True)),
]


@pytest.mark.parametrize("call, error, words", _rows(GEOMETRY_BAD))
def test_geometry_rejects(call, error, words):
    with pytest.raises(error) as info:
        call()
    _assert_names(info.value, words)


FUNCTIONAL_BAD = [
    # convolution
    ("conv1d kernel larger than input", ValueError, ["kernel_size", "(5,)", "padded input size 3"],
     lambda: F.conv1d(_x(1, 1, 3), _x(1, 1, 5))),
    ("conv2d stride 0", ValueError, ["stride", "0"],
     lambda: F.conv2d(_x(1, 1, 4, 4), _x(1, 1, 2, 2), stride=0)),
    ("conv3d dilation 0", ValueError, ["dilation", "0"],
     lambda: F.conv3d(_x(1, 1, 3, 3, 3), _x(1, 1, 2, 2, 2), dilation=0)),
    ("conv1d negative padding", ValueError, ["padding", "-1"],
     lambda: F.conv1d(_x(1, 1, 4), _x(1, 1, 2), padding=-1)),
    ("conv2d stride tuple of 3", ValueError, ["stride", "(1, 1, 1)"],
     lambda: F.conv2d(_x(1, 1, 4, 4), _x(1, 1, 2, 2), stride=(1, 1, 1))),
    ("conv3d dilation tuple of 2", ValueError, ["dilation", "(1, 1)"],
     lambda: F.conv3d(_x(1, 1, 3, 3, 3), _x(1, 1, 2, 2, 2), dilation=(1, 1))),
    ("conv2d channels do not match weight", ValueError, ["weight", "(2, 2, 3, 3)", "3"],
     lambda: F.conv2d(_x(1, 3, 4, 4), _x(2, 2, 3, 3))),
    ("conv1d groups do not divide input channels", ValueError, ["groups=2", "3"],
     lambda: F.conv1d(_x(1, 3, 4), _x(2, 1, 2), groups=2)),
    ("conv1d groups do not divide output channels", ValueError, ["groups=2", "3"],
     lambda: F.conv1d(_x(1, 4, 4), _x(3, 2, 2), groups=2)),
    ("conv2d groups 0", ValueError, ["groups", "0"],
     lambda: F.conv2d(_x(1, 1, 4, 4), _x(1, 1, 2, 2), groups=0)),
    ("conv1d bool groups", TypeError, ["groups", "True"],
     lambda: F.conv1d(_x(1, 1, 4), _x(1, 1, 2), groups=True)),
    ("conv1d same with stride 2", ValueError, ["padding='same'", "stride=2"],
     lambda: F.conv1d(_x(1, 1, 4), _x(1, 1, 3), stride=2, padding="same")),
    ("conv2d unknown padding string", ValueError, ["padding", "'full'"],
     lambda: F.conv2d(_x(1, 1, 4, 4), _x(1, 1, 3, 3), padding="full")),
    ("conv1d float32 input, float64 weight", TypeError, ["weight", "float64", "float32"],
     lambda: F.conv1d(_x(1, 1, 4), _x(1, 1, 2, dtype=np.float64))),
    ("conv1d float64 bias on float32 input", TypeError, ["bias", "float64"],
     lambda: F.conv1d(_x(1, 1, 4), _x(1, 1, 2), _x(1, dtype=np.float64))),
    ("conv2d integer input", TypeError, ["input", "int64"],
     lambda: F.conv2d(np.zeros((1, 1, 4, 4), dtype=np.int64), _x(1, 1, 2, 2))),
    ("conv1d nested list of ints", TypeError, ["input", "int"],
     lambda: F.conv1d([[[1, 2, 3]]], _x(1, 1, 2))),
    ("conv1d float16 input", TypeError, ["input", "float16"],
     lambda: F.conv1d(_x(1, 1, 4, dtype=np.float16), _x(1, 1, 2))),
    ("conv2d input of 3 dimensions", ValueError, ["input", "4 dimensions", "(1, 4, 4)"],
     lambda: F.conv2d(_x(1, 4, 4), _x(1, 1, 2, 2))),
    ("conv2d weight of 3 dimensions", ValueError, ["weight", "4 dimensions", "(1, 1, 2)"],
     lambda: F.conv2d(_x(1, 1, 4, 4), _x(1, 1, 2))),
    ("conv1d bias of wrong length", ValueError, ["bias", "(2,)", "(3,)"],
     lambda: F.conv1d(_x(1, 1, 4), _x(2, 1, 2), _x(3))),
    ("conv1d empty input", ValueError, ["input", "empty", "(0, 1, 4)"],
     lambda: F.conv1d(_x(0, 1, 4), _x(1, 1, 2))),
    ("conv1d input None", TypeError, ["input", "None"],
     lambda: F.conv1d(None, _x(1, 1, 2))),
    ("conv1d float stride", TypeError, ["stride", "1.0"],
     lambda: F.conv1d(_x(1, 1, 4), _x(1, 1, 2), stride=1.0)),
    ("conv2d bool in padding", TypeError, ["padding", "(False, 1)"],
     lambda: F.conv2d(_x(1, 1, 4, 4), _x(1, 1, 2, 2), padding=(False, 1))),
    # max pooling
    ("max_pool1d kernel larger than input", ValueError, ["kernel_size", "(5,)", "without input"],
     lambda: F.max_pool1d(_x(1, 1, 3), 5)),
    ("max_pool2d padding a whole window", ValueError, ["padding", "3", "smaller than the window"],
     lambda: F.max_pool2d(_x(1, 1, 6, 6), 3, padding=3)),
    ("max_pool3d stride 0", ValueError, ["stride", "0"],
     lambda: F.max_pool3d(_x(1, 1, 4, 4, 4), 2, stride=0)),
    ("max_pool1d dilation 0", ValueError, ["dilation", "0"],
     lambda: F.max_pool1d(_x(1, 1, 4), 2, dilation=0)),
    ("max_pool1d kernel tuple of 2", ValueError, ["kernel_size", "(2, 2)"],
     lambda: F.max_pool1d(_x(1, 1, 4), (2, 2))),
    ("max_pool2d negative padding", ValueError, ["padding", "(0, -1)"],
     lambda: F.max_pool2d(_x(1, 1, 4, 4), 2, padding=(0, -1))),
    ("max_pool2d input of 3 dimensions", ValueError, ["input", "4 dimensions", "(1, 4, 4)"],
     lambda: F.max_pool2d(_x(1, 4, 4), 2)),
    ("max_pool1d integer input", TypeError, ["input", "int32"],
     lambda: F.max_pool1d(np.zeros((1, 1, 4), dtype=np.int32), 2)),
    ("max_pool1d bool kernel", TypeError, ["kernel_size", "True"],
     lambda: F.max_pool1d(_x(1, 1, 4), True)),
    ("max_pool1d ceil_mode 1", TypeError, ["ceil_mode", "1"],
     lambda: F.max_pool1d(_x(1, 1, 4), 2, ceil_mode=1)),
    ("max_pool1d return_indices 'no'", TypeError, ["return_indices", "'no'"],
     lambda: F.max_pool1d(_x(1, 1, 4), 2, return_indices="no")),
    # average pooling
    ("avg_pool1d kernel larger than input", ValueError, ["kernel_size", "(4,)", "without input"],
     lambda: F.avg_pool1d(_x(1, 1, 3), 4)),
    ("avg_pool2d padding a whole window", ValueError, ["padding", "(1, 2)", "smaller than the window"],
     lambda: F.avg_pool2d(_x(1, 1, 6, 6), 2, padding=(1, 2))),
    ("avg_pool3d stride tuple of 2", ValueError, ["stride", "(2, 2)"],
     lambda: F.avg_pool3d(_x(1, 1, 4, 4, 4), 2, stride=(2, 2))),
    ("avg_pool1d stride 0", ValueError, ["stride", "0"],
     lambda: F.avg_pool1d(_x(1, 1, 4), 2, stride=0)),
    ("avg_pool2d uint8 input", TypeError, ["input", "uint8"],
     lambda: F.avg_pool2d(np.ones((1, 1, 2, 2), dtype=np.uint8), 2)),
    ("avg_pool1d count_include_pad 'yes'", TypeError, ["count_include_pad", "'yes'"],
     lambda: F.avg_pool1d(_x(1, 1, 4), 2, count_include_pad="yes")),
    ("avg_pool3d input of 4 dimensions", ValueError, ["input", "5 dimensions", "(1, 4, 4, 4)"],
     lambda: F.avg_pool3d(_x(1, 4, 4, 4), 2)),
    # linear
    ("linear features do not match weight", ValueError, ["input", "3", "weight", "(4, 5)"],
     lambda: F.linear(_x(2, 3), _x(4, 5))),
    ("linear weight of 3 dimensions", ValueError, ["weight", "2 dimensions", "(4, 3, 1)"],
     lambda: F.linear(_x(2, 3), _x(4, 3, 1))),
    ("linear mixed dtypes", TypeError, ["weight", "float32", "float64"],
     lambda: F.linear(_x(2, 3, dtype=np.float64), _x(4, 3))),
    ("linear integer input", TypeError, ["input", "int64"],
     lambda: F.linear(np.ones((2, 3), dtype=np.int64), _x(4, 3))),
    ("linear bias of wrong length", ValueError, ["bias", "(4,)", "(3,)"],
     lambda: F.linear(_x(2, 3), _x(4, 3), _x(3))),
    # relu, dropout
    ("relu integer input", TypeError, ["input", "int"],
     lambda: F.relu(np.arange(3))),
    ("relu bool input", TypeError, ["input", "bool"],
     lambda: F.relu(np.array([True, False]))),
    ("dropout p 1.5", ValueError, ["p", "1.5"],
     lambda: F.dropout(_x(4), p=1.5)),
    ("dropout p -0.1", ValueError, ["p", "-0.1"],
     lambda: F.dropout(_x(4), p=-0.1)),
    ("dropout p True", TypeError, ["p", "True"],
     lambda: F.dropout(_x(4), p=True)),
    ("dropout p string", TypeError, ["p", "'0.5'"],
     lambda: F.dropout(_x(4), p="0.5")),
    ("dropout integer input", TypeError, ["input", "int16"],
     lambda: F.dropout(np.ones(4, dtype=np.int16), 0.5)),
    ("dropout seed instead of a Generator", TypeError, ["rng", "int"],
     lambda: F.dropout(_x(4), 0.5, rng=42)),
    ("dropout training 'no'", TypeError, ["training", "'no'"],
     lambda: F.dropout(_x(4), 0.5, training="no")),
    # local response norm
    ("local_response_norm size 0", ValueError, ["size", "0"],
     lambda: F.local_response_norm(_x(1, 3, 2), 0)),
    ("local_response_norm input of 2 dimensions", ValueError, ["input", "3 dimensions", "(3, 2)"],
     lambda: F.local_response_norm(_x(3, 2), 2)),
    ("local_response_norm integer input", TypeError, ["input", "int64"],
     lambda: F.local_response_norm(np.ones((1, 3, 2), dtype=np.int64), 2)),
    ("local_response_norm alpha string", TypeError, ["alpha", "'big'"],
     lambda: F.local_response_norm(_x(1, 3, 2), 2, alpha="big")),
    ("local_response_norm beta None", TypeError, ["beta", "None"],
     lambda: F.local_response_norm(_x(1, 3, 2), 2, beta=None)),
    ("local_response_norm bool size", TypeError, ["size", "True"],
     lambda: F.local_response_norm(_x(1, 3, 2), True)),
    ("local_response_norm float size", TypeError, ["size", "2.0"],
     lambda: F.local_response_norm(_x(1, 3, 2), 2.0)),
    # cross entropy
    ("cross_entropy label equal to the class count", ValueError, ["target", "[0, 3)", "3"],
     lambda: F.cross_entropy(_x(2, 3), np.array([0, 3]))),
    ("cross_entropy negative label", ValueError, ["target", "-1"],
     lambda: F.cross_entropy(_x(2, 3), np.array([-1, 0]))),
    ("cross_entropy float labels", TypeError, ["target", "float64"],
     lambda: F.cross_entropy(_x(2, 3), np.array([0.0, 1.0]))),
    ("cross_entropy bool labels", TypeError, ["target", "bool"],
     lambda: F.cross_entropy(_x(2, 3), np.array([True, False]))),
    ("cross_entropy labels of wrong length", ValueError, ["target", "(2,)", "(3,)"],
     lambda: F.cross_entropy(_x(2, 3), np.array([0, 1, 2]))),
    ("cross_entropy logits of 1 dimension", ValueError, ["logits", "2 dimensions", "(3,)"],
     lambda: F.cross_entropy(_x(3), np.array([0]))),
    ("cross_entropy integer logits", TypeError, ["logits", "int64"],
     lambda: F.cross_entropy(np.ones((2, 3), dtype=np.int64), np.array([0, 1]))),
    ("cross_entropy unknown reduction", ValueError, ["reduction", "'avg'"],
     lambda: F.cross_entropy(_x(2, 3), np.array([0, 1]), reduction="avg")),
]


@pytest.mark.parametrize("call, error, words", _rows(FUNCTIONAL_BAD))
def test_functional_rejects(call, error, words):
    with pytest.raises(error) as info:
        call()
    _assert_names(info.value, words)


@pytest.mark.parametrize("valid, invalid, words", [
    (lambda x: F.conv2d(x, _x(1, 1, 2, 2), stride=1, padding=(0, 1)),
     lambda x: F.conv2d(x, _x(1, 1, 2, 2), stride=True, padding=(0, 1)), ["stride", "True"]),
    (lambda x: F.conv2d(x, _x(1, 1, 2, 2), padding=(0, 1)),
     lambda x: F.conv2d(x, _x(1, 1, 2, 2), padding=(False, 1)), ["padding", "(False, 1)"]),
    (lambda x: F.conv_transpose2d(x, _x(1, 1, 2, 2), stride=1),
     lambda x: F.conv_transpose2d(x, _x(1, 1, 2, 2), stride=True), ["stride", "True"]),
    (lambda x: F.max_pool2d(x, 2, stride=1), lambda x: F.max_pool2d(x, 2, stride=True), ["stride", "True"]),
    (lambda x: F.avg_pool2d(x, (1, 2)), lambda x: F.avg_pool2d(x, (True, 2)), ["kernel_size", "(True, 2)"]),
])
def test_a_remembered_window_is_no_answer_for_bools_of_equal_value(valid, invalid, words):
    """Convolutions and poolings remember the geometry of the windows they have validated. True == 1 with the same
    hash, so a memory keyed on values alone would let a bool through where it was once given as an int."""
    x = _x(1, 1, 5, 5)
    valid(x)
    with pytest.raises(TypeError) as info:
        invalid(x)
    _assert_names(info.value, words)


def test_every_public_function_has_a_bad_input_row():
    covered = {re.match(r"\w+", row[0]).group() for row in FUNCTIONAL_BAD}
    expected = {"conv1d", "conv2d", "conv3d", "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d",
                "avg_pool2d", "avg_pool3d", "linear", "relu", "dropout", "local_response_norm",
                "cross_entropy"}
    assert expected <= covered


@pytest.mark.parametrize("call, error", [
    (lambda: checks.integer(2.0, "n"), TypeError), (lambda: checks.integer(True, "n"), TypeError),
    (lambda: checks.integer(0, "n", 1), ValueError), (lambda: checks.real("1", "x"), TypeError),
    (lambda: checks.real(False, "x"), TypeError), (lambda: checks.real(float("nan"), "x"), ValueError),
    (lambda: checks.real(float("inf"), "x"), ValueError), (lambda: checks.real(-1, "x", minimum=0), ValueError),
    (lambda: checks.real(0.0, "x", above=0.0), ValueError), (lambda: checks.real(1.0, "x", below=1.0), ValueError),
    (lambda: checks.flag(1, "b"), TypeError), (lambda: checks.probability(1.5), ValueError),
    (lambda: checks.probability(None), TypeError), (lambda: checks.float_dtype("int8"), TypeError),
])
def test_one_rule_for_parameters_wrong_kind_is_type_error_out_of_range_is_value_error(call, error):
    with pytest.raises(error) as raised:
        call()
    assert "got" in str(raised.value)


@pytest.mark.parametrize("call", [
    lambda: F.dropout(np.ones(3), p="0.5"), lambda: layers.Dropout("0.5"),
    lambda: F.local_response_norm(np.ones((1, 2, 3)), 2, alpha="1"),
    lambda: layers.LocalResponseNorm(2, alpha="1"),
    lambda: optim.SGD([(np.zeros(2), np.zeros(2))], lr="0.1"),
])
def test_the_same_bad_value_is_the_same_error_everywhere(call):
    with pytest.raises(TypeError):
        call()
