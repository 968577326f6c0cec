"""The vector width Numba's code may use on this CPU: all of AVX-512's, where the CPU has it.

LLVM tunes for 256-bit vectors on many AVX-512 CPUs ("prefer-256-bit", against the clock drop that wide vectors
once caused), so numconv's register-blocked kernels, written as 16 lanes per vector, would compile to pairs of
256-bit operations. Measured on a 2-core AVX-512 Xeon: a register-resident FMA loop ran at 31.8 flops per cycle
per core with 256-bit vectors and 59 with 512-bit ones, and the convolutions 1.1-1.9x faster. Numba fixes the
target's features when it creates its CPU target, at the first ``@njit`` of the process, so this must run before
any of numconv's kernels are defined; it changes nothing when the user set ``NUMBA_CPU_FEATURES``, when another
library's ``@njit`` came first, or when the CPU has no AVX-512. The features are part of the key of Numba's
cache, so kernels compiled either way are kept apart.

The register-blocked kernels also need to know how many vector registers their accumulators may take:
:func:`registers`. A block sized for AVX-512's 32 registers spills on a CPU with 16 (AVX2: AMD's Zen 1-3, Intel's
client CPUs), where numconv's convolutions then ran 2-3x slower than PyTorch's. The choice between them weighs
whether a 512-bit multiply-add takes the CPU one step or two (:func:`double_pumped`, :func:`full_width_fma`), and
whether a vector load that crosses a cache line costs two loads (:func:`splits_line_loads`).
"""
from __future__ import annotations

import os
from functools import lru_cache

import numba
from llvmlite import binding

__all__ = ["double_pumped", "full_width_fma", "prefer_full_width", "registers", "splits_line_loads"]

#: the LLVM tuning feature turned off
NARROW = "prefer-256-bit"


def prefer_full_width() -> bool:
    """Let LLVM use 512-bit vectors where the CPU has AVX-512; returns whether the setting was made."""
    if "NUMBA_CPU_FEATURES" in os.environ or numba.config.CPU_FEATURES is not None:
        return False
    from numba.core.registry import cpu_target

    if "_toplevel_target_context" in vars(cpu_target):  # the target exists: its features are fixed
        return False
    features = binding.get_host_cpu_features()
    if not features.get("avx512f", False):
        return False
    numba.config.CPU_FEATURES = f"{features.flatten()},-{NARROW}"
    return True


@lru_cache(maxsize=None)
def registers() -> int:
    """The vector registers of the code Numba generates: 32 where its target has AVX-512 (zmm0-31, and ymm0-31 at
    256 bits), else 16 (AVX2's ymm0-15; the blocks sized for them also fit the 32 128-bit registers of ARM's NEON).
    Read from the features Numba compiles for (``NUMBA_CPU_FEATURES`` where set), once per process."""
    features = numba.config.CPU_FEATURES
    if features is None:
        features = binding.get_host_cpu_features().flatten()
    return 32 if "+avx512f" in features.split(",") else 16


#: LLVM's names of the CPUs whose AVX-512 units are 256 bits wide, running each 512-bit operation as two halves
#: (AMD Zen 4): they multiply-add half as many lanes per cycle as they load, and a kernel that saves loads gains less
DOUBLE_PUMPED = frozenset({"znver4"})


@lru_cache(maxsize=None)
def double_pumped() -> bool:
    """Whether Numba's code uses 512-bit vectors (:func:`registers` is 32) on a CPU that runs them as two 256-bit
    halves (:data:`DOUBLE_PUMPED`; the CPU Numba compiles for, ``NUMBA_CPU_NAME`` where set). Once per process."""
    return _wide_vectors_on(DOUBLE_PUMPED)


@lru_cache(maxsize=None)
def full_width_fma() -> bool:
    """Whether Numba's code uses 512-bit vectors (:func:`registers` is 32) on a CPU that runs two 512-bit
    multiply-adds a cycle, at full width: Intel's AVX-512 CPUs and AMD Zen 5, every one but :data:`DOUBLE_PUMPED`.
    The choices between the direct kernels and what trades multiply-adds for transforms or copies (Winograd's, the
    packed panels) were measured apart on such CPUs (``kernels/cpu/tuning.py``). Once per process."""
    return registers() == 32 and not double_pumped()


def _wide_vectors_on(names: frozenset) -> bool:
    """Whether Numba's code uses 512-bit vectors on a CPU that LLVM names one of ``names`` (the CPU Numba compiles
    for: ``NUMBA_CPU_NAME`` where set, else the host's)."""
    return registers() == 32 and (numba.config.CPU_NAME or binding.get_host_cpu_name()) in names


#: LLVM's names of Intel's CPUs with AVX-512. A 64-byte load that is not 64-byte aligned crosses a cache line, and
#: these CPUs then take two of their loads for it: measured on a 2-core Xeon (LLVM: rocketlake), one thread, the
#: 64 x 4 kernel ran at 144 GFLOP/s with its vectors aligned and 112 with them 1, 4 or 8 floats off; the 32 x 7
#: kernel at 142 and 131. The kernels whose vectors run along rows (one start per kernel column) feel it
SPLIT_LINE_LOADS = frozenset({"skylake-avx512", "cascadelake", "cooperlake", "cannonlake", "icelake-client",
                              "icelake-server", "tigerlake", "rocketlake", "sapphirerapids", "emeraldrapids",
                              "graniterapids", "graniterapids-d", "diamondrapids"})


@lru_cache(maxsize=None)
def splits_line_loads() -> bool:
    """Whether Numba's code uses 512-bit vectors (:func:`registers` is 32) on a CPU that splits a vector load
    crossing a cache line into two (:data:`SPLIT_LINE_LOADS`; the CPU Numba compiles for, ``NUMBA_CPU_NAME`` where
    set). Once per process."""
    return _wide_vectors_on(SPLIT_LINE_LOADS)
