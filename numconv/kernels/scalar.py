"""The bodies that both backends' kernels share, written once as ``@njit`` functions: what an element-wise
formula does with NaN and infinities (decided here as PyTorch does it), the SGD step, the softmax cross-entropy's
terms, a pooling window's maximum and sum, and a convolution's gathered input gradient; and the floor that a
convolution with its ReLU fused raises its results to, which both backends' launchers pass to their kernels.

numba-cuda compiles ``@njit`` functions that the CUDA kernels call as device functions. Those that take arrays
reach the CUDA kernels through ``support.device_function`` instead, which compiles the same Python source as a
device function (Numba's CUDA simulator cannot hand its arrays to compiled CPU code).
"""
import math
from functools import lru_cache

import numpy as np
from numba import njit

from numconv.geometry import covering_output, window_position


@lru_cache(maxsize=16)
def relu_floor(dtype, relu: bool):
    """The number below which a convolution's results are raised as they are stored: 0 where its ReLU is fused into
    it, else -inf (nothing is raised, NaN included), as a number of ``dtype``, the kernels' float type (remembered:
    making it took a microsecond of each small call)."""
    return np.dtype(dtype).type(0.0 if relu else -np.inf)


@njit(cache=True, inline="always")
def takes_max(value, current, first):
    """Whether ``value`` replaces ``current`` as a pooling window's maximum, in window order. PyTorch's rule: a
    larger value, or the window's first value, or a NaN; so the last NaN of a window wins, and among equal values
    the first."""
    return first or value > current or math.isnan(value)


@njit(cache=True, inline="always")
def takes_max_at_once(value, current, first):
    """:func:`takes_max`, with no short cut between its terms: one straight expression that a vectorising compiler
    turns into compares and a select, with no branch per window position (for the CPU's row loops)."""
    return first | (value > current) | (value != value)


@njit(cache=True, inline="always")
def raises_max(value, current):
    """Whether ``value`` replaces ``current`` as a running maximum that started at -inf, when only the value is kept:
    :func:`takes_max_at_once` without its first-value clause, which -inf makes unneeded (a first value of -inf leaves
    the maximum at -inf). A larger value or a NaN; so a NaN, once in, stays, and among equal values the first
    stays."""
    return (value > current) | (value != value)


@njit(cache=True, inline="always")
def add(a, b):
    """a + b: an element of a residual connection's join."""
    return a + b


@njit(cache=True, inline="always")
def product(a, b):
    """a * b: an element of the element-wise product."""
    return a * b


@njit(cache=True, inline="always")
def relu(x):
    """max(x, 0); NaN stays NaN, as in PyTorch."""
    return x if not x <= 0.0 else 0.0


@njit(cache=True, inline="always")
def relu_gradient(grad, x):
    """ReLU's backward at ``x``: the gradient passes unless x <= 0, so a NaN passes it, as in PyTorch."""
    return 0.0 if x <= 0.0 else grad


@njit(cache=True, inline="always")
def centred(value, centre):
    """value - centre in float64: exact for float32 operands, so batch normalisation's centred values carry no
    rounding of their own into its sums."""
    return float(value) - float(centre)


@njit(cache=True, inline="always")
def leaky_relu(x, slope):
    """x where x > 0, else slope * x; NaN stays NaN."""
    return x if not x <= 0.0 else slope * x


@njit(cache=True, inline="always")
def leaky_relu_gradient(grad, x, slope):
    """LeakyReLU's backward at ``x``: grad where x > 0 (or NaN, as ReLU's), slope * grad elsewhere."""
    return slope * grad if x <= 0.0 else grad


@njit(cache=True, inline="always")
def sigmoid(x):
    """1 / (1 + exp(-x)), from exp of a never-positive number, so neither side overflows."""
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    shrunk = math.exp(x)
    return shrunk / (1.0 + shrunk)


@njit(cache=True, inline="always")
def sigmoid_gradient(grad, y):
    """The sigmoid's backward from its output ``y``: grad * y * (1 - y)."""
    return grad * y * (1.0 - y)


@njit(cache=True, inline="always")
def tanh(x):
    """tanh(x) (``math.tanh``, as a function a kernel can hand to another)."""
    return math.tanh(x)


@njit(cache=True, inline="always")
def tanh_gradient(grad, y):
    """tanh's backward from its output ``y``: grad * (1 - y^2)."""
    return grad * (1.0 - y * y)


@njit(cache=True, inline="always")
def masked_scale(value, keep, scale):
    """Dropout's value * mask * scale, the product in float64: a NaN or an infinity that is dropped gives NaN
    (times 0), as PyTorch's ``input * mask * scale`` does."""
    return float(value) * (1.0 if keep else 0.0) * scale


@njit(cache=True, inline="always")
def sgd_velocity(param, grad, velocity, lr, momentum, weight_decay, lr_in_velocity):
    """One parameter's new velocity in an SGD step with momentum and weight decay (see :func:`sgd_parameter`)."""
    step = grad + weight_decay * param
    return momentum * velocity - lr * step if lr_in_velocity else momentum * velocity + step


@njit(cache=True, inline="always")
def sgd_parameter(param, grad, velocity, lr, momentum, weight_decay, nesterov, lr_in_velocity):
    """The parameter after the step, from its new ``velocity`` as stored (in the parameter's dtype, as PyTorch's
    float32 buffer is).

    PyTorch's form: d = g + wd*w; v = m*v + d; w -= lr * (d + m*v if nesterov else v).
    AlexNet's form (``lr_in_velocity``): v = m*v - lr*(g + wd*w); w += (m*v - lr*(g + wd*w) if nesterov else v);
    the two agree while lr is constant and differ after a learning-rate change, where AlexNet's velocity keeps the
    old rate.
    """
    step = grad + weight_decay * param
    if lr_in_velocity:
        return param + (momentum * velocity - lr * step if nesterov else velocity)
    return param - lr * (step + momentum * velocity if nesterov else velocity)


