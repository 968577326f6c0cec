"""NaN, +Inf and -Inf: every public op, forward and backward, against PyTorch's CPU operators.

Each row puts non-finite values in one argument (the input, the weights, or the gradient from above) of one op and
asserts that numconv gives PyTorch's results: the same NaN positions, the same infinities with the same signs, the
same max-pooling indices, and the finite values equal to 1e-9 (float64).
"""
import numpy as np
import pytest

import numconv.functional as F
from numconv.kernels.cpu import conv as cpu_conv
from numconv.kernels.cpu import conv_layout, tuning

torch = pytest.importorskip("torch")
TF = torch.nn.functional

PATTERNS = {"nan": [np.nan] * 3, "+inf": [np.inf] * 3, "-inf": [-np.inf] * 3, "mixed": [np.nan, np.inf, -np.inf]}


def _poison(array, pattern, rng):
    """A copy of ``array`` with the pattern's values at three places: the first element, one inside, one random."""
    poisoned = array.copy()
    flat = poisoned.reshape(-1)
    places = [0, flat.size // 2 + 1, int(rng.integers(flat.size))]
    for place, value in zip(places, PATTERNS[pattern]):
        flat[place] = value
    return poisoned


def _torch_run(function, arrays, grad_output):
    """PyTorch's outputs of ``function`` and the gradients of sum(grad_output * output) for every array."""
    tensors = [None if a is None else torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    outputs = function(*tensors)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    outputs[0].backward(torch.tensor(grad_output))
    grads = [None if t is None or not t.requires_grad else t.grad.numpy() for t in tensors]
    return [o.detach().numpy() for o in outputs], grads


def _assert_same(got, want, label):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, label
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{label}: NaN positions")
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want), err_msg=f"{label}: +Inf positions")
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want), err_msg=f"{label}: -Inf positions")
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-9, atol=1e-9, err_msg=label)


# name -> (numconv forward, numconv backward, torch function, shapes of the array arguments, keywords)
def _conv(n):
    return (getattr(F, f"conv{n}d"), getattr(F, f"conv{n}d_backward"), getattr(TF, f"conv{n}d"))


