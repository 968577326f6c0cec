"""The CUDA backend proven on a real GPU in one command: the device, the spec, the CUDA tests, the anchor suite
against cuDNN, LeNet-5 and AlexNet training, and a profile of a training step.

    python3 scripts/gpu_check.py --out DIR               # on a machine with an NVIDIA GPU: under 8 minutes
    python3 scripts/gpu_check.py --out DIR --simulate    # every stage under Numba's CUDA simulator, tiny shapes

Runs from the repository root without installing numconv (numba, numba-cuda, numpy, sympy, pytest and hypothesis
are needed; torch, for the comparisons with cuDNN). Each stage runs in a process of its own with a time budget, so
that a stage that fails, crashes or runs long costs only its own part of the report; the stages print as they
finish, and DIR/gpu_check.json and DIR/gpu_check.md are rewritten after every stage (and a stage's partial results
after each of its items), so a run cut short still reports what it did. DIR/logs/ holds each stage's output.

Stages: ``device`` (names and versions, the caching pool checked, the float32 multiply-add peak measured by
``scripts/cuda_fma_peak.py``), ``spec`` (``spec check --backend cuda``, every
row), ``tests`` (tests/test_cuda.py, tests/test_device_training.py and tests/test_cuda_memory.py on the device:
``NUMCONV_TEST_DEVICE=gpu``), ``anchors`` (forward, forward+backward and max-pooling with indices, float32, numconv
against PyTorch (cuDNN, TF32 off), CUDA events around each call after a synchronise, kernels compiled before
timing; each forward+backward call also taken apart launch by launch, the slowest three in the report),
``training`` (a LeNet-5 epoch on the GPU against one on the CPU from the same seed, final weights compared; an
AlexNet training step at batch 128, time and memory, against PyTorch's) and ``profile`` (one LeNet-5 step: time in
kernels against the host's time in launches and allocations). Every stage reports the kernels it compiled and the
seconds that took. With ``--simulate`` the shapes are tiny and the numbers measure nothing about a GPU: the run
proves that the script works.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: (name, seconds on a GPU) in the order they run; the budgets add up to the default --budget. On an H200 the stages
#: took 15, 86, about 225 (in two runs), 40, 32 and 3 s, compilation included
STAGES = (("device", 25), ("spec", 95), ("tests", 240), ("anchors", 60), ("training", 45), ("profile", 15))
STAGE_BUDGETS = dict(STAGES)
TOTAL_BUDGET = sum(STAGE_BUDGETS.values())
#: the CUDA test files, on the device; under --simulate only the pool's (CI runs the others on the simulator)
TEST_FILES = ("tests/test_cuda.py", "tests/test_device_training.py", "tests/test_cuda_memory.py")
SIMULATED_TEST_FILES = ("tests/test_cuda_memory.py",)
#: the targets of the report, checked on a GPU only
LARGE_LAYER_LIMIT = 2.0


# --- the parent: stages in processes of their own -------------------------------------------------------------------


def _environment(simulate: bool, pool: bool) -> dict:
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                       NUMBA_ENABLE_CUDASIM="1" if simulate else "0",
                       NUMCONV_TEST_DEVICE="simulator" if simulate else "gpu", PYTHONUNBUFFERED="1")
    if not pool:
        environment["NUMCONV_CUDA_POOL"] = "0"
    return environment


def _stage_command(name: str, out: Path, simulate: bool) -> list:
    if name == "tests":
        files = SIMULATED_TEST_FILES if simulate else TEST_FILES
        return [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", *files]
    return [sys.executable, str(Path(__file__).resolve()), "--stage", name, "--out", str(out)] + (
        ["--simulate"] if simulate else [])


def _run_process(command: list, environment: dict, log: Path, timeout: float) -> tuple:
    """Run ``command``, echoing its output and writing it to ``log``; kill it after ``timeout`` seconds. Returns
    (exit status or None when killed, seconds)."""
    started = time.perf_counter()
    with open(log, "w") as log_file:
        process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, start_new_session=True)

        def copy():
            for line in process.stdout:
                log_file.write(line)
                log_file.flush()
                print(f"    {line}", end="", flush=True)

        reader = threading.Thread(target=copy, daemon=True)
        reader.start()
        try:
            status = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
            status = None
        reader.join(timeout=5)
    return status, time.perf_counter() - started


#: a verbose line: the test's id (parameters may hold spaces: "[2D N1 C1 in 5x6 k3x3]") and its outcome
_TEST_LINE = re.compile(r"^(tests/\S+::.+?)\s+(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)(?=\s|$)")


def tests_result(log_text: str) -> dict:
    """The per-test outcomes in pytest's verbose output (complete or cut short)."""
    outcomes = {}
    for line in log_text.splitlines():
        found = _TEST_LINE.match(line.strip())
        if found:
            outcomes[found.group(1)] = found.group(2)
    counts = {}
    for outcome in outcomes.values():
        counts[outcome.lower()] = counts.get(outcome.lower(), 0) + 1
    summary = [line.strip("= ") for line in log_text.splitlines() if re.match(r"^=+ .*(passed|failed|error)", line)]
    return {"counts": counts, "not_passed": {name: outcome for name, outcome in outcomes.items()
                                             if outcome not in ("PASSED", "SKIPPED")},
            "skipped": sorted(name for name, outcome in outcomes.items() if outcome == "SKIPPED"),
            "summary": summary[-1] if summary else None}


