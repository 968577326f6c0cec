"""The CUDA backend: every kernel against the spec, every public function on device arrays against the CPU, the
recognition of device arrays, and the errors of the backend.

Without a GPU this runs under Numba's CUDA simulator (tests/conftest.py chooses it), one Python thread per CUDA
thread: the inputs are tiny, and the launch knobs of numconv.config are lowered so that they still span several
blocks, several tiles of every matrix product, and several splits of the weight-gradient reduction.
"""
import dataclasses
import inspect
import sys
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings

from spec import check, registry
from tests.strategies import conv_configs, pool_configs

cuda = pytest.importorskip("numba.cuda")

import numconv.functional as F  # noqa: E402
from numconv import backend, config  # noqa: E402
from numconv.kernels.cpu.parallel import every_call  # noqa: E402

AVAILABLE = "cuda" in registry.available_backends()
pytestmark = pytest.mark.skipif(not AVAILABLE, reason="numba-cuda finds neither a GPU nor its simulator")

if AVAILABLE:
    from numconv.kernels import cpu as cpu_kernels
    from numconv.kernels import cuda as cuda_kernels
    from numconv.kernels.cuda import gemm, pool, support

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=2e-5, atol=2e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}


@pytest.fixture(autouse=True)
def small_launches(monkeypatch):
    """Few threads per block and small tiles: the tiny inputs below span several blocks, tiles and splits."""
    monkeypatch.setattr(config, "THREADS_PER_BLOCK", 4)
    monkeypatch.setattr(config, "REDUCE_THREADS", 4)
    monkeypatch.setattr(config, "GEMM_TILE", (4, 4, 4, 2, 2))
    monkeypatch.setattr(config, "GEMM_TILE_NARROW", (4, 2, 4, 2, 1))
    monkeypatch.setattr(config, "SPLIT_MIN_DEPTH", 8)
    monkeypatch.setattr(config, "SPLIT_TARGET_BLOCKS", 16)


def to_dev(array):
    return backend.to_device(np.asarray(array))


def to_np(array):
    assert backend.is_device_array(array), f"expected a device array, got {type(array).__name__}"
    return backend.to_host(array)


def integers(rng, shape, dtype, low=-3, high=3):
    """Small integer values: sums of their products are exact in any order, so the backends must agree exactly."""
    return rng.integers(low, high + 1, size=shape).astype(dtype)


# --- the spec, on every CUDA kernel ---------------------------------------------------------------------------------

CUDA_ROWS = list(registry.rows(["cuda"])) if AVAILABLE else []


@pytest.mark.parametrize("row", CUDA_ROWS, ids=[f"{r.kernel_name}-{r.label}" for r in CUDA_ROWS])
def test_cuda_kernel_equals_spec(row, monkeypatch):
    # a little larger than the other tests' (the connectivity probe launches once per input element), and still
    # several blocks and tiles for every configuration of the registry
    monkeypatch.setattr(config, "THREADS_PER_BLOCK", 8)
    monkeypatch.setattr(config, "GEMM_TILE", (4, 4, 8, 2, 2))
    monkeypatch.setattr(config, "GEMM_TILE_NARROW", (8, 2, 8, 2, 1))
    monkeypatch.setattr(config, "SPLIT_MIN_DEPTH", 16)
    monkeypatch.setattr(config, "SPLIT_TARGET_BLOCKS", 4)
    result = check.check_row(row, np.random.default_rng(0))
    assert result.ok, result.detail


def _cpu_function(module: str, name: str):
    function = getattr(getattr(cpu_kernels, module), name)
    return getattr(function, "py_func", function)


def test_the_registry_takes_every_branch_of_every_cuda_kernel():
    """Every line and branch of every CUDA kernel file is run, under the simulator, by some registry configuration
    (the CPU's: tests/test_spec.py)."""
    from spec import coverage

    gaps = coverage.measure("cuda")
    assert not gaps, "the registry leaves out " + "; ".join(coverage.describe(gaps))


def test_every_cpu_kernel_has_a_cuda_twin_with_its_signature():
    """Each kernel the registry checks on CUDA exists there with the CPU kernel's signature (which kernels each
    backend has, against the registry, is tests/test_spec.py's)."""
    on_cuda = {(e.module, e.name) for e in registry.ENTRIES if "cuda" in e.backends}
    assert on_cuda
    for module, name in sorted(on_cuda):
        twin = getattr(getattr(cuda_kernels, module), name, None)
        assert twin is not None, f"numconv.kernels.cuda.{module}.{name} is missing"
        assert inspect.signature(twin) == inspect.signature(_cpu_function(module, name)), f"{module}.{name}"


