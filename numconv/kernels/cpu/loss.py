"""Softmax cross-entropy for the CPU, fused: loss = logsumexp(z) - z[target], computed after subtracting the row's
maximum so that logits of any magnitude neither overflow nor lose the loss to cancellation."""
import math

from numba import njit, prange


@njit(parallel=True, cache=True)
def cross_entropy_forward(logits, target, losses):
    """losses[n] = -log softmax(logits[n])[target[n]]. logits (N, K); target (N,) int64; losses (N,)."""
    batch, classes = logits.shape
    for n in prange(batch):
        top = logits[n, 0]
        for j in range(1, classes):
            if logits[n, j] > top:
                top = logits[n, j]
        total = 0.0
        for j in range(classes):
            total += math.exp(logits[n, j] - top)
        losses[n] = math.log(total) + top - logits[n, target[n]]


@njit(parallel=True, cache=True)
def cross_entropy_backward(grad_losses, logits, target, grad_logits):
    """grad_logits[n] = grad_losses[n] * (softmax(logits[n]) - onehot(target[n])).
    grad_losses (N,); logits (N, K); target (N,) int64; grad_logits (N, K)."""
    batch, classes = logits.shape
    for n in prange(batch):
        top = logits[n, 0]
        for j in range(1, classes):
            if logits[n, j] > top:
                top = logits[n, j]
        total = 0.0
        for j in range(classes):
            total += math.exp(logits[n, j] - top)
        for j in range(classes):
            grad_logits[n, j] = grad_losses[n] * math.exp(logits[n, j] - top) / total
        grad_logits[n, target[n]] -= grad_losses[n]
