"""numconv beside PyTorch and ONNX Runtime on the CPU, over the anchor suite, in one process.

    python benchmarks/compare.py [--quick] [--json results.json] [--plot ratios.png] [--only NAME ...] [--no-start]

For every case the engines take turns of three calls each (numconv, PyTorch, ONNX Runtime, numconv, ...) after a
warm-up call that compiles, and the best time of each is kept, so that a shared, noisy machine slows all alike and
no engine is timed while another's threads still hold the cores (``TURN``). ONNX Runtime runs the
forward pass only (it is an inference engine), as a one-node ONNX model built with ``onnx.helper``, and its output
must equal numconv's (largest difference below 1e-4 of the largest output) before it is timed.

Reported: milliseconds; GFLOP/s for convolutions and dense layers, with the fraction of the machine's peak (the best
of a large numpy sgemm and a large PyTorch convolution) and of its FMA peak (a register-resident multiply-add loop,
``fma_peak.py``); GB/s (bytes read + written) for pooling (forward, and the backward alone against PyTorch's: max-
pooling's from the forward's indices, average pooling's), local response normalisation and element-wise ops, with
the fraction of the memory bandwidth (the best of a 256 MB copy); and the ratios numconv / PyTorch and
numconv / ONNX Runtime (below 1 means numconv is faster), with their geometric means. Cold and warm start times (a
new process to the first LeNet-5 training step, with an empty and with a filled compile cache) are measured in
subprocesses. Without PyTorch, or without onnx and onnxruntime, that peer's columns show "-".

All engines use the same number of threads (numba's, by default every core). For stable numbers on OpenBLAS
builds, run with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset. numconv's kernels run on Numba's TBB threading layer
(``numconv.kernels.threads``), which OMP_WAIT_POLICY does not affect; PyTorch's OpenMP runtime reads it, so leave
it unset to time PyTorch as it is installed.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import numba  # noqa: E402
import numpy as np  # noqa: E402

import anchors  # noqa: E402
import fma_peak  # noqa: E402

try:
    import torch
except ImportError:  # the comparison degrades to numconv (and ONNX Runtime)
    torch = None

#: the peers, in the order they run after numconv, with the name the table uses
PEERS = (("torch", "PyTorch"), ("ort", "ONNX Runtime"))


#: each engine's calls in a row in every round (its turn). An engine's first call after another's runs slower: the
#: other's threads still spin for a while, and its own data have left the cache. Measured on 2 cores in one process
#: (best of 30 rounds): ONNX Runtime's AlexNet third layer took 27.6 ms after numconv's or PyTorch's call against
#: 20.4 alone, its M5 second layer 20.6-30.3 against 16.5; in turns of three, 20.6 and 16.5 (numconv's and
#: PyTorch's as alone too). The best of a turn leaves its first call out
TURN = 3
#: ... and each turn lasts at least this long: PyTorch's OpenMP threads spin for a few milliseconds after its last
#: call, holding the cores from the next engine's threads. After PyTorch's turn numconv's LeNet first layer (on
#: TBB) took 0.48-0.57 ms a call for the first 3.5 ms, then 0.23-0.24 (median of 40 turns, ``TURN`` calls of
#: PyTorch's before each): in turns of three short calls, every call of a layer that fast was one PyTorch's threads
#: slowed
TURN_SECONDS = 0.01
#: ... and before each turn the process sleeps this long, untimed, when another callable took the turn before: the
#: other engine's threads spin for longer than a turn. After a turn of PyTorch's average-pooling backward on
#: AlexNet's first pooled layer, numconv's (1.55 ms a call alone) took 3.6 ms in the first 3 ms, 5.9 in the next 3,
#: 3.0 at 9-12 ms, 1.8 at 15-18 and 1.55 from 21 ms on (medians of 40 turns); its turns of 10 ms measured 2.3-2.9 ms
#: where it ran 1.4-1.5 alone, and 1.40 with turns of 30 ms
TURN_GAP_SECONDS = 0.03


def best_times(functions: dict, rounds: int, budget: float, spread: float = 1.5) -> dict:
    """Best wall time of each callable: one warm-up call each, then rounds in which each takes a turn of ``TURN``
    calls in a row, and more until the turn has lasted ``TURN_SECONDS``, after an untimed pause of
    ``TURN_GAP_SECONDS`` where there is more than one callable, until ``rounds`` rounds are done and at least
    ``spread`` seconds of turns have passed (so that fast cases sample a shared machine's quiet moments too), stopping
    early once ``budget`` seconds of turns are spent (but never before 3 rounds), and after at most 1000 rounds."""
    for function in functions.values():
        function()
    best = {name: math.inf for name in functions}
    elapsed = 0.0
    for round_index in range(1000):
        for name, function in functions.items():
            if len(functions) > 1:
                time.sleep(TURN_GAP_SECONDS)
            turn_started, calls = time.perf_counter(), 0
            while calls < TURN or time.perf_counter() - turn_started < TURN_SECONDS:
                begin = time.perf_counter()
                function()
                best[name] = min(best[name], time.perf_counter() - begin)
                calls += 1
            elapsed += time.perf_counter() - turn_started
        if round_index >= 2 and (elapsed > budget or (round_index + 1 >= rounds and elapsed > spread)):
            break
    return best


def measure_peak(threads: int) -> dict:
    """GFLOP/s of a large float32 matrix product (numpy's BLAS) and of a large PyTorch convolution (AlexNet's second
    layer at batch 32, without groups), each the best of several runs after a second of warm-up, so that the
    processor has reached its sustained clock."""
    rng = np.random.default_rng(0)
    size = 2048
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    until = time.perf_counter() + 1.0
    while time.perf_counter() < until:
        a @ b
    sgemm = best_times({"sgemm": lambda: a @ b}, 10, 3.0)["sgemm"]
    peak = {"sgemm_gflops": 2.0 * size ** 3 / sgemm / 1e9}
    if torch is not None:
        case = anchors.ConvCase("peak", 2, 32, 96, (27, 27), 256, 5, 1, 2)
        conv = anchors.torch_conv(case)
        seconds = best_times({"conv": conv}, 10, 3.0)["conv"]
        peak["torch_conv_gflops"] = case.flops / seconds / 1e9
    peak["peak_gflops"] = max(v for v in peak.values())
    return peak


def measure_fma_peak(seconds: float = 3.0) -> dict:
    """The register-resident FMA loop of ``fma_peak.py`` in child processes, with 512-bit vectors where the CPU has
    them (the machine's peak, and numconv's kernels' width: ``numconv.vectors``; 256-bit on AVX2 CPUs) and with
    Numba's default width (256-bit on Intel since Skylake-X). ``gflops`` is the first result, or the second where
    that failed."""
    wide = fma_peak.run_child(512, seconds)
    # without AVX-512 the 512-bit run is already Numba's default 256-bit loop: one run serves both
    narrow = fma_peak.run_child(256, seconds) if wide.get("vector_bits") != 256 else wide
    result = {"bits_512": wide, "bits_256": narrow, "nominal_mhz": fma_peak.nominal_mhz()}
    measured = [result[key]["gflops"] for key in ("bits_512", "bits_256") if "gflops" in result[key]]
    result["gflops"] = max(measured) if measured else None
    return result


def _parallel_copy(source, target):
    for i in numba.prange(source.shape[0]):
        target[i] = source[i]


def measure_bandwidth(megabytes: int = 256, seconds: float = 2.0) -> dict:
    """GB/s (bytes read + written) of copying ``megabytes`` of float32: numpy's ``copyto`` (one thread) and a Numba
    ``prange`` copy (every thread), the best call of each over ``seconds``; ``gbs`` is the better one."""
    source = np.random.default_rng(0).standard_normal(megabytes * 2 ** 20 // 4, dtype=np.float32)
    target = np.empty_like(source)
    parallel = numba.njit(parallel=True)(_parallel_copy)
    result = {"bytes": 2.0 * source.nbytes}
    for key, function in (("numpy_copy_gbs", lambda: np.copyto(target, source)),
                          ("numba_copy_gbs", lambda: parallel(source, target))):
        function()
        best = math.inf
        until = time.perf_counter() + seconds
        while best == math.inf or time.perf_counter() < until:
            begin = time.perf_counter()
            function()
            best = min(best, time.perf_counter() - begin)
        result[key] = result["bytes"] / best / 1e9
    result["gbs"] = max(result["numpy_copy_gbs"], result["numba_copy_gbs"])
    return result


def start_times(timeout: float = 900.0) -> dict:
    """Seconds from a new process to the first LeNet-5 training step, with an empty compile cache (cold: every
    kernel compiles) and again with the cache that run filled (warm)."""
    child = (
        "import time; t0 = time.perf_counter(); import sys; sys.path.insert(0, {here!r}); import anchors; "
        "step = anchors.numconv_lenet_step(); step(); print(time.perf_counter() - t0)"
    ).format(here=str(HERE))
    result = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=str(HERE.parent))
        for label in ("cold", "warm"):
            begin = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True, text=True,
                                  timeout=timeout)
            wall = time.perf_counter() - begin
            if done.returncode != 0:
                raise RuntimeError(f"the {label} start failed:\n{done.stderr}")
            result[f"{label}_s"] = wall
            result[f"{label}_in_process_s"] = float(done.stdout.strip().splitlines()[-1])
    return result


def _ratio(ours: float, theirs: float | None) -> float | None:
    return None if theirs is None else ours / theirs


class Runner:
    """Times one case in every engine available and fills in the row's numbers."""

    def __init__(self, args, peak: float, fma: float | None, bandwidth: float):
        self.rounds, self.budget, self.spread = (3, 1.0, 0.3) if args.quick else (10, 6.0, 1.5)
        self.peak, self.fma, self.bandwidth = peak, fma, bandwidth
        self.mismatches = []

    def entry(self, case, mode: str, ours, theirs=None, ort=None, work: float = 0.0, unit: str = "gflops") -> dict:
        """Time ``ours`` (numconv), ``theirs`` (PyTorch) and ``ort`` (ONNX Runtime) in turns, after checking that
        ONNX Runtime's output equals numconv's; ``work`` flops (``unit`` 'gflops') or bytes ('gbs') per call."""
        functions = {"numconv": ours}
        if theirs is not None:
            functions["torch"] = theirs
        entry = {}
        if ort is not None:
            error = anchors.ort_mismatch(case, ours(), ort())
            entry["ort_relative_error"] = error
            if error < anchors.ORT_TOLERANCE:  # NaN fails too: a wrong result is never timed
                functions["ort"] = ort
            else:
                self.mismatches.append(f"{case.name} {mode}: ONNX Runtime's output differs from numconv's by "
                                       f"{error:.2e} (relative), not timed")
                print(f"  {self.mismatches[-1]}", file=sys.stderr, flush=True)
        best = best_times(functions, self.rounds, self.budget, self.spread)
        for engine in ("numconv", "torch", "ort"):
            seconds = best.get(engine)
            entry[f"{engine}_ms"] = None if seconds is None else seconds * 1e3
            entry[f"{engine}_{unit}"] = None if seconds is None else work / seconds / 1e9
        entry["ratio"] = _ratio(best["numconv"], best.get("torch"))
        entry["ort_ratio"] = _ratio(best["numconv"], best.get("ort"))
        rate = entry[f"numconv_{unit}"]
        if unit == "gflops":
            entry["numconv_peak_fraction"] = rate / self.peak
            entry["numconv_fma_fraction"] = None if not self.fma else rate / self.fma
        else:
            entry["numconv_bandwidth_fraction"] = rate / self.bandwidth
        return entry


def _with_ort(factory, *args):
    """``factory(*args)`` when ONNX Runtime can run, else None."""
    return factory(*args) if anchors.HAS_ORT else None


def _with_torch(factory, *args):
    return factory(*args) if torch is not None else None


def run(args) -> dict:
    threads = numba.get_num_threads()
    if torch is not None:
        torch.set_num_threads(threads)
    else:
        print(NO_TORCH, file=sys.stderr, flush=True)
    if not anchors.HAS_ORT:
        print(NO_ORT, file=sys.stderr, flush=True)
    report = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "threads": threads,
                    "numba": numba.__version__, "numpy": np.__version__,
                    "torch": None if torch is None else torch.__version__,
                    "onnx": version("onnx") if anchors.HAS_ORT else None,
                    "onnxruntime": version("onnxruntime") if anchors.HAS_ORT else None},
        "peak": measure_peak(threads),
        "conv": [], "dense": [], "pool": [], "pool_backward": [], "lrn": [], "elementwise": [], "models": [],
    }
    print("  measuring the FMA peak and the memory bandwidth", file=sys.stderr, flush=True)
    report["fma_peak"] = measure_fma_peak(1.5 if args.quick else 3.0)
    report["bandwidth"] = measure_bandwidth(seconds=1.0 if args.quick else 2.0)
    runner = Runner(args, report["peak"]["peak_gflops"], report["fma_peak"]["gflops"], report["bandwidth"]["gbs"])
    wanted = set(args.only or [])
    both = (("forward", False), ("forward_backward", True))

    for case in anchors.CONV_CASES:
        if wanted and case.name not in wanted:
            continue
        row = {"name": case.name, "flops": case.flops, "large": case.large}
        for mode, backward in both:
            row[mode] = runner.entry(case, mode, anchors.numconv_conv(case, backward),
                                     _with_torch(anchors.torch_conv, case, backward),
                                     None if backward else _with_ort(anchors.ort_conv, case),
                                     (3.0 if backward else 1.0) * case.flops)
        report["conv"].append(row)
        _progress(row)
    for case in anchors.DENSE_CASES:
        if wanted and case.name not in wanted:
            continue
        row = {"name": case.name, "flops": case.flops}
        for mode, backward in both:
            row[mode] = runner.entry(case, mode, anchors.numconv_dense(case, backward),
                                     _with_torch(anchors.torch_dense, case, backward),
                                     None if backward else _with_ort(anchors.ort_dense, case),
                                     (3.0 if backward else 1.0) * case.flops)
        report["dense"].append(row)
        _progress(row)
    for case in anchors.ALL_POOL_CASES:
        if wanted and case.name not in wanted:
            continue
        entry = runner.entry(case, "forward", anchors.numconv_pool(case), _with_torch(anchors.torch_pool, case),
                             _with_ort(anchors.ort_pool, case), case.bytes, "gbs")
        report["pool"].append({"name": case.name, "kind": case.kind, "bytes": case.bytes, **entry})
        _progress(report["pool"][-1])
    for case in anchors.POOL_BACKWARD_CASES:
        if wanted and case.name not in wanted:
            continue
        entry = runner.entry(case, "backward", anchors.numconv_pool_backward(case),
                             _with_torch(anchors.torch_pool_backward, case), None, case.backward_bytes, "gbs")
        report["pool_backward"].append({"name": case.name, "kind": f"{case.kind}_backward",
                                        "bytes": case.backward_bytes, **entry})
        _progress(report["pool_backward"][-1])
    for case in anchors.LRN_CASES:
        if wanted and case.name not in wanted:
            continue
        row = {"name": case.name, "bytes": case.bytes()}
        for mode, backward in both:
            row[mode] = runner.entry(case, mode, anchors.numconv_lrn(case, backward),
                                     _with_torch(anchors.torch_lrn, case, backward),
                                     None if backward else _with_ort(anchors.ort_lrn, case),
                                     case.bytes(backward), "gbs")
        report["lrn"].append(row)
        _progress(row)
    for case in anchors.ELEMENTWISE_CASES:
        if wanted and case.name not in wanted:
            continue
        row = {"name": case.name, "op": case.op, "bytes": case.bytes()}
        for mode, backward in both[:2 if case.backward else 1]:
            row[mode] = runner.entry(case, mode, anchors.numconv_elementwise(case, backward),
                                     _with_torch(anchors.torch_elementwise, case, backward),
                                     None if backward else _with_ort(anchors.ort_elementwise, case),
                                     case.bytes(backward), "gbs")
        report["elementwise"].append(row)
        _progress(row)
    models = (("lenet5_train_step_b64", anchors.numconv_lenet_step, anchors.torch_lenet_step, None),
              ("alexnet_forward_b16", anchors.numconv_alexnet_forward, anchors.torch_alexnet_forward,
               anchors.ort_alexnet_forward))
    for name, ours_factory, theirs_factory, ort_factory in models:
        if wanted and name not in wanted:
            continue
        entry = runner.entry(SimpleNamespace(name=name), "forward", ours_factory(), _with_torch(theirs_factory),
                             None if ort_factory is None else _with_ort(ort_factory))
        report["models"].append({"name": name, **{key: entry[key] for key in
                                                  ("numconv_ms", "torch_ms", "ort_ms", "ratio", "ort_ratio")}})
        if "ort_relative_error" in entry:
            report["models"][-1]["ort_relative_error"] = entry["ort_relative_error"]
        _progress(report["models"][-1])
    if not args.no_start:
        report["start"] = start_times()
    report["ort_mismatches"] = runner.mismatches
    report["summary"] = summarise(report)
    return report


