"""Transposed convolution: the adjoint of the convolution, against PyTorch forward and backward in 1D, 2D and 3D
(stride, padding, output_padding, groups, dilation), the layers, the CUDA backend, and the errors of bad input."""
import numpy as np
import pytest

import numconv.functional as F
from numconv import layers

torch = pytest.importorskip("torch")

# (in channels, out channels, groups, kernel, stride, padding, output_padding, dilation)
CONFIGS = [
    (4, 6, 2, 3, 2, 1, 1, 1),
    (3, 5, 1, 2, 1, 0, 0, 2),
    (2, 4, 2, 3, 3, 2, 2, 1),
    (6, 3, 3, 1, 2, 0, 1, 1),
    (1, 1, 1, 4, 4, 0, 3, 1),
]
SIZES = {1: (5,), 2: (4, 5), 3: (3, 4, 2)}
TORCH = {1: "conv_transpose1d", 2: "conv_transpose2d", 3: "conv_transpose3d"}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("config", CONFIGS)
def test_forward_and_every_gradient_match_pytorch(config, dims, dtype, rng):
    cin, cout, groups, kernel, stride, padding, output_padding, dilation = config
    x = rng.standard_normal((2, cin) + SIZES[dims]).astype(dtype)
    w = rng.standard_normal((cin, cout // groups) + (kernel,) * dims).astype(dtype)
    b = rng.standard_normal(cout).astype(dtype)
    options = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups, dilation=dilation)
    leaves = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    want = getattr(torch.nn.functional, TORCH[dims])(*leaves, **options)
    g = rng.standard_normal(tuple(want.shape)).astype(dtype)
    want.backward(torch.from_numpy(g))
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-5, atol=2e-5)
    got = getattr(F, f"conv_transpose{dims}d")(x, w, b, **options)
    np.testing.assert_allclose(got, want.detach().numpy(), **tol)
    grads = getattr(F, f"conv_transpose{dims}d_backward")(g, x, w, b, **options)
    for name, ours, leaf in zip(("input", "weight", "bias"), grads, leaves):
        np.testing.assert_allclose(ours, leaf.grad.numpy(), err_msg=name, **tol)


def test_it_is_the_adjoint_of_the_convolution(rng):
    """<conv(x, w), y> = <x, conv_transpose(y, w)> for the same window: what 'transposed' means."""
    x = rng.standard_normal((2, 4, 9, 8))
    w = rng.standard_normal((6, 2, 3, 2))
    options = dict(stride=2, padding=1, dilation=(1, 2), groups=2)
    y = F.conv2d(x, w, **options)
    probe = rng.standard_normal(y.shape)
    back = F.conv_transpose2d(probe, w, output_padding=(0, 1), **options)
    assert back.shape == x.shape
    assert np.isclose(np.vdot(y, probe), np.vdot(x, back), rtol=1e-12)


def test_the_layer_trains_like_pytorchs(rng):
    layer = layers.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2, rng=rng,
                                   dtype=np.float64)
    layer.bias[:] = rng.standard_normal(6)
    peer = torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2).double()
    with torch.no_grad():
        peer.weight.copy_(torch.from_numpy(layer.weight))
        peer.bias.copy_(torch.from_numpy(layer.bias))
    x = rng.standard_normal((2, 4, 5, 5))
    assert layer.output_shape(x.shape) == (2, 6, 10, 10)
    xt = torch.tensor(x, requires_grad=True)
    want = peer(xt)
    np.testing.assert_allclose(layer.forward(x), want.detach().numpy(), rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(want.shape)
    want.backward(torch.from_numpy(g))
    np.testing.assert_allclose(layer.backward(g), xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.weight_grad, peer.weight.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.bias_grad, peer.bias.grad.numpy(), rtol=1e-12, atol=1e-12)
    assert sorted(layer.state_dict()) == sorted(peer.state_dict())


@pytest.mark.parametrize("call, error, message", [
    (lambda x, w: F.conv_transpose2d(x, w, stride=2, output_padding=2), ValueError, "output_padding must be smaller"),
    (lambda x, w: F.conv_transpose2d(x, w, padding="same"), ValueError, "must be an int or a tuple"),
    (lambda x, w: F.conv_transpose2d(x, w, padding=5), ValueError, "the padding removes more than the output has"),
    (lambda x, w: F.conv_transpose2d(x, w[:2]), ValueError, "its 2 input channels do not match the input's 4"),
    (lambda x, w: F.conv_transpose2d(x, w, groups=3), ValueError, "groups=3 does not divide"),
    (lambda x, w: F.conv_transpose2d(x, w, groups="2"), TypeError, "groups"),
    (lambda x, w: F.conv_transpose2d(x, w, np.zeros(5)), ValueError, "bias"),
])
def test_bad_input_gets_a_clear_error(call, error, message):
    x, w = np.zeros((1, 4, 3, 3)), np.zeros((4, 2, 3, 3))
    with pytest.raises(error, match=message):
        call(x, w)


def test_the_cuda_backend_computes_what_the_cpu_does(rng):
    pytest.importorskip("numba.cuda")
    from numconv import backend
    from spec import registry

    if "cuda" not in registry.available_backends():
        pytest.skip("numba-cuda finds neither a GPU nor its simulator")
    # small integers: the sums are exact in any order, so the backends agree exactly
    x = rng.integers(-3, 4, (2, 4, 3, 3)).astype(np.float64)
    w = rng.integers(-3, 4, (4, 1, 3, 3)).astype(np.float64)
    b = rng.integers(-3, 4, 2).astype(np.float64)
    options = dict(stride=2, padding=1, output_padding=1, groups=2)
    device = [backend.to_device(a) for a in (x, w, b)]
    np.testing.assert_array_equal(backend.to_host(F.conv_transpose2d(*device, **options)),
                                  F.conv_transpose2d(x, w, b, **options))
    g = rng.integers(-3, 4, (2, 2, 6, 6)).astype(np.float64)
    on_device = F.conv_transpose2d_backward(backend.to_device(g), *device, **options)
    for ours, want in zip(on_device, F.conv_transpose2d_backward(g, x, w, b, **options)):
        np.testing.assert_array_equal(backend.to_host(ours), want)
