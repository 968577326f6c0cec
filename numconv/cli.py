"""The ``numconv`` command: train, evaluate, summary, explain.

``numconv train`` with no arguments trains LeNet-5 on the embedded MNIST subset and writes, in its output
directory, metrics.json, checkpoint.npz, filters.png (the first layer's learned filters) and curves.png.
"""
from __future__ import annotations

import argparse
import inspect
import json
import math
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from numba.core import event

from numconv import backend, data, distributed, models, optim, viz
from numconv.files import atomic_write
from numconv.train import CHECKPOINT, EVALUATION_BATCH, evaluate, fit, load_checkpoint

#: default data set and training recipe per model; command-line flags override them
RECIPES = {
    "lenet5": dict(data="mnist", epochs=10, batch_size=32, lr=0.01, lr_step=7, shift=2),
    "nin": dict(data="mnist", epochs=10, batch_size=32, lr=0.01, lr_step=7, shift=2),
    # He initialisation: from the paper's N(0, 0.01) weights (made for 1.2 million images at batch 128) AlexNet stays
    # at chance for the first epochs on a few hundred images, at lr 0.01 and at 0.003; conv1 starts near zero, so
    # that the filters it learns in ten epochs, not its random start, are what filters.png shows
    "alexnet": dict(data="shapes", epochs=10, batch_size=32, lr=0.003, lr_step=7, shift=0,
                    model={"paper_init": False, "first_layer_scale": 0.01}),
    "m5": dict(data="speech", epochs=10, batch_size=32, lr=0.01, lr_step=7, shift=0),
    "c3d_small": dict(data="clips", epochs=10, batch_size=32, lr=0.01, lr_step=7, shift=0),
}


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line, the command, the flag, its value and why, with exit status 2 (without
    the usage, which ``--help`` prints)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _flag_error(command: str, flag: str, message: str):
    """A bad flag found after parsing: one line, as argparse's, and exit status 2."""
    sys.stderr.write(f"numconv {command}: error: argument {flag}: {message}\n")
    raise SystemExit(2)


