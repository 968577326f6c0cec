"""numconv.onnx: numconv's zoo exported and run by ONNX Runtime, networks exported by PyTorch run by numconv, and
the errors a model numconv cannot run gets when it is loaded."""
import re

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import numconv.onnx as nx  # noqa: E402
from numconv import models  # noqa: E402

# PyTorch's exporter pickles its own pytree specs through a check that PyTorch itself deprecates
pytestmark = pytest.mark.filterwarnings(r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning")

ZOO = {
    "lenet5": (lambda: models.lenet5(rng=0), (2, 1, 28, 28)),
    "alexnet": (lambda: models.alexnet(rng=0, num_classes=10, image_size=67), (2, 3, 67, 67)),
    "nin": (lambda: models.nin(rng=0, width=32), (2, 3, 32, 32)),
    "m5": (lambda: models.m5(rng=0, width=16), (2, 1, 4000)),
    "c3d_small": (lambda: models.c3d_small(rng=0, width=4), (2, 1, 16, 32, 32)),
    # a users' Sequential: an encoder and a decoder that upsamples with transposed convolutions
    "encoder_decoder": (lambda: _encoder_decoder(), (2, 1, 16, 16)),
}


def _encoder_decoder():
    from numconv import layers

    rng = np.random.default_rng(0)
    return layers.Sequential(
        layers.Conv2d(1, 4, 3, stride=2, padding=((1, 0), (0, 1)), rng=rng), layers.ReLU(),
        layers.MaxPool2d(2, stride=1, padding=((1, 0), (1, 1))),
        layers.ConvTranspose2d(4, 4, 3, stride=2, padding=1, output_padding=1, groups=2, rng=rng), layers.ReLU(),
        layers.ConvTranspose2d(4, 1, 2, dilation=2, rng=rng))


def _relative(got, want):
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


@pytest.mark.parametrize("name", sorted(ZOO))
def test_every_zoo_model_exported_runs_in_onnxruntime_with_numconvs_logits(name, tmp_path, rng):
    build, shape = ZOO[name]
    model = build()
    model.eval()
    x = rng.standard_normal(shape).astype(np.float32)
    want = model(x)
    path = nx.export(model, tmp_path / f"{name}.onnx", shape)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": x})
    assert got.shape == want.shape
    assert _relative(got, want) < 1e-5
    # and back: numconv runs its own file on its own kernels, but a session's weights are frozen, and a frozen weight
    # takes Winograd over fewer tiles (its transform runs once: tuning.WINOGRAD_UNFROZEN_MIN_TILES), which rounds
    # otherwise than the direct kernel (NiN's 3 x 3 and 5 x 5 layers at 2 samples); and ONNX keeps LRN's alpha in 32
    # bits (AlexNet's 5e-4 reads back as 5.0000002e-4), which can move its results by a last bit
    (again,) = nx.load(path).run(None, {"input": x})
    np.testing.assert_allclose(again, want, rtol=1e-5, atol=1e-6)


def test_a_session_prepares_its_convolution_weights_once_and_lets_them_go_with_it(rng, monkeypatch):
    """A session's stored weights are frozen: the convolutions pack or transform them on the first run only (the
    weight of every one of NiN's nine convolutions, Winograd's included), with the model's outputs (to rounding:
    its 5 x 5 layers at 4 samples take Winograd only with a frozen weight, ``tuning.WINOGRAD_WIDE_UNFROZEN_MIN_TILES``
    on Intel's AVX-512 CPUs)."""
    import gc

    from numconv.kernels.cpu import conv as cpu_conv
    from numconv.kernels.cpu import launch, winograd

    fills = []

    def counted(source, tag, size, dtype, fill, key=()):
        return launch.prepared(source, tag, size, dtype, lambda array: (fills.append(tag), fill(array)), key)

    monkeypatch.setattr(cpu_conv, "_prepared", counted)
    monkeypatch.setattr(winograd, "prepared", counted)
    build, shape = ZOO["nin"]
    model = build()
    model.eval()
    held = len(launch._frozen)
    session = nx.load(nx.to_model(model, shape))
    # the last 3 x 3 layer's 8 x 8 output has 16 tiles a sample, as many as Winograd takes at least
    x = rng.standard_normal((4,) + shape[1:]).astype(np.float32)
    (first,) = session.run(None, {"input": x})
    assert len(fills) == 9 and "winograd weights" in fills
    (second,) = session.run(None, {"input": x})
    assert len(fills) == 9
    np.testing.assert_allclose(first, model(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(second, first)
    del session
    gc.collect()
    assert len(launch._frozen) == held


def test_an_exported_model_keeps_pytorchs_state_dict_keys_and_a_free_batch(tmp_path):
    model = models.lenet5(rng=0)
    proto = onnx.load(str(nx.export(model, tmp_path / "lenet.onnx", (1, 1, 28, 28))))
    assert sorted(t.name for t in proto.graph.initializer) == sorted(model.state_dict())
    batch = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param == "N"
    x = np.ones((3, 1, 28, 28), np.float32)
    assert nx.load(proto).run(["output"], {"input": x})[0].shape == (3, 10)


def test_the_session_describes_its_inputs_and_refuses_wrong_feeds(tmp_path):
    session = nx.load(nx.to_model(models.lenet5(rng=0), (1, 1, 28, 28)))
    (described,) = session.get_inputs()
    assert (described.name, described.shape, described.type) == ("input", ["N", 1, 28, 28], "tensor(float)")
    with pytest.raises(ValueError, match="missing \\['input'\\]"):
        session.run(None, {"image": np.zeros((1, 1, 28, 28), np.float32)})
    with pytest.raises(TypeError, match="dtype float32, got float64"):
        session.run(None, {"input": np.zeros((1, 1, 28, 28))})
    (output,) = session.get_outputs()
    assert (output.name, output.shape, output.type) == ("output", ["N", 10], "tensor(float)")
    with pytest.raises(ValueError, match=r"must have shape \['N', 1, 28, 28\] .*got \(2, 1, 32, 32\)"):
        session.run(None, {"input": np.zeros((2, 1, 32, 32), np.float32)})
    with pytest.raises(ValueError, match=r"output_names \['logits'\] are not values of the graph"):
        session.run(["logits"], {"input": np.zeros((1, 1, 28, 28), np.float32)})


def _torch_lenet(torch):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def _torch_alexnet(torch):
    """AlexNet's layers (grouped convolutions, LocalResponseNorm, overlapping pooling, dropout) for 67x67 images."""
    nn = torch.nn
    lrn = dict(size=5, alpha=1e-4, beta=0.75, k=2.0)
    return nn.Sequential(
        nn.Conv2d(3, 24, 11, stride=4), nn.ReLU(), nn.LocalResponseNorm(**lrn), nn.MaxPool2d(3, 2),
        nn.Conv2d(24, 32, 5, padding=2, groups=2), nn.ReLU(), nn.LocalResponseNorm(**lrn), nn.MaxPool2d(3, 2),
        nn.Conv2d(32, 48, 3, padding=1), nn.ReLU(), nn.Conv2d(48, 32, 3, padding=1, groups=2), nn.ReLU(),
        nn.Flatten(), nn.Dropout(0.5), nn.Linear(32 * 3 * 3, 64), nn.ReLU(), nn.Linear(64, 10))


def _torch_nin(torch):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(3, 32, 5, padding=2), nn.ReLU(), nn.Conv2d(32, 24, 1), nn.ReLU(), nn.Conv2d(24, 16, 1), nn.ReLU(),
        nn.MaxPool2d(3, 2, ceil_mode=True), nn.Dropout(0.5), nn.Conv2d(16, 10, 3, padding=1), nn.ReLU(),
        nn.AvgPool2d(3, 2, padding=1), nn.Conv2d(10, 10, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def _torch_m5(torch):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv1d(1, 8, 80, stride=16), nn.ReLU(), nn.MaxPool1d(4), nn.Conv1d(8, 8, 3), nn.ReLU(), nn.MaxPool1d(4),
        nn.Flatten(), nn.Linear(8 * 14, 2))


def _torch_decoder(torch):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv3d(1, 4, 3, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose3d(4, 2, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
        nn.ConvTranspose3d(2, 1, (1, 2, 2), stride=(1, 2, 2)))


def _torch_squeezenet(torch):
    """SqueezeNet's fire modules: a 1x1 squeeze, then 1x1 and 3x3 expands joined by Concat."""
    nn = torch.nn

    class Fire(nn.Module):
        def __init__(self, channels, squeeze, expand):
            super().__init__()
            self.squeeze = nn.Sequential(nn.Conv2d(channels, squeeze, 1), nn.ReLU())
            self.expand1 = nn.Sequential(nn.Conv2d(squeeze, expand, 1), nn.ReLU())
            self.expand3 = nn.Sequential(nn.Conv2d(squeeze, expand, 3, padding=1), nn.ReLU())

        def forward(self, x):
            x = self.squeeze(x)
            return torch.cat([self.expand1(x), self.expand3(x)], 1)

    return nn.Sequential(nn.Conv2d(3, 16, 3, stride=2), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
                         Fire(16, 4, 8), Fire(16, 4, 8), nn.Conv2d(16, 10, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten())


def _torch_resnet(torch):
    """Pre-activation ResNet blocks (He et al. 2016, v2: batch normalisation and ReLU before each convolution), a
    shortcut joined by Add (a strided 1x1 convolution where the shape changes). PyTorch folds a batch normalisation
    that follows a convolution into it; those that follow an Add stay BatchNormalization nodes. Running statistics
    away from (0, 1)."""
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, channels, out_channels, stride):
            super().__init__()
            self.body = nn.Sequential(
                nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, out_channels, 3, stride, 1, bias=False),
                nn.BatchNorm2d(out_channels), nn.ReLU(), nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False))
            self.shortcut = nn.Identity() if stride == 1 and channels == out_channels else nn.Conv2d(
                channels, out_channels, 1, stride, bias=False)

        def forward(self, x):
            return self.body(x) + self.shortcut(x)

    network = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), Block(8, 8, 1), Block(8, 16, 2), nn.BatchNorm2d(16),
                            nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    with torch.no_grad():
        for layer in network.modules():
            if isinstance(layer, nn.BatchNorm2d):
                layer.running_mean.normal_(0.0, 0.2)
                layer.running_var.uniform_(0.5, 2.0)
                layer.weight.uniform_(0.5, 1.5)
                layer.bias.normal_(0.0, 0.2)
    return network


TORCH_NETWORKS = {"decoder": (_torch_decoder, (2, 1, 4, 8, 8)), "squeezenet": (_torch_squeezenet, (2, 3, 33, 33)),
                  "resnet": (_torch_resnet, (2, 3, 16, 16)),
                  "lenet5": (_torch_lenet, (2, 1, 28, 28)), "alexnet": (_torch_alexnet, (2, 3, 67, 67)),
                  "nin": (_torch_nin, (2, 3, 32, 32)), "m5": (_torch_m5, (2, 1, 4000))}


@pytest.mark.parametrize("name", sorted(TORCH_NETWORKS))
def test_networks_exported_by_pytorch_run_in_numconv_with_pytorchs_outputs(name, tmp_path, rng):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    build, shape = TORCH_NETWORKS[name]
    torch.manual_seed(0)
    network = build(torch).eval()
    x = rng.standard_normal(shape).astype(np.float32)
    with torch.no_grad():
        want = network(torch.from_numpy(x)).numpy()
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(network, (torch.from_numpy(x),), str(path), dynamo=True, input_names=["x"])
    session = nx.load(path)
    (got,) = session.run(None, {session.get_inputs()[0].name: x})
    assert got.shape == want.shape
    assert _relative(got, want) < 1e-5
    if name == "resnet":
        assert "BatchNormalization" in {node.op_type for node in onnx.load(str(path)).graph.node}
    if name == "alexnet":  # and on the command line, as a user would run it
        from numconv import cli

        np.save(tmp_path / "x.npy", x)
        assert cli.main(["run", str(path), "--input", str(tmp_path / "x.npy"), "--output",
                         str(tmp_path / "y.npy")]) == 0
        assert _relative(np.load(tmp_path / "y.npy"), want) < 1e-5


def _export_torch(torch, name, tmp_path, rng, batch=None):
    """A network of TORCH_NETWORKS exported by PyTorch: (network, path, input)."""
    pytest.importorskip("onnxscript")
    build, shape = TORCH_NETWORKS[name]
    torch.manual_seed(0)
    network = build(torch).eval()
    x = rng.standard_normal((batch or shape[0],) + shape[1:]).astype(np.float32)
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(network, (torch.from_numpy(x),), str(path), dynamo=True)
    return network, path, x


@pytest.mark.parametrize("name", ["lenet5", "alexnet", "nin", "m5", "decoder"])
def test_a_chain_exported_by_pytorch_becomes_a_sequential_with_its_outputs_and_state_dict_keys(name, tmp_path, rng):
    torch = pytest.importorskip("torch")
    network, path, x = _export_torch(torch, name, tmp_path, rng)
    module = nx.to_module(path).eval()
    assert list(module.state_dict()) == list(network.state_dict())
    with torch.no_grad():
        want = network(torch.from_numpy(x)).numpy()
    got = module(x)
    assert got.shape == want.shape and _relative(got, want) < 1e-5
    wider = rng.standard_normal((5,) + x.shape[1:]).astype(np.float32)  # the module takes any batch
    with torch.no_grad():
        assert _relative(module(wider), network(torch.from_numpy(wider)).numpy()) < 1e-5


def test_an_imported_network_fine_tunes_as_pytorch_trains_it(tmp_path, rng):
    """SGD with momentum on the module from PyTorch's file takes PyTorch's steps, and the loss falls."""
    torch = pytest.importorskip("torch")
    from numconv import functional as F, optim

    network, path, _ = _export_torch(torch, "lenet5", tmp_path, rng)
    module = nx.to_module(path).train()
    images = rng.standard_normal((16, 1, 28, 28)).astype(np.float32)
    labels = rng.integers(0, 10, 16)
    ours = optim.SGD(module, lr=0.05, momentum=0.9)
    theirs = torch.optim.SGD(network.parameters(), lr=0.05, momentum=0.9)
    network.train()
    losses = []
    for _ in range(20):
        module.zero_grad()
        logits = module(images)
        losses.append(float(F.cross_entropy(logits, labels)))
        module.backward(F.cross_entropy_backward(1.0, logits, labels)[0], needs_input_grad=False)
        ours.step()
        theirs.zero_grad()
        torch.nn.functional.cross_entropy(network(torch.from_numpy(images)), torch.from_numpy(labels)).backward()
        theirs.step()
    for key, value in network.state_dict().items():
        np.testing.assert_allclose(module.state_dict()[key], value.numpy(), rtol=1e-3, atol=1e-4, err_msg=key)
    assert losses[-1] < 0.8 * losses[0]


def test_a_chain_with_onnxs_padding_becomes_layers_with_onnxruntimes_outputs(rng):
    """SAME padding with a stride (fixed for the declared input size) and pads that differ between the sides."""
    from onnx import TensorProto, helper, numpy_helper

    weights = [numpy_helper.from_array(rng.standard_normal((4, 2, 3, 3)).astype(np.float32), "conv.weight"),
               numpy_helper.from_array(rng.standard_normal((5, 4 * 3 * 3)).astype(np.float32), "fc.weight"),
               numpy_helper.from_array(np.array([-1, 36], np.int64), "flat")]
    nodes = [helper.make_node("Conv", ["x", "conv.weight"], ["c"], kernel_shape=[3, 3], strides=[2, 2],
                              auto_pad="SAME_UPPER"),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[1, 1], pads=[1, 0, 0, 1]),
             helper.make_node("Reshape", ["p", "flat"], ["f"]),
             helper.make_node("Gemm", ["f", "fc.weight"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2, 6, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], weights)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((2, 2, 6, 5)).astype(np.float32)
    (want,) = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    module = nx.to_module(proto)
    assert [type(layer).__name__ for layer in module] == ["Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear"]
    assert list(module.state_dict()) == ["conv.weight", "fc.weight"]
    np.testing.assert_allclose(module(x), want, rtol=1e-5, atol=1e-6)


def test_a_graph_that_is_not_a_chain_is_refused_by_to_module_naming_the_node(tmp_path, rng):
    torch = pytest.importorskip("torch")
    _, path, x = _export_torch(torch, "squeezenet", tmp_path, rng)
    with pytest.raises(ValueError, match="the graph branches or joins here"):
        nx.to_module(path)
    session = nx.load(path)  # what to_module refuses, load() runs
    (got,) = session.run(None, {session.get_inputs()[0].name: x})
    assert np.isfinite(got).all()


def test_pytorchs_local_response_norm_becomes_numconvs_kernel(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    network = torch.nn.Sequential(torch.nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0)).eval()
    path = tmp_path / "lrn.onnx"
    torch.onnx.export(network, (torch.ones(1, 8, 3, 3),), str(path), dynamo=True)
    assert "Pow" in {node.op_type for node in onnx.load(str(path)).graph.node}  # PyTorch's ten-node form
    from numconv.onnx.graph import read_graph

    steps = read_graph(onnx.load(str(path)))[0]
    assert [step.op for step in steps] == ["LRN"]
    assert steps[0].params == {"size": 5, "alpha": pytest.approx(1e-4), "beta": 0.75, "k": 2.0}


def _model(nodes, inputs=("x",), opset=17, initializers=()):
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 2, 6, 6]) for name in inputs],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)], list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_relu_overwrites_only_values_that_nothing_else_reads(rng, monkeypatch):
    """A Relu runs in place on a value computed by the step before when nothing else reads it; never on the caller's
    input, on a value asked for, or on memory that another name still holds (an Identity's)."""
    from onnx import helper

    import numconv.functional as F

    in_place = []
    relu = F.relu
    monkeypatch.setattr(F, "relu", lambda x, inplace=False: (in_place.append(inplace), relu(x, inplace=inplace))[1])
    nodes = [helper.make_node("Mul", ["x", "y"], ["p"]), helper.make_node("Identity", ["p"], ["q"]),
             helper.make_node("Relu", ["p"], ["r"]), helper.make_node("Add", ["q", "r"], ["s"]),
             helper.make_node("Relu", ["s"], ["t"])]
    session = nx.load(_model(nodes, inputs=("x", "y")))
    x, y = (rng.standard_normal((1, 2, 6, 6)).astype(np.float32) for _ in range(2))
    p = x * y
    s = p + np.maximum(p, 0)
    (t,) = session.run(None, {"x": x, "y": y})
    np.testing.assert_array_equal(t, np.maximum(s, 0))
    t, s_asked = session.run(["t", "s"], {"x": x, "y": y})
    np.testing.assert_array_equal(s_asked, s)
    assert (s < 0).any()
    assert in_place == [False, True, False, False]
    fed = x.copy()
    (out,) = nx.load(_model([helper.make_node("Relu", ["x"], ["out"])])).run(None, {"x": fed})
    np.testing.assert_array_equal(fed, x)
    np.testing.assert_array_equal(out, np.maximum(x, 0))
    # nor on a fed input or a constant that an Identity passed on under a name of its own, once theirs is let go
    (out,) = nx.load(_model([helper.make_node("Identity", ["x"], ["i"]),
                             helper.make_node("Relu", ["i"], ["out"])])).run(None, {"x": fed})
    np.testing.assert_array_equal(fed, x)
    np.testing.assert_array_equal(out, np.maximum(x, 0))
    constant = helper.make_node("Constant", [], ["c"], value=onnx.numpy_helper.from_array(y, "c"))
    session = nx.load(_model([constant, helper.make_node("Identity", ["c"], ["i"]),
                              helper.make_node("Relu", ["i"], ["r"]), helper.make_node("Add", ["x", "r"], ["out"])]))
    (out,) = session.run(None, {"x": x})
    np.testing.assert_array_equal(out, x + np.maximum(y, 0))
    (stored,) = session.run(["c"], {"x": x})
    np.testing.assert_array_equal(stored, y)
    # nor on the model's weights, passed on by an Identity (as exporters do) or reshaped
    for passing in (helper.make_node("Identity", ["w"], ["i"]),
                    helper.make_node("Reshape", ["w", "shape"], ["i"])):
        session = nx.load(_model([passing, helper.make_node("Relu", ["i"], ["r"]),
                                  helper.make_node("Add", ["x", "r"], ["out"])],
                                 initializers=[onnx.numpy_helper.from_array(y, "w"),
                                               onnx.numpy_helper.from_array(np.array([1, 2, 6, 6]), "shape")]))
        out, weight = session.run(["out", "w"], {"x": x})
        np.testing.assert_array_equal(out, x + np.maximum(y, 0))
        np.testing.assert_array_equal(weight, y)


