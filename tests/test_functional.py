"""The public functions against the NumPy reference (tests/naive.py), finite differences and PyTorch."""
import re

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import numconv.functional as F
from numconv.kernels.cpu.parallel import every_call
from tests import naive

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=2e-5, atol=2e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}

CONV_CASES = [
    # (ndim, N, C, O, spatial, kernel, stride, padding, dilation, groups)
    (1, 2, 3, 4, (11,), (3,), 1, 0, 1, 1),
    (1, 1, 4, 2, (16,), (5,), 3, 2, 2, 2),
    (2, 2, 3, 4, (7, 8), (3, 2), (2, 1), (1, 0), (1, 2), 1),
    (2, 1, 4, 6, (6, 6), (3, 3), 1, 1, 1, 2),
    (2, 1, 3, 3, (5, 7), (2, 2), 2, 0, 1, 3),
    (3, 1, 2, 3, (4, 5, 6), (2, 3, 2), (1, 2, 1), (1, 0, 1), 1, 1),
    (3, 2, 4, 4, (5, 4, 4), (3, 2, 2), 1, (1, 1, 0), (1, 2, 1), 2),
]

CONV = {1: (F.conv1d, F.conv1d_backward), 2: (F.conv2d, F.conv2d_backward), 3: (F.conv3d, F.conv3d_backward)}
MAX_POOL = {1: (F.max_pool1d, F.max_pool1d_backward), 2: (F.max_pool2d, F.max_pool2d_backward),
            3: (F.max_pool3d, F.max_pool3d_backward)}
AVG_POOL = {1: (F.avg_pool1d, F.avg_pool1d_backward), 2: (F.avg_pool2d, F.avg_pool2d_backward),
            3: (F.avg_pool3d, F.avg_pool3d_backward)}