def _progress(row: dict) -> None:
    entries = [row[mode] for mode in ("forward", "forward_backward") if mode in row] or [row]
    shown = " ".join(f"{_fmt(entry.get('ratio'), '.2f')}/{_fmt(entry.get('ort_ratio'), '.2f')}" for entry in entries)
    print(f"  {row['name']}: numconv / torch / ORT {shown}", file=sys.stderr, flush=True)


def _geomean(values) -> float | None:
    values = [v for v in values if v is not None]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def _entries(report: dict, group: str, mode: str):
    """The entries of ``group`` for ``mode`` ('forward' or 'forward_backward'; pooling rows are their own)."""
    if group == "pool":
        return report["pool"] if mode == "forward" else []
    return [row[mode] for row in report[group] if mode in row]


#: (report group, label) of the geometric means, per peer
SUMMARY_GROUPS = (("conv", "conv"), ("dense", "dense"), ("pool", "pooling"), ("lrn", "LRN"),
                  ("elementwise", "element-wise"))


def summarise(report: dict) -> dict:
    conv = report["conv"]
    summary = {
        "conv_forward_geomean_ratio": _geomean(r["forward"]["ratio"] for r in conv),
        "conv_forward_backward_geomean_ratio": _geomean(r["forward_backward"]["ratio"] for r in conv),
        "conv_worst_ratio": max([r[m]["ratio"] for r in conv for m in ("forward", "forward_backward")
                                 if r[m]["ratio"] is not None], default=None),
        "large_layers_min_peak_fraction": min([r["forward"]["numconv_peak_fraction"] for r in conv if r["large"]],
                                              default=None),
        "pool_geomean_ratio": _geomean(r["ratio"] for r in report["pool"]),
        "ort_pool_geomean_ratio": _geomean(r["ort_ratio"] for r in report["pool"]),
        "pool_backward_geomean_ratio": _geomean(r["ratio"] for r in report["pool_backward"]),
    }
    for group, _ in SUMMARY_GROUPS:
        if group == "pool":
            continue
        for mode in ("forward", "forward_backward"):
            summary[f"{group}_{mode}_geomean_ratio"] = _geomean(e["ratio"] for e in _entries(report, group, mode))
        summary[f"ort_{group}_forward_geomean_ratio"] = _geomean(e["ort_ratio"]
                                                                for e in _entries(report, group, "forward"))
    for row in report["models"]:
        summary[f"{row['name']}_ratio"] = row["ratio"]
        summary[f"{row['name']}_ort_ratio"] = row["ort_ratio"]
    return summary


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _percent(fraction):
    return None if fraction is None else 100 * fraction


