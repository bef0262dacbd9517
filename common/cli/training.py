"""``nin train``, ``nin compare`` and ``nin sweep``: runs that checkpoint, stop cleanly on
SIGINT/SIGTERM and continue where they stopped.

CLI layer.
"""

from __future__ import annotations

import shlex
import signal
import sys
from dataclasses import replace
from pathlib import Path

from ..backends import BACKENDS
from ..shapes import count_params
from ..training import TrainingStopped
from . import workers
from .common import (
    UsageError,
    add_training_arguments,
    backend_list,
    given_training_flags,
    progress,
    run_config,
)
from .plan import announce, preflight, resume_plan

EXIT_STATUS = {"SIGINT": 130, "SIGTERM": 143}


class StopOnSignal:
    """SIGINT and SIGTERM ask the training loop to stop after the current step (it then
    writes a checkpoint); a second signal stops at once, leaving the last checkpoint."""

    def __init__(self):
        self.reason: str | None = None
        self._previous = {}

    def __call__(self) -> str | None:
        return self.reason

    def _handle(self, number, frame):
        name = signal.Signals(number).name
        if self.reason is not None:
            raise KeyboardInterrupt(name)
        self.reason = name
        print(
            f"\n{name}: stopping after this step and writing a checkpoint "
            "(send it again to stop at once)",
            file=sys.stderr,
            flush=True,
        )

    def __enter__(self):
        for number in (signal.SIGINT, signal.SIGTERM):
            self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc):
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        return False


def exit_status(stop: TrainingStopped) -> int:
    return EXIT_STATUS.get(stop.reason, 130)


def _stopped(stop: TrainingStopped, command: str) -> int:
    state = stop.state
    print(
        f"stopped by {stop.reason} at epoch {state.epoch + 1}, batch {state.batch} "
        f"(step {state.step}); checkpoint saved.\nresume with: {command}",
        file=sys.stderr,
    )
    return exit_status(stop)


# -- nin train -----------------------------------------------------------------------------------


def cmd_train(args) -> int:
    from ..tools.runs import check_new_run_dir, default_run_dir

    if args.workers > 1:
        return workers.launch_train(args)
    if args.resume:
        return _resume_train(args)
    if not args.backend:
        raise UsageError(f"--backend is required ({', '.join(BACKENDS)}), or --resume RUN_DIR")
    config = run_config(args)
    launched = workers.launched(args.backend, args)  # one of N workers, or None
    if launched:
        config = replace(config, batch_size=config.batch_size * launched)  # per worker
    out = check_new_run_dir(
        args.out or default_run_dir(f"train-{args.backend}"), count_params(config.spec())
    )
    preflight(config, [args.backend])
    if not launched:
        announce(config)
    out.mkdir(parents=True, exist_ok=True)
    with StopOnSignal() as stop:
        try:
            result = workers.train(
                args.backend,
                config,
                out,
                launched,
                checkpoint_every=args.checkpoint_every,
                stop_requested=stop,
                progress=progress(args),
            )
        except TrainingStopped as stopped:
            return _stopped(stopped, f"nin train --resume {shlex.quote(str(out))}")
    if result:  # None on all workers but rank 0
        _finished(result, config)
    return 0


def _finished(result, config) -> None:
    final = result.history[-1]
    never = result.summary["classes_never_predicted"]
    print(
        f"test accuracy {final.test_accuracy:.4f} after {config.epochs} epoch(s)"
        + (f"; never predicted: {', '.join(never)}" if never else "")
        + f"; run folder: {result.directory}"
    )


def _resume_train(args) -> int:
    checkpoint, config, backend, out = resume_plan(args)
    launched = workers.launched(backend, args)
    preflight(config, [backend])
    if not launched:
        announce(config)
    out.mkdir(parents=True, exist_ok=True)
    with StopOnSignal() as stop:
        try:
            result = workers.train(
                backend,
                config,
                out,
                launched,
                resume=checkpoint,
                checkpoint_every=args.checkpoint_every,
                stop_requested=stop,
                progress=progress(args),
            )
        except TrainingStopped as stopped:
            return _stopped(stopped, f"nin train --resume {shlex.quote(str(out))}")
    if result:
        _finished(result, config)
    return 0


# -- nin compare ---------------------------------------------------------------------------------


