"""``nin exercise``: the chapter's experimental exercises and the readers' questions, run.

CLI layer.
"""

from __future__ import annotations

from pathlib import Path

from .common import backend_list

CHOICES = ["1", "2", "4", "5", "dropout", "questions", "all"]


def cmd_exercise(args) -> int:
    from ..tools import exercises
    from ..tools.runs import check_writable_parent
    from ..tools.sweep import parse_seeds
    from .training import StopOnSignal, TrainingStopped, _stopped

    backends, seeds = backend_list(args.backends), parse_seeds(args.seeds)
    out = Path(args.out)
    check_writable_parent(out / "exercises.json")
    if args.doc:
        check_writable_parent(Path(args.doc))
    for name in backends:
        from ..backends import load_backend

        load_backend(name)
    catalogue = exercises.catalogue()
    keys = [key for key in CHOICES[:-2]] if args.which == "all" else [args.which]
    sections = []
    with StopOnSignal() as stop:
        try:
            for key in keys:
                if key != "questions":
                    sections.append(
                        exercises.run_exercise(
                            catalogue[key],
                            out,
                            backends,
                            seeds,
                            smoke=args.smoke,
                            stop_requested=stop,
                            progress=False,
                        )
                    )
                    print(f"exercise {key}: {sections[-1]}")
            if args.which in ("questions", "all"):
                sections.append(exercises.write_questions(out, backends, seeds, smoke=args.smoke))
                print(f"readers' questions: {sections[-1]}")
        except TrainingStopped as stopped:
            return _stopped(stopped, "the same command again (finished runs are kept)")
    if args.doc:
        print(f"document: {exercises.assemble(sections, Path(args.doc))}")
    return 0


def add_commands(commands) -> None:
    text = (
        "run one of the chapter's exercises (1, 2, 4, 5), the dropout question, the "
        "readers' questions, or all of them, over seeds and backends"
    )
    sub = commands.add_parser("exercise", help=text, description=text)
    sub.set_defaults(function=cmd_exercise)
    sub.add_argument("which", choices=CHOICES)
    sub.add_argument("--seeds", default="0-2", help="seeds per variant (default 0-2)")
    sub.add_argument("--backends", default="all")
    sub.add_argument(
        "--out",
        default="runs/exercises",
        help="folder of the runs and sections (default runs/exercises); runs "
        "already finished there are kept",
    )
    sub.add_argument(
        "--doc",
        help="also assemble the sections into this Markdown file "
        "(docs/exercises.md), PNGs beside it",
    )
    sub.add_argument(
        "--smoke",
        action="store_true",
        help="two steps per run: checks that everything runs (what CI does)",
    )
