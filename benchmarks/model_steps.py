"""Training steps of the zoo's models, numconv beside PyTorch, each engine in a process of its own.

    python benchmarks/model_steps.py [--models lenet5 alexnet ...] [--steps 8] [--rounds 1] [--json report.json]

A step is what ``numconv train`` does per batch: forward, cross-entropy, backward (without the images' gradient),
SGD with momentum 0.9, Nesterov and weight decay 5e-4. PyTorch runs the same network, built layer by layer from
numconv's (same weights, through the state dict, whose keys are PyTorch's), on the same random batch, with as many
threads as Numba. Each engine runs in a new process (Numba's and PyTorch's worker threads in one process would
compete for the cores), the engines taking turns model by model; the first steps, which compile and fault in
memory, are not timed. Reported per model: the median and best step in milliseconds, their ratio numconv /
PyTorch (below 1: numconv is faster), and memory: the process's peak resident size, and the growth of that peak
over the resident size once the model and the batch exist (what the steps themselves needed). With ``--rounds R``
each engine runs R processes per model, taking turns in an order reversed every other round, and the ratio is the
median of the rounds' ratios: a shared machine's speed drifts from one process to the next (C3D-small's 5 ms step
read 0.82 to 1.64 in five rounds of 300 steps). The speed comes in phases that slow whole processes of both engines
alike (C3D-small's 4.2 ms step took 6.3-7.2 in some processes, PyTorch's 4.5 took 6.3-6.4 at the same times), so
"fastest" compares each engine's fastest round, where neither was slowed. The JSON report adds each process's page
faults per timed step.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

#: model -> batch size (the sizes the speed targets name)
BATCHES = {"lenet5": 64, "alexnet": 32, "nin": 64, "m5": 32, "c3d_small": 8}


def _resident_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def _batch(name: str, seed: int):
    import numpy as np

    from numconv import models

    rng = np.random.default_rng(seed)
    model = models.MODELS[name](rng=seed)
    x = rng.standard_normal((BATCHES[name],) + models.INPUT_SHAPES[name], dtype=np.float32)
    classes = model.output_shape(x.shape)[1]
    target = rng.integers(0, classes, BATCHES[name])
    return model, x, target


def numconv_step(name: str, seed: int = 0):
    """The numconv model ``name`` and a function running one training step on a fixed batch."""
    import numconv.functional as F
    from numconv import optim

    model, x, target = _batch(name, seed)
    model.train()
    optimizer = optim.SGD(model, lr=0.01, momentum=0.9, weight_decay=5e-4, nesterov=True)

    def step():
        # as numconv.train.step does; PyTorch's optimizer.zero_grad() below likewise sets the gradients to None, so
        # that its backward writes them instead of adding them to zeros
        model.begin_gradients()
        logits = model.forward(x)
        grad, _ = F.cross_entropy_backward(1.0, logits, target)
        model.backward(grad, needs_input_grad=False)
        model.end_gradients()
        optimizer.step()

    return step


def torch_mirror(model):
    """The PyTorch network with the layers, settings and weights of the numconv Sequential ``model``."""
    import torch
    from torch import nn

    from numconv import layers

    class GroupedLocalResponseNorm(nn.Module):
        """numconv's LocalResponseNorm(groups=g): each group of channels normalised on its own."""

        def __init__(self, groups, norm):
            super().__init__()
            self.groups, self.norm = groups, norm

        def forward(self, x):
            grouped = x.reshape((x.shape[0] * self.groups, x.shape[1] // self.groups) + tuple(x.shape[2:]))
            return self.norm(grouped).reshape(x.shape)

    def mirror(layer):
        kind = type(layer).__name__
        if isinstance(layer, layers.Sequential):
            return nn.Sequential(OrderedDict((key, mirror(child)) for key, child in layer._layers.items()))
        if isinstance(layer, layers._ConvNd):
            out_channels, group_in = layer.weight.shape[:2]
            options = layer._options()
            return getattr(nn, kind)(group_in * options["groups"], out_channels, layer.weight.shape[2:],
                                     bias=layer.bias is not None, **options)
        if isinstance(layer, (layers._MaxPoolNd, layers._AvgPoolNd)):
            return getattr(nn, kind)(**layer._options())
        if isinstance(layer, layers.LocalResponseNorm):
            return GroupedLocalResponseNorm(layer.groups, nn.LocalResponseNorm(layer.size, layer.alpha, layer.beta,
                                                                               layer.k))
        if isinstance(layer, layers.Linear):
            return nn.Linear(layer.weight.shape[1], layer.weight.shape[0], bias=layer.bias is not None)
        if isinstance(layer, layers._BatchNormNd):
            return getattr(nn, kind)(layer.num_features, eps=layer.eps, momentum=layer.momentum,
                                     affine=layer.affine, track_running_stats=layer.track_running_stats)
        if isinstance(layer, layers.GlobalAvgPool):
            return nn.Sequential(nn.Flatten(2), nn.AdaptiveAvgPool1d(1), nn.Flatten(1))
        if isinstance(layer, layers.Dropout):
            return nn.Dropout(layer.p)
        if kind in ("ReLU", "Sigmoid", "Tanh", "Flatten"):
            return getattr(nn, kind)()
        raise ValueError(f"no PyTorch mirror for {kind}")

    network = mirror(model)
    state = {key: torch.from_numpy(value.copy()) for key, value in model.state_dict().items()}
    network.load_state_dict(state, strict=True)
    return network


def torch_step(name: str, seed: int = 0):
    """The same network and step in PyTorch."""
    import torch

    model, x, target = _batch(name, seed)
    network = torch_mirror(model)
    network.train()
    optimizer = torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4, nesterov=True)
    images, labels = torch.from_numpy(x), torch.from_numpy(target)

    def step():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(network(images), labels)
        loss.backward()
        optimizer.step()

    return step


def child(engine: str, name: str, steps: int, warm_up: int) -> dict:
    """Runs in the engine's own process: times ``steps`` steps after ``warm_up`` untimed ones."""
    import numba

    threads = numba.get_num_threads()
    if engine == "torch":
        import torch

        torch.set_num_threads(threads)
        step = torch_step(name)
    else:
        step = numconv_step(name)
    before = _resident_mb()
    for _ in range(warm_up):
        step()
    times = []
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return {"median_ms": 1e3 * statistics.median(times), "best_ms": 1e3 * min(times), "threads": threads,
            "resident_before_mb": before, "peak_mb": _peak_mb(), "step_growth_mb": _peak_mb() - before,
            "faults_per_step": faults / steps}


def _run_child(engine: str, name: str, steps: int, warm_up: int) -> dict:
    command = [sys.executable, __file__, "--child", engine, name, "--steps", str(steps), "--warm-up", str(warm_up)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{engine} {name} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _over_rounds(results: list) -> dict:
    """One engine's rounds as one result: the median of their median steps, the best step, the largest peak."""
    return {"median_ms": statistics.median(result["median_ms"] for result in results),
            "best_ms": min(result["best_ms"] for result in results), "threads": results[0]["threads"],
            "resident_before_mb": results[0]["resident_before_mb"],
            "peak_mb": max(result["peak_mb"] for result in results),
            "step_growth_mb": max(result["step_growth_mb"] for result in results)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=sorted(BATCHES), default=list(BATCHES))
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warm-up", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1,
                        help="runs of each engine per model, the engines taking turns (the order reversed every "
                             "other round); reported: the median of the rounds' medians and of their ratios")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs=2, metavar=("ENGINE", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.steps, args.warm_up)))
        return 0
    try:
        import torch  # noqa: F401
        engines = ("numconv", "torch")
    except ImportError:
        print("PyTorch is not installed: numconv's numbers only")
        engines = ("numconv",)
    report = {}
    header = (f"{'model':10s} {'batch':>5s} {'numconv ms':>11s} {'torch ms':>9s} {'ratio':>6s} "
              f"{'fastest':>7s} {'peak MB nc/torch':>17s} {'step MB nc/torch':>17s}")
    print(header)
    for name in args.models:
        rounds = []
        for index in range(args.rounds):
            order = engines if index % 2 == 0 else engines[::-1]
            rounds.append({engine: _run_child(engine, name, args.steps, args.warm_up) for engine in order})
        results = {engine: _over_rounds([result[engine] for result in rounds]) for engine in engines}
        report[name] = dict(results, rounds=rounds)
        ours, theirs = results["numconv"], results.get("torch")
        ratio = statistics.median(result["numconv"]["median_ms"] / result["torch"]["median_ms"]
                                  for result in rounds) if theirs else float("nan")
        report[name]["ratio"] = ratio
        if theirs:
            # phases of a shared host slow whole processes, both engines' alike: the fastest rounds compare the
            # engines where neither was slowed
            report[name]["fastest_rounds_ratio"] = (min(result["numconv"]["median_ms"] for result in rounds)
                                                    / min(result["torch"]["median_ms"] for result in rounds))
        peak = f"{ours['peak_mb']:.0f}/{theirs['peak_mb']:.0f}" if theirs else f"{ours['peak_mb']:.0f}/-"
        grown = f"{ours['step_growth_mb']:.0f}/{theirs['step_growth_mb']:.0f}" if theirs else \
            f"{ours['step_growth_mb']:.0f}/-"
        print(f"{name:10s} {BATCHES[name]:5d} {ours['median_ms']:11.1f} "
              f"{theirs['median_ms'] if theirs else float('nan'):9.1f} {ratio:6.2f} "
              f"{report[name].get('fastest_rounds_ratio', float('nan')):7.2f} {peak:>17s} {grown:>17s}",
              flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