def test_a_relu_that_alone_reads_a_convolution_is_fused_into_it(rng, monkeypatch):
    """Conv -> Relu runs as one convolution with its ReLU fused (F.relu is never called), wherever the run does not
    ask for the convolution's own output; a convolution that another node reads too is left whole. Every value is
    ONNX Runtime's."""
    from onnx import helper

    import numconv.functional as F

    calls = []
    relu, bind_conv = F.relu, F.bind_conv

    def recording_bind(*args, **options):  # each run of a bound convolution is recorded
        run, fused = bind_conv(*args, **options), options.get("relu", False)
        return lambda x: (calls.append(("conv", fused)), run(x))[1]

    monkeypatch.setattr(F, "relu", lambda x, inplace=False: (calls.append("relu"), relu(x, inplace=inplace))[1])
    monkeypatch.setattr(F, "bind_conv", recording_bind)
    w, v = rng.standard_normal((2, 2, 3, 3)).astype(np.float32), rng.standard_normal((2, 2, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Conv", ["r", "v"], ["d"]), helper.make_node("Relu", ["d"], ["e"]),
             helper.make_node("Add", ["d", "e"], ["out"])]
    proto = _model(nodes, initializers=[onnx.numpy_helper.from_array(w, "w"), onnx.numpy_helper.from_array(v, "v")])
    x = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)
    session, theirs = nx.load(proto), ort.InferenceSession(proto.SerializeToString())
    (out,) = session.run(None, {"x": x})
    assert calls == [("conv", True), ("conv", False), "relu"]
    np.testing.assert_allclose(out, theirs.run(None, {"x": x})[0], rtol=1e-5, atol=1e-5)
    calls.clear()
    c, r = session.run(["c", "r"], {"x": x})
    assert calls[:2] == [("conv", False), "relu"]
    np.testing.assert_array_equal(r, np.maximum(c, 0))
    assert (c < 0).any()


