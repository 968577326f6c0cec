"""Cross-checks against PyTorch's CPU operators (skipped where torch is not installed)."""
import numpy as np
import pytest

import numconv.functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional


def _grads(function, arrays, grad_output):
    """PyTorch's gradients of sum(grad_output * function(*arrays)) with respect to every non-None array."""
    tensors = [None if a is None else torch.tensor(a, requires_grad=True) for a in arrays]
    out = function(*tensors)
    out.backward(torch.tensor(grad_output))
    return out.detach().numpy(), [None if t is None else t.grad.numpy() for t in tensors]


CONV_CASES = [
    (1, dict(stride=4), (2, 1, 64), (4, 1, 9), True),
    (1, dict(padding="same", dilation=2), (2, 3, 20), (4, 3, 4), False),
    (2, dict(stride=2, padding=(1, 2), dilation=(2, 1)), (2, 3, 13, 12), (4, 3, 3, 3), True),
    (2, dict(padding=2, groups=2), (1, 8, 9, 9), (6, 4, 5, 5), True),
    (3, dict(stride=(1, 2, 2), padding=1), (1, 2, 5, 8, 8), (3, 2, 3, 3, 3), True),
]


@pytest.mark.parametrize("ndim,kwargs,x_shape,w_shape,with_bias", CONV_CASES)
def test_conv_matches_torch(ndim, kwargs, x_shape, w_shape, with_bias, rng):
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0]) if with_bias else None
    ours = getattr(F, f"conv{ndim}d")(x, w, b, **kwargs)
    g = rng.standard_normal(ours.shape)
    want, want_grads = _grads(lambda *t: getattr(TF, f"conv{ndim}d")(*t, **kwargs), (x, w, b), g)
    np.testing.assert_allclose(ours, want, rtol=1e-10, atol=1e-10)
    got_grads = getattr(F, f"conv{ndim}d_backward")(g, x, w, b, **kwargs)
    for got, expected in zip(got_grads, want_grads):
        if expected is None:
            assert got is None
        else:
            np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)


POOL_CASES = [
    (1, dict(kernel_size=4, stride=4), (2, 3, 33)),
    (2, dict(kernel_size=3, stride=2), (2, 4, 13, 13)),
    (2, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), (1, 2, 10, 11)),
    (2, dict(kernel_size=(2, 3), stride=(1, 2), dilation=(2, 1)), (1, 2, 7, 9)),
    (3, dict(kernel_size=2, stride=2, ceil_mode=True), (1, 2, 5, 7, 6)),
]


