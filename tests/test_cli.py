"""The numconv command: train (with its files), resume, evaluate, summary, explain, and its errors."""
import ctypes.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest
from matplotlib import image as mpimg

from numconv import cli, distributed, train
from numconv.kernels.cpu import launch, tuning

ROOT = Path(__file__).resolve().parents[1]


def _png_size(path: Path) -> tuple:
    """(width, height) of a PNG, read back through matplotlib."""
    height, width = mpimg.imread(path).shape[:2]
    return width, height


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


def test_resume_of_another_model_is_refused(trained, tmp_path, capsys):
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "checkpoint.npz").write_bytes((trained / "checkpoint.npz").read_bytes())
    _assert_flag_error(capsys, ["train", "--epochs", "2", "--out", str(copy), "--resume", "--quiet", "--seed", "5"],
                       "--resume", "another run")


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


def _assert_flag_error(capsys, argv, flag, *words):
    """``numconv argv`` stops with status 2 and one line that names ``flag`` and holds ``words``."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        cli.main(argv)
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1, error
    assert f"argument {flag}" in error and "Traceback" not in error, error
    for word in words:
        assert word in error, error


BAD_FLAGS = [
    (["train", "--lr", "nan"], "--lr", "'nan'"),
    (["train", "--lr", "inf"], "--lr", "'inf'"),
    (["train", "--lr", "-0.1"], "--lr", "'-0.1'"),
    (["train", "--lr", "0"], "--lr", "'0'"),
    (["train", "--lr", "fast"], "--lr", "'fast'"),
    (["train", "--momentum", "-1"], "--momentum", "'-1'"),
    (["train", "--weight-decay", "nan"], "--weight-decay", "'nan'"),
    (["train", "--epochs", "0"], "--epochs", "'0'"),
    (["train", "--epochs", "1.5"], "--epochs", "'1.5'"),
    (["train", "--batch-size", "-4"], "--batch-size", "'-4'"),
    (["train", "--seed", "-1"], "--seed", "'-1'"),
    (["train", "--columns", "0"], "--columns", "'0'"),
    (["train", "--columns", "2"], "--columns", "2 columns need 2 MPI processes"),
    (["train", "--model", "vgg16"], "--model", "'vgg16'"),
    (["train", "--dtype", "float16"], "--dtype", "'float16'"),
    (["train", "--device", "tpu"], "--device", "'tpu'"),
    (["train", "--data", "imagenet"], "--data", "'imagenet'"),
    (["train", "--data", "shapes:x"], "--data", "'shapes:x'"),
    (["train", "--data", "idx:/does/not/exist"], "--data", "/does/not/exist"),
    (["train", "--model", "m5", "--data", "mnist"], "--data", "m5 cannot take inputs of shape"),
    (["train", "--model", "alexnet", "--data", "mnist"], "--data", "alexnet cannot take inputs of shape"),
    (["summary", "alexnet", "--input", "3x20x20"], "--input", "alexnet cannot take input 3x20x20"),
    (["summary", "alexnet", "--input", "big"], "--input", "'big'"),
    (["explain", "conv2d", "--input", "3x3", "--kernel", "4"], "--kernel", "4"),
]


@pytest.mark.parametrize("argv,flag,word", BAD_FLAGS, ids=[" ".join(argv) for argv, _, _ in BAD_FLAGS])
def test_a_bad_flag_is_one_line_naming_it_and_status_2(argv, flag, word, tmp_path, capsys):
    if argv[0] == "train":
        argv = argv + ["--out", str(tmp_path / "run"), "--quiet"]
    if argv[0] == "explain":  # the equations' own parser, with the same one-line errors
        capsys.readouterr()
        with pytest.raises(SystemExit) as stopped:
            cli.main(argv)
        error = capsys.readouterr().err
        assert stopped.value.code == 2 and len(error.strip().splitlines()) == 1 and word in error, error
        return
    _assert_flag_error(capsys, argv, flag, word)


def test_bad_output_and_checkpoint_paths_name_their_flag(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("not a directory")
    _assert_flag_error(capsys, ["train", "--out", str(a_file)], "--out", str(a_file))
    empty = tmp_path / "empty"
    empty.mkdir()
    _assert_flag_error(capsys, ["train", "--resume", "--out", str(empty), "--quiet"], "--resume", str(empty))
    _assert_flag_error(capsys, ["evaluate", "--out", str(empty)], "--out", str(empty))


def test_float64_run_keeps_its_precision_through_checkpoint_and_evaluate(tmp_path, capsys):
    assert cli.main(["train", "--epochs", "1", "--dtype", "float64", "--out", str(tmp_path), "--quiet"]) == 0
    state = train.load_checkpoint(tmp_path / "checkpoint.npz")
    assert {value.dtype for value in state["model"].values()} == {np.dtype(np.float64)}
    assert state["meta"]["dtype"] == "float64"
    assert cli.main(["evaluate", "--out", str(tmp_path)]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert scores["loss"] == pytest.approx(metrics[0]["test_loss"], rel=1e-12)
    # a float32 run does not resume a float64 checkpoint
    _assert_flag_error(capsys, ["train", "--epochs", "2", "--resume", "--out", str(tmp_path), "--quiet"], "--resume",
                       "another run")


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
    """A first run would compile ahead for the run's own batch sizes: its training batch, and an evaluation batch
    that the 32 test clips cut from 256."""
    from numconv import data

    full_speech = data.speech
    monkeypatch.setattr(data, "speech", lambda seed=0: full_speech(n_train=64, n_test=32, length=1200, seed=seed))
    asked, compile_ahead = [], launch.compile_ahead
    monkeypatch.setattr(launch, "compile_ahead", lambda *args: asked.append(args) or compile_ahead(*args))
    assert cli.main(["train", "--model", "m5", "--epochs", "1", "--batch-size", "16", "--out", str(tmp_path),
                     "--quiet"]) == 0
    assert asked == [("float32", "m5", 16, 32)]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert np.isfinite(metrics[0]["train_loss"])
    assert _png_size(tmp_path / "filters.png")[0] >= 200


def _fresh_kernel(module: str):
    """A new Numba function that claims to live in ``module``: its first call compiles."""
    def double(x):
        return 2 * x

    double.__module__ = module
    return numba.njit(double)


def test_a_first_run_says_once_that_kernels_compile(monkeypatch):
    monkeypatch.setattr(launch, "compile_ahead", lambda dtype, model, batch, evaluation_batch: 0)
    said = []
    with cli._first_run_kernels("cpu", "float32", distributed.World(), said.append):
        _fresh_kernel("somebody.else")(1)
        assert said == []  # another library's compilation is not numconv's
        _fresh_kernel("numconv.kernels.cpu.fresh")(1)
        _fresh_kernel("numconv.kernels.cpu.fresh")(2.0)
    assert said == [cli.COMPILING]
    _fresh_kernel("numconv.kernels.cpu.fresh")(3)  # the run is over: its notice stays quiet
    assert said == [cli.COMPILING]
    compiled = _fresh_kernel("numconv.kernels.cpu.fresh")
    compiled(1)
    quiet = []
    with cli._first_run_kernels("cpu", "float32", distributed.World(), quiet.append):
        compiled(2)  # nothing to compile, nothing said
    assert quiet == []


def test_a_first_run_says_so_when_kernels_compile_in_other_processes(monkeypatch):
    started = []
    monkeypatch.setattr(launch, "compile_ahead", lambda dtype, model, batch, evaluation_batch:
                        started.append((dtype, model, batch, evaluation_batch)) or 3)
    said = []
    with cli._first_run_kernels("cpu", "float64", distributed.World(), said.append, "nin", 48, 100):
        pass
    assert said == [cli.COMPILING] and started == [("float64", "nin", 48, 100)]
    # several MPI processes already share the cores, and a GPU run has no CPU kernels to prepare
    for device, world in (("cpu", distributed.World(size=2)), ("cuda", distributed.World())):
        with cli._first_run_kernels(device, "float32", world, said.append):
            pass
    assert started == [("float64", "nin", 48, 100)]


class _Helper:
    """Stands in for a helper process of compile_ahead (``launch.serve``): records each job it is asked to run, and
    answers ``answer`` ("done", "failed", or "" once it has died)."""

    def __init__(self, asked: list, answer: str):
        self.asked, self.answer = asked, answer
        self.stdin = self.stdout = self

    def write(self, line):
        self.asked.append(line.rstrip("\n"))

    def flush(self):
        pass

    def readline(self):
        return self.answer + "\n" if self.answer else ""

    def __enter__(self):
        return self

    def __exit__(self, *exception):
        return False


def _first_run_jobs(monkeypatch, answer: str, threads: int) -> tuple:
    """compile_ahead for LeNet-5 with nothing in the cache, ``threads`` Numba threads and helpers that answer
    ``answer``: (what each helper was asked, in order; what ran in this process)."""
    helpers, here = [], []

    def run_once(*args):
        here.append(f"run_once {args!r}")

    def run_model_once(*args):
        here.append(f"run_model_once {args!r}")

    def start_helper(command, **options):
        assert command[1:] == ["-c", "from numconv.kernels.cpu import launch; launch.serve()"]
        helpers.append([])
        return _Helper(helpers[-1], answer)

    monkeypatch.setattr(launch, "run_once", run_once)
    monkeypatch.setattr(launch, "run_model_once", run_model_once)
    monkeypatch.setattr(launch, "_in_cache", lambda kernel: False)
    monkeypatch.setattr(launch.subprocess, "Popen", start_helper)
    monkeypatch.setattr(launch.numba.config, "NUMBA_NUM_THREADS", threads)
    # the passes, the evaluation, 16 x 14, 64 x 4 and, with AVX-512, 16 x 10 (the second layer's rows of 10)
    assert launch.compile_ahead("float32", "lenet5", 32, 100) == 4 + len(tuning.ROW_SHAPES)
    return helpers, here


#: what the training process runs itself in ``_first_run_jobs``, besides jobs
_REST = "run_model_once ('lenet5', 'float32', 'rest', 32)"


def _lenet_jobs() -> list:
    """The jobs of LeNet-5's first run in ``_first_run_jobs``, sorted."""
    kernels = ["run_once ((16, 14), 'float32', False)", "run_once ((64, 4), 'float32', False)"] + [
        f"run_once ({shape!r}, 'float32', False)" for shape in tuning.ROW_SHAPES]
    return sorted(kernels + ["run_model_once ('lenet5', 'float32', 'passes', 32)",
                             "run_model_once ('lenet5', 'float32', 'evaluation', 32, 100)"])


