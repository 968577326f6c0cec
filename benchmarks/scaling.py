"""Training on several MPI processes: measured on this machine, and predicted for many machines.

Measured (each configuration in its own processes, started by this script):

- a training step (forward, loss, backward, gradient all-reduce, SGD with momentum and weight decay) of LeNet-5
  (batch 64) and AlexNet (batch 32) in one process with 2 threads, in 2 data-parallel processes with 1 thread each
  (``--bind-to core``), in 3 data-parallel processes, and AlexNet's two-column split on 2 processes: the step's
  median time, the time inside MPI calls (the communicator is wrapped by a timer), and the throughput against the
  one-process run on the same cores;
- MPI on this machine (loopback, shared memory): in-place ``Allreduce`` of 4 B to 256 MB on 2 and 3 processes, from
  which the latency (the smallest message's time) and the bandwidth (the largest message's algorithm bandwidth,
  2 (N - 1) / N * bytes / time, as a ring moves it) come;
- one process's step time of each zoo model at its batch (LeNet-5 64, AlexNet 32, NiN 64, M5 32, C3D-small 8).

Predicted: the efficiency of data-parallel training of each zoo model on N = 2 ... 256 processes with the same
per-process batch, one per machine, at 10 and 100 Gb/s, by the ring all-reduce cost model

    t_allreduce(N) = 2 (N - 1) / N * gradient bytes / bandwidth + 2 (N - 1) * buckets * latency
    efficiency(N) = t_step / (t_step + t_allreduce(N))       (no overlap of communication and computation)

with this machine's step times and its measured MPI latency. The measured 2- and 3-process points (one minus the
fraction of the step spent in MPI) are drawn on the same plot.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/scaling.py [--steps 5] [--json scaling.json]
        [--plot scaling.png] [--quick]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

#: model -> the per-process batch of its training step
BATCHES = {"lenet5": 64, "alexnet": 32, "nin": 64, "m5": 32, "c3d_small": 8}
#: the configurations measured under MPI: name -> (processes, threads per process, mode)
CONFIGURATIONS = {
    "1 process x 2 threads": (1, 2, "local"),
    "2 processes x 1 thread": (2, 1, "data"),
    "2 processes x 1 thread, no overlap": (2, 1, "data-blocking"),
    "3 processes (oversubscribed)": (3, 1, "data"),
    "2 columns x 1 thread": (2, 1, "columns"),
}
LINKS_GBIT = (10, 100)
PROCESS_COUNTS = [2 ** k for k in range(1, 9)]


class _TimedComm:
    """A communicator that adds the time of every call it passes on to ``seconds``."""

    def __init__(self, comm):
        self._comm = comm
        self.seconds = 0.0

    def __getattr__(self, name):
        attribute = getattr(self._comm, name)
        if not callable(attribute):
            return attribute

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return attribute(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        return timed


def _step_worker(model_name: str, mode: str, steps: int) -> None:
    """Time ``steps`` training steps (after one untimed) of ``model_name``; rank 0 prints one JSON line."""
    from numconv import distributed, models, optim, train

    world = distributed.world()
    comm = _TimedComm(world.comm) if world.comm is not None else None
    timed_world = dataclasses.replace(world, comm=comm)
    batch = BATCHES[model_name]
    rng = np.random.default_rng(0)
    model = models.MODELS[model_name](rng=rng)
    if mode == "columns":
        model = distributed.split_columns(model, timed_world)
        parallel = distributed.Columns(model)
    elif mode.startswith("data"):
        parallel = distributed.DataParallel(timed_world, overlap=mode == "data")
    else:
        parallel = distributed.Local()
    inputs = rng.standard_normal((batch,) + models.INPUT_SHAPES[model_name]).astype(np.float32)
    num_classes = model.output_shape((1,) + models.INPUT_SHAPES[model_name])[1]
    targets = rng.integers(0, num_classes, batch)
    optimizer = optim.SGD(model, lr=1e-4, momentum=0.9, weight_decay=5e-4)
    parallel.prepare(model, batch, batch)
    times, mpi = [], []
    for index in range(steps + 1):
        rows = parallel.begin_step(batch)
        before = comm.seconds if comm else 0.0
        started = time.perf_counter()
        train.step(model, optimizer, np.ascontiguousarray(inputs[rows]), targets[rows], batch, parallel)
        if index:  # the first step compiles or loads the kernels
            times.append(time.perf_counter() - started)
            mpi.append((comm.seconds if comm else 0.0) - before)
    if world.rank == 0:
        median = statistics.median(times)
        print(json.dumps({"step_s": median, "mpi_s": statistics.median(mpi), "samples_per_s": batch / median}))


def _allreduce_worker(sizes: list[int]) -> None:
    """Best-of-5 in-place Allreduce time of float32 buffers of each byte size; rank 0 prints one JSON line."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    results = {}
    for nbytes in sizes:
        buffer = np.ones(max(nbytes // 4, 1), dtype=np.float32)
        comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
        best = math.inf
        for _ in range(5 if nbytes < 2 ** 26 else 2):
            comm.Barrier()
            started = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
            best = min(best, time.perf_counter() - started)
        results[nbytes] = best
    if comm.rank == 0:
        print(json.dumps(results))


def _launch(processes: int, threads: int, arguments: list[str]) -> dict:
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads), OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    command = [sys.executable, __file__, *arguments]
    if processes > 1:
        mpiexec = str(Path(sys.executable).parent / "mpiexec")
        fits = processes <= (os.cpu_count() or 1)
        binding = ["--bind-to", "core"] if fits else ["--oversubscribe", "--bind-to", "none"]
        command = [mpiexec, "-n", str(processes), *binding, *command]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(steps: int, quick: bool) -> dict:
    """Every measurement of this script, as a JSON-ready dict."""
    report = {"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(), "steps": steps,
              "configurations": {}, "allreduce": {}, "zoo_step_s": {}}
    report["column_traffic"] = column_traffic()
    models_measured = ("lenet5",) if quick else ("lenet5", "alexnet")
    for model_name in models_measured:
        rows = {}
        for name, (processes, threads, mode) in CONFIGURATIONS.items():
            if mode == "columns" and model_name != "alexnet":
                continue
            rows[name] = _launch(processes, threads, ["--step-worker", model_name, mode, str(steps)])
            print(f"{model_name:8} {name:30} step {1e3 * rows[name]['step_s']:9.1f} ms   in MPI "
                  f"{1e3 * rows[name]['mpi_s']:8.1f} ms", flush=True)
        report["configurations"][model_name] = rows
    sizes = [4 * 4 ** k for k in range(0, 14)] if not quick else [4, 4096, 2 ** 22]
    for processes in (2, 3):  # keyed by strings, as JSON keeps them
        report["allreduce"][str(processes)] = _launch(processes, 1, ["--allreduce-worker", ",".join(map(str, sizes))])
    for model_name in ("lenet5",) if quick else tuple(BATCHES):
        report["zoo_step_s"][model_name] = _launch(1, 2, ["--step-worker", model_name, "local", str(steps)])
        print(f"{model_name:10} one process, 2 threads: {1e3 * report['zoo_step_s'][model_name]['step_s']:.1f} ms "
              f"per step", flush=True)
    return report


def column_traffic(model_name: str = "alexnet", columns: int = 2) -> list:
    """Bytes each join of ``model_name``'s column split moves per process and step at its batch: (join, the
    activation it joins, bytes sent forward (Allgatherv), bytes sent backward (Reduce_scatter; 0 where each
    process keeps its part))."""
    from numconv import distributed, models

    batch = BATCHES[model_name]
    split = distributed.split_columns(models.MODELS[model_name](rng=0), distributed.World(rank=0, size=columns))
    shape = (batch,) + models.INPUT_SHAPES[model_name]
    rows = []
    for name, layer in split._layers.items():
        if isinstance(layer, distributed.ColumnGather):
            whole = layer.output_shape(shape)
            mine, everything = int(np.prod(shape)) * 4, int(np.prod(whole)) * 4  # float32
            # forward: this column's share to every other process; backward: every other column's part to it
            rows.append((name, whole, mine * (columns - 1), everything - mine if layer.partial_gradients else 0))
        shape = layer.output_shape(shape)
    return rows


def link_costs(report: dict) -> tuple[float, float]:
    """(latency in seconds, bandwidth in bytes/s) of MPI on this machine, from the 2-process Allreduce sweep."""
    sweep = {int(size): seconds for size, seconds in report["allreduce"]["2"].items()}
    latency = sweep[min(sweep)]
    largest = max(sweep)
    return latency, (2 * (2 - 1) / 2) * largest / sweep[largest]


def predict(report: dict) -> dict:
    """model -> link (Gb/s) -> efficiency at each of PROCESS_COUNTS, by the ring all-reduce cost model."""
    from numconv import distributed, models

    latency, _ = link_costs(report)
    predictions = {}
    for model_name, measured in report["zoo_step_s"].items():
        model = models.MODELS[model_name](rng=0)
        gradient_bytes = 4 * model.num_parameters()
        buckets = max(1, math.ceil(gradient_bytes / distributed.BUCKET_BYTES))
        step = measured["step_s"]
        predictions[model_name] = {"gradient_bytes": gradient_bytes, "buckets": buckets, "step_s": step}
        for link in LINKS_GBIT:
            bandwidth = link * 1e9 / 8
            efficiencies = []
            for n in PROCESS_COUNTS:
                allreduce = 2 * (n - 1) / n * gradient_bytes / bandwidth + 2 * (n - 1) * buckets * latency
                efficiencies.append(step / (step + allreduce))
            predictions[model_name][f"{link} Gb/s"] = efficiencies
    return predictions


def markdown(report: dict, predictions: dict) -> str:
    lines = ["| model | configuration | step (ms) | in MPI (ms) | samples/s | throughput vs 1 process |",
             "|---|---|---|---|---|---|"]
    for model_name, rows in report["configurations"].items():
        base = rows["1 process x 2 threads"]["samples_per_s"]
        for name, row in rows.items():
            lines.append(f"| {model_name} | {name} | {1e3 * row['step_s']:.1f} | {1e3 * row['mpi_s']:.1f} | "
                         f"{row['samples_per_s']:.1f} | {row['samples_per_s'] / base:.2f} |")
    lines += ["", f"AlexNet's column split, per process and step at batch {BATCHES['alexnet']}:", "",
              "| join before | whole activation | sent forward (Allgatherv) | sent backward (Reduce_scatter) |",
              "|---|---|---|---|"]
    for name, whole, forward, backward in report["column_traffic"]:
        lines.append(f"| {name.removesuffix('.join')} | {tuple(whole)} | {forward / 1e6:.2f} MB | "
                     f"{backward / 1e6:.2f} MB |")
    latency, bandwidth = link_costs(report)
    lines += ["", f"MPI on this machine: latency {1e6 * latency:.1f} us, Allreduce bandwidth "
              f"{bandwidth / 1e9:.2f} GB/s (2 processes).", "",
              "| model | gradients (MB) | step (ms) | link | " + " | ".join(f"N={n}" for n in PROCESS_COUNTS) + " |",
              "|---|---|---|---|" + "---|" * len(PROCESS_COUNTS)]
    for model_name, row in predictions.items():
        for link in LINKS_GBIT:
            values = " | ".join(f"{value:.2f}" for value in row[f"{link} Gb/s"])
            lines.append(f"| {model_name} | {row['gradient_bytes'] / 1e6:.1f} | {1e3 * row['step_s']:.1f} | "
                         f"{link} Gb/s | {values} |")
    return "\n".join(lines)


def plot(report: dict, predictions: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(LINKS_GBIT), figsize=(11, 4.2), sharey=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for axis, link in zip(axes, LINKS_GBIT):
        for colour, (model_name, row) in zip(colours, predictions.items()):
            axis.plot(PROCESS_COUNTS, row[f"{link} Gb/s"], marker="o", markersize=3, color=colour, label=model_name)
            measured = report["configurations"].get(model_name, {})
            for name, marker in (("2 processes x 1 thread", "s"), ("3 processes (oversubscribed)", "^")):
                if name in measured:
                    point = measured[name]
                    processes = CONFIGURATIONS[name][0]
                    axis.plot([processes], [1 - point["mpi_s"] / point["step_s"]], marker=marker, color=colour,
                              markersize=8, markerfacecolor="none", linestyle="none")
        axis.set_xscale("log", base=2)
        axis.set_xlabel("processes (one per machine)")
        axis.set_title(f"{link} Gb/s links")
        axis.set_ylim(0, 1.02)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("predicted scaling efficiency")
    axes[0].legend(loc="lower left", fontsize=8)
    figure.suptitle("Data-parallel training, ring all-reduce model (hollow: measured here, 2 and 3 processes)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per configuration (after one untimed)")
    parser.add_argument("--json", help="write every measurement and prediction here")
    parser.add_argument("--plot", help="draw the predicted efficiencies (PNG)")
    parser.add_argument("--quick", action="store_true", help="LeNet-5 only, a short Allreduce sweep")
    parser.add_argument("--step-worker", nargs=3, metavar=("MODEL", "MODE", "STEPS"), help=argparse.SUPPRESS)
    parser.add_argument("--allreduce-worker", metavar="SIZES", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step_worker:
        model_name, mode, steps = args.step_worker
        _step_worker(model_name, mode, int(steps))
        return 0
    if args.allreduce_worker:
        _allreduce_worker([int(size) for size in args.allreduce_worker.split(",")])
        return 0
    report = measure(args.steps, args.quick)
    predictions = predict(report)
    print()
    print(markdown(report, predictions))
    if args.json:
        Path(args.json).write_text(json.dumps({"measured": report, "predicted": predictions}, indent=1))
    if args.plot:
        plot(report, predictions, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
