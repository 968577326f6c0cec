"""Symbolic forward expressions of every op, and their gradients by ``sympy.diff``.

Each builder returns object arrays of SymPy symbols for its inputs (named like ``x_0_1_2``) and of SymPy
expressions for its outputs, shaped like the arrays the kernels see. Window ops take their windows from
:mod:`spec.windows`; nothing here imports numconv.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import sympy as sp

from spec.windows import (
    Window, group_input_channels, transposed_output_size, transposed_sources, window_from,
)


def symbol_array(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """An object array of distinct symbols ``name_i_j...``: plain identifiers, so lambdify uses them as they are."""
    array = np.empty(shape, dtype=object)
    for index in itertools.product(*(range(size) for size in shape)):
        array[index] = sp.Symbol("_".join((name,) + tuple(map(str, index))))
    return array


def product(a, b):
    """``a * b``, the expression sympy builds, fast where both are plain distinct symbols (a convolution's ``w * x``,
    its gradients' ``g * x`` and ``g * w``): sympy's Mul then holds the two in the order of ``Basic.compare``, which
    for symbols of the same assumptions is their names' order, and its general flattening took most of a
    convolution case's time. Anything else goes through ``*``."""
    if type(a) is sp.Symbol and type(b) is sp.Symbol and a.name != b.name \
            and a._hashable_content()[1:] == b._hashable_content()[1:]:
        return sp.Mul._from_args((a, b) if a.name < b.name else (b, a), True)
    if b is sp.S.One:  # a gradient's g times the derivative 1
        return a
    return a * b


# --- configurations -----------------------------------------------------------------------------------------------


def _padding_label(axes) -> str:
    """``p`` and each axis's padding: one number when both sides agree, ``before+after`` when not."""
    return "p" + "x".join("%d" % a.pad_left if a.pad_left == a.right else "%d+%d" % (a.pad_left, a.right)
                          for a in axes)


@dataclass(frozen=True)
class ConvConfig:
    """A convolution: ``input_shape`` and ``kernel`` are spatial (1 to 3 axes); per-axis ``stride``, ``padding``
    (before each axis), ``padding_right`` (after; ``None`` means equal to ``padding``) and ``dilation``."""

    batch: int
    in_channels: int
    out_channels: int
    input_shape: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...] | None = None
    padding: tuple[int, ...] | None = None
    dilation: tuple[int, ...] | None = None
    groups: int = 1
    padding_right: tuple[int, ...] | None = None

    @property
    def window(self) -> Window:
        return window_from(self.input_shape, self.kernel, self.stride, self.padding, self.dilation,
                           padding_right=self.padding_right)

    def label(self) -> str:
        w = self.window
        parts = [f"{len(self.input_shape)}D", f"N{self.batch}", f"C{self.in_channels}->{self.out_channels}",
                 "in " + "x".join(map(str, self.input_shape)), "k" + "x".join(map(str, self.kernel))]
        axes = w.axes
        if any(a.stride != 1 for a in axes):
            parts.append("s" + "x".join(str(a.stride) for a in axes))
        if any(a.pad_left or a.right for a in axes):
            parts.append(_padding_label(axes))
        if any(a.dilation != 1 for a in axes):
            parts.append("d" + "x".join(str(a.dilation) for a in axes))
        if self.groups != 1:
            parts.append(f"g{self.groups}")
        return " ".join(parts)


