"""The ``nin`` command: shapes, params, resources, train, compare, predict, convert, bench.

Bad input ends with one line on stderr and exit status 2, never a framework traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .backends import BACKENDS, BackendUnavailable, check_backend_name, load_backend
from .report import format_table
from .spec import make_spec

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the user: reported as one line, exit status 2."""


# -- argument groups shared by several commands ---------------------------------------------

def _spec_arguments(parser: argparse.ArgumentParser, *, training: bool = False) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", choices=["nin", "alexnet"], default="nin")
    group.add_argument("--num-1x1", type=int, help="1x1 convolutions per NiN block (default 2)")
    group.add_argument("--dropout", type=float, help="dropout rate (default 0.5)")
    if not training:
        group.add_argument("--in-channels", type=int, help="input channels (default 1)")
        group.add_argument("--num-classes", type=int, help="classes (default 10)")


def _spec_options(args) -> dict:
    names = ["num_1x1", "dropout", "in_channels", "num_classes"]
    options = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    if args.model == "alexnet" and "num_1x1" in options:
        raise UsageError("--num-1x1 applies to NiN only")
    return options


def _spec(args):
    return make_spec(args.model, **_spec_options(args))


def _backends(value: str) -> list[str]:
    names = list(BACKENDS) if value == "all" else [name.strip() for name in value.split(",")]
    for name in names:
        try:
            check_backend_name(name)
        except ValueError as error:
            raise UsageError(f"{error} (or 'all')") from None
    return names


def _training_arguments(parser: argparse.ArgumentParser) -> None:
    from .runs import RunConfig

    defaults = RunConfig()
    _spec_arguments(parser, training=True)
    group = parser.add_argument_group("training (defaults: the quick CPU recipe; the book's is "
                                      "--size 224 --epochs 10 --optimizer sgd --lr 0.1 "
                                      "--train-limit 0 --test-limit 0)")
    group.add_argument("--epochs", type=int, default=defaults.epochs)
    group.add_argument("--lr", type=float, default=defaults.lr)
    group.add_argument("--batch-size", type=int, default=defaults.batch_size)
    group.add_argument("--size", type=int, default=defaults.size, help="input size in pixels")
    group.add_argument("--optimizer", choices=["adam", "sgd", "momentum"], default=defaults.optimizer)
    group.add_argument("--seed", type=int, default=defaults.seed)
    group.add_argument("--train-limit", type=int, default=defaults.train_limit,
                       help="train on the first N images (0: all 60,000)")
    group.add_argument("--test-limit", type=int, default=defaults.test_limit,
                       help="test on the first N images (0: all 10,000)")
    group.add_argument("--data-dir", help="folder of the four Fashion-MNIST IDX .gz files "
                                          "(default: $NIN_DATA_DIR or Debian's location)")
    group.add_argument("--out", help="run folder to create (default runs/<command>-<time>)")
    group.add_argument("--no-progress", action="store_true", help="no progress bars")


def _run_config(args):
    from .runs import RunConfig

    config = RunConfig(model=args.model, spec_options=_spec_options(args), epochs=args.epochs,
                       batch_size=args.batch_size, size=args.size, optimizer=args.optimizer,
                       lr=args.lr, seed=args.seed, train_limit=args.train_limit or None,
                       test_limit=args.test_limit or None, data_dir=args.data_dir)
    config.check()
    return config


# -- commands --------------------------------------------------------------------------------

def cmd_shapes(args) -> None:
    from .runs import shape_rows
    from .shapes import check_input_shape

    spec, backends = _spec(args), _backends(args.backend)
    input_shape = (args.batch, spec.in_channels, args.size, args.size)
    check_input_shape(spec, input_shape)
    rows = shape_rows(spec, input_shape, backends)
    print(f"{spec.describe()}: output shape of each layer for input {input_shape} (NCHW)")
    print(format_table(["layer", "analytic", *backends, "agree"], rows))
    _report_disagreement(rows)


def cmd_params(args) -> None:
    from .runs import param_rows

    spec, backends = _spec(args), _backends(args.backend)
    rows = param_rows(spec, backends)
    print(f"{spec.describe()}: parameters per layer")
    print(format_table(["layer", "analytic", *backends, "agree"], rows))
    _report_disagreement(rows)


