"""Train LeNet-5 with numconv and with PyTorch on the embedded MNIST subset; compare epoch times and accuracy.

Both frameworks get the same architecture, the same initial weights (numconv's, loaded into PyTorch by key name),
the same shuffled mini-batches, batch size and SGD recipe (the `numconv train` recipe: lr 0.01, momentum 0.9,
Nesterov, weight decay 5e-4), and the same number of epochs. Each epoch's time covers forward, loss, backward and
the update over every training batch (the batches are cut beforehand, and the test evaluation after each epoch is
timed separately).

Each framework trains in a child process of its own (this script re-invoked with ``--engine numconv`` or
``--engine torch``), because two thread pools in one process slow each other: with Numba on its OpenMP layer,
the two OpenMP runtimes' spinning workers made epochs up to a hundred times slower; on the TBB layer numconv now
uses, the anchor suite's 1D convolution still ran 1.4x slower for about 300 ms after PyTorch's calls on 2 cores
(with OMP_WAIT_POLICY=PASSIVE too). The parent writes the data, the
initial weights and every epoch's shuffling to a temporary directory, starts both children, and has them run
epoch by epoch, taking turns to go first and never at the same time; each child answers one line of JSON per epoch
on its standard output and leaves its final weights in the directory. Another busy process on a small machine
slows either framework the same way (an OpenMP team that loses a core waits at every barrier), which shows as an
epoch far slower than the others with a CPU time close to its wall time: rerun then.

numconv's first epoch includes compiling (or loading from Numba's cache) its kernels, so the steady-state ratio
uses epochs 2 onwards for both frameworks (their mean, and fastest against fastest, which is the steadier number on
a shared machine), and the first epochs are reported on their own. Each epoch's CPU time (of the child that ran it)
is printed too.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/train_lenet5.py [--epochs 3] [--batch-size 32]
        [--json results.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

ENGINES = {"numconv": "numconv", "pytorch": "torch"}  # result name -> --engine value
SETUP_FILE = "setup.npz"
# Pause between one child's epoch and the other's, so that the first child's OpenMP workers, which spin for a
# while after their last parallel region (Intel's runtime for 200 ms by default), are asleep before the clock starts.
SETTLE_SECONDS = 0.3


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="threads of each engine (default 2)")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to PATH as JSON")
    parser.add_argument("--engine", choices=sorted(ENGINES.values()),
                        help="internal: run one framework as a child process, taking commands on stdin")
    parser.add_argument("--workdir", metavar="DIR", help="internal: the parent's temporary directory (with --engine)")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1:
        parser.error("--epochs and --batch-size must be positive")
    if (args.engine is None) != (args.workdir is None):
        parser.error("--engine and --workdir go together")
    return args


def torch_lenet5(num_classes: int = 10):
    """numconv.models.lenet5 in torch.nn, with the same layer indices (so the same state-dict keys)."""
    import torch

    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, num_classes),
    )


# ---------------------------------------------------------------------------------------------------------
# The children: one framework each. The torch child never imports numconv (nor Numba), and the numconv child
# never imports torch.

class NumconvRun:
    name = "numconv"

    def __init__(self, state: "OrderedDict[str, np.ndarray]", args):
        import numba

        import numconv
        from numconv import functional as F

        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
        from numconv import models, optim

        self.numba, self.F = numba, F
        self.model = models.lenet5(rng=args.seed).load_state_dict(state)
        self.optimizer = optim.SGD(self.model, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
                                   nesterov=args.momentum > 0)
        self.info = {"version": numconv.__version__, "numba": numba.__version__,
                     "threads": numba.get_num_threads()}

    def train_epoch(self, batches) -> float:
        F = self.F
        self.model.train()
        total = 0.0
        for inputs, targets in batches:
            logits = self.model.forward(inputs)
            total += float(F.cross_entropy(logits, targets)) * len(targets)
            self.model.zero_grad()
            grad_logits, _ = F.cross_entropy_backward(1.0, logits, targets)
            self.model.backward(grad_logits, needs_input_grad=False)  # the images need no gradient
            self.optimizer.step()
        return total

    def accuracy(self, inputs, targets, batch_size=500) -> float:
        self.model.eval()
        correct = 0
        for begin in range(0, len(inputs), batch_size):
            logits = self.model.forward(np.ascontiguousarray(inputs[begin:begin + batch_size]))
            correct += int(np.sum(logits.argmax(axis=1) == targets[begin:begin + batch_size]))
        return correct / len(inputs)

    def state(self) -> "OrderedDict[str, np.ndarray]":
        return self.model.state_dict()

    def final_info(self) -> dict:
        try:
            return {"threading_layer": self.numba.threading_layer()}
        except ValueError:  # no parallel kernel has run
            return {"threading_layer": None}


class TorchRun:
    name = "pytorch"

    def __init__(self, state: "OrderedDict[str, np.ndarray]", args):
        import torch

        self.torch = torch
        torch.set_num_threads(args.threads)
        self.model = torch_lenet5()
        if list(self.model.state_dict()) != list(state):
            raise SystemExit(f"state-dict keys differ: {list(self.model.state_dict())} != {list(state)}")
        self.model.load_state_dict({key: torch.from_numpy(value.copy()) for key, value in state.items()})
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=args.lr, momentum=args.momentum,
                                         weight_decay=args.weight_decay, nesterov=args.momentum > 0)
        self.info = {"version": torch.__version__, "threads": torch.get_num_threads()}

    def train_epoch(self, batches) -> float:
        torch = self.torch
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

    def accuracy(self, inputs, targets, batch_size=500) -> float:
        torch = self.torch
        self.model.eval()
        correct = 0
        with torch.no_grad():
            for begin in range(0, len(inputs), batch_size):
                logits = self.model(torch.from_numpy(np.ascontiguousarray(inputs[begin:begin + batch_size])))
                correct += int((logits.argmax(dim=1).numpy() == targets[begin:begin + batch_size]).sum())
        return correct / len(inputs)

    def state(self) -> "OrderedDict[str, np.ndarray]":
        return OrderedDict((key, value.detach().numpy().copy()) for key, value in self.model.state_dict().items())

    def final_info(self) -> dict:
        return {}


def epoch_batches(inputs, targets, order, batch_size: int) -> list:
    """One epoch's shuffled mini-batches, cut before the clock starts."""
    return [(np.ascontiguousarray(inputs[order[i:i + batch_size]]),
             np.ascontiguousarray(targets[order[i:i + batch_size]]))
            for i in range(0, len(order), batch_size)]


