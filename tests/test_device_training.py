"""Layers, the optimiser, ``fit`` and the command line on the CUDA backend, against the same run on the CPU.

Without a GPU this runs under Numba's CUDA simulator (tests/conftest.py), so the networks are tiny: a small
convolutional network over 8x8 images that still has every kind of layer a training step goes through (convolution,
ReLU, max-pooling, flatten, dropout, linear) and runs a few steps of SGD with momentum and weight decay.
"""
import json

import numpy as np
import pytest

from spec import registry

pytest.importorskip("numba.cuda")

from numconv import backend, cli, data, layers, optim  # noqa: E402
from numconv import functional as F  # noqa: E402
from numconv.train import CHECKPOINT, evaluate, fit, load_checkpoint  # noqa: E402

pytestmark = pytest.mark.skipif("cuda" not in registry.available_backends(),
                                reason="numba-cuda finds neither a GPU nor its simulator")

TOL = dict(rtol=1e-4, atol=1e-5)


def tiny_net(seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return layers.Sequential(
        layers.Conv2d(1, 3, 3, padding=1, rng=rng, dtype=dtype), layers.ReLU(), layers.MaxPool2d(2),
        layers.Flatten(), layers.Dropout(0.25, rng=np.random.default_rng(seed + 1)),
        layers.Linear(48, 4, rng=rng, dtype=dtype),
    )


def tiny_data(count, seed):
    """``count`` 1x8x8 images of four classes, each class a bright quadrant, with noise: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, size=count)
    images = rng.normal(0.0, 0.3, size=(count, 1, 8, 8)).astype(np.float32)
    for image, label in zip(images, labels):
        row, col = divmod(int(label), 2)
        image[0, 4 * row:4 * row + 4, 4 * col:4 * col + 4] += 1.0
    return data.Dataset(images, labels.astype(np.int64), 4, "quadrants")


def on_device(array):
    assert backend.is_device_array(array), f"expected a device array, got {type(array).__name__}"
    return backend.to_host(array)


def test_to_moves_parameters_and_gradients_and_back():
    model = tiny_net()
    before = model.state_dict()
    assert model.device == "cpu"
    assert model.to("cuda") is model
    assert model.device == "cuda"
    for (name, param), (_, grad) in zip(model.named_parameters(), model.named_gradients()):
        np.testing.assert_array_equal(on_device(param), before[name])
        assert backend.is_device_array(grad)
    state = model.state_dict()
    assert all(type(value) is np.ndarray for value in state.values())
    model.to("cpu")
    assert model.device == "cpu" and all(type(p) is np.ndarray and p.flags.c_contiguous for p in model.parameters())
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


def test_to_rejects_an_unknown_device():
    with pytest.raises(ValueError, match="'tpu'"):
        tiny_net().to("tpu")


def test_load_state_dict_into_a_model_on_the_device():
    source, target = tiny_net(seed=1), tiny_net(seed=2).to("cuda")
    target.load_state_dict(source.state_dict())
    for name, value in target.state_dict().items():
        np.testing.assert_array_equal(value, source.state_dict()[name])
    with pytest.raises(ValueError, match="0.weight"):
        target.load_state_dict({**source.state_dict(), "0.weight": np.zeros((3, 1, 2, 2), np.float32)})


def test_astype_on_the_device_keeps_the_values():
    model = tiny_net().to("cuda")
    weights = model.state_dict()
    model.astype(np.float64)
    assert all(param.dtype == np.float64 and backend.is_device_array(param) for param in model.parameters())
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, weights[name].astype(np.float64))


def test_backward_accumulates_and_zero_grad_clears_on_the_device(rng):
    x = rng.standard_normal((2, 1, 8, 8)).astype(np.float32)
    grad = rng.standard_normal((2, 4)).astype(np.float32)
    host, device = tiny_net().eval(), tiny_net().eval().to("cuda")
    for _ in range(2):  # two backwards add up: the gradients are twice one backward's
        host.forward(x)
        grad_input = host.backward(grad)
        device.forward(backend.to_device(x))
        device_grad_input = device.backward(backend.to_device(grad))
    np.testing.assert_allclose(on_device(device_grad_input), grad_input, **TOL)
    for expected, actual in zip(host.gradients(), device.gradients()):
        assert np.abs(expected).max() > 0
        np.testing.assert_allclose(on_device(actual), expected, **TOL)
    device.zero_grad()
    assert all(not on_device(g).any() for g in device.gradients())


def test_a_training_step_writes_the_gradients_without_zeroing_or_adding(rng):
    """A device step launches no fill of the gradients before its forward and no addition into them: each layer's
    backward writes them; and its gradients are the CPU step's."""
    from numconv.kernels.cuda import support
    from numconv.train import step

    x = rng.standard_normal((3, 1, 8, 8)).astype(np.float32)
    target = np.array([0, 3, 1])
    host, device = tiny_net(), tiny_net().to("cuda")
    for model in (host, device):
        for grad in model.gradients():
            backend.fill(grad, 5.0)  # what a last step left there: never added to
    step(host, optim.SGD(host, lr=0.0), x, target, 3)
    optimizer, inputs, labels = optim.SGD(device, lr=0.0), backend.to_device(x), backend.to_device(target)
    with support.recording_launches() as launches:
        step(device, optimizer, inputs, labels, 3)
    kernels = [launch.kernel for launch in launches]
    assert "_accumulate" not in kernels
    assert kernels[0].endswith("gemm"), kernels[:3]  # the forward's first product comes first
    for expected, actual in zip(host.gradients(), device.gradients()):
        assert np.abs(expected).max() > 0
        np.testing.assert_allclose(on_device(actual), expected, **TOL)


def test_a_device_model_refuses_host_inputs():
    model = tiny_net().to("cuda")
    with pytest.raises(TypeError, match="mixed"):
        model.forward(np.zeros((1, 1, 8, 8), np.float32))


def test_sgd_made_before_the_move_follows_the_model(rng):
    """The optimiser is made on the host, the model moves; the velocities follow and the steps match the CPU's."""
    x = rng.standard_normal((3, 1, 8, 8)).astype(np.float32)
    target = np.array([0, 3, 1])
    runs = {}
    for device in ("cpu", "cuda"):
        model = tiny_net()
        sgd = optim.SGD(model, lr=0.1, momentum=0.9, weight_decay=1e-3, nesterov=True)
        model.to(device)
        for _ in range(3):
            logits = model.forward(backend.to_backend(x, device))
            model.zero_grad()
            grad_logits, _ = F.cross_entropy_backward(1.0, logits, backend.to_backend(target, device))
            model.backward(grad_logits, needs_input_grad=False)
            sgd.step()
        assert all(backend.backend_of(v) == device for v in sgd.velocities)
        runs[device] = (model.state_dict(), sgd.state_dict())
    for part in (0, 1):
        for key, value in runs["cpu"][part].items():
            assert type(runs["cuda"][part][key]) is np.ndarray
            np.testing.assert_allclose(runs["cuda"][part][key], value, **TOL)


def test_sgd_made_from_arrays_refuses_to_step_after_the_move():
    model = tiny_net()
    sgd = optim.SGD(list(zip(model.parameters(), model.gradients())), lr=0.1)
    model.to("cuda")
    with pytest.raises(ValueError, match="replaced by Module.to"):
        sgd.step()


def test_fit_on_the_device_matches_the_cpu_and_resumes(tmp_path):
    train_set, test_set = tiny_data(16, seed=0), tiny_data(8, seed=1)
    histories, weights = {}, {}
    for device in ("cpu", "cuda"):
        model = tiny_net().to(device)
        sgd = optim.SGD(model, lr=0.1, momentum=0.9, weight_decay=5e-4)
        histories[device] = fit(model, train_set, test_set, epochs=2, batch_size=8, optimizer=sgd, seed=3,
                                out_dir=tmp_path / device, progress=False)
        weights[device] = model.state_dict()
        assert model.device == device
    for cpu_record, cuda_record in zip(histories["cpu"], histories["cuda"]):
        for key in ("train_loss", "test_loss", "test_top1", "test_top5"):
            assert cuda_record[key] == pytest.approx(cpu_record[key], rel=1e-4, abs=1e-5)
    assert histories["cuda"][-1]["train_loss"] < histories["cuda"][0]["train_loss"]
    for key, value in weights["cpu"].items():
        np.testing.assert_allclose(weights["cuda"][key], value, **TOL)
    # the device run's checkpoint holds host arrays and continues on the device to the same third epoch
    saved = load_checkpoint(tmp_path / "cuda" / CHECKPOINT)
    np.testing.assert_array_equal(saved["model"]["5.weight"], weights["cuda"]["5.weight"])
    finals = {}
    for device in ("cuda", "cpu"):
        model = tiny_net().to(device)
        sgd = optim.SGD(model, lr=0.1, momentum=0.9, weight_decay=5e-4)
        fit(model, train_set, test_set, epochs=3, batch_size=8, optimizer=sgd, seed=3, out_dir=tmp_path / device,
            resume=True, progress=False)
        finals[device] = model.state_dict()
    for key, value in finals["cpu"].items():
        assert not np.array_equal(value, weights["cpu"][key])  # the third epoch moved every parameter
        np.testing.assert_allclose(finals["cuda"][key], value, **TOL)


def test_evaluate_on_the_device_matches_the_cpu():
    test_set = tiny_data(12, seed=4)
    host = evaluate(tiny_net(), test_set, batch_size=5)
    device = evaluate(tiny_net().to("cuda"), test_set, batch_size=5)
    for key in host:
        assert device[key] == pytest.approx(host[key], rel=1e-5)


def test_command_line_trains_and_evaluates_on_the_device(tmp_path, monkeypatch, capsys):
    """``numconv train --device cuda`` wires the device through: the model moves, fit runs there, the checkpoint
    and the filters picture are written from host copies; ``numconv evaluate --device cuda`` scores that checkpoint
    as the CPU does. A tiny network and data set stand in for LeNet-5."""
    monkeypatch.setattr(cli.data, "load", lambda spec, seed=0: (tiny_data(8, seed), tiny_data(4, seed + 1)))
    monkeypatch.setattr(cli, "_build", lambda command, name, train_set, seed: tiny_net(seed))
    moved = []
    original_to = layers.Module.to
    monkeypatch.setattr(layers.Module, "to", lambda self, device: moved.append(device) or original_to(self, device))
    assert cli.main(["train", "--device", "cuda", "--epochs", "1", "--batch-size", "4", "--out", str(tmp_path),
                     "--quiet"]) == 0
    assert moved[0] == "cuda"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert np.isfinite(metrics[0]["train_loss"]) and 0.0 <= metrics[0]["test_top1"] <= 1.0
    assert (tmp_path / "filters.png").stat().st_size > 0
    assert load_checkpoint(tmp_path / CHECKPOINT)["model"]["0.weight"].shape == (3, 1, 3, 3)
    capsys.readouterr()
    scores = {}
    for device in ("cuda", "cpu"):
        assert cli.main(["evaluate", "--device", device, "--out", str(tmp_path)]) == 0
        scores[device] = json.loads(capsys.readouterr().out)
    assert moved[-2:] == ["cuda", "cpu"]
    assert scores["cuda"]["loss"] == pytest.approx(scores["cpu"]["loss"], rel=1e-5)
    assert scores["cuda"]["top1"] == scores["cpu"]["top1"]
    # the trained weights, not fresh ones, were scored: the loss is the last epoch's test loss
    assert scores["cpu"]["loss"] == pytest.approx(metrics[-1]["test_loss"], rel=1e-5)