@njit(cache=True, inline="always")
def cross_entropy_loss(exp_sum, top, target_logit, target_weight, weight_sum, weighted_gap, smoothing, classes):
    """One row's loss, PyTorch's: (1 - s) * w[t] * (-log softmax[t]) + s / K * sum_k w[k] * (-log softmax[k]), s the
    label smoothing. From the row's maximum ``top``, the sum of exp(logit - top), W = sum_k w[k] and the weighted
    gap sum_k w[k] * (top - logit_k), whose terms are never negative (no cancellation for large logits)."""
    log_sum = math.log(exp_sum)
    own = target_weight * (log_sum + top - target_logit)
    if smoothing == 0.0:
        return own
    return (1.0 - smoothing) * own + smoothing / classes * (weight_sum * log_sum + weighted_gap)


@njit(cache=True, inline="always")
def cross_entropy_gradient(grad, logit, top, exp_sum, is_target, target_weight, weight, weight_sum, smoothing,
                           classes):
    """One logit's gradient of :func:`cross_entropy_loss` times ``grad``:
    grad * (softmax_j * ((1 - s) w[t] + s W / K) - (1 - s) w[t] [j == t] - s w[j] / K)."""
    kept = (1.0 - smoothing) * target_weight
    spread = smoothing / classes
    share = grad * math.exp(logit - top) / exp_sum * (kept + spread * weight_sum) - grad * spread * weight
    return share - grad * kept if is_target else share


@njit(cache=True)
def window_sum(x, n, c, od, oh, ow, kernel, stride, padding):
    """The sum of x[n, c] over the positions inside the input of the (dilation 1) pooling window of output
    (od, oh, ow)."""
    in_d, in_h, in_w = x.shape[2], x.shape[3], x.shape[4]
    total = 0.0
    for td in range(kernel[0]):
        i_d = window_position(od, stride[0], padding[0], 1, td)
        if i_d < 0 or i_d >= in_d:
            continue
        for th in range(kernel[1]):
            i_h = window_position(oh, stride[1], padding[1], 1, th)
            if i_h < 0 or i_h >= in_h:
                continue
            for tw in range(kernel[2]):
                i_w = window_position(ow, stride[2], padding[2], 1, tw)
                if 0 <= i_w < in_w:
                    total += x[n, c, i_d, i_h, i_w]
    return total


@njit(cache=True)
def gathered_input_gradient(grad_output, weight, n, c, i_d, i_h, i_w, stride, padding, dilation, groups):
    """A convolution's input gradient at (n, c, i_d, i_h, i_w): the sum over the taps and the output channels of
    c's group of weight * the gradient of the output whose window reads that input with that tap, over existing
    outputs only (no term with the zeros around the output gradient: they would turn a NaN weight into NaN)."""
    out_channels, out_d, out_h, out_w = grad_output.shape[1], grad_output.shape[2], grad_output.shape[3], \
        grad_output.shape[4]
    group_in = weight.shape[1]
    group_out = out_channels // groups
    first = (c // group_in) * group_out
    local = c % group_in
    total = 0.0
    for t_d in range(weight.shape[2]):
        o_d = covering_output(i_d, stride[0], padding[0], dilation[0], t_d)
        if o_d < 0 or o_d >= out_d:
            continue
        for t_h in range(weight.shape[3]):
            o_h = covering_output(i_h, stride[1], padding[1], dilation[1], t_h)
            if o_h < 0 or o_h >= out_h:
                continue
            for t_w in range(weight.shape[4]):
                o_w = covering_output(i_w, stride[2], padding[2], dilation[2], t_w)
                if o_w < 0 or o_w >= out_w:
                    continue
                for o in range(first, first + group_out):
                    total += grad_output[n, o, o_d, o_h, o_w] * weight[o, local, t_d, t_h, t_w]
    return total


@njit(cache=True)
def window_max(x, n, c, od, oh, ow, kernel, stride, padding, dilation):
    """The maximum of x[n, c] over the pooling window of output (od, oh, ow) and its flat index in the (D, H, W)
    plane: positions in window order (depth, then height, then width), padding skipped, :func:`takes_max`'s rule.
    The maximum comes back in float64 (exact for float32 inputs); the index is -1 only for a window without input,
    which the pooling geometry rules out."""
    in_d, in_h, in_w = x.shape[2], x.shape[3], x.shape[4]
    best = -math.inf
    best_index = -1
    for td in range(kernel[0]):
        i_d = window_position(od, stride[0], padding[0], dilation[0], td)
        if i_d < 0 or i_d >= in_d:
            continue
        for th in range(kernel[1]):
            i_h = window_position(oh, stride[1], padding[1], dilation[1], th)
            if i_h < 0 or i_h >= in_h:
                continue
            for tw in range(kernel[2]):
                i_w = window_position(ow, stride[2], padding[2], dilation[2], tw)
                if i_w < 0 or i_w >= in_w:
                    continue
                value = x[n, c, i_d, i_h, i_w]
                if takes_max(value, best, best_index < 0):
                    best = value
                    best_index = (i_d * in_h + i_h) * in_w + i_w
    return best, best_index