def run_all(args) -> dict:
    out = args.out
    (out / "logs").mkdir(parents=True, exist_ok=True)
    (out / "stages").mkdir(parents=True, exist_ok=True)
    report = {"mode": "simulate" if args.simulate else "gpu",
              "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]), "budget_s": args.budget, "stages": {}}
    started = time.perf_counter()
    pool = True
    wanted = args.only or [name for name, _ in STAGES]
    for name, budget in STAGES:
        if name not in wanted:
            continue
        left = args.budget - (time.perf_counter() - started)
        if left < 10:
            report["stages"][name] = {"status": "not run: the run's budget was spent", "seconds": 0.0}
            _write_reports(report, out)
            continue
        timeout = min(budget * args.budget / TOTAL_BUDGET, left) if not args.simulate else left
        print(f"== {name} (budget {timeout:.0f} s)", flush=True)
        partial = out / "stages" / f"{name}.json"
        partial.unlink(missing_ok=True)
        status, seconds = _run_process(_stage_command(name, out, args.simulate), _environment(args.simulate, pool),
                                       out / "logs" / f"{name}.log", timeout)
        result = json.loads(partial.read_text()) if partial.exists() else {}
        if name == "tests":
            result = tests_result((out / "logs" / f"{name}.log").read_text())
        state = ("ok" if status == 0 else f"timed out after {seconds:.0f} s" if status is None
                 else f"failed (exit status {status})")
        report["stages"][name] = {"status": state, "seconds": round(seconds, 1), "budget_s": round(timeout),
                                  "result": result}
        if name == "device" and result.get("pool", {}).get("ok") is not True:
            pool = False  # the stages after it allocate as numba does by itself
            report["pool_disabled"] = "the caching pool failed its check: later stages ran with NUMCONV_CUDA_POOL=0"
        report["seconds"] = round(time.perf_counter() - started, 1)
        _write_reports(report, out)
        print(f"== {name}: {state}, {seconds:.1f} s", flush=True)
    return report


def _write_reports(report: dict, out: Path) -> None:
    for path, text in ((out / "gpu_check.json", json.dumps(report, indent=2)), (out / "gpu_check.md", render(report))):
        temporary = path.with_suffix(path.suffix + ".partial")
        temporary.write_text(text)
        os.replace(temporary, path)


# --- the report --------------------------------------------------------------------------------------------------


def _number(value, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def targets(report: dict) -> list:
    """(target, met: bool or None when not measured, what was measured), as the issue states them."""
    stages = report["stages"]
    anchors = stages.get("anchors", {}).get("result", {})
    large = [row for row in anchors.get("conv", []) if row.get("large_alexnet")]
    large_ratios = [row["forward"]["ratio"] for row in large if row["forward"].get("ratio") is not None]
    pools = [row["ratio"] for row in anchors.get("pool", []) if row.get("ratio") is not None]
    lenet = stages.get("training", {}).get("result", {}).get("lenet", {})
    spec = stages.get("spec", {}).get("result", {})
    tests = stages.get("tests", {}).get("result", {})
    found = []
    found.append((f"forward convolutions within {LARGE_LAYER_LIMIT:g}x of cuDNN on the large AlexNet layers",
                  max(large_ratios) <= LARGE_LAYER_LIMIT if large_ratios else None,
                  ", ".join(f"{row['name']} {row['forward']['ratio']:.2f}" for row in large
                            if row["forward"].get("ratio") is not None) or "not measured"))
    found.append(("max-pooling faster than PyTorch's", max(pools) < 1.0 if pools else None,
                  ", ".join(f"{row['name']} {row['ratio']:.2f}" for row in anchors.get("pool", [])
                            if row.get("ratio") is not None) or "not measured"))
    epoch_ratio = lenet.get("gpu_over_cpu")
    found.append(("a LeNet-5 epoch faster than on the CPU", None if epoch_ratio is None else epoch_ratio < 1.0,
                  "not measured" if epoch_ratio is None else f"GPU / CPU {epoch_ratio:.2f}"))
    rows, failed = spec.get("rows"), spec.get("failed")
    complete = spec.get("rows") is not None and spec.get("rows") == spec.get("planned")
    found.append(("the whole spec passing on the device", (failed == 0) if complete else None if rows is None
                  else False, "not run" if rows is None else f"{rows} of {spec.get('planned')} rows, {failed} failed"))
    counts = tests.get("counts", {})
    tests_done = report["stages"].get("tests", {}).get("status") == "ok"
    found.append(("the CUDA tests passing on the device",
                  None if not counts else (tests_done and not tests.get("not_passed")),
                  ", ".join(f"{count} {outcome}" for outcome, count in sorted(counts.items())) or "not run"))
    return found


def render(report: dict) -> str:
    simulate = report["mode"] == "simulate"
    lines = ["# numconv GPU check", ""]
    device = report["stages"].get("device", {}).get("result", {})
    lines.append(f"Run {report['started']} (`{report['command']}`), {report.get('seconds', 0):.0f} s of a "
                 f"{report['budget_s']:.0f} s budget, on {device.get('name', 'an unknown device')}.")
    if simulate:
        lines += ["", "**Simulator run (--simulate): tiny shapes on Numba's CUDA simulator. The times and ratios "
                  "below measure nothing about a GPU; the run shows that every stage works.**"]
    if report.get("pool_disabled"):
        lines += ["", f"**{report['pool_disabled']}**"]
    lines += ["", "| stage | status | seconds | budget | kernels compiled | compiling (s) |",
              "|---|---|---|---|---|---|"]
    for name, stage in report["stages"].items():
        compiled = stage.get("result", {}).get("compile", {})
        lines.append(f"| {name} | {stage['status']} | {stage['seconds']} | {stage.get('budget_s', '-')} | "
                     f"{compiled.get('compiled', '-')} | {_number(compiled.get('seconds'), '.1f')} |")
    if not simulate:
        lines += ["", "## Targets", ""]
        for target, met, measured in targets(report):
            mark = "not measured" if met is None else "met" if met else "**missed**"
            lines.append(f"- {target}: {mark} ({measured})")
    lines += _render_device(device) + _render_spec(report) + _render_tests(report) + _render_anchors(report)
    lines += _render_training(report) + _render_profile(report)
    return "\n".join(lines) + "\n"


def _render_device(device: dict) -> list:
    if not device:
        return []
    lines = ["", "## Device", ""]
    for key in ("name", "compute_capability", "memory_gib", "fma_peak_tflops", "driver", "runtime", "numba",
                "numba_cuda", "torch", "cudnn", "cupy", "python"):
        if key in device:
            lines.append(f"- {key}: {device[key]}")
    if "pool" in device:
        lines.append(f"- caching pool: {device['pool']}")
    return lines


def _render_spec(report: dict) -> list:
    spec = report["stages"].get("spec", {}).get("result", {})
    if not spec:
        return []
    lines = ["", "## Spec on the device", "", f"{spec.get('rows')} of {spec.get('planned')} rows checked, "
             f"{spec.get('failed')} failed; worst error bound {_number(spec.get('worst_bound'), '.1e')}."]
    lines += [f"- FAIL {row['kernel']} {row['configuration']}: {row['detail']}" for row in spec.get("failures", [])]
    return lines


def _render_tests(report: dict) -> list:
    tests = report["stages"].get("tests", {}).get("result", {})
    if not tests:
        return []
    lines = ["", "## CUDA tests on the device", "", f"{tests.get('summary') or tests.get('counts')}"]
    lines += [f"- {outcome} {name}" for name, outcome in tests.get("not_passed", {}).items()]
    if tests.get("skipped"):
        lines.append(f"- skipped: {', '.join(tests['skipped'])}")
    return lines


def _render_anchors(report: dict) -> list:
    anchors = report["stages"].get("anchors", {}).get("result", {})
    if not anchors:
        return []
    peer = anchors.get("peer", "PyTorch")
    peak = report["stages"].get("device", {}).get("result", {}).get("fma_peak_tflops")
    lines = ["", "## Anchor suite against " + peer, "",
             f"float32; best of the timed calls ({anchors.get('clock', 'CUDA events')}), ratio = numconv / peer "
             "(below 1: numconv faster); numconv's forward TFLOP/s, and that as a share of the multiply-add peak "
             f"({_number(peak, '.1f')} TFLOP/s).", "",
             "| case | GFLOP | fwd numconv ms | fwd peer ms | fwd ratio | fwd TFLOP/s | of peak | f+b numconv ms | "
             "f+b peer ms | f+b ratio | first call s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in anchors.get("conv", []):
        forward, both = row["forward"], row.get("forward_backward", {})
        tflops = forward.get("numconv_tflops")
        share = tflops / peak if tflops is not None and peak else None
        lines.append(f"| {row['name']} | {row['gflop']:.2f} | {_number(forward.get('numconv_ms'), '.3f')} | "
                     f"{_number(forward.get('peer_ms'), '.3f')} | {_number(forward.get('ratio'))} | "
                     f"{_number(tflops)} | {_number(share, '.1%')} | "
                     f"{_number(both.get('numconv_ms'), '.3f')} | {_number(both.get('peer_ms'), '.3f')} | "
                     f"{_number(both.get('ratio'))} | {_number(row.get('first_call_s'), '.1f')} |")
    lines += _render_launches(anchors.get("conv", []))
    if anchors.get("pool"):
        lines += ["", "| max-pool with indices | numconv ms | peer ms | ratio | numconv GB/s |",
                  "|---|---|---|---|---|"]
        for row in anchors["pool"]:
            lines.append(f"| {row['name']} | {_number(row['numconv_ms'], '.3f')} | {_number(row.get('peer_ms'), '.3f')}"
                         f" | {_number(row.get('ratio'))} | {_number(row.get('numconv_gbs'), '.0f')} |")
    return lines


#: how many forward+backward calls the report takes apart launch by launch: the slowest against the peer
SLOWEST_CALLS = 3


def _render_launches(rows: list) -> list:
    """The launches of the slowest forward+backward calls (by ratio to the peer, else by time), slowest first."""
    measured = [row for row in rows if row.get("launches")]
    slowest = sorted(measured, key=lambda row: -(row["forward_backward"].get("ratio")
                                                 or row["forward_backward"]["numconv_ms"]))[:SLOWEST_CALLS]
    lines = []
    for row in slowest:
        total = sum(launch["ms"] for launch in row["launches"])
        lines += ["", f"{row['name']}, one forward+backward call: {len(row['launches'])} launches, {total:.3f} ms "
                  "between their events", "", "| kernel | grid | block | ms |", "|---|---|---|---|"]
        lines += [f"| {launch['kernel']} | {launch['grid']} | {launch['block']} | {launch['ms']:.3f} |"
                  for launch in row["launches"]]
    return lines


def _render_training(report: dict) -> list:
    training = report["stages"].get("training", {}).get("result", {})
    if "lenet" not in training and "alexnet" not in training:
        return []
    lines = ["", "## Training", ""]
    lenet = training.get("lenet")
    if lenet:
        lines.append(f"- {lenet['network']}, one epoch of {lenet['samples']} samples at batch {lenet['batch']} "
                     f"(kernels compiled beforehand): GPU {lenet['gpu_s']:.2f} s, CPU {lenet['cpu_s']:.2f} s "
                     f"({lenet['cpu_threads']} threads), GPU / CPU {lenet['gpu_over_cpu']:.2f}; final weights: "
                     f"largest difference {lenet['max_weight_difference']:.2e} (relative to the largest weight "
                     f"{lenet['max_relative_difference']:.2e}); test top-1 GPU {lenet['gpu_top1']:.2%}, "
                     f"CPU {lenet['cpu_top1']:.2%}")
    alexnet = training.get("alexnet")
    if alexnet:
        peer = (f"; PyTorch {alexnet['peer_step_ms']:.1f} ms, peak {alexnet['peer_peak_mib']:.0f} MiB, ratio "
                f"{alexnet['ratio']:.2f}" if alexnet.get("peer_step_ms") is not None else "")
        lines.append(f"- {alexnet['network']} training step at batch {alexnet['batch']}: "
                     f"{alexnet['step_ms']:.1f} ms (best of {alexnet['steps']}), pool peak "
                     f"{alexnet['peak_mib']:.0f} MiB, device memory used {alexnet['device_used_mib']:.0f} MiB{peer}")
    return lines


def _render_profile(report: dict) -> list:
    profile = report["stages"].get("profile", {}).get("result", {})
    if "step_ms" not in profile:  # the stage failed before its measurement: its status says so
        return []
    lines = ["", "## Profile of one training step", "",
             f"{profile['network']} at batch {profile['batch']}: a step takes {profile['step_ms']:.2f} ms "
             f"(median of {profile['steps']}); profiled, {profile['profiled_step_ms']:.2f} ms, of which "
             f"{profile['kernel_ms']:.2f} ms in {profile['launches']} kernels; the host spent "
             f"{profile['launch_host_ms']:.2f} ms launching them and {profile['allocation_host_ms']:.2f} ms in "
             f"{profile['allocations']} allocations ({profile['driver_allocations']} from the driver, "
             f"{profile['reuses']} from the pool).", "", "| kernel | launches | ms |", "|---|---|---|"]
    for row in profile.get("kernels", [])[:12]:
        lines.append(f"| {row['kernel']} | {row['launches']} | {row['ms']:.3f} |")
    return lines


# --- the stages, each in its own process ----------------------------------------------------------------------------


class StageReport(dict):
    """A stage's results, written to DIR/stages/NAME.json at every update."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path

    def save(self, **values) -> None:
        self.update(values)
        temporary = self.path.with_suffix(".partial")
        temporary.write_text(json.dumps(self, indent=2, default=str))
        os.replace(temporary, self.path)


@contextlib.contextmanager
def counting_compilations(report: StageReport):
    """Count the kernels numba-cuda compiles (and loads from its disk cache) inside the block, with their seconds."""
    try:
        from numba.cuda.dispatcher import CUDADispatcher
    except ImportError:
        CUDADispatcher = None
    if getattr(CUDADispatcher, "compile", None) is None:  # the simulator compiles nothing
        yield
        report.save(compile={"compiled": 0, "seconds": 0.0, "note": "nothing is compiled under the simulator"})
        return
    tally = {"compiled": 0, "seconds": 0.0, "loaded_from_cache": 0, "loading_seconds": 0.0}
    original = CUDADispatcher.compile

    def compile(self, sig):
        misses, hits = sum(getattr(self, "_cache_misses", {}).values()), sum(getattr(self, "_cache_hits", {}).values())
        started = time.perf_counter()
        try:
            return original(self, sig)
        finally:
            seconds = time.perf_counter() - started
            if sum(getattr(self, "_cache_misses", {}).values()) > misses:
                tally["compiled"] += 1
                tally["seconds"] += seconds
            elif sum(getattr(self, "_cache_hits", {}).values()) > hits:
                tally["loaded_from_cache"] += 1
                tally["loading_seconds"] += seconds

    CUDADispatcher.compile = compile
    try:
        yield
    finally:
        CUDADispatcher.compile = original
        report.save(compile={key: round(value, 2) if isinstance(value, float) else value
                             for key, value in tally.items()})


def _synchronize() -> None:
    from numba import cuda

    cuda.synchronize()


def _torch_cuda():
    """torch, when it can run on this GPU, set to compute in float32 as numconv does; None otherwise (and always
    under the simulator). PyTorch lets cuDNN's convolutions round their operands to TF32 by default (10 bits of
    mantissa, on the tensor cores): an H200 run with that default had cuDNN above the card's float32 peak."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    return torch


def stage_device(report: StageReport, simulate: bool) -> None:
    from numba import cuda

    from numconv import backend

    backend.kernels("cuda")  # installs the caching pool before numba creates its context
    try:
        report.save(pool=_check_pool(simulate))
    except Exception as error:  # reported, and the later stages run without the pool
        report.save(pool={"ok": False, "error": f"{type(error).__name__}: {error}"})
    device = cuda.get_current_device()
    name = getattr(device, "name", b"Numba's CUDA simulator")
    report.save(name=name.decode() if isinstance(name, bytes) else str(name), python=platform.python_version(),
                numba=_version("numba"), numba_cuda=_version("numba-cuda"), torch=_version("torch"),
                cupy=_version("cupy-cuda13x") or _version("cupy-cuda12x"))
    print(f"{report['name']}; numba-cuda {report['numba_cuda']}; caching pool {report['pool']}", flush=True)
    import cuda_fma_peak  # beside this script

    # the ceiling the convolutions are read against, best of three launches after one that compiles; a tiny launch
    # under the simulator proves the kernel runs
    launch, flops = cuda_fma_peak.peak_launch(1, 4, 4) if simulate else cuda_fma_peak.peak_launch()
    best_ms, _, _ = _Timer(simulate, seconds=0.0, most=3).numconv(launch)
    report.save(fma_peak_tflops=flops / best_ms / 1e9)
    print(f"float32 multiply-add peak {report['fma_peak_tflops']:.1f} TFLOP/s", flush=True)
    if simulate:
        return
    from numba.cuda.cudadrv import driver as cuda_driver

    free, total = cuda.current_context().get_memory_info()
    report.save(compute_capability=".".join(map(str, device.compute_capability)), memory_gib=round(total / 2 ** 30, 1),
                driver=".".join(map(str, cuda_driver.driver.get_version())))
    with contextlib.suppress(Exception):  # numba-cuda releases differ in what they expose
        report.save(runtime=".".join(map(str, cuda.runtime.get_version())))
    torch = _torch_cuda()
    if torch is not None:
        report.save(cudnn=torch.backends.cudnn.version(), torch_device=torch.cuda.get_device_name())
    print(f"compute capability {report['compute_capability']}, {report['memory_gib']} GiB, driver "
          f"{report['driver']}", flush=True)


def _check_pool(simulate: bool) -> dict:
    """A convolution three times on the device: through the pool, its blocks are handed out again, and the results
    are the CPU's."""
    import numpy as np

    import numconv.functional as F
    from numconv import backend
    from numconv.kernels.cuda import memory

    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 9, 9)).astype(np.float32), rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    expected = F.conv2d(x, w, padding=1)
    before = memory.statistics()
    agreed = True
    for _ in range(3):
        got = backend.to_host(F.conv2d(backend.to_device(x), backend.to_device(w), padding=1))
        agreed = agreed and bool(np.allclose(got, expected, rtol=1e-5, atol=1e-5))
    after = memory.statistics()
    in_use, reuses = memory.in_use(), after["reuses"] - before["reuses"]
    return {"in_use": in_use, "ok": agreed and (reuses > 0 or not in_use), "results_agree": agreed,
            "reuses": reuses, "driver_allocations": after["driver_allocations"] - before["driver_allocations"],
            "note": "the simulator has no device memory to pool" if simulate else ""}


