"""Convolution kernels for the CPU, one N-dimensional implementation for 1D, 2D and 3D.

Every array has three spatial axes: the functional layer views NCL as (N, C, 1, 1, L) and NCHW as
(N, C, 1, H, W), so one compiled kernel per dtype serves every dimension. ``stride``, ``padding`` (before each
axis) and ``dilation`` are tuples of three ints; the output's shape fixes the right padding implicitly.

The loops run over kernel taps outside and output positions inside ("for each weight, add w times the shifted
input"): the inner loop has no bounds test, because ``valid_output_range`` clips it, and it is unit-stride in the
input whenever the stride is 1. Arrays are C-contiguous and already validated.
"""
from numba import njit, prange

from numconv.geometry import valid_output_range


@njit(parallel=True, cache=True)
def conv_forward(x, weight, bias, out, stride, padding, dilation, groups):
    """out[n, o] = bias[o] + sum_{c, taps} weight[o, c, taps] * x[n, group(o) + c, window(taps)].

    x (N, C, D, H, W); weight (O, C // groups, KD, KH, KW); bias (O,); out (N, O, OD, OH, OW), overwritten.
    """
    batch, in_channels, in_d, in_h, in_w = x.shape
    out_channels, group_in, k_d, k_h, k_w = weight.shape
    out_d, out_h, out_w = out.shape[2], out.shape[3], out.shape[4]
    group_out = out_channels // groups
    for task in prange(batch * out_channels):
        n = task // out_channels
        o = task % out_channels
        first_in = (o // group_out) * group_in
        out[n, o] = bias[o]
        for c in range(group_in):
            for td in range(k_d):
                d_lo, d_hi = valid_output_range(in_d, out_d, stride[0], padding[0], dilation[0], td)
                for th in range(k_h):
                    h_lo, h_hi = valid_output_range(in_h, out_h, stride[1], padding[1], dilation[1], th)
                    for tw in range(k_w):
                        w_lo, w_hi = valid_output_range(in_w, out_w, stride[2], padding[2], dilation[2], tw)
                        tap_weight = weight[o, c, td, th, tw]
                        for od in range(d_lo, d_hi):
                            i_d = od * stride[0] - padding[0] + td * dilation[0]
                            for oh in range(h_lo, h_hi):
                                i_h = oh * stride[1] - padding[1] + th * dilation[1]
                                x_row = x[n, first_in + c, i_d, i_h]
                                out_row = out[n, o, od, oh]
                                for ow in range(w_lo, w_hi):
                                    out_row[ow] += tap_weight * x_row[ow * stride[2] - padding[2] + tw * dilation[2]]


@njit(parallel=True, cache=True)
def conv_grad_input(grad_output, weight, grad_input, stride, padding, dilation, groups):
    """grad_input = d(sum grad_output * conv(x))/dx: each input element gathers weight times the gradient of every
    output whose window covers it.

    grad_output (N, O, OD, OH, OW); weight (O, C // groups, KD, KH, KW); grad_input (N, C, D, H, W), overwritten.
    """
    batch, out_channels, out_d, out_h, out_w = grad_output.shape
    in_channels, in_d, in_h, in_w = grad_input.shape[1], grad_input.shape[2], grad_input.shape[3], grad_input.shape[4]
    group_in, k_d, k_h, k_w = weight.shape[1], weight.shape[2], weight.shape[3], weight.shape[4]
    group_out = out_channels // groups
    for task in prange(batch * in_channels):
        n = task // in_channels
        ci = task % in_channels
        c = ci % group_in
        first_out = (ci // group_in) * group_out
        grad_input[n, ci] = 0.0
        for o in range(first_out, first_out + group_out):
            for td in range(k_d):
                d_lo, d_hi = valid_output_range(in_d, out_d, stride[0], padding[0], dilation[0], td)
                for th in range(k_h):
                    h_lo, h_hi = valid_output_range(in_h, out_h, stride[1], padding[1], dilation[1], th)
                    for tw in range(k_w):
                        w_lo, w_hi = valid_output_range(in_w, out_w, stride[2], padding[2], dilation[2], tw)
                        tap_weight = weight[o, c, td, th, tw]
                        for od in range(d_lo, d_hi):
                            i_d = od * stride[0] - padding[0] + td * dilation[0]
                            for oh in range(h_lo, h_hi):
                                i_h = oh * stride[1] - padding[1] + th * dilation[1]
                                grad_row = grad_output[n, o, od, oh]
                                input_row = grad_input[n, ci, i_d, i_h]
                                for ow in range(w_lo, w_hi):
                                    input_row[ow * stride[2] - padding[2] + tw * dilation[2]] += tap_weight * grad_row[ow]


@njit(parallel=True, cache=True)
def conv_grad_weight(grad_output, x, grad_weight, stride, padding, dilation, groups):
    """grad_weight[o, c, taps] = sum over the batch and output positions of grad_output * the input under that tap.

    grad_output (N, O, OD, OH, OW); x (N, C, D, H, W); grad_weight (O, C // groups, KD, KH, KW), overwritten.
    """
    batch, out_channels, out_d, out_h, out_w = grad_output.shape
    in_d, in_h, in_w = x.shape[2], x.shape[3], x.shape[4]
    group_in, k_d, k_h, k_w = grad_weight.shape[1], grad_weight.shape[2], grad_weight.shape[3], grad_weight.shape[4]
    group_out = out_channels // groups
    for task in prange(out_channels * group_in):
        o = task // group_in
        c = task % group_in
        ci = (o // group_out) * group_in + c
        for td in range(k_d):
            d_lo, d_hi = valid_output_range(in_d, out_d, stride[0], padding[0], dilation[0], td)
            for th in range(k_h):
                h_lo, h_hi = valid_output_range(in_h, out_h, stride[1], padding[1], dilation[1], th)
                for tw in range(k_w):
                    w_lo, w_hi = valid_output_range(in_w, out_w, stride[2], padding[2], dilation[2], tw)
                    total = 0.0  # float64 accumulator: long reductions stay accurate in float32 too
                    for n in range(batch):
                        for od in range(d_lo, d_hi):
                            i_d = od * stride[0] - padding[0] + td * dilation[0]
                            for oh in range(h_lo, h_hi):
                                i_h = oh * stride[1] - padding[1] + th * dilation[1]
                                grad_row = grad_output[n, o, od, oh]
                                x_row = x[n, ci, i_d, i_h]
                                for ow in range(w_lo, w_hi):
                                    total += grad_row[ow] * x_row[ow * stride[2] - padding[2] + tw * dilation[2]]
                    grad_weight[o, c, td, th, tw] = total