def child_main(args) -> None:
    """Run one framework: answer one JSON line on stdout per command read from stdin ("epoch N", "finish")."""
    channel, sys.stdout = sys.stdout, sys.stderr  # anything else printed goes to stderr, never into the answers

    def answer(message: dict):
        channel.write(json.dumps(message) + "\n")
        channel.flush()

    workdir = Path(args.workdir)
    with np.load(workdir / SETUP_FILE, allow_pickle=False) as setup:
        data = {key: setup[key] for key in setup.files}
    state = OrderedDict((key[len("initial/"):], value) for key, value in data.items() if key.startswith("initial/"))
    run = (NumconvRun if args.engine == "numconv" else TorchRun)(state, args)
    answer({"ready": True, **run.info})
    for line in iter(sys.stdin.readline, ""):
        command = line.split()
        if command[0] == "epoch":
            epoch = int(command[1])
            batches = epoch_batches(data["train_inputs"], data["train_targets"], data["orders"][epoch - 1],
                                    args.batch_size)
            started, cpu_started = time.perf_counter(), time.process_time()
            total_loss = run.train_epoch(batches)
            seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
            started = time.perf_counter()
            accuracy = run.accuracy(data["test_inputs"], data["test_targets"])
            answer({"epoch_seconds": seconds, "epoch_cpu_seconds": cpu_seconds,
                    "train_loss": total_loss / len(data["train_targets"]), "test_accuracy": accuracy,
                    "eval_seconds": time.perf_counter() - started})
        elif command[0] == "finish":
            np.savez(workdir / f"final-{run.name}.npz", **run.state())
            answer({"done": True, **run.final_info()})
            return
        else:
            raise SystemExit(f"unknown command {line!r}")


# ---------------------------------------------------------------------------------------------------------
# The parent: prepares the inputs, alternates the children, and reports.

