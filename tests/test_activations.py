"""LeakyReLU, sigmoid, tanh, softmax, the element-wise product and ReLU in place: against PyTorch, at extreme
values, as layers, on the CUDA backend, through ONNX, and their errors."""
import numpy as np
import pytest

import numconv.functional as F
from numconv import layers


def _torch():
    return pytest.importorskip("torch")


def _with_grad(torch, function, arrays, grad_output):
    """function's output and the gradients of <grad_output, output> with respect to each array, by PyTorch."""
    tensors = [torch.tensor(array, requires_grad=True) for array in arrays]
    out = function(*tensors)
    out.backward(torch.tensor(grad_output))
    return out.detach().numpy(), [tensor.grad.numpy() for tensor in tensors]


@pytest.mark.parametrize("name", ["leaky_relu", "sigmoid", "tanh"])
def test_element_wise_activations_and_their_gradients_equal_torch(name, rng):
    torch = _torch()
    x = rng.standard_normal((3, 4, 5)) * 4
    x[0, 0, :3] = [0.0, -0.0, 1e-300]
    g = rng.standard_normal(x.shape)
    if name == "leaky_relu":
        want, (want_grad,) = _with_grad(torch, lambda t: torch.nn.functional.leaky_relu(t, 0.2), [x], g)
        got, (got_grad,) = F.leaky_relu(x, 0.2), F.leaky_relu_backward(g, x, 0.2)
    else:
        want, (want_grad,) = _with_grad(torch, getattr(torch, name), [x], g)
        got = getattr(F, name)(x)
        (got_grad,) = getattr(F, name + "_backward")(g, got)
    np.testing.assert_allclose(got, want, rtol=1e-15, atol=1e-300)
    # 1 - y^2 near |y| = 1 keeps the absolute accuracy of y, not its relative accuracy, in any implementation
    np.testing.assert_allclose(got_grad, want_grad, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("dim", [-1, 0, 1, 2])
def test_softmax_along_any_axis_and_its_gradient_equal_torch(dim, rng):
    torch = _torch()
    x = rng.standard_normal((3, 4, 5)) * 3
    g = rng.standard_normal(x.shape)
    want, (want_grad,) = _with_grad(torch, lambda t: torch.softmax(t, dim), [x], g)
    got = F.softmax(x, dim)
    np.testing.assert_allclose(got, want, rtol=1e-14)
    np.testing.assert_allclose(F.softmax_backward(g, got, dim)[0], want_grad, rtol=1e-12, atol=1e-15)


def test_the_product_and_its_gradients_equal_torch(rng):
    torch = _torch()
    a, b, g = (rng.standard_normal((2, 3, 4)) for _ in range(3))
    want, want_grads = _with_grad(torch, lambda s, t: s * t, [a, b], g)
    np.testing.assert_array_equal(F.mul(a, b), want)
    for got, expected in zip(F.mul_backward(g, a, b), want_grads):
        np.testing.assert_array_equal(got, expected)


def test_extreme_inputs_neither_overflow_nor_lose_the_answer():
    x = np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0], dtype=np.float32)
    np.testing.assert_allclose(F.sigmoid(x), [0.0, np.exp(-40.0), 0.5, 1.0, 1.0], rtol=1e-6)
    assert F.sigmoid(x)[1] > 0  # exp(-40) survives in float32
    np.testing.assert_array_equal(F.tanh(x), [-1.0, -1.0, 0.0, 1.0, 1.0])
    logits = np.array([[1000.0, 999.0, -1000.0]])
    np.testing.assert_allclose(F.softmax(logits), [[1 / (1 + np.exp(-1.0)), 1 / (1 + np.e), 0.0]], rtol=1e-14)
    assert np.isnan(F.leaky_relu(np.array([np.nan])))[0]


@pytest.mark.parametrize("ours, theirs", [
    (lambda: layers.LeakyReLU(0.1), "LeakyReLU(0.1)"), (layers.Sigmoid, "Sigmoid()"), (layers.Tanh, "Tanh()"),
    (lambda: layers.Softmax(1), "Softmax(1)"), (layers.ReLU, "ReLU()"),
])
def test_activation_layers_equal_torchs_in_a_network(ours, theirs, rng):
    torch = _torch()
    model = layers.Sequential(layers.Linear(6, 5, rng=rng, dtype=np.float64), ours(),
                              layers.Linear(5, 3, rng=rng, dtype=np.float64))
    reference = torch.nn.Sequential(torch.nn.Linear(6, 5), eval(f"torch.nn.{theirs}"), torch.nn.Linear(5, 3)).double()
    reference.load_state_dict({key: torch.tensor(value) for key, value in model.state_dict().items()})
    x, g = rng.standard_normal((4, 6)), rng.standard_normal((4, 3))
    want, (want_grad,) = _with_grad(torch, reference, [x], g)
    np.testing.assert_allclose(model(x), want, rtol=1e-12)
    np.testing.assert_allclose(model.backward(g), want_grad, rtol=1e-11, atol=1e-14)
    for (name, grad), (_, parameter) in zip(model.named_gradients(), reference.named_parameters()):
        np.testing.assert_allclose(grad, parameter.grad.numpy(), rtol=1e-11, atol=1e-14, err_msg=name)


