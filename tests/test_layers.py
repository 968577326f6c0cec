"""Layers against the functional ops they wrap: forward, backward, gradient accumulation, output shapes, modes,
Sequential's container behaviour, state dicts, dtype conversion and constructor validation."""
from collections import OrderedDict

import numpy as np
import pytest

import numconv.functional as F
from numconv.layers import (
    AvgPool1d, AvgPool2d, AvgPool3d, Conv1d, Conv2d, Conv3d, Dropout, Flatten, GlobalAvgPool, Linear,
    LocalResponseNorm, MaxPool1d, MaxPool2d, MaxPool3d, Module, ReLU, Sequential,
)

F64 = np.float64
CLOSE = dict(rtol=1e-12, atol=1e-12)

CONV = {1: (Conv1d, F.conv1d, F.conv1d_backward), 2: (Conv2d, F.conv2d, F.conv2d_backward),
        3: (Conv3d, F.conv3d, F.conv3d_backward)}

CONV_CASES = [
    # (ndim, in_channels, out_channels, kernel_size, keywords given to both the layer and the functional op, input)
    (1, 3, 4, 3, dict(), (2, 3, 11)),
    (1, 4, 6, 5, dict(stride=3, padding=2, dilation=2, groups=2), (2, 4, 17)),
    (1, 2, 3, 4, dict(padding="same", dilation=2), (1, 2, 9)),
    (2, 3, 4, (3, 2), dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2)), (2, 3, 7, 8)),
    (2, 4, 6, 3, dict(padding="same", groups=2), (1, 4, 6, 5)),
    (2, 6, 6, 3, dict(stride=2, padding=1, groups=3, bias=False), (2, 6, 7, 7)),
    (3, 2, 3, (2, 3, 2), dict(stride=(1, 2, 1), padding=1), (1, 2, 4, 6, 5)),
    (3, 4, 4, 3, dict(padding="same", groups=2, dilation=(1, 2, 1)), (1, 4, 3, 6, 4)),
]


def _conv_id(case):
    ndim, cin, cout, kernel, kwargs, _ = case
    return f"conv{ndim}d-{cin}-{cout}-{kernel}-" + "-".join(f"{k}={v}" for k, v in kwargs.items())


def _check_layer(layer, x, other_x, g, expected_y, expected_grad_x, expected_param_grads):
    """Forward, output_shape, backward and the accumulation of parameter gradients of ``layer``.

    ``other_x`` goes through a forward first: the backward must use the latest forward's input, not the first."""
    layer.forward(other_x)
    y = layer(x)
    assert y.dtype == x.dtype
    np.testing.assert_allclose(y, expected_y, **CLOSE)
    assert layer.output_shape(x.shape) == y.shape
    grads_before = [id(array) for array in layer.gradients()]
    grad_x = layer.backward(g)
    assert grad_x.shape == x.shape
    np.testing.assert_allclose(grad_x, expected_grad_x, **CLOSE)
    names = [name for name, _ in layer.named_gradients()]
    assert names == list(expected_param_grads)
    for name, grad in layer.named_gradients():
        np.testing.assert_allclose(grad, expected_param_grads[name], **CLOSE)
    # a second backward adds to the gradients, it does not replace them
    np.testing.assert_allclose(layer.backward(g), expected_grad_x, **CLOSE)
    for name, grad in layer.named_gradients():
        np.testing.assert_allclose(grad, 2 * expected_param_grads[name], **CLOSE)
    layer.zero_grad()
    for grad in layer.gradients():
        assert not grad.any()
    # zero_grad clears the arrays in place (an optimiser holding them still sees the next backward)
    assert [id(array) for array in layer.gradients()] == grads_before
    layer.backward(g)
    for name, grad in layer.named_gradients():
        np.testing.assert_allclose(grad, expected_param_grads[name], **CLOSE)
    # begin_gradients: the next backward writes the gradients, into the same arrays, whatever they held
    for grad in layer.gradients():
        grad[...] = 7.0
    layer.begin_gradients()
    layer.backward(g)
    layer.end_gradients()
    assert [id(array) for array in layer.gradients()] == grads_before
    for name, grad in layer.named_gradients():
        np.testing.assert_allclose(grad, expected_param_grads[name], **CLOSE)
    layer.backward(g)  # and the one after it adds again
    for name, grad in layer.named_gradients():
        np.testing.assert_allclose(grad, 2 * expected_param_grads[name], **CLOSE)
    # end_gradients zeroes what no backward wrote
    layer.begin_gradients()
    layer.end_gradients()
    for grad in layer.gradients():
        assert not grad.any()


