"""numconv beside PyTorch on the CPU, over the anchor suite, in one process.

    python benchmarks/compare.py [--quick] [--json results.json] [--plot ratios.png] [--only NAME ...]

For every case both engines run interleaved (numconv, PyTorch, numconv, ...) after a warm-up call that compiles,
and the best time of each is kept, so that a shared, noisy machine slows both alike. Reported: milliseconds,
GFLOP/s (GB/s for pooling), the ratio numconv / PyTorch (below 1 means numconv is faster) and the fraction of the
machine's peak, measured at the start as the best of a large numpy sgemm and a large PyTorch convolution. Cold and
warm start times (a new process to the first LeNet-5 training step, with an empty and with a filled compile cache)
are measured in subprocesses. Without PyTorch only numconv's numbers are shown.

Both engines use the same number of threads (numba's, by default every core). For stable numbers on OpenBLAS
builds, run with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset.
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import numba  # noqa: E402
import numpy as np  # noqa: E402

import anchors  # noqa: E402

try:
    import torch
except ImportError:  # the comparison degrades to numconv alone
    torch = None


def best_times(functions: dict, rounds: int, budget: float, spread: float = 1.5) -> dict:
    """Best wall time of each callable: one warm-up call each, then rounds in turn until ``rounds`` rounds are done
    and at least ``spread`` seconds have passed (so that fast cases sample a shared machine's quiet moments too),
    stopping early once ``budget`` seconds are spent (but never before 3 rounds), and after at most 1000 rounds."""
    for function in functions.values():
        function()
    best = {name: math.inf for name in functions}
    started = time.perf_counter()
    for round_index in range(1000):
        for name, function in functions.items():
            begin = time.perf_counter()
            function()
            best[name] = min(best[name], time.perf_counter() - begin)
        elapsed = time.perf_counter() - started
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


def run(args) -> dict:
    threads = numba.get_num_threads()
    if torch is not None:
        torch.set_num_threads(threads)
    else:
        print(NO_TORCH, file=sys.stderr, flush=True)
    report = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "threads": threads,
                    "numba": numba.__version__, "numpy": np.__version__,
                    "torch": None if torch is None else torch.__version__},
        "peak": measure_peak(threads),
        "conv": [], "pool": [], "models": [],
    }
    peak = report["peak"]["peak_gflops"]
    rounds, budget, spread = (3, 1.0, 0.3) if args.quick else (10, 6.0, 1.5)
    wanted = set(args.only or [])
    for case in anchors.CONV_CASES:
        if wanted and case.name not in wanted:
            continue
        row = {"name": case.name, "flops": case.flops, "large": case.large}
        for mode, backward, factor in (("forward", False, 1.0), ("forward_backward", True, 3.0)):
            functions = {"numconv": anchors.numconv_conv(case, backward)}
            if torch is not None:
                functions["torch"] = anchors.torch_conv(case, backward)
            best = best_times(functions, rounds, budget, spread)
            flops = factor * case.flops
            ours, theirs = best["numconv"], best.get("torch")
            row[mode] = {
                "numconv_ms": ours * 1e3, "torch_ms": None if theirs is None else theirs * 1e3,
                "numconv_gflops": flops / ours / 1e9, "torch_gflops": None if theirs is None else flops / theirs / 1e9,
                "ratio": _ratio(ours, theirs), "numconv_peak_fraction": flops / ours / 1e9 / peak,
            }
        report["conv"].append(row)
        _progress(row["name"], row["forward"]["ratio"], row["forward_backward"]["ratio"])
    for case in anchors.POOL_CASES:
        if wanted and case.name not in wanted:
            continue
        functions = {"numconv": anchors.numconv_pool(case)}
        if torch is not None:
            functions["torch"] = anchors.torch_pool(case)
        best = best_times(functions, rounds, budget, spread)
        ours, theirs = best["numconv"], best.get("torch")
        report["pool"].append({
            "name": case.name, "bytes": case.bytes, "numconv_ms": ours * 1e3,
            "torch_ms": None if theirs is None else theirs * 1e3, "numconv_gbs": case.bytes / ours / 1e9,
            "torch_gbs": None if theirs is None else case.bytes / theirs / 1e9, "ratio": _ratio(ours, theirs),
        })
        _progress(case.name, report["pool"][-1]["ratio"])
    models = (("lenet5_train_step_b64", anchors.numconv_lenet_step, anchors.torch_lenet_step),
              ("alexnet_forward_b16", anchors.numconv_alexnet_forward, anchors.torch_alexnet_forward))
    for name, ours_factory, theirs_factory in models:
        if wanted and name not in wanted:
            continue
        functions = {"numconv": ours_factory()}
        if torch is not None:
            functions["torch"] = theirs_factory()
        best = best_times(functions, rounds, budget, spread)
        ours, theirs = best["numconv"], best.get("torch")
        report["models"].append({"name": name, "numconv_ms": ours * 1e3,
                                 "torch_ms": None if theirs is None else theirs * 1e3,
                                 "ratio": _ratio(ours, theirs)})
        _progress(name, report["models"][-1]["ratio"])
    if not args.no_start:
        report["start"] = start_times()
    report["summary"] = summarise(report)
    return report


def _progress(name: str, *ratios) -> None:
    shown = " ".join("-" if r is None else f"{r:.2f}" for r in ratios)
    print(f"  {name}: ratio {shown}", file=sys.stderr, flush=True)


def _geomean(values) -> float | None:
    values = [v for v in values if v is not None]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


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
    }
    for row in report["models"]:
        summary[f"{row['name']}_ratio"] = row["ratio"]
    return summary


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


#: said at the top of the table, and on stderr when the run starts, when the peer is missing
NO_TORCH = ("PyTorch is not installed: numconv's numbers only, no ratios (pip install torch, or the project's "
            "test extra)")


def table(report: dict) -> str:
    peak = report["peak"]
    lines = [NO_TORCH, ""] if report["machine"]["torch"] is None else []
    lines += [f"threads {report['machine']['threads']}; peak {peak['peak_gflops']:.0f} GFLOP/s (sgemm "
             f"{peak['sgemm_gflops']:.0f}" + (f", PyTorch conv {peak['torch_conv_gflops']:.0f}"
                                              if "torch_conv_gflops" in peak else "") + ")", ""]
    header = (f"{'convolution':<12} {'mode':<9} {'numconv ms':>10} {'torch ms':>9} {'GFLOP/s':>8} {'torch':>7} "
              f"{'ratio':>6} {'% peak':>7}")
    lines += [header, "-" * len(header)]
    for row in report["conv"]:
        for mode, label in (("forward", "fwd"), ("forward_backward", "fwd+bwd")):
            m = row[mode]
            lines.append(f"{row['name']:<12} {label:<9} {m['numconv_ms']:>10.2f} {_fmt(m['torch_ms'], '9.2f'):>9} "
                         f"{m['numconv_gflops']:>8.1f} {_fmt(m['torch_gflops'], '7.1f'):>7} "
                         f"{_fmt(m['ratio'], '6.2f'):>6} {100 * m['numconv_peak_fraction']:>6.1f}%")
    if report["pool"]:
        header = f"{'max-pool+idx':<12} {'numconv ms':>10} {'torch ms':>9} {'GB/s':>7} {'torch':>7} {'ratio':>6}"
        lines += ["", header, "-" * len(header)]
        for row in report["pool"]:
            lines.append(f"{row['name']:<12} {row['numconv_ms']:>10.2f} {_fmt(row['torch_ms'], '9.2f'):>9} "
                         f"{row['numconv_gbs']:>7.1f} {_fmt(row['torch_gbs'], '7.1f'):>7} "
                         f"{_fmt(row['ratio'], '6.2f'):>6}")
    if report["models"]:
        header = f"{'model':<22} {'numconv ms':>10} {'torch ms':>9} {'ratio':>6}"
        lines += ["", header, "-" * len(header)]
        for row in report["models"]:
            lines.append(f"{row['name']:<22} {row['numconv_ms']:>10.2f} {_fmt(row['torch_ms'], '9.2f'):>9} "
                         f"{_fmt(row['ratio'], '6.2f'):>6}")
    if "start" in report:
        start = report["start"]
        lines += ["", f"start to first LeNet-5 training step: cold {start['cold_s']:.1f} s, "
                      f"warm {start['warm_s']:.1f} s"
                      f" (in process {start['cold_in_process_s']:.1f} / {start['warm_in_process_s']:.1f} s)"]
    s = report["summary"]
    lines += ["", "ratios numconv / PyTorch (below 1: numconv faster): "
              f"conv forward geomean {_fmt(s['conv_forward_geomean_ratio'], '.2f')}, "
              f"forward+backward geomean {_fmt(s['conv_forward_backward_geomean_ratio'], '.2f')}, "
              f"worst {_fmt(s['conv_worst_ratio'], '.2f')}, max-pool geomean {_fmt(s['pool_geomean_ratio'], '.2f')}; "
              f"large layers at >= {_fmt(_percent(s['large_layers_min_peak_fraction']), '.0f')}% of peak"]
    return "\n".join(lines)


def _percent(fraction):
    return None if fraction is None else 100 * fraction


def plot(report: dict, path: Path) -> None:
    """A bar per measurement: the ratio numconv / PyTorch on a log scale, green below 1 (numconv faster), red above,
    with the line at 1. Bars in order: each convolution forward then forward+backward, pooling, models."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, bars = [], []
    for row in report["conv"]:
        for mode, key in (("fwd", "forward"), ("fwd+bwd", "forward_backward")):
            labels.append(f"{row['name']} {mode}")
            bars.append(row[key]["ratio"])
    for group in ("pool", "models"):
        labels += [row["name"] for row in report[group]]
        bars += [row["ratio"] for row in report[group]]
    kept = [(label, bar) for label, bar in zip(labels, bars) if bar is not None]
    if not kept:
        raise SystemExit("nothing to plot: PyTorch is needed for ratios")
    labels, bars = zip(*kept)
    figure, axis = plt.subplots(figsize=(max(6.0, 0.32 * len(bars)), 4.0), layout="constrained")
    axis.bar(range(len(bars)), bars, color=["tab:green" if bar <= 1.0 else "tab:red" for bar in bars])
    axis.axhline(1.0, color="black", linewidth=0.8)
    axis.set_yscale("log")
    axis.set_ylabel("time numconv / time PyTorch")
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
