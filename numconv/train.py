"""Training and evaluation: ``fit`` with per-epoch metrics (train loss, test loss, top-1 and top-5), a progress bar
on a terminal, an atomic checkpoint after each epoch, and ``resume`` that reaches exactly the weights an
uninterrupted run reaches (the weights, the optimiser's velocities, the schedule and every random generator's
state are saved)."""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from numconv import checks, distributed, functional as F
from numconv.backend import to_device, to_host
from numconv.data import Dataset, batch_rows
from numconv.files import atomic_write
from numconv.layers import Dropout, Module, Sequential, backward_without_input_grad

__all__ = ["fit", "step", "evaluate", "save_checkpoint", "load_checkpoint", "atomic_write"]

CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.json"
#: samples per forward pass of :func:`evaluate`
EVALUATION_BATCH = 256


def _top_k_correct(logits: np.ndarray, targets: np.ndarray, k: int) -> int:
    k = min(k, logits.shape[1])
    # the target's rank: how many logits beat it (ties counted against, as a strict top-k would)
    target_logit = logits[np.arange(len(targets)), targets][:, None]
    return int(np.sum(np.sum(logits > target_logit, axis=1) < k))


def _on(array: np.ndarray, device: str):
    """A batch of host data on the model's device (one copy to the GPU for ``'cuda'``)."""
    return to_device(array) if device == "cuda" else array


def evaluate(model: Module, dataset: Dataset, batch_size: int = EVALUATION_BATCH,
             parallel=None) -> dict:
    """Mean cross-entropy, top-1 and top-5 accuracy (fractions) of ``model`` in evaluation mode, on the model's
    device; only the logits come back to the host. ``parallel`` (a :mod:`numconv.distributed` strategy; one
    process by default) splits the set among processes and sums their counts: every process must then call this."""
    parallel = parallel if parallel is not None else distributed.Local()
    was_training = model.training
    device = getattr(model, "device", "cpu")  # any object with forward, train and eval can be evaluated
    model.eval()
    sums = np.zeros(3)  # summed loss, top-1 hits, top-5 hits
    mine = parallel.evaluation_rows(len(dataset))
    try:
        for begin in range(mine.start, mine.stop, batch_size):
            rows = slice(begin, min(begin + batch_size, mine.stop))
            inputs, targets = np.ascontiguousarray(dataset.inputs[rows]), dataset.targets[rows]
            logits = to_host(model.forward(_on(inputs, device)))
            sums += (float(F.cross_entropy(logits, targets, reduction="sum")), _top_k_correct(logits, targets, 1),
                     _top_k_correct(logits, targets, 5))
    finally:
        model.train(was_training)
    loss, top1, top5 = parallel.total(sums) / len(dataset)
    return {"loss": float(loss), "top1": float(top1), "top5": float(top5)}


def _generators(model: Module, shuffle: np.random.Generator) -> list:
    """Every random generator the run draws from, in a fixed order: data shuffling, then each dropout layer's."""
    layers = [layer for _, layer in model.named_layers()] if isinstance(model, Sequential) else [model]
    return [shuffle] + [layer.rng for layer in layers if isinstance(layer, Dropout)]


def save_checkpoint(path, model, optimizer, scheduler, history, generators, meta=None) -> Path:
    """Write everything a run needs to continue, atomically, as an .npz file of arrays and JSON strings.
    ``model`` and ``optimizer`` may also be their state dicts."""
    model_state = model if isinstance(model, dict) else model.state_dict()
    optimizer_state = optimizer if isinstance(optimizer, dict) else optimizer.state_dict()
    arrays = {f"model/{key}": value for key, value in model_state.items()}
    arrays.update({f"optimizer/{key}": np.asarray(value) for key, value in optimizer_state.items()})
    text = {
        "history": history,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "generators": [g.bit_generator.state for g in generators],
        "meta": meta or {},
    }
    arrays["json"] = np.asarray(json.dumps(text))
    return atomic_write(path, lambda file: np.savez(file, **arrays))