@pytest.mark.parametrize("case", CONV_CASES, ids=_conv_id)
def test_conv_layer_matches_functional(case, rng):
    ndim, cin, cout, kernel, kwargs, shape = case
    cls, forward, backward = CONV[ndim]
    layer = cls(cin, cout, kernel, rng=rng, dtype=F64, **kwargs)
    options = {k: v for k, v in kwargs.items() if k != "bias"}
    kernel_shape = (kernel,) * ndim if isinstance(kernel, int) else kernel
    assert layer.weight.shape == (cout, cin // options.get("groups", 1)) + kernel_shape
    if kwargs.get("bias", True):
        assert layer.bias.shape == (cout,)
        layer.bias[...] = rng.standard_normal(cout)  # zero at initialisation; make it count
    else:
        assert layer.bias is None and [name for name, _ in layer.named_parameters()] == ["weight"]
    x = rng.standard_normal(shape)
    expected_y = forward(x, layer.weight, layer.bias, **options)
    g = rng.standard_normal(expected_y.shape)
    grad_x, grad_w, grad_b = backward(g, x, layer.weight, layer.bias, **options)
    expected = {"weight": grad_w} if grad_b is None else {"weight": grad_w, "bias": grad_b}
    if options.get("padding") == "same":
        assert expected_y.shape[2:] == shape[2:]
    _check_layer(layer, x, rng.standard_normal(shape), g, expected_y, grad_x, expected)


POOL_CASES = [
    # (layer class, functional forward, functional backward, keywords, input shape)
    (MaxPool1d, F.max_pool1d, F.max_pool1d_backward, dict(kernel_size=3, stride=2, padding=1), (2, 3, 13)),
    (MaxPool1d, F.max_pool1d, F.max_pool1d_backward, dict(kernel_size=4, ceil_mode=True), (1, 2, 10)),
    (MaxPool2d, F.max_pool2d, F.max_pool2d_backward, dict(kernel_size=3, stride=2, ceil_mode=True), (2, 3, 8, 9)),
    (MaxPool2d, F.max_pool2d, F.max_pool2d_backward,
     dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1), dilation=(2, 1)), (1, 2, 7, 7)),
    (MaxPool3d, F.max_pool3d, F.max_pool3d_backward, dict(kernel_size=2, ceil_mode=True), (1, 2, 5, 7, 6)),
    (MaxPool3d, F.max_pool3d, F.max_pool3d_backward, dict(kernel_size=(1, 2, 2)), (2, 2, 3, 6, 4)),
    (AvgPool1d, F.avg_pool1d, F.avg_pool1d_backward, dict(kernel_size=4, stride=3, padding=2), (2, 3, 14)),
    (AvgPool2d, F.avg_pool2d, F.avg_pool2d_backward,
     dict(kernel_size=3, stride=2, padding=1, count_include_pad=False), (2, 2, 9, 8)),
    (AvgPool2d, F.avg_pool2d, F.avg_pool2d_backward, dict(kernel_size=3, stride=2, ceil_mode=True), (1, 3, 14, 14)),
    (AvgPool3d, F.avg_pool3d, F.avg_pool3d_backward,
     dict(kernel_size=(1, 2, 2), padding=(0, 1, 1), count_include_pad=False), (1, 2, 3, 5, 4)),
]


@pytest.mark.parametrize("cls,forward,backward,kwargs,shape", POOL_CASES,
                         ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(POOL_CASES)])
def test_pool_layer_matches_functional(cls, forward, backward, kwargs, shape, rng):
    layer = cls(**kwargs)
    x = rng.standard_normal(shape)
    expected_y = forward(x, **kwargs)
    g = rng.standard_normal(expected_y.shape)
    (grad_x,) = backward(g, x, **kwargs)
    assert layer.parameters() == [] and layer.num_parameters() == 0
    _check_layer(layer, x, rng.standard_normal(shape), g, expected_y, grad_x, {})


@pytest.mark.parametrize("cls,shape", [(MaxPool1d, (2, 3, 13)), (MaxPool2d, (2, 3, 8, 9)),
                                       (MaxPool3d, (1, 2, 5, 7, 6))])
def test_max_pool_layer_in_evaluation_keeps_no_indices_and_still_has_a_backward(cls, shape, rng):
    """Evaluation pools the values alone; a backward after it finds the same routes (ties to the first) as after
    a training forward."""
    x = rng.integers(-3, 3, shape).astype(np.float32)  # few distinct values: many ties
    layer = cls(kernel_size=3, stride=2, ceil_mode=True)
    y_train = layer.forward(x)
    assert layer._indices is not None
    g = rng.standard_normal(y_train.shape).astype(np.float32)
    grad_train = layer.backward(g)
    layer.eval()
    y_eval = layer.forward(x)
    assert layer._indices is None
    np.testing.assert_array_equal(y_eval, y_train)
    np.testing.assert_array_equal(layer.backward(g), grad_train)


@pytest.mark.parametrize("shape", [(2, 3, 7), (2, 3, 4, 5), (1, 2, 3, 4, 5)])
def test_global_avg_pool_layer(shape, rng):
    x = rng.standard_normal(shape)
    expected_y = F.global_avg_pool(x)
    np.testing.assert_allclose(expected_y, x.reshape(shape[0], shape[1], -1).mean(axis=2), **CLOSE)
    g = rng.standard_normal(shape[:2])
    (grad_x,) = F.global_avg_pool_backward(g, x)
    _check_layer(GlobalAvgPool(), x, rng.standard_normal(shape), g, expected_y, grad_x, {})


