"""ONNX models in and out: run a network made elsewhere on numconv's kernels, and hand numconv's networks to any
ONNX runtime. Needs the ``onnx`` package (``pip install 'numconv[onnx]'``).

    session = numconv.onnx.load("model.onnx")              # checked now: an unsupported node is an error here
    (logits,) = session.run(None, {"input": images})        # onnxruntime.InferenceSession's call
    model = numconv.onnx.to_module("model.onnx")            # a chain of layers, trainable
    numconv.onnx.export(model, "model.onnx", (1, 3, 227, 227))
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["load", "export", "to_model", "to_module", "Session", "NodeArg"]


def _onnx():
    try:
        import onnx
    except ImportError as error:
        raise RuntimeError("numconv.onnx needs the onnx package: pip install 'numconv[onnx]'") from error
    return onnx


def _model_proto(model):
    """``model`` (a path to an .onnx file, or an ``onnx.ModelProto``) as a ModelProto."""
    onnx = _onnx()
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_file():
            raise ValueError(f"model must be an ONNX file or an onnx.ModelProto; no file at {str(path)!r}")
        return onnx.load(str(path))
    if not isinstance(model, onnx.ModelProto):
        raise TypeError(f"model must be a path or an onnx.ModelProto, got {type(model).__name__}")
    return model


def load(model):
    """A :class:`Session` running ``model`` (a path to an .onnx file, or an ``onnx.ModelProto``) on numconv."""
    from numconv.onnx.runtime import Session

    return Session(_model_proto(model))


def to_module(model):
    """A trainable numconv Sequential from ``model`` (a path or an ``onnx.ModelProto``) whose graph is a chain of
    layers, weights copied: fine-tune an imported network with numconv's optimisers."""
    from numconv.onnx.modules import to_module as build

    return build(_model_proto(model))


def export(model, path, input_shape):
    """Write the numconv Sequential ``model`` to the ONNX file ``path`` for inputs of ``input_shape``."""
    _onnx()
    from numconv.onnx.exporter import export as write

    return write(model, path, input_shape)


def to_model(model, input_shape):
    """The ``onnx.ModelProto`` of the numconv Sequential ``model`` for inputs of ``input_shape``."""
    _onnx()
    from numconv.onnx.exporter import to_model as build

    return build(model, input_shape)


def __getattr__(name):
    if name in ("Session", "NodeArg"):
        from numconv.onnx import runtime

        return getattr(runtime, name)
    raise AttributeError(name)