def load_checkpoint(path) -> dict:
    """The parts of a checkpoint: ``model`` and ``optimizer`` state dicts, and the JSON fields. A truncated or
    foreign file raises ValueError naming the file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            contents = {key: archive[key] for key in archive.files}
        text = json.loads(str(contents.pop("json")))
    except FileNotFoundError:
        raise
    except Exception as error:  # zipfile, json and key errors all mean the same thing here
        raise ValueError(f"{path} is not a numconv checkpoint or is damaged: {error}") from error
    result = {"model": {}, "optimizer": {}}
    for key, value in contents.items():
        group, _, name = key.partition("/")
        result[group][name] = value
    result.update(text)
    return result


def _resume_state(out_dir, meta) -> dict:
    if out_dir is None or not (out_dir / CHECKPOINT).exists():
        raise FileNotFoundError(f"resume=True but there is no checkpoint at {out_dir and out_dir / CHECKPOINT}")
    state = load_checkpoint(out_dir / CHECKPOINT)
    if meta and state["meta"] and state["meta"] != meta:
        raise ValueError(f"the checkpoint in {out_dir} was made by another run: {state['meta']} != {meta}")
    return state


def fit(model: Module, train: Dataset, test: Dataset, epochs: int, batch_size: int, optimizer,
        scheduler=None, seed: int = 0, out_dir=None, resume: bool = False, progress=None, log=None,
        meta=None, on_epoch=None, augment=None, parallel=None) -> list:
    """Train ``model`` for ``epochs`` epochs of shuffled mini-batches; returns the history, one dict per epoch
    with ``epoch``, ``train_loss``, ``test_loss``, ``test_top1``, ``test_top5``, ``seconds``, ``lr`` and
    ``processes`` (and ``columns`` for a column run).

    Training runs where the model is (``model.to("cuda")`` first for the GPU): each batch is copied there once, and
    only the loss (one number per step) and the evaluation's logits come back.

    With ``out_dir``, DIR/checkpoint.npz and DIR/metrics.json are rewritten atomically after every epoch, and
    ``resume=True`` continues from the checkpoint there. ``scheduler.step`` is called after each epoch with the
    test error (1 - top-1). ``progress`` (default: whether stderr is a terminal) shows a bar; ``log(text)``
    receives one line per epoch. ``on_epoch(history)`` runs after each epoch's checkpoint. ``augment(inputs,
    rng)`` transforms each training batch (``data.random_shift``), drawing from the run's saved generator.

    Under an MPI launcher with several processes (``mpiexec -n N``), every process calls ``fit`` and training is
    data parallel (``parallel``, by default :func:`numconv.distributed.strategy`): ``batch_size`` is the global
    batch, of which each process computes a share; augmentation is applied to the whole global batch before it is
    shared. Only rank 0 logs, shows progress and writes files; ``on_epoch`` runs on every process. The result
    equals one process's up to the order of floating-point sums.
    """
    epochs, batch_size = checks.integer(epochs, "epochs", 1), checks.integer(batch_size, "batch_size", 1)
    parallel = parallel if parallel is not None else distributed.strategy(model)
    out_dir = Path(out_dir) if out_dir is not None else None
    device = model.device
    shuffle = np.random.default_rng(seed)
    generators = _generators(model, shuffle)
    history = []
    parallel.prepare(model, len(train), batch_size)
    try:
        if resume:
            state = parallel.from_writer(lambda: _resume_state(out_dir, meta))
            parallel.load_state(model, optimizer, state["model"], state["optimizer"])
            if scheduler is not None and state["scheduler"] is not None:
                scheduler.load_state_dict(state["scheduler"])
            for generator, saved in zip(generators, state["generators"]):
                generator.bit_generator.state = saved
            history = list(state["history"])
        for epoch in range(len(history) + 1, epochs + 1):
            record = _train_epoch(model, train, test, epoch, epochs, batch_size, optimizer, shuffle, augment,
                                  parallel, device, progress)
            history.append(record)
            if scheduler is not None:
                scheduler.step(1.0 - record["test_top1"])
            if out_dir is not None:
                model_state, optimizer_state = parallel.full_state(model, optimizer)
                if parallel.is_writer:
                    save_checkpoint(out_dir / CHECKPOINT, model_state, optimizer_state, scheduler, history,
                                    generators, meta)
                    atomic_write(out_dir / METRICS, lambda file: file.write(json.dumps(history, indent=1).encode()))
            if log is not None and parallel.is_writer:
                # with five classes or fewer, every answer is in the top five: not worth a column
                top5 = f"  top-5 {100 * record['test_top5']:.2f}%" if test.num_classes > 5 else ""
                log(f"epoch {epoch:>3}/{epochs}  train loss {record['train_loss']:.4f}  test loss "
                    f"{record['test_loss']:.4f}  top-1 {100 * record['test_top1']:.2f}%{top5}  "
                    f"{record['seconds']:.1f} s")
            if on_epoch is not None:
                on_epoch(history)
    finally:
        parallel.finish()
    return history


def step(model: Module, optimizer, inputs, targets, global_rows: int, parallel=None) -> float:
    """One SGD step on this process's share (``inputs``, ``targets``: its rows, possibly none, on the model's
    device) of a global batch of ``global_rows`` samples: forward, the gradient of the global batch's mean
    cross-entropy, the parallel strategy's combination of the gradients, ``optimizer.step()``. Returns the global
    batch's summed loss."""
    parallel = parallel if parallel is not None else distributed.Local()
    model.begin_gradients()  # the backward writes the gradients: no pass zeroing them, none adding to the zeros
    loss = 0.0
    if len(targets):
        logits = model.forward(inputs)
        loss = float(F.cross_entropy(logits, targets, reduction="sum"))
        # each process's share of the gradient of the global batch's mean loss: the shares add up to it
        grad_logits, _ = F.cross_entropy_backward(1.0 / global_rows, logits, targets, reduction="sum")
        backward_without_input_grad(model, grad_logits)  # the input is data: no gradient needed
    else:
        parallel.skip_step(global_rows)
    model.end_gradients()
    loss = parallel.finish_gradients(loss)
    optimizer.step()
    return loss


