"""A GPU's float32 multiply-add peak, measured as ``benchmarks/fma_peak.py`` measures the CPU's: a register-resident
loop, which ``gpu_check.py`` (beside this file) times and reads the convolutions against.

Each thread keeps ``CHAINS`` independent accumulators in registers and updates each with ``cuda.fma`` (one
multiply-add, two flops) in a long loop; ``BLOCKS_PER_MULTIPROCESSOR`` blocks of 256 threads per multiprocessor keep
every FMA pipe busy while each chain waits on its own latency. The sum of the chains is stored so that the compiler
keeps the loop. The kernel lives in a module of its own, which imports numba at the top: Numba's simulator runs a
kernel by swapping the ``cuda`` module among its globals, and gpu_check imports numba only inside its stages.
"""
from __future__ import annotations

import numpy as np
from numba import cuda, float32

#: independent multiply-add chains per thread: enough to hide the FMA pipe's latency
CHAINS = 8
BLOCKS_PER_MULTIPROCESSOR = 16
THREADS = 256


@cuda.jit
def _chains(out, repeats):
    i = cuda.grid(1)
    a0, a1, a2, a3 = float32(i), float32(i + 1), float32(i + 2), float32(i + 3)
    a4, a5, a6, a7 = float32(i + 4), float32(i + 5), float32(i + 6), float32(i + 7)
    scale, shift = float32(0.999), float32(1e-3)
    for _ in range(repeats):
        a0, a1 = cuda.fma(a0, scale, shift), cuda.fma(a1, scale, shift)
        a2, a3 = cuda.fma(a2, scale, shift), cuda.fma(a3, scale, shift)
        a4, a5 = cuda.fma(a4, scale, shift), cuda.fma(a5, scale, shift)
        a6, a7 = cuda.fma(a6, scale, shift), cuda.fma(a7, scale, shift)
    out[i] = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7


def peak_launch(blocks: int | None = None, threads: int = THREADS, repeats: int = 8192) -> tuple:
    """(a no-argument callable launching the loop over ``blocks`` blocks, every multiprocessor's share when None;
    the float32 operations it performs, a multiply-add counted as two)."""
    if blocks is None:
        blocks = cuda.get_current_device().MULTIPROCESSOR_COUNT * BLOCKS_PER_MULTIPROCESSOR
    out = cuda.device_array(blocks * threads, np.float32)
    return (lambda: _chains[blocks, threads](out, repeats)), 2.0 * CHAINS * repeats * blocks * threads
