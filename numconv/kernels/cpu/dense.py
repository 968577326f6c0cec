"""Fully-connected kernels for the CPU: y = x W^T + b and its gradients, and the bias gradient that convolution
shares. Arrays are C-contiguous and already validated.

The three matrix products run on the convolution's register-blocked kernel (``codegen.py``): 16 lanes hold 16
neighbouring elements of a contiguous row, each of up to 14 columns broadcasts one number per step. The forward
pass vectorises over the batch (the input transposed once, a small copy) and broadcasts weight rows, so the large
weight matrix is streamed once per 16 samples and never repacked; both gradients vectorise over input features,
reading weight and input rows in place.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import njit, prange

from numconv.kernels.cpu import tuning
from numconv.kernels.cpu.launch import fma, zeros

#: the kernels of this module: what the spec registry must cover
__all__ = [
    "linear_forward", "linear_grad_input", "linear_grad_weight", "bias_grad", "bias_add",
]

_U = np.uint64
_SHAPE = (tuning.LANES, tuning.COLUMNS)
_LANES = tuning.LANES


@lru_cache(maxsize=128)
def _batch_lanes_tables(batch: int, in_features: int, out_features: int):
    """Forward: blocks of 16 samples, columns the output features, the sum over input features."""
    padded = -(-batch // _LANES) * _LANES
    blocks = np.arange(padded // _LANES)
    return dict(
        voff=(np.arange(in_features) * padded).astype(_U), vb=(blocks * _LANES).astype(_U),
        xr=np.arange(in_features).astype(_U), xc=(np.arange(out_features) * in_features).astype(_U),
        xb=np.zeros(blocks.size, _U), rlo=np.zeros(blocks.size, _U), rhi=np.full(blocks.size, in_features, _U),
        ocol=np.arange(out_features).astype(_U), oblk=(blocks * _LANES * out_features).astype(_U),
        ostride=_U(out_features), lanes=np.minimum(_LANES, batch - blocks * _LANES).astype(np.int64),
        padded=padded,
    )


@lru_cache(maxsize=128)
def _feature_lanes_tables(rows: int, width: int, columns: int, reduction: int, column_step: int, reduce_step: int):
    """Both gradients: blocks of 16 neighbouring features of ``V``'s rows (``width`` wide; the last block is
    moved back to end at the row's end, recomputing a few), ``columns`` columns whose broadcast numbers sit
    ``column_step`` apart in ``X``, the sum over ``reduction`` rows of ``V`` (``reduce_step`` apart in ``X``)."""
    lanes = min(_LANES, width)
    starts = np.minimum(np.arange(0, width, _LANES), max(width - _LANES, 0))
    row = max(width, _LANES)  # rows narrower than a vector are padded by the caller
    return dict(
        voff=(np.arange(reduction) * row).astype(_U), vb=starts.astype(_U),
        xr=(np.arange(reduction) * reduce_step).astype(_U), xc=(np.arange(columns) * column_step).astype(_U),
        xb=np.zeros(starts.size, _U), rlo=np.zeros(starts.size, _U), rhi=np.full(starts.size, reduction, _U),
        ocol=(np.arange(columns) * width).astype(_U), oblk=starts.astype(_U), ostride=_U(1),
        lanes=np.full(starts.size, lanes, np.int64),
    )


def _rows_at_least_a_vector(matrix: np.ndarray) -> np.ndarray:
    """``matrix`` itself, or a copy padded with zeros to 16 columns when it is narrower (a vector reads 16)."""
    if matrix.shape[1] >= _LANES:
        return matrix
    padded = np.zeros((matrix.shape[0], _LANES), matrix.dtype)
    padded[:, :matrix.shape[1]] = matrix
    return padded


def linear_forward(x, weight, bias, out):
    """out[n, o] = bias[o] + sum_i x[n, i] * weight[o, i]. x (N, I); weight (O, I); bias (O,); out (N, O)."""
    batch, in_features = x.shape
    out_features = weight.shape[0]
    t = _batch_lanes_tables(batch, in_features, out_features)
    transposed = np.zeros((in_features, t["padded"]), x.dtype)
    transposed[:, :batch] = x.T
    fma(_SHAPE, transposed.reshape(-1), t["voff"], t["vb"], weight.reshape(-1), t["xr"], t["xc"], t["xb"], t["rlo"],
        t["rhi"], out.reshape(-1), t["ocol"], t["oblk"], t["ostride"], t["lanes"],
        zeros(t["vb"].size * _LANES, x.dtype.str), bias)


def linear_grad_input(grad_output, weight, grad_input):
    """grad_input[n, i] = sum_o grad_output[n, o] * weight[o, i]. grad_output (N, O); weight (O, I);
    grad_input (N, I)."""
    batch, out_features = grad_output.shape
    in_features = weight.shape[1]
    t = _feature_lanes_tables(out_features, in_features, batch, out_features, out_features, 1)
    fma(_SHAPE, _rows_at_least_a_vector(weight).reshape(-1), t["voff"], t["vb"], grad_output.reshape(-1), t["xr"],
        t["xc"], t["xb"], t["rlo"], t["rhi"], grad_input.reshape(-1), t["ocol"], t["oblk"], t["ostride"], t["lanes"],
        zeros(t["vb"].size * _LANES, grad_output.dtype.str), zeros(batch, grad_output.dtype.str))


def linear_grad_weight(grad_output, x, grad_weight):
    """grad_weight[o, i] = sum_n grad_output[n, o] * x[n, i]. grad_output (N, O); x (N, I); grad_weight (O, I)."""
    batch, out_features = grad_output.shape
    in_features = x.shape[1]
    t = _feature_lanes_tables(batch, in_features, out_features, batch, 1, out_features)
    fma(_SHAPE, _rows_at_least_a_vector(x).reshape(-1), t["voff"], t["vb"], grad_output.reshape(-1), t["xr"],
        t["xc"], t["xb"], t["rlo"], t["rhi"], grad_weight.reshape(-1), t["ocol"], t["oblk"], t["ostride"],
        t["lanes"], zeros(t["vb"].size * _LANES, x.dtype.str), zeros(out_features, x.dtype.str))


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def bias_grad(grad_output, grad_bias):
    """grad_bias[c] = sum over n and s of grad_output[n, c, s]: the bias gradient of linear (S = 1) and of
    convolution (S = flattened output positions). grad_output (N, C, S); grad_bias (C,). Summed in float64; the
    order of the additions is left to the compiler, so that the sum vectorises."""
    batch, channels, size = grad_output.shape
    for c in prange(channels):
        total = 0.0
        for n in range(batch):
            row = grad_output[n, c]
            for s in range(size):
                total += row[s]
        grad_bias[c] = total


@njit(parallel=True, cache=True)
def bias_add(out, bias):
    """out[n, c, s] += bias[c]: the bias of a transposed convolution, whose other terms the convolution's input
    gradient kernel writes. out (N, C, S); bias (C,). The adjoint of :func:`bias_grad`."""
    batch, channels, size = out.shape
    for plane in prange(batch * channels):
        n = plane // channels
        c = plane - n * channels
        value = bias[c]
        row = out[n, c]
        for s in range(size):
            row[s] += value