def _version(package: str):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def stage_spec(report: StageReport, simulate: bool) -> None:
    import numpy as np

    from spec import registry
    from spec.check import check_case

    rows = list(registry.rows(["cuda"], quick=simulate))
    if simulate:
        rows = rows[:6]  # CI runs every row under the simulator in the test suite
    report.save(planned=len(rows), rows=0, failed=0, failures=[], worst_bound=0.0,
                scope="the first quick rows" if simulate else "every row")
    rng = np.random.default_rng(0)
    for number, row in enumerate(rows, 1):
        started = time.perf_counter()
        try:
            result = check_case(row.case(), row.kernel(), rng)
            ok, detail, bound = result.ok, result.detail, result.bound or 0.0
        except Exception as error:  # a kernel that cannot compile or launch fails its row, not the stage
            ok, detail, bound = False, f"{type(error).__name__}: {error}", 0.0
        failures = report["failures"] + ([] if ok else [
            {"kernel": row.kernel_name, "configuration": row.label, "detail": detail}])
        report.save(rows=number, failed=len(failures), failures=failures, worst_bound=max(report["worst_bound"], bound))
        print(f"{row.kernel_name:<26} {row.label:<44} {'ok' if ok else 'FAIL'} "
              f"{time.perf_counter() - started:.2f} s", flush=True)