@pytest.mark.parametrize("shape", [(4, 6), (2, 3, 6)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_layer_matches_functional(shape, bias, rng):
    layer = Linear(6, 3, bias=bias, rng=rng, dtype=F64)
    assert layer.weight.shape == (3, 6)
    if bias:
        layer.bias[...] = rng.standard_normal(3)
    x = rng.standard_normal(shape)
    expected_y = F.linear(x, layer.weight, layer.bias)
    np.testing.assert_allclose(expected_y, x @ layer.weight.T + (layer.bias if bias else 0), **CLOSE)
    g = rng.standard_normal(expected_y.shape)
    grad_x, grad_w, grad_b = F.linear_backward(g, x, layer.weight, layer.bias)
    expected = {"weight": grad_w, "bias": grad_b} if bias else {"weight": grad_w}
    _check_layer(layer, x, rng.standard_normal(shape), g, expected_y, grad_x, expected)


def test_linear_output_shape_rejects_wrong_features():
    with pytest.raises(ValueError, match="Linear"):
        Linear(6, 3).output_shape((2, 5))


@pytest.mark.parametrize("layer,shape", [
    (Conv2d(3, 4, 3), (1, 5, 10, 10)),
    (Conv1d(4, 4, 3, groups=2), (1, 2, 10)),
    (MaxPool2d(2), (1, 1, 8)),
    (AvgPool1d(2), (1, 1, 8, 8)),
], ids=["conv2d-channels", "conv1d-grouped-channels", "maxpool2d-rank", "avgpool1d-rank"])
def test_output_shape_rejects_inputs_the_forward_rejects(layer, shape):
    with pytest.raises(ValueError):
        layer.forward(np.zeros(shape, dtype=np.float32))
    with pytest.raises(ValueError):
        layer.output_shape(shape)


def test_relu_layer_matches_functional(rng):
    x = rng.standard_normal((3, 4, 5))
    g = rng.standard_normal(x.shape)
    (grad_x,) = F.relu_backward(g, x)
    np.testing.assert_array_equal(grad_x, np.where(x > 0, g, 0))
    _check_layer(ReLU(), x, rng.standard_normal(x.shape), g, F.relu(x), grad_x, {})


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_a_convolution_followed_by_a_relu_runs_with_the_relu_fused(ndim, rng, monkeypatch):
    """Sequential runs Conv -> ReLU as one convolution with its ReLU fused (F.relu is never called), with the
    numbers of the two layers run one after the other: the output, the input's and the parameters' gradients."""
    spatial = (7,) * ndim
    conv, relu = CONV[ndim][0](3, 4, 3, padding=1, rng=np.random.default_rng(0), dtype=F64), ReLU()
    model = Sequential(conv, relu, CONV[ndim][0](4, 2, 1, rng=np.random.default_rng(1), dtype=F64))
    x = rng.standard_normal((2, 3) + spatial)
    unfused = model[2].forward(relu.forward(conv.forward(x)))
    g = rng.standard_normal(unfused.shape)
    model[2].begin_gradients(), conv.begin_gradients()
    want_x = conv.backward(relu.backward(model[2].backward(g)))
    want_w, want_b = conv.weight_grad.copy(), conv.bias_grad.copy()
    calls = []
    monkeypatch.setattr(F, "relu", lambda *args, **kwargs: calls.append(args) or pytest.fail("F.relu was called"))
    y = model.forward(x)
    np.testing.assert_array_equal(y, unfused)
    assert calls == [] and (relu._output == 0).mean() > 0.2
    model.begin_gradients()
    np.testing.assert_array_equal(model.backward(g), want_x)
    np.testing.assert_array_equal(conv.weight_grad, want_w)
    np.testing.assert_array_equal(conv.bias_grad, want_b)


def test_a_relu_or_convolution_whose_forward_was_replaced_runs_as_written(rng):
    """A subclass's forward, or one set on the instance, is what runs: Sequential fuses only numconv's own two."""

    class Leaky(ReLU):
        def forward(self, x):
            self._output = np.where(x > 0, x, 0.5 * x)
            return self._output

    x = rng.standard_normal((1, 2, 5, 5))
    conv = Conv2d(2, 2, 3, rng=np.random.default_rng(0), dtype=F64)
    plain = conv.forward(x)
    assert (plain < 0).any()
    np.testing.assert_array_equal(Sequential(conv, Leaky()).forward(x), np.where(plain > 0, plain, 0.5 * plain))
    relu = ReLU()
    relu.forward = lambda value: value + 1.0
    np.testing.assert_array_equal(Sequential(conv, relu).forward(x), plain + 1.0)


MAX_POOLS = {1: MaxPool1d, 2: MaxPool2d, 3: MaxPool3d}


@pytest.mark.parametrize("ndim, options", [
    (1, dict(kernel_size=3, stride=2, padding=1)),  # overlapping windows: an input may be two windows' maximum
    (2, dict(kernel_size=2)),
    (2, dict(kernel_size=3, stride=2, ceil_mode=True)),
    (3, dict(kernel_size=(1, 2, 2))),
])
@pytest.mark.parametrize("training", [True, False])
def test_a_relu_followed_by_a_max_pooling_runs_its_backward_masked_over_the_pooled_output(ndim, options, training,
                                                                                           rng, monkeypatch):
    """Sequential runs ReLU -> MaxPool's backward as the pooling's backward of the gradient masked by the pooled
    output (F.relu_backward over the pooled shape, never the input's), with the numbers of the two layers run one
    after the other, bit for bit: windows wholly negative (a maximum of 0, ties to the first), a NaN (which passes
    the gradient), overlapping windows whose shared maximum gets both gradients, in training (indices kept) and
    evaluation; a convolution before them, whose gradients follow."""
    spatial = (9,) * ndim
    conv = CONV[ndim][0](2, 3, 3, padding=1, rng=np.random.default_rng(0), dtype=F64)
    relu, pool = ReLU(), MAX_POOLS[ndim](**options)
    model = Sequential(conv, relu, pool)
    model.train(training)
    x = rng.standard_normal((2, 2) + spatial)
    x[0, :, :4] = -5.0  # whole windows of the ReLU's output at 0
    x[1, 0, 3] = np.nan
    unfused = pool.forward(relu.forward(conv.forward(x)))
    g = rng.standard_normal(unfused.shape)
    conv.begin_gradients()
    want_x = conv.backward(relu.backward(pool.backward(g)))
    want_w, want_b = conv.weight_grad.copy(), conv.bias_grad.copy()
    assert np.isnan(unfused).any() and (unfused == 0).mean() > 0.1
    masked_shapes = []
    relu_backward = F.relu_backward
    monkeypatch.setattr(F, "relu_backward", lambda grad, value: masked_shapes.append(value.shape)
                        or relu_backward(grad, value))
    np.testing.assert_array_equal(model.forward(x), unfused)
    model.begin_gradients()
    got_x = model.backward(g)
    assert masked_shapes == [unfused.shape]
    np.testing.assert_array_equal(got_x, want_x)
    np.testing.assert_array_equal(conv.weight_grad, want_w)
    np.testing.assert_array_equal(conv.bias_grad, want_b)
    model.begin_gradients()
    assert model.backward(g, needs_input_grad=False) is None
    np.testing.assert_array_equal(conv.weight_grad, want_w)


def test_a_relu_or_max_pooling_whose_backward_was_replaced_runs_as_written(rng):
    """Sequential masks the pooled gradient only for numconv's own ReLU and max-pooling, and only after its own
    forward ran them together: a ReLU subclass's backward, a backward set on the instance, a pooling whose input is
    no longer the ReLU's output, and the two run by hand after the Sequential's forward run as written."""

    class Doubled(ReLU):
        def backward(self, grad_output):
            return 2.0 * super().backward(grad_output)

    x = rng.standard_normal((1, 2, 6, 6))
    g = rng.standard_normal((1, 2, 3, 3))
    plain = Sequential(ReLU(), MaxPool2d(2))
    plain.forward(x)
    expected = plain.backward(g)
    doubled = Sequential(Doubled(), MaxPool2d(2))
    doubled.forward(x)
    np.testing.assert_array_equal(doubled.backward(g), 2.0 * expected)
    replaced = Sequential(ReLU(), MaxPool2d(2))
    replaced.forward(x)
    replaced[1].backward = lambda grad: np.ones_like(x)
    np.testing.assert_array_equal(replaced.backward(g), np.where(x > 0, 1.0, 0.0))
    plain[1].forward(-np.abs(x))  # the pooling alone, on another input: its backward no longer follows the ReLU's
    apart = plain[0].backward(plain[1].backward(g))
    assert (apart != 0).any()
    np.testing.assert_array_equal(plain.backward(g), apart)
    plain.forward(np.abs(x))  # then both layers by hand on another input: the Sequential's pooled output is stale
    plain[1].forward(plain[0].forward(-np.abs(x)))
    np.testing.assert_array_equal(plain.backward(g), np.zeros_like(x))


def test_local_response_norm_layer_matches_functional(rng):
    # distinct constants, so that a layer passing them in the wrong order is caught
    options = dict(size=3, alpha=0.3, beta=0.6, k=1.5)
    layer = LocalResponseNorm(**options)
    x = rng.standard_normal((2, 6, 4, 3)) * 2
    g = rng.standard_normal(x.shape)
    expected_y = F.local_response_norm(x, **options)
    (grad_x,) = F.local_response_norm_backward(g, x, **options)
    _check_layer(layer, x, rng.standard_normal(x.shape), g, expected_y, grad_x, {})


@pytest.mark.parametrize("shape", [(2, 3, 4), (2, 3, 4, 5), (1, 2, 3, 4, 2)])
def test_flatten_layer(shape, rng):
    x = rng.standard_normal(shape)
    g = rng.standard_normal((shape[0], int(np.prod(shape[1:]))))
    _check_layer(Flatten(), x, rng.standard_normal(shape), g, x.reshape(shape[0], -1), g.reshape(shape), {})


def test_dropout_is_identity_in_eval_mode(rng):
    layer = Dropout(0.5, rng=np.random.default_rng(0)).eval()
    assert layer.training is False
    x = rng.standard_normal((4, 50))
    g = rng.standard_normal(x.shape)
    _check_layer(layer, x, rng.standard_normal(x.shape), g, x, g, {})


def test_dropout_in_training_matches_functional_with_the_same_generator(rng):
    x = rng.standard_normal((8, 300)) + 5.0  # no zeros in the input: a zero output means dropped
    layer = Dropout(0.3, rng=np.random.default_rng(42))
    assert layer.training is True
    want, mask = F.dropout(x, 0.3, training=True, rng=np.random.default_rng(42), return_mask=True)
    y = layer(x)
    np.testing.assert_array_equal(y, want)
    np.testing.assert_allclose(y[mask], x[mask] / 0.7, rtol=1e-15)
    assert not y[~mask].any()
    assert abs((~mask).mean() - 0.3) < 0.03
    g = rng.standard_normal(x.shape)
    np.testing.assert_array_equal(layer.backward(g), F.dropout_backward(g, mask, 0.3)[0])


def test_dropout_masks_differ_between_calls_and_repeat_for_a_seed(rng):
    x = np.ones((4, 256))
    first = Dropout(0.5, rng=np.random.default_rng(7))
    second = Dropout(0.5, rng=np.random.default_rng(7))
    a1, a2 = first(x), first(x)
    assert not np.array_equal(a1, a2)
    b1, b2 = second(x), second(x)
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)
    assert set(np.unique(a1)) == {0.0, 2.0}
    # the backward routes through the latest mask, not the first
    g = rng.standard_normal(x.shape)
    np.testing.assert_array_equal(first.backward(g), np.where(a2 != 0, 2 * g, 0))


def test_dropout_backward_without_a_training_forward_raises(rng):
    layer = Dropout(0.5, rng=rng)
    with pytest.raises(RuntimeError, match="needs a forward"):
        layer.backward(np.ones((2, 3)))
    layer.forward(np.ones((2, 3)))
    layer.astype(np.float64)  # drops the mask, as to() does
    with pytest.raises(RuntimeError, match="needs a forward"):
        layer.backward(np.ones((2, 3)))
    layer.eval()
    np.testing.assert_array_equal(layer.backward(np.full((2, 3), 2.0)), np.full((2, 3), 2.0))


def test_dropout_edge_probabilities(rng):
    x = rng.standard_normal((3, 40))
    np.testing.assert_array_equal(Dropout(0.0, rng=rng)(x), x)
    layer = Dropout(1.0, rng=rng)
    assert not layer(x).any()
    assert not layer.backward(np.ones_like(x)).any()


def test_train_and_eval_reach_every_nested_layer(rng):
    model = Sequential(OrderedDict(
        features=Sequential(Linear(5, 6, rng=rng, dtype=F64), ReLU(), Dropout(0.5, rng=rng)),
        classifier=Sequential(Dropout(0.5, rng=rng), Linear(6, 2, rng=rng, dtype=F64)),
    ))
    layers = [layer for _, layer in model.named_layers()]
    assert len(layers) == 5 and all(layer.training for layer in layers)
    assert model.eval() is model
    assert not model.training and not any(layer.training for layer in layers)
    x = rng.standard_normal((3, 5))
    np.testing.assert_array_equal(model(x), model(x))
    model.train()
    assert all(layer.training for layer in layers) and model.features.training
    assert not np.array_equal(model(x), model(x))
    model.train(False)
    assert not any(layer.training for layer in layers)


# --- Sequential ---------------------------------------------------------------------------------------------------


def _small_net(rng, dtype=F64):
    """(N, 1, 8, 8) -> (N, 5)."""
    return Sequential(Conv2d(1, 2, 3, rng=rng, dtype=dtype), ReLU(), MaxPool2d(2), Flatten(),
                      Linear(18, 5, rng=rng, dtype=dtype))


def test_sequential_indexing_iteration_and_length(rng):
    layers = [Conv2d(1, 2, 3, rng=rng, dtype=F64), ReLU(), MaxPool2d(2), Flatten(), Linear(18, 5, rng=rng, dtype=F64)]
    model = Sequential(*layers)
    assert len(model) == 5
    assert list(model) == layers and all(a is b for a, b in zip(model, layers))
    assert model[0] is layers[0] and model[4] is layers[4]
    assert model[-1] is layers[4] and model[-5] is layers[0]
    assert model["3"] is layers[3]
    with pytest.raises(IndexError):
        model[5]
    with pytest.raises(KeyError):
        model["conv"]
    with pytest.raises(AttributeError):
        model.conv
    head, tail = model[:3], model[3:]
    assert isinstance(head, Sequential) and len(head) == 3 and len(tail) == 2
    assert all(a is b for a, b in zip(tail, layers[3:]))
    # a slice keeps the layers' names, as torch.nn.Sequential's does
    assert [name for name, _ in tail.named_parameters()] == ["4.weight", "4.bias"]
    x = rng.standard_normal((2, 1, 8, 8))
    np.testing.assert_allclose(tail(head(x)), model(x), **CLOSE)
    assert model.output_shape(x.shape) == (2, 5)
    assert head.output_shape(x.shape) == (2, 2, 3, 3)


def test_sequential_names_from_ordered_dict(rng):
    conv, relu = Conv1d(2, 3, 3, rng=rng, dtype=F64), ReLU()
    model = Sequential(OrderedDict(conv=conv, act=relu))
    assert model["conv"] is conv and model.conv is conv and model.act is relu and model[1] is relu
    assert [name for name, _ in model.named_parameters()] == ["conv.weight", "conv.bias"]
    assert [name for name, _ in model.named_layers()] == ["conv", "act"]


def test_sequential_rejects_non_layers():
    with pytest.raises(TypeError, match="'1'"):
        Sequential(ReLU(), lambda x: x)


def _nested(rng, dtype=F64):
    """AlexNet's naming: features.<i>, flatten, classifier.<i>."""
    features = Sequential(Conv2d(2, 4, 3, rng=rng, dtype=dtype), ReLU(), MaxPool2d(2),
                          Conv2d(4, 4, 3, padding=1, groups=2, rng=rng, dtype=dtype), ReLU())
    classifier = Sequential(Dropout(0.5, rng=rng), Linear(4 * 3 * 3, 6, rng=rng, dtype=dtype), ReLU(),
                            Linear(6, 3, rng=rng, dtype=dtype))
    return Sequential(OrderedDict(features=features, flatten=Flatten(), classifier=classifier))


NESTED_KEYS = ["features.0.weight", "features.0.bias", "features.3.weight", "features.3.bias",
               "classifier.1.weight", "classifier.1.bias", "classifier.3.weight", "classifier.3.bias"]


def test_nested_sequential_names_and_gradients(rng):
    model = _nested(rng).eval()
    assert [name for name, _ in model.named_parameters()] == NESTED_KEYS
    assert [name for name, _ in model.named_gradients()] == NESTED_KEYS
    assert model.features[3] is model["features"]["3"]
    assert [name for name, _ in model.named_layers()][:6] == [
        "features.0", "features.1", "features.2", "features.3", "features.4", "flatten"]
    assert model.num_parameters() == sum(a.size for _, a in model.named_parameters()) == 4 * 2 * 9 + 4 + 4 * 2 * 9 \
        + 4 + 36 * 6 + 6 + 6 * 3 + 3
    # the same layers flattened into one Sequential compute the same function and the same gradients
    flat = Sequential(*[layer for _, layer in model.named_layers()])
    x = rng.standard_normal((2, 2, 8, 8))
    g = rng.standard_normal((2, 3))
    y = model(x)
    grad_x = model.backward(g)
    nested_grads = [grad.copy() for grad in model.gradients()]
    model.zero_grad()
    np.testing.assert_array_equal(flat(x), y)
    np.testing.assert_array_equal(flat.backward(g), grad_x)
    for got, want in zip(model.gradients(), nested_grads):
        np.testing.assert_array_equal(got, want)
    # and the nested model's gradients are each layer's: the last Linear's weight gradient is g^T h
    hidden = model.classifier[:3](model.flatten(model.features(x)))
    np.testing.assert_allclose(dict(model.named_gradients())["classifier.3.weight"], g.T @ hidden, **CLOSE)


class Recorder(Module):
    """A parameter-free layer that records its backward calls."""

    def __init__(self):
        super().__init__()
        self.backward_calls = 0

    def forward(self, x):
        return x

    def backward(self, grad_output):
        self.backward_calls += 1
        return grad_output


def test_backward_without_input_grad_skips_the_input_side_only(rng, monkeypatch):
    """needs_input_grad=False: None comes back, the layers before the first weights are not run backward, the
    first convolution is asked for no input gradient, and every parameter's gradient is the full backward's."""
    recorder = Recorder()
    model = Sequential(recorder, _nested(rng).eval())
    x = rng.standard_normal((2, 2, 8, 8))
    g = rng.standard_normal((2, 3))
    model(x)
    assert model.backward(g).shape == x.shape and recorder.backward_calls == 1
    full = [grad.copy() for grad in model.gradients()]
    model.zero_grad()
    asked = []
    conv_backward = F.conv2d_backward
    monkeypatch.setattr(F, "conv2d_backward", lambda *a, **k: asked.append(k["needs_input_grad"]) or
                        conv_backward(*a, **k))
    assert model.backward(g, needs_input_grad=False) is None
    assert recorder.backward_calls == 1
    assert asked == [True, False]  # features.3 then features.0, the first layer with weights
    for got, want in zip(model.gradients(), full):
        np.testing.assert_array_equal(got, want)


class PlainLinear(Linear):
    """A user's layer with parameters whose backward takes no needs_input_grad."""

    def backward(self, grad_output):
        return super().backward(grad_output)


def test_backward_without_input_grad_works_with_a_users_layer(rng):
    x, g = rng.standard_normal((3, 4)), rng.standard_normal((3, 2))
    model = Sequential(ReLU(), PlainLinear(4, 2, rng=np.random.default_rng(1), dtype=F64))
    reference = Sequential(ReLU(), Linear(4, 2, rng=np.random.default_rng(1), dtype=F64))
    for net in (model, reference):
        net(x)
    assert model.backward(g, needs_input_grad=False) is None
    reference.backward(g)
    for got, want in zip(model.gradients(), reference.gradients()):
        assert np.abs(want).max() > 0
        np.testing.assert_allclose(got, want, **CLOSE)


def test_parameter_names_equal_torch_sequential(rng):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    reference = nn.Sequential(OrderedDict(
        features=nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.MaxPool2d(2),
                               nn.Conv2d(4, 4, 3, padding=1, groups=2), nn.ReLU()),
        flatten=nn.Flatten(),
        classifier=nn.Sequential(nn.Dropout(0.5), nn.Linear(36, 6), nn.ReLU(), nn.Linear(6, 3)),
    ))
    model = _nested(rng)
    assert list(model.state_dict()) == list(reference.state_dict()) == NESTED_KEYS
    for (name, array), (torch_name, tensor) in zip(model.named_parameters(), reference.named_parameters()):
        assert name == torch_name and array.shape == tuple(tensor.shape)