def test_a_first_run_shares_its_compile_jobs_between_helpers_and_itself(monkeypatch):
    """A helper process per core beside the training process takes jobs, the first one the passes of a training
    step of the run's batch size, and the evaluation of the run's evaluation batch after them (the sizes pick each
    parallel kernel's version); the training process runs the rest of the training step first, and takes jobs too:
    every job runs once, somewhere. The blocked kernels go by columns, the longest compiles first."""
    helpers, here = _first_run_jobs(monkeypatch, "done", threads=3)
    assert len(helpers) == 2
    assert helpers[0][0] == "run_model_once ('lenet5', 'float32', 'passes', 32)"
    assert helpers[1][0] == "run_once ((16, 14), 'float32', False)"
    assert here[0] == _REST
    assert sorted(helpers[0] + helpers[1] + here[1:]) == _lenet_jobs()
    helpers, here = _first_run_jobs(monkeypatch, "done", threads=1)  # one thread: still one helper
    assert len(helpers) == 1 and helpers[0][0] == "run_model_once ('lenet5', 'float32', 'passes', 32)"


def test_the_evaluation_waits_for_the_passes_then_goes_next_or_when_nothing_else_is_left():
    """compile_ahead's queue holds the evaluation back until the passes have ended (so that it loads what they
    compile), then hands it out before the jobs still queued (it is long: last, it kept one process busy while the
    other idled), or hands it out once no other job is left rather than leave a process idle."""
    passes, evaluation, first, second = ("passes",), ("evaluation",), ("16 x 14",), ("64 x 4",)
    jobs = launch._Jobs([passes, first, second], held=evaluation, after=passes)
    assert len(jobs) == 4 and jobs.next() == passes and jobs.next() == first
    jobs.ended(first)  # another job's end releases nothing
    assert len(jobs) == 2
    jobs.ended(passes)
    assert [jobs.next() for _ in range(3)] == [evaluation, second, None]
    jobs = launch._Jobs([passes, first], held=evaluation, after=passes)
    assert [jobs.next() for _ in range(4)] == [passes, first, evaluation, None]
    jobs.ended(passes)  # handed out already: it comes no second time
    assert jobs.next() is None and len(jobs) == 0