def _tiny_cases():
    from benchmarks import anchors

    conv = (anchors.ConvCase("tiny_c2", 2, 2, 2, (6, 6), 3, 3, 1, 1),
            anchors.ConvCase("tiny_alex_g2", 2, 1, 4, (5, 5), 4, 3, 1, 1, 2),
            anchors.ConvCase("tiny_c1", 1, 2, 2, (9,), 3, 3, 2))
    pool = (anchors.PoolCase("tiny_pool", 2, 1, 2, (6, 6), 2, 2),)
    return conv, pool


def _event_ms(synchronize, new_event, function) -> float:
    """Milliseconds between CUDA events recorded around ``function()``, after a synchronise (numba's events or
    torch's: both record on the default stream)."""
    synchronize()
    start, end = new_event(), new_event()
    start.record()
    function()
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


class _Timer:
    """Times calls on the device: CUDA events around each call, a synchronise before it and after it (host clocks
    under the simulator, whose events do not time)."""

    def __init__(self, simulate: bool, seconds: float, most: int):
        self.simulate, self.seconds, self.most = simulate, seconds, most

    def numconv(self, function) -> tuple:
        from numba import cuda

        if self.simulate:
            def once():
                _synchronize()
                started = time.perf_counter()
                function()
                return (time.perf_counter() - started) * 1e3

            return self._repeat(once, function)
        return self._repeat(lambda: _event_ms(cuda.synchronize, cuda.event, function), function)

    def torch(self, torch, function) -> tuple:
        return self._repeat(lambda: _event_ms(torch.cuda.synchronize,
                                              lambda: torch.cuda.Event(enable_timing=True), function), function)

    def _repeat(self, once, function) -> tuple:
        """(best ms, median ms, seconds of the first call: compilation included)."""
        started = time.perf_counter()
        function()
        first = time.perf_counter() - started
        times = []
        deadline = time.perf_counter() + self.seconds
        while len(times) < self.most and (len(times) < 3 or time.perf_counter() < deadline):
            times.append(once())
        return min(times), statistics.median(times), first