def _report_disagreement(rows) -> None:
    bad = [row[0] for row in rows if not row[-1]]
    if bad:
        print(f"DISAGREEMENT in: {', '.join(bad)}")
        raise SystemExit(1)


def cmd_resources(args) -> None:
    from .resources import resources

    spec = make_spec(args.model, **{key: value for key, value in
                                    {"in_channels": args.in_channels}.items() if value})
    result = resources(spec, args.size, args.batch, bias=not args.no_bias)
    print(f"{spec.describe()} at {args.size}x{args.size}, batch {args.batch}, "
          f"{'with' if not args.no_bias else 'without'} biases, float32")
    print(result.table())
    print()
    print(result.summary())
    print()
    print(f"training memory ({args.optimizer}):")
    print(result.training_memory(args.optimizer).table())


def cmd_train(args) -> None:
    from .runs import new_run_dir, train_run

    config = _run_config(args)
    name = args.backend
    load_backend(name)
    out = new_run_dir(args.out, f"train-{name}")
    result = train_run(name, config, out, progress=False if args.no_progress else None)
    final = result.history[-1]
    print(f"test accuracy {final.test_accuracy:.4f} after {config.epochs} epochs; "
          f"run folder: {out}")


def cmd_compare(args) -> None:
    from .runs import compare, new_run_dir

    config = _run_config(args)
    backends = _backends(args.backends)
    for name in backends:
        load_backend(name)
    out = new_run_dir(args.out, "compare")
    report = compare(config, backends, out, progress=False if args.no_progress else None)
    print(f"report: {report}")


def _load_weights_into(backend, path: Path, spec_args):
    """A net of `backend` holding the weights in `path` (interchange .npz or native file)."""
    from .weights import load_weights

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"weights file {path} does not exist")
    if path.suffix == ".npz":
        stored = load_weights(path)
        net = backend.build_nin(stored.spec)
        backend.set_weights(net, stored.arrays)
        return net
    if not path.name.endswith(backend.NATIVE_SUFFIX):
        raise UsageError(f"{path.name}: expected a weights.npz or a {backend.BACKEND} native "
                         f"file (*{backend.NATIVE_SUFFIX})")
    spec = _spec_of_run(path) or _spec(spec_args)
    net = backend.build_nin(spec)
    try:
        backend.load_native(net, path)
    except Exception as error:  # each framework raises its own types; report them as one line
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"cannot load {path} as {backend.BACKEND} weights of "
                         f"{spec.describe()}: {first_line}") from None
    return net


def _spec_of_run(path: Path):
    """The spec recorded in the run folder's summary.json next to a native weights file."""
    from .spec import spec_from_dict

    summary = path.parent / "summary.json"
    if summary.is_file():
        try:
            return spec_from_dict(json.loads(summary.read_text())["spec"])
        except (ValueError, KeyError, TypeError):
            return None
    return None


def cmd_predict(args) -> None:
    import numpy as np

    from .data import load_fashion_mnist, to_model_input
    from .plots import plot_predictions

    backend = load_backend(args.backend)
    net = _load_weights_into(backend, Path(args.weights), args)
    if not 1 <= args.n <= 100:
        raise UsageError(f"--n must be between 1 and 100, got {args.n}")
    size = args.size or (net.spec.input_size if net.spec.fixed_input_size else
                         _run_size(Path(args.weights)) or 224)
    fashion = load_fashion_mnist(args.data_dir)
    images = fashion.test_images[:args.n]
    labels = fashion.test_labels[:args.n].astype(np.int64)
    predicted = backend.predict_logits(net, to_model_input(images, size)).argmax(axis=1)
    out = Path(args.out or Path(args.weights).with_name(f"predictions-{args.backend}.png"))
    if out.exists() and not args.force:
        raise UsageError(f"{out} exists; pass --force to replace it or choose another --out")
    plot_predictions(images, labels, predicted, out,
                     title=f"{backend.BACKEND}: {int((predicted == labels).sum())}/{args.n} right "
                           "(true / predicted)")
    print(f"{int((predicted == labels).sum())} of {args.n} right; grid: {out}")