@dataclass(frozen=True)
class PoolConfig:
    """A pooling window over (batch, channels, *input_shape): per-axis ``padding`` before each axis and
    ``padding_right`` after it (``None``: equal to ``padding``)."""

    batch: int
    channels: int
    input_shape: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...] | None = None
    padding: tuple[int, ...] | None = None
    dilation: tuple[int, ...] | None = None
    ceil_mode: bool = False
    count_include_pad: bool = True
    padding_right: tuple[int, ...] | None = None

    @property
    def window(self) -> Window:
        return window_from(self.input_shape, self.kernel, self.stride or self.kernel, self.padding,
                           self.dilation, self.ceil_mode, padding_right=self.padding_right)

    def label(self) -> str:
        axes = self.window.axes
        parts = [f"{len(self.input_shape)}D", f"N{self.batch}", f"C{self.channels}",
                 "in " + "x".join(map(str, self.input_shape)), "k" + "x".join(map(str, self.kernel)),
                 "s" + "x".join(str(a.stride) for a in axes)]
        if any(a.pad_left or a.right for a in axes):
            parts.append(_padding_label(axes))
        if any(a.dilation != 1 for a in axes):
            parts.append("d" + "x".join(str(a.dilation) for a in axes))
        if self.ceil_mode:
            parts.append("ceil")
        if not self.count_include_pad:
            parts.append("exclude-pad")
        return " ".join(parts)


@dataclass(frozen=True)
class ShapeConfig:
    """An op defined by array shapes and scalar parameters (linear, element-wise, LRN, loss, global pooling)."""

    shape: tuple[int, ...]
    params: tuple = field(default=())

    def label(self) -> str:
        text = "x".join(map(str, self.shape))
        return text + ("" if not self.params else " " + " ".join(f"{k}={v}" for k, v in self.params))

    def param(self, name):
        return dict(self.params)[name]


@dataclass(frozen=True)
class TransposedConvConfig:
    """A transposed convolution (PyTorch's ConvTranspose): input (N, in_channels, *input_shape), weight
    (in_channels, out_channels/groups, *kernel); per-axis ``stride``, ``padding``, ``output_padding``, ``dilation``."""

    batch: int
    in_channels: int
    out_channels: int
    input_shape: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    output_padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int = 1

    @property
    def output_shape(self) -> tuple[int, ...]:
        return tuple(transposed_output_size(*axis) for axis in zip(
            self.input_shape, self.kernel, self.stride, self.padding, self.output_padding, self.dilation))

    def adjoint(self) -> ConvConfig:
        """The convolution whose input gradient this is: from this op's output back to its input."""
        return ConvConfig(self.batch, self.out_channels, self.in_channels, self.output_shape, self.kernel,
                          self.stride, self.padding, self.dilation, self.groups)

    def label(self) -> str:
        parts = [f"{len(self.input_shape)}D transposed", f"N{self.batch}", f"C{self.in_channels}->{self.out_channels}",
                 "in " + "x".join(map(str, self.input_shape)), "k" + "x".join(map(str, self.kernel)),
                 "s" + "x".join(map(str, self.stride))]
        for name, values, default in (("p", self.padding, 0), ("op", self.output_padding, 0),
                                      ("d", self.dilation, 1)):
            if any(v != default for v in values):
                parts.append(name + "x".join(map(str, values)))
        if self.groups != 1:
            parts.append(f"g{self.groups}")
        return " ".join(parts)


# --- forward expressions ------------------------------------------------------------------------------------------