def _launches(function) -> list:
    """The kernels that one call of ``function`` (called before: compiled, its memory pooled) launches, in order:
    name, grid, block and milliseconds (CUDA events around each; host clocks under the simulator)."""
    from numconv.kernels.cuda import support

    _synchronize()
    with support.recording_launches() as records:
        function()
        _synchronize()
    return [{"kernel": record.kernel, "grid": str(record.grid), "block": str(record.block),
             "ms": record.host_seconds * 1e3 if record.start is None else record.start.elapsed_time(record.end)}
            for record in records]


def stage_anchors(report: StageReport, simulate: bool) -> None:
    from benchmarks import anchors

    torch = None if simulate else _torch_cuda()
    if torch is not None:
        torch.backends.cudnn.benchmark = True  # the peer at its best: cuDNN picks its fastest algorithm per shape
    conv_cases, pool_cases = _tiny_cases() if simulate else (anchors.CONV_CASES, anchors.POOL_CASES)
    timer = _Timer(simulate, seconds=0.05 if simulate else 0.25, most=3 if simulate else 50)
    peer = ("PyTorch (cuDNN, float32 with TF32 off)" if torch is not None
            else "no peer" + (" under the simulator" if simulate else ": torch cannot use this GPU"))
    report.save(peer=peer, clock="host clocks (the simulator)" if simulate else "CUDA events", conv=[], pool=[])
    for case in conv_cases:
        row = {"name": case.name, "gflop": case.flops / 1e9,
               "large_alexnet": case.name.startswith("alex") and case.large}
        for mode, backward, factor in (("forward", False, 1.0), ("forward_backward", True, 3.0)):
            call = anchors.numconv_conv(case, backward, device="cuda")
            best, median, first = timer.numconv(call)
            entry = {"numconv_ms": best, "numconv_median_ms": median,
                     "numconv_tflops": factor * case.flops / best / 1e9}
            if mode == "forward":
                row["first_call_s"] = first
            if torch is not None:
                peer_best, peer_median, _ = timer.torch(torch, anchors.torch_conv(case, backward, device="cuda"))
                entry.update(peer_ms=peer_best, peer_median_ms=peer_median, ratio=best / peer_best)
            row[mode] = entry
        row["launches"] = _launches(call)  # the forward+backward call just timed
        report.save(conv=report["conv"] + [row])
        print(f"{case.name}: forward {row['forward']['numconv_ms']:.3f} ms ratio "
              f"{_number(row['forward'].get('ratio'))}, forward+backward ratio "
              f"{_number(row['forward_backward'].get('ratio'))}", flush=True)
    for case in pool_cases:
        best, median, first = timer.numconv(anchors.numconv_pool(case, device="cuda"))
        row = {"name": case.name, "numconv_ms": best, "numconv_median_ms": median, "first_call_s": first,
               "numconv_gbs": case.bytes / best / 1e6}
        if torch is not None:
            peer_best, peer_median, _ = timer.torch(torch, anchors.torch_pool(case, device="cuda"))
            row.update(peer_ms=peer_best, peer_median_ms=peer_median, ratio=best / peer_best)
        report.save(pool=report["pool"] + [row])
        print(f"{case.name}: {best:.3f} ms ratio {_number(row.get('ratio'))}", flush=True)


