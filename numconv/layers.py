"""Layers: modules with ``forward(x)`` and ``backward(grad_output)``, composed with :class:`Sequential`.

Constructor arguments and state-dict key names are torch.nn's, so weights exported from PyTorch as numpy arrays
load unchanged. ``backward`` returns the input's gradient and adds the parameters' gradients to ``.gradients()``
(call ``zero_grad()`` between steps, or ``begin_gradients()`` before the backward and ``end_gradients()`` after it,
as the training step does: the backward then writes the gradients instead of adding them to zeros). A layer keeps
only what its backward needs from the last forward.

Layers with parameters (and ``Sequential``) take ``backward(grad_output, needs_input_grad=False)`` to skip the
input's gradient and return ``None``: the training loop asks this of the whole network, whose input is data, so the
first convolution computes only its weights' gradients and the parameter-free layers before it do no work.

``model.to("cuda")`` moves every parameter and gradient to the GPU; the layers then take and give device arrays
(``numconv.to_device``), and ``state_dict()`` still returns host arrays, so checkpoints are the same on both.
"""
from __future__ import annotations

import inspect
from collections import OrderedDict
from functools import lru_cache

import numpy as np

from numconv import backend, functional as F
from numconv import checks, geometry, init

__all__ = [
    "Module", "Sequential", "Conv1d", "Conv2d", "Conv3d", "MaxPool1d", "MaxPool2d", "MaxPool3d",
    "AvgPool1d", "AvgPool2d", "AvgPool3d", "GlobalAvgPool", "Linear", "ReLU", "Dropout", "LocalResponseNorm",
    "Flatten", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d",
    "LeakyReLU", "Sigmoid", "Tanh", "Softmax",
]