def conv(cfg: ConvConfig):
    """x (N, C, *in), weight (O, C/g, *k), bias (O,) -> y (N, O, *out): y = b + sum w * x over each window."""
    window = cfg.window
    x = symbol_array("x", (cfg.batch, cfg.in_channels) + tuple(cfg.input_shape))
    w = symbol_array("w", (cfg.out_channels, cfg.in_channels // cfg.groups) + tuple(cfg.kernel))
    b = symbol_array("b", (cfg.out_channels,))
    y = np.empty((cfg.batch, cfg.out_channels) + window.out_shape, dtype=object)
    for n in range(cfg.batch):
        for o in range(cfg.out_channels):
            channels = group_input_channels(o, cfg.in_channels, cfg.out_channels, cfg.groups)
            for position in window.outputs():
                terms = [b[o]]
                for local, channel in enumerate(channels):
                    for tap, index, inside in window.window(position):
                        if inside:
                            terms.append(product(w[(o, local) + tap], x[(n, channel) + index]))
                y[(n, o) + position] = sp.Add(*terms)
    return {"x": x, "weight": w, "bias": b}, y


def conv_transpose(cfg: TransposedConvConfig):
    """x (N, C, *in), weight (C, O/g, *k) -> y (N, O, *out), from the transposed window equations: y[n, o, i] sums
    x[n, c, m] * w[c, o', j] over the input channels c of o's group and every (m, j) with s*m - p + d*j = i."""
    x = symbol_array("y", (cfg.batch, cfg.in_channels) + tuple(cfg.input_shape))
    w = symbol_array("w", (cfg.in_channels, cfg.out_channels // cfg.groups) + tuple(cfg.kernel))
    out_per_group, in_per_group = cfg.out_channels // cfg.groups, cfg.in_channels // cfg.groups
    axes = tuple(zip(cfg.input_shape, cfg.kernel, cfg.stride, cfg.padding, cfg.dilation))
    out = np.empty((cfg.batch, cfg.out_channels) + cfg.output_shape, dtype=object)
    for position in itertools.product(*(range(size) for size in cfg.output_shape)):
        per_axis = [transposed_sources(index, *axis) for index, axis in zip(position, axes)]
        pairs = list(itertools.product(*per_axis))
        for n, channel in itertools.product(range(cfg.batch), range(cfg.out_channels)):
            group, local = divmod(channel, out_per_group)
            terms = [product(w[(c, local) + tuple(t for _, t in pair)], x[(n, c) + tuple(m for m, _ in pair)])
                     for c in range(group * in_per_group, (group + 1) * in_per_group) for pair in pairs]
            out[(n, channel) + position] = sp.Add(*terms)
    return {"x": x, "weight": w}, out


def transposed_is_adjoint(cfg: TransposedConvConfig) -> bool:
    """<conv(x, w), y> = <x, conv_transpose(y, w)> as polynomials, for the convolution :meth:`adjoint` names: the
    transposed window equations are exactly the convolution's read backwards."""
    inputs, transposed = conv_transpose(cfg)
    conv_inputs, y = conv(cfg.adjoint())
    bias = conv_inputs["bias"]
    forward = sum(((y[index] - bias[index[1]]) * inputs["x"][index] for index in np.ndindex(*y.shape)), sp.S.Zero)
    backward = sum((conv_inputs["x"][index] * transposed[index] for index in np.ndindex(*transposed.shape)),
                   sp.S.Zero)
    return sp.expand(forward - backward) == 0


def max_pool(cfg: PoolConfig):
    """x (N, C, *in) -> y (N, C, *out): the maximum over each window's positions inside the input."""
    window = cfg.window
    x = symbol_array("x", (cfg.batch, cfg.channels) + tuple(cfg.input_shape))
    y = np.empty((cfg.batch, cfg.channels) + window.out_shape, dtype=object)
    for n, ch in itertools.product(range(cfg.batch), range(cfg.channels)):
        for position in window.outputs():
            inside = [x[(n, ch) + index] for _, index, ok in window.window(position) if ok]
            y[(n, ch) + position] = max_of(inside)
    return {"x": x}, y


def max_of(symbols: list):
    """sp.Max of distinct free symbols, built as it stands: sympy's Max would search its arguments pairwise for ones
    that dominate others (none can), most of a pooling case's time. The expression is the one sp.Max gives."""
    return symbols[0] if len(symbols) == 1 else sp.Max(*symbols, evaluate=False)


def avg_pool(cfg: PoolConfig):
    """x (N, C, *in) -> y (N, C, *out): each window's sum over its count (padding counted when
    ``count_include_pad``; a ceil_mode window hanging past the right padding is clipped to it, PyTorch's rule)."""
    window = cfg.window
    x = symbol_array("x", (cfg.batch, cfg.channels) + tuple(cfg.input_shape))
    y = np.empty((cfg.batch, cfg.channels) + window.out_shape, dtype=object)
    for n, ch in itertools.product(range(cfg.batch), range(cfg.channels)):
        for position in window.outputs():
            cells = list(window.window(position))
            inside = [x[(n, ch) + index] for _, index, ok in cells if ok]
            if cfg.count_include_pad:
                # positions inside the padded input, padding included
                count = sum(
                    all(-axis.pad_left <= i < axis.size + axis.right for axis, i in zip(window.axes, index))
                    for _, index, _ in cells
                )
            else:
                count = len(inside)
            y[(n, ch) + position] = sp.Add(*inside) / count
    return {"x": x}, y


def global_avg_pool(cfg: ShapeConfig):
    """x (N, C, S) -> y (N, C): the mean over S."""
    x = symbol_array("x", cfg.shape)
    y = np.empty(cfg.shape[:2], dtype=object)
    for n, ch in itertools.product(range(cfg.shape[0]), range(cfg.shape[1])):
        y[n, ch] = sp.Add(*x[n, ch]) / cfg.shape[2]
    return {"x": x}, y


def linear(cfg: ShapeConfig):
    """x (N, I), weight (O, I), bias (O,) -> y (N, O) = x W^T + b; ``cfg.shape`` is (N, I, O)."""
    batch, in_features, out_features = cfg.shape
    x = symbol_array("x", (batch, in_features))
    w = symbol_array("w", (out_features, in_features))
    b = symbol_array("b", (out_features,))
    y = np.empty((batch, out_features), dtype=object)
    for n, o in itertools.product(range(batch), range(out_features)):
        y[n, o] = sp.Add(b[o], *(product(w[o, i], x[n, i]) for i in range(in_features)))
    return {"x": x, "weight": w, "bias": b}, y


def relu(cfg: ShapeConfig):
    """y = max(x, 0), element-wise over a flat (size,) array."""
    x = symbol_array("x", cfg.shape)
    return {"x": x}, np.vectorize(lambda v: sp.Max(v, 0), otypes=[object])(x)


def dropout(cfg: ShapeConfig, mask: np.ndarray):
    """y = x * mask / (1 - p) for a given 0/1 mask (the randomness is the mask's, not the kernel's)."""
    x = symbol_array("x", cfg.shape)
    scale = 1 / (1 - sp.nsimplify(cfg.param("p")))
    y = np.empty(cfg.shape, dtype=object)
    for i in np.ndindex(*cfg.shape):
        y[i] = x[i] * scale if mask[i] else sp.Integer(0)
    return {"x": x}, y


def local_response_norm(cfg: ShapeConfig):
    """x (N, C, S) -> y = x / (k + alpha/size * sum of x^2 over the channel window)^beta (PyTorch's formula: the
    window of channel c is c - size//2 .. c + (size-1)//2, clipped to the channels)."""
    size = cfg.param("size")
    alpha, beta, k = (sp.nsimplify(cfg.param(name)) for name in ("alpha", "beta", "k"))
    batch, channels, spatial = cfg.shape
    x = symbol_array("x", cfg.shape)
    y = np.empty(cfg.shape, dtype=object)
    for n, ch, s in itertools.product(range(batch), range(channels), range(spatial)):
        lo, hi = max(ch - size // 2, 0), min(ch + (size - 1) // 2 + 1, channels)
        total = sp.Add(*(x[n, j, s] ** 2 for j in range(lo, hi)))
        y[n, ch, s] = x[n, ch, s] / (k + alpha / size * total) ** beta
    return {"x": x}, y


def batch_norm(cfg: ShapeConfig, statistics_of_x: bool):
    """x (N, C, S), weight and bias (C,) -> y = (x - mean[c]) / sqrt(var[c] + eps) * weight[c] + bias[c]. With
    ``statistics_of_x`` the mean and the biased variance are the batch's own (training); otherwise they are inputs
    (evaluation, with running statistics). Returns (inputs, y, {"mean", "var"} expressions)."""
    batch, channels, size = cfg.shape
    eps = sp.nsimplify(cfg.param("eps"))
    x, weight, bias = symbol_array("x", cfg.shape), symbol_array("w", (channels,)), symbol_array("b", (channels,))
    inputs = {"x": x, "weight": weight, "bias": bias}
    if statistics_of_x:
        count = batch * size
        mean = np.array([sp.Add(*x[:, c, :].reshape(-1)) / count for c in range(channels)], dtype=object)
        var = np.array([sp.Add(*((x[:, c, :].reshape(-1) - mean[c]) ** 2)) / count for c in range(channels)],
                       dtype=object)
    else:
        mean, var = symbol_array("m", (channels,)), symbol_array("v", (channels,))
        inputs.update(mean=mean, var=var)
    y = np.empty(cfg.shape, dtype=object)
    for n, c, s in itertools.product(range(batch), range(channels), range(size)):
        y[n, c, s] = (x[n, c, s] - mean[c]) / sp.sqrt(var[c] + eps) * weight[c] + bias[c]
    return inputs, y, {"mean": mean, "var": var}


def running_average(cfg: ShapeConfig):
    """running' = (1 - momentum) * running + momentum * correction * value, element-wise over (C,)."""
    momentum, correction = sp.nsimplify(cfg.param("momentum")), sp.nsimplify(cfg.param("correction"))
    running, value = symbol_array("r", cfg.shape), symbol_array("u", cfg.shape)
    return {"running": running, "value": value}, {"running": (1 - momentum) * running + momentum * correction * value}


def cross_entropy(cfg: ShapeConfig, target: np.ndarray, class_weight, smoothing):
    """logits (N, K) -> losses (N,), PyTorch's: (1 - s) * w[t] * (log(sum exp z) - z[t]) + s / K * sum_k w[k] *
    (log(sum exp z) - z[k]), with the class weights ``class_weight`` (K rationals) and label smoothing ``s``; a row
    whose target is negative (ignored) has loss 0."""
    logits = symbol_array("z", cfg.shape)
    classes = cfg.shape[1]
    smoothing = sp.nsimplify(smoothing)
    weights = [sp.nsimplify(w) for w in class_weight]
    losses = np.empty(cfg.shape[:1], dtype=object)
    for n in range(cfg.shape[0]):
        t = int(target[n])
        if t < 0:
            losses[n] = sp.Integer(0)
            continue
        log_sum = sp.log(sp.Add(*(sp.exp(v) for v in logits[n])))
        smooth = sp.Add(*(w * (log_sum - z) for w, z in zip(weights, logits[n])))
        losses[n] = (1 - smoothing) * weights[t] * (log_sum - logits[n, t]) + smoothing / classes * smooth
    return {"logits": logits}, losses


# --- gradients ----------------------------------------------------------------------------------------------------


def gradients(outputs: np.ndarray, wrt: dict[str, np.ndarray], grad_name: str = "g", polynomial: bool = True):
    """The gradients of ``L = sum(g * outputs)`` with respect to each array of symbols in ``wrt``, by sympy.diff.

    For polynomials, d/dv of a sum is taken term by term (linearity), which is the same derivative at a fraction
    of the cost, and a term that is a number times distinct symbols (each to the first power) is differentiated by
    dropping the symbol, without sympy.diff's machinery; other expressions are differentiated whole. Returns
    (g symbols, {name: expression array}).
    """
    grad_output = symbol_array(grad_name, outputs.shape)
    position = {}
    for name, symbols in wrt.items():
        for index in np.ndindex(*symbols.shape):
            position[symbols[index]] = (name, index)
    collected: dict[str, dict] = {name: {} for name in wrt}
    for index in np.ndindex(*outputs.shape):
        expr = outputs[index]
        pieces = sp.Add.make_args(expr) if polynomial else (expr,)
        for piece in pieces:
            for symbol in piece.free_symbols:
                if symbol in position:
                    name, where = position[symbol]
                    derivative = _derivative(piece, symbol)
                    collected[name].setdefault(where, []).append(product(grad_output[index], derivative))
    result = {}
    for name, symbols in wrt.items():
        array = np.empty(symbols.shape, dtype=object)
        for index in np.ndindex(*symbols.shape):
            array[index] = sp.Add(*collected[name].get(index, []))
        result[name] = array
    return grad_output, result


def _derivative(term, symbol):
    """d term / d symbol: for a number times distinct symbols of power 1 (a convolution's w * x, a sum's x), the
    product of the other factors; for anything else, sympy.diff."""
    if term.is_Symbol and term == symbol:
        return sp.Integer(1)
    if term.is_Mul and all(factor.is_Symbol or factor.is_Number for factor in term.args):
        # by identity: the symbol is one of the term's own factors (sympy's comparison costs microseconds), unless
        # it is an equal symbol of another object, as with sympy's cache off
        others = [factor for factor in term.args if factor is not symbol]
        if len(others) == len(term.args):
            others = [factor for factor in term.args if factor != symbol]
        return others[0] if len(others) == 1 else sp.Mul(*others)
    if isinstance(term, sp.Max) and symbol in term.args and all(arg.is_Symbol for arg in term.args):
        return _max_derivative(term, symbol)
    names = sorted(term.free_symbols, key=lambda free: free.name)
    placeholders = _placeholders(len(names))
    derivative = _pattern_derivative(term.xreplace(dict(zip(names, placeholders))), placeholders[names.index(symbol)])
    return derivative.xreplace(dict(zip(placeholders, names)))


_PLACEHOLDERS: list = []


def _placeholders(count: int) -> list:
    """The first ``count`` of one list of symbols no spec array uses (their names are not ``name_i_j``)."""
    while len(_PLACEHOLDERS) < count:
        _PLACEHOLDERS.append(sp.Symbol(f"placeholder{len(_PLACEHOLDERS)}"))
    return _PLACEHOLDERS[:count]


@lru_cache(maxsize=None)
def _pattern_derivative(pattern, placeholder):
    """sympy.diff once per pattern: a layer's outputs are mostly one expression over other symbols (LRN's at each
    position, a loss's per sample), and sympy.diff costs milliseconds each; renaming the symbols back is cheap."""
    return sp.diff(pattern, placeholder)


def _max_derivative(term, symbol):
    """d Max(symbol, others...) / d symbol of distinct symbols: Heaviside(symbol - Max(others)), sympy's own
    formula, built as it stands (see :func:`max_of`; nor can the Heaviside's sign be decided)."""
    return sp.Heaviside(symbol - max_of([arg for arg in term.args if arg != symbol]), evaluate=False)


def accumulate(cfg: ShapeConfig):
    """total' = total + term, element-wise over flat (size,) arrays (a parameter gradient summed over backwards)."""
    total, term = symbol_array("t", cfg.shape), symbol_array("u", cfg.shape)
    return {"total": total, "term": term}, {"total": total + term}


def add(cfg: ShapeConfig):
    """out = a + b, element-wise over flat (size,) arrays (a residual connection)."""
    a, b = symbol_array("a", cfg.shape), symbol_array("b", cfg.shape)
    return {"a": a, "b": b}, {"out": a + b}


def leaky_relu(cfg: ShapeConfig):
    """y = x where x > 0, else slope * x, element-wise over a flat (size,) array."""
    slope = sp.nsimplify(cfg.param("slope"))
    x = symbol_array("x", cfg.shape)
    return {"x": x}, np.vectorize(lambda v: sp.Max(v, 0) + slope * sp.Min(v, 0), otypes=[object])(x)


def sigmoid(cfg: ShapeConfig):
    """y = 1 / (1 + exp(-x)), element-wise over a flat (size,) array."""
    x = symbol_array("x", cfg.shape)
    return {"x": x}, np.vectorize(lambda v: 1 / (1 + sp.exp(-v)), otypes=[object])(x)


def tanh(cfg: ShapeConfig):
    """y = tanh(x), element-wise over a flat (size,) array."""
    x = symbol_array("x", cfg.shape)
    return {"x": x}, np.vectorize(sp.tanh, otypes=[object])(x)


def output_gradient(cfg: ShapeConfig, activation: str):
    """The input's gradient of an activation written in its output y, as its backward kernel computes it:
    sigmoid g * y * (1 - y), tanh g * (1 - y^2), softmax (rows of (R, K)) y_i * (g_i - sum_j g_j y_j). Polynomials
    in g and y, so the check is exact. Returns ({"g", "y"}, grad_input)."""
    g, y = symbol_array("g", cfg.shape), symbol_array("y", cfg.shape)
    if activation == "sigmoid":
        grad = g * y * (1 - y)
    elif activation == "tanh":
        grad = g * (1 - y * y)
    else:
        grad = np.empty(cfg.shape, dtype=object)
        for r in range(cfg.shape[0]):
            dot = sp.Add(*(g[r] * y[r]))
            grad[r] = [y[r, j] * (g[r, j] - dot) for j in range(cfg.shape[1])]
    return {"g": g, "y": y}, grad


def softmax(cfg: ShapeConfig):
    """x (R, K) -> y[r, j] = exp(x[r, j]) / sum_k exp(x[r, k])."""
    x = symbol_array("x", cfg.shape)
    y = np.empty(cfg.shape, dtype=object)
    for r in range(cfg.shape[0]):
        total = sp.Add(*(sp.exp(v) for v in x[r]))
        y[r] = [sp.exp(v) / total for v in x[r]]
    return {"x": x}, y


def multiply(cfg: ShapeConfig):
    """out = a * b, element-wise over flat (size,) arrays."""
    a, b = symbol_array("a", cfg.shape), symbol_array("b", cfg.shape)
    return {"a": a, "b": b}, {"out": a * b}


def concat_channels(cfg: ShapeConfig):
    """(N, C_k, S) parts, ``channels`` = (C_0, C_1, ...) -> (N, sum C_k, S): the parts one after another along the
    channel axis, and each part's gradient: the matching channels of the output's gradient."""
    batch, size = cfg.shape
    parts = {f"part{k}": symbol_array(f"p{k}", (batch, count, size)) for k, count in enumerate(cfg.param("channels"))}
    out = np.concatenate(list(parts.values()), axis=1)
    return parts, out


def sgd_update(cfg: ShapeConfig):
    """One SGD step on flat arrays: (w, g, v) -> (w', v') with the rule of numconv.optim (see its docstring);
    lr, momentum and weight decay are exact binary fractions so that the result is exact."""
    lr, momentum, decay = (sp.nsimplify(cfg.param(name)) for name in ("lr", "momentum", "weight_decay"))
    nesterov, lr_in_velocity = cfg.param("nesterov"), cfg.param("lr_in_velocity")
    w, g, v = (symbol_array(name, cfg.shape) for name in ("w", "g", "v"))
    new_w = np.empty(cfg.shape, dtype=object)
    new_v = np.empty(cfg.shape, dtype=object)
    for i in np.ndindex(*cfg.shape):
        step = g[i] + decay * w[i]
        if lr_in_velocity:
            new_v[i] = momentum * v[i] - lr * step
            new_w[i] = w[i] + (momentum * new_v[i] - lr * step if nesterov else new_v[i])
        else:
            new_v[i] = momentum * v[i] + step
            new_w[i] = w[i] - lr * (step + momentum * new_v[i] if nesterov else new_v[i])
    return {"param": w, "grad": g, "velocity": v}, {"param": new_w, "velocity": new_v}