def _tiny_lenet(seed: int):
    """LeNet-5's kinds of layer in its order, for 8x8 images: what --simulate trains instead of LeNet-5."""
    import numpy as np

    from numconv import layers

    rng = np.random.default_rng(seed)
    return layers.Sequential(
        layers.Conv2d(1, 2, 3, padding=1, rng=rng), layers.ReLU(), layers.MaxPool2d(2),
        layers.Conv2d(2, 3, 3, rng=rng), layers.ReLU(), layers.MaxPool2d(2), layers.Flatten(),
        layers.Linear(3, 5, rng=rng), layers.ReLU(), layers.Linear(5, 4, rng=rng), layers.ReLU(),
        layers.Linear(4, 3, rng=rng),
    )


def _tiny_columns(seed: int):
    """AlexNet's kinds of layer (grouped convolutions, response normalisation per column, overlapping pooling,
    dropout) for 9x9 images: what --simulate steps instead of AlexNet."""
    import numpy as np

    from numconv import layers

    rng = np.random.default_rng(seed)
    return layers.Sequential(
        layers.Conv2d(3, 4, 3, rng=rng), layers.ReLU(), layers.LocalResponseNorm(3, groups=2),
        layers.MaxPool2d(3, 2), layers.Conv2d(4, 4, 3, padding=1, groups=2, rng=rng), layers.ReLU(),
        layers.Flatten(), layers.Dropout(0.5, rng=np.random.default_rng(seed + 1)), layers.Linear(36, 5, rng=rng),
    )


