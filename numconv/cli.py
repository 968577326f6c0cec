"""The ``numconv`` command: train, evaluate, summary, explain.

``numconv train`` with no arguments trains LeNet-5 on the embedded MNIST subset and writes, in its output
directory, metrics.json, checkpoint.npz, filters.png (the first layer's learned filters) and curves.png.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from numconv import backend, data, models, optim, viz
from numconv.train import CHECKPOINT, evaluate, fit, load_checkpoint

#: default data set and training recipe per model; command-line flags override them
RECIPES = {
    "lenet5": dict(data="mnist", epochs=10, batch_size=32, lr=0.01, lr_step=7, shift=2),
    "nin": dict(data="mnist", epochs=10, batch_size=32, lr=0.01, lr_step=7, shift=2),
    "alexnet": dict(data=None, epochs=90, batch_size=128, lr=0.01, lr_step=30, shift=0),
    "m5": dict(data="speech", epochs=10, batch_size=32, lr=0.01, lr_step=7, shift=0),
    "c3d_small": dict(data="clips", epochs=10, batch_size=32, lr=0.01, lr_step=7, shift=0),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="numconv", description="Convolutional networks compiled by Numba.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model (default: LeNet-5 on the embedded MNIST subset)")
    train.add_argument("--model", choices=sorted(models.MODELS), default="lenet5")
    train.add_argument("--data", help=f"one of {', '.join(data.DATASET_SPECS)} (default: the model's own)")
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--lr", type=float, help="learning rate, divided by 10 every few epochs (the recipe's)")
    train.add_argument("--momentum", type=float, default=0.9)
    train.add_argument("--weight-decay", type=float, default=5e-4)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", type=Path, help="output directory (default: runs/MODEL)")
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    train.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                       help="where the model trains: cpu (default) or cuda (an NVIDIA GPU)")
    train.add_argument("--quiet", action="store_true", help="no per-epoch lines")

    evaluate_cmd = commands.add_parser("evaluate", help="evaluate a trained checkpoint on its test set")
    evaluate_cmd.add_argument("--out", type=Path, help="the training run's directory (default: runs/lenet5)")
    evaluate_cmd.add_argument("--data", help="evaluate on another data set of the same shape")
    evaluate_cmd.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the model runs")

    summary = commands.add_parser("summary", help="print a model's layers, output shapes and parameters")
    summary.add_argument("model", choices=sorted(models.MODELS))
    summary.add_argument("--input", help="input shape without the batch axis, e.g. 3x227x227")

    commands.add_parser("explain", help="print a layer's window equations (python -m spec explain …)",
                        add_help=False)
    return parser


def _check_device(device: str) -> None:
    """Stop at once, before any data is read, when ``--device cuda`` cannot run here."""
    if device == "cpu":
        return
    try:
        backend.kernels("cuda")
    except RuntimeError as error:
        raise SystemExit(f"numconv: --device cuda needs an NVIDIA GPU with its driver and the numba-cuda package "
                         f"(pip install 'numconv[cuda]'): {error}")


def _build(model_name: str, train_set: data.Dataset, seed: int):
    model = models.MODELS[model_name](num_classes=train_set.num_classes, in_channels=train_set.inputs.shape[1],
                                      rng=np.random.default_rng(seed))
    sample = (1,) + train_set.inputs.shape[1:]
    try:
        shape = model.output_shape(sample)
    except ValueError as error:
        raise SystemExit(f"numconv: {model_name} cannot take inputs of shape {sample[1:]} from data set "
                         f"{train_set.name!r} ({error}); it expects {models.INPUT_SHAPES[model_name]}")
    if shape != (1, train_set.num_classes):
        raise SystemExit(f"numconv: {model_name} maps inputs of shape {sample[1:]} to {shape[1:]}, not to "
                         f"{train_set.num_classes} classes; it expects {models.INPUT_SHAPES[model_name]}")
    return model


def _first_weight(model) -> np.ndarray:
    return backend.to_host(next(array for name, array in model.named_parameters() if name.endswith("weight")))


def _train(args) -> int:
    _check_device(args.device)
    recipe = dict(RECIPES[args.model])
    spec = args.data or recipe["data"]
    if spec is None:
        raise SystemExit(f"numconv: {args.model} has no built-in data set of its input shape "
                         f"{models.INPUT_SHAPES[args.model]}; pass --data idx:DIR with such images")
    for name in ("epochs", "batch_size", "lr"):
        if getattr(args, name) is not None:
            recipe[name] = getattr(args, name)
    out = args.out or Path("runs") / args.model
    meta = {"model": args.model, "data": spec, "seed": args.seed}
    try:
        train_set, test_set = data.load(spec, seed=args.seed)
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"numconv: {error}")
    model = _build(args.model, train_set, args.seed).to(args.device)
    optimizer = optim.SGD(model, lr=recipe["lr"], momentum=args.momentum, weight_decay=args.weight_decay,
                          nesterov=args.momentum > 0)
    scheduler = optim.StepLR(optimizer, step_size=recipe["lr_step"], gamma=0.1)
    augment = data.random_shift(recipe["shift"]) if recipe["shift"] else None
    log = None if args.quiet else print
    if log:
        log(f"training {args.model} ({model.num_parameters():,} parameters) on {spec}: {len(train_set)} train, "
            f"{len(test_set)} test, {recipe['epochs']} epochs, batch {recipe['batch_size']} -> {out}")

    def write_pictures(history):
        viz.save_filters(out / "filters.png", _first_weight(model))
        viz.save_curves(out / "curves.png", history)

    try:
        history = fit(model, train_set, test_set, epochs=recipe["epochs"], batch_size=recipe["batch_size"],
                      optimizer=optimizer, scheduler=scheduler, seed=args.seed, out_dir=out, resume=args.resume,
                      log=log, meta=meta, on_epoch=write_pictures, augment=augment)
    except (FileNotFoundError, ValueError, FloatingPointError) as error:
        raise SystemExit(f"numconv: {error}")
    if history and log:
        last = history[-1]
        log(f"test top-1 {100 * last['test_top1']:.2f}%, top-5 {100 * last['test_top5']:.2f}%; "
            f"wrote {out / 'metrics.json'}, {out / CHECKPOINT}, {out / 'filters.png'}, {out / 'curves.png'}")
    return 0


def _evaluate(args) -> int:
    _check_device(args.device)
    out = args.out or Path("runs") / "lenet5"
    try:
        state = load_checkpoint(out / CHECKPOINT)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"numconv: {error}")
    meta = state["meta"]
    _, test_set = data.load(args.data or meta["data"], seed=meta["seed"])
    model = _build(meta["model"], test_set, meta["seed"]).to(args.device)
    model.load_state_dict(state["model"])
    scores = evaluate(model, test_set)
    print(json.dumps({"model": meta["model"], "data": args.data or meta["data"], **scores}))
    return 0


def _summary(args) -> int:
    shape = models.INPUT_SHAPES[args.model]
    if args.input:
        try:
            shape = tuple(int(v) for v in args.input.lower().split("x"))
        except ValueError:
            raise SystemExit(f"numconv: --input must look like 3x227x227, got {args.input!r}")
    model = models.MODELS[args.model](in_channels=shape[0], rng=0)
    try:
        models.summary(model, shape, file=sys.stdout)
    except ValueError as error:
        raise SystemExit(f"numconv: {args.model} cannot take input {shape}: {error}")
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "explain":
        # the equations live in the spec package, shipped beside numconv; imported only for this command
        from spec.render import main as explain

        return explain(argv[1:])
    args = _parser().parse_args(argv)
    return {"train": _train, "evaluate": _evaluate, "summary": _summary}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
