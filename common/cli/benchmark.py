"""``nin bench``: throughput of each backend (speed lives here, never in timed tests)."""

from __future__ import annotations

from .common import backend_list, whole


def cmd_bench(args) -> int:
    from ..bench import run_bench

    run_bench(backend_list(args.backends), sizes=args.size, batch_size=args.batch,
              steps=args.steps, out=args.out)
    return 0


def add_commands(commands) -> None:
    text = "training and inference throughput of each backend"
    sub = commands.add_parser("bench", help=text, description=text)
    sub.set_defaults(function=cmd_bench)
    sub.add_argument("--backends", default="all")
    sub.add_argument("--size", type=whole(1, 4096), nargs="+", default=[67, 224])
    sub.add_argument("--batch", type=whole(1, 65_536), default=64)
    sub.add_argument("--steps", type=whole(1, 10_000), default=5)
    sub.add_argument("--out", help="also write the table (Markdown) to this file")
