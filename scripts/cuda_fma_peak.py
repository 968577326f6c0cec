"""A GPU's float32 multiply-add peak, measured as ``benchmarks/fma_peak.py`` measures the CPU's: a register-resident
loop.

Each thread keeps ``CHAINS`` independent accumulators in registers and updates each with ``cuda.fma`` (one
multiply-add, two flops) in a long loop; ``BLOCKS_PER_MULTIPROCESSOR`` blocks of 256 threads per multiprocessor keep
every FMA pipe busy while each chain waits on its own latency. The sum of the chains is stored so that the compiler
keeps the loop. ``gpu_check.py`` (beside this file) reads the convolutions against this number.

    python3 scripts/cuda_fma_peak.py      # on a machine with an NVIDIA GPU, from the repository root
"""
from __future__ import annotations

import time

import numpy as np
import sys
from pathlib import Path

from numba import cuda, float32

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from numconv.kernels.cuda.support import simulated  # noqa: E402

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


def fma_peak_tflops(blocks: int | None = None, threads: int = THREADS, repeats: int = 8192, tries: int = 3) -> float:
    """float32 TFLOP/s (a multiply-add counted as two) of the loop over ``blocks`` blocks (every multiprocessor's
    share when None), best of ``tries`` launches timed by CUDA events after one that compiles. Under Numba's
    simulator the launch is timed by the host's clock and the number means nothing about a GPU."""
    if blocks is None:
        blocks = cuda.get_current_device().MULTIPROCESSOR_COUNT * BLOCKS_PER_MULTIPROCESSOR
    out = cuda.device_array(blocks * threads, np.float32)
    _chains[blocks, threads](out, repeats)
    cuda.synchronize()
    best = float("inf")
    for _ in range(tries):
        if simulated():
            started = time.perf_counter()
            _chains[blocks, threads](out, repeats)
            best = min(best, time.perf_counter() - started)
            continue
        start, end = cuda.event(), cuda.event()
        start.record()
        _chains[blocks, threads](out, repeats)
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3)
    return 2.0 * CHAINS * repeats * blocks * threads / best / 1e12


if __name__ == "__main__":
    print(f"{fma_peak_tflops():.1f} TFLOP/s")