class Module:
    """Base class. Subclasses list their parameter names in ``_parameter_names``; each parameter ``p`` has its
    gradient in ``p_grad`` of the same shape. State that is saved but not trained (batch normalisation's running
    statistics) is listed in ``_buffer_names``: it goes into ``state_dict`` after the parameters, as in PyTorch."""

    _parameter_names: tuple[str, ...] = ()
    _buffer_names: tuple[str, ...] = ()
    #: whether the ``backward`` defined beside it writes the parameters' gradients, instead of adding to them, after
    #: :meth:`begin_gradients` (numconv's layers with parameters; any other layer, a subclass overriding their
    #: backward included, is zeroed there)
    _writes_fresh_gradients = False
    #: set by :meth:`begin_gradients` until the layer's next backward has written its gradients
    _fresh_gradients = False

    def __init__(self):
        self.training = True

    def __call__(self, x):
        return self.forward(x)

    def forward(self, x):
        raise NotImplementedError

    def backward(self, grad_output):
        """The input's gradient from the output's; adds the parameters' gradients to theirs. A layer with
        parameters may also take ``needs_input_grad`` (see :func:`accepts_needs_input_grad`)."""
        raise NotImplementedError

    def output_shape(self, input_shape: tuple) -> tuple:
        """The output's shape for an input of ``input_shape`` (batch axis included), without computing it."""
        return tuple(input_shape)

    def children(self):
        return []

    def named_parameters(self, prefix: str = ""):
        """(name, array) pairs with PyTorch's key names, e.g. ``features.0.weight``."""
        return [(prefix + name, getattr(self, name)) for name in self._parameter_names
                if getattr(self, name) is not None]

    def named_gradients(self, prefix: str = ""):
        return [(prefix + name, getattr(self, name + "_grad")) for name in self._parameter_names
                if getattr(self, name) is not None]

    def named_buffers(self, prefix: str = ""):
        """(name, array) pairs of the saved state that is not trained, e.g. ``features.1.running_mean``."""
        return [(prefix + name, getattr(self, name)) for name in self._buffer_names if getattr(self, name) is not None]

    def named_state(self, prefix: str = ""):
        """What ``state_dict`` holds, in its order: each layer's parameters, then its buffers."""
        return self.named_parameters(prefix) + self.named_buffers(prefix)

    def parameters(self):
        return [array for _, array in self.named_parameters()]

    def gradient_slots(self):
        """(layer, attribute) of every gradient array, in ``gradients()`` order: where the training loop may put
        gradient arrays of its own (views into a few large buffers, for all-reducing them at once)."""
        return [(self, name + "_grad") for name in self._parameter_names if getattr(self, name) is not None]

    def register_backward_hook(self, hook) -> None:
        """Call ``hook(self)`` each time a :class:`Sequential` holding this layer has run its backward (its
        parameters' gradients are then final for the step): how the gradient all-reduce starts early."""
        self.__dict__.setdefault("_backward_hooks", []).append(hook)

    def remove_backward_hook(self, hook) -> None:
        """Undo :meth:`register_backward_hook`."""
        self.__dict__.get("_backward_hooks", []).remove(hook)

    def _run_backward_hooks(self) -> None:
        for hook in self.__dict__.get("_backward_hooks", ()):
            hook(self)

    def gradients(self):
        return [array for _, array in self.named_gradients()]

    def zero_grad(self):
        for layer in self._gradient_layers():
            layer._fresh_gradients = False
        for grad in self.gradients():
            backend.fill(grad, 0)

    def begin_gradients(self) -> None:
        """What the training step does in place of :meth:`zero_grad`: the next backward of each of numconv's layers
        writes its parameters' gradients instead of adding them to zeros (no pass zeroing them, no temporary arrays,
        no pass adding them); any other layer with gradients is zeroed now. Until then a layer's gradient arrays
        hold stale values: call :meth:`end_gradients` after the backward, before anything reads them."""
        for layer in self._gradient_layers():
            if _writes_its_gradients(type(layer)):
                layer._fresh_gradients = True
            else:
                layer.zero_grad()

    def end_gradients(self) -> None:
        """Zero the gradients of the layers whose backward has not run since :meth:`begin_gradients` (all of them
        on a process that has no rows in a step), so that every gradient is what :meth:`zero_grad` and the
        backward passes would have left."""
        for layer in self._gradient_layers():
            if layer._fresh_gradients:
                layer.zero_grad()

    def _gradient_layers(self) -> list:
        """The layers (this one, or those inside) that own gradient arrays, each once."""
        return list({id(layer): layer for layer, _ in self.gradient_slots()}.values())

    def _gradients_out(self):
        """``out`` for the functional backward of a layer with a weight and a bias: its own gradient arrays while
        they wait to be written (see :meth:`begin_gradients`), else None (new arrays, added afterwards)."""
        return (self.weight_grad, self.bias_grad) if self._fresh_gradients else None

    def _keep_gradients(self, grad_weight, grad_bias) -> None:
        """After the functional backward: add its gradients to the layer's, unless it has just written them."""
        if self._fresh_gradients:
            self._fresh_gradients = False
            return
        _add_gradient(self.weight_grad, grad_weight)
        _add_gradient(self.bias_grad, grad_bias)

    @property
    def device(self) -> str:
        """``'cpu'`` or ``'cuda'``: where the parameters live (``'cpu'`` for a layer without parameters)."""
        return backend.backend_of(*self.parameters())

    def to(self, device: str):
        """Move every parameter and gradient to ``device`` (``'cpu'`` or ``'cuda'``), replacing the arrays; returns
        the module. What the layers kept from the last forward is dropped: run a forward before the next backward
        (a backward without one raises).
        An ``optim.SGD`` made from the model before the move follows it (it reads the parameters at each step); one
        made from a list of (parameter, gradient) pairs keeps the old arrays and refuses to step. A RuntimeError
        says why ``'cuda'`` is not available."""
        if device not in backend.BACKENDS:
            raise ValueError(f"device must be one of {backend.BACKENDS}, got {device!r}")
        if device == "cuda":
            backend.kernels("cuda")  # fails here, at once, when there is no GPU or numba-cuda
        self._replace_arrays(lambda array: backend.to_backend(array, device))
        return self

    def _replace_arrays(self, convert):
        """Apply ``convert`` to every parameter and gradient, here and in the children; forget the last forward."""
        for name in self._parameter_names:
            if getattr(self, name) is not None:
                for attribute in (name, name + "_grad"):
                    old = getattr(self, attribute)
                    setattr(self, attribute, convert(old))
                    if getattr(self, attribute) is not old:
                        backend.retire(old)
        for name in self._buffer_names:
            old = getattr(self, name)
            # integer buffers (a batch counter) stay on the host, as they are
            if old is not None and np.dtype(old.dtype).kind == "f":
                setattr(self, name, convert(old))
        for attribute in ("_input", "_output", "_indices", "_mask"):
            if hasattr(self, attribute):
                setattr(self, attribute, None)
        for child in self.children():
            child._replace_arrays(convert)

    def train(self, mode: bool = True):
        self.training = bool(mode)
        for child in self.children():
            child.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Host copies of the parameters and buffers, by PyTorch key name (copied back from the device when
        there)."""
        return OrderedDict((name, np.array(backend.to_host(array), copy=True)) for name, array in self.named_state())

    def load_state_dict(self, state: dict, strict: bool = True):
        """Copy arrays into the parameters and buffers in place; a missing or unexpected key, or a shape that
        differs, raises ValueError naming the key."""
        own = OrderedDict(self.named_state())
        if strict:
            missing = [key for key in own if key not in state]
            unexpected = [key for key in state if key not in own]
            if missing or unexpected:
                raise ValueError(f"state_dict keys do not match: missing {missing}, unexpected {unexpected}")
        for key, array in own.items():
            if key not in state:
                continue
            value = np.asarray(backend.to_host(state[key]))
            if value.shape != tuple(array.shape):
                raise ValueError(f"state_dict[{key!r}] has shape {value.shape}, expected {tuple(array.shape)}")
            if not np.can_cast(value.dtype, array.dtype, casting="same_kind"):
                raise TypeError(f"state_dict[{key!r}] has dtype {value.dtype}, which does not convert to "
                                f"{array.dtype}")
            backend.copy_into(array, value)
        return self

    def astype(self, dtype):
        """Convert every parameter and gradient to ``dtype`` (float32 or float64), in place of the old arrays, on
        their backend; what the layers kept from the last forward is dropped."""
        dtype = checks.float_dtype(dtype)
        self._replace_arrays(lambda array: backend.astype(array, dtype))
        return self

    def num_parameters(self) -> int:
        return int(sum(array.size for array in self.parameters()))

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"


class Sequential(Module):
    """Layers applied in order; indexable (``model[0]``), iterable, and nestable. Children are named ``0, 1, …``
    or by the keys of an OrderedDict, as in torch.nn.Sequential."""

    def __init__(self, *layers):
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], OrderedDict):
            self._layers = OrderedDict(layers[0])
        else:
            self._layers = OrderedDict((str(i), layer) for i, layer in enumerate(layers))
        for name, layer in self._layers.items():
            if not isinstance(layer, Module):
                raise TypeError(f"layer {name!r} must be a numconv Module, got {type(layer).__name__}")

    def __getitem__(self, index):
        if isinstance(index, str):
            return self._layers[index]
        if isinstance(index, slice):
            return Sequential(OrderedDict(list(self._layers.items())[index]))
        return list(self._layers.values())[index]

    def __getattr__(self, name):
        layers = self.__dict__.get("_layers")
        if layers is not None and name in layers:
            return layers[name]
        raise AttributeError(name)

    def __iter__(self):
        return iter(self._layers.values())

    def __len__(self):
        return len(self._layers)

    def children(self):
        return list(self._layers.values())

    def forward(self, x):
        """The layers in order; a convolution followed by a ReLU runs as one convolution with the ReLU fused
        (:func:`_fuses_relu`): one pass over the output instead of three, the same numbers. A max-pooling after a
        ReLU keeps its output for the backward (:func:`_masks_pooled`)."""
        layers = list(self._layers.values())
        index = 0
        while index < len(layers):
            layer = layers[index]
            if index + 1 < len(layers) and _fuses_relu(layer, layers[index + 1]):
                x = layers[index + 1]._output = layer._forward_relu(x)
                index += 2
                continue
            x = layer.forward(x)
            if index and _masks_pooled(layers[index - 1], layer):
                layer._pooled = x
            index += 1
        return x

    def backward(self, grad_output, needs_input_grad=True):
        """Backward through the layers in reverse. With ``needs_input_grad=False`` the layers before the first one
        with parameters are skipped, that one is told not to compute its input's gradient, and None is returned.
        A ReLU followed by a max-pooling that ran together in the last forward take their backward as one
        (:func:`_masks_pooled`)."""
        layers = list(self._layers.values())
        first = 0
        if not needs_input_grad:
            first = next((i for i, layer in enumerate(layers) if layer.parameters()), len(layers))
        index = len(layers) - 1
        while index >= first:
            layer = layers[index]
            if index == first and not needs_input_grad:
                backward_without_input_grad(layer, grad_output)
                layer._run_backward_hooks()
                return None
            relu = layers[index - 1] if index > first else None
            if (relu is not None and _masks_pooled(relu, layer) and layer._pooled is not None
                    and layer._input is relu._output):
                (masked,) = F.relu_backward(grad_output, layer._pooled)
                grad_output = layer.backward(masked)
                layer._run_backward_hooks()
                relu._run_backward_hooks()
                index -= 2
                continue
            grad_output = layer.backward(grad_output)
            layer._run_backward_hooks()
            index -= 1
        return grad_output if needs_input_grad else None

    def output_shape(self, input_shape):
        for layer in self._layers.values():
            input_shape = layer.output_shape(input_shape)
        return input_shape

    def named_parameters(self, prefix=""):
        return [pair for name, layer in self._layers.items() for pair in layer.named_parameters(f"{prefix}{name}.")]

    def named_gradients(self, prefix=""):
        return [pair for name, layer in self._layers.items() for pair in layer.named_gradients(f"{prefix}{name}.")]

    def named_buffers(self, prefix=""):
        return [pair for name, layer in self._layers.items() for pair in layer.named_buffers(f"{prefix}{name}.")]

    def named_state(self, prefix=""):
        return [pair for name, layer in self._layers.items() for pair in layer.named_state(f"{prefix}{name}.")]

    def gradient_slots(self):
        return [slot for layer in self._layers.values() for slot in layer.gradient_slots()]

    def named_layers(self, prefix=""):
        """(name, layer) for every leaf layer, depth first."""
        for name, layer in self._layers.items():
            if isinstance(layer, Sequential):
                yield from layer.named_layers(f"{prefix}{name}.")
            else:
                yield prefix + name, layer

    def __repr__(self):
        inner = "\n".join(f"  ({name}): " + repr(layer).replace("\n", "\n  ") for name, layer in self._layers.items())
        return f"Sequential(\n{inner}\n)"


def accepts_needs_input_grad(module: Module) -> bool:
    """Whether ``module.backward`` takes ``needs_input_grad`` (numconv's layers with parameters and Sequential do;
    a user's own layer may not)."""
    return _backward_takes_flag(type(module))


@lru_cache(maxsize=None)
def _writes_its_gradients(cls) -> bool:
    """Whether ``cls.backward`` writes fresh gradients: the class that defines the backward in use says so."""
    for klass in cls.__mro__:
        if "backward" in vars(klass):
            return bool(vars(klass).get("_writes_fresh_gradients", False))
    return False


@lru_cache(maxsize=None)
def _backward_takes_flag(cls) -> bool:
    return "needs_input_grad" in inspect.signature(cls.backward).parameters


def backward_without_input_grad(module: Module, grad_output) -> None:
    """``module.backward`` for its parameters' gradients only: told to skip the input's gradient where it can be,
    and the input's gradient dropped where it cannot."""
    if accepts_needs_input_grad(module):
        module.backward(grad_output, needs_input_grad=False)
    else:
        module.backward(grad_output)


def _positive_int(value, name: str) -> int:
    return checks.integer(value, name, 1)


def _check_input_shape(input_shape, ndim: int, layer: str) -> None:
    if len(input_shape) != ndim + 2:
        raise ValueError(f"{layer} takes inputs with {ndim + 2} dimensions, got shape {tuple(input_shape)}")


def _add_gradient(total, term) -> None:
    """total += term for a parameter's gradient (``None`` when the layer has no such parameter), on its backend:
    device arrays have no ``+=``."""
    if total is not None:
        kernels = backend.kernels(backend.backend_of(total, term))
        kernels.pointwise.accumulate(total.reshape(-1), term.reshape(-1))


def _check_pool_window(ndim, kernel_size, stride, padding, dilation, ceil_mode) -> None:
    """Validate a pooling window now, on the smallest input it fits, rather than at the first forward."""
    kernel = geometry.as_tuple(kernel_size, ndim, "kernel_size")
    dilations = geometry.as_tuple(dilation, ndim, "dilation")
    extent = tuple(max(d * (k - 1) + 1, 1) for k, d in zip(kernel, dilations))
    geometry.pool_geometry(extent, kernel_size, stride, padding, dilation, ceil_mode)


class _WeightedWindow(Module):
    """What a convolution and a transposed convolution share: channels, kernel and groups checked, a weight and a
    bias, and the functional op ``{_function}{_ndim}d`` with its backward. Subclasses give the weight's shape, the
    op's keyword arguments (``_options``) and its spatial output (``_spatial_output``)."""

    _parameter_names = ("weight", "bias")
    _writes_fresh_gradients = True
    _ndim = 0
    _function = ""

    def _channels(self, in_channels, out_channels, kernel_size, groups) -> int:
        self.in_channels = _positive_int(in_channels, "in_channels")
        self.out_channels = _positive_int(out_channels, "out_channels")
        self.kernel_size = geometry.as_tuple(kernel_size, self._ndim, "kernel_size")
        return _positive_int(groups, "groups")

    def _parameters(self, weight_shape, bias, rng, dtype) -> None:
        dtype = checks.float_dtype(dtype)
        rng = rng if rng is not None else np.random.default_rng()
        self.weight = init.kaiming_normal(weight_shape, rng).astype(dtype)
        self.weight_grad = np.zeros_like(self.weight)
        self.bias = np.zeros(self.out_channels, dtype=dtype) if bias else None
        self.bias_grad = np.zeros_like(self.bias) if bias else None
        self._input = None

    def forward(self, x):
        return self._run(x)

    def _run(self, x, **fused):
        """The functional op on ``x`` (kept for the backward), with ``fused`` passed on (a convolution's ``relu``)."""
        self._input = x
        return getattr(F, f"{self._function}{self._ndim}d")(x, self.weight, self.bias, **fused, **self._options())

    def backward(self, grad_output, needs_input_grad=True):
        grad_input, grad_weight, grad_bias = getattr(F, f"{self._function}{self._ndim}d_backward")(
            grad_output, self._input, self.weight, self.bias, needs_input_grad=needs_input_grad,
            out=self._gradients_out(), **self._options())
        self._keep_gradients(grad_weight, grad_bias)
        return grad_input

    def output_shape(self, input_shape):
        _check_input_shape(input_shape, self._ndim, type(self).__name__)
        if input_shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__}({self.in_channels}, {self.out_channels}, ...) got an input "
                             f"with {input_shape[1]} channels (shape {tuple(input_shape)})")
        return (input_shape[0], self.out_channels) + self._spatial_output(tuple(input_shape[2:]))

    def extra_repr(self):
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        for name, value in self._options().items():
            if name != "stride" and value != (1 if name in ("groups", "dilation") else 0):
                text += f", {name}={value}"
        return text + ("" if self.bias is not None else ", bias=False")