#: said at the top of the table, and on stderr when the run starts, when a peer is missing
NO_TORCH = ("PyTorch is not installed: its columns show - (pip install torch, or the project's test extra)")
NO_ORT = ("onnx or onnxruntime is not installed: ONNX Runtime's columns show - (pip install onnx onnxruntime, or "
          "the project's onnx extra)")

_RATIOS = f"{'numconv / torch':>15} {'numconv / ORT':>13}"


def _compute_lines(title: str, rows: list) -> list:
    header = (f"{title:<12} {'mode':<7} {'numconv ms':>10} {'torch ms':>9} {'ORT ms':>9} {'GFLOP/s':>8} {_RATIOS} "
              f"{'% peak':>6} {'% FMA':>6}")
    lines = ["", header, "-" * len(header)]
    for row in rows:
        for mode, label in (("forward", "fwd"), ("forward_backward", "fwd+bwd")):
            m = row[mode]
            lines.append(f"{row['name']:<12} {label:<7} {m['numconv_ms']:>10.2f} {_fmt(m['torch_ms'], '9.2f'):>9} "
                         f"{_fmt(m['ort_ms'], '9.2f'):>9} {m['numconv_gflops']:>8.1f} "
                         f"{_fmt(m['ratio'], '15.2f'):>15} {_fmt(m['ort_ratio'], '13.2f'):>13} "
                         f"{_fmt(_percent(m['numconv_peak_fraction']), '5.1f'):>5}% "
                         f"{_fmt(_percent(m['numconv_fma_fraction']), '5.1f'):>5}%")
    return lines


