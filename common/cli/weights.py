"""``nin predict`` and ``nin convert``: trained weights, in any framework or in onnxruntime.

CLI layer.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..backends import BACKENDS, load_backend
from .common import UsageError, add_spec_arguments, spec_from_args, whole


def load_weights_into(backend, path: Path, spec_args):
    """A net of `backend` holding the weights in `path` (interchange .npz or native file)."""
    from ..weights import load_weights

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"weights file {path} does not exist")
    if path.suffix == ".npz":
        stored = load_weights(path)
        net = backend.build_nin(stored.spec)
        backend.set_weights(net, stored.arrays)
        return net
    if not path.name.endswith(backend.NATIVE_SUFFIX):
        raise UsageError(
            f"{path.name}: expected a weights.npz or a {backend.BACKEND} native "
            f"file (*{backend.NATIVE_SUFFIX})"
        )
    spec = native_spec(path, spec_args)
    net = backend.build_nin(spec)
    try:
        backend.load_native(net, path)
    except Exception as error:  # each framework raises its own types; report them as one line
        first_line = (
            str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        )
        raise UsageError(
            f"cannot load {path} as {backend.BACKEND} weights of {spec.describe()}: {first_line}"
        ) from None
    return net


def weights_in(path: Path) -> Path:
    """`path`, or the weights.npz of the run folder `path`."""
    path = Path(path)
    if path.is_dir():
        if not (path / "weights.npz").is_file():
            raise UsageError(
                f"{path} is a folder without weights.npz (a run folder has one "
                "once its training has finished)"
            )
        return path / "weights.npz"
    if not path.is_file():
        raise UsageError(f"weights file {path} does not exist")
    return path


def native_spec(path: Path, spec_args):
    """The spec of a framework's native weights file, which does not record it: the run
    folder's beside it, else the model flags."""
    recorded = run_config_beside(path)
    return recorded.spec() if recorded else spec_from_args(spec_args)


def weights_spec(path: Path, spec_args):
    """The spec of the weights in `path`, read without loading them: from the .npz's header,
    or for a native file as :func:`native_spec` finds it."""
    from ..weights import read_weights_spec

    return read_weights_spec(path) if path.suffix == ".npz" else native_spec(path, spec_args)


def output_file(args, given: Path, default_name: str) -> Path:
    """--out, or `default_name` beside the weights `given`; refused, before any work, when it
    exists (without --force), is not a file or cannot be created."""
    from ..tools.runs import check_writable_parent

    out = Path(args.out or (given if given.is_dir() else given.parent) / default_name)
    if out.exists() and not args.force:
        raise UsageError(f"{out} exists; pass --force to replace it or choose another --out")
    if out.exists() and not out.is_file():
        raise UsageError(f"{out} is not a file; choose another --out")
    check_writable_parent(out)
    return out


def check_fashion_mnist(spec, weights: Path) -> None:
    """That the weights' network takes Fashion-MNIST's images and classes."""
    if spec.in_channels != 1 or spec.num_classes != 10:
        raise UsageError(
            f"{weights} holds {spec.describe()}, which does not take "
            "Fashion-MNIST (1 channel, 10 classes)"
        )


