"""Imported-model inference: numconv's ONNX runtime beside ONNX Runtime on the CPU, on the same ONNX files, in one
process.

    python benchmarks/onnx_import.py [--quick] [--json results.json]

AlexNet (227x227) and Network in Network (32x32), built from numconv's zoo with a fixed seed and exported with
``numconv.onnx.to_model``, are loaded by ``numconv.onnx.load`` and by ``onnxruntime.InferenceSession``, and run on
the same float32 images at batch 1 and 16. Both must give the same logits (relative error below 1e-4) before they
are timed: in turns of three calls each, after a warm-up call that compiles, keeping the best time of each, as
``compare.py`` does.
Reported: milliseconds, the ratio numconv / ONNX Runtime (below 1 means numconv is faster) and its geometric mean.

Both engines use 2 threads (fewer if Numba is limited to fewer). For stable numbers on OpenBLAS builds, run with
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset. Needs the onnx and onnxruntime packages.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import sys
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import numba  # noqa: E402
import numpy as np  # noqa: E402

import numconv.onnx  # noqa: E402
from compare import best_times  # noqa: E402  (compare.py's timing, so that both tables' ratios mean the same)
from numconv import models  # noqa: E402

#: (zoo name, batch) of every case
CASES = (("alexnet", 1), ("alexnet", 16), ("nin", 1), ("nin", 16))
#: the largest difference allowed between the two engines' logits, relative to the largest ONNX Runtime logit
TOLERANCE = 1e-4
#: threads per engine: numconv's (Numba's) and ONNX Runtime's intra-op pool
THREADS = 2


def sessions(name: str, threads: int) -> tuple:
    """The zoo model ``name`` (seed 0) exported to ONNX, loaded by numconv and by ONNX Runtime (``threads``
    intra-op threads that sleep when idle, one inter-op): (numconv session, ONNX Runtime session)."""
    import onnxruntime

    model = models.MODELS[name](rng=0)
    proto = numconv.onnx.to_model(model, (1,) + models.INPUT_SHAPES[name])
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # idle ONNX Runtime workers otherwise spin on the cores while numconv's turn runs, doubling its time
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    theirs = onnxruntime.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return numconv.onnx.load(proto), theirs


def relative_error(ours: np.ndarray, theirs: np.ndarray) -> float:
    """The largest absolute difference between two (N, classes) logit arrays over the largest ``theirs``."""
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


def run(args) -> dict:
    threads = min(THREADS, numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(threads)
    report = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "threads": threads,
                    "numba": numba.__version__, "numpy": np.__version__, "onnx": version("onnx"),
                    "onnxruntime": version("onnxruntime")},
        "models": [],
    }
    rounds, budget, spread = (3, 1.0, 0.3) if args.quick else (10, 6.0, 1.5)
    loaded = {}
    for name, batch in CASES:
        if name not in loaded:
            loaded[name] = sessions(name, threads)
        ours, theirs = loaded[name]
        images = np.random.default_rng(1).standard_normal((batch,) + models.INPUT_SHAPES[name], dtype=np.float32)
        feed = {"input": images}
        # the first numconv call compiles; checking before timing means a wrong engine is never measured
        error = relative_error(ours.run(None, feed)[0], theirs.run(None, feed)[0])
        if not error < TOLERANCE:  # NaN fails too
            raise RuntimeError(f"{name} at batch {batch}: numconv's logits differ from ONNX Runtime's by {error:.2e} "
                               f"(relative), above {TOLERANCE:.0e}")
        best = best_times({"numconv": lambda: ours.run(None, feed), "onnxruntime": lambda: theirs.run(None, feed)},
                          rounds, budget, spread)
        row = {"name": name, "batch": batch, "numconv_ms": best["numconv"] * 1e3,
               "onnxruntime_ms": best["onnxruntime"] * 1e3, "ratio": best["numconv"] / best["onnxruntime"],
               "relative_error": error}
        report["models"].append(row)
        print(f"  {name} batch {batch}: ratio {row['ratio']:.2f}", file=sys.stderr, flush=True)
    report["summary"] = {"geomean_ratio": statistics.geometric_mean(row["ratio"] for row in report["models"])}
    return report


def table(report: dict) -> str:
    machine = report["machine"]
    lines = [f"threads {machine['threads']} per engine; onnx {machine['onnx']}, onnxruntime {machine['onnxruntime']}",
             ""]
    header = f"{'model':<8} {'batch':>5} {'numconv ms':>10} {'onnxruntime ms':>14} {'ratio':>6} {'rel. error':>10}"
    lines += [header, "-" * len(header)]
    for row in report["models"]:
        lines.append(f"{row['name']:<8} {row['batch']:>5} {row['numconv_ms']:>10.2f} {row['onnxruntime_ms']:>14.2f} "
                     f"{row['ratio']:>6.2f} {row['relative_error']:>10.1e}")
    lines += ["", "ratio numconv / ONNX Runtime (below 1: numconv faster): "
              f"geomean {report['summary']['geomean_ratio']:.2f}"]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds per case")
    parser.add_argument("--json", type=Path, help="write the full report here")
    args = parser.parse_args(argv)
    missing = [package for package in ("onnx", "onnxruntime") if importlib.util.find_spec(package) is None]
    if missing:
        raise SystemExit(f"{' and '.join(missing)} not installed: nothing to compare (pip install onnx onnxruntime, "
                         "or the project's test extra)")
    report = run(args)
    print(table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
