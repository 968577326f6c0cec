"""The ready models: parameter counts and shapes from the papers, initialisation, whole-model gradients by central
finite differences, and equality with the same architectures built in PyTorch (weights moved by key name)."""
import io
import math
from collections import OrderedDict

import numpy as np
import pytest

import numconv.functional as F
from numconv import models
from numconv.layers import (
    Conv1d, Conv2d, Dropout, Flatten, Linear, LocalResponseNorm, MaxPool2d, ReLU, Sequential,
)

F64 = np.float64


@pytest.fixture(scope="module")
def alexnet_paper():
    """The full AlexNet with the paper's initialisation, float32, built once for the tests that only inspect it."""
    return models.alexnet(rng=0)


# --- sizes and shapes ---------------------------------------------------------------------------------------------


def _conv_params(out_channels, in_channels, kernel, groups=1):
    return out_channels * (in_channels // groups) * kernel + out_channels


def test_lenet5_parameter_count_and_shapes(rng):
    model = models.lenet5(rng=0)
    # conv 1->6 5x5, conv 6->16 5x5, fc 400->120->84->10
    expected = (_conv_params(6, 1, 25) + _conv_params(16, 6, 25) + 400 * 120 + 120 + 120 * 84 + 84 + 84 * 10 + 10)
    assert model.num_parameters() == expected == 61_706
    assert model.output_shape((5,) + models.INPUT_SHAPES["lenet5"]) == (5, 10)
    x = rng.standard_normal((3, 1, 28, 28)).astype(np.float32)
    y = model(x)
    assert y.shape == (3, 10) and y.dtype == np.float32
    assert model[:6].output_shape((3, 1, 28, 28)) == model[:6](x).shape == (3, 16, 5, 5)


def test_alexnet_parameter_count_and_conv1_output(alexnet_paper):
    model = alexnet_paper
    expected = (_conv_params(96, 3, 121) + _conv_params(256, 96, 25, groups=2) + _conv_params(384, 256, 9)
                + _conv_params(384, 384, 9, groups=2) + _conv_params(256, 384, 9, groups=2)
                + 9216 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 1000 + 1000)
    assert model.num_parameters() == expected == 60_965_224
    assert model.features[0].output_shape((1, 3, 227, 227)) == (1, 96, 55, 55)
    assert model.features.output_shape((2, 3, 227, 227)) == (2, 256, 6, 6)
    assert model.output_shape((2, 3, 227, 227)) == (2, 1000)


SMALL_WIDTHS = {"nin": 12, "m5": 4, "c3d_small": 2}


@pytest.mark.parametrize("name,num_classes", [("nin", 10), ("m5", 2), ("c3d_small", 4)])
def test_model_shapes_for_their_input_shapes(name, num_classes, rng):
    shape = (2,) + models.INPUT_SHAPES[name]
    assert models.MODELS[name](rng=0).output_shape(shape) == (2, num_classes)
    # the width changes channels, not spatial sizes: run a narrow model on the same input for the real shapes
    model = models.MODELS[name](rng=0, width=SMALL_WIDTHS[name], num_classes=num_classes + 1).eval()
    x = rng.standard_normal(shape).astype(np.float32)
    assert model(x).shape == (2, num_classes + 1)
    for stop in range(1, len(model)):
        assert model[:stop].output_shape(shape) == model[:stop](x).shape


def test_nin_without_fully_connected_layers():
    model = models.nin(rng=0)
    names = [type(layer).__name__ for _, layer in model.named_layers()]
    assert "Linear" not in names and names[-1] == "GlobalAvgPool"
    # the paper's CIFAR-10 widths: 192-160-96, 192-192-192, 192-192-10
    convs = [layer for layer in model if isinstance(layer, Conv2d)]
    assert [c.out_channels for c in convs] == [192, 160, 96, 192, 192, 192, 192, 192, 10]
    assert [c.kernel_size for c in convs] == [(5, 5), (1, 1), (1, 1), (5, 5), (1, 1), (1, 1), (3, 3), (1, 1),
                                              (1, 1)]


def test_summary_lists_every_alexnet_layer(alexnet_paper):
    text = models.summary(alexnet_paper, (3, 227, 227))
    lines = text.splitlines()
    names = [name for name, _ in alexnet_paper.named_layers()]
    assert len(names) == 23
    rows = lines[3:3 + len(names)]
    shape = (1, 3, 227, 227)
    for (name, layer), row in zip(alexnet_paper.named_layers(), rows):
        shape = layer.output_shape(shape)
        assert row.split()[:2] == [name, type(layer).__name__]
        assert str(shape[1:]) in row and row.endswith(f"{layer.num_parameters():,}")
    by_name = {row.split()[0]: row for row in rows}
    assert "(96, 55, 55)" in by_name["features.0"] and by_name["features.0"].endswith("34,944")
    assert "(96, 27, 27)" in by_name["features.3"]
    assert "(256, 27, 27)" in by_name["features.4"] and by_name["features.4"].endswith("307,456")
    assert "(256, 13, 13)" in by_name["features.7"] and "(384, 13, 13)" in by_name["features.10"]
    assert "(256, 6, 6)" in by_name["features.14"] and "(9216,)" in by_name["flatten"]
    assert by_name["classifier.1"].endswith("37,752,832") and "(1000,)" in by_name["classifier.6"]
    assert lines[-1] == "total parameters: 60,965,224"
    stream = io.StringIO()
    assert models.summary(alexnet_paper, (3, 227, 227), file=stream) == text
    assert stream.getvalue() == text + "\n"


def test_summary_rejects_an_input_the_model_cannot_take():
    with pytest.raises(ValueError):
        models.lenet5(rng=0).forward(np.zeros((1, 3, 28, 28), dtype=np.float32))
    with pytest.raises(ValueError):
        models.summary(models.lenet5(rng=0), (3, 28, 28))


# --- initialisation -----------------------------------------------------------------------------------------------


def test_alexnet_paper_initialisation(alexnet_paper):
    params = dict(alexnet_paper.named_parameters())
    fc6 = params["classifier.1.weight"]
    assert fc6.shape == (4096, 9216)
    assert abs(fc6.std(dtype=F64) / 0.01 - 1) < 0.02
    assert abs(fc6.mean(dtype=F64)) < 1e-4
    for name, array in params.items():
        if name.endswith("weight"):
            assert abs(array.std(dtype=F64) / 0.01 - 1) < 0.05, name
    ones = {"features.4.bias", "features.10.bias", "features.12.bias", "classifier.1.bias", "classifier.4.bias"}
    biases = [name for name in params if name.endswith("bias")]
    assert len(biases) == 8
    for name in biases:
        np.testing.assert_array_equal(params[name], 1.0 if name in ones else 0.0, err_msg=name)


def test_alexnet_two_gpu_split_and_layer_settings(alexnet_paper):
    features = alexnet_paper.features
    assert [(i, features[i].groups) for i in (0, 4, 8, 10, 12)] == [(0, 1), (4, 2), (8, 1), (10, 2), (12, 2)]
    assert features[4].weight.shape == (256, 48, 5, 5)
    assert features[10].weight.shape == (384, 192, 3, 3)
    assert features[12].weight.shape == (256, 192, 3, 3)
    assert features[0].weight.shape == (96, 3, 11, 11) and features[0].stride == 4
    for i in (2, 6):
        lrn = features[i]
        assert isinstance(lrn, LocalResponseNorm) and (lrn.size, lrn.beta, lrn.k) == (5, 0.75, 2.0)
    for i in (3, 7, 14):
        assert isinstance(features[i], MaxPool2d) and (features[i].kernel_size, features[i].stride) == (3, 2)
    dropouts = [layer for layer in alexnet_paper.classifier if isinstance(layer, Dropout)]
    assert len(dropouts) == 2 and all(d.p == 0.5 for d in dropouts)


def test_alexnet_local_response_norm_is_the_papers(alexnet_paper, rng):
    # section 3.3: b = a / (k + alpha * sum of a^2 over n = 5 neighbouring maps) ** beta, k=2, alpha=1e-4, beta=0.75,
    # over each GPU's 48 maps (the two GPUs normalised their own halves)
    a = np.abs(rng.standard_normal((1, 96, 3, 3))) * 40
    expected = []
    for half in (a[:, :48], a[:, 48:]):
        squares = np.pad(half ** 2, ((0, 0), (2, 2), (0, 0), (0, 0)))
        window = sum(squares[:, j:j + 48] for j in range(5))
        expected.append(half / (2.0 + 1e-4 * window) ** 0.75)
    np.testing.assert_allclose(alexnet_paper.features[2].forward(a), np.concatenate(expected, axis=1), rtol=1e-10)


def test_alexnet_first_layer_scale_and_image_size():
    small = models.alexnet(num_classes=10, rng=0, paper_init=False, image_size=67, first_layer_scale=0.01)
    plain = models.alexnet(num_classes=10, rng=0, paper_init=False, image_size=67)
    np.testing.assert_allclose(small.features[0].weight, 0.01 * plain.features[0].weight, rtol=1e-6)
    np.testing.assert_array_equal(small.features[4].weight, plain.features[4].weight)
    assert small.classifier[1].in_features == 256 and small.output_shape((2, 3, 67, 67)) == (2, 10)
    with pytest.raises(ValueError, match="first_layer_scale"):
        models.alexnet(first_layer_scale=0)
    with pytest.raises(ValueError, match="6 x 6|smaller|kernel|input"):
        models.alexnet(image_size=40)


def test_he_initialisation():
    layers = {
        "conv2d grouped": (Conv2d(96, 256, 5, groups=2, rng=np.random.default_rng(0)), 48 * 25),
        "conv1d": (Conv1d(1, 128, 80, rng=np.random.default_rng(1)), 80),
        "linear": (Linear(1024, 512, rng=np.random.default_rng(2)), 1024),
        "m5 conv1": (models.m5(rng=3)[0], 80),
        "lenet5 fc1": (models.lenet5(rng=4)[7], 400),
    }
    for name, (layer, fan_in) in layers.items():
        weight = layer.weight.astype(F64)
        assert abs(weight.std() / math.sqrt(2.0 / fan_in) - 1) < 0.03, name
        assert abs(weight.mean()) < 0.05 * weight.std(), name
        assert not layer.bias.any(), name
    # the same seed gives the same weights, another seed others
    np.testing.assert_array_equal(models.lenet5(rng=5)[0].weight, models.lenet5(rng=5)[0].weight)
    assert not np.array_equal(models.lenet5(rng=5)[0].weight, models.lenet5(rng=6)[0].weight)


# --- gradients by central finite differences ----------------------------------------------------------------------


def _loss(model, x, target):
    return float(F.cross_entropy(model.forward(x), target))


def _gradient_check(model, x, target, rng, n_params=15, n_inputs=10, h=1e-6, rtol=1e-5, atol=1e-9):
    """Compare backward's gradients of the mean cross-entropy with central differences at randomly chosen
    parameter entries (at least one in every parameter array) and input entries."""
    model.zero_grad()
    logits = model.forward(x)
    grad_logits, _ = F.cross_entropy_backward(1.0, logits, target)
    grad_x = model.backward(grad_logits)
    params = OrderedDict(model.named_parameters())
    grads = OrderedDict(model.named_gradients())
    names = list(params)
    chosen = names + [names[i] for i in rng.integers(0, len(names), max(0, n_params - len(names)))]
    checked = []
    for name in chosen:
        array = params[name]
        index = tuple(int(rng.integers(0, s)) for s in array.shape)
        checked.append((f"{name}{list(index)}", array, index, grads[name][index]))
    for _ in range(n_inputs):
        index = tuple(int(rng.integers(0, s)) for s in x.shape)
        checked.append((f"input{list(index)}", x, index, grad_x[index]))
    for label, array, index, analytic in checked:
        old = array[index]
        array[index] = old + h
        plus = _loss(model, x, target)
        array[index] = old - h
        minus = _loss(model, x, target)
        array[index] = old
        numeric = (plus - minus) / (2 * h)
        assert abs(numeric - analytic) <= atol + rtol * abs(numeric), (label, numeric, analytic)
    assert any(abs(analytic) > 1e-4 for *_, analytic in checked)


def _randomise_biases(model, rng):
    """Biases away from zero, and batch normalisation's running statistics away from (0, 1), so that a layer
    that skipped them would be seen."""
    for name, array in model.named_parameters():
        if name.endswith("bias"):
            array[...] = 0.1 * rng.standard_normal(array.shape)
    for name, array in model.named_buffers():
        if name.endswith("running_mean"):
            array[...] = 0.1 * rng.standard_normal(array.shape)
        elif name.endswith("running_var"):
            array[...] = rng.uniform(0.5, 2.0, array.shape)


def _small_alexnet(rng):
    """AlexNet's layer kinds at a size finite differences can afford: a strided first convolution, LRN with k=2,
    overlapping 3x3 stride-2 max-pooling, grouped convolutions (the two-GPU split), dropout, fully-connected layers.
    LRN's alpha is large enough for the cross-channel term to matter at these activations; the second normalises
    each column's maps alone, as AlexNet's do. Input (N, 3, 35, 35)."""
    lrn = dict(size=5, alpha=0.5, beta=0.75, k=2.0)
    features = Sequential(
        Conv2d(3, 8, 5, stride=2, rng=rng, dtype=F64), ReLU(), LocalResponseNorm(**lrn), MaxPool2d(3, stride=2),
        Conv2d(8, 12, 3, padding=1, groups=2, rng=rng, dtype=F64), ReLU(), LocalResponseNorm(**lrn, groups=2),
        MaxPool2d(3, stride=2),
        Conv2d(12, 12, 3, padding=1, rng=rng, dtype=F64), ReLU(),
        Conv2d(12, 8, 3, padding=1, groups=2, rng=rng, dtype=F64), ReLU(), MaxPool2d(3, stride=2),
    )
    classifier = Sequential(
        Dropout(0.5, rng=rng), Linear(8, 16, rng=rng, dtype=F64), ReLU(),
        Dropout(0.5, rng=rng), Linear(16, 16, rng=rng, dtype=F64), ReLU(),
        Linear(16, 5, rng=rng, dtype=F64),
    )
    return Sequential(OrderedDict(features=features, flatten=Flatten(), classifier=classifier))


GRADIENT_CASES = {
    "lenet5": (lambda rng: models.lenet5(rng=rng, dtype=F64), (2, 1, 28, 28), 10),
    "nin": (lambda rng: models.nin(in_channels=1, width=12, rng=rng, dtype=F64), (2, 1, 28, 28), 10),
    "m5": (lambda rng: models.m5(width=4, rng=rng, dtype=F64), (2, 1, 1024), 2),
    "c3d_small": (lambda rng: models.c3d_small(width=2, rng=rng, dtype=F64), (2, 1, 8, 16, 16), 4),
    "alexnet-family": (_small_alexnet, (2, 3, 35, 35), 5),
}


@pytest.mark.parametrize("family", list(GRADIENT_CASES))
def test_whole_model_gradients_by_finite_differences(family, rng):
    build, shape, classes = GRADIENT_CASES[family]
    model = build(rng).eval()
    _randomise_biases(model, rng)
    x = rng.standard_normal(shape)
    target = rng.integers(0, classes, shape[0])
    assert model.output_shape(shape) == (shape[0], classes)
    _gradient_check(model, x, target, rng)


@pytest.mark.slow
def test_full_alexnet_float64_forward_and_backward_run(rng):
    model = models.alexnet(rng=1, dtype=F64).eval()
    x = rng.standard_normal((1, 3, 227, 227))
    logits = model(x)
    assert logits.shape == (1, 1000) and logits.dtype == F64
    grad_logits, _ = F.cross_entropy_backward(1.0, logits, np.array([7]))
    grad_x = model.backward(grad_logits)
    assert grad_x.shape == x.shape and grad_x.dtype == F64
    assert np.isfinite(grad_x).all() and grad_x.any()
    assert all(np.isfinite(g).all() for g in model.gradients())


# --- equality with PyTorch ----------------------------------------------------------------------------------------


def _torch():
    return pytest.importorskip("torch")


def _global_avg_pool(nn, ndim):
    """PyTorch's equivalent of GlobalAvgPool, as one parameter-free module so the indices after it stay aligned."""
    pool = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}[ndim]
    return nn.Sequential(pool(1), nn.Flatten())