# --- state dicts and dtypes ---------------------------------------------------------------------------------------


def test_state_dict_is_a_copy_with_every_parameter(rng):
    model = _small_net(rng)
    state = model.state_dict()
    assert list(state) == ["0.weight", "0.bias", "4.weight", "4.bias"]
    for (name, array), (key, value) in zip(model.named_parameters(), state.items()):
        assert name == key and value is not array
        np.testing.assert_array_equal(value, array)
    state["0.weight"][...] = 0
    assert model[0].weight.any()


def test_state_dict_round_trip(rng):
    source, target = _small_net(np.random.default_rng(0)), _small_net(np.random.default_rng(1))
    for layer in (source[0], source[4]):
        layer.bias[...] = rng.standard_normal(layer.bias.shape)
    x = rng.standard_normal((3, 1, 8, 8))
    assert not np.allclose(source(x), target(x))
    arrays = target.parameters()
    assert target.load_state_dict(source.state_dict()) is target
    np.testing.assert_array_equal(target(x), source(x))
    # loaded in place: whoever holds the arrays (an optimiser) sees the new values
    assert all(a is b for a, b in zip(arrays, target.parameters()))
    # float64 values load into a float32 model as float32
    small32 = _small_net(np.random.default_rng(2), dtype=np.float32)
    small32.load_state_dict(source.state_dict())
    assert small32[0].weight.dtype == np.float32
    np.testing.assert_allclose(small32[0].weight, source[0].weight, rtol=1e-7)


