"""Train LeNet-5 with numconv and with PyTorch on the embedded MNIST subset; compare epoch times and accuracy.

Both frameworks get the same architecture, the same initial weights (numconv's, loaded into PyTorch by key name),
the same shuffled mini-batches, batch size and SGD recipe (the `numconv train` recipe: lr 0.01, momentum 0.9,
Nesterov, weight decay 5e-4), and the same number of epochs. They run in one process, epoch by epoch, taking turns
to go first; each epoch's time covers forward, loss, backward and the update over every training batch (the
batches are cut beforehand, and the test evaluation after each epoch is timed separately).

numconv's first epoch includes compiling (or loading from Numba's cache) its kernels, so the steady-state ratio
uses epochs 2 onwards for both frameworks (their mean, and fastest against fastest, which is the steadier number on
a shared machine), and the first epochs are reported on their own. Each epoch's process CPU time is printed too.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/train_lenet5.py [--epochs 3] [--batch-size 32]
        [--json results.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numba  # noqa: E402
import torch  # noqa: E402

import numconv  # noqa: E402
from numconv import functional as F  # noqa: E402
from numconv import models, optim  # noqa: E402
from numconv.data import mnist_subset  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="PyTorch's intra-op threads (default 2)")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to PATH as JSON")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1:
        parser.error("--epochs and --batch-size must be positive")
    return args


def torch_lenet5(num_classes: int = 10) -> torch.nn.Sequential:
    """numconv.models.lenet5 in torch.nn, with the same layer indices (so the same state-dict keys)."""
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, num_classes),
    )


class NumconvRun:
    name = "numconv"

    def __init__(self, model, args):
        self.model = model
        self.optimizer = optim.SGD(model, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
                                   nesterov=args.momentum > 0)

    def train_epoch(self, batches) -> float:
        self.model.train()
        total = 0.0
        for inputs, targets in batches:
            logits = self.model.forward(inputs)
            total += float(F.cross_entropy(logits, targets)) * len(targets)
            self.model.zero_grad()
            grad_logits, _ = F.cross_entropy_backward(1.0, logits, targets)
            self.model.backward(grad_logits)
            self.optimizer.step()
        return total

    def accuracy(self, dataset, batch_size=500) -> float:
        self.model.eval()
        correct = 0
        for begin in range(0, len(dataset), batch_size):
            logits = self.model.forward(np.ascontiguousarray(dataset.inputs[begin:begin + batch_size]))
            correct += int(np.sum(logits.argmax(axis=1) == dataset.targets[begin:begin + batch_size]))
        return correct / len(dataset)

    def state(self) -> "OrderedDict[str, np.ndarray]":
        return self.model.state_dict()


class TorchRun:
    name = "pytorch"

    def __init__(self, model, args):
        self.model = model
        self.optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                                         weight_decay=args.weight_decay, nesterov=args.momentum > 0)

    def train_epoch(self, batches) -> float:
        self.model.train()
        total = 0.0
        for inputs, targets in batches:
            inputs, targets = torch.from_numpy(inputs), torch.from_numpy(targets)
            self.optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(self.model(inputs), targets)
            loss.backward()
            self.optimizer.step()
            total += loss.item() * len(targets)
        return total

    def accuracy(self, dataset, batch_size=500) -> float:
        self.model.eval()
        correct = 0
        with torch.no_grad():
            for begin in range(0, len(dataset), batch_size):
                logits = self.model(torch.from_numpy(np.ascontiguousarray(dataset.inputs[begin:begin + batch_size])))
                correct += int((logits.argmax(dim=1).numpy() == dataset.targets[begin:begin + batch_size]).sum())
        return correct / len(dataset)

    def state(self) -> "OrderedDict[str, np.ndarray]":
        return OrderedDict((key, value.detach().numpy().copy()) for key, value in self.model.state_dict().items())


def epoch_batches(dataset, batch_size: int, rng: np.random.Generator) -> list:
    """One epoch's shuffled mini-batches, cut before either framework's clock starts."""
    order = rng.permutation(len(dataset))
    return [(np.ascontiguousarray(dataset.inputs[order[i:i + batch_size]]),
             np.ascontiguousarray(dataset.targets[order[i:i + batch_size]]))
            for i in range(0, len(dataset), batch_size)]


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    train, test = mnist_subset()
    model = models.lenet5(rng=args.seed)
    reference = torch_lenet5()
    state = model.state_dict()
    if list(reference.state_dict()) != list(state):
        raise SystemExit(f"state-dict keys differ: {list(reference.state_dict())} != {list(state)}")
    reference.load_state_dict({key: torch.from_numpy(value.copy()) for key, value in state.items()})
    runs = [NumconvRun(model, args), TorchRun(reference, args)]

    print(f"LeNet-5 ({model.num_parameters():,} parameters) on {train.name} ({len(train)} images) / {test.name} "
          f"({len(test)}), {args.epochs} epochs, batch {args.batch_size}, SGD lr {args.lr} momentum "
          f"{args.momentum} nesterov={args.momentum > 0} weight decay {args.weight_decay}")
    print(f"numconv {numconv.__version__} (Numba {numba.__version__}, {numba.config.NUMBA_NUM_THREADS} threads), "
          f"PyTorch {torch.__version__} ({torch.get_num_threads()} threads), {os.cpu_count()} CPUs, "
          f"{platform.processor() or platform.machine()}")

    results = {run.name: {"epoch_seconds": [], "epoch_cpu_seconds": [], "train_loss": [], "test_accuracy": [],
                          "eval_seconds": []}
               for run in runs}
    rng = np.random.default_rng(args.seed)
    for epoch in range(1, args.epochs + 1):
        batches = epoch_batches(train, args.batch_size, rng)
        turn = runs if epoch % 2 else runs[::-1]  # take turns going first
        for run in turn:
            started, cpu_started = time.perf_counter(), time.process_time()
            total_loss = run.train_epoch(batches)
            seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
            started = time.perf_counter()
            accuracy = run.accuracy(test)
            record = results[run.name]
            record["epoch_seconds"].append(seconds)
            record["epoch_cpu_seconds"].append(cpu_seconds)
            record["train_loss"].append(total_loss / len(train))
            record["test_accuracy"].append(accuracy)
            record["eval_seconds"].append(time.perf_counter() - started)
        print(f"epoch {epoch}/{args.epochs}  " + "   ".join(
            f"{run.name}: {results[run.name]['epoch_seconds'][-1]:6.2f} s "
            f"(CPU {results[run.name]['epoch_cpu_seconds'][-1]:5.2f} s), train loss "
            f"{results[run.name]['train_loss'][-1]:.4f}, test {100 * results[run.name]['test_accuracy'][-1]:.1f}%"
            for run in runs), flush=True)

    ours, theirs = results["numconv"], results["pytorch"]
    for record in (ours, theirs):
        record["first_epoch_seconds"] = record["epoch_seconds"][0]
        steady = record["epoch_seconds"][1:]
        record["steady_epoch_seconds"] = statistics.mean(steady) if steady else None
        record["fastest_steady_epoch_seconds"] = min(steady) if steady else None
        record["final_test_accuracy"] = record["test_accuracy"][-1]
        if steady:
            record["steady_images_per_second"] = len(train) / record["steady_epoch_seconds"]
    ratio = (ours["steady_epoch_seconds"] / theirs["steady_epoch_seconds"]) if args.epochs > 1 else None
    fastest_ratio = (ours["fastest_steady_epoch_seconds"] / theirs["fastest_steady_epoch_seconds"]
                     if args.epochs > 1 else None)
    drift = max(float(np.abs(a - b).max()) for a, b in zip(runs[0].state().values(), runs[1].state().values()))
    summary = {
        "config": {**vars(args), "train_size": len(train), "test_size": len(test),
                   "numba_threads": numba.config.NUMBA_NUM_THREADS, "torch_threads": torch.get_num_threads(),
                   "numconv": numconv.__version__, "numba": numba.__version__, "torch": torch.__version__,
                   "cpus": os.cpu_count()},
        "numconv": ours,
        "pytorch": theirs,
        "steady_epoch_time_ratio_numconv_over_pytorch": ratio,
        "fastest_steady_epoch_time_ratio_numconv_over_pytorch": fastest_ratio,
        "max_abs_weight_difference_after_training": drift,
    }

    print()
    print(f"{'':12}{'epoch 1 (s)':>13}{'steady (s)':>12}{'images/s':>10}{'final test':>12}")
    for name, record in (("numconv", ours), ("pytorch", theirs)):
        steady = record["steady_epoch_seconds"]
        steady_text = f"{steady:.2f}" if steady else "n/a"
        rate_text = f"{record['steady_images_per_second']:.0f}" if steady else "n/a"
        print(f"{name:12}{record['first_epoch_seconds']:13.2f}{steady_text:>12}{rate_text:>10}"
              f"{100 * record['final_test_accuracy']:11.1f}%")
    if ratio is not None:
        print(f"steady-state epoch time, numconv / PyTorch: {ratio:.2f}x (mean of epochs 2-{args.epochs}); "
              f"fastest epoch against fastest epoch: {fastest_ratio:.2f}x")
        extra = ours["first_epoch_seconds"] - ours["steady_epoch_seconds"]
        print(f"numconv's first epoch (kernels compiled or loaded from Numba's cache): "
              f"{ours['first_epoch_seconds']:.2f} s, {extra:+.2f} s over its steady epoch")
    else:
        print("steady-state ratio: n/a (needs --epochs 2 or more; epoch 1 includes numconv's compilation)")
    print(f"largest weight difference between the two after training: {drift:.2e}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
        print(f"wrote {args.json}")
    return summary


if __name__ == "__main__":
    main()
