"""Batch normalisation: the functional form against PyTorch's and against finite differences, the layers' running
statistics, state dict and modes, the CUDA backend, and the errors."""
import numpy as np
import pytest

import numconv.functional as F
from numconv import layers

SHAPES = [(4, 3), (3, 2, 7), (2, 3, 4, 5), (2, 2, 3, 2, 3)]


def _torch():
    return pytest.importorskip("torch")


def _inputs(shape, rng):
    channels = shape[1]
    x = 2.0 * rng.standard_normal(shape) + 1.5
    weight, bias = rng.standard_normal(channels), rng.standard_normal(channels)
    running_mean, running_var = rng.standard_normal(channels), rng.uniform(0.5, 2.0, channels)
    return x, weight, bias, running_mean, running_var


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_and_its_gradients_equal_torch(shape, training, affine, rng):
    torch = _torch()
    x, weight, bias, running_mean, running_var = _inputs(shape, rng)
    if not affine:
        weight = bias = None
    ours_mean, ours_var = running_mean.copy(), running_var.copy()
    out = F.batch_norm(x, ours_mean, ours_var, weight, bias, training=training, momentum=0.3, eps=1e-3)

    x_t = torch.tensor(x, requires_grad=True)
    params_t = [None if p is None else torch.tensor(p, requires_grad=True) for p in (weight, bias)]
    mean_t, var_t = torch.tensor(running_mean), torch.tensor(running_var)
    out_t = torch.nn.functional.batch_norm(x_t, mean_t, var_t, *params_t, training=training, momentum=0.3, eps=1e-3)
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours_mean, mean_t.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ours_var, var_t.numpy(), rtol=1e-12)

    g = rng.standard_normal(shape)
    out_t.backward(torch.tensor(g))
    grad_input, grad_weight, grad_bias = F.batch_norm_backward(g, x, running_mean, running_var, weight, bias,
                                                               training=training, eps=1e-3)
    np.testing.assert_allclose(grad_input, x_t.grad.numpy(), rtol=1e-10, atol=1e-12)
    if affine:
        np.testing.assert_allclose(grad_weight, params_t[0].grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(grad_bias, params_t[1].grad.numpy(), rtol=1e-10, atol=1e-12)
    else:
        assert grad_weight is None and grad_bias is None


def test_training_normalises_each_channel_to_zero_mean_and_unit_variance(rng):
    x = 5.0 * rng.standard_normal((6, 3, 4, 4)) + np.array([1.0, -20.0, 300.0])[:, None, None]
    out = F.batch_norm(x, None, None, training=True, eps=1e-12)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0.0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=(0, 2, 3)), 1.0, rtol=1e-9)


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_backward_by_finite_differences(training, rng):
    """The input gradient depends on every value of the batch in training (the statistics do): central
    differences of the loss <g, batch_norm(x)> in float64."""
    x, weight, bias, running_mean, running_var = _inputs((3, 2, 5), rng)
    g = rng.standard_normal(x.shape)

    def loss(values):
        return float(np.sum(g * F.batch_norm(values, running_mean.copy(), running_var.copy(), weight, bias,
                                             training=training)))

    grad_input, grad_weight, _ = F.batch_norm_backward(g, x, running_mean, running_var, weight, bias, training)
    step = 1e-6
    for index in [(0, 0, 0), (1, 1, 3), (2, 0, 4), (2, 1, 1)]:
        plus, minus = x.copy(), x.copy()
        plus[index] += step
        minus[index] -= step
        np.testing.assert_allclose(grad_input[index], (loss(plus) - loss(minus)) / (2 * step), rtol=1e-6, atol=1e-8)
    scaled = weight.copy()
    scaled[1] += step
    numeric = (np.sum(g * F.batch_norm(x, running_mean.copy(), running_var.copy(), scaled, bias, training=training))
               - loss(x)) / step
    np.testing.assert_allclose(grad_weight[1], numeric, rtol=1e-5)


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("cls", ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d"])
def test_layers_keep_torchs_running_statistics_and_state_dict(cls, momentum, rng):
    torch = _torch()
    shape = {"BatchNorm1d": (5, 3, 4), "BatchNorm2d": (4, 3, 3, 5), "BatchNorm3d": (2, 3, 2, 3, 4)}[cls]
    ours = getattr(layers, cls)(3, momentum=momentum, dtype=np.float64)
    theirs = getattr(torch.nn, cls)(3, momentum=momentum).double()
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(rng.standard_normal(3)))
        theirs.bias.copy_(torch.tensor(rng.standard_normal(3)))
    ours.load_state_dict({key: value.numpy() for key, value in theirs.state_dict().items()})
    assert list(ours.state_dict()) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    for _ in range(3):
        x = 3.0 * rng.standard_normal(shape) - 1.0
        np.testing.assert_allclose(ours(x), theirs(torch.tensor(x)).detach().numpy(), rtol=1e-12, atol=1e-12)
    ours.eval()
    theirs.eval()
    x = rng.standard_normal(shape)
    np.testing.assert_allclose(ours(x), theirs(torch.tensor(x)).detach().numpy(), rtol=1e-12, atol=1e-12)
    for key, value in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[key], value.numpy(), rtol=1e-12, err_msg=key)
    assert int(ours.num_batches_tracked) == 3