def _tuple(value, ndim):
    return tuple(value) if isinstance(value, tuple) else (value,) * ndim


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_matches_reference(case, dtype, rng):
    ndim, batch, channels, out_channels, spatial, kernel, stride, padding, dilation, groups = case
    x = rng.standard_normal((batch, channels) + spatial).astype(dtype)
    w = rng.standard_normal((out_channels, channels // groups) + kernel).astype(dtype)
    b = rng.standard_normal(out_channels).astype(dtype)
    forward, backward = CONV[ndim]
    y = forward(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)
    pads = [(p, p) for p in _tuple(padding, ndim)]
    expected = naive.conv(x, w, b, _tuple(stride, ndim), pads, _tuple(dilation, ndim), groups)
    assert y.dtype == dtype and y.shape == expected.shape
    np.testing.assert_allclose(y, expected, **TOL[dtype])
    g = rng.standard_normal(y.shape).astype(dtype)
    grads = backward(g, x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)
    expected_grads = naive.conv_backward(g, x, w, _tuple(stride, ndim), pads, _tuple(dilation, ndim), groups)
    for got, want in zip(grads, expected_grads):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, **TOL[dtype])


@pytest.mark.parametrize("case", CONV_CASES[::3])
def test_conv_backward_without_input_grad_gives_the_same_weight_grads(case, rng):
    ndim, batch, channels, out_channels, spatial, kernel, stride, padding, dilation, groups = case
    x = rng.standard_normal((batch, channels) + spatial)
    w = rng.standard_normal((out_channels, channels // groups) + kernel)
    b = rng.standard_normal(out_channels)
    forward, backward = CONV[ndim]
    options = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    g = rng.standard_normal(forward(x, w, b, **options).shape)
    pads = [(p, p) for p in _tuple(padding, ndim)]
    _, want_weight, want_bias = naive.conv_backward(g, x, w, _tuple(stride, ndim), pads, _tuple(dilation, ndim),
                                                    groups)
    grad_input, grad_weight, grad_bias = backward(g, x, w, b, needs_input_grad=False, **options)
    assert grad_input is None
    np.testing.assert_allclose(grad_weight, want_weight, **TOL[np.float64])
    np.testing.assert_allclose(grad_bias, want_bias, **TOL[np.float64])


def test_linear_backward_without_input_grad(rng):
    x, w, b = rng.standard_normal((3, 5)), rng.standard_normal((4, 5)), rng.standard_normal(4)
    g = rng.standard_normal((3, 4))
    grad_input, grad_weight, grad_bias = F.linear_backward(g, x, w, b, needs_input_grad=False)
    assert grad_input is None
    np.testing.assert_allclose(grad_weight, g.T @ x, **TOL[np.float64])
    np.testing.assert_allclose(grad_bias, g.sum(axis=0), **TOL[np.float64])


def _parameter_backwards(rng):
    """(name, backward(out) -> (grad_input, grad_weight, grad_bias), weight, bias) for each backward with ``out``."""
    x2, x3 = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((3, 5))
    w2, w3, b = rng.standard_normal((4, 3, 3, 2)), rng.standard_normal((4, 5)), rng.standard_normal(4)
    wt, bt = rng.standard_normal((3, 2, 2, 2)), rng.standard_normal(2)
    g2, g3 = rng.standard_normal((2, 4, 2, 3)), rng.standard_normal((3, 4))
    gt = rng.standard_normal((2, 2, 8, 6))
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
    stats = (np.zeros(3), np.ones(3))
    return [
        ("conv2d", lambda out: F.conv2d_backward(g2, x2, w2, b, stride=2, padding=(0, 1), out=out), w2, b),
        ("conv2d without bias", lambda out: F.conv2d_backward(g2, x2, w2, None, stride=2, padding=(0, 1),
                                                              out=out), w2, None),
        ("conv_transpose2d", lambda out: F.conv_transpose2d_backward(gt, x2, wt, bt, stride=(1, 1), groups=1,
                                                                     padding=(0, 1), dilation=(2, 3), out=out),
         wt, bt),
        ("linear", lambda out: F.linear_backward(g3, x3, w3, b, out=out), w3, b),
        ("batch_norm", lambda out: F.batch_norm_backward(x2, x2, *stats, gamma, beta, training=True, out=out),
         gamma, beta),
        ("batch_norm without affine", lambda out: F.batch_norm_backward(x2, x2, *stats, training=True, out=out),
         None, None),
    ]


def test_backward_writes_the_parameters_gradients_into_out(rng):
    """``out`` receives exactly what the backward returns without it, and is what it returns."""
    for name, backward, weight, bias in _parameter_backwards(rng):
        wants = backward(None)
        out = tuple(None if p is None else np.full_like(p, np.nan) for p in (weight, bias))
        gots = backward(out)
        np.testing.assert_array_equal(gots[0], wants[0], err_msg=name)
        for got, want, target in zip(gots[1:], wants[1:], out):
            assert got is target, name
            if want is not None:
                assert np.abs(want).max() > 0
                np.testing.assert_array_equal(got, want, err_msg=name)


def test_backward_out_is_checked(rng):
    w, b = rng.standard_normal((4, 3, 3, 2)), rng.standard_normal(4)
    g, x = rng.standard_normal((2, 4, 2, 3)), rng.standard_normal((2, 3, 6, 5))

    def backward(out, bias=b):
        return F.conv2d_backward(g, x, w, bias, stride=2, padding=(0, 1), out=out)

    good_w, good_b = np.zeros_like(w), np.zeros_like(b)
    with pytest.raises(TypeError, match="out must be a"):
        backward(good_w)
    with pytest.raises(ValueError, match=r"out\[0\] must have shape"):
        backward((np.empty((4, 3, 2, 3)), good_b))
    with pytest.raises(TypeError, match=r"out\[1\] must have dtype float64"):
        backward((good_w, good_b.astype(np.float32)))
    with pytest.raises(ValueError, match=r"out\[0\] must be a writeable C-contiguous"):
        backward((np.empty((4, 3, 2, 3)).transpose(0, 1, 3, 2), good_b))
    with pytest.raises(ValueError, match=r"out\[1\] must be None exactly where"):
        backward((good_w, good_b), bias=None)
    with pytest.raises(ValueError, match=r"out\[1\] must be None exactly where"):
        backward((good_w, None))
    with pytest.raises(TypeError, match=r"out\[0\] must be a NumPy or device array"):
        backward((w.tolist(), good_b))


@pytest.mark.parametrize("call", [
    lambda: F.conv1d_backward(np.ones((1, 1, 2)), np.ones((1, 1, 3)), np.ones((1, 1, 2)), needs_input_grad=1),
    lambda: F.linear_backward(np.ones((1, 1)), np.ones((1, 2)), np.ones((1, 2)), needs_input_grad="no"),
])
def test_needs_input_grad_must_be_a_bool(call):
    with pytest.raises(TypeError, match="needs_input_grad"):
        call()


@pytest.mark.parametrize("relu", [1, "yes", None])
def test_relu_of_a_convolution_must_be_a_bool(relu):
    with pytest.raises(TypeError, match=f"relu must be a bool, got {relu!r}"):
        F.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)), relu=relu)