def _torch_lenet5(nn):
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )


def _torch_nin(nn, width, in_channels=3, num_classes=10):
    w = width

    def mlpconv(cin, channels, kernel, padding):
        a, b, c = channels
        return [nn.Conv2d(cin, a, kernel, padding=padding), nn.ReLU(), nn.Conv2d(a, b, 1), nn.ReLU(),
                nn.Conv2d(b, c, 1), nn.ReLU()]

    return nn.Sequential(
        *mlpconv(in_channels, (w, w * 5 // 6, w // 2), 5, 2), nn.MaxPool2d(3, 2, ceil_mode=True), nn.Dropout(0.5),
        *mlpconv(w // 2, (w, w, w), 5, 2), nn.AvgPool2d(3, 2, ceil_mode=True), nn.Dropout(0.5),
        *mlpconv(w, (w, w, num_classes), 3, 1)[:-1], _global_avg_pool(nn, 2),
    )


def _torch_m5(nn, width, num_classes=2):
    w = width

    def block(cin, cout, kernel, stride=1, ceil_mode=False):
        return [nn.Conv1d(cin, cout, kernel, stride=stride), nn.BatchNorm1d(cout), nn.ReLU(),
                nn.MaxPool1d(4, ceil_mode=ceil_mode)]

    return nn.Sequential(
        *block(1, w, 80, stride=4), *block(w, w, 3), *block(w, 2 * w, 3), *block(2 * w, 4 * w, 3, ceil_mode=True),
        _global_avg_pool(nn, 1), nn.Linear(4 * w, num_classes),
    )


def _torch_c3d_small(nn, width, num_classes=4):
    w = width
    return nn.Sequential(
        nn.Conv3d(1, w, 3, padding=1), nn.ReLU(), nn.MaxPool3d((1, 2, 2)),
        nn.Conv3d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool3d(2),
        nn.Conv3d(2 * w, 4 * w, 3, padding=1), nn.ReLU(),
        _global_avg_pool(nn, 3), nn.Linear(4 * w, num_classes),
    )


def _torch_alexnet(nn, lrn_alpha):
    lrn = dict(size=5, alpha=lrn_alpha, beta=0.75, k=2.0)

    class PerColumnLRN(nn.LocalResponseNorm):
        """PyTorch's LocalResponseNorm over each half of the channels (AlexNet's two GPUs)."""

        def forward(self, x):
            n, c = x.shape[:2]
            return super().forward(x.reshape(n * 2, c // 2, *x.shape[2:])).reshape(x.shape)

    features = nn.Sequential(
        nn.Conv2d(3, 96, 11, stride=4), nn.ReLU(), PerColumnLRN(**lrn), nn.MaxPool2d(3, 2),
        nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(), PerColumnLRN(**lrn), nn.MaxPool2d(3, 2),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, 3, padding=1, groups=2), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1, groups=2), nn.ReLU(), nn.MaxPool2d(3, 2),
    )
    classifier = nn.Sequential(
        nn.Dropout(0.5), nn.Linear(9216, 4096), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(),
        nn.Linear(4096, 1000),
    )
    return nn.Sequential(OrderedDict(features=features, flatten=nn.Flatten(), classifier=classifier))


def _compare_with_torch(torch, model, reference, x, target, rtol, grad_rtol, training=False):
    """Load ``model``'s state dict into ``reference`` by key, run both on ``x`` (in training mode or not),
    backpropagate the same cross-entropy, and compare logits, loss, the input's gradient, every parameter's gradient
    by name, and the state afterwards (running statistics)."""
    state = model.state_dict()
    assert list(reference.state_dict()) == list(state)
    reference.load_state_dict({key: torch.from_numpy(value) for key, value in state.items()}, strict=True)
    assert sum(p.numel() for p in reference.parameters()) == model.num_parameters()
    model.train(training)
    reference.train(training)
    model.zero_grad()
    logits = model.forward(x)
    loss = F.cross_entropy(logits, target)
    grad_x = model.backward(F.cross_entropy_backward(1.0, logits, target)[0])

    x_t = torch.from_numpy(x.copy()).requires_grad_(True)
    logits_t = reference(x_t)
    loss_t = torch.nn.functional.cross_entropy(logits_t, torch.from_numpy(target))
    loss_t.backward()

    def close(got, want, tolerance, label):
        want = want.detach().numpy()
        assert got.shape == want.shape, label
        # a convolution's bias before batch normalisation has a gradient of zero in exact arithmetic: rounding only
        scale = max(float(np.abs(want).max()), 1e-6)
        np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance * scale, err_msg=label)

    close(logits, logits_t, rtol, "logits")
    np.testing.assert_allclose(loss, loss_t.item(), rtol=rtol)
    close(grad_x, x_t.grad, grad_rtol, "input gradient")
    torch_grads = dict((name, p.grad) for name, p in reference.named_parameters())
    assert list(torch_grads) == [name for name, _ in model.named_gradients()]
    for name, grad in model.named_gradients():
        close(grad, torch_grads[name], grad_rtol, name)
    torch_state = reference.state_dict()
    for name, value in model.state_dict().items():
        close(value, torch_state[name], rtol, name)
    return logits


TORCH_CASES = {
    "lenet5": (lambda rng: models.lenet5(rng=rng, dtype=F64), _torch_lenet5, (3, 1, 28, 28), 10),
    "nin": (lambda rng: models.nin(width=12, rng=rng, dtype=F64), lambda nn: _torch_nin(nn, 12), (2, 3, 32, 32), 10),
    "m5": (lambda rng: models.m5(width=4, rng=rng, dtype=F64), lambda nn: _torch_m5(nn, 4), (2, 1, 8000), 2),
    "c3d_small": (lambda rng: models.c3d_small(width=2, rng=rng, dtype=F64), lambda nn: _torch_c3d_small(nn, 2),
                  (2, 1, 8, 16, 16), 4),
}


@pytest.mark.parametrize("family", list(TORCH_CASES))
def test_model_equals_torch_float64(family, rng):
    torch = _torch()
    build, build_torch, shape, classes = TORCH_CASES[family]
    model = build(rng)
    _randomise_biases(model, rng)
    reference = build_torch(torch.nn).double()
    x = rng.standard_normal(shape)
    target = rng.integers(0, classes, shape[0])
    _compare_with_torch(torch, model, reference, x, target, rtol=1e-10, grad_rtol=1e-9)


def test_m5_with_batch_statistics_equals_torch_float64(rng):
    """In training mode batch normalisation uses each batch's statistics and updates the running ones."""
    torch = _torch()
    build, build_torch, shape, classes = TORCH_CASES["m5"]
    model = build(rng)
    _randomise_biases(model, rng)
    x = rng.standard_normal((4,) + shape[1:])
    target = rng.integers(0, classes, 4)
    _compare_with_torch(torch, model, build_torch(torch.nn).double(), x, target, rtol=1e-10, grad_rtol=1e-9,
                        training=True)
    assert int(model[1].num_batches_tracked) == 1


@pytest.mark.slow
def test_alexnet_equals_torch_float32(rng):
    torch = _torch()
    # He initialisation: with the paper's N(0, 0.01) weights and biases of one, the logits barely depend on the
    # input, and equal logits would say little about the convolutions
    model = models.alexnet(rng=2, paper_init=False)
    _randomise_biases(model, rng)
    reference = _torch_alexnet(torch.nn, lrn_alpha=model.features[2].alpha)
    x = rng.standard_normal((1, 3, 227, 227)).astype(np.float32)
    target = np.array([int(rng.integers(0, 1000))])
    logits = _compare_with_torch(torch, model, reference, x, target, rtol=1e-4, grad_rtol=1e-4)
    assert logits.dtype == np.float32 and logits.std() > 0.1