def _number(kind, minimum, strictly_above=False):
    """An argparse type: a finite ``kind`` (int or float) of at least ``minimum`` (above it, if ``strictly_above``)."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}")
        if not math.isfinite(value) or value < minimum or (strictly_above and value == minimum):
            bound = f"above {minimum}" if strictly_above else f"at least {minimum}"
            raise argparse.ArgumentTypeError(f"must be a finite number {bound}, got {text!r}")
        return value

    return parse


def _shape(text):
    """An argparse type: a sample shape such as 3x227x227 (positive sizes)."""
    try:
        shape = tuple(int(size) for size in text.lower().split("x"))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"must look like 3x227x227, got {text!r}")
    return shape


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="numconv", description="Convolutional networks compiled by Numba.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model (default: LeNet-5 on the embedded MNIST subset)")
    train.add_argument("--model", choices=sorted(models.MODELS), default="lenet5")
    train.add_argument("--data", help=f"one of {', '.join(data.DATASET_SPECS)} (default: the model's own)")
    train.add_argument("--epochs", type=_number(int, 1))
    train.add_argument("--batch-size", type=_number(int, 1))
    train.add_argument("--lr", type=_number(float, 0.0, strictly_above=True),
                       help="learning rate, divided by 10 every few epochs (the recipe's)")
    train.add_argument("--momentum", type=_number(float, 0.0), default=0.9)
    train.add_argument("--weight-decay", type=_number(float, 0.0), default=5e-4)
    train.add_argument("--seed", type=_number(int, 0), default=0)
    train.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                       help="the precision of the weights and the data (default float32)")
    train.add_argument("--out", type=Path, help="output directory (default: runs/MODEL)")
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    train.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                       help="where the model trains: cpu (default) or cuda (an NVIDIA GPU)")
    train.add_argument("--columns", type=_number(int, 1), default=1,
                       help="split every layer's filters into this many columns, one per MPI process (AlexNet's "
                            "two-GPU model parallelism: mpiexec -n 2 numconv train --model alexnet --columns 2)")
    train.add_argument("--quiet", action="store_true", help="no per-epoch lines")

    evaluate_cmd = commands.add_parser("evaluate", help="evaluate a trained checkpoint on its test set")
    evaluate_cmd.add_argument("--out", type=Path, help="the training run's directory (default: runs/lenet5)")
    evaluate_cmd.add_argument("--data", help="evaluate on another data set of the same shape")
    evaluate_cmd.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the model runs")

    summary = commands.add_parser("summary", help="print a model's layers, output shapes and parameters")
    summary.add_argument("model", choices=sorted(models.MODELS))
    summary.add_argument("--input", type=_shape, help="input shape without the batch axis, e.g. 3x227x227")

    run = commands.add_parser("run", help="run an ONNX model on numconv's kernels (needs numconv[onnx])")
    run.add_argument("model", type=Path, help="the .onnx file")
    run.add_argument("--input", type=Path, required=True, help="a .npy file holding the model's (first) input")
    run.add_argument("--output", type=Path, help="write the first output here (.npy); default: print a summary only")
    run.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the model runs")

    export = commands.add_parser("export", help="write a model to an ONNX file (needs numconv[onnx])")
    source = export.add_mutually_exclusive_group()
    source.add_argument("--run", type=Path, help="a training run's directory: its trained model (default: "
                                                  "runs/lenet5)")
    source.add_argument("--model", choices=sorted(models.MODELS), help="a zoo model with fresh weights instead")
    export.add_argument("--output", type=Path, help="the .onnx file (default: RUN/model.onnx, or MODEL.onnx)")

    commands.add_parser("explain", help="print a layer's window equations (python -m spec explain …)",
                        add_help=False)
    return parser


def _world() -> distributed.World:
    """The processes of this run (one, or those an MPI launcher started), or a SystemExit saying why not."""
    try:
        return distributed.world()
    except RuntimeError as error:
        raise SystemExit(f"numconv: {error}")


def _check_device(command: str, device: str, world: distributed.World) -> None:
    """Stop at once, before any data is read, when ``--device cuda`` cannot run here; under MPI, give each
    process its GPU."""
    if device == "cpu":
        return
    try:
        backend.kernels("cuda")
        distributed.bind_device(world, device)
    except RuntimeError as error:
        _flag_error(command, "--device", f"cuda needs an NVIDIA GPU with its driver and the numba-cuda package "
                                         f"(pip install 'numconv[cuda]'): {error}")
    except ValueError as error:
        _flag_error(command, "--device", str(error))


def _check_columns(columns: int, world: distributed.World) -> None:
    if columns > 1 and world.size != columns:
        _flag_error("train", "--columns", f"{columns} columns need {columns} MPI processes, one per column "
                                          f"(mpiexec -n {columns} numconv train ... --columns {columns}); this "
                                          f"run has {world.size}")


def _load_data(command: str, spec: str, seed: int, dtype):
    """(train, test) of data set ``spec`` in ``dtype``; a bad name or a missing file is a --data error."""
    try:
        return tuple(data.as_dtype(part, dtype) for part in data.load(spec, seed=seed))
    except (ValueError, FileNotFoundError) as error:
        _flag_error(command, "--data", str(error))


def _build(command: str, model_name: str, train_set: data.Dataset, seed: int):
    build = models.MODELS[model_name]
    options = dict(RECIPES[model_name].get("model", {}))
    if "image_size" in inspect.signature(build).parameters and train_set.inputs.ndim == 4:
        options["image_size"] = train_set.inputs.shape[-1]  # AlexNet's fc6 follows the images' size
    sample = (1,) + train_set.inputs.shape[1:]
    try:
        model = build(num_classes=train_set.num_classes, in_channels=train_set.inputs.shape[1],
                      rng=np.random.default_rng(seed), dtype=train_set.inputs.dtype, **options)
        shape = model.output_shape(sample)
    except ValueError as error:
        _flag_error(command, "--data", f"{model_name} cannot take inputs of shape {sample[1:]} from data set "
                                       f"{train_set.name!r} ({error}); it expects {models.INPUT_SHAPES[model_name]}")
    if shape != (1, train_set.num_classes):
        _flag_error(command, "--data", f"{model_name} maps inputs of shape {sample[1:]} to {shape[1:]}, not to "
                                       f"{train_set.num_classes} classes; it expects "
                                       f"{models.INPUT_SHAPES[model_name]}")
    return model


def _first_weight_name(model) -> str:
    return next(name for name, _ in model.named_parameters() if name.endswith("weight"))


def _filter_blocks(model) -> int:
    """Into how many blocks the first layer's filters fall: the groups of the next convolution, which sees each
    block apart (AlexNet's two columns: groups=2 on conv2), else 1."""
    convolutions = [layer for _, layer in model.named_layers() if hasattr(layer, "groups") and layer.parameters()]
    return convolutions[1].groups if len(convolutions) > 1 else 1


#: what a first run says, once, before it compiles
COMPILING = ("compiling numconv's kernels for this machine: the first run takes longer; later runs load them from "
             "the cache")


class _CompileNotice(event.Listener):
    """Says :data:`COMPILING` through ``log`` once one of numconv's kernels has compiled (or when other processes
    start compiling them: :func:`_first_run_kernels`)."""

    def __init__(self, log):
        self.log = log
        self.said = False

    def say(self):
        if not self.said:
            self.said = True
            self.log(COMPILING)

    def on_start(self, ev):
        pass

    def on_end(self, ev):
        # a compilation that succeeded: typing first without literal values, which a kernel asking for them
        # abandons at once in every process, does not count
        if _compiled(ev) and ev.data["dispatcher"].py_func.__module__.startswith("numconv."):
            self.say()


def _compiled(ev) -> bool:
    """Whether the compilation that the end event ``ev`` closes produced a version of its function."""
    return tuple(ev.data["args"]) in ev.data["dispatcher"].overloads


@contextmanager
def _first_run_kernels(device: str, dtype: str, world: distributed.World, log, model: str | None = None,
                       batch: int | None = None, evaluation_batch: int | None = None):
    """While the block runs: on a first run (Numba's cache empty), the CPU kernels (those of the zoo's ``model``,
    training on batches of ``batch`` and evaluating on batches of ``evaluation_batch``) compile in other processes
    while this one goes on, and ``log`` is told once that kernels are being compiled."""
    notice = _CompileNotice(log) if log else None
    if notice:
        event.register("numba:compile", notice)
    try:
        # with several processes, each would start its own: they already share the cores
        if device == "cpu" and world.size == 1:
            from numconv.kernels.cpu import launch

            if launch.compile_ahead(dtype, model, batch, evaluation_batch) and notice:
                notice.say()
        yield
    finally:
        if notice:
            event.unregister("numba:compile", notice)


def _train(args) -> int:
    world = _world()
    _check_columns(args.columns, world)
    _check_device("train", args.device, world)
    recipe = dict(RECIPES[args.model])
    spec = args.data or recipe["data"]
    for name in ("epochs", "batch_size", "lr"):
        if getattr(args, name) is not None:
            recipe[name] = getattr(args, name)
    out = args.out or Path("runs") / args.model
    if out.exists() and not out.is_dir():
        _flag_error("train", "--out", f"{str(out)!r} is a file, not a directory")
    if args.columns == 1 and recipe["batch_size"] < world.size:
        _flag_error("train", "--batch-size", f"{recipe['batch_size']} is smaller than the {world.size} processes "
                                             f"that share each batch (it is the global batch)")
    meta = {"model": args.model, "data": spec, "seed": args.seed}
    if args.dtype != "float32":  # float32 runs keep the meta of the checkpoints written before --dtype existed
        meta["dtype"] = args.dtype
    train_set, test_set = _load_data("train", spec, args.seed, args.dtype)
    model = _build("train", args.model, train_set, args.seed)
    parameters = model.num_parameters()
    first_weight = _first_weight_name(model)
    filter_blocks = _filter_blocks(model)
    if args.columns > 1:
        try:
            model = distributed.split_columns(model, world)
        except ValueError as error:
            _flag_error("train", "--columns", f"{args.columns}: {error}")
    model.to(args.device)
    parallel = distributed.strategy(model)
    optimizer = optim.SGD(model, lr=recipe["lr"], momentum=args.momentum, weight_decay=args.weight_decay,
                          nesterov=args.momentum > 0)
    scheduler = optim.StepLR(optimizer, step_size=recipe["lr_step"], gamma=0.1)
    augment = data.random_shift(recipe["shift"]) if recipe["shift"] else None
    log = None if args.quiet or not parallel.is_writer else print
    if log:
        how = ""
        if world.size > 1:
            how = f", {args.columns} columns" if args.columns > 1 else f", data parallel on {world.size} processes"
        epochs = f"{recipe['epochs']} epoch{'s' if recipe['epochs'] != 1 else ''}"
        log(f"training {args.model} ({parameters:,} parameters) on {spec}: {len(train_set)} train, "
            f"{len(test_set)} test, {epochs}, batch {recipe['batch_size']}{how} -> {out}")

    top5 = train_set.num_classes > 5  # with five classes or fewer every answer is in the top five

    def write_pictures(history):
        weight = parallel.full_parameter(model, first_weight)  # every process takes part; the writer gets it
        if parallel.is_writer:
            viz.save_filters(out / "filters.png", weight, blocks=filter_blocks,
                             title=f"{args.model} {first_weight.rsplit('.', 1)[0]}: {weight.shape[0]} filters "
                                   f"{'x'.join(map(str, weight.shape[1:]))}")
            viz.save_curves(out / "curves.png", history, top5=top5)

    try:
        with _first_run_kernels(args.device, args.dtype, world, log, args.model, recipe["batch_size"],
                                min(EVALUATION_BATCH, len(test_set))):
            history = fit(model, train_set, test_set, epochs=recipe["epochs"], batch_size=recipe["batch_size"],
                          optimizer=optimizer, scheduler=scheduler, seed=args.seed, out_dir=out, resume=args.resume,
                          log=log, meta=meta, on_epoch=write_pictures, augment=augment, parallel=parallel)
    except (FileNotFoundError, ValueError) as error:  # the checkpoint that --resume names
        _flag_error("train", "--resume", str(error))
    except FloatingPointError as error:
        raise SystemExit(f"numconv train: {error}")
    if history and log:
        last = history[-1]
        scores = f"test top-1 {100 * last['test_top1']:.2f}%" + (
            f", top-5 {100 * last['test_top5']:.2f}%" if top5 else "")
        log(f"{scores}; wrote {out / 'metrics.json'}, {out / CHECKPOINT}, {out / 'filters.png'}, "
            f"{out / 'curves.png'}")
    return 0


def _trained(command: str, flag: str, out, data_spec=None) -> tuple:
    """(model with its trained weights, on the host; the test set, of ``data_spec`` or the run's own data; the
    run's meta) of the training run in ``out`` (default runs/lenet5); a missing or bad checkpoint is a ``flag``
    error."""
    out = out or Path("runs") / "lenet5"
    try:
        state = load_checkpoint(out / CHECKPOINT)
    except (FileNotFoundError, ValueError) as error:
        _flag_error(command, flag, str(error))
    meta = state["meta"]
    _, test_set = _load_data(command, data_spec or meta["data"], meta["seed"], meta.get("dtype", "float32"))
    model = _build(command, meta["model"], test_set, meta["seed"])
    model.load_state_dict(state["model"])
    return model, test_set, meta


def _evaluate(args) -> int:
    world = _world()
    _check_device("evaluate", args.device, world)
    model, test_set, meta = _trained("evaluate", "--out", args.out, args.data)
    model.to(args.device)
    parallel = distributed.strategy(model)  # several processes share the test set
    scores = evaluate(model, test_set, parallel=parallel)
    if parallel.is_writer:
        print(json.dumps({"model": meta["model"], "data": args.data or meta["data"], **scores}))
    return 0


def _summary(args) -> int:
    shape = args.input or models.INPUT_SHAPES[args.model]
    try:
        models.summary(models.MODELS[args.model](in_channels=shape[0], rng=0), shape, file=sys.stdout)
    except ValueError as error:
        _flag_error("summary", "--input", f"{args.model} cannot take input {'x'.join(map(str, shape))}: {error}")
    return 0


def _onnx(command: str):
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise SystemExit(f"numconv {command}: needs the onnx package: pip install 'numconv[onnx]'")
    import numconv.onnx

    return numconv.onnx


def _run(args) -> int:
    onnx = _onnx("run")
    try:
        session = onnx.load(args.model)
    except (ValueError, TypeError) as error:
        _flag_error("run", "model", f"{args.model}: {error}")
    except Exception as error:  # a file that is not an ONNX model: protobuf's decoding error
        _flag_error("run", "model", f"{args.model} is not a readable ONNX model ({type(error).__name__}: {error})")
    try:
        x = np.load(args.input, allow_pickle=False)
    except (OSError, ValueError) as error:
        _flag_error("run", "--input", f"{args.input}: {error}")
    if args.device == "cuda":
        _check_device("run", args.device, _world())
        x = backend.to_device(np.ascontiguousarray(x))
    name = session.get_inputs()[0].name
    try:
        outputs = session.run(None, {name: x})
    except (ValueError, TypeError) as error:
        _flag_error("run", "--input", f"{args.input}: {error}")
    first = backend.to_host(outputs[0]) if backend.is_device_array(outputs[0]) else np.asarray(outputs[0])
    if args.output is not None:
        atomic_write(args.output, lambda file: np.save(file, first))
    described = {"output": session.get_outputs()[0].name, "shape": list(first.shape)}
    if first.ndim == 2:
        described["argmax"] = first.argmax(axis=1).tolist()
    print(json.dumps(described))
    return 0


def _export(args) -> int:
    onnx = _onnx("export")
    if args.model:
        shape = (1,) + tuple(models.INPUT_SHAPES[args.model])
        model, output = models.MODELS[args.model](rng=0), args.output or Path(f"{args.model}.onnx")
    else:
        model, test_set, _ = _trained("export", "--run", args.run)
        shape = (1,) + test_set.inputs.shape[1:]
        output = args.output or (args.run or Path("runs") / "lenet5") / "model.onnx"
    model.eval()
    onnx.export(model, output, shape)
    print(f"wrote {output} (input 'input' of shape N x {' x '.join(map(str, shape[1:]))}, output 'output')")
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "explain":
        # the equations live in the spec package, shipped beside numconv; imported only for this command
        from spec.render import main as explain

        return explain(argv[1:])
    args = _parser().parse_args(argv)
    try:
        return {"train": _train, "evaluate": _evaluate, "summary": _summary, "run": _run,
                "export": _export}[args.command](args)
    except SystemExit as stop:
        distributed.end_all(stop)  # with several processes running, stopping one must stop them all
        raise


if __name__ == "__main__":
    sys.exit(main())