#: how the memory-bound tables name each row's kind or mode
_KIND = {"max_indices": "max+idx", "max": "max", "avg": "avg", "max_indices_backward": "max bwd",
         "avg_backward": "avg bwd", "forward": "fwd", "forward_backward": "fwd+bwd"}


def _memory_lines(title: str, rows: list) -> list:
    header = (f"{title:<16} {'mode':<7} {'numconv ms':>10} {'torch ms':>9} {'ORT ms':>9} {'GB/s':>6} {'% bw':>6} "
              f"{_RATIOS}")
    lines = ["", header, "-" * len(header)]
    for row in rows:
        if "kind" in row:
            labelled = [(_KIND[row["kind"]], row)]
        else:
            labelled = [(_KIND[mode], row[mode]) for mode in ("forward", "forward_backward") if mode in row]
        for label, m in labelled:
            lines.append(f"{row['name']:<16} {label:<7} {m['numconv_ms']:>10.2f} {_fmt(m['torch_ms'], '9.2f'):>9} "
                         f"{_fmt(m['ort_ms'], '9.2f'):>9} {m['numconv_gbs']:>6.1f} "
                         f"{_fmt(_percent(m['numconv_bandwidth_fraction']), '5.0f'):>5}% "
                         f"{_fmt(m['ratio'], '15.2f'):>15} {_fmt(m['ort_ratio'], '13.2f'):>13}")
    return lines