def test_a_layer_without_running_statistics_always_uses_the_batchs(rng):
    layer = layers.BatchNorm2d(2, track_running_stats=False, affine=False, dtype=np.float64).eval()
    x = rng.standard_normal((3, 2, 4, 4)) + 7.0
    np.testing.assert_allclose(layer(x).mean(axis=(0, 2, 3)), 0.0, atol=1e-12)
    assert list(layer.state_dict()) == [] and layer.parameters() == []
    grad = layer.backward(np.ones_like(x))
    np.testing.assert_allclose(grad, 0.0, atol=1e-10)  # a constant gradient is removed with the mean


def test_the_cuda_backend_normalises_as_the_cpu_does(rng):
    pytest.importorskip("numba.cuda")
    from numconv import backend
    from spec import registry

    if "cuda" not in registry.available_backends():
        pytest.skip("numba-cuda finds neither a GPU nor its simulator")
    host = layers.BatchNorm2d(3, momentum=0.2, dtype=np.float64)
    device = layers.BatchNorm2d(3, momentum=0.2, dtype=np.float64).to("cuda")
    x = rng.standard_normal((2, 3, 3, 4)) * 2.0 + 1.0
    g = rng.standard_normal(x.shape)
    np.testing.assert_allclose(backend.to_host(device(backend.to_device(x))), host(x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(backend.to_host(device.backward(backend.to_device(g))), host.backward(g), rtol=1e-10,
                               atol=1e-12)
    for key, value in host.state_dict().items():
        np.testing.assert_allclose(device.state_dict()[key], value, rtol=1e-12, err_msg=key)
    np.testing.assert_allclose(backend.to_host(device.weight_grad), host.weight_grad, rtol=1e-10)


@pytest.mark.parametrize("call, error, message", [
    (lambda x, c: F.batch_norm(x, c, c.astype(np.float32), training=True), TypeError, "running_var has dtype"),
    (lambda x, c: F.batch_norm(x, np.zeros(6)[::2], c, training=True), ValueError, "running_mean must be a writeable"),
    (lambda x, c: F.batch_norm(x, [0.0, 0.0, 0.0], c, training=True), TypeError, "running_mean must be a numpy"),
    (lambda x, c: F.batch_norm(x, c, None, training=True), ValueError, "both be arrays or both be None"),
    (lambda x, c: F.batch_norm(x, None, None, training=False), ValueError, "training=False needs"),
    (lambda x, c: F.batch_norm(x[:1, :, :1], None, None, training=True), ValueError, "more than one value"),
    (lambda x, c: F.batch_norm(x, c, c.copy(), training=1), TypeError, "training must be a bool"),
    (lambda x, c: F.batch_norm(x, c, c.copy(), eps=0.0), ValueError, "eps must be > 0"),
    (lambda x, c: F.batch_norm(x, c, c.copy(), momentum=1.5), ValueError, "momentum must be in"),
    (lambda x, c: F.batch_norm(x, c, c.copy(), weight=np.ones(2)), ValueError, r"weight must have shape \(3,\)"),
    (lambda x, c: layers.BatchNorm2d(3)(x.astype(np.float32)), ValueError, "4 dimensions with 3 channels"),
    (lambda x, c: layers.BatchNorm1d(0), ValueError, "num_features"),
])
def test_bad_batch_norm_arguments_get_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        call(np.ones((2, 3, 4)), np.zeros(3))


def test_converting_or_moving_a_layer_keeps_its_running_statistics_and_counter(rng):
    layer = layers.BatchNorm1d(3, momentum=0.5)
    layer(rng.standard_normal((4, 3, 5)).astype(np.float32))
    before = layer.state_dict()
    layer.astype(np.float64)
    after = layer.state_dict()
    assert after["running_mean"].dtype == np.float64 and after["num_batches_tracked"].dtype == np.int64
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value, err_msg=key)
    layer.load_state_dict({**after, "num_batches_tracked": np.asarray(7)})
    assert int(layer.num_batches_tracked) == 7
    with pytest.raises(ValueError, match="running_var"):
        layer.load_state_dict({key: value for key, value in after.items() if key != "running_var"})
