"""``nin maps``: what NiN's class maps see, in one framework or in all of them side by side,
and (``--localisation``) how much of them lies on the object, over the test set.

CLI layer.
"""

from __future__ import annotations

from pathlib import Path

from ..backends import BACKENDS, load_backend
from .common import UsageError, add_spec_arguments, whole
from .weights import (
    check_fashion_mnist,
    input_treatment,
    load_weights_into,
    output_file,
    run_config_beside,
    weights_in,
    weights_spec,
)


def load_nets(names: list[str], weights: Path, spec, args) -> dict:
    """A net of each backend in `names` holding the same weights, read once: the file's (an
    .npz, or a native file read by its own framework) or, with --untrained, the initial
    weights of the run's seed."""
    from ..weights import load_weights

    backends = {name: load_backend(name) for name in names}
    if args.untrained:
        config = run_config_beside(weights)
        seed = config.seed if config else 0
        return {name: backend.build_nin(spec, seed=seed) for name, backend in backends.items()}
    if weights.suffix == ".npz":
        arrays = load_weights(weights).arrays
    else:
        owner = next(
            (
                name
                for name, backend in backends.items()
                if weights.name.endswith(backend.NATIVE_SUFFIX)
            ),
            names[0],  # whose loader then says what it expected
        )
        arrays = backends[owner].get_weights(load_weights_into(backends[owner], weights, args))
    nets = {}
    for name, backend in backends.items():
        nets[name] = backend.build_nin(spec)
        backend.set_weights(nets[name], arrays)
    return nets


def cmd_maps(args) -> int:
    from ..data import load_fashion_mnist
    from ..shapes import check_input_shape
    from ..tools.maps import class_map_layer, map_size

    names = list(BACKENDS) if args.backend == "all" else [args.backend]
    if args.localisation and args.out:
        raise UsageError("--out does not go with --localisation, which prints its figures")
    given = Path(args.weights)
    out = None if args.localisation else output_file(args, given, f"maps-{args.backend}.png")
    weights = weights_in(given)
    spec = weights_spec(weights, args)
    class_map_layer(spec)  # AlexNet has none: refused before any framework is loaded
    check_fashion_mnist(spec, weights)
    size, standardize = input_treatment(weights, spec)
    size = args.size or size
    check_input_shape(spec, (1, 1, size, size))
    fashion = load_fashion_mnist(args.data_dir)
    nets = load_nets(names, weights, spec, args)
    height, width = map_size(spec, size)
    heading = f"{spec.describe()} at {size}x{size}, {height}x{width} class maps"
    if args.untrained:
        heading += ", untrained"
    print(f"{heading} ({weights})")
    if (height, width) == (1, 1):
        larger = "x".join(str(side) for side in map_size(spec, 224))
        print(
            f"note: at {size}x{size} each class map is one number, so it cannot show a place; "
            f"a larger --size gives larger maps ({larger} at 224)"
        )
    if args.localisation:
        return report_localisation(nets, fashion, size, standardize, args.test_limit)
    return draw_maps(nets, fashion, size, standardize, args, out, heading)


def report_localisation(nets: dict, fashion, size: int, standardize: bool, limit: int) -> int:
    import math

    from ..data import CLASS_NAMES
    from ..report import format_table
    from ..tools.maps import localisation

    count = limit or len(fashion.test_images)
    images, labels = fashion.test_images[:count], fashion.test_labels[:count]
    results = {
        name: localisation(net, images, labels, size=size, standardize=standardize)
        for name, net in nets.items()
    }
    rows = [
        [
            name,
            f"{result.accuracy:.4f}",
            f"{result.on_object:.4f}",
            "n/a" if math.isnan(result.relative_on_object) else f"{result.relative_on_object:.4f}",
            f"{result.chance:.4f}",
            f"{result.mean_object:.4f}",
            f"{result.own_object:.4f}",
            f"{result.above_chance:,}",
            f"{result.no_positive_mass:,}",
            f"{result.mean_silent_maps:.2f}",
        ]
        for name, result in results.items()
    ]
    print(
        f"{count:,} test images; the share of the predicted class's map's positive mass "
        "(laid over the input) on the object's pixels:"
    )
    headers = [
        "backend",
        "accuracy",
        "on object",
        "above its minimum",
        "chance",
        "mean object",
        "own object",
        "above chance",
        "no positive value",
        "silent maps per image",
    ]
    print(format_table(headers, rows))
    print(
        "on object: the mean share, over the images whose map has positive values; above its "
        "minimum: the same for the map less its lowest value (n/a for 1x1 maps); what maps that "
        "know only the object's place put there: chance (an even map: the object's share of "
        "the image), mean object (one map for all: the mean object at the map's size), own "
        "object (each image's own object at the map's size); above chance: images whose map "
        "beats their chance; silent maps: class maps with no positive value (all zero after "
        "the book head's ReLU)"
    )
    first = next(iter(results.values()))
    histogram = ", ".join(
        f"{silent}: {number:,}" for silent, number in enumerate(first.silent_maps) if number
    )
    print(f"images by number of silent maps ({next(iter(results))}): {histogram}")
    print(f"by predicted class ({next(iter(results))}):")
    print(
        format_table(
            ["class", "predicted on", "on object", "chance", "its map silent on"],
            [
                [
                    CLASS_NAMES[label],
                    f"{count:,}",
                    "n/a" if math.isnan(on) else f"{on:.4f}",
                    "n/a" if math.isnan(chance) else f"{chance:.4f}",
                    f"{silent:,}",
                ]
                for label, ((count, on, chance), silent) in enumerate(
                    zip(first.by_class, first.silent_by_class)
                )
            ],
        )
    )
    return 0