@pytest.mark.parametrize("x_shape,w_shape,options", [
    ((2, 4, 9), (6, 2, 3), dict(padding="same", groups=2, relu=True)),
    ((1, 3, 7, 8), (5, 3, 3, 2), dict(stride=2, padding=1, dilation=(1, 2))),
    ((1, 2, 3, 5, 4), (3, 2, 2, 3, 3), dict(padding=(0, 1, 1), relu=True)),
])
@pytest.mark.parametrize("with_bias", [True, False])
def test_a_bound_convolution_gives_the_convolution_of_each_input(x_shape, w_shape, options, with_bias, rng):
    """F.bind_conv checks once; its run gives convNd's result (the fused ReLU's too) for every new input, a strided
    or read-only one included (copied), and refuses an input of another shape, dtype or kind."""
    ndim = len(x_shape) - 2
    conv = (F.conv1d, F.conv2d, F.conv3d)[ndim - 1]
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32) if with_bias else None
    run = F.bind_conv(np.zeros(x_shape, np.float32), w, b, **options)
    for _ in range(2):
        x = rng.standard_normal(x_shape).astype(np.float32)
        np.testing.assert_array_equal(run(x), conv(x, w, b, **options))
    strided = rng.standard_normal(x_shape[:-1] + (2 * x_shape[-1],)).astype(np.float32)[..., ::2]
    strided.flags.writeable = False
    np.testing.assert_array_equal(run(strided), conv(np.ascontiguousarray(strided), w, b, **options))
    with pytest.raises(ValueError, match=re.escape(f"input must have shape {tuple(x_shape)}, got")):
        run(np.zeros((x_shape[0] + 1,) + x_shape[1:], np.float32))
    with pytest.raises(TypeError, match="input has dtype float64; the convolution was bound to float32 inputs"):
        run(np.zeros(x_shape))
    with pytest.raises(TypeError, match="input must be an array, got None"):
        run(None)


def test_bind_conv_checks_what_convNd_checks():
    with pytest.raises(ValueError, match="input must have at least 3 dimensions"):
        F.bind_conv(np.zeros((2, 3), np.float32), np.zeros((1, 2, 1), np.float32))
    with pytest.raises(ValueError, match="1 to 3 spatial dimensions"):
        F.bind_conv(np.zeros((1, 1, 2, 2, 2, 2), np.float32), np.zeros((1, 1, 1, 1, 1, 1), np.float32))
    with pytest.raises(TypeError, match="relu must be a bool"):
        F.bind_conv(np.zeros((1, 1, 3), np.float32), np.zeros((1, 1, 2), np.float32), relu=1)