def test_load_state_dict_non_strict_loads_the_keys_given(rng):
    source, target = _small_net(np.random.default_rng(0)), _small_net(np.random.default_rng(1))
    before = target[4].weight.copy()
    target.load_state_dict({"0.weight": source[0].weight}, strict=False)
    np.testing.assert_array_equal(target[0].weight, source[0].weight)
    np.testing.assert_array_equal(target[4].weight, before)


@pytest.mark.parametrize("change,key", [
    ("missing", "4.bias"),
    ("unexpected", "5.weight"),
    ("unexpected", "0.running_mean"),
    ("shape", "4.weight"),
    ("shape", "0.bias"),
])
def test_load_state_dict_errors_name_the_key(change, key, rng):
    model = _small_net(rng)
    state = model.state_dict()
    if change == "missing":
        del state[key]
    elif change == "unexpected":
        state[key] = np.zeros(3)
    else:
        state[key] = np.zeros(state[key].shape[:-1] + (state[key].shape[-1] + 1,))
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        model.load_state_dict(state)


def test_astype_float64(rng):
    model = _nested(np.random.default_rng(3), dtype=np.float32).eval()
    weights32 = [array.copy() for array in model.parameters()]
    x = rng.standard_normal((2, 2, 8, 8)).astype(np.float32)
    y32 = model(x)
    assert y32.dtype == np.float32
    assert model.astype(np.float64) is model
    assert all(a.dtype == np.float64 for a in model.parameters() + model.gradients())
    assert len(model.parameters()) == len(NESTED_KEYS)
    for got, want in zip(model.parameters(), weights32):
        np.testing.assert_array_equal(got, want.astype(np.float64))
    y64 = model(x.astype(np.float64))
    assert y64.dtype == np.float64
    np.testing.assert_allclose(y64, y32, rtol=1e-4, atol=1e-5)
    model.backward(np.ones_like(y64))
    assert all(g.dtype == np.float64 and g.any() for g in model.gradients())
    with pytest.raises(TypeError):
        model(x)  # a float32 input to a float64 model: mixed dtypes are an error
    with pytest.raises(TypeError, match="dtype"):
        model.astype(np.int32)