OPS = {
    "conv1d": (*_conv(1), [(2, 3, 15), (4, 3, 3), (4,)], dict(stride=2, padding=1)),
    "conv2d": (*_conv(2), [(2, 3, 9, 8), (4, 3, 3, 3), (4,)], dict(padding=1)),
    # Winograd's 1D layers (SETTINGS: its channel and tile thresholds lowered to this layer's 32 and 20), two blocks
    # of output channels
    "conv1d winograd": (*_conv(1), [(2, 32, 20), (32, 32, 3), (32,)], dict(padding=1)),
    # Winograd's layers with the fewest output tiles it takes for a weight transformed in the call, as here
    # (tuning.WINOGRAD_UNFROZEN_MIN_TILES: 64 of 2 x 2)
    "conv2d winograd": (*_conv(2), [(4, 32, 8, 8), (32, 32, 3, 3), (32,)], dict(padding=1)),
    # ... and its 5 x 5 layers (four sub-windows; tuning.WINOGRAD_WIDE_UNFROZEN_MIN_TILES: 512 on Intel's AVX-512
    # CPUs, 64 elsewhere)
    "conv2d 5x5 winograd": (*_conv(2), [(2, 32, 32, 32), (32, 32, 5, 5), (32,)], dict(padding=2)),
    # ... and its weight gradient's (tuning.WINOGRAD_WEIGHT_MIN_CHANNELS, WINOGRAD_WEIGHT_MIN_TILES: 128, 32 tiles)
    "conv2d winograd weight gradient": (*_conv(2), [(2, 128, 8, 8), (128, 128, 3, 3), (128,)], dict(padding=1)),
    # Winograd over the phase planes (tuning.PHASE_WINOGRAD_*: 48 output channels, 32 x 32 tiles)
    "conv2d strided winograd": (*_conv(2), [(1, 3, 259, 259), (48, 3, 11, 11), (48,)], dict(stride=4, padding=1)),
    "conv2d grouped": (*_conv(2), [(1, 4, 7, 7), (6, 2, 3, 3), (6,)], dict(stride=2, groups=2)),
    # a 1 x 1 layer over packed panels (``packed.py``; SETTINGS), its plane's last block partial
    "conv2d 1x1 packed": (*_conv(2), [(2, 3, 9, 9), (4, 3, 1, 1), (4,)], {}),
    "conv3d": (*_conv(3), [(1, 2, 5, 6, 6), (3, 2, 3, 3, 3), (3,)], dict(padding=(1, 0, 1))),
    "conv3d winograd": (*_conv(3), [(1, 16, 4, 8, 8), (32, 16, 3, 3, 3), (32,)], dict(padding=1)),
    "linear": (F.linear, F.linear_backward, TF.linear, [(5, 7), (4, 7), (4,)], {}),
    "avg_pool2d": (F.avg_pool2d, F.avg_pool2d_backward, TF.avg_pool2d, [(2, 3, 7, 7)],
                   dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
    "avg_pool1d": (F.avg_pool1d, F.avg_pool1d_backward, TF.avg_pool1d, [(2, 3, 11)], dict(kernel_size=3)),
    "avg_pool3d": (F.avg_pool3d, F.avg_pool3d_backward, TF.avg_pool3d, [(1, 2, 4, 5, 5)],
                   dict(kernel_size=2, ceil_mode=True)),
    "global_avg_pool": (F.global_avg_pool, F.global_avg_pool_backward, lambda x: x.mean(dim=(2, 3)),
                        [(2, 3, 5, 4)], {}),
    "relu": (F.relu, F.relu_backward, torch.relu, [(3, 10)], {}),
    "local_response_norm": (F.local_response_norm, F.local_response_norm_backward, TF.local_response_norm,
                            [(2, 7, 3, 3)], dict(size=5, alpha=1e-2, beta=0.75, k=2.0)),
}


def test_inputs_that_only_the_phase_planes_zero_taps_read_stay_out_of_the_output():
    """A strided layer run over its phase planes (6 taps at stride 4: 8 phase taps, the last two zero weights) reads
    the inputs past its last window with those zero taps: an infinity there must not make a NaN."""
    # rows of 64 outputs: long enough that every CPU's estimates take the phases (with 16 outputs, not where
    # unaligned loads cost two, ``tuning.UNALIGNED_ROWS``)
    x = np.ones((2, 1, 260), np.float32)
    x[:, :, 258:] = [np.inf, np.nan]  # past the last window (outputs read x[4t: 4t + 6], t < 64)
    w = np.ones((8, 1, 6), np.float32)
    layout = conv_layout.forward_layout((2, 1, 1, 1, 260), (8, 1, 1, 1, 6), (1, 1, 64), (1, 1, 4), (0, 0, 0),
                                        (1, 1, 1), 1)
    assert cpu_conv._use_phases(layout, (2, 1, 1, 1, 260), (8, 1, 1, 1, 6), (0, 0, 0), cpu_conv._AUTOMATIC)
    np.testing.assert_array_equal(F.conv1d(x, w, stride=4), np.full((2, 8, 64), 6.0, np.float32))


#: the thresholds a row sets so that the automatic choice takes the kernel it names on every CPU (Intel's AVX-512 CPUs
#: leave the Winograd weight gradient to the direct kernel: ``tuning.WINOGRAD_WEIGHT_MIN_CHANNELS``; only they take
#: the packed panels, and for more channels: ``tuning.PACKED_MIN_COLUMNS``)
SETTINGS = {"conv1d winograd": {"WINOGRAD_ROW_MIN_CHANNELS": 32, "WINOGRAD_ROW_MIN_TILES": 20},
            "conv2d winograd weight gradient": {"WINOGRAD_WEIGHT_MIN_CHANNELS": 128},
            "conv2d 1x1 packed": {"PACKED_MIN_COLUMNS": 1, "PACKED_MIN_COLUMNS_ALIASED": 1}}


def _rows():
    for name, (_, _, _, shapes, _) in OPS.items():
        for argument in range(len(shapes)):
            for pattern in PATTERNS:
                yield name, argument, pattern
        for pattern in PATTERNS:
            yield name, "grad_output", pattern


@pytest.mark.parametrize("name,argument,pattern", list(_rows()))
def test_op_with_non_finite_values_matches_torch(name, argument, pattern, rng, monkeypatch):
    forward, backward, reference, shapes, keywords = OPS[name]
    for setting, value in SETTINGS.get(name, {}).items():
        monkeypatch.setattr(tuning, setting, value)
    arrays = [rng.standard_normal(shape) for shape in shapes]
    if argument != "grad_output":
        arrays[argument] = _poison(arrays[argument], pattern, rng)
    out = forward(*arrays, **keywords)
    grad_output = rng.standard_normal(np.shape(out))
    if argument == "grad_output":
        grad_output = _poison(grad_output, pattern, rng)
    (want,), want_grads = _torch_run(lambda *t: reference(*t, **keywords), arrays, grad_output)
    _assert_same(out, want, "output")
    if name == "relu":  # numconv's relu_backward takes the forward's output (its input's sign), as the layer does
        got_grads = backward(grad_output, out)
    else:
        got_grads = backward(grad_output, *arrays, **keywords)
    for index, (got, expected) in enumerate(zip(got_grads, want_grads)):
        _assert_same(got, expected, f"gradient of argument {index}")


@pytest.mark.parametrize("name", [name for name in OPS if name.startswith("conv")])
@pytest.mark.parametrize("argument", [0, 1])
@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_a_convolution_with_its_relu_fused_is_torchs_relu_of_it(name, argument, pattern, rng, monkeypatch):
    """relu=True gives PyTorch's relu(conv(...)) with non-finite inputs or weights too: NaN stays NaN, +inf stays,
    -inf becomes 0."""
    forward, _, reference, shapes, keywords = OPS[name]
    for setting, value in SETTINGS.get(name, {}).items():
        monkeypatch.setattr(tuning, setting, value)
    arrays = [rng.standard_normal(shape) for shape in shapes]
    arrays[argument] = _poison(arrays[argument], pattern, rng)
    want = torch.relu(reference(*(torch.tensor(a) for a in arrays), **keywords)).numpy()
    _assert_same(forward(*arrays, relu=True, **keywords), want, "output")
    assert (want == 0).any() or not np.isfinite(want).any()  # a NaN weight in every output channel: NaN alone


@pytest.mark.parametrize("ndim,shape,keywords", [
    (1, (2, 3, 12), dict(kernel_size=4, stride=3)),
    (2, (2, 3, 7, 7), dict(kernel_size=3, stride=2, padding=1)),
    (3, (1, 2, 4, 5, 5), dict(kernel_size=2, stride=2, ceil_mode=True)),
])
@pytest.mark.parametrize("pattern", list(PATTERNS))
@pytest.mark.parametrize("where", ["input", "grad_output"])
def test_max_pool_with_non_finite_values_matches_torch(ndim, shape, keywords, pattern, where, rng):
    x = rng.standard_normal(shape)
    if where == "input":
        x = _poison(x, pattern, rng)
        # two NaNs in one window: PyTorch takes the last, and so must numconv
        x.reshape(-1)[1] = x.reshape(-1)[0]
    out, indices = getattr(F, f"max_pool{ndim}d")(x, return_indices=True, **keywords)
    grad_output = rng.standard_normal(out.shape)
    if where == "grad_output":
        grad_output = _poison(grad_output, pattern, rng)
    (want, want_indices), (want_grad,) = _torch_run(
        lambda t: getattr(TF, f"max_pool{ndim}d")(t, return_indices=True, **keywords), [x], grad_output)
    _assert_same(out, want, "output")
    np.testing.assert_array_equal(indices, want_indices)
    (grad,) = getattr(F, f"max_pool{ndim}d_backward")(grad_output, x, indices=indices, **keywords)
    _assert_same(grad, want_grad, "gradient")


@pytest.mark.parametrize("pattern", list(PATTERNS))
@pytest.mark.parametrize("where", ["input", "grad_output"])
def test_dropout_with_non_finite_values_matches_torch(pattern, where, rng):
    x = rng.standard_normal((4, 6))
    grad_output = rng.standard_normal((4, 6))
    if where == "input":
        x = _poison(x, pattern, rng)
    else:
        grad_output = _poison(grad_output, pattern, rng)
    out, mask = F.dropout(x, 0.4, rng=np.random.default_rng(3), return_mask=True)
    # PyTorch's dropout is input * mask * scale and its backward grad * mask * scale: NaN stays NaN where dropped
    scale = 1 / (1 - 0.4)
    _assert_same(out, torch.ops.aten.native_dropout_backward(torch.tensor(x), torch.tensor(mask), scale), "output")
    _assert_same(F.dropout_backward(grad_output, mask, 0.4)[0],
                 torch.ops.aten.native_dropout_backward(torch.tensor(grad_output), torch.tensor(mask), scale),
                 "gradient")


@pytest.mark.parametrize("pattern", list(PATTERNS))
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_cross_entropy_with_non_finite_logits_matches_torch(pattern, reduction, rng):
    logits = _poison(rng.standard_normal((6, 5)), pattern, rng)
    logits[3, 2] = PATTERNS[pattern][0]  # one on the target of row 3
    target = np.array([1, 0, 4, 2, 3, 0])
    loss = F.cross_entropy(logits, target, reduction=reduction)
    grad_output = rng.standard_normal(6) if reduction == "none" else np.float64(1.0)
    (want,), (want_grad, _) = _torch_run(lambda t, y: TF.cross_entropy(t, y, reduction=reduction),
                                         [logits, target], grad_output)
    _assert_same(loss, want, "loss")
    _assert_same(F.cross_entropy_backward(grad_output, logits, target, reduction=reduction)[0], want_grad,
                 "gradient")