def test_a_convolution_checked_once_per_input_shape_reads_the_weights_each_run_gives(rng):
    """A session's Conv steps over stored weights are bound (``F.bind_conv``) once per input shape: each batch size
    gets a convolution of its own; a weight given as an input is read anew at every run. Every value is ONNX
    Runtime's."""
    from onnx import TensorProto, helper

    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2, 5, 6])
    y_info = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    conv = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    stored = helper.make_graph([conv], "g", [x_info], [y_info], [onnx.numpy_helper.from_array(w, "w")])
    given = helper.make_graph([conv], "g", [x_info, helper.make_tensor_value_info("w", TensorProto.FLOAT, w.shape)],
                              [y_info])
    for graph in (stored, given):
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        session, theirs = nx.load(proto), ort.InferenceSession(proto.SerializeToString())
        for batch in (1, 2, 1):
            feed = {"x": rng.standard_normal((batch, 2, 5, 6)).astype(np.float32)}
            if graph is given:
                feed["w"] = rng.standard_normal(w.shape).astype(np.float32)
            np.testing.assert_allclose(session.run(None, feed)[0], theirs.run(None, feed)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("node, message", [
    (("Softplus", {}), "node s \\(Softplus\\): the operator Softplus is not supported"),
    (("ConvTranspose", {"kernel_shape": [2, 2], "pads": [0, 0, 1, 1]}), "pads=\\[0, 0, 1, 1\\] differ between"),
    (("MaxPool", {"kernel_shape": [2, 2], "pads": [2, 2, 2, 2]}), "reach a whole window"),
    (("MaxPool", {"kernel_shape": [2, 2], "storage_order": 1}), "storage_order=1 is not supported"),
    (("LRN", {"size": 4}), "size=4: an even window"),
    (("ConvTranspose", {"kernel_shape": [3, 3], "auto_pad": "SAME_UPPER"}), "auto_pad=SAME_UPPER"),
])
def test_what_numconv_cannot_run_is_refused_at_load_naming_the_node(node, message):
    from onnx import helper

    op, attributes = node
    with pytest.raises(ValueError, match=message):
        nx.load(_model([helper.make_node(op, ["x"], ["y"], name="s", **attributes)]))


@pytest.mark.parametrize("op, attributes", [
    ("MaxPool", {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [2, 0, 1, 1]}),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ("MaxPool", {"kernel_shape": [2, 3], "strides": [2, 2], "auto_pad": "SAME_LOWER", "ceil_mode": 1}),
    ("AveragePool", {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [2, 0, 1, 1], "count_include_pad": 1}),
    ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [0, 1, 2, 2]}),
    ("AveragePool", {"kernel_shape": [3, 3], "strides": [3, 3], "auto_pad": "SAME_UPPER", "count_include_pad": 1}),
    ("Conv", {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [0, 1, 2, 0]}),
    ("Conv", {"kernel_shape": [4, 4], "strides": [2, 3], "auto_pad": "SAME_LOWER"}),
])
def test_padding_beyond_pytorchs_gives_onnxruntimes_outputs(op, attributes, rng):
    """Pads that differ between the sides of an axis, pooling pads wider than half the window, and SAME padding
    with strides, whose sides depend on the input's size."""
    from onnx import helper, numpy_helper

    initializers = []
    inputs = ["x"]
    if op == "Conv":
        initializers = [numpy_helper.from_array(rng.standard_normal((3, 2) + tuple(attributes["kernel_shape"]))
                                                .astype(np.float32), "w")]
        inputs.append("w")
    proto = _model([helper.make_node(op, inputs, ["y"], **attributes)], initializers=initializers)
    x = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)
    (want,) = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    (got,) = nx.load(proto).run(None, {"x": x})
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_an_unsupported_opset_or_a_missing_file_is_refused(tmp_path):
    from onnx import helper

    with pytest.raises(ValueError, match="opset is 7"):
        nx.load(_model([helper.make_node("Relu", ["x"], ["y"])], opset=7))
    with pytest.raises(ValueError, match="no file at"):
        nx.load(tmp_path / "absent.onnx")
    with pytest.raises(TypeError, match="path or an onnx.ModelProto"):
        nx.load(42)


