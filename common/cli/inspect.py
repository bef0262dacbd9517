"""``nin shapes``, ``nin params``, ``nin resources`` and ``nin presets``: the chapter's
arithmetic, each backend beside common's numbers.

CLI layer.
"""

from __future__ import annotations

from ..backends import BACKENDS
from ..report import format_table
from .common import add_spec_arguments, backend_list, spec_from_args, whole


def cmd_shapes(args) -> int:
    from ..shapes import check_input_shape
    from ..tools.crosscheck import shape_rows

    spec, backends = spec_from_args(args), backend_list(args.backend)
    input_shape = (args.batch, spec.in_channels, args.size, args.size)
    check_input_shape(spec, input_shape)
    rows = shape_rows(spec, input_shape, backends)
    print(f"{spec.describe()}: output shape of each layer for input {input_shape} (NCHW)")
    print(format_table(["layer", "analytic", *backends, "agree"], rows))
    return _disagreement(rows)


def cmd_params(args) -> int:
    from ..tools.crosscheck import param_rows

    spec, backends = spec_from_args(args), backend_list(args.backend)
    rows = param_rows(spec, backends)
    print(f"{spec.describe()}: parameters per layer")
    print(format_table(["layer", "analytic", *backends, "agree"], rows))
    return _disagreement(rows)


def _disagreement(rows) -> int:
    bad = [row[0] for row in rows if not row[-1]]
    if bad:
        print(f"DISAGREEMENT in: {', '.join(bad)}")
        return 1
    return 0


def cmd_resources(args) -> int:
    from ..resources import resources

    spec = spec_from_args(args)
    result = resources(spec, args.size, args.batch, bias=not args.no_bias)
    print(
        f"{spec.describe()} at {args.size}x{args.size}, batch {args.batch}, "
        f"{'with' if not args.no_bias else 'without'} biases, float32"
    )
    print(result.table())
    print()
    print(result.summary())
    print()
    print(f"training memory ({args.optimizer}):")
    print(result.training_memory(args.optimizer).table())
    return 0


def cmd_presets(args) -> int:
    from ..tools.config import DEFAULT_PRESET, PRESETS

    for name, config in PRESETS.items():
        marker = " (default)" if name == DEFAULT_PRESET else ""
        print(f"{name}{marker}: {config.describe()}")
    return 0


def add_commands(commands) -> None:
    for name, function, text in [
        ("shapes", cmd_shapes, "layer output shapes"),
        ("params", cmd_params, "parameters per layer"),
    ]:
        sub = commands.add_parser(
            name,
            help=f"{text}, side by side",
            description=f"{text} in each backend beside common's "
            "arithmetic; a disagreement exits 1",
        )
        sub.set_defaults(function=function)
        sub.add_argument(
            "--backend", default="all", help=f"{', '.join(BACKENDS)}, a comma list or all"
        )
        sub.add_argument("--size", type=whole(1, 4096), default=224)
        if name == "shapes":
            sub.add_argument("--batch", type=whole(1, 4096), default=1)
        add_spec_arguments(sub)

    text = "parameters, FLOPs and memory per layer, from the spec alone (exercise 3)"
    sub = commands.add_parser("resources", help=text, description=text)
    sub.set_defaults(function=cmd_resources)
    sub.add_argument("--size", type=whole(1, 4096), default=224)
    sub.add_argument("--batch", type=whole(1, 1 << 20), default=128)
    sub.add_argument("--no-bias", action="store_true", help="count weights only")
    sub.add_argument(
        "--optimizer",
        choices=["sgd", "momentum", "adam"],
        default="sgd",
        help="optimizer whose state the training memory includes",
    )
    add_spec_arguments(sub)

    text = "the training presets (--recipe) and what each sets"
    sub = commands.add_parser("presets", help=text, description=text)
    sub.set_defaults(function=cmd_presets)