class _ConvNd(_WeightedWindow):
    _function = "conv"

    def _forward_relu(self, x):
        """max(0, ``forward(x)``), the ReLU applied as the convolution stores its output."""
        return self._run(x, relu=True)

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, rng=None, dtype=np.float32):
        super().__init__()
        groups = self._channels(in_channels, out_channels, kernel_size, groups)
        geometry.check_groups(self.in_channels, (self.out_channels, self.in_channels // groups), groups)
        # validate stride, padding and dilation now, on the smallest input the window fits, not at the first forward
        extent = tuple(d * (k - 1) + 1 for k, d in zip(self.kernel_size,
                                                       geometry.as_tuple(dilation, self._ndim, "dilation")))
        geometry.conv_geometry(extent, self.kernel_size, stride, padding, dilation)
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, int(groups)
        self._parameters((self.out_channels, self.in_channels // self.groups) + self.kernel_size, bias, rng, dtype)

    def _options(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)

    def _spatial_output(self, spatial):
        return geometry.conv_geometry(spatial, self.kernel_size, self.stride, self.padding,
                                      self.dilation).output_shape


class Conv1d(_ConvNd):
    """1D convolution over (N, C, L)."""

    _ndim = 1


class Conv2d(_ConvNd):
    """2D convolution over (N, C, H, W)."""

    _ndim = 2


class Conv3d(_ConvNd):
    """3D convolution over (N, C, D, H, W)."""

    _ndim = 3


class _ConvTransposeNd(_WeightedWindow):
    """A transposed convolution (PyTorch's ConvTranspose): weight (in_channels, out_channels // groups, *kernel)."""
    _function = "conv_transpose"

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, rng=None, dtype=np.float32):
        super().__init__()
        groups = self._channels(in_channels, out_channels, kernel_size, groups)
        geometry.check_groups(self.out_channels, (self.in_channels, self.out_channels // groups), groups)
        # validate the window now, on an input the padding cannot empty, not at the first forward
        probe = tuple(1 + 2 * max(0, p) for p in geometry.as_tuple(padding, self._ndim, "padding"))
        geometry.conv_transpose_geometry(probe, self.kernel_size, stride, padding, output_padding, dilation)
        self.stride, self.padding, self.output_padding = stride, padding, output_padding
        self.dilation, self.groups = dilation, int(groups)
        self._parameters((self.in_channels, self.out_channels // self.groups) + self.kernel_size, bias, rng, dtype)

    def _options(self):
        return dict(stride=self.stride, padding=self.padding, output_padding=self.output_padding,
                    groups=self.groups, dilation=self.dilation)

    def _spatial_output(self, spatial):
        return geometry.conv_transpose_geometry(spatial, self.kernel_size, self.stride, self.padding,
                                                self.output_padding, self.dilation).input_shape


class ConvTranspose1d(_ConvTransposeNd):
    """1D transposed convolution over (N, C, L)."""

    _ndim = 1


class ConvTranspose2d(_ConvTransposeNd):
    """2D transposed convolution over (N, C, H, W): a learned upsampling."""

    _ndim = 2


class ConvTranspose3d(_ConvTransposeNd):
    """3D transposed convolution over (N, C, D, H, W)."""

    _ndim = 3


class _PoolNd(Module):
    """A pooling window over ``_ndim`` spatial axes: validated at construction, shared by max and average."""

    _ndim = 0

    def __init__(self, kernel_size, stride, padding, dilation, ceil_mode):
        super().__init__()
        _check_pool_window(self._ndim, kernel_size, stride, padding, dilation, ceil_mode)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.ceil_mode = dilation, ceil_mode
        self._input = None

    def output_shape(self, input_shape):
        _check_input_shape(input_shape, self._ndim, type(self).__name__)
        geo = geometry.pool_geometry(input_shape[2:], self.kernel_size, self.stride, self.padding, self.dilation,
                                     self.ceil_mode)
        return tuple(input_shape[:2]) + geo.output_shape

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}, padding={self.padding}"


class _MaxPoolNd(_PoolNd):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode)
        self._indices = None
        # the output, kept by a Sequential where a ReLU precedes this layer (``_masks_pooled``)
        self._pooled = None

    def _options(self):
        return dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding, dilation=self.dilation,
                    ceil_mode=self.ceil_mode)

    def forward(self, x):
        # training keeps the indices for the backward that follows; evaluation computes the values alone (no int64
        # array, about half the time), and a backward after it, if any, finds the indices again from the input
        pool = getattr(F, f"max_pool{self._ndim}d")
        if self.training:
            out, self._indices = pool(x, return_indices=True, **self._options())
        else:
            out, self._indices = pool(x, **self._options()), None
        self._input = x
        self._pooled = None  # a Sequential that ran this forward keeps the output again (``_masks_pooled``)
        return out

    def backward(self, grad_output):
        (grad_input,) = getattr(F, f"max_pool{self._ndim}d_backward")(grad_output, self._input,
                                                                       indices=self._indices, **self._options())
        return grad_input


class MaxPool1d(_MaxPoolNd):
    _ndim = 1


class MaxPool2d(_MaxPoolNd):
    _ndim = 2


class MaxPool3d(_MaxPoolNd):
    _ndim = 3


class _AvgPoolNd(_PoolNd):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__(kernel_size, stride, padding, 1, ceil_mode)
        self.count_include_pad = checks.flag(count_include_pad, "count_include_pad")

    def _options(self):
        return dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding,
                    ceil_mode=self.ceil_mode, count_include_pad=self.count_include_pad)

    def forward(self, x):
        self._input = x
        return getattr(F, f"avg_pool{self._ndim}d")(x, **self._options())

    def backward(self, grad_output):
        (grad_input,) = getattr(F, f"avg_pool{self._ndim}d_backward")(grad_output, self._input, **self._options())
        return grad_input


class AvgPool1d(_AvgPoolNd):
    _ndim = 1


class AvgPool2d(_AvgPoolNd):
    _ndim = 2


class AvgPool3d(_AvgPoolNd):
    _ndim = 3


class GlobalAvgPool(Module):
    """Mean over every spatial axis: (N, C, *spatial) -> (N, C) (Network in Network's classifier)."""

    def __init__(self):
        super().__init__()
        self._input = None

    def forward(self, x):
        self._input = x
        return F.global_avg_pool(x)

    def backward(self, grad_output):
        return F.global_avg_pool_backward(grad_output, self._input)[0]

    def output_shape(self, input_shape):
        return tuple(input_shape[:2])


class Linear(Module):
    """y = x W^T + b over (*, in_features)."""

    _parameter_names = ("weight", "bias")
    _writes_fresh_gradients = True

    def __init__(self, in_features, out_features, bias=True, rng=None, dtype=np.float32):
        super().__init__()
        self.in_features = _positive_int(in_features, "in_features")
        self.out_features = _positive_int(out_features, "out_features")
        dtype = checks.float_dtype(dtype)
        rng = rng if rng is not None else np.random.default_rng()
        self.weight = init.kaiming_normal((self.out_features, self.in_features), rng).astype(dtype)
        self.weight_grad = np.zeros_like(self.weight)
        self.bias = np.zeros(self.out_features, dtype=dtype) if bias else None
        self.bias_grad = np.zeros_like(self.bias) if bias else None
        self._input = None

    def forward(self, x):
        self._input = x
        return F.linear(x, self.weight, self.bias)

    def backward(self, grad_output, needs_input_grad=True):
        grad_input, grad_weight, grad_bias = F.linear_backward(grad_output, self._input, self.weight, self.bias,
                                                               needs_input_grad=needs_input_grad,
                                                               out=self._gradients_out())
        self._keep_gradients(grad_weight, grad_bias)
        return grad_input

    def output_shape(self, input_shape):
        if input_shape[-1] != self.in_features:
            raise ValueError(f"Linear({self.in_features}, {self.out_features}) got input of shape {input_shape}")
        return tuple(input_shape[:-1]) + (self.out_features,)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}"


class LeakyReLU(Module):
    """x where x > 0, else negative_slope * x (torch.nn.LeakyReLU). Keeps its input for the backward."""

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = checks.real(negative_slope, "negative_slope")
        self._input = None

    def forward(self, x):
        self._input = x
        return F.leaky_relu(x, self.negative_slope)

    def backward(self, grad_output):
        return F.leaky_relu_backward(grad_output, self._input, self.negative_slope)[0]

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class _OutputActivation(Module):
    """An activation whose backward reads its output (``F.<name>`` and ``F.<name>_backward``)."""

    _function = ""

    def __init__(self):
        super().__init__()
        self._output = None

    def forward(self, x):
        self._output = getattr(F, self._function)(x)
        return self._output

    def backward(self, grad_output):
        return getattr(F, self._function + "_backward")(grad_output, self._output)[0]


class ReLU(_OutputActivation):
    """max(x, 0). Keeps its output, whose sign is the input's, for the backward."""

    _function = "relu"


def _fuses_relu(layer, following) -> bool:
    """Whether ``layer`` and ``following`` are a convolution and a ReLU that :class:`Sequential` runs as one
    convolution with its ReLU fused, the ReLU keeping that output for its backward as if it had computed it: exactly
    numconv's classes, their ``forward`` replaced neither by a subclass nor on the instance (which then run as
    written)."""
    return (isinstance(layer, _ConvNd) and type(layer).forward is _WeightedWindow.forward
            and type(following) is ReLU and "forward" not in vars(layer) and "forward" not in vars(following))


def _masks_pooled(layer, following) -> bool:
    """Whether ``layer`` and ``following`` are a ReLU and a max-pooling whose backward :class:`Sequential` runs as
    the pooling's backward of the gradient masked by the pooled output's signs (ReLU's backward on the pooled
    output), instead of ReLU's backward over the pooling's whole input after it: the same numbers, since the pooling
    routes each window's gradient to the input its maximum came from, whose value the pooled output holds (windows
    that share an input share its mask), and a mask over the pooled output reads a fraction of the input (a fourth
    for 2 x 2 windows). Exactly numconv's classes, their ``forward`` and ``backward`` replaced neither by a subclass
    nor on the instance (which then run as written)."""
    return (type(layer) is ReLU and isinstance(following, _MaxPoolNd)
            and type(following).forward is _MaxPoolNd.forward and type(following).backward is _MaxPoolNd.backward
            and not {"forward", "backward"} & (vars(layer).keys() | vars(following).keys()))


class Sigmoid(_OutputActivation):
    """The logistic function 1 / (1 + exp(-x))."""

    _function = "sigmoid"


class Tanh(_OutputActivation):
    """tanh(x)."""

    _function = "tanh"


class Softmax(Module):
    """exp(x) / sum of exp(x) along ``dim`` (torch.nn.Softmax; numconv's loss takes logits, so a classifier trained
    with ``F.cross_entropy`` ends without it)."""

    def __init__(self, dim=-1):
        super().__init__()
        self.dim = checks.integer(dim, "dim")
        self._output = None

    def forward(self, x):
        self._output = F.softmax(x, self.dim)
        return self._output

    def backward(self, grad_output):
        return F.softmax_backward(grad_output, self._output, self.dim)[0]

    def extra_repr(self):
        return f"dim={self.dim}"


class Dropout(Module):
    """Inverted dropout with probability ``p`` in training, the identity in evaluation. Its random numbers come
    from ``rng`` (a numpy Generator; the models pass one derived from their seed).

    ``batch_share`` is ``None``, or ``(first_row, global_rows)`` while the batches are shares of global batches
    split across processes (data-parallel training sets it each step): the masks are then the rows of the masks
    one process would draw for the global batch (``F.dropout``'s ``batch_share``)."""

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        self.p = checks.probability(p)
        self.rng = rng if rng is not None else np.random.default_rng()
        self.batch_share = None
        self._mask = None
        self._values_per_sample = None

    def forward(self, x):
        if not self.training or self.p == 0.0:
            self._mask = None
            return x
        self._values_per_sample = int(np.prod(x.shape[1:]))
        out, self._mask = F.dropout(x, self.p, training=True, rng=self.rng, return_mask=True,
                                    batch_share=self.batch_share)
        return out

    def skip_batch(self, global_rows: int) -> None:
        """Move the generator past a global batch of ``global_rows`` samples of which this process holds none,
        as its forward would have; the sample size is the last forward's."""
        if not self.training or self.p == 0.0:
            return
        if self._values_per_sample is None:
            raise RuntimeError("Dropout.skip_batch needs a forward in training mode first, to know the sample size")
        F.skip_dropout_draws(self.rng, global_rows * self._values_per_sample)

    def backward(self, grad_output):
        if self._mask is None:
            if self.training and self.p > 0.0:
                # no mask from a training forward (none yet, or dropped by to()/astype()): never pass silently
                raise RuntimeError("Dropout.backward in training mode needs a forward in training mode first")
            return grad_output
        return F.dropout_backward(grad_output, self._mask, self.p)[0]

    def extra_repr(self):
        return f"p={self.p}"


class LocalResponseNorm(Module):
    """Local response normalisation across channels (AlexNet section 3.3; PyTorch's formula).

    ``groups`` (numconv's addition; 1 is PyTorch's layer) splits the channels into that many equal, consecutive
    groups and normalises each on its own, as each of AlexNet's two GPUs normalised only its own maps: no window
    crosses a group's edge."""

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0, groups=1):
        super().__init__()
        self.size = _positive_int(size, "size")
        self.alpha, self.beta, self.k = (checks.real(value, name) for name, value in
                                         (("alpha", alpha), ("beta", beta), ("k", k)))
        self.groups = _positive_int(groups, "groups")
        self._input = None

    def _grouped(self, array):
        """(N, C, *rest) seen as (N * groups, C / groups, *rest): each group a sample of its own (a view)."""
        if self.groups == 1:
            return array
        channels = array.shape[1] if array.ndim >= 2 else None
        if channels is None or channels % self.groups:
            raise ValueError(f"LocalResponseNorm(groups={self.groups}) needs a channel count that the groups "
                             f"divide, got an input of shape {tuple(array.shape)}")
        return array.reshape((array.shape[0] * self.groups, channels // self.groups) + tuple(array.shape[2:]))

    def forward(self, x):
        self._input = x
        out = F.local_response_norm(self._grouped(x), self.size, self.alpha, self.beta, self.k)
        return out.reshape(x.shape)

    def backward(self, grad_output):
        grad_input = F.local_response_norm_backward(self._grouped(grad_output), self._grouped(self._input),
                                                    self.size, self.alpha, self.beta, self.k)[0]
        return grad_input.reshape(self._input.shape)

    def extra_repr(self):
        groups = f", groups={self.groups}" if self.groups != 1 else ""
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}{groups}"


class _BatchNormNd(Module):
    """Batch normalisation (Ioffe and Szegedy 2015) over the channels of (N, C, *spatial), torch.nn's layer:
    training normalises by the batch's statistics and updates the running ones (``momentum``, or a cumulative
    average when it is None); evaluation uses the running ones. ``affine=False`` has no weight and bias;
    ``track_running_stats=False`` keeps no running statistics and always uses the batch's."""

    _parameter_names = ("weight", "bias")
    _writes_fresh_gradients = True
    _buffer_names = ("running_mean", "running_var", "num_batches_tracked")
    _ndims: tuple[int, ...] = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 dtype=np.float32):
        super().__init__()
        self.num_features = _positive_int(num_features, "num_features")
        self.eps = checks.real(eps, "eps", above=0.0)
        self.momentum = None if momentum is None else checks.probability(momentum, "momentum")
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        dtype = checks.float_dtype(dtype)
        channels = self.num_features
        self.weight = np.ones(channels, dtype=dtype) if affine else None
        self.bias = np.zeros(channels, dtype=dtype) if affine else None
        self.weight_grad = np.zeros_like(self.weight) if affine else None
        self.bias_grad = np.zeros_like(self.bias) if affine else None
        self.running_mean = np.zeros(channels, dtype=dtype) if track_running_stats else None
        self.running_var = np.ones(channels, dtype=dtype) if track_running_stats else None
        self.num_batches_tracked = np.zeros((), dtype=np.int64) if track_running_stats else None
        self._input = None
        self._batch_statistics = True

    def _check(self, shape):
        if len(shape) not in self._ndims or shape[1] != self.num_features:
            ndims = " or ".join(map(str, self._ndims))
            raise ValueError(f"{type(self).__name__}({self.num_features}) takes inputs of {ndims} dimensions with "
                             f"{self.num_features} channels, got shape {tuple(shape)}")

    def forward(self, x):
        self._check(x.shape)
        self._input = x
        self._batch_statistics = self.training or self.running_mean is None
        momentum = self.momentum if self.momentum is not None else 0.0  # read only when the statistics update
        if self.training and self.running_mean is not None:
            self.num_batches_tracked += 1
            if self.momentum is None:  # a cumulative average
                momentum = 1.0 / float(self.num_batches_tracked)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self._batch_statistics,
                            momentum, self.eps)

    def backward(self, grad_output):
        grad_input, grad_weight, grad_bias = F.batch_norm_backward(
            grad_output, self._input, self.running_mean, self.running_var, self.weight, self.bias,
            self._batch_statistics, self.eps, out=self._gradients_out())
        self._keep_gradients(grad_weight, grad_bias)
        return grad_input

    def output_shape(self, input_shape):
        self._check(input_shape)
        return tuple(input_shape)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNormNd):
    """Batch normalisation of (N, C) or (N, C, L)."""

    _ndims = (2, 3)


class BatchNorm2d(_BatchNormNd):
    """Batch normalisation of (N, C, H, W)."""

    _ndims = (4,)


class BatchNorm3d(_BatchNormNd):
    """Batch normalisation of (N, C, D, H, W)."""

    _ndims = (5,)


class Flatten(Module):
    """(N, *rest) -> (N, prod(rest))."""

    def __init__(self):
        super().__init__()
        self._shape = None

    def forward(self, x):
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_output):
        return grad_output.reshape(self._shape)

    def output_shape(self, input_shape):
        return (input_shape[0], int(np.prod(input_shape[1:])))