def draw_maps(
    nets: dict, fashion, size: int, standardize: bool, args, out: Path, heading: str
) -> int:
    import numpy as np

    from ..data import to_model_input
    from ..tools.maps import class_maps, class_scores, upsample
    from ..tools.plots import plot_class_maps

    images = fashion.test_images[: args.n]
    labels = fashion.test_labels[: args.n].astype(np.int64)
    inputs = to_model_input(images, size, standardize=standardize)
    maps = {name: class_maps(net, inputs) for name, net in nets.items()}
    first, *others = maps
    scores = {name: class_scores(values) for name, values in maps.items()}
    predicted = scores[first].argmax(axis=1)
    right = int((predicted == labels).sum())
    spec = next(iter(nets.values())).spec
    shown = (
        predicted[:, None]
        if args.classes == "predicted"
        else np.tile(np.arange(spec.num_classes), (args.n, 1))
    )
    rows = np.arange(args.n)[:, None]
    title = (
        f"{first if not others else 'every framework'}: {heading}; {right}/{args.n} right; "
        "each map over its image, titled with its class's score (logit)"
    )
    if others:
        difference = max(float(np.abs(maps[name] - maps[first]).max()) for name in others)
        title += f"; largest difference from {first}'s maps: {difference:.1e}"
        print(f"largest difference between any framework's maps and {first}'s: {difference:.1e}")
    plot_class_maps(
        to_model_input(images, size)[:, 0],
        labels,
        shown,
        {name: upsample(values[rows, shown], spec, size) for name, values in maps.items()},
        {name: values[rows, shown] for name, values in scores.items()},
        out,
        title=title,
    )
    print(f"{right} of {args.n} right ({first}); class maps: {out}")
    return 0


def add_commands(commands) -> None:
    text = "what NiN's class maps see: each class's map over test images (CAM)"
    sub = commands.add_parser("maps", help=text, description=text)
    sub.set_defaults(function=cmd_maps)
    sub.add_argument(
        "--backend",
        required=True,
        choices=[*BACKENDS, "all"],
        help="the framework that computes the maps, or all of them side by side",
    )
    sub.add_argument(
        "--weights", required=True, help="a run folder, weights.npz or the backend's native file"
    )
    sub.add_argument(
        "--untrained",
        action="store_true",
        help="the same network with its initial weights instead (the run's seed, else 0): "
        "the baseline",
    )
    sub.add_argument("--n", type=whole(1, 32), default=8, help="how many test images (1-32)")
    sub.add_argument(
        "--classes",
        choices=["predicted", "all"],
        default="predicted",
        help="the predicted class's map, or every class's",
    )
    sub.add_argument(
        "--localisation",
        action="store_true",
        help="no picture: print how much of the predicted class's map lies on the object, "
        "over the test set",
    )
    sub.add_argument(
        "--test-limit",
        type=whole(0, 10_000),
        default=0,
        help="with --localisation, the first N test images (0: all 10,000)",
    )
    sub.add_argument(
        "--size",
        type=whole(1, 4096),
        help="input size (default: the run's); NiN's class maps are 1x1 below 99 px, 3x3 at "
        "131, 5x5 at 224",
    )
    sub.add_argument("--data-dir")
    sub.add_argument("--out", help="PNG to write (default: next to the weights)")
    sub.add_argument("--force", action="store_true", help="replace --out if it exists")
    add_spec_arguments(sub)