# --- constructor validation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("build,error,match", [
    (lambda: Conv2d(3, 4, 3, groups=2), ValueError, "groups"),
    (lambda: Conv2d(4, 3, 3, groups=2), ValueError, "groups"),
    (lambda: Conv3d(4, 4, 3, groups=0), ValueError, "groups"),
    (lambda: Conv2d(4, 4, 3, groups=1.5), TypeError, "groups"),
    (lambda: Conv2d(3, 4, 3, stride=2, padding="same"), ValueError, "same"),
    (lambda: Conv2d(3, 4, 3, padding="full"), ValueError, "padding"),
    (lambda: Conv2d(3, 4, 3, padding=-1), ValueError, "padding"),
    (lambda: Conv2d(3, 4, 0), ValueError, "kernel_size"),
    (lambda: Conv2d(3, 4, (3, 3, 3)), ValueError, "kernel_size"),
    (lambda: Conv1d(3, 4, 3, stride=0), ValueError, "stride"),
    (lambda: Conv1d(3, 4, 3, dilation=0), ValueError, "dilation"),
    (lambda: Conv1d(0, 4, 3), ValueError, "in_channels"),
    (lambda: Conv1d(3, 0, 3), ValueError, "out_channels"),
    (lambda: Conv2d(3.0, 4, 3), TypeError, "in_channels"),
    (lambda: Conv2d(3, 4, 3, dtype=np.int32), TypeError, "dtype"),
    (lambda: Linear(0, 3), ValueError, "in_features"),
    (lambda: Linear(3, 0), ValueError, "out_features"),
    (lambda: Linear(3, 2, dtype=np.float16), TypeError, "dtype"),
    (lambda: LocalResponseNorm(0), ValueError, "size"),
    (lambda: Dropout(1.5), ValueError, "p"),
    (lambda: Dropout(-0.1), ValueError, "p"),
    (lambda: Dropout("0.5"), TypeError, "p"),  # as F.dropout: not a number
])
def test_constructor_validation(build, error, match):
    with pytest.raises(error, match=match):
        build()


