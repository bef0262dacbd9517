"""``nin bench``: throughput of each backend (speed lives here, never in timed tests).

CLI layer.
"""

from __future__ import annotations

from pathlib import Path

from ..backends import BACKENDS
from .common import backend_list, whole


def cmd_bench(args) -> int:
    from ..shapes import check_input_shape
    from ..spec import make_spec
    from ..tools.bench import run_bench
    from ..tools.runs import check_writable_parent

    for size in args.size:
        check_input_shape(make_spec("nin"), (1, 1, size, size))
    for path in (args.out, args.json):
        if path:
            check_writable_parent(Path(path))
    backends = backend_list(args.backends)
    if args.onnx:
        from ..onnx import require_exporter

        for name in backends:
            require_exporter(name)
    run_bench(
        backends,
        sizes=args.size,
        batch_size=args.batch,
        steps=args.steps,
        repeats=args.repeats,
        baseline=args.baseline,
        real_data=args.real_data,
        busy=args.busy,
        onnx=args.onnx,
        out=args.out,
        json_path=args.json,
    )
    return 0


def add_commands(commands) -> None:
    text = "training and inference throughput of each backend"
    sub = commands.add_parser("bench", help=text, description=text)
    sub.set_defaults(function=cmd_bench)
    sub.add_argument(
        "--backends",
        default="all",
        help=f"comma-separated: {', '.join(BACKENDS)}, or all (default)",
    )
    sub.add_argument(
        "--size",
        type=whole(1, 4096),
        nargs="+",
        default=[67, 224],
        help="input sizes in pixels (default: 67 224)",
    )
    sub.add_argument("--batch", type=whole(1, 65_536), default=64, help="batch size (default 64)")
    sub.add_argument("--steps", type=whole(1, 10_000), default=5, help="timed steps per block")
    sub.add_argument(
        "--repeats", type=whole(1, 100), default=3, help="timed blocks; each figure is their median"
    )
    sub.add_argument(
        "--baseline",
        action="store_true",
        help="also time the book's code path ("
        + "; ".join(info.book_path.replace("`", "") for info in BACKENDS.values())
        + "), in a fresh process",
    )
    sub.add_argument(
        "--real-data",
        action="store_true",
        help="also time the real training loop on Fashion-MNIST, with the loader's share",
    )
    sub.add_argument(
        "--busy",
        action="store_true",
        help="also time training while another process keeps the cores busy",
    )
    sub.add_argument(
        "--onnx",
        action="store_true",
        help="also time onnxruntime on each backend's ONNX export (inference)",
    )
    sub.add_argument("--out", help="write the Markdown report (and a PNG chart beside it)")
    sub.add_argument("--json", help="write the rows as JSON")