def run_config_beside(path: Path):
    """The RunConfig recorded in the run folder that holds `path`, or None."""
    from ..tools.config import RunConfig

    for name in ("config.json", "summary.json"):
        try:
            return RunConfig.from_dict(json.loads((path.parent / name).read_text())["config"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def input_treatment(path: Path, spec) -> tuple[int, bool]:
    """(input size, standardize) the weights were trained with, from the file's metadata or
    the run folder beside it; the spec's nominal size without standardizing otherwise."""
    from ..weights import load_weights

    if path.suffix == ".npz":
        recorded = load_weights(path).metadata.get("input")
        if recorded:
            return int(recorded["size"]), bool(recorded["standardize"])
    config = run_config_beside(path)
    if config is not None:
        return config.size, config.recipe.standardize
    return spec.input_size, False


def cmd_predict(args) -> int:
    import numpy as np

    from ..data import load_fashion_mnist, to_model_input
    from ..tools.plots import plot_predictions

    if args.onnx and args.backend:
        raise UsageError("--backend does not go with --onnx: onnxruntime runs the model")
    if args.weights and not args.backend:
        raise UsageError("--weights needs --backend (or give an exported model with --onnx)")
    if args.onnx and args.maps:
        raise UsageError(
            "--maps needs a framework's model (--backend and --weights): an ONNX model "
            "outputs only the logits"
        )
    runner = "onnxruntime" if args.onnx else args.backend
    out = output_file(args, Path(args.weights or args.onnx), f"predictions-{runner}.png")
    weights = weights_in(args.weights) if args.weights else Path(args.onnx)
    if args.maps:
        from ..tools.maps import class_map_layer

        class_map_layer(weights_spec(weights, args))  # AlexNet has none: refused before loading
    if args.onnx:  # onnxruntime alone: no framework is imported
        from ..onnx import OnnxModel

        model = OnnxModel(weights)
        spec, (size, standardize), predict_logits = (
            model.spec,
            model.input_treatment,
            model.predict_logits,
        )
    else:
        backend = load_backend(args.backend)
        net = load_weights_into(backend, weights, args)
        spec, (size, standardize) = net.spec, input_treatment(weights, net.spec)

        def predict_logits(images):
            return backend.predict_logits(net, images)

    check_fashion_mnist(spec, weights)
    size = args.size or size
    fashion = load_fashion_mnist(args.data_dir)
    images = fashion.test_images[: args.n]
    labels = fashion.test_labels[: args.n].astype(np.int64)
    inputs = to_model_input(images, size, standardize=standardize)
    logits = predict_logits(inputs)
    predicted = logits.argmax(axis=1)
    right = int((predicted == labels).sum())
    title = f"{runner}: {right}/{args.n} right (true / predicted)"
    overlay = {}
    if args.maps:
        from ..tools.maps import class_maps, upsample

        maps = class_maps(net, inputs)
        chosen = maps[np.arange(len(images)), predicted]
        overlay = dict(
            maps=upsample(chosen, spec, size), scores=logits[np.arange(len(images)), predicted]
        )
        title = f"{runner}: {right}/{args.n} right (true / predicted, its score and class map)"
    plot_predictions(images, labels, predicted, out, title=title, **overlay)
    print(f"{right} of {args.n} right; grid: {out}")
    return 0


def cmd_convert(args) -> int:
    from ..tools.runs import check_writable_parent

    out = Path(args.output)
    if out.exists() and not args.force:
        raise UsageError(f"{out} exists; pass --force to replace it")
    if out.exists() and not out.is_file():
        raise UsageError(f"{out} is not a file")
    check_writable_parent(out)
    source, target = load_backend(getattr(args, "from")), load_backend(args.to)
    if out.suffix != ".npz" and not out.name.endswith(target.NATIVE_SUFFIX):
        raise UsageError(
            f"{out.name}: {args.to} weights are saved as *{target.NATIVE_SUFFIX} "
            "(or give a .npz for the interchange format)"
        )
    net = load_weights_into(source, weights_in(args.input), args)
    converted = target.build_nin(net.spec)
    target.set_weights(converted, source.get_weights(net))
    if out.suffix == ".npz":
        target.export_weights(converted, out)
    else:
        target.save_native(converted, out)
    print(f"{net.spec.describe()}: {args.input} ({getattr(args, 'from')}) -> {out} ({args.to})")
    return 0


def add_commands(commands) -> None:
    text = "a PNG grid of test images with true and predicted labels"
    sub = commands.add_parser("predict", help=text, description=text)
    sub.set_defaults(function=cmd_predict)
    sub.add_argument("--backend", choices=list(BACKENDS), help="the framework that runs --weights")
    model = sub.add_mutually_exclusive_group(required=True)
    model.add_argument("--weights", help="a run folder, weights.npz or the backend's native file")
    model.add_argument(
        "--onnx", metavar="MODEL.onnx", help="a model from `nin export`, run on onnxruntime alone"
    )
    sub.add_argument("--n", type=whole(1, 100), default=10, help="how many test images (1-100)")
    sub.add_argument("--size", type=whole(1, 4096), help="input size (default: the run's)")
    sub.add_argument("--data-dir")
    sub.add_argument("--out", help="PNG to write (default: next to the weights)")
    sub.add_argument("--force", action="store_true", help="replace --out if it exists")
    sub.add_argument(
        "--maps",
        action="store_true",
        help="overlay each predicted class's map (`nin maps`); not with --onnx",
    )
    add_spec_arguments(sub)

    text = "turn one framework's weights into another's native format (or .npz)"
    sub = commands.add_parser("convert", help=text, description=text)
    sub.set_defaults(function=cmd_convert)
    sub.add_argument("--from", required=True, choices=list(BACKENDS))
    sub.add_argument("--to", required=True, choices=list(BACKENDS))
    sub.add_argument(
        "input", help="a run folder, weights.npz or the source framework's native file"
    )
    sub.add_argument("output", help="the target's native file, or .npz")
    sub.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    add_spec_arguments(sub)