def _run_size(path: Path) -> int | None:
    summary = path.parent / "summary.json"
    try:
        return int(json.loads(summary.read_text())["config"]["size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def cmd_convert(args) -> None:
    source, target = load_backend(getattr(args, "from")), load_backend(args.to)
    out = Path(args.output)
    if out.exists() and not args.force:
        raise UsageError(f"{out} exists; pass --force to replace it")
    net = _load_weights_into(source, Path(args.input), args)
    converted = target.build_nin(net.spec)
    target.set_weights(converted, source.get_weights(net))
    if out.suffix == ".npz":
        target.export_weights(converted, out)
    else:
        if not out.name.endswith(target.NATIVE_SUFFIX):
            raise UsageError(f"{out.name}: {args.to} weights are saved as *{target.NATIVE_SUFFIX} "
                             "(or give a .npz for the interchange format)")
        target.save_native(converted, out)
    print(f"{net.spec.describe()}: {args.input} ({getattr(args, 'from')}) -> {out} ({args.to})")


def cmd_bench(args) -> None:
    from .bench import run_bench

    run_bench(_backends(args.backends), sizes=args.size, batch_size=args.batch,
              steps=args.steps, out=args.out)


# -- parser ----------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nin", description="Network in Network (d2l 7.3) in PyTorch, MXNet Gluon and Keras 3.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, function, help_text):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(function=function)
        return sub

    for name, function, text in [("shapes", cmd_shapes, "layer output shapes, side by side"),
                                 ("params", cmd_params, "parameters per layer, side by side")]:
        sub = add(name, function, text + " with the analytic column from common")
        sub.add_argument("--backend", default="all", help="torch, mxnet, tf, a comma list or all")
        sub.add_argument("--size", type=int, default=224)
        if name == "shapes":
            sub.add_argument("--batch", type=int, default=1)
        _spec_arguments(sub)

    sub = add("resources", cmd_resources,
              "parameters, FLOPs and memory per layer, from the spec alone (exercise 3)")
    sub.add_argument("--model", choices=["nin", "alexnet"], default="nin")
    sub.add_argument("--size", type=int, default=224)
    sub.add_argument("--batch", type=int, default=128)
    sub.add_argument("--in-channels", type=int, default=1)
    sub.add_argument("--no-bias", action="store_true", help="count weights only")
    sub.add_argument("--optimizer", choices=["sgd", "momentum", "adam"], default="sgd",
                     help="optimizer whose state the training memory includes")

    sub = add("train", cmd_train, "train one backend on Fashion-MNIST")
    sub.add_argument("--backend", required=True, choices=list(BACKENDS))
    _training_arguments(sub)

    sub = add("compare", cmd_compare,
              "the parity run: train every backend with the same data order, seed and recipe")
    sub.add_argument("--backends", default="all", help="comma list or all (default)")
    _training_arguments(sub)

    sub = add("predict", cmd_predict, "a PNG grid of test images with true and predicted labels")
    sub.add_argument("--backend", required=True, choices=list(BACKENDS))
    sub.add_argument("--weights", required=True, help="weights.npz or the backend's native file")
    sub.add_argument("--n", type=int, default=10)
    sub.add_argument("--size", type=int, help="input size (default: the run's)")
    sub.add_argument("--data-dir")
    sub.add_argument("--out", help="PNG to write (default: next to the weights)")
    sub.add_argument("--force", action="store_true", help="replace --out if it exists")
    _spec_arguments(sub)

    sub = add("convert", cmd_convert, "turn one framework's weights into another's native format")
    sub.add_argument("--from", required=True, choices=list(BACKENDS))
    sub.add_argument("--to", required=True, choices=list(BACKENDS))
    sub.add_argument("input", help="weights.npz or the source framework's native file")
    sub.add_argument("output", help="the target's native file, or .npz")
    sub.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    _spec_arguments(sub)

    sub = add("bench", cmd_bench, "training and inference throughput of each backend")
    sub.add_argument("--backends", default="all")
    sub.add_argument("--size", type=int, nargs="+", default=[67, 224])
    sub.add_argument("--batch", type=int, default=64)
    sub.add_argument("--steps", type=int, default=5)
    sub.add_argument("--out", help="also write the table (Markdown) to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    from .data import DatasetError
    from .training import TrainingDiverged
    from .weights import WeightsError

    args = build_parser().parse_args(argv)
    try:
        args.function(args)
    except (UsageError, ValueError, BackendUnavailable, DatasetError, WeightsError) as error:
        print(f"nin {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except TrainingDiverged as error:
        print(f"nin {args.command}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"nin {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
