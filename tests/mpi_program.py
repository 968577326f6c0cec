"""Programs that tests/test_distributed.py starts with and without mpiexec; each prints one JSON line on rank 0.

    python tests/mpi_program.py fit OUT EPOCHS [--resume] [--dtype float32|float64]
        a small model with local response normalisation and two dropout layers, trained by train.fit on 97
        samples with a global batch of 16 (the last batch has one sample, so some processes get none), in
        gradient buckets of 1 KiB (several buckets); checkpoints in OUT
    python tests/mpi_program.py steps OUT.npy
        LeNet-5 in float32 on the first 30 batches of the MNIST subset (the recipe's augmentation, global batch 32):
        every parameter after each step, saved by rank 0
    python tests/mpi_program.py columns DTYPE
        AlexNet (67x67 images) split into columns against the one-process groups=2 model: forward logits and
        every parameter gradient, as the largest relative difference
    python tests/mpi_program.py raise OUT
        train.fit where rank 1 raises in on_epoch after the first epoch
"""
import json
import sys

import numpy as np

from numconv import distributed, functional as F, layers, models, optim, train
from numconv.data import Dataset


def _small_model(dtype):
    rng = np.random.default_rng(5)
    return layers.Sequential(
        layers.Conv2d(3, 8, 3, rng=rng, dtype=dtype), layers.ReLU(), layers.LocalResponseNorm(3, k=2.0),
        layers.MaxPool2d(2), layers.Flatten(), layers.Dropout(0.5, rng=rng),
        layers.Linear(8 * 5 * 5, 16, rng=rng, dtype=dtype), layers.ReLU(), layers.Dropout(0.3, rng=rng),
        layers.Linear(16, 4, rng=rng, dtype=dtype),
    )


def _small_data(dtype):
    rng = np.random.default_rng(11)
    inputs = rng.standard_normal((97 + 40, 3, 12, 12)).astype(dtype)
    targets = (inputs[:, 0, :6].mean(axis=(1, 2)) > 0).astype(np.int64) * 2 + (inputs[:, 1].mean(axis=(1, 2)) > 0)
    return (Dataset(inputs[:97], targets[:97], 4, "small/train"), Dataset(inputs[97:], targets[97:], 4, "small/test"))


def fit(out, epochs, resume=False, dtype="float64"):
    dtype = np.dtype(dtype)
    model = _small_model(dtype)
    train_set, test_set = _small_data(dtype)
    optimizer = optim.SGD(model, lr=0.02, momentum=0.9, weight_decay=1e-3, nesterov=True)
    world = distributed.world()
    parallel = distributed.DataParallel(world, bucket_bytes=1024) if world.size > 1 else None
    history = train.fit(model, train_set, test_set, epochs=epochs, batch_size=16, optimizer=optimizer, seed=2,
                        out_dir=out, resume=resume, progress=False, parallel=parallel)
    if world.rank == 0:
        buckets = len(parallel.buckets.buffers) if parallel else 0
        print(json.dumps({"history": history, "buckets": buckets}))


def steps(out):
    from numconv import data

    whole, test_set = data.mnist_subset()
    train_set = Dataset(whole.inputs[:30 * 32], whole.targets[:30 * 32], 10, "first 30 batches")
    model = models.lenet5(rng=np.random.default_rng(0))
    optimizer = optim.SGD(model, lr=0.01, momentum=0.9, weight_decay=5e-4, nesterov=True)
    trajectory = []
    step = optimizer.step

    def recorded_step():
        step()
        trajectory.append(np.concatenate([p.reshape(-1) for p in model.parameters()]))

    optimizer.step = recorded_step
    train.fit(model, train_set, Dataset(test_set.inputs[:10], test_set.targets[:10], 10, "few"), epochs=1,
              batch_size=32, optimizer=optimizer, progress=False, augment=data.random_shift(2))
    if distributed.world().rank == 0:
        np.save(out, np.array(trajectory))


def columns(dtype):
    dtype = np.dtype(dtype)
    world = distributed.world()
    rng = np.random.default_rng(3)
    inputs = rng.standard_normal((3, 3, 67, 67)).astype(dtype)
    targets = np.array([1, 7, 2])

    def forward_backward(model):
        model.train()
        model.zero_grad()
        logits = model.forward(inputs)
        model.backward(F.cross_entropy_backward(1.0, logits, targets)[0], needs_input_grad=False)
        return logits, [np.array(g) for g in model.gradients()]

    def build():  # He initialisation: with the paper's, the logits hardly depend on the input
        return models.alexnet(num_classes=10, rng=7, dtype=dtype, paper_init=False, image_size=67)

    whole_logits, whole_grads = forward_backward(build())
    split = distributed.split_columns(build(), world)
    split_logits, split_grads = forward_backward(split)
    errors = {"logits": float(np.abs(split_logits - whole_logits).max() / np.abs(whole_logits).max())}
    for index, (name, grad) in enumerate(zip([n for n, _ in split.named_parameters()], split_grads)):
        want = whole_grads[index][split._rows(index)]
        errors[name] = float(np.abs(grad - want).max() / max(np.abs(whole_grads[index]).max(), 1e-300))
    gathered = world.comm.gather(errors, root=0)
    state = split.full_state_dict()
    if world.rank == 0:
        same_state = all(np.array_equal(state[key], value) for key, value in build().state_dict().items())
        joins = [name for name, layer in split._layers.items() if isinstance(layer, distributed.ColumnGather)]
        print(json.dumps({"errors": gathered, "state_is_whole_model": same_state, "joins": joins}))


def fail_on_rank_one(out):
    model = _small_model(np.float64)
    train_set, test_set = _small_data(np.float64)
    optimizer = optim.SGD(model, lr=0.05)

    def on_epoch(history):
        world = distributed.world()
        world.comm.Barrier()  # rank 0 runs this after writing its checkpoint: the failure comes once it is whole
        if world.rank == 1:
            raise RuntimeError("a deliberate failure on rank 1")

    train.fit(model, train_set, test_set, epochs=3, batch_size=16, optimizer=optimizer, out_dir=out,
              progress=False, on_epoch=on_epoch)


if __name__ == "__main__":
    command, arguments = sys.argv[1], sys.argv[2:]
    if command == "fit":
        dtype = arguments[arguments.index("--dtype") + 1] if "--dtype" in arguments else "float64"
        fit(arguments[0], int(arguments[1]), resume="--resume" in arguments, dtype=dtype)
    elif command == "steps":
        steps(arguments[0])
    elif command == "columns":
        columns(arguments[0])
    elif command == "raise":
        fail_on_rank_one(arguments[0])
    else:
        raise SystemExit(f"unknown program {command!r}")