@settings(max_examples=6, deadline=None)
@given(conv=conv_configs(max_batch=2), pool=pool_configs())
def test_random_conv_and_pool_configurations_equal_the_spec(conv, pool):
    """Random windows, strides, padding, dilation, groups and ceil_mode through the CUDA kernels, held to the spec
    (identity tests, without the connectivity probe, in float64)."""
    for module, name, config_ in (("conv", "conv_forward", conv), ("conv", "conv_grad_input", conv),
                                  ("conv", "conv_grad_weight", conv), ("pool", "max_pool_forward", pool),
                                  ("pool", "avg_pool_forward", pool), ("pool", "avg_pool_backward", pool)):
        case = dataclasses.replace(registry.entry(name).build(config_), probe=None)
        result = check.check_case(case, registry.kernel_function("cuda", module, name), np.random.default_rng(0),
                                  dtypes=(np.float64,))
        assert result.ok, f"{name} {config_.label()}: {result.detail}"


# --- the public functions on device arrays --------------------------------------------------------------------------

CONV_CASES = [
    # (ndim, N, C, O, spatial, kernel, stride, padding, dilation, groups, bias)
    (1, 2, 2, 4, (9,), (3,), 2, 1, 2, 2, True),
    (2, 1, 3, 3, (5, 6), (2, 3), (2, 1), (1, 1), (1, 2), 3, False),
    (2, 2, 2, 3, (4, 5), (3, 2), 1, "same", 1, 1, True),
    (3, 1, 2, 4, (3, 4, 4), (2, 2, 2), (1, 2, 1), (1, 0, 1), (1, 1, 2), 2, True),
]
CONV = {1: (F.conv1d, F.conv1d_backward), 2: (F.conv2d, F.conv2d_backward), 3: (F.conv3d, F.conv3d_backward)}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_on_device_equals_cpu(case, dtype, rng):
    ndim, batch, channels, out_channels, spatial, kernel, stride, padding, dilation, groups, with_bias = case
    x = integers(rng, (batch, channels) + spatial, dtype)
    w = integers(rng, (out_channels, channels // groups) + kernel, dtype)
    b = integers(rng, (out_channels,), dtype) if with_bias else None
    forward, backward = CONV[ndim]
    keywords = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    want = forward(x, w, b, **keywords)
    got = forward(to_dev(x), to_dev(w), None if b is None else to_dev(b), **keywords)
    assert got.dtype == dtype and tuple(got.shape) == want.shape
    np.testing.assert_array_equal(to_np(got), want)
    g = integers(rng, want.shape, dtype)
    wants = backward(g, x, w, b, **keywords)
    gots = backward(to_dev(g), to_dev(x), to_dev(w), None if b is None else to_dev(b), **keywords)
    for name, got_grad, want_grad in zip(("input", "weight", "bias"), gots, wants):
        if want_grad is None:
            assert got_grad is None
            continue
        np.testing.assert_array_equal(to_np(got_grad), want_grad, err_msg=name)


def test_conv_with_real_values_matches_closely(rng):
    x = rng.standard_normal((2, 4, 6, 5))
    w = rng.standard_normal((6, 2, 3, 3))
    b = rng.standard_normal(6)
    keywords = dict(stride=(2, 1), padding=1, groups=2)
    np.testing.assert_allclose(to_np(F.conv2d(to_dev(x), to_dev(w), to_dev(b), **keywords)),
                               F.conv2d(x, w, b, **keywords), **TOL[np.float64])
    g = rng.standard_normal((2, 6, 3, 5))
    for got, want in zip(F.conv2d_backward(to_dev(g), to_dev(x), to_dev(w), to_dev(b), **keywords),
                         F.conv2d_backward(g, x, w, b, **keywords)):
        np.testing.assert_allclose(to_np(got), want, **TOL[np.float64])


def test_launches_span_several_blocks_and_split_the_weight_reduction(monkeypatch, rng):
    launches = []
    real_launch = gemm.launch

    def recording(kernel, grid, block, *args):
        launches.append((kernel, grid, block))
        real_launch(kernel, grid, block, *args)

    monkeypatch.setattr(gemm, "launch", recording)
    x = integers(rng, (2, 2, 6, 6), np.float32)
    w = integers(rng, (3, 2, 3, 3), np.float32)
    g = integers(rng, (2, 3, 4, 4), np.float32)
    wants = F.conv2d_backward(g, x, w, None)
    gots = F.conv2d_backward(to_dev(g), to_dev(x), to_dev(w), None)
    for got, want in zip(gots[:2], wants[:2]):
        np.testing.assert_array_equal(to_np(got), want)
    products = [(grid, block) for kernel, grid, block in launches if kernel is not gemm._add_splits]
    assert all(block > 1 for _, block in products)
    assert all(np.prod(grid) > 1 for grid, _ in products)
    assert any(kernel is gemm._add_splits for kernel, _, _ in launches), "the weight gradient was not split"


def test_the_input_gradient_reduces_over_no_term_that_the_stride_skips():
    """AlexNet's first layer (3 -> 96 channels, 11 x 11 taps at stride 4 on 227 x 227): its input gradient's product
    has rows (image, 57 x 57 phase positions), columns (16 phases, 3 channels) and a reduction over (96 output
    channels, 3 x 3 offsets), and its B takes every weight element of a column's channel exactly once."""
    geo = gemm.conv_geometry((2, 3, 1, 227, 227), (96, 3, 1, 11, 11), (2, 96, 1, 55, 55), (1, 4, 4), (0, 0, 0),
                             (1, 1, 1), 1)
    rows, cols, depth = gemm.grad_input_extent(geo)
    assert (rows, cols, depth) == (2 * 57 * 57, 16 * 3, 96 * 9)
    lookup = gemm.build_table(gemm.GRAD_INPUT, geo)[depth * gemm.TABLE_WIDTH:].reshape(depth, 16)
    # entries are o * (3 * 121) + tap, the element less the column's channel
    assert sorted(lookup[lookup >= 0]) == [o * 3 * 121 + tap for o in range(96) for tap in range(121)]


MAX_POOL_CASES = [
    # (ndim, shape, kernel, stride, padding, dilation, ceil_mode)
    (1, (2, 2, 9), 3, 2, 1, 1, False),
    (2, (1, 2, 7, 6), 3, 2, 0, 1, True),
    (2, (1, 1, 6, 7), (2, 3), 2, 1, (2, 1), False),
    (3, (1, 2, 4, 5, 5), 2, 2, 0, 1, True),
]
MAX_POOL = {1: (F.max_pool1d, F.max_pool1d_backward), 2: (F.max_pool2d, F.max_pool2d_backward),
            3: (F.max_pool3d, F.max_pool3d_backward)}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", MAX_POOL_CASES)
def test_max_pool_on_device_equals_cpu(case, dtype, rng):
    ndim, shape, kernel, stride, padding, dilation, ceil_mode = case
    keywords = dict(stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode)
    forward, backward = MAX_POOL[ndim]
    # ties (few distinct values) test the first-maximum rule, a NaN must win its windows
    x = integers(rng, shape, dtype, -2, 2)
    x.flat[rng.integers(x.size)] = np.nan
    want, want_indices = forward(x, kernel, return_indices=True, **keywords)
    got, got_indices = forward(to_dev(x), kernel, return_indices=True, **keywords)
    np.testing.assert_array_equal(to_np(got), want)
    np.testing.assert_array_equal(to_np(got_indices), want_indices)
    assert got_indices.dtype == np.int64
    g = integers(rng, want.shape, dtype)
    (want_grad,) = backward(g, x, kernel, indices=want_indices, **keywords)
    (got_grad,) = backward(to_dev(g), to_dev(x), kernel, indices=got_indices, **keywords)
    np.testing.assert_array_equal(to_np(got_grad), want_grad)
    (searched,) = backward(to_dev(g), to_dev(x), kernel, **keywords)
    np.testing.assert_array_equal(to_np(searched), want_grad)


AVG_POOL_CASES = [
    # (ndim, shape, kernel, stride, padding, ceil_mode, count_include_pad)
    (1, (2, 2, 9), 3, 2, 1, False, True),
    (2, (1, 2, 7, 6), 3, 2, 1, True, False),
    (2, (1, 1, 5, 5), 2, None, 0, True, True),
    (3, (1, 1, 3, 4, 5), (2, 2, 3), (1, 2, 2), (1, 0, 1), False, True),
]
AVG_POOL = {1: (F.avg_pool1d, F.avg_pool1d_backward), 2: (F.avg_pool2d, F.avg_pool2d_backward),
            3: (F.avg_pool3d, F.avg_pool3d_backward)}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", AVG_POOL_CASES)
def test_avg_pool_on_device_equals_cpu(case, dtype, rng):
    ndim, shape, kernel, stride, padding, ceil_mode, include = case
    keywords = dict(stride=stride, padding=padding, ceil_mode=ceil_mode, count_include_pad=include)
    forward, backward = AVG_POOL[ndim]
    x = rng.standard_normal(shape).astype(dtype)
    want = forward(x, kernel, **keywords)
    got = forward(to_dev(x), kernel, **keywords)
    np.testing.assert_allclose(to_np(got), want, **TOL[dtype])
    g = rng.standard_normal(want.shape).astype(dtype)
    np.testing.assert_allclose(to_np(backward(to_dev(g), to_dev(x), kernel, **keywords)[0]),
                               backward(g, x, kernel, **keywords)[0], **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_global_avg_pool_on_device_equals_cpu(dtype, rng):
    x = rng.standard_normal((2, 3, 4, 5)).astype(dtype)
    np.testing.assert_allclose(to_np(F.global_avg_pool(to_dev(x))), F.global_avg_pool(x), **TOL[dtype])
    g = rng.standard_normal((2, 3)).astype(dtype)
    np.testing.assert_allclose(to_np(F.global_avg_pool_backward(to_dev(g), to_dev(x))[0]),
                               F.global_avg_pool_backward(g, x)[0], **TOL[dtype])


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_on_device_equals_cpu(dtype, with_bias, rng):
    x = integers(rng, (2, 3, 5), dtype)
    w = integers(rng, (6, 5), dtype)
    b = integers(rng, (6,), dtype) if with_bias else None
    device_b = to_dev(b) if with_bias else None
    np.testing.assert_array_equal(to_np(F.linear(to_dev(x), to_dev(w), device_b)), F.linear(x, w, b))
    g = integers(rng, (2, 3, 6), dtype)
    gots = F.linear_backward(to_dev(g), to_dev(x), to_dev(w), device_b)
    for got, want in zip(gots, F.linear_backward(g, x, w, b)):
        if want is None:
            assert got is None
        else:
            np.testing.assert_array_equal(to_np(got), want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_on_device_equals_cpu(dtype, rng):
    x = integers(rng, (3, 7), dtype)
    x[0, 0] = np.nan
    np.testing.assert_array_equal(to_np(F.relu(to_dev(x))), F.relu(x))
    g = integers(rng, (3, 7), dtype)
    np.testing.assert_array_equal(to_np(F.relu_backward(to_dev(g), to_dev(x))[0]), F.relu_backward(g, x)[0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_on_device_draws_the_cpu_mask_from_the_same_seed(dtype, rng):
    x = rng.standard_normal((4, 6)).astype(dtype)
    want, want_mask = F.dropout(x, 0.25, rng=np.random.default_rng(7), return_mask=True)
    got, got_mask = F.dropout(to_dev(x), 0.25, rng=np.random.default_rng(7), return_mask=True)
    np.testing.assert_array_equal(to_np(got_mask), want_mask)
    np.testing.assert_array_equal(to_np(got), want)
    g = rng.standard_normal((4, 6)).astype(dtype)
    np.testing.assert_array_equal(to_np(F.dropout_backward(to_dev(g), got_mask, 0.25)[0]),
                                  F.dropout_backward(g, want_mask, 0.25)[0])
    same, mask = F.dropout(to_dev(x), 0.25, training=False, return_mask=True)
    np.testing.assert_array_equal(to_np(same), x)
    assert to_np(mask).all() and mask.dtype == np.bool_


@pytest.mark.parametrize("dtype", DTYPES)
def test_local_response_norm_on_device_equals_cpu(dtype, rng):
    x = rng.standard_normal((2, 5, 3, 2)).astype(dtype)
    keywords = dict(size=3, alpha=0.5, beta=0.75, k=2.0)
    np.testing.assert_allclose(to_np(F.local_response_norm(to_dev(x), **keywords)),
                               F.local_response_norm(x, **keywords), **TOL[dtype])
    g = rng.standard_normal(x.shape).astype(dtype)
    np.testing.assert_allclose(to_np(F.local_response_norm_backward(to_dev(g), to_dev(x), **keywords)[0]),
                               F.local_response_norm_backward(g, x, **keywords)[0], **TOL[dtype])


@pytest.mark.parametrize("label_dtype", [np.int64, np.int32])
@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_on_device_equals_cpu(dtype, label_dtype, rng):
    logits = (rng.standard_normal((5, 7)) * 4).astype(dtype)
    target = rng.integers(0, 7, size=5).astype(label_dtype)
    device_logits, device_target = to_dev(logits), to_dev(target)
    for reduction in ("mean", "sum"):
        got = F.cross_entropy(device_logits, device_target, reduction=reduction)
        want = F.cross_entropy(logits, target, reduction=reduction)
        assert isinstance(got, np.ndarray) and got.shape == () and got.dtype == dtype
        np.testing.assert_allclose(got, want, **TOL[dtype])
        grad, none = F.cross_entropy_backward(2.0, device_logits, device_target, reduction=reduction)
        assert none is None
        np.testing.assert_allclose(to_np(grad), F.cross_entropy_backward(2.0, logits, target, reduction=reduction)[0],
                                   **TOL[dtype])
    np.testing.assert_allclose(to_np(F.cross_entropy(device_logits, device_target, reduction="none")),
                               F.cross_entropy(logits, target, reduction="none"), **TOL[dtype])
    g = rng.standard_normal(5).astype(dtype)
    grad = F.cross_entropy_backward(to_dev(g), device_logits, device_target, reduction="none")[0]
    np.testing.assert_allclose(to_np(grad), F.cross_entropy_backward(g, logits, target, reduction="none")[0],
                               **TOL[dtype])
    scalar = to_dev(np.asarray(3.0))
    np.testing.assert_allclose(to_np(F.cross_entropy_backward(scalar, device_logits, device_target)[0]),
                               F.cross_entropy_backward(3.0, logits, target)[0], **TOL[dtype])
    # class weights, an ignored row and label smoothing: the labels come to the host once, the sums stay alike
    weight = rng.uniform(0.5, 2.0, 7).astype(dtype)
    on_device, on_host = dict(weight=to_dev(weight), label_smoothing=0.2), dict(weight=weight, label_smoothing=0.2)
    target[1] = -100
    np.testing.assert_allclose(F.cross_entropy(device_logits, to_dev(target), **on_device),
                               F.cross_entropy(logits, target, **on_host), **TOL[dtype])
    np.testing.assert_allclose(to_np(F.cross_entropy_backward(2.0, device_logits, to_dev(target), **on_device)[0]),
                               F.cross_entropy_backward(2.0, logits, target, **on_host)[0], **TOL[dtype])


def test_strided_device_arrays_are_copied_on_the_device(rng):
    big = integers(rng, (2, 4, 6, 10), np.float32)
    w = integers(rng, (3, 2, 3, 3), np.float32)
    view = big[:, ::2, :, ::2]
    device_view = to_dev(big)[:, ::2, :, ::2]
    assert not device_view.is_c_contiguous()
    np.testing.assert_array_equal(to_np(F.conv2d(device_view, to_dev(w), padding=1)), F.conv2d(view, w, padding=1))
    np.testing.assert_array_equal(to_np(F.relu(device_view)), F.relu(view))


@pytest.mark.parametrize("window", [(1, 1, 3), (1, 1, 2)], ids=["scatter", "tiles"])
def test_max_pool_backward_kernels_count_and_skip_each_index_outside_its_plane(window, rng):
    """Both backends' kernels (the CPU's both versions) return exactly how many indices lie outside their plane, and
    scatter the others: also where the windows tile the plane (2 of stride 2 over 12 inputs, for 5 outputs), whose
    route writes each input once and scatters a plane where an index lies outside its window."""
    plane = 12
    grads = integers(rng, (2, 3, 1, 1, 5), np.float64)
    indices = rng.integers(0, plane, size=grads.shape)
    for position, bad in ((0, -1), (7, plane), (13, -plane - 5), (29, plane + 7)):
        indices.reshape(-1)[position] = bad
    want = np.zeros((2, 3, plane))
    for (n, c, _, _, k), index in np.ndenumerate(indices):
        if 0 <= index < plane:
            want[n, c, index] += grads[n, c, 0, 0, k]
    for version in ("serial", "parallel"):
        got = np.full((2, 3, 1, 1, plane), np.nan)
        with every_call(version):
            assert cpu_kernels.pool.max_pool_backward(grads, indices, got, window, window, (0, 0, 0), (1, 1, 1)) == 4
        np.testing.assert_array_equal(got.reshape(want.shape), want)
    on_device = to_dev(np.full((2, 3, 1, 1, plane), np.nan))
    assert pool.max_pool_backward(to_dev(grads), to_dev(indices), on_device, window, window, (0, 0, 0), (1, 1, 1)) == 4
    np.testing.assert_array_equal(to_np(on_device).reshape(want.shape), want)


def test_device_validation_reports_what_the_cpu_reports(rng):
    logits = rng.standard_normal((4, 3))
    bad = np.array([0, 2, 5, 1])
    for target in (bad, to_dev(bad)):
        arrays = (logits, target) if isinstance(target, np.ndarray) else (to_dev(logits), target)
        with pytest.raises(ValueError, match=r"target labels must lie in \[0, 3\) or equal ignore_index=-100, got 5"):
            F.cross_entropy(*arrays)
    x = rng.standard_normal((1, 1, 4, 4))
    g = rng.standard_normal((1, 1, 2, 2))
    for bad, low, high in ((16, 0, 16), (-1, -1, 3)):
        indices = np.array([[[[0, 3], [bad, 2]]]])
        message = rf"indices must lie in \[0, 16\) \(flat within each plane\), got values from {low} to {high}"
        with pytest.raises(ValueError, match=message):
            F.max_pool2d_backward(g, x, 2, indices=indices)
        with pytest.raises(ValueError, match=message):
            F.max_pool2d_backward(to_dev(g), to_dev(x), 2, indices=to_dev(indices))
    with pytest.raises(TypeError, match="must be float32 or float64, got dtype int64"):
        F.relu(to_dev(np.arange(3)))
    with pytest.raises(ValueError, match=r"weight must have 4 dimensions, got shape \(2, 3\)"):
        F.conv2d(to_dev(x), to_dev(np.zeros((2, 3))))


def test_mixing_host_and_device_arrays_is_a_type_error(rng):
    x = rng.standard_normal((1, 2, 5, 5))
    w = rng.standard_normal((3, 2, 3, 3))
    with pytest.raises(TypeError, match="mixed"):
        F.conv2d(to_dev(x), w)
    with pytest.raises(TypeError, match="mixed"):
        F.linear(rng.standard_normal((2, 3)), to_dev(rng.standard_normal((4, 3))))
    out, mask = F.dropout(x, rng=np.random.default_rng(0), return_mask=True)
    with pytest.raises(TypeError, match="mixed"):
        F.dropout_backward(to_dev(out), mask)
    with pytest.raises(TypeError, match="mixed"):
        F.cross_entropy(to_dev(rng.standard_normal((2, 3))), np.array([0, 1]))
    with pytest.raises(TypeError, match="mixed"):
        F.max_pool2d_backward(to_dev(np.zeros((1, 2, 2, 2))), to_dev(x), 2, indices=np.zeros((1, 2, 2, 2), np.int64))


# --- the backend -----------------------------------------------------------------------------------------------------


def test_device_arrays_are_recognised_without_their_interface():
    device = cuda.to_device(np.zeros(3))
    assert backend.is_device_array(device) and backend.backend_of(device, None) == "cuda"

    class Interface:
        __cuda_array_interface__ = {"shape": (1,), "typestr": "<f4", "data": (0, False), "version": 3}

    assert backend.is_device_array(Interface())
    for host in (np.zeros(3), [1.0, 2.0], 3.0, None):
        assert not backend.is_device_array(host)
    assert backend.backend_of(np.zeros(1), None) == "cpu"


def test_numpy_inputs_never_load_the_cuda_target():
    import subprocess

    code = ("import sys, numpy as np; import numconv.functional as F; F.relu(np.ones(3)); "
            "F.conv1d(np.ones((1, 1, 5)), np.ones((1, 1, 3))); assert 'numba.cuda' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_moving_arrays_between_host_and_device():
    host = np.arange(6.0).reshape(2, 3)
    device = backend.to_device(host)
    assert backend.is_device_array(device)
    assert backend.to_device(device) is device
    np.testing.assert_array_equal(backend.to_host(device), host)
    assert backend.to_host(host) is host
    assert backend.to_host(None) is None and backend.to_device(None) is None
    strided = backend.to_device(host[:, ::2])
    np.testing.assert_array_equal(backend.to_host(strided), host[:, ::2])
    empty = backend.empty((2, 3), np.float32, "cuda")
    assert backend.is_device_array(empty) and tuple(empty.shape) == (2, 3) and empty.dtype == np.float32
    zeros = backend.zeros(4, np.float64, "cuda")
    np.testing.assert_array_equal(backend.to_host(zeros), np.zeros(4))
    assert backend.kernels("cuda") is cuda_kernels


def test_kernels_cuda_explains_a_missing_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba.cuda", None)
    with pytest.raises(RuntimeError, match="needs the numba-cuda package"):
        backend.kernels("cuda")


def test_kernels_cuda_explains_a_missing_gpu(monkeypatch):
    monkeypatch.setattr(cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="found no usable CUDA GPU.*NUMBA_ENABLE_CUDASIM=1"):
        backend.kernels("cuda")
    with pytest.raises(RuntimeError, match="found no usable CUDA GPU"):
        F.relu(cuda.to_device(np.zeros(3)))
    assert backend.kernels("cpu") is cpu_kernels


def _load_cuda_target(prelude: str):
    """``backend.check_cuda_target()`` in a process of its own without the simulator (the real CUDA target, which
    loads without a GPU), after ``prelude``."""
    import os
    import subprocess

    environment = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    program = prelude + "\nfrom numconv import backend\nbackend.check_cuda_target()\nprint('loaded')\n"
    return subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=environment,
                          timeout=300)


def test_the_cuda_target_loads_with_this_numpy():
    run = _load_cuda_target("")
    assert run.returncode == 0 and run.stdout.strip() == "loaded", run.stderr[-2000:]


def test_a_numpy_the_cuda_target_cannot_load_with_is_named_before_any_launch():
    # NumPy 2.5 without np.row_stack, which numba-cuda 0.30.4 registers: its AttributeError must not escape raw
    run = _load_cuda_target("import numpy\ndel numpy.row_stack")
    if run.returncode == 0:  # a numba-cuda that no longer needs it
        assert run.stdout.strip() == "loaded"
        return
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("RuntimeError: numba-cuda ") and "cannot run with NumPy" in last, run.stderr[-2000:]
    assert "row_stack" in last and "pip install 'numconv[cuda]'" in last


def test_a_cuda_target_that_fails_to_load_raises_a_runtime_error(monkeypatch):
    import importlib

    real = importlib.import_module

    def failing(name, *args):
        if name == "numba.cuda.cudaimpl":
            raise AttributeError("module 'numpy' has no attribute 'row_stack'")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", failing)
    monkeypatch.setattr(support, "simulated", lambda: False)  # the real target's path (the simulator has none)
    with pytest.raises(RuntimeError, match=r"cannot run with NumPy .*row_stack.*numconv\[cuda\]"):
        backend.check_cuda_target()


def test_the_simulator_has_no_cuda_target_to_load(monkeypatch):
    import importlib

    real = importlib.import_module
    imported = []
    monkeypatch.setattr(importlib, "import_module", lambda name, *args: imported.append(name) or real(name, *args))
    monkeypatch.setattr(support, "simulated", lambda: True)
    monkeypatch.setattr(backend, "_target_checked", False)
    backend.check_cuda_target()
    assert "numba.cuda.cudaimpl" not in imported and backend._target_checked is True


def test_simulated_launches_restore_the_switch_interval():
    if not support.simulated():
        pytest.skip("only the simulator changes the switch interval")
    before = sys.getswitchinterval()
    pool.global_avg_pool_forward(cuda.to_device(np.ones((1, 2, 3))), cuda.device_array((1, 2)))
    assert sys.getswitchinterval() == before


def test_invalid_tiles_are_reported(monkeypatch):
    monkeypatch.setattr(config, "GEMM_TILE", (4, 4, 4, 3, 2))
    with pytest.raises(ValueError, match="GEMM tile"):
        F.linear(to_dev(np.ones((2, 3))), to_dev(np.ones((5, 3))))
    monkeypatch.setattr(config, "REDUCE_THREADS", 6)
    with pytest.raises(ValueError, match="power of two"):
        F.global_avg_pool(to_dev(np.ones((1, 2, 3))))


class _SlowEmpty:
    """NumPy, except that ``empty`` first sleeps: a thread switch inside the simulator's shared-array lookup, every
    time, where an unguarded lookup would hand each thread of a block its own array."""

    def __getattr__(self, name):
        return getattr(np, name)

    def empty(self, *args, **kwargs):
        time.sleep(0.002)
        return np.empty(*args, **kwargs)


if AVAILABLE:
    @cuda.jit
    def _block_sum(out):
        values = cuda.shared.array(16, np.float64)
        tid = cuda.threadIdx.x
        values[tid] = tid + 1
        cuda.syncthreads()
        if tid == 0:
            total = 0.0
            for i in range(16):
                total += values[i]
            out[cuda.blockIdx.x] = total


def test_simulated_threads_of_a_block_share_one_array(monkeypatch):
    if not support.simulated():
        pytest.skip("a guard on the simulator's shared-array lookup; a GPU has real shared memory")
    from numba.cuda.simulator import kernelapi

    assert getattr(kernelapi.FakeCUDAShared.array, "locked", False), "the simulator's lookup was not replaced"
    monkeypatch.setattr(support, "np", _SlowEmpty())
    out = np.zeros(2)
    _block_sum[2, 16](out)
    assert out.tolist() == [136.0, 136.0]


def _pause_for(tid):
    """Later threads write later: a barrier that let a thread past before the others had written would read
    unwritten shared memory (the simulator runs kernels as Python, so a kernel may call this)."""
    time.sleep(0.002 * tid)


if AVAILABLE:
    @cuda.jit
    def _mirrored_sums(out):
        values = cuda.shared.array(8, np.float64)
        tid = cuda.threadIdx.x
        if tid == 0:
            return
        _pause_for(tid)
        values[tid] = tid
        cuda.syncthreads()
        out[tid] = values[tid] + values[8 - tid]

    @cuda.jit
    def _failing_thread(out):
        tid = cuda.threadIdx.x
        if tid == 2:
            out[out.shape[0]] = 1.0
        cuda.syncthreads()
        out[tid] = tid


def test_simulated_blocks_synchronise_every_running_thread():
    """Thread 0 returns at once; the others meet at syncthreads only once all of them have written."""
    if not support.simulated():
        pytest.skip("the simulator's barrier; a GPU has its own")
    out = np.zeros(8)
    _mirrored_sums[1, 8](out)
    assert out.tolist() == [0.0] + [8.0] * 7


def test_an_error_in_one_simulated_thread_is_raised_by_the_launch():
    if not support.simulated():
        pytest.skip("the simulator's barrier; a GPU has its own")
    with pytest.raises(IndexError):
        _failing_thread[1, 4](np.zeros(4))


def test_the_simulated_barrier_counts_only_threads_still_running():
    block = support._SimulatedBlock(3)
    passed = []

    def member(name):
        block.synchronise()
        passed.append(name)

    members = [threading.Thread(target=member, args=(name,), daemon=True) for name in "ab"]
    for thread in members:
        thread.start()
    time.sleep(0.05)
    assert passed == [], "released before the third thread arrived or returned"
    block.leave()
    for thread in members:
        thread.join(timeout=5)
    assert sorted(passed) == ["a", "b"]


def _same_non_finite(got, want):
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want))
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-12)


# the simulator multiplies NumPy scalars, which warn at inf * 0 where a GPU gives its NaN silently
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_non_finite_values_follow_the_cpu_and_pytorch_rules(rng):
    """The CPU's NaN and infinity semantics (PyTorch's, tests/test_nonfinite.py) hold on the device."""
    x = rng.standard_normal((1, 2, 5, 5))
    x[0, 0, 0, 0] = x[0, 0, 0, 1] = np.nan  # two NaNs in one window: the last wins
    x[0, 1, 2, 2] = np.inf
    out, indices = F.max_pool2d(x, 2, return_indices=True)
    dev_out, dev_indices = F.max_pool2d(to_dev(x), 2, return_indices=True)
    _same_non_finite(to_np(dev_out), out)
    np.testing.assert_array_equal(to_np(dev_indices), indices)
    grad = rng.standard_normal(x.shape)
    relu_x = np.array([np.nan, -1.0, 0.0, 2.0, np.inf, -np.inf])
    _same_non_finite(to_np(F.relu_backward(to_dev(grad.reshape(-1)[:6]), to_dev(relu_x))[0]),
                     F.relu_backward(grad.reshape(-1)[:6], relu_x)[0])
    mask = np.array([True, False, True, False, False, True])
    _same_non_finite(to_np(F.dropout_backward(to_dev(relu_x), to_dev(mask), 0.5)[0]),
                     F.dropout_backward(relu_x, mask, 0.5)[0])
    # a NaN weight reaches only the inputs its tap covers through existing outputs
    w = rng.standard_normal((2, 2, 3, 3))
    w[1, 0, 0, 0] = np.nan
    y = rng.standard_normal((1, 2, 3, 3))
    want = F.conv2d_backward(y, x, w, stride=2, padding=1)[0]
    _same_non_finite(to_np(F.conv2d_backward(to_dev(y), to_dev(x), to_dev(w), stride=2, padding=1)[0]), want)
    assert np.isfinite(want).any() and np.isnan(want).any()
    # an infinite output gradient reaches only the inputs under its window: a stride longer than the window leaves
    # the inputs between windows, a phase without taps, at zero
    y = rng.standard_normal((1, 2, 2, 2))
    y[0, 0, 0, 0] = np.inf
    w = rng.standard_normal((2, 2, 2, 2))
    want = F.conv2d_backward(y, x, w, stride=3)[0]
    _same_non_finite(to_np(F.conv2d_backward(to_dev(y), to_dev(x), to_dev(w), stride=3)[0]), want)
    assert np.isinf(want).any() and (want[:, :, 2] == 0).all()
