"""What a training command will do, checked before any work starts (the run folder
included): shared by ``nin train``, its worker launcher, ``nin compare`` and ``nin sweep``.

CLI layer.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..backends import load_backend
from ..shapes import count_params
from .common import RESUME_FLAGS, UsageError, flag, given_training_flags


def announce(config, log=print) -> None:
    sentence = config.head_sentence()
    if sentence:
        log(sentence)
    log(f"Training {config.describe()}.")


def preflight(config, backends: list[str]) -> None:
    """Everything that can fail before a run folder is created: frameworks and data."""
    for name in backends:
        load_backend(name)
    config.loaders()


def resume_plan(args):
    """What ``nin train --resume`` continues, checked: (checkpoint, config, backend, folder)."""
    from ..tools.checkpoint import check_resumable, latest_checkpoint
    from ..tools.runs import check_new_run_dir, read_summary

    run_dir = Path(args.resume)
    changed = given_training_flags(args) - RESUME_FLAGS
    if changed:
        raise UsageError(
            f"--resume continues {run_dir} as it was configured; "
            f"{', '.join(sorted(flag(name) for name in changed))} cannot change "
            f"(only {', '.join(sorted(flag(name) for name in RESUME_FLAGS))})"
        )
    checkpoint = latest_checkpoint(run_dir)
    config = checkpoint.config
    recipe = replace(
        config.recipe,
        **{
            name: getattr(args, name)
            for name in ("lr", "clip_norm")
            if getattr(args, name) is not None
        },
    )
    config = replace(
        config,
        recipe=recipe,
        epochs=args.epochs or config.epochs,
        data_dir=args.data_dir or config.data_dir,
    ).check()
    state = checkpoint.state
    if config.epochs < state.epoch or (config.epochs == state.epoch and state.batch):
        raise UsageError(
            f"{run_dir} is already past epoch {config.epochs} "
            f"({checkpoint.describe()}); --epochs must be at least {state.epoch + 1}"
        )
    backend = args.backend or checkpoint.backend
    if args.out:
        out = check_new_run_dir(args.out, count_params(config.spec()))
    else:
        out = run_dir
        check_resumable(checkpoint, backend=backend)
        # Killed after its last checkpoint but before its summary: resuming writes the rest.
        if config.epochs == state.epoch and read_summary(run_dir) is not None:
            raise UsageError(
                f"{run_dir} is complete ({config.epochs} epochs); give --epochs N "
                "to train it further"
            )
    return checkpoint, config, backend, out