@pytest.mark.parametrize("answer", ["failed", ""])
def test_a_job_that_fails_in_a_helper_runs_in_the_training_process(answer, monkeypatch):
    """A job that fails in a helper (or whose helper has died: no answer) runs again in the training process, where
    its error shows; every job runs there once."""
    helpers, here = _first_run_jobs(monkeypatch, answer, threads=2)
    assert len(helpers) == 1 and helpers[0][0] == "run_model_once ('lenet5', 'float32', 'passes', 32)"
    assert here[0] == _REST and sorted(here[1:]) == _lenet_jobs() and set(helpers[0]) <= set(here[1:])


def test_a_helper_runs_the_jobs_it_reads_and_answers_each(monkeypatch, capsys):
    """``launch.serve`` reads a job a line (a function and a tuple of literals), runs it, and answers "done", or
    "failed" when it raises, until its input ends."""
    import io

    ran = []
    monkeypatch.setattr(launch, "run_once", lambda *args: ran.append(args))
    monkeypatch.setattr(sys, "stdin", io.StringIO("run_once ((16, 14), 'float64', True)\n"
                                                  "run_model_once ('lenet5', 'float32', 'nothing', 32)\n"
                                                  "nothing\n"
                                                  "run_once ((64, 4), 'float32', False)\n"))
    launch.serve()
    assert capsys.readouterr().out == "done\nfailed\nfailed\ndone\n"
    assert ran == [((16, 14), "float64", True), ((64, 4), "float32", False)]


