"""The machine's float32 multiply-add peak, measured: a register-resident FMA loop compiled by Numba.

    python benchmarks/fma_peak.py [--bits 512|256] [--seconds S]      # prints one JSON object

``compare.py`` runs this file as a child process, once per vector width, because the width is chosen when Numba's
code generator starts (``NUMBA_CPU_FEATURES``) and must not change the rest of a process that also compiles
numconv's kernels.

The loop keeps ``VECTORS`` x 16 float32 accumulators in separate local variables, each updated as ``a = a * m + c``
(one multiply-add, two flops) in a long loop; each thread of a ``prange`` runs its own copy. With LLVM's SLP
vectoriser on and its loop vectoriser off (as numconv's own blocked kernels compile), every group of 16 becomes
one 512-bit register (or two 256-bit ones), loaded before the loop and stored after it, so the loop body is
nothing but independent vector FMAs: 12 independent chains per thread with AVX-512's 32 registers, 10 with AVX2's
16 (5 groups: with 12 the loop spilled and measured half the peak), more than the 8 (4 cycles of latency x 2 FMA
units) that keep both units busy. The generated assembly is checked: the FMA instructions of the requested
width are counted, and a loop without them is reported as such, never as a peak.

On x86 processors that LLVM tunes for 256-bit vectors (Intel since Skylake-X, and what this machine reports), Numba
emits 256-bit code by default: ``--bits 512`` adds ``-prefer-256-bit`` to the host's CPU features for this
process only. ``--bits 256`` keeps Numba's defaults, i.e. the width numconv's kernels are compiled for.

The effective clock is measured too, from one dependent chain of scalar FMAs (4 cycles of latency on Intel since
Skylake and on AMD since Zen 2): ``clock = 4 x chain steps per second``. ``flops_per_cycle_per_thread`` is then
``GFLOP/s / threads / clock``: 64 is the most two 512-bit FMA units can do (32 for 256-bit code). The loop is also
timed on one thread alone (``one_thread_gflops``): all threads together need every core free at once, which a
shared machine rarely grants for long.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

#: independent 16-lane accumulator groups per thread, per count of vector registers: 12 zmm (or 24 ymm) of AVX-512's
#: 32, 10 ymm of AVX2's 16 (the multipliers and addends take four more)
VECTORS = {32: 12, 16: 5}
LANES = 16
#: cycles of latency of one FMA, for the clock estimate
FMA_LATENCY = 4


def _source(vectors: int, lanes: int) -> str:
    """A ``prange`` over threads, each running ``iters`` steps of ``vectors`` x ``lanes`` independent FMAs held in
    separate scalar variables (loaded from and stored to ``out[t]``, which is what lets the SLP vectoriser pack
    them into registers across the loop)."""
    lines = ["def fma_loop(m, c, iters, out):", "    for t in prange(out.shape[0]):"]
    lines += [f"        m{k} = m[{k}]" for k in range(lanes)]
    lines += [f"        c{k} = c[{k}]" for k in range(lanes)]
    lines += [f"        a{v}_{k} = out[t, {v * lanes + k}]" for v in range(vectors) for k in range(lanes)]
    lines.append("        for i in range(iters):")
    lines += [f"            a{v}_{k} = a{v}_{k} * m{k} + c{k}" for v in range(vectors) for k in range(lanes)]
    lines += [f"        out[t, {v * lanes + k}] = a{v}_{k}" for v in range(vectors) for k in range(lanes)]
    return "\n".join(lines) + "\n"


def _chain(m, c, iters, a):
    """One dependent FMA per step: each step waits for the previous one (the clock estimate)."""
    for i in range(iters):
        a = a * m + c
    return a


def _best_rate(function, work: float, seconds: float) -> float:
    """``work`` over the best wall time of calls to ``function`` repeated for ``seconds`` (at least 5 calls)."""
    best = float("inf")
    until = time.perf_counter() + seconds
    calls = 0
    while calls < 5 or time.perf_counter() < until:
        begin = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - begin)
        calls += 1
    return work / best


def measure(seconds: float = 1.5) -> dict:
    """Compile and time the loop in this process (whose Numba settings the caller has arranged)."""
    import llvmlite.binding as llvm
    import numba

    numba.config.SLP_VECTORIZE = 1
    numba.config.LOOP_VECTORIZE = 0
    import numpy as np

    # numconv.vectors.registers() reads the same, but importing numconv would turn off the 256-bit preference
    # that this process's caller may have left on
    features = numba.config.CPU_FEATURES or llvm.get_host_cpu_features().flatten()
    vectors = VECTORS[32 if "+avx512f" in features.split(",") else 16]
    namespace = {"prange": numba.prange}
    exec(_source(vectors, LANES), namespace)
    loop = numba.njit(parallel=True, fastmath=True)(namespace["fma_loop"])
    chain = numba.njit(fastmath={"contract"})(_chain)
    threads = numba.get_num_threads()
    # a = a * 0.999 + 0.001 stays at 1 from 1: no overflow, no denormals, however long it runs
    m = np.full(LANES, 0.999, np.float32)
    c = np.full(LANES, 0.001, np.float32)
    out = np.ones((threads, vectors * LANES), np.float32)
    loop(m, c, 1, out)
    chain(np.float32(0.999), np.float32(0.001), 1, np.float32(1.0))
    asm = "\n".join(loop.inspect_asm().values())
    fmas = {bits: len(re.findall(rf"vfmadd\w*ps\s+[^\n]*%{reg}mm", asm)) for bits, reg in ((512, "z"), (256, "y"))}
    scalar_fmas = len(re.findall(r"vfmadd\w*ss", asm))
    # per call about 0.6 GFLOP a thread: tens of milliseconds, long enough for the timer, short enough to catch a
    # shared machine's quiet moments
    iters = 1_500_000
    flops = 2.0 * threads * iters * vectors * LANES
    gflops = _best_rate(lambda: loop(m, c, iters, out), flops, seconds) / 1e9
    # one thread alone: what one core does, whether or not another process holds the other cores now
    numba.set_num_threads(1)
    one = out[:1]
    one_thread = _best_rate(lambda: loop(m, c, iters, one), flops / threads, seconds / 2) / 1e9
    numba.set_num_threads(threads)
    chain_iters = 2_000_000
    steps = _best_rate(lambda: chain(np.float32(0.999), np.float32(0.001), chain_iters, np.float32(1.0)),
                       chain_iters, seconds / 2)
    clock = FMA_LATENCY * steps / 1e9
    bits = 512 if fmas[512] else 256 if fmas[256] else None
    return {
        "gflops": gflops, "threads": threads, "one_thread_gflops": one_thread, "vector_bits": bits,
        "fma_instructions": fmas,
        "scalar_fma_instructions": scalar_fmas, "clock_ghz": clock,
        "flops_per_cycle_per_thread": gflops / threads / clock, "flops_per_cycle_one_thread": one_thread / clock,
        "accumulators": vectors * LANES, "numba": numba.__version__,
        "cpu_features_override": os.environ.get("NUMBA_CPU_FEATURES") is not None,
    }


def nominal_mhz() -> float | None:
    """The clock /proc/cpuinfo states (under a hypervisor often the base clock, not the turbo one)."""
    try:
        with open("/proc/cpuinfo") as handle:
            values = [float(line.split(":")[1]) for line in handle if line.startswith("cpu MHz")]
    except OSError:
        return None
    return max(values) if values else None


def run_child(bits: int, seconds: float = 1.5, timeout: float = 300.0) -> dict:
    """:func:`measure` in a new process with ``bits``-wide vectors; the result, or ``{"error": ...}``."""
    env = dict(os.environ)
    if bits == 512:
        import llvmlite.binding as llvm

        env["NUMBA_CPU_FEATURES"] = llvm.get_host_cpu_features().flatten() + ",-prefer-256-bit"
    try:
        done = subprocess.run([sys.executable, os.path.abspath(__file__), "--in-process", "--seconds", str(seconds)],
                              env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bits", type=int, choices=(256, 512), default=512, help="vector width (default 512)")
    parser.add_argument("--seconds", type=float, default=1.5, help="timing time per measurement")
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.in_process:
        result = measure(args.seconds)
    else:
        result = run_child(args.bits, args.seconds)
        result["nominal_mhz"] = nominal_mhz()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