def _train_epoch(model, train, test, epoch, epochs, batch_size, optimizer, shuffle, augment, parallel, device,
                 progress) -> dict:
    """One epoch of SGD steps and the evaluation after it: the epoch's record for the history."""
    started = time.perf_counter()
    show = parallel.is_writer and (sys.stderr.isatty() if progress is None else progress)
    bar = tqdm(total=math.ceil(len(train) / batch_size), desc=f"epoch {epoch}/{epochs}", unit="step", leave=False,
               disable=not show, file=sys.stderr)
    model.train()
    total, seen = 0.0, 0
    for number, rows in enumerate(batch_rows(len(train), batch_size, shuffle=True, rng=shuffle), 1):
        count = len(rows)
        mine = parallel.begin_step(count)
        if augment is not None:  # the whole global batch, so that every process draws what one process would
            inputs = augment(np.ascontiguousarray(train.inputs[rows]), shuffle)[mine]
        else:
            inputs = train.inputs[rows[mine]]
        targets = np.ascontiguousarray(train.targets[rows[mine]])
        loss = step(model, optimizer, _on(np.ascontiguousarray(inputs), device), _on(targets, device), count,
                    parallel)
        if not math.isfinite(loss):
            raise FloatingPointError(f"the training loss became {loss} in epoch {epoch}, step {number}; "
                                     f"lower the learning rate (lr={optimizer.lr})")
        total += loss
        seen += count
        bar.set_postfix(loss=f"{total / seen:.4f}", refresh=False)
        bar.update()
    bar.close()
    scores = evaluate(model, test, parallel=parallel)
    record = {"epoch": epoch, "train_loss": total / seen, "test_loss": scores["loss"], "test_top1": scores["top1"],
              "test_top5": scores["top5"], "seconds": time.perf_counter() - started, "lr": optimizer.lr,
              "processes": parallel.processes}
    if parallel.columns:
        record["columns"] = parallel.columns
    return record