class Child:
    """One framework's child process, spoken to one line at a time."""

    def __init__(self, name: str, args, workdir: str):
        self.name = name
        command = [sys.executable, str(Path(__file__).resolve()), "--engine", ENGINES[name], "--workdir", workdir,
                   "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--lr", repr(args.lr),
                   "--momentum", repr(args.momentum), "--weight-decay", repr(args.weight_decay),
                   "--seed", str(args.seed), "--threads", str(args.threads)]
        self.started = time.perf_counter()
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def ask(self, command: str | None = None) -> dict:
        try:
            if command is not None:
                self.process.stdin.write(command + "\n")
                self.process.stdin.flush()
            line = self.process.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            code = self.process.wait()
            raise SystemExit(f"the {self.name} child exited with code {code} before answering "
                             f"{command or 'at start-up'!r} (its messages are above)")
        return json.loads(line)

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except BrokenPipeError:
                pass


def write_setup(path: Path, args):
    """The data, numconv's initial weights and every epoch's shuffling, for both children. Returns what the
    parent prints about them."""
    from numconv import models
    from numconv.data import mnist_subset

    train, test = mnist_subset()
    model = models.lenet5(rng=args.seed)
    rng = np.random.default_rng(args.seed)
    orders = np.stack([rng.permutation(len(train)) for _ in range(args.epochs)])
    np.savez(path, train_inputs=train.inputs, train_targets=train.targets, test_inputs=test.inputs,
             test_targets=test.targets, orders=orders,
             **{f"initial/{key}": value for key, value in model.state_dict().items()})
    return train, test, model.num_parameters()


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.engine is not None:
        child_main(args)
        return {}
    names = list(ENGINES)
    results = {name: {"epoch_seconds": [], "epoch_cpu_seconds": [], "train_loss": [], "test_accuracy": [],
                      "eval_seconds": []}
               for name in names}
    with tempfile.TemporaryDirectory(prefix="train_lenet5-") as workdir:
        train, test, num_parameters = write_setup(Path(workdir) / SETUP_FILE, args)
        children = {}
        try:
            for name in names:
                children[name] = Child(name, args, workdir)
            info = {}
            for name in names:
                info[name] = children[name].ask()
                results[name]["startup_seconds"] = time.perf_counter() - children[name].started

            print(f"LeNet-5 ({num_parameters:,} parameters) on {train.name} ({len(train)} images) / {test.name} "
                  f"({len(test)}), {args.epochs} epochs, batch {args.batch_size}, SGD lr {args.lr} momentum "
                  f"{args.momentum} nesterov={args.momentum > 0} weight decay {args.weight_decay}")
            print(f"numconv {info['numconv']['version']} (Numba {info['numconv']['numba']}, "
                  f"{info['numconv']['threads']} threads), PyTorch {info['pytorch']['version']} "
                  f"({info['pytorch']['threads']} threads), one child process each, {os.cpu_count()} CPUs, "
                  f"{platform.processor() or platform.machine()}")

            for epoch in range(1, args.epochs + 1):
                turn = names if epoch % 2 else names[::-1]  # take turns going first
                for name in turn:
                    time.sleep(SETTLE_SECONDS)
                    for key, value in children[name].ask(f"epoch {epoch}").items():
                        results[name][key].append(value)
                print(f"epoch {epoch}/{args.epochs}  " + "   ".join(
                    f"{name}: {results[name]['epoch_seconds'][-1]:6.2f} s "
                    f"(CPU {results[name]['epoch_cpu_seconds'][-1]:5.2f} s), train loss "
                    f"{results[name]['train_loss'][-1]:.4f}, test {100 * results[name]['test_accuracy'][-1]:.1f}%"
                    for name in names), flush=True)

            final = {}
            for name in names:
                final[name] = children[name].ask("finish")
                children[name].process.wait()
            states = []
            for name in names:
                with np.load(Path(workdir) / f"final-{name}.npz", allow_pickle=False) as archive:
                    states.append({key: archive[key] for key in archive.files})
            drift = max(float(np.abs(states[0][key] - states[1][key]).max()) for key in states[0])
        finally:
            for child in children.values():
                child.close()

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
    config = {key: value for key, value in vars(args).items() if key not in ("engine", "workdir")}
    summary = {
        "config": {**config, "train_size": len(train), "test_size": len(test),
                   "numba_threads": info["numconv"]["threads"], "torch_threads": info["pytorch"]["threads"],
                   "numba_threading_layer": final["numconv"].get("threading_layer"),
                   "numconv": info["numconv"]["version"], "numba": info["numconv"]["numba"],
                   "torch": info["pytorch"]["version"], "cpus": os.cpu_count(), "processes": "one per framework"},
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
