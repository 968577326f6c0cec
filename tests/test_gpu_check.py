"""scripts/gpu_check.py: the whole run under the simulator (--simulate), as it will run on a GPU, and the pieces a
GPU run depends on when something goes wrong there: a stage cut off at its budget, pytest's output cut short, and
the targets read from a report."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.py"

pytest.importorskip("numba.cuda")


def _script_module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_check = _script_module()


@pytest.fixture(scope="module")
def simulated_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    run = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--simulate", "--budget", "500"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    return run, out


def test_the_simulated_run_finishes_every_stage_and_reports_it(simulated_run):
    run, out = simulated_run
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["mode"] == "simulate"
    assert list(report["stages"]) == [name for name, _ in gpu_check.STAGES]
    assert {stage["status"] for stage in report["stages"].values()} == {"ok"}
    for name in report["stages"]:
        assert (out / "logs" / f"{name}.log").stat().st_size > 0
    markdown = (out / "gpu_check.md").read_text()
    assert "measure nothing about a GPU" in markdown and "## Targets" not in markdown


def test_the_simulated_run_checks_the_spec_and_runs_the_tests(simulated_run):
    _, out = simulated_run
    stages = json.loads((out / "gpu_check.json").read_text())["stages"]
    spec = stages["spec"]["result"]
    assert spec["rows"] == spec["planned"] == 6 and spec["failed"] == 0
    tests = stages["tests"]["result"]
    assert tests["counts"] == {"passed": 3} and not tests["not_passed"]


def test_the_simulated_run_measures_and_compares(simulated_run):
    _, out = simulated_run
    stages = json.loads((out / "gpu_check.json").read_text())["stages"]
    anchors = stages["anchors"]["result"]
    assert [row["name"] for row in anchors["conv"]] == ["tiny_c2", "tiny_alex_g2", "tiny_c1"]
    assert all(row[mode]["numconv_ms"] > 0 for row in anchors["conv"] for mode in ("forward", "forward_backward"))
    for row in anchors["conv"]:  # taken apart: the forward's, the input gradient's and the weight gradient's products
        gemms = [launch for launch in row["launches"] if launch["kernel"].endswith("gemm")]
        assert len(gemms) >= 3 and all(launch["ms"] > 0 and launch["grid"] and launch["block"] for launch in gemms)
    assert (out / "gpu_check.md").read_text().count("one forward+backward call:") == gpu_check.SLOWEST_CALLS
    assert stages["device"]["result"]["fma_peak_tflops"] > 0
    training = stages["training"]["result"]
    # the same seed on both backends: the epoch ends at the same weights, up to float32 rounding
    assert training["lenet"]["max_relative_difference"] < 1e-5
    assert training["lenet"]["gpu_top1"] == training["lenet"]["cpu_top1"]
    assert training["alexnet"]["step_ms"] > 0
    profile = stages["profile"]["result"]
    # every op's output is allocated and every layer launches kernels: tens of each in a step
    assert profile["launches"] > 20 and profile["allocations"] > 20
    assert sum(row["launches"] for row in profile["kernels"]) == profile["launches"]
    assert 0 < profile["kernel_ms"] <= profile["profiled_step_ms"]


def test_a_stage_past_its_budget_is_stopped_and_keeps_its_output(tmp_path):
    log = tmp_path / "stage.log"
    command = [sys.executable, "-c", "import time; print('first item done', flush=True); time.sleep(60)"]
    status, seconds = gpu_check._run_process(command, {}, log, timeout=3)
    assert status is None and seconds < 30
    assert "first item done" in log.read_text()


def test_pytest_output_cut_short_still_counts_what_ran():
    log = ("tests/test_cuda.py::test_a PASSED [ 10%]\n"
           "tests/test_cuda.py::test_b[float32] FAILED [ 20%]\n"
           "tests/test_cuda.py::test_c SKIPPED (needs the simulator) [ 30%]\n"
           "tests/test_cuda.py::test_d PASSED [ 40%]\n"
           "tests/test_cuda.py::test_e[avg_pool_backward-2D N1 C1 in 5x6 k3x3 s1x1 p1x1] PASSED [ 50%]\n")
    result = gpu_check.tests_result(log)
    assert result["counts"] == {"passed": 3, "failed": 1, "skipped": 1}
    assert result["not_passed"] == {"tests/test_cuda.py::test_b[float32]": "FAILED"}
    assert result["summary"] is None  # no closing line: the run was cut off


def test_the_targets_are_read_from_the_report():
    report = {"stages": {
        "anchors": {"status": "ok", "result": {
            "conv": [{"name": "alex_c3", "large_alexnet": True, "forward": {"ratio": 1.5}},
                     {"name": "alex_c4_g2", "large_alexnet": True, "forward": {"ratio": 2.5}},
                     {"name": "lenet_c1", "large_alexnet": False, "forward": {"ratio": 9.0}}],
            "pool": [{"name": "pool_alex", "ratio": 0.5}, {"name": "pool_audio", "ratio": 0.9}]}},
        "training": {"status": "ok", "result": {"lenet": {"gpu_over_cpu": 1.2}}},
        "spec": {"status": "ok", "result": {"rows": 101, "planned": 101, "failed": 0}},
        "tests": {"status": "timed out after 130 s", "result": {"counts": {"passed": 40}, "not_passed": {}}},
    }}
    convolutions, pooling, epoch, spec, tests = gpu_check.targets(report)
    assert convolutions[1:] == (False, "alex_c3 1.50, alex_c4_g2 2.50")
    assert pooling[1:] == (True, "pool_alex 0.50, pool_audio 0.90")
    assert epoch[1:] == (False, "GPU / CPU 1.20")
    assert spec[1] is True
    assert tests[1] is False  # cut off before the end: not known to pass


def test_a_spec_row_whose_kernel_raises_fails_that_row_and_the_stage_goes_on(tmp_path, monkeypatch):
    import spec.check

    calls = []

    def check_case(case, kernel, rng):  # the first row's kernel cannot launch; the others pass
        calls.append(kernel)
        if len(calls) == 1:
            raise AttributeError("module 'numpy' has no attribute 'row_stack'")
        return _Passed()

    monkeypatch.setattr(spec.check, "check_case", check_case)
    report = gpu_check.StageReport(tmp_path / "spec.json")
    gpu_check.stage_spec(report, simulate=True)
    assert report["rows"] == report["planned"] == len(calls) == 6
    assert report["failed"] == 1
    assert report["failures"][0]["detail"] == "AttributeError: module 'numpy' has no attribute 'row_stack'"
    assert json.loads((tmp_path / "spec.json").read_text())["failed"] == 1


class _Passed:
    ok, detail, bound = True, "", 1e-6


def test_a_stage_that_failed_before_measuring_is_reported_by_its_status_alone():
    report = {"mode": "gpu", "started": "2026-01-01T00:00:00+00:00", "command": "gpu_check.py", "budget_s": 450,
              "stages": {name: {"status": "failed (exit status 1)", "seconds": 5.0, "budget_s": 60,
                                "result": {"compile": {"compiled": 0, "seconds": 0.0}}}
                         for name in ("training", "profile")}}
    text = gpu_check.render(report)
    assert "| profile | failed (exit status 1) | 5.0 | 60 | 0 | 0.0 |" in text
    assert "## Profile" not in text and "## Training" not in text


def test_the_peer_computes_in_float32_not_tf32(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    # PyTorch's flags (set through its C module, which monkeypatch cannot restore): TF32 allowed in both
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        assert gpu_check._torch_cuda() is torch
        assert torch.backends.cudnn.allow_tf32 is False and torch.backends.cuda.matmul.allow_tf32 is False
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before