def _peak_lines(report: dict) -> list:
    machine, peak, fma, bandwidth = report["machine"], report["peak"], report["fma_peak"], report["bandwidth"]
    lines = [f"threads {machine['threads']}; peak {peak['peak_gflops']:.0f} GFLOP/s (sgemm {peak['sgemm_gflops']:.0f}"
             + (f", PyTorch conv {peak['torch_conv_gflops']:.0f}" if "torch_conv_gflops" in peak else "") + ")"]
    wide, narrow = fma["bits_512"], fma["bits_256"]
    if "gflops" in wide:
        # two FMA units of this width: two flops per float32 lane each, per cycle (64 at 512 bits, 32 at 256)
        most = wide["vector_bits"] // 8
        line = (f"FMA peak {wide['gflops']:.0f} GFLOP/s (register-resident {wide['vector_bits']}-bit FMA loop, "
                f"{wide['threads']} threads: {wide['flops_per_cycle_per_thread']:.0f} flops/cycle/thread at the "
                f"{wide['clock_ghz']:.2f} GHz a dependent FMA chain runs at, one thread alone "
                f"{wide['one_thread_gflops']:.0f} GFLOP/s = {wide['flops_per_cycle_one_thread']:.0f} flops/cycle; "
                f"{most} is two {wide['vector_bits']}-bit FMA units' most")
        if fma.get("nominal_mhz"):
            nominal = fma["nominal_mhz"] / 1e3
            line += (f"; /proc/cpuinfo {fma['nominal_mhz']:.0f} MHz: {wide['threads']} x {nominal:.2f} x {most} = "
                     f"{wide['threads'] * nominal * most:.0f}")
        lines.append(line + ")")
    else:
        lines.append(f"FMA peak (512-bit) not measured: {wide.get('error')}")
    if "gflops" in narrow and narrow.get("vector_bits") != wide.get("vector_bits"):
        lines.append(f"  with Numba's default vector width ({narrow['vector_bits']}-bit here; numconv compiles for "
                     f"{wide.get('vector_bits')}-bit): {narrow['gflops']:.0f} GFLOP/s, one thread "
                     f"{narrow['one_thread_gflops']:.0f} = {narrow['flops_per_cycle_one_thread']:.0f} flops/cycle "
                     f"({narrow['vector_bits'] // 8} the most)")
    lines.append(f"memory bandwidth {bandwidth['gbs']:.1f} GB/s (best copy of {bandwidth['bytes'] / 2 ** 21:.0f} MB "
                 f"float32, bytes read + written: np.copyto {bandwidth['numpy_copy_gbs']:.1f}, "
                 f"Numba prange {bandwidth['numba_copy_gbs']:.1f})")
    if machine.get("onnxruntime"):
        lines.append(f"ONNX Runtime {machine['onnxruntime']} (onnx {machine['onnx']}): {machine['threads']} intra-op "
                     f"threads, no spinning, forward only; outputs equal numconv's (relative "
                     f"{anchors.ORT_TOLERANCE:.0e}) before timing")
    return lines