@pytest.mark.parametrize("shape,split", [(shape, False) for shape in tuning.KERNEL_SHAPES]
                         + [(shape, True) for shape in launch.SPLIT_KERNELS if shape in tuning.SHAPES])
def test_each_process_compiling_ahead_runs_its_own_kernel(shape, split, monkeypatch):
    """``run_once(shape)``, what a process compiling ahead runs, calls the blocked kernel of that shape (or its variant
    that splits the sum), not another that its convolution's sizes would pick."""
    from numconv.kernels.cpu import conv as cpu_conv

    ran = []
    record = (lambda kernel, *operands, **options: ran.append((kernel, split)))
    monkeypatch.setattr(cpu_conv, "_fma_split" if split else "_fma_shape", record)
    launch.run_once(shape, "float32", split)
    assert ran == [(shape, split)]


def test_kernels_compiled_ahead_are_the_ones_a_run_loads(tmp_path):
    """With an empty compile cache, compile_ahead (its helper processes, and its own share in this one) compiles
    exactly the versions of the kernels that a training step of the batch size it was given and an evaluation of the
    model then call (the sizes pick each parallel kernel's version: LeNet-5's training batch of 32 takes the
    one-thread ones of most, an evaluation batch's first layers the parallel ones): it returns once every job is done,
    and this process then compiles none of numconv's; the passes' kernels, which a helper compiled, load from the
    cache."""
    script = """
import numpy as np
from numba.core import event
import numconv.functional as F
from numconv import cli
from numconv import models, optim, train
from numconv.kernels.cpu import launch
# the passes, the blocked kernels (16 x 14, 64 x 4 and, with AVX-512, 16 x 10) and the evaluation
assert launch.compile_ahead("float32", "lenet5", 32) == 4 + len(launch.tuning.ROW_SHAPES)
assert launch.compile_ahead("float32", "lenet5", 32) == 0  # all in the cache
compiled = []


class Recorder(event.Listener):
    def on_start(self, ev):
        pass

    def on_end(self, ev):
        if cli._compiled(ev):  # typing without literal values first, abandoned at once in every process, aside
            compiled.append(ev.data["dispatcher"].py_func.__qualname__)


event.register("numba:compile", Recorder())
model = models.lenet5(rng=1)
x = np.random.default_rng(0).standard_normal((32, 1, 28, 28), dtype=np.float32)
target = np.arange(32) % 10
logits = model.forward(x)
model.backward(F.cross_entropy_backward(1.0, logits, target)[0], needs_input_grad=False)
optim.SGD(model, lr=0.1, momentum=0.9, weight_decay=1e-4).step()
model.eval()
model.forward(np.ones((train.EVALUATION_BATCH, 1, 28, 28), np.float32))
print(sorted(compiled))
from numconv.kernels.cpu import pool
print(sum(pool._short_indices.serial.stats.cache_hits.values()))  # the training step's pooling, from the passes
for shape in launch.tuning.SHAPES + launch.tuning.ROW_SHAPES:
    task = launch.KERNELS[shape].task
    print(shape, sum(task.stats.cache_hits.values()), sum(task.stats.cache_misses.values()))
loop = launch.KERNELS[launch.tuning.SHAPES[0]].loop
print(sum(loop.stats.cache_hits.values()), sum(loop.stats.cache_misses.values()))
"""
    environment = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    result = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True,
                            timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert lines[0] == "[]", result.stdout
    assert lines[1] == "1", result.stdout
    # LeNet-5 runs the 16- and 64-lane blocked kernels (its first layer's 6 channels take the wide one, its weight
    # gradients the 16-lane one) and, with AVX-512, the one as wide as its second layer's rows of 10; each task, and
    # the one loop they share (their arguments have the same types), was loaded from the cache, or compiled once by
    # this process's share of the jobs
    once = ("1 0", "0 1")
    single, wide, _ = tuning.SHAPES
    for line, shape in zip(lines[2:4] + lines[5:5 + len(tuning.ROW_SHAPES)], (single, wide) + tuning.ROW_SHAPES):
        assert line.startswith(f"{shape} ") and line[len(f"{shape} "):] in once, result.stdout
    assert lines[5 + len(tuning.ROW_SHAPES)] in once, result.stdout
