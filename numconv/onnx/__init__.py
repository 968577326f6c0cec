"""ONNX models in and out: run a network made elsewhere on numconv's kernels, and hand numconv's networks to any
ONNX runtime. Needs the ``onnx`` package (``pip install 'numconv[onnx]'``).

    session = numconv.onnx.load("model.onnx")              # checked now: an unsupported node is an error here
    (logits,) = session.run(None, {"input": images})        # onnxruntime.InferenceSession's call
    numconv.onnx.export(model, "model.onnx", (1, 3, 227, 227))
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["load", "export", "to_model", "Session", "NodeArg"]


def _onnx():
    try:
        import onnx
    except ImportError as error:
        raise RuntimeError("numconv.onnx needs the onnx package: pip install 'numconv[onnx]'") from error
    return onnx


def load(model):
    """A :class:`Session` running ``model`` (a path to an .onnx file, or an ``onnx.ModelProto``) on numconv."""
    onnx = _onnx()
    from numconv.onnx.runtime import Session

    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_file():
            raise ValueError(f"model must be an ONNX file or an onnx.ModelProto; no file at {str(path)!r}")
        model = onnx.load(str(path))
    elif not isinstance(model, onnx.ModelProto):
        raise TypeError(f"model must be a path or an onnx.ModelProto, got {type(model).__name__}")
    return Session(model)


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