def table(report: dict) -> str:
    machine = report["machine"]
    lines = [NO_TORCH] if machine["torch"] is None else []
    lines += [NO_ORT] if machine.get("onnxruntime") is None else []
    lines += _peak_lines(report)
    if report["conv"]:
        lines += _compute_lines("convolution", report["conv"])
    if report["dense"]:
        lines += _compute_lines("dense", report["dense"])
    for group, title in (("pool", "pooling"), ("pool_backward", "pooling backward"), ("lrn", "local resp. norm"),
                         ("elementwise", "element-wise")):
        if report[group]:
            lines += _memory_lines(title, report[group])
    if report["models"]:
        header = f"{'model':<22} {'numconv ms':>10} {'torch ms':>9} {'ORT ms':>9} {_RATIOS}"
        lines += ["", header, "-" * len(header)]
        for row in report["models"]:
            lines.append(f"{row['name']:<22} {row['numconv_ms']:>10.2f} {_fmt(row['torch_ms'], '9.2f'):>9} "
                         f"{_fmt(row['ort_ms'], '9.2f'):>9} {_fmt(row['ratio'], '15.2f'):>15} "
                         f"{_fmt(row['ort_ratio'], '13.2f'):>13}")
    if "start" in report:
        start = report["start"]
        lines += ["", f"start to first LeNet-5 training step: cold {start['cold_s']:.1f} s, "
                      f"warm {start['warm_s']:.1f} s"
                      f" (in process {start['cold_in_process_s']:.1f} / {start['warm_in_process_s']:.1f} s)"]
    lines += [""] + [f"note: {message}" for message in report.get("ort_mismatches", [])]
    s = report["summary"]
    lines.append("geometric means of numconv / peer (below 1: numconv faster):")
    torch_parts = []
    ort_parts = []
    for group, label in SUMMARY_GROUPS:
        if group == "pool":
            torch_parts.append(f"pooling {_fmt(s['pool_geomean_ratio'], '.2f')} bwd "
                               f"{_fmt(s['pool_backward_geomean_ratio'], '.2f')}")
            ort_parts.append(f"pooling {_fmt(s['ort_pool_geomean_ratio'], '.2f')}")
            continue
        torch_parts.append(f"{label} fwd {_fmt(s[f'{group}_forward_geomean_ratio'], '.2f')}"
                           + (f" fwd+bwd {_fmt(s[f'{group}_forward_backward_geomean_ratio'], '.2f')}"))
        ort_parts.append(f"{label} fwd {_fmt(s[f'ort_{group}_forward_geomean_ratio'], '.2f')}")
    lines.append("  vs PyTorch:      " + ", ".join(torch_parts)
                 + f"; worst conv {_fmt(s['conv_worst_ratio'], '.2f')}")
    lines.append("  vs ONNX Runtime: " + ", ".join(ort_parts))
    lines.append(f"large conv layers at >= {_fmt(_percent(s['large_layers_min_peak_fraction']), '.0f')}% of peak")
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    """A bar per measurement and peer: the ratio numconv / peer on a log scale, green below 1 (numconv faster), red
    above, with the line at 1. Bars in order: each convolution and dense layer forward then forward+backward,
    pooling forward then backward, normalisation, element-wise, models; ONNX Runtime's bars are labelled 'vs ORT'."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, bars = [], []
    for group in ("conv", "dense", "pool", "pool_backward", "lrn", "elementwise", "models"):
        for row in report[group]:
            entries = [(mode, row[mode]) for mode in ("forward", "forward_backward") if mode in row] or [("", row)]
            for mode, entry in entries:
                short = {"forward": " fwd", "forward_backward": " fwd+bwd", "": ""}[mode]
                short += " bwd" if group == "pool_backward" else ""
                for key, suffix in (("ratio", ""), ("ort_ratio", " vs ORT")):
                    labels.append(f"{row['name']}{short}{suffix}")
                    bars.append(entry.get(key))
    kept = [(label, bar) for label, bar in zip(labels, bars) if bar is not None]
    if not kept:
        raise SystemExit("nothing to plot: PyTorch or ONNX Runtime is needed for ratios")
    labels, bars = zip(*kept)
    figure, axis = plt.subplots(figsize=(max(6.0, 0.32 * len(bars)), 4.0), layout="constrained")
    axis.bar(range(len(bars)), bars, color=["tab:green" if bar <= 1.0 else "tab:red" for bar in bars])
    axis.axhline(1.0, color="black", linewidth=0.8)
    axis.set_yscale("log")
    axis.set_ylabel("time numconv / time peer")
    axis.set_xticks(range(len(bars)), labels, rotation=90, fontsize=7)
    axis.set_title("below 1: numconv is faster")
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds per case")
    parser.add_argument("--json", type=Path, help="write the full report here")
    parser.add_argument("--plot", type=Path, help="write a PNG bar chart of the ratios here")
    parser.add_argument("--only", nargs="*", help="case names to run (default: all)")
    parser.add_argument("--no-start", action="store_true", help="skip the cold and warm start measurement")
    args = parser.parse_args(argv)
    report = run(args)
    print(table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if args.plot:
        plot(report, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
