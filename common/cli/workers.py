"""``nin train --workers N``: data-parallel training on N processes of this machine.

The launcher starts N copies of the same ``nin train`` command (without ``--workers``), each
with its framework's launch variables set, exactly as torchrun, a TF_CONFIG or MXNet's DMLC_*
roles start them across machines (docs/distributed.md). A ``nin train`` that finds those
variables is one worker: ``--batch-size`` is its own batch, the run's is N times that.

CLI layer.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import replace
from pathlib import Path

from .. import distributed
from ..backends import BACKENDS, listed
from ..platform import launcher
from .common import UsageError, run_config, whole
from .plan import announce, preflight, resume_plan

RUN_FLAGS_LEFT_OUT = ("workers", "port")  # the launcher's own flags; the rest reach the workers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "data parallel",
        "Train on N worker processes, each on its slice of every batch, with "
        "the framework's own engine: "
        f"{listed((info.engine.description for info in BACKENDS.values()), 'or')} "
        "(docs/distributed.md).",
    )
    group.add_argument(
        "--workers",
        type=whole(1, 256),
        default=1,
        metavar="N",
        help="worker processes on this machine (default 1); --batch-size is "
        "per worker, so the run's batch is N times it",
    )
    group.add_argument(
        "--port",
        type=whole(1, 65535),
        help="the first loopback port the engine may use (default: ports the OS "
        "picks; TF takes one per worker)",
    )
    parser.set_defaults(parser=parser)


def launched(backend: str, args) -> int | None:
    """How many workers this process is one of, from its engine's launch variables; None for
    a process on its own."""
    count = BACKENDS[backend].engine.launched_workers()
    if count is not None and not (args.out or args.resume):
        raise UsageError(
            "a worker needs --out RUN_DIR, the same on every worker (rank 0 writes the run there)"
        )
    return count


def train(backend: str, config, out: Path, workers: int | None, **options):
    """`common.tools.runs.train_run` in one process, or this process's part of a launch."""
    from ..tools.runs import train_run
    from ..tools.workers import train_worker

    if workers is None:
        return train_run(backend, config, out, **options)
    return train_worker(backend, config, out, workers=workers, **options)


def worker_command(args, out: Path | None) -> list[str]:
    """The ``nin train`` command each worker runs: the flags given, less the launcher's."""
    if out is not None:
        args = argparse.Namespace(**{**vars(args), "out": str(out)})
    return [sys.executable, "-m", "common.cli", "train", *command_line(args.parser, args)]


def command_line(parser: argparse.ArgumentParser, args) -> list[str]:
    """The options in `args` that differ from `parser`'s defaults, as they would be typed."""
    argv = []
    for action in parser._actions:
        value = getattr(args, action.dest, None)
        if (
            not action.option_strings
            or action.dest in RUN_FLAGS_LEFT_OUT
            or value is None
            or value == action.default
        ):
            continue
        if isinstance(action, argparse.BooleanOptionalAction):
            argv.append(action.option_strings[0 if value else 1])
        elif action.nargs == 0:  # store_true, store_const: the flag that stores this value
            if value == action.const:
                argv.append(action.option_strings[-1])
        else:
            argv += [action.option_strings[-1], str(value)]
    return argv


def launch_train(args) -> int:
    """Start `args.workers` workers of this ``nin train`` and wait for them."""
    from ..shapes import count_params
    from ..tools.runs import LOGS, check_new_run_dir, default_run_dir

    count = args.workers
    if args.resume:
        _, config, backend, out = resume_plan(args)
        if config.batch_size % count:
            raise UsageError(
                f"{args.resume} trains with batch {config.batch_size}, which does "
                f"not split into {count} equal per-worker batches"
            )
        new_out = Path(args.out) if args.out else None
    else:
        if not args.backend:
            raise UsageError("--backend is required, or --resume RUN_DIR")
        backend = args.backend
        config = run_config(args)
        config = replace(config, batch_size=config.batch_size * count)
        out = new_out = check_new_run_dir(
            args.out or default_run_dir(f"train-{backend}"), count_params(config.spec())
        )
    if BACKENDS[backend].engine.launched_workers() is not None:
        raise UsageError(
            "this process was itself started as a worker (its engine's launch "
            "variables are set); leave --workers out"
        )
    distributed.check_shardable(config.train_images, config.batch_size, count)
    ports = launcher.pick_ports(BACKENDS[backend].engine.ports_needed(count), args.port)
    preflight(config, [backend])
    announce(config)
    print(
        f"{count} workers on {launcher.LOOPBACK}, {BACKENDS[backend].engine.description}: batch "
        f"{config.batch_size // count} per worker, {config.batch_size} in all."
    )
    logs = out / LOGS
    logs.mkdir(parents=True, exist_ok=True)
    processes = launcher.launch_processes(
        BACKENDS[backend].engine, count, worker_command(args, new_out), ports, logs
    )
    resume = f"nin train --resume {shlex.quote(str(out))} --workers {count}"
    sys.stdout.flush()  # the workers write to the same stdout from now on
    try:
        status = launcher.run_processes(processes, log=lambda line: print(line, flush=True))
    except launcher.WorkerFailed as failure:
        print(f"nin train: error: {failure}", file=sys.stderr)
        if _has_checkpoint(out):
            print(f"resume with: {resume}", file=sys.stderr)
        return failure.status
    if status:  # 130 or 143: stopped by a forwarded SIGINT or SIGTERM, on the same step
        print(f"stopped by {'SIGTERM' if status == 143 else 'SIGINT'}", file=sys.stderr)
        if _has_checkpoint(out):
            print(f"resume with: {resume}", file=sys.stderr)
    return status


def _has_checkpoint(out: Path) -> bool:
    from ..tools.checkpoint import checkpoint_folders

    return bool(checkpoint_folders(out))