def test_max_pool_indices_count_over_the_whole_input_as_onnx_says(rng):
    from onnx import helper

    proto = _model([helper.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[2, 2], strides=[2, 2])])
    proto.graph.output.append(helper.make_tensor_value_info("i", onnx.TensorProto.INT64, None))
    x = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)
    got_values, got_indices = nx.load(proto).run(None, {"x": x})
    want_values, want_indices = ort.InferenceSession(proto.SerializeToString()).run(None, {"x": x})
    np.testing.assert_array_equal(got_values, want_values)
    np.testing.assert_array_equal(got_indices, want_indices)
    assert got_indices.max() >= 36  # the second channel's indices are past the first channel's 36 values


def test_a_session_fed_device_arrays_runs_the_cuda_kernels_and_answers_on_the_device(rng):
    pytest.importorskip("numba.cuda")
    from numconv import backend, layers
    from spec import registry

    if "cuda" not in registry.available_backends():
        pytest.skip("numba-cuda finds neither a GPU nor its simulator")
    model = layers.Sequential(layers.Conv2d(1, 2, 3, padding=1, rng=rng), layers.ReLU(), layers.MaxPool2d(2),
                              layers.LocalResponseNorm(3, k=2.0), layers.Flatten(), layers.Linear(8, 3, rng=rng))
    x = rng.standard_normal((2, 1, 4, 4)).astype(np.float32)
    session = nx.load(nx.to_model(model, x.shape))
    (on_device,) = session.run(None, {"input": backend.to_device(x)})
    assert backend.is_device_array(on_device)
    np.testing.assert_allclose(backend.to_host(on_device), model(x), rtol=1e-5, atol=1e-6)


