"""The ``nin`` command: one module per group of subcommands, one parser, one error policy.

Bad input from the user (a value out of range, a missing file, a framework that is not
installed, a damaged checkpoint) ends with one line on stderr and exit status 2; a diverged run
exits 1; a run stopped by SIGINT/SIGTERM writes a checkpoint and exits 130/143.

CLI layer.
"""

from __future__ import annotations

import argparse
import sys

from ..backends import FRAMEWORK_LABELS, listed
from . import benchmark, check, exercise, export, inspect, maps, training, weights
from .common import EXIT_USAGE, UsageError

COMMAND_MODULES = (inspect, check, training, exercise, weights, maps, export, benchmark)


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors kept to one line (it prints the whole usage otherwise)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="nin",
        description=f"Network in Network (d2l 7.3) in {listed(FRAMEWORK_LABELS.values())}.",
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    for module in COMMAND_MODULES:
        module.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..backends import BackendUnavailable
    from ..data import DatasetError
    from ..training import TrainingDiverged, TrainingStopped
    from ..weights import WeightsError

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit:  # --help, or a usage error already printed on one line
        return exit.code if isinstance(exit.code, int) else EXIT_USAGE
    try:
        return args.function(args) or 0
    except (UsageError, ValueError, BackendUnavailable, DatasetError, WeightsError) as error:
        message = " ".join(str(error).split())
        print(f"nin {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except TrainingDiverged as error:
        print(f"nin {args.command}: {error}", file=sys.stderr)
        return 1
    except TrainingStopped as stop:
        print(f"nin {args.command}: {stop.reason}", file=sys.stderr)
        return training.exit_status(stop)
    except KeyboardInterrupt:
        print(f"nin {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as error:  # a full disk or a folder that vanished mid-run
        print(
            f"nin {args.command}: error: {error.strerror or error}: {error.filename or ''}".rstrip(
                ": "
            ),
            file=sys.stderr,
        )
        return EXIT_USAGE