def _training_data(simulate: bool):
    import numpy as np

    from numconv import data

    if not simulate:
        return data.load("mnist")
    rng = np.random.default_rng(0)
    images = rng.standard_normal((16, 1, 8, 8)).astype(np.float32)
    labels = rng.integers(0, 3, 16)
    return data.Dataset(images, labels, 3, "tiny/train"), data.Dataset(images[:8], labels[:8], 3, "tiny/test")


def _epoch(model, train_set, test_set, batch: int) -> tuple:
    """One epoch of SGD with momentum; (seconds, history)."""
    from numconv import optim
    from numconv.train import fit

    optimizer = optim.SGD(model, lr=0.01, momentum=0.9, weight_decay=5e-4)
    started = time.perf_counter()
    history = fit(model, train_set, test_set, epochs=1, batch_size=batch, optimizer=optimizer, seed=0,
                  progress=False)
    return time.perf_counter() - started, history


def stage_training(report: StageReport, simulate: bool) -> None:
    import numba
    import numpy as np

    from numconv import data, models

    build = (lambda: _tiny_lenet(0)) if simulate else (lambda: models.lenet5(rng=0))
    train_set, test_set = _training_data(simulate)
    batch = 8 if simulate else 64
    # compile every kernel an epoch uses (training and evaluation) on a few batches first, on both backends
    warm_rows = 2 * batch
    warm = data.Dataset(train_set.inputs[:warm_rows], train_set.targets[:warm_rows], train_set.num_classes, "warm")
    for device in ("cpu", "cuda"):
        _epoch(build().to(device), warm, warm, batch)
    cpu_model, gpu_model = build(), build().to("cuda")
    cpu_s, cpu_history = _epoch(cpu_model, train_set, test_set, batch)
    gpu_s, gpu_history = _epoch(gpu_model, train_set, test_set, batch)
    cpu_state, gpu_state = cpu_model.state_dict(), gpu_model.state_dict()
    difference = max(float(np.max(np.abs(gpu_state[key] - value))) for key, value in cpu_state.items())
    largest = max(float(np.max(np.abs(value))) for value in cpu_state.values())
    report.save(lenet={"network": "a LeNet-5-like network on 8x8 images" if simulate else "LeNet-5 on MNIST's subset",
                       "samples": len(train_set), "batch": batch, "gpu_s": gpu_s, "cpu_s": cpu_s,
                       "cpu_threads": numba.get_num_threads(), "gpu_over_cpu": gpu_s / cpu_s,
                       "max_weight_difference": difference, "max_relative_difference": difference / largest,
                       "gpu_top1": gpu_history[-1]["test_top1"], "cpu_top1": cpu_history[-1]["test_top1"],
                       "gpu_loss": gpu_history[-1]["train_loss"], "cpu_loss": cpu_history[-1]["train_loss"]})
    print(f"LeNet-5 epoch: GPU {gpu_s:.2f} s, CPU {cpu_s:.2f} s; weights differ by {difference:.2e}", flush=True)
    report.save(alexnet=_alexnet_step(simulate))


def _alexnet_step(simulate: bool) -> dict:
    import numpy as np
    from numba import cuda

    from numconv import backend, models, optim
    from numconv.kernels.cuda import memory
    from numconv.train import step

    batch, size, classes, steps = (2, 9, 5, 1) if simulate else (128, 227, 1000, 3)
    model = (_tiny_columns(0) if simulate else models.alexnet(rng=0)).to("cuda")
    optimizer = optim.SGD(model, lr=0.01, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((batch, 3, size, size), dtype=np.float32)
    labels = rng.integers(0, classes, batch)
    inputs, targets = backend.to_device(images), backend.to_device(labels)
    step(model, optimizer, inputs, targets, batch)  # compiles
    _synchronize()
    memory.reset_peak()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        step(model, optimizer, inputs, targets, batch)
        _synchronize()
        times.append(time.perf_counter() - started)
    free, total = (0, 0) if simulate else cuda.current_context().get_memory_info()
    result = {"network": "a column network on 9x9 images" if simulate else "AlexNet (227x227, 1000 classes)",
              "batch": batch, "steps": steps, "step_ms": min(times) * 1e3,
              "peak_mib": memory.statistics()["peak_bytes_in_use"] / 2 ** 20,
              "device_used_mib": (total - free) / 2 ** 20}
    torch = None if simulate else _torch_cuda()
    if torch is not None:
        from benchmarks import anchors

        del model, optimizer, inputs, targets
        net = anchors.torch_alexnet(0).cuda()
        peer_optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        peer_images, peer_labels = torch.from_numpy(images).cuda(), torch.from_numpy(labels).cuda()

        def peer_step():
            peer_optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(peer_images), peer_labels).backward()
            peer_optimizer.step()

        peer_step()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        peer_times = []
        for _ in range(steps):
            started = time.perf_counter()
            peer_step()
            torch.cuda.synchronize()
            peer_times.append(time.perf_counter() - started)
        result.update(peer_step_ms=min(peer_times) * 1e3, peer_peak_mib=torch.cuda.max_memory_allocated() / 2 ** 20,
                      ratio=min(times) / min(peer_times))
    print(f"{result['network']} step at batch {batch}: {result['step_ms']:.1f} ms", flush=True)
    return result