def test_the_cuda_backend_activates_as_the_cpu_does(rng):
    pytest.importorskip("numba.cuda")
    from numconv import backend
    from spec import registry

    if "cuda" not in registry.available_backends():
        pytest.skip("numba-cuda finds neither a GPU nor its simulator")
    x, g = rng.standard_normal((3, 5)) * 3, rng.standard_normal((3, 5))
    device_x, device_g = backend.to_device(x), backend.to_device(g)
    for name in ("sigmoid", "tanh", "softmax"):
        out = getattr(F, name)(device_x)
        np.testing.assert_allclose(backend.to_host(out), getattr(F, name)(x), rtol=1e-14)
        np.testing.assert_allclose(backend.to_host(getattr(F, name + "_backward")(device_g, out)[0]),
                                   getattr(F, name + "_backward")(g, getattr(F, name)(x))[0], rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(backend.to_host(F.leaky_relu(device_x, 0.3)), F.leaky_relu(x, 0.3))
    np.testing.assert_array_equal(backend.to_host(F.leaky_relu_backward(device_g, device_x, 0.3)[0]),
                                  F.leaky_relu_backward(g, x, 0.3)[0])
    np.testing.assert_array_equal(backend.to_host(F.mul(device_x, device_g)), x * g)
    in_place = backend.to_device(x)
    F.relu(in_place, inplace=True)
    np.testing.assert_array_equal(backend.to_host(in_place), np.maximum(x, 0))
    with pytest.raises(ValueError, match="softmax on the device runs over the last axis"):
        F.softmax(backend.to_device(rng.standard_normal((2, 3, 4))), 1)


def test_exported_activations_run_in_onnxruntime_with_numconvs_outputs(rng):
    onnx_runtime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import numconv.onnx as nx

    model = layers.Sequential(layers.Linear(6, 5, rng=rng), layers.LeakyReLU(0.2), layers.Linear(5, 5, rng=rng),
                              layers.Tanh(), layers.Linear(5, 4, rng=rng), layers.Sigmoid(),
                              layers.Linear(4, 3, rng=rng), layers.Softmax(-1))
    x = rng.standard_normal((2, 6)).astype(np.float32)
    proto = nx.to_model(model, x.shape)
    (got,) = onnx_runtime.InferenceSession(proto.SerializeToString(),
                                           providers=["CPUExecutionProvider"]).run(None, {"input": x})
    np.testing.assert_allclose(got, model(x), rtol=1e-5, atol=1e-7)
    again = nx.to_module(proto)
    assert [type(layer).__name__ for layer in again] == [type(layer).__name__ for layer in model]
    np.testing.assert_array_equal(again(x), model(x))


def test_relu_in_place_writes_into_its_input_and_returns_it(rng):
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    x[0, 0, :3] = [np.nan, -0.0, -np.inf]
    want = F.relu(x)
    assert not np.array_equal(want, x, equal_nan=True)
    got = F.relu(x, inplace=True)
    assert got is x
    np.testing.assert_array_equal(x, want)


@pytest.mark.parametrize("call, error, message", [
    (lambda x: F.softmax(x, 3), ValueError, r"dim must lie in \[-3, 3\) for an input of shape \(2, 3, 4\), got 3"),
    (lambda x: F.softmax(x, 1.0), TypeError, "dim must be an int"),
    (lambda x: F.mul(x, x[:, :1]), ValueError, r"other must have shape \(2, 3, 4\)"),
    (lambda x: F.leaky_relu(x, "0.1"), TypeError, "negative_slope must be a real number"),
    (lambda x: F.sigmoid_backward(x[:1], x), ValueError, "grad_output must have shape"),
    (lambda x: F.tanh(x.astype(np.int32)), TypeError, "input must be float32 or float64"),
    (lambda x: F.relu(x[:, ::2], inplace=True), ValueError, "inplace=True writes into input, which must then be"),
    (lambda x: F.relu(x.tolist(), inplace=True), ValueError, "got a list that would have to be copied first"),
    (lambda x: F.relu(x, inplace=1), TypeError, "inplace must be a bool, got 1"),
])
def test_bad_activation_arguments_get_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        call(np.ones((2, 3, 4)))