def cmd_compare(args) -> int:
    from ..tools.compare import compare, read_manifest
    from ..tools.runs import check_new_run_dir, default_run_dir

    if args.resume:
        if given_training_flags(args) or args.backends:
            raise UsageError(
                "--resume continues the comparison as it was configured; "
                "give no other training flags or --backends"
            )
        out = Path(args.resume)
        config, backends = read_manifest(out)
        if args.data_dir:
            config = replace(config, data_dir=args.data_dir)
    else:
        config = run_config(args)
        backends = backend_list(args.backends or "all")
        out = check_new_run_dir(
            args.out or default_run_dir("compare"), len(backends) * count_params(config.spec())
        )
    preflight(config, backends)
    announce(config)
    out.mkdir(parents=True, exist_ok=True)
    with StopOnSignal() as stop:
        try:
            report = compare(
                config,
                backends,
                out,
                checkpoint_every=args.checkpoint_every,
                stop_requested=stop,
                progress=progress(args),
            )
        except TrainingStopped as stopped:
            return _stopped(stopped, f"nin compare --resume {shlex.quote(str(out))}")
    print(f"report: {report}")
    return 0


# -- nin sweep -----------------------------------------------------------------------------------


def sweep_variants(config, heads: str | None):
    """The sweep's variants: the config itself, or one per head named in `heads`."""
    from ..tools.sweep import Variant

    if not heads:
        head = "linear-head" if config.spec_options.get("final_relu") is False else "book-head"
        return [Variant(head if config.model == "nin" else config.model, config)]
    if config.model != "nin":
        raise UsageError("--heads applies to NiN only")
    variants = []
    for head in heads.split(","):
        if head not in ("linear", "book"):
            raise UsageError(f"--heads takes linear, book or both (linear,book), got {head!r}")
        options = {**config.spec_options, "final_relu": head == "book"}
        variants.append(Variant(f"{head}-head", replace(config, spec_options=options).check()))
    return variants


def cmd_sweep(args) -> int:
    from ..tools.runs import check_writable_parent, default_run_dir
    from ..tools.sweep import check_manifest, parse_seeds, run_sweep

    config = run_config(args)
    seeds = parse_seeds(args.seeds)
    backends = backend_list(args.backends)
    variants = sweep_variants(config, args.heads)
    out = Path(args.out or default_run_dir("sweep"))
    # Finished sweep runs keep weights.npz and the native file: 8 bytes per parameter.
    check_writable_parent(
        out / "sweep.json",
        8 * count_params(config.spec()) * len(variants) * len(backends) * len(seeds),
    )
    check_manifest(out, variants, backends, seeds)
    preflight(config, backends)
    announce(config)
    with StopOnSignal() as stop:
        try:
            report = run_sweep(
                variants,
                backends,
                seeds,
                out,
                stop_requested=stop,
                progress=progress(args),
                title=f"Seed sweep: {', '.join(v.label for v in variants)}",
            )
        except TrainingStopped as stopped:
            command = " ".join(shlex.quote(part) for part in ["nin", *sys.argv[1:]])
            if not args.out:
                command += f" --out {shlex.quote(str(out))}"
            return _stopped(stopped, command)
    print(f"report: {report}")
    return 0


def add_commands(commands) -> None:
    text = "train one backend on Fashion-MNIST (checkpoints every epoch; Ctrl-C stops cleanly)"
    sub = commands.add_parser("train", help=text, description=text)
    sub.set_defaults(function=cmd_train)
    sub.add_argument("--backend", choices=list(BACKENDS))
    sub.add_argument("--out", help="run folder to create (default runs/train-<backend>-<time>)")
    sub.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue RUN_DIR from its newest checkpoint (to --epochs in total); "
        "with --out, in a new folder, and with --backend, in another framework",
    )
    add_training_arguments(sub)
    workers.add_arguments(sub)

    text = "the parity run: every backend with the same weights, data order and recipe"
    sub = commands.add_parser("compare", help=text, description=text)
    sub.set_defaults(function=cmd_compare)
    sub.add_argument("--backends", help="comma list or all (default)")
    sub.add_argument("--out", help="folder to create (default runs/compare-<time>)")
    sub.add_argument("--resume", metavar="COMPARE_DIR", help="continue an interrupted comparison")
    add_training_arguments(sub)

    text = (
        "train every (backend, seed) and report whether the frameworks differ by more "
        "than the seeds do; rerun the same command to continue it"
    )
    sub = commands.add_parser("sweep", help=text, description=text)
    sub.set_defaults(function=cmd_sweep)
    sub.add_argument("--seeds", default="0-4", help="e.g. 0-4 or 1,3,7 (default 0-4)")
    sub.add_argument("--backends", default="all", help="comma list or all (default)")
    sub.add_argument("--heads", help="linear, book or linear,book: sweep each head side by side")
    sub.add_argument(
        "--out",
        help="sweep folder (default runs/sweep-<time>); an existing one "
        "of the same sweep is continued",
    )
    add_training_arguments(sub)