@pytest.mark.parametrize("build", [
    lambda: MaxPool2d(0),
    lambda: MaxPool1d(2, stride=0),
    lambda: MaxPool2d(2, padding=2),
    lambda: AvgPool2d(3, stride=-1),
    lambda: AvgPool3d((2, 2)),
], ids=["maxpool2d-kernel0", "maxpool1d-stride0", "maxpool2d-padding-a-whole-window", "avgpool2d-stride-1",
        "avgpool3d-kernel-2-tuple"])
def test_pool_constructor_validation(build):
    with pytest.raises(ValueError):
        build()


def test_valid_constructions_keep_their_arguments():
    conv = Conv2d(4, 6, (3, 5), stride=(1, 2), padding=(1, 2), dilation=1, groups=2)
    assert conv.weight.shape == (6, 2, 3, 5) and conv.weight.dtype == np.float32
    assert conv.output_shape((1, 4, 10, 10)) == (1, 6, 10, 5)
    assert Conv1d(2, 3, 4, padding="same", dilation=3).output_shape((2, 2, 17)) == (2, 3, 17)
    assert Conv3d(2, 2, 3, padding="valid").output_shape((1, 2, 5, 6, 7)) == (1, 2, 3, 4, 5)
    assert MaxPool2d(3, stride=2, ceil_mode=True).output_shape((1, 1, 8, 8)) == (1, 1, 4, 4)
    assert MaxPool2d(3, stride=2).output_shape((1, 1, 8, 8)) == (1, 1, 3, 3)
    assert isinstance(Linear(2, 2), Module) and Linear(2, 2, bias=False).num_parameters() == 4


