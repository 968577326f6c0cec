"""The numconv command: train (with its files), resume, evaluate, summary, explain, and its errors."""
import ctypes.util
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from numconv import cli, train

ROOT = Path(__file__).resolve().parents[1]


def _png_size(path: Path) -> tuple:
    payload = path.read_bytes()
    assert payload[:8] == b"\x89PNG\r\n\x1a\n"
    length = int.from_bytes(payload[8:12], "big")
    assert payload[12:16] == b"IHDR"
    assert zlib.crc32(payload[12:16 + length]) == int.from_bytes(payload[16 + length:20 + length], "big")
    return int.from_bytes(payload[16:20], "big"), int.from_bytes(payload[20:24], "big")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One epoch of the default recipe (LeNet-5 on the embedded MNIST subset)."""
    out = tmp_path_factory.mktemp("run")
    assert cli.main(["train", "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    return out


def test_train_writes_metrics_checkpoint_and_pictures(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert len(metrics) == 1
    assert set(metrics[0]) >= {"epoch", "train_loss", "test_loss", "test_top1", "test_top5", "seconds"}
    # one epoch of LeNet-5 on 4,000 digits is far above chance (10%)
    assert metrics[0]["test_top1"] > 0.8 and metrics[0]["test_top5"] >= metrics[0]["test_top1"]
    width, height = _png_size(trained / "filters.png")
    assert width >= 200 and height > 0
    assert _png_size(trained / "curves.png")[0] > 0
    assert (trained / "checkpoint.npz").stat().st_size > 61706 * 4


def test_resume_continues_the_run(trained, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("checkpoint.npz", "metrics.json"):
        (copy / name).write_bytes((trained / name).read_bytes())
    assert cli.main(["train", "--epochs", "2", "--out", str(copy), "--resume", "--quiet"]) == 0
    metrics = json.loads((copy / "metrics.json").read_text())
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert metrics[0] == json.loads((trained / "metrics.json").read_text())[0]


def test_resume_of_another_model_is_refused(trained, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "checkpoint.npz").write_bytes((trained / "checkpoint.npz").read_bytes())
    with pytest.raises(SystemExit, match="another run"):
        cli.main(["train", "--epochs", "2", "--out", str(copy), "--resume", "--quiet", "--seed", "5"])


def test_evaluate_reports_the_checkpoint_accuracy(trained, capsys):
    assert cli.main(["evaluate", "--out", str(trained)]) == 0
    scores = json.loads(capsys.readouterr().out)
    expected = json.loads((trained / "metrics.json").read_text())[-1]
    assert scores["model"] == "lenet5"
    assert scores["top1"] == pytest.approx(expected["test_top1"])
    assert scores["loss"] == pytest.approx(expected["test_loss"], rel=1e-5)


def test_summary_prints_alexnet_table(capsys):
    assert cli.main(["summary", "alexnet"]) == 0
    text = capsys.readouterr().out
    assert "(96, 55, 55)" in text and "60,965,224" in text and "(256, 6, 6)" in text


def test_explain_prints_the_essay_equations(capsys):
    assert cli.main(["explain", "conv1d", "--input", "3", "--kernel", "2"]) == 0
    assert capsys.readouterr().out.splitlines() == ["y_0 = A(x_0, x_1)", "y_1 = A(x_1, x_2)"]


def test_missing_data_directory_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="does-not-exist"):
        cli.main(["train", "--data", f"idx:{tmp_path / 'does-not-exist'}", "--out", str(tmp_path), "--quiet"])


def test_model_that_cannot_take_the_data_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="m5"):
        cli.main(["train", "--model", "m5", "--data", "mnist", "--out", str(tmp_path), "--quiet"])
    with pytest.raises(SystemExit, match="alexnet cannot take inputs of shape"):
        cli.main(["train", "--model", "alexnet", "--data", "mnist", "--out", str(tmp_path), "--quiet"])


def test_float64_run_keeps_its_precision_through_checkpoint_and_evaluate(tmp_path, capsys):
    assert cli.main(["train", "--epochs", "1", "--dtype", "float64", "--out", str(tmp_path), "--quiet"]) == 0
    state = train.load_checkpoint(tmp_path / "checkpoint.npz")
    assert {value.dtype for value in state["model"].values()} == {np.dtype(np.float64)}
    assert state["meta"]["dtype"] == "float64"
    assert cli.main(["evaluate", "--out", str(tmp_path)]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert scores["loss"] == pytest.approx(metrics[0]["test_loss"], rel=1e-12)
    with pytest.raises(SystemExit, match="another run"):  # a float32 run does not resume a float64 checkpoint
        cli.main(["train", "--epochs", "2", "--resume", "--out", str(tmp_path), "--quiet"])


def test_unknown_model_exits_with_usage_error(capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["train", "--model", "vgg16"])
    assert stopped.value.code == 2
    assert "vgg16" in capsys.readouterr().err


@pytest.mark.skipif(ctypes.util.find_library("cuda") is not None,
                    reason="a CUDA driver is installed here: --device cuda would train rather than fail")
def test_device_cuda_without_a_gpu_fails_at_once(tmp_path):
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0", PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-m", "numconv", "train", "--device", "cuda", "--out", str(tmp_path)],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode != 0
    assert "GPU" in result.stderr
    assert not (tmp_path / "checkpoint.npz").exists()


def test_train_on_the_synthetic_speech_set_with_m5(tmp_path, monkeypatch):
    from numconv import data

    full_speech = data.speech
    monkeypatch.setattr(data, "speech", lambda seed=0: full_speech(n_train=64, n_test=32, length=1200, seed=seed))
    assert cli.main(["train", "--model", "m5", "--epochs", "1", "--out", str(tmp_path), "--quiet"]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert np.isfinite(metrics[0]["train_loss"])
    assert _png_size(tmp_path / "filters.png")[0] >= 200