@contextlib.contextmanager
def _timed_allocations(into: list):
    """Time every device allocation numconv makes inside the block (``numba.cuda.device_array`` and ``to_device``)."""
    from numba import cuda

    originals = {name: getattr(cuda, name) for name in ("device_array", "to_device")}

    def timed(allocate):
        def allocation(*args, **kwargs):
            started = time.perf_counter()
            try:
                return allocate(*args, **kwargs)
            finally:
                into.append(time.perf_counter() - started)
        return allocation

    for name, original in originals.items():
        setattr(cuda, name, timed(original))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(cuda, name, original)


def stage_profile(report: StageReport, simulate: bool) -> None:
    import numpy as np

    from numconv import backend, models, optim
    from numconv.kernels.cuda import memory, support
    from numconv.train import step

    batch = 4 if simulate else 64
    model = (_tiny_lenet(0) if simulate else models.lenet5(rng=0)).to("cuda")
    optimizer = optim.SGD(model, lr=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    size = 8 if simulate else 28
    inputs = backend.to_device(rng.standard_normal((batch, 1, size, size), dtype=np.float32))
    targets = backend.to_device(rng.integers(0, 3 if simulate else 10, batch))
    for _ in range(3):  # compiles, and fills the pool
        step(model, optimizer, inputs, targets, batch)
    _synchronize()
    times = []
    for _ in range(2 if simulate else 30):
        started = time.perf_counter()
        step(model, optimizer, inputs, targets, batch)
        _synchronize()
        times.append(time.perf_counter() - started)
    allocations = []
    before = memory.statistics()
    started = time.perf_counter()
    with support.recording_launches() as launches, _timed_allocations(allocations):
        step(model, optimizer, inputs, targets, batch)
        _synchronize()
    profiled = time.perf_counter() - started
    after = memory.statistics()
    per_kernel = {}
    for record in launches:
        ms = record.host_seconds * 1e3 if record.start is None else record.start.elapsed_time(record.end)
        count, total = per_kernel.get(record.kernel, (0, 0.0))
        per_kernel[record.kernel] = (count + 1, total + ms)
    kernels = sorted(({"kernel": name, "launches": count, "ms": ms} for name, (count, ms) in per_kernel.items()),
                     key=lambda row: -row["ms"])
    report.save(network="a LeNet-5-like network on 8x8 images" if simulate else "LeNet-5", batch=batch,
                steps=len(times), step_ms=statistics.median(times) * 1e3, profiled_step_ms=profiled * 1e3,
                kernel_ms=sum(row["ms"] for row in kernels), launches=len(launches),
                launch_host_ms=sum(record.host_seconds for record in launches) * 1e3,
                allocations=len(allocations), allocation_host_ms=sum(allocations) * 1e3,
                driver_allocations=after["driver_allocations"] - before["driver_allocations"],
                reuses=after["reuses"] - before["reuses"], pool_in_use=memory.in_use(), kernels=kernels,
                kernel_time_from="host clocks (the simulator)" if simulate else "CUDA events")
    print(f"step {statistics.median(times) * 1e3:.2f} ms, kernels {report['kernel_ms']:.2f} ms in "
          f"{len(launches)} launches", flush=True)


STAGE_FUNCTIONS = {"device": stage_device, "spec": stage_spec, "anchors": stage_anchors, "training": stage_training,
                   "profile": stage_profile}


def run_stage(name: str, out: Path, simulate: bool) -> int:
    report = StageReport(out / "stages" / f"{name}.json")
    with counting_compilations(report):
        STAGE_FUNCTIONS[name](report, simulate)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="where gpu_check.json, gpu_check.md and logs/ go")
    parser.add_argument("--simulate", action="store_true", help="under Numba's CUDA simulator, with tiny shapes")
    parser.add_argument("--budget", type=float, default=TOTAL_BUDGET,
                        help=f"seconds for the whole run, shared by the stages in proportion (default {TOTAL_BUDGET})")
    parser.add_argument("--only", nargs="+", choices=[name for name, _ in STAGES], help="run only these stages")
    parser.add_argument("--stage", choices=sorted(STAGE_FUNCTIONS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not math.isfinite(args.budget) or args.budget <= 0:
        parser.error(f"--budget must be a positive number of seconds, got {args.budget}")
    if args.stage:
        return run_stage(args.stage, args.out, args.simulate)
    report = run_all(args)
    print(f"wrote {args.out / 'gpu_check.md'} and {args.out / 'gpu_check.json'}", flush=True)
    return 0 if all(stage["status"] == "ok" for stage in report["stages"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