@pytest.mark.parametrize("ndim,kwargs,shape", POOL_CASES)
def test_max_pool_matches_torch_with_indices(ndim, kwargs, shape, rng):
    x = rng.standard_normal(shape)
    ours, indices = getattr(F, f"max_pool{ndim}d")(x, return_indices=True, **kwargs)
    want, want_indices = getattr(TF, f"max_pool{ndim}d")(torch.tensor(x), return_indices=True, **kwargs)
    np.testing.assert_array_equal(ours, want.numpy())
    np.testing.assert_array_equal(indices, want_indices.numpy())
    g = rng.standard_normal(ours.shape)
    _, (want_grad,) = _grads(lambda t: getattr(TF, f"max_pool{ndim}d")(t, **kwargs), (x,), g)
    (got,) = getattr(F, f"max_pool{ndim}d_backward")(g, x, **kwargs)
    np.testing.assert_allclose(got, want_grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("ndim,kwargs,shape", [c for c in POOL_CASES if "dilation" not in c[1]])
def test_avg_pool_matches_torch(ndim, kwargs, shape, count_include_pad, rng):
    x = rng.standard_normal(shape)
    ours = getattr(F, f"avg_pool{ndim}d")(x, count_include_pad=count_include_pad, **kwargs)
    g = rng.standard_normal(ours.shape)
    want, (want_grad,) = _grads(
        lambda t: getattr(TF, f"avg_pool{ndim}d")(t, count_include_pad=count_include_pad, **kwargs), (x,), g)
    np.testing.assert_allclose(ours, want, rtol=1e-12, atol=1e-12)
    (got,) = getattr(F, f"avg_pool{ndim}d_backward")(g, x, count_include_pad=count_include_pad, **kwargs)
    np.testing.assert_allclose(got, want_grad, rtol=1e-12, atol=1e-12)


def test_local_response_norm_matches_torch_with_alexnet_constants(rng):
    x = rng.standard_normal((2, 8, 5, 5)) * 10
    ours = F.local_response_norm(x, size=5, alpha=1e-4, beta=0.75, k=2.0)
    g = rng.standard_normal(x.shape)
    want, (want_grad,) = _grads(lambda t: TF.local_response_norm(t, 5, 1e-4, 0.75, 2.0), (x,), g)
    np.testing.assert_allclose(ours, want, rtol=1e-12)
    (got,) = F.local_response_norm_backward(g, x, size=5, alpha=1e-4, beta=0.75, k=2.0)
    np.testing.assert_allclose(got, want_grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("options", [
    {}, {"weight": True}, {"ignore_index": 3}, {"label_smoothing": 0.3}, {"ignore_index": -100, "ignored_rows": 2},
    {"weight": True, "ignore_index": 3, "label_smoothing": 0.1, "ignored_rows": 1},
])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_torch(reduction, options, rng):
    """PyTorch's class weights, ignore_index (a class, or the default -100 on some rows) and label smoothing;
    'mean' divides by the ignored rows' complement's weights."""
    logits = rng.standard_normal((6, 7)) * 4
    target = rng.integers(0, 7, 6)
    target[:2] = 3  # rows a class-valued ignore_index drops
    keywords = {key: value for key, value in options.items() if key in ("ignore_index", "label_smoothing")}
    if options.get("weight"):
        keywords["weight"] = rng.uniform(0.2, 3.0, 7)
    target[2:2 + options.get("ignored_rows", 0)] = keywords.get("ignore_index", -100)
    ours = F.cross_entropy(logits, target, reduction=reduction, **keywords)
    t_logits = torch.tensor(logits, requires_grad=True)
    t_keywords = {key: torch.tensor(value) if key == "weight" else value for key, value in keywords.items()}
    want = TF.cross_entropy(t_logits, torch.tensor(target), reduction=reduction, **t_keywords)
    g = rng.standard_normal(want.shape)
    want.backward(torch.tensor(g))
    np.testing.assert_allclose(ours, want.detach().numpy(), rtol=1e-12, atol=1e-15)
    grad, _ = F.cross_entropy_backward(g, logits, target, reduction=reduction, **keywords)
    np.testing.assert_allclose(grad, t_logits.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_cross_entropy_of_only_ignored_rows_is_nan_as_in_torch():
    logits, target = np.zeros((2, 3)), np.array([-100, -100])
    assert np.isnan(F.cross_entropy(logits, target))
    assert torch.isnan(TF.cross_entropy(torch.tensor(logits), torch.tensor(target)))
    np.testing.assert_array_equal(F.cross_entropy(logits, target, reduction="none"), [0.0, 0.0])


def test_linear_and_relu_match_torch(rng):
    x, w, b = rng.standard_normal((4, 6)), rng.standard_normal((3, 6)), rng.standard_normal(3)
    g = rng.standard_normal((4, 3))
    want, want_grads = _grads(lambda *t: TF.relu(TF.linear(*t)), (x, w, b), g)
    hidden = F.linear(x, w, b)
    np.testing.assert_allclose(F.relu(hidden), want, rtol=1e-12)
    (grad_hidden,) = F.relu_backward(g, hidden)
    for got, expected in zip(F.linear_backward(grad_hidden, x, w, b), want_grads):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