def test_gemm_of_two_activations_on_the_device_goes_through_the_host_and_answers_there(rng):
    pytest.importorskip("numba.cuda")
    from onnx import TensorProto, helper

    from numconv import backend
    from spec import registry

    if "cuda" not in registry.available_backends():
        pytest.skip("numba-cuda finds neither a GPU nor its simulator")
    node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], transA=1, alpha=0.5, beta=2.0)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(name, TensorProto.DOUBLE, shape) for
                                            name, shape in (("a", [4, 3]), ("b", [4, 5]), ("c", [3, 1]))],
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)])
    session = nx.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    a, b, c = rng.standard_normal((4, 3)), rng.standard_normal((4, 5)), rng.standard_normal((3, 1))
    (on_device,) = session.run(None, {"a": backend.to_device(a), "b": backend.to_device(b),
                                      "c": backend.to_device(c)})
    assert backend.is_device_array(on_device)
    np.testing.assert_allclose(backend.to_host(on_device), 0.5 * a.T @ b + 2.0 * c, rtol=1e-12)


def test_the_command_line_exports_a_model_and_runs_it(tmp_path, capsys, rng):
    import json

    from numconv import cli

    path = tmp_path / "m5.onnx"
    assert cli.main(["export", "--model", "m5", "--output", str(path)]) == 0
    x = rng.standard_normal((2, 1, 8000)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    capsys.readouterr()
    assert cli.main(["run", str(path), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")]) == 0
    want = models.m5(rng=0)
    want.eval()
    logits = want(x)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), logits)
    assert json.loads(capsys.readouterr().out)["argmax"] == logits.argmax(axis=1).tolist()


@pytest.mark.parametrize("arguments, message", [
    (["run", "absent.onnx", "--input", "x.npy"], "argument model: absent.onnx: .*no file at"),
    (["run", "{model}", "--input", "absent.npy"], "argument --input: absent.npy"),
    (["run", "{model}", "--input", "{wrong}"], "argument --input: .*dtype float32, got float64"),
])
def test_the_command_line_says_what_is_wrong_in_one_line(arguments, message, tmp_path, capsys, monkeypatch):
    from numconv import cli

    monkeypatch.chdir(tmp_path)
    nx.export(models.lenet5(rng=0), tmp_path / "lenet.onnx", (1, 1, 28, 28))
    np.save(tmp_path / "wrong.npy", np.zeros((1, 1, 28, 28)))
    arguments = [a.format(model="lenet.onnx", wrong="wrong.npy") for a in arguments]
    with pytest.raises(SystemExit) as stop:
        cli.main(arguments)
    assert stop.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and re.search(message, error)


def test_onnxs_own_operator_cases_pass_or_are_refused_at_load_never_answered_wrongly():
    """ONNX's test cases (the onnx package ships them) for every op numconv runs, through scripts/onnx_cases.py:
    each either gives ONNX's outputs within the case's tolerance or is refused naming the node and what is
    missing; none runs to a wrong answer."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "onnx_cases.py"
    spec = importlib.util.spec_from_file_location("onnx_cases", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    results = script.run_cases()
    wrong = {op: entry["wrong"] for op, entry in results.items() if entry["wrong"]}
    assert not wrong
    for op in ("Conv", "ConvTranspose", "Add", "Concat", "MaxPool", "AveragePool", "GlobalAveragePool",
               "GlobalMaxPool", "LRN", "Relu", "Flatten", "Dropout", "BatchNormalization", "LeakyRelu", "Sigmoid",
               "Tanh", "Softmax", "Mul", "Reshape", "Squeeze", "Unsqueeze", "Gemm", "MatMul"):
        assert results[op]["passed"], f"no ONNX case of {op} ran: {results[op]}"
    # the padding ONNX allows beyond PyTorch's runs: none of the pooling cases is refused for its pads
    assert not [name for op in ("MaxPool", "AveragePool") for name, reason in results[op]["refused"]
                if "pads" in reason]