@pytest.mark.parametrize("kernel,dilation", [(4, 1), (3, 2), (5, 1)])
def test_conv_same_padding_keeps_size_and_puts_extra_right(kernel, dilation, rng):
    x = rng.standard_normal((1, 2, 9)).astype(np.float64)
    w = rng.standard_normal((3, 2, kernel))
    y = F.conv1d(x, w, padding="same", dilation=dilation)
    total = dilation * (kernel - 1)
    expected = naive.conv(x, w, None, (1,), [(total // 2, total - total // 2)], (dilation,), 1)
    assert y.shape == (1, 3, 9)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    assert F.conv1d(x, w, padding="valid", dilation=dilation).shape == (1, 3, 9 - total)


@settings(max_examples=25, deadline=None)
@given(
    ndim=st.integers(1, 3), batch=st.integers(1, 2), groups=st.integers(1, 2),
    group_in=st.integers(1, 2), group_out=st.integers(1, 2), data=st.data(),
)
def test_conv_random_configurations(ndim, batch, groups, group_in, group_out, data):
    kernel = tuple(data.draw(st.integers(1, 3)) for _ in range(ndim))
    dilation = tuple(data.draw(st.integers(1, 2)) for _ in range(ndim))
    stride = tuple(data.draw(st.integers(1, 3)) for _ in range(ndim))
    padding = tuple(data.draw(st.integers(0, 2)) for _ in range(ndim))
    spatial = tuple(max(data.draw(st.integers(1, 6)), d * (k - 1) + 1 - 2 * p)
                    for k, d, p in zip(kernel, dilation, padding))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((batch, group_in * groups) + spatial)
    w = rng.standard_normal((group_out * groups, group_in) + kernel)
    forward, backward = CONV[ndim]
    pads = [(p, p) for p in padding]
    y = forward(x, w, None, stride, padding, dilation, groups)
    np.testing.assert_allclose(y, naive.conv(x, w, None, stride, pads, dilation, groups), rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(y.shape)
    grad_x, grad_w, grad_b = backward(g, x, w, None, stride, padding, dilation, groups)
    want_x, want_w, _ = naive.conv_backward(g, x, w, stride, pads, dilation, groups)
    assert grad_b is None
    np.testing.assert_allclose(grad_x, want_x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad_w, want_w, rtol=1e-12, atol=1e-12)


POOL_CASES = [
    # (ndim, spatial, kernel, stride, padding, dilation, ceil_mode)
    (1, (13,), 3, 2, 1, 1, False),
    (1, (10,), 4, 3, 2, 2, True),
    (2, (9, 8), 3, 2, 0, 1, True),
    (2, (7, 7), (2, 3), (2, 1), (1, 1), (2, 1), False),
    (3, (5, 6, 7), 2, 2, 1, 1, True),
    (3, (4, 4, 5), (3, 2, 2), (1, 2, 2), (1, 0, 1), 1, False),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES)
def test_max_pool_matches_reference(case, dtype, rng):
    ndim, spatial, kernel, stride, padding, dilation, ceil_mode = case
    x = rng.standard_normal((2, 3) + spatial).astype(dtype)
    forward, backward = MAX_POOL[ndim]
    y, indices = forward(x, kernel, stride, padding, dilation, ceil_mode, return_indices=True)
    want_y, want_indices = naive.max_pool(x, _tuple(kernel, ndim), _tuple(stride, ndim), _tuple(padding, ndim),
                                          _tuple(dilation, ndim), ceil_mode)
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(indices, want_indices)
    assert indices.dtype == np.int64 and y.dtype == dtype
    g = rng.standard_normal(y.shape).astype(dtype)
    (grad,) = backward(g, x, kernel, stride, padding, dilation, ceil_mode)
    (grad_from_indices,) = backward(g, x, kernel, stride, padding, dilation, ceil_mode, indices=indices)
    want = naive.max_pool_backward(g, x, _tuple(kernel, ndim), _tuple(stride, ndim), _tuple(padding, ndim),
                                   _tuple(dilation, ndim), ceil_mode)
    np.testing.assert_allclose(grad, want, **TOL[dtype])
    np.testing.assert_array_equal(grad, grad_from_indices)


@pytest.mark.parametrize("version", ["serial", "parallel"])
@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("bad", [-1, "plane", np.iinfo(np.int64).min, np.iinfo(np.int64).max])
def test_max_pool_backward_rejects_an_index_outside_its_plane(bad, ndim, version, rng):
    # the kernel checks the range as it scatters; one bad index among good ones, in the last plane of several
    spatial = {1: (8,), 2: (4, 6), 3: (2, 4, 4)}[ndim]
    x = rng.standard_normal((2, 3) + spatial)
    forward, backward = MAX_POOL[ndim]
    y, indices = forward(x, 2, return_indices=True)
    plane = int(np.prod(spatial))
    bad = plane if bad == "plane" else bad
    indices.reshape(-1)[-2] = bad
    with every_call(version), pytest.raises(
            ValueError, match=rf"indices must lie in \[0, {plane}\) \(flat within each plane\), got values from "
                              rf"{indices.min()} to {indices.max()}$"):
        backward(np.ones_like(y), x, 2, indices=indices)
    indices.reshape(-1)[-2] = plane - 1
    with every_call(version):
        (grad,) = backward(np.ones_like(y), x, 2, indices=indices)
    assert grad.reshape(6, -1)[-1, -1] >= 1.0


def test_max_pool_backward_rejects_indices_of_the_wrong_dtype_or_shape(rng):
    x = rng.standard_normal((1, 2, 4, 4))
    y, indices = F.max_pool2d(x, 2, return_indices=True)
    with pytest.raises(TypeError, match="indices must be int64 as max_pool returns them, got dtype int32"):
        F.max_pool2d_backward(y, x, 2, indices=indices.astype(np.int32))
    with pytest.raises(ValueError, match=r"indices must have shape \(1, 2, 2, 2\), got \(1, 1, 2, 2\)"):
        F.max_pool2d_backward(y, x, 2, indices=indices[:, :1])


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES)
def test_avg_pool_matches_reference(case, dtype, count_include_pad, rng):
    ndim, spatial, kernel, stride, padding, _, ceil_mode = case
    x = rng.standard_normal((2, 2) + spatial).astype(dtype)
    forward, backward = AVG_POOL[ndim]
    y = forward(x, kernel, stride, padding, ceil_mode, count_include_pad)
    args = (_tuple(kernel, ndim), _tuple(stride, ndim), _tuple(padding, ndim), ceil_mode, count_include_pad)
    np.testing.assert_allclose(y, naive.avg_pool(x, *args), **TOL[dtype])
    g = rng.standard_normal(y.shape).astype(dtype)
    (grad,) = backward(g, x, kernel, stride, padding, ceil_mode, count_include_pad)
    np.testing.assert_allclose(grad, naive.avg_pool_backward(g, x, *args), **TOL[dtype])


PADDING_PAIRS = [((1, 0), (0, 2)), ((0, 2), (2, 1)), ((2, 2), (0, 1))]


@pytest.mark.parametrize("pairs", PADDING_PAIRS)
def test_padding_given_per_side_is_the_op_on_the_input_padded_so(pairs, rng):
    """Per-side padding (ONNX's pads) equals padding the input by hand and then using none: zeros for the
    convolution and the average (its divisor then counts the padding), -inf for the maximum, and gradients that
    are the padded op's, cut back to the input."""
    x = rng.standard_normal((2, 2, 6, 7))
    w = rng.standard_normal((3, 2, 3, 2))
    zero_padded = np.pad(x, ((0, 0), (0, 0)) + pairs)
    out = F.conv2d(x, w, padding=pairs, stride=(2, 1))
    np.testing.assert_allclose(out, F.conv2d(zero_padded, w, stride=(2, 1)), rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(out.shape)
    grad_x, grad_w, _ = F.conv2d_backward(g, x, w, padding=pairs, stride=(2, 1))
    grad_padded, grad_w_padded, _ = F.conv2d_backward(g, zero_padded, w, stride=(2, 1))
    inside = (slice(None), slice(None)) + tuple(slice(b, b + n) for (b, _), n in zip(pairs, x.shape[2:]))
    np.testing.assert_allclose(grad_x, grad_padded[inside], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad_w, grad_w_padded, rtol=1e-12, atol=1e-12)

    pooled = F.max_pool2d(x, 3, stride=2, padding=pairs)
    want = F.max_pool2d(np.pad(x, ((0, 0), (0, 0)) + pairs, constant_values=-np.inf), 3, stride=2)
    np.testing.assert_array_equal(pooled, want)
    averaged = F.avg_pool2d(x, 3, stride=2, padding=pairs, count_include_pad=True)
    np.testing.assert_allclose(averaged, F.avg_pool2d(zero_padded, 3, stride=2), rtol=1e-12)
    g = rng.standard_normal(averaged.shape)
    (grad_avg,) = F.avg_pool2d_backward(g, x, 3, stride=2, padding=pairs, count_include_pad=True)
    np.testing.assert_allclose(grad_avg, F.avg_pool2d_backward(g, zero_padded, 3, stride=2)[0][inside], rtol=1e-12)


def test_average_without_padding_counted_divides_by_the_inputs_in_each_window(rng):
    x = rng.standard_normal((1, 1, 5))
    got = F.avg_pool1d(x, 3, stride=2, padding=((2, 1),), count_include_pad=False)
    # windows start at -2, 0 and 2; one at 4 would end past the single padded position after the input
    want = [x[0, 0, 0], x[0, 0, 0:3].mean(), x[0, 0, 2:5].mean()]
    np.testing.assert_allclose(got[0, 0], want, rtol=1e-12)


def test_max_pool_ties_go_to_first_and_padding_never_wins():
    x = np.array([[[-3.0, -3.0, -5.0, -1.0, -1.0]]])
    y, indices = F.max_pool1d(x, 2, 2, padding=1, return_indices=True)
    # windows: [pad, x0], [x1, x2], [x3, x4]; all values negative, so a zero pad would win if it counted
    np.testing.assert_array_equal(y, [[[-3.0, -3.0, -1.0]]])
    np.testing.assert_array_equal(indices, [[[0, 1, 3]]])


def test_max_pool_propagates_nan():
    x = np.array([[[1.0, np.nan, 0.5, 2.0]]])
    y = F.max_pool1d(x, 2)
    assert np.isnan(y[0, 0, 0]) and y[0, 0, 1] == 2.0


def test_global_avg_pool(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    np.testing.assert_allclose(F.global_avg_pool(x), x.mean(axis=(2, 3)), rtol=1e-12)
    g = rng.standard_normal((2, 3))
    (grad,) = F.global_avg_pool_backward(g, x)
    np.testing.assert_allclose(grad, np.broadcast_to(g[:, :, None, None] / 20, x.shape), rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_with_leading_axes(dtype, rng):
    x = rng.standard_normal((2, 3, 5)).astype(dtype)
    w = rng.standard_normal((4, 5)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    y = F.linear(x, w, b)
    np.testing.assert_allclose(y, naive.linear(x, w, b), **TOL[dtype])
    g = rng.standard_normal(y.shape).astype(dtype)
    grad_x, grad_w, grad_b = F.linear_backward(g, x, w, b)
    np.testing.assert_allclose(grad_x, g @ w, **TOL[dtype])
    np.testing.assert_allclose(grad_w, g.reshape(-1, 4).T @ x.reshape(-1, 5), **TOL[dtype])
    np.testing.assert_allclose(grad_b, g.sum(axis=(0, 1)), **TOL[dtype])


def test_relu_and_its_gradient():
    x = np.array([-2.0, -0.0, 0.0, 3.0, np.nan])
    y = F.relu(x)
    np.testing.assert_array_equal(y[:4], [0.0, 0.0, 0.0, 3.0])
    assert np.isnan(y[4])
    (grad,) = F.relu_backward(np.full(5, 7.0), x)
    np.testing.assert_array_equal(grad, [0.0, 0.0, 0.0, 7.0, 7.0])  # at NaN the gradient passes, as in PyTorch


@pytest.mark.parametrize("size,alpha,beta,k", [(5, 1e-4, 0.75, 2.0), (2, 0.5, 0.5, 1.0), (3, 1.0, 1.0, 0.5)])
def test_local_response_norm_matches_reference(size, alpha, beta, k, rng):
    x = rng.standard_normal((2, 7, 3, 2))
    y = F.local_response_norm(x, size, alpha, beta, k)
    np.testing.assert_allclose(y, naive.local_response_norm(x, size, alpha, beta, k), rtol=1e-12)


def test_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1e4, 0.0, -1e4], [3.0, 3.0, 3.0]], dtype=np.float32)
    target = np.array([1, 2])
    losses = F.cross_entropy(logits, target, reduction="none")
    np.testing.assert_allclose(losses, [1e4, np.log(3.0)], rtol=1e-6)
    assert np.isclose(F.cross_entropy(logits, target), losses.mean())
    assert np.isclose(F.cross_entropy(logits, target, reduction="sum"), losses.sum())
    grad, none = F.cross_entropy_backward(1.0, logits, target)
    assert none is None and np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad[0], [0.5, -0.5, 0.0], atol=1e-7)


def test_cross_entropy_matches_reference(rng):
    logits = rng.standard_normal((6, 10)) * 5
    target = rng.integers(0, 10, 6)
    np.testing.assert_allclose(F.cross_entropy(logits, target, reduction="none"),
                               naive.cross_entropy_losses(logits, target), rtol=1e-12)


@pytest.mark.parametrize("keywords, error, message", [
    (dict(weight=np.ones(3)), ValueError, r"weight must have shape \(4,\)"),
    (dict(weight=np.ones(4, np.float32)), TypeError, "weight has dtype float32"),
    (dict(label_smoothing=1.5), ValueError, "label_smoothing must be in"),
    (dict(ignore_index=1.0), TypeError, "ignore_index must be an int"),
    (dict(reduction="avg"), ValueError, "reduction must be one of"),
    (dict(ignore_index=7), ValueError, r"equal ignore_index=7, got -100"),
])
def test_bad_cross_entropy_options_get_clear_errors(keywords, error, message):
    with pytest.raises(error, match=message):
        F.cross_entropy(np.zeros((2, 4)), np.array([1, -100]), **keywords)


def test_dropout_is_deterministic_scaled_and_bernoulli():
    x = np.ones((200, 100), dtype=np.float32)
    y1, mask = F.dropout(x, 0.3, rng=np.random.default_rng(7), return_mask=True)
    y2 = F.dropout(x, 0.3, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(y1, y2)
    assert mask.dtype == np.bool_
    np.testing.assert_allclose(y1[mask], 1 / 0.7, rtol=1e-6)
    assert np.all(y1[~mask] == 0)
    # 20,000 Bernoulli(0.7) draws: the kept fraction is within 5 standard deviations of 0.7
    assert abs(mask.mean() - 0.7) < 5 * np.sqrt(0.7 * 0.3 / mask.size)
    (grad,) = F.dropout_backward(np.full_like(x, 2.0), mask, 0.3)
    np.testing.assert_allclose(grad, np.where(mask, 2.0 / 0.7, 0.0), rtol=1e-6)
    assert F.dropout(x, 0.3, training=False) is x
    np.testing.assert_array_equal(F.dropout(x, 1.0, rng=np.random.default_rng(0)), 0.0)
    np.testing.assert_array_equal(F.dropout(x, 0.0, rng=np.random.default_rng(0)), x)


def test_awkward_memory_layouts_give_the_same_result(rng):
    base = rng.standard_normal((2, 3, 8, 10)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    expected = F.conv2d(base, w, padding=1)
    fortran = np.asfortranarray(base)
    strided = np.ascontiguousarray(np.repeat(base, 2, axis=3))[..., ::2]
    readonly = base.copy()
    readonly.flags.writeable = False
    for variant in (fortran, strided, readonly):
        np.testing.assert_array_equal(F.conv2d(variant, w, padding=1), expected)
    assert not strided.flags.c_contiguous


def _numeric_gradient(function, array, grad_output, eps=1e-6):
    """d(sum(grad_output * function()))/d array by central differences, in float64."""
    result = np.zeros_like(array)
    for index in np.ndindex(*array.shape):
        saved = array[index]
        array[index] = saved + eps
        plus = np.sum(grad_output * function())
        array[index] = saved - eps
        minus = np.sum(grad_output * function())
        array[index] = saved
        result[index] = (plus - minus) / (2 * eps)
    return result


FINITE_DIFFERENCE_OPS = {
    "conv2d": (lambda a: F.conv2d(a["x"], a["w"], a["b"], stride=(2, 1), padding=1, dilation=(1, 2), groups=2),
               lambda g, a: F.conv2d_backward(g, a["x"], a["w"], a["b"], stride=(2, 1), padding=1, dilation=(1, 2),
                                              groups=2),
               {"x": (1, 4, 5, 6), "w": (2, 2, 2, 3), "b": (2,)}),
    "conv1d": (lambda a: F.conv1d(a["x"], a["w"], None, stride=2, padding="valid"),
               lambda g, a: F.conv1d_backward(g, a["x"], a["w"], None, stride=2, padding="valid")[:2],
               {"x": (2, 2, 9), "w": (3, 2, 3)}),
    "conv3d": (lambda a: F.conv3d(a["x"], a["w"], a["b"], padding=(1, 0, 1)),
               lambda g, a: F.conv3d_backward(g, a["x"], a["w"], a["b"], padding=(1, 0, 1)),
               {"x": (1, 2, 3, 3, 4), "w": (2, 2, 2, 2, 2), "b": (2,)}),
    "max_pool2d": (lambda a: F.max_pool2d(a["x"], 3, 2, 1, ceil_mode=True),
                   lambda g, a: F.max_pool2d_backward(g, a["x"], 3, 2, 1, ceil_mode=True),
                   {"x": (1, 2, 6, 7)}),
    "avg_pool3d": (lambda a: F.avg_pool3d(a["x"], 2, 2, 1, ceil_mode=True, count_include_pad=False),
                   lambda g, a: F.avg_pool3d_backward(g, a["x"], 2, 2, 1, ceil_mode=True, count_include_pad=False),
                   {"x": (1, 1, 3, 4, 5)}),
    "linear": (lambda a: F.linear(a["x"], a["w"], a["b"]),
               lambda g, a: F.linear_backward(g, a["x"], a["w"], a["b"]),
               {"x": (3, 4), "w": (2, 4), "b": (2,)}),
    "local_response_norm": (lambda a: F.local_response_norm(a["x"], 3, 0.5, 0.75, 1.0),
                            lambda g, a: F.local_response_norm_backward(g, a["x"], 3, 0.5, 0.75, 1.0),
                            {"x": (2, 5, 3)}),
    "relu": (lambda a: F.relu(a["x"]), lambda g, a: F.relu_backward(g, a["x"]), {"x": (3, 7)}),
    "global_avg_pool": (lambda a: F.global_avg_pool(a["x"]), lambda g, a: F.global_avg_pool_backward(g, a["x"]),
                        {"x": (2, 3, 4)}),
    "cross_entropy": (lambda a: F.cross_entropy(a["x"], np.array([0, 3, 1]), reduction="none"),
                      lambda g, a: F.cross_entropy_backward(g, a["x"], np.array([0, 3, 1]), reduction="none")[:1],
                      {"x": (3, 4)}),
}


@pytest.mark.parametrize("name", sorted(FINITE_DIFFERENCE_OPS))
def test_gradients_match_finite_differences(name, rng):
    forward, backward, shapes = FINITE_DIFFERENCE_OPS[name]
    arrays = {key: rng.standard_normal(shape) for key, shape in shapes.items()}
    grad_output = rng.standard_normal(np.shape(forward(arrays)))
    analytic = backward(grad_output, arrays)
    for key, got in zip(shapes, analytic):
        numeric = _numeric_gradient(lambda: forward(arrays), arrays[key], grad_output)
        np.testing.assert_allclose(got, numeric, rtol=1e-6, atol=1e-6, err_msg=f"{name}: d/d{key}")
