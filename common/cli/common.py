"""Argument groups and checks shared by several ``nin`` commands.

CLI layer.
"""

from __future__ import annotations

import argparse
import inspect
import math
from dataclasses import replace

from ..backends import BACKENDS, check_backend_name
from ..spec import SPECS, make_spec

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the user: reported as one line, exit status 2."""


# -- value types: range checks happen while parsing, so they fail before any work -------------


def whole(minimum: int = 1, maximum: int | None = None):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    parse.__name__ = "whole number"
    return parse


def fraction(low: float, high: float, *, high_inclusive: bool = False):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (
            math.isfinite(value)
            and low <= value
            and (value <= high if high_inclusive else value < high)
        ):
            closing = "]" if high_inclusive else ")"
            raise argparse.ArgumentTypeError(f"must be in [{low:g}, {high:g}{closing}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


def positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


positive_number.__name__ = "number"


def backend_list(value: str) -> list[str]:
    names = list(BACKENDS) if value == "all" else [name.strip() for name in value.split(",")]
    for name in names:
        try:
            check_backend_name(name)
        except ValueError as error:
            raise UsageError(f"{error} (or 'all')") from None
    if len(set(names)) != len(names):
        raise UsageError(f"a backend is named twice in {value!r}")
    return names


# -- the model ---------------------------------------------------------------------------------


def add_spec_arguments(parser: argparse.ArgumentParser, *, training: bool = False) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        choices=list(SPECS),
        default=None if training else "nin",
        help="nin (the book's), nin-s/nin-m/nin-l (exercise 5's family), alexnet",
    )
    group.add_argument(
        "--num-1x1", type=whole(0, 8), help="1x1 convolutions per NiN block (default 2; exercise 2)"
    )
    group.add_argument("--dropout", type=fraction(0, 1), help="dropout rate (default 0.5)")
    group.add_argument(
        "--head-width",
        type=whole(0, 4096),
        help="a gradual head: a block of this width before the class block "
        "(exercise 4; default 0, the book's one-step squeeze)",
    )
    group.add_argument(
        "--widths", type=widths, help="channels of the three feature blocks (default 96,256,384)"
    )
    head = group.add_mutually_exclusive_group()
    head.add_argument(
        "--book-head",
        dest="final_relu",
        action="store_const",
        const=True,
        help="the book's head: ReLU on the class maps (the default model's)",
    )
    head.add_argument(
        "--linear-head",
        dest="final_relu",
        action="store_const",
        const=False,
        help="no ReLU on the class maps (the training presets' head)",
    )
    if not training:
        group.add_argument("--in-channels", type=whole(1, 64), help="input channels (default 1)")
        group.add_argument("--num-classes", type=whole(1, 100_000), help="classes (default 10)")


def widths(text: str) -> tuple[int, int, int]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected three whole numbers like 96,256,384, got {text!r}"
        ) from None
    if len(values) != 3 or not all(1 <= value <= 4096 for value in values):
        raise argparse.ArgumentTypeError(f"expected three widths in 1..4096, got {text!r}")
    return values


widths.__name__ = "widths"

SPEC_FLAGS = {
    "num_1x1": "--num-1x1",
    "dropout": "--dropout",
    "in_channels": "--in-channels",
    "num_classes": "--num-classes",
    "final_relu": "--book-head/--linear-head",
    "head_width": "--head-width",
    "widths": "--widths",
}


def spec_options(args) -> dict:
    options = {
        name: getattr(args, name) for name in SPEC_FLAGS if getattr(args, name, None) is not None
    }
    model = getattr(args, "model", None) or "nin"
    allowed = inspect.signature(SPECS[model]).parameters
    for name in options:
        if name not in allowed:
            raise UsageError(f"{SPEC_FLAGS[name]} does not apply to --model {model}")
    return options


def spec_from_args(args):
    return make_spec(args.model, **spec_options(args))


# -- training ----------------------------------------------------------------------------------

# Flags that change what a run computes, with the RunConfig or Recipe field they set.
CONFIG_FLAGS = {
    "epochs": "epochs",
    "batch_size": "batch_size",
    "size": "size",
    "seed": "seed",
    "train_limit": "train_limit",
    "test_limit": "test_limit",
}
RECIPE_FLAGS = {
    "optimizer": "optimizer",
    "lr": "lr",
    "momentum": "momentum",
    "weight_decay": "weight_decay",
    "warmup_steps": "warmup_steps",
    "schedule": "schedule",
    "clip_norm": "clip_norm",
    "standardize": "standardize",
    "augment": "augment",
}
# What --resume lets change: the length of the run and the step size (to recover from NaN).
RESUME_FLAGS = {"epochs", "lr", "clip_norm"}


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    from ..tools.config import DEFAULT_PRESET, PRESETS

    add_spec_arguments(parser, training=True)
    group = parser.add_argument_group(
        "training",
        f"Start from a preset (--recipe, default {DEFAULT_PRESET}); each flag "
        "overrides one part of it. `nin presets` lists them.",
    )
    group.add_argument(
        "--recipe",
        choices=list(PRESETS),
        default=None,
        help=f"preset: {', '.join(PRESETS)} (default {DEFAULT_PRESET})",
    )
    group.add_argument("--epochs", type=whole(1, 10_000))
    group.add_argument("--lr", type=positive_number, help="peak learning rate")
    group.add_argument("--batch-size", type=whole(1, 65_536))
    group.add_argument("--size", type=whole(1, 4096), help="input size in pixels (>= 67 for NiN)")
    group.add_argument("--optimizer", choices=["adam", "sgd", "momentum"])
    group.add_argument("--momentum", type=fraction(0, 1))
    group.add_argument("--weight-decay", type=fraction(0, 1), help="L2 on the gradient")
    group.add_argument("--warmup-steps", type=whole(0, 10_000_000))
    group.add_argument("--schedule", choices=["constant", "cosine"])
    group.add_argument(
        "--clip-norm", type=fraction(0, 1e6), help="global gradient-norm clip; 0 off"
    )
    group.add_argument(
        "--standardize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="standardize inputs with the training set's mean and std",
    )
    group.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="random 2-pixel shifts and left-right flips of training images",
    )
    group.add_argument("--seed", type=whole(0, 2**32 - 1))
    group.add_argument(
        "--train-limit", type=whole(0, 60_000), help="train on the first N images (0: all 60,000)"
    )
    group.add_argument(
        "--test-limit", type=whole(0, 10_000), help="test on the first N images (0: all 10,000)"
    )
    group.add_argument(
        "--data-dir",
        help="folder of the four Fashion-MNIST IDX .gz files "
        "(default: $NIN_DATA_DIR or Debian's location)",
    )
    group.add_argument(
        "--checkpoint-every",
        type=whole(1),
        metavar="STEPS",
        help="also checkpoint every N steps (always after every epoch)",
    )
    group.add_argument("--no-progress", action="store_true", help="no progress bars")


def given_training_flags(args) -> set[str]:
    names = {"model", *SPEC_FLAGS, "recipe", *CONFIG_FLAGS, *RECIPE_FLAGS}
    return {name for name in names if getattr(args, name, None) is not None}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def run_config(args):
    """The RunConfig the flags ask for: the preset, then each given flag."""
    from ..tools.config import DEFAULT_PRESET, PRESETS

    config = PRESETS[args.recipe or DEFAULT_PRESET]
    model = args.model or config.model
    allowed = inspect.signature(SPECS[model]).parameters  # the preset's head, where it applies
    options = {key: value for key, value in config.spec_options.items() if key in allowed}
    options.update(spec_options(args))
    recipe = replace(
        config.recipe,
        **{
            field: getattr(args, name)
            for name, field in RECIPE_FLAGS.items()
            if getattr(args, name) is not None
        },
    )
    changes = {
        field: getattr(args, name)
        for name, field in CONFIG_FLAGS.items()
        if getattr(args, name) is not None
    }
    for limit in ("train_limit", "test_limit"):  # 0 on the command line means all
        if changes.get(limit) == 0:
            changes[limit] = None
    config = replace(
        config, model=model, spec_options=options, recipe=recipe, data_dir=args.data_dir, **changes
    )
    return config.check()


def progress(args) -> bool | None:
    return False if args.no_progress else None