class _Scale(Module):
    """A user's layer with a parameter, y = w x, whose backward adds to its gradient with NumPy."""

    _parameter_names = ("w",)

    def __init__(self):
        super().__init__()
        self.w, self.w_grad = np.array([2.0]), np.zeros(1)

    def forward(self, x):
        self._input = x
        return self.w * x

    def backward(self, grad_output):
        self.w_grad += (grad_output * self._input).sum()
        return grad_output * self.w


class _LoggedLinear(Linear):
    """A user's subclass of a numconv layer whose own backward adds to the gradients with NumPy."""

    def backward(self, grad_output, needs_input_grad=True):
        self.weight_grad += grad_output.T @ self._input
        self.bias_grad += grad_output.sum(axis=0)
        return grad_output @ self.weight


def test_begin_gradients_zeroes_a_layer_that_adds_to_its_gradients(rng):
    """A layer that does not write its gradients itself (a user's, or a user's subclass of numconv's that overrides
    its backward) is zeroed by begin_gradients, as by zero_grad, beside numconv's layers that write theirs."""
    model = Sequential(Linear(3, 2, rng=rng, dtype=F64), _Scale(), _LoggedLinear(2, 2, rng=rng, dtype=F64))
    x, g = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    model.forward(x)
    model.backward(g)
    once = [grad.copy() for grad in model.gradients()]
    model.backward(g)
    model.begin_gradients()
    model.backward(g)
    model.end_gradients()
    for grad, expected in zip(model.gradients(), once):
        np.testing.assert_allclose(grad, expected, **CLOSE)
    assert model[1].w_grad[0] != 0 and np.abs(model[2].weight_grad).max() > 0
