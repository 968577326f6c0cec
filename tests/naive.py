"""Slow, obvious NumPy references for every op: a second oracle beside the spec, written another way.

Windows are gathered with strided slices of an explicitly padded array (the kernels instead clip loop ranges), and
gradients are built as adjoints of those slices. Padding is a list of (before, after) pairs per spatial axis.
"""
from __future__ import annotations

import itertools

import numpy as np


def _out_size(size, kernel, stride, before, after, dilation, ceil_mode=False):
    span = size + before + after - dilation * (kernel - 1) - 1
    if not ceil_mode:
        return span // stride + 1
    count = -(-span // stride) + 1
    if (count - 1) * stride >= size + before:
        count -= 1
    return count


def _tap_slices(tap, stride, dilation, out_shape):
    """Slices of the padded array holding the inputs of ``tap`` for every output position."""
    return tuple(
        slice(d * t, d * t + s * (o - 1) + 1, s) for t, s, d, o in zip(tap, stride, dilation, out_shape)
    )


def _pad_spatial(x, pads, value=0.0, extra=None):
    """Pad the spatial axes of (N, C, *spatial); ``extra`` adds room after each axis for ceil_mode windows."""
    extra = extra or [0] * len(pads)
    widths = [(0, 0), (0, 0)] + [(b, a + e) for (b, a), e in zip(pads, extra)]
    return np.pad(x, widths, constant_values=value)


def conv(x, w, b, stride, pads, dilation, groups):
    """x (N, C, *S), w (O, C/g, *K), b (O,) or None -> (N, O, *out)."""
    ndim = x.ndim - 2
    kernel = w.shape[2:]
    out_shape = [_out_size(x.shape[2 + a], kernel[a], stride[a], *pads[a], dilation[a]) for a in range(ndim)]
    padded = _pad_spatial(x, pads)
    batch, channels = x.shape[:2]
    out_channels = w.shape[0]
    group_in, group_out = channels // groups, out_channels // groups
    y = np.zeros((batch, out_channels, *out_shape), dtype=np.float64)
    for tap in itertools.product(*(range(k) for k in kernel)):
        window = padded[(slice(None), slice(None)) + _tap_slices(tap, stride, dilation, out_shape)]
        for group in range(groups):
            xs = window[:, group * group_in:(group + 1) * group_in]
            ws = w[group * group_out:(group + 1) * group_out, :, *tap]
            y[:, group * group_out:(group + 1) * group_out] += np.einsum("nc...,oc->no...", xs, ws)
    if b is not None:
        y += b.reshape((1, -1) + (1,) * ndim)
    return y.astype(x.dtype)


def conv_backward(g, x, w, stride, pads, dilation, groups):
    """(grad_input, grad_weight, grad_bias) of ``conv`` by the adjoint of each tap's slice."""
    ndim = x.ndim - 2
    kernel = w.shape[2:]
    out_shape = g.shape[2:]
    padded = _pad_spatial(x.astype(np.float64), pads)
    grad_padded = np.zeros_like(padded)
    grad_w = np.zeros(w.shape, dtype=np.float64)
    channels, out_channels = x.shape[1], w.shape[0]
    group_in, group_out = channels // groups, out_channels // groups
    for tap in itertools.product(*(range(k) for k in kernel)):
        where = (slice(None), slice(None)) + _tap_slices(tap, stride, dilation, out_shape)
        for group in range(groups):
            cin = slice(group * group_in, (group + 1) * group_in)
            cout = slice(group * group_out, (group + 1) * group_out)
            gs = g[:, cout].astype(np.float64)
            grad_padded[where][:, cin] += np.einsum("no...,oc->nc...", gs, w[cout, :, *tap])
            summed = [0] + list(range(2, gs.ndim))
            grad_w[cout, :, *tap] += np.tensordot(gs, padded[where][:, cin], axes=(summed, summed))
    inner = (slice(None), slice(None)) + tuple(slice(b, b + n) for (b, _), n in zip(pads, x.shape[2:]))
    grad_b = g.sum(axis=(0,) + tuple(range(2, 2 + ndim)), dtype=np.float64)
    return grad_padded[inner].astype(x.dtype), grad_w.astype(x.dtype), grad_b.astype(x.dtype)


def _pool_windows(x, kernel, stride, padding, dilation, ceil_mode, value):
    """(padded-window stack (taps, N, C, *out), out_shape, valid mask stack, flat input index stack)."""
    ndim = x.ndim - 2
    sizes = x.shape[2:]
    out_shape = [_out_size(sizes[a], kernel[a], stride[a], padding[a], padding[a], dilation[a], ceil_mode)
                 for a in range(ndim)]
    extra = [max(0, (o - 1) * s + d * (k - 1) + 1 - (n + 2 * p))
             for o, s, d, k, n, p in zip(out_shape, stride, dilation, kernel, sizes, padding)]
    pads = [(p, p) for p in padding]
    padded = _pad_spatial(x, pads, value, extra)
    inside = _pad_spatial(np.ones((1, 1) + sizes, dtype=bool), pads, False, extra)
    # the padding proper counts for count_include_pad; the room added for ceil_mode windows does not
    in_padding = _pad_spatial(_pad_spatial(np.zeros((1, 1) + sizes, dtype=bool), pads, True),
                              [(0, 0)] * ndim, False, extra)
    flat = _pad_spatial(np.arange(int(np.prod(sizes))).reshape((1, 1) + sizes), pads, -1, extra)
    stacks = ([], [], [], [])
    for tap in itertools.product(*(range(k) for k in kernel)):
        where = (slice(None), slice(None)) + _tap_slices(tap, stride, dilation, out_shape)
        for stack, source in zip(stacks, (padded, inside, in_padding, flat)):
            stack.append(source[where])
    return [np.stack(s) for s in stacks], out_shape


def max_pool(x, kernel, stride, padding, dilation, ceil_mode):
    """(out, indices) with the first maximum winning and padding never winning."""
    (values, inside, _, flat), _ = _pool_windows(x, kernel, stride, padding, dilation, ceil_mode, -np.inf)
    first = np.argmax(values, axis=0)
    out = np.take_along_axis(values, first[None], 0)[0]
    indices = np.take_along_axis(np.broadcast_to(flat, values.shape), first[None], 0)[0]
    return out.astype(x.dtype), indices.astype(np.int64)


def max_pool_backward(g, x, kernel, stride, padding, dilation, ceil_mode):
    _, indices = max_pool(x, kernel, stride, padding, dilation, ceil_mode)
    grad = np.zeros((x.shape[0], x.shape[1], int(np.prod(x.shape[2:]))), dtype=np.float64)
    for n, c in itertools.product(range(x.shape[0]), range(x.shape[1])):
        np.add.at(grad[n, c], indices[n, c].ravel(), g[n, c].ravel())
    return grad.reshape(x.shape).astype(x.dtype)


def avg_pool(x, kernel, stride, padding, ceil_mode, count_include_pad):
    ones = [1] * len(kernel)
    (values, inside, in_padding, _), _ = _pool_windows(x, kernel, stride, padding, ones, ceil_mode, 0.0)
    counted = inside | in_padding if count_include_pad else inside
    return (values.sum(0) / counted.sum(0)).astype(x.dtype)


def avg_pool_backward(g, x, kernel, stride, padding, ceil_mode, count_include_pad):
    """By linearity: the transpose of the (inputs -> outputs) averaging matrix, built column by column."""
    grad = np.zeros(x.shape, dtype=np.float64)
    for index in np.ndindex(*x.shape[2:]):
        unit = np.zeros((1, 1) + x.shape[2:])
        unit[(0, 0) + index] = 1.0
        column = avg_pool(unit, kernel, stride, padding, ceil_mode, count_include_pad)[0, 0]
        grad[(slice(None), slice(None)) + index] = np.tensordot(g.astype(np.float64), column, axes=len(kernel))
    return grad.astype(x.dtype)


def local_response_norm(x, size, alpha, beta, k):
    squares = np.pad(x.astype(np.float64) ** 2, [(0, 0), (size // 2, (size - 1) // 2)] + [(0, 0)] * (x.ndim - 2))
    total = sum(squares[:, j:j + x.shape[1]] for j in range(size))
    return (x / (k + alpha / size * total) ** beta).astype(x.dtype)


def cross_entropy_losses(logits, target):
    z = logits.astype(np.float64)
    top = z.max(axis=1, keepdims=True)
    logsumexp = np.log(np.exp(z - top).sum(axis=1)) + top[:, 0]
    return logsumexp - z[np.arange(len(target)), target]


def linear(x, w, b):
    y = x.astype(np.float64) @ w.T.astype(np.float64)
    return (y if b is None else y + b).astype(x.dtype)
