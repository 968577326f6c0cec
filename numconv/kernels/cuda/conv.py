"""Convolution kernels for CUDA: the launchers have the CPU kernels' signatures and semantics (every array has three
spatial axes; ``stride``, ``padding`` and ``dilation`` are tuples of three ints; the output's shape fixes the right
padding).

All three are implicit GEMMs on shared-memory tiles (numconv.kernels.cuda.gemm):

- forward: rows are (n, output position), columns the output channels of a group, the reduction runs over
  (input channel, tap); the window is decoded from the indices, never copied out (no im2col buffer);
- gradient of the input: in sub-pixel form, rows are (n, phase position), columns (stride phase, input channel of
  a group), the reduction runs over (output channel, offset) and gathers from the outputs whose window covers the
  input through the tap that the phase and offset select, so no atomics and no term that the stride skips;
- gradient of the weight: rows are output channels, columns (input channel, tap), and the reduction over the batch
  and every output position is split across blocks and summed afterwards in a fixed order.
"""
import math

from numba import cuda

from numconv.kernels.scalar import gathered_input_gradient
from numconv.kernels.cuda import gemm
from numconv.kernels.cuda.support import device_function, fill, launch_flat, total

#: the kernels of this module: what the spec registry must cover
__all__ = [
    "conv_forward", "conv_forward_relu", "conv_grad_input", "conv_grad_weight", "conv_grad_input_gather",
]


def _flat(array):
    return array.reshape(-1)


_gathered_input_gradient = device_function(gathered_input_gradient)


@cuda.jit(cache=True)
def _gather_grad_input(grad_output, weight, grad_input, stride, padding, dilation, groups):
    index = cuda.grid(1)
    batch, channels, in_d, in_h, in_w = grad_input.shape
    if index >= batch * channels * in_d * in_h * in_w:
        return
    i_w = index % in_w
    i_h = (index // in_w) % in_h
    i_d = (index // (in_w * in_h)) % in_d
    c = (index // (in_w * in_h * in_d)) % channels
    n = index // (in_w * in_h * in_d * channels)
    grad_input[n, c, i_d, i_h, i_w] = _gathered_input_gradient(grad_output, weight, n, c, i_d, i_h, i_w, stride,
                                                               padding, dilation, groups)


def conv_grad_input_gather(grad_output, weight, grad_input, stride, padding, dilation, groups):
    """``conv_grad_input`` by plain loops over the valid terms alone, one thread per input element (what it runs on
    weights with NaN or infinities, which the tiled product would multiply by the zeros of its padded tiles)."""
    launch_flat(_gather_grad_input, grad_input.size, grad_output, weight, grad_input, tuple(stride), tuple(padding),
                tuple(dilation), int(groups))


def conv_forward(x, weight, bias, out, stride, padding, dilation, groups):
    """out[n, o] = bias[o] + sum_{c, taps} weight[o, c, taps] * x[n, group(o) + c, window(taps)].

    x (N, C, D, H, W); weight (O, C // groups, KD, KH, KW); bias (O,); out (N, O, OD, OH, OW), overwritten.
    """
    _conv_forward(x, weight, bias, out, stride, padding, dilation, groups, relu=False)


def conv_forward_relu(x, weight, bias, out, stride, padding, dilation, groups):
    """out = max(0, ``conv_forward``'s out), the ReLU applied as each result is stored (a NaN stays NaN)."""
    _conv_forward(x, weight, bias, out, stride, padding, dilation, groups, relu=True)


def _conv_forward(x, weight, bias, out, stride, padding, dilation, groups, relu):
    geo = gemm.conv_geometry(x.shape, weight.shape, out.shape, stride, padding, dilation, groups)
    spatial = out.shape[2] * out.shape[3] * out.shape[4]
    taps = weight.shape[2] * weight.shape[3] * weight.shape[4]
    gemm.product(gemm.FORWARD, _flat(x), _flat(weight), _flat(out), bias, geo, rows=x.shape[0] * spatial,
                 cols=weight.shape[0] // groups, depth=weight.shape[1] * taps, groups=groups, a_along_k=False,
                 b_along_k=True, relu=relu)


def conv_grad_input(grad_output, weight, grad_input, stride, padding, dilation, groups):
    """grad_input = d(sum grad_output * conv(x))/dx: each input element gathers weight times the gradient of every
    output whose window covers it.

    grad_output (N, O, OD, OH, OW); weight (O, C // groups, KD, KH, KW); grad_input (N, C, D, H, W), overwritten.
    """
    geo = gemm.conv_geometry(grad_input.shape, weight.shape, grad_output.shape, stride, padding, dilation, groups)
    if not math.isfinite(total(weight)) or not (  # pragma: no cover - NaN and infinities: tests/test_cuda.py
            gemm.grad_input_complete(geo) or math.isfinite(total(grad_output))):
        # the product's zeros (outputs outside the gradient, taps a phase lacks) would multiply NaN or infinities
        # into terms that do not exist: only the valid terms, by plain loops
        conv_grad_input_gather(grad_output, weight, grad_input, stride, padding, dilation, groups)
        return
    rows, cols, depth = gemm.grad_input_extent(geo)
    if depth == 0:  # no output's window reaches the input: it lies in the padding the stride skips
        fill(grad_input, 0.0)
        return
    flat = _flat(grad_input)
    gemm.product(gemm.GRAD_INPUT, _flat(grad_output), _flat(weight), flat, flat, geo, rows=rows, cols=cols,
                 depth=depth, groups=groups, a_along_k=False, b_along_k=True)


def conv_grad_weight(grad_output, x, grad_weight, stride, padding, dilation, groups):
    """grad_weight[o, c, taps] = sum over the batch and output positions of grad_output * the input under that tap.

    grad_output (N, O, OD, OH, OW); x (N, C, D, H, W); grad_weight (O, C // groups, KD, KH, KW), overwritten.
    """
    geo = gemm.conv_geometry(x.shape, grad_weight.shape, grad_output.shape, stride, padding, dilation, groups)
    spatial = grad_output.shape[2] * grad_output.shape[3] * grad_output.shape[4]
    taps = grad_weight.shape[2] * grad_weight.shape[3] * grad_weight.shape[4]
    flat = _flat(grad_weight)
    gemm.product(gemm.GRAD_WEIGHT, _flat(grad_output), _flat(x), flat, flat, geo,
                 rows=grad_weight.shape[0] // groups, cols=grad_weight.shape[1] * taps,
                 depth=grad_output.shape[0] * spatial, groups=groups, a_along_k=True, b_along_k=True, split=True)
