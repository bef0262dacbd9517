"""``nin check``: a reader's own NiN file, checked against the book's (or a variant).

CLI layer.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from ..backends import BACKENDS, FRAMEWORK_LABELS, listed
from ..platform.launcher import last_line, signal_name
from .common import UsageError, add_spec_arguments, spec_from_args, whole

DEFAULT_TIMEOUT = 300

_WHAT = f"""\
Check your own NiN ({listed(FRAMEWORK_LABELS.values(), "or")}: told by the model's type)
against the book's: each layer's output shape, the parameters, the ReLUs and the dropout, then
the numbers (the book's weights set on your layers: logits and each layer's input against a
float64 reference on real Fashion-MNIST images) and the gradients (against this project's
model in the same framework). Exit 0: it is the reference; 1: it differs, and the report says
where and why (a known variant, e.g. one 1x1 convolution per block, is named with the flags
that check it as that); 2: it cannot be checked (the error names your file and line)."""
_RULES = """\
THE FILE IS EXECUTED, as pytest executes test files: in a separate Python process, its
top-level statements in order (a notebook's code cells in order), so only run files you
trust. The rules:
  - the body of `if __name__ == "__main__":` counts as top-level; notebook magics (% and !)
    are skipped;
  - `d2l` and `d2lzh` are a stand-in that builds models (d2l.Classifier, d2l.init_cnn,
    d2l.try_gpu) but loads no data and trains nothing, installed or not;
  - an import of a module that is not installed is a note, not a failure;
  - a statement that would train or load data is never run: one that calls fit, train...,
    backward, step, load_data... or anything in a `datasets` module;
  - before the model exists, a statement that fails is an error (exit 2), unless it only
    loads data or trains through d2l (skipped); once the model exists, the first statement
    that fails or would train ends the run, and the model is checked as it is then."""
_NAME = (
    f"Without NAME, the model is the file's one module-level "
    f"{listed((info.model_class for info in BACKENDS.values()), 'or')} (one that holds "
    "another counts once); NAME is a model or a function of no arguments that returns one."
)
DESCRIPTION = "\n\n".join(
    [textwrap.fill(" ".join(_WHAT.split()), 92), _RULES, textwrap.fill(_NAME, 92)]
)


def cmd_check(args) -> int:
    from ..tools.check.result import CheckResult
    from ..tools.check.runner import split_target
    from ..tools.runs import check_writable_parent

    path, name = split_target(args.file)
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path} does not exist" if not path.exists() else f"{path} is not a file")
    if path.suffix not in (".py", ".ipynb"):
        raise UsageError(f"{path.name}: expected a Python file (.py) or a notebook (.ipynb)")
    report = Path(args.report) if args.report else None
    if report is not None:
        if report.exists() and (report.is_dir() or not args.force):
            raise UsageError(
                f"{report} exists; pass --force to replace it or choose another --report"
                if not report.is_dir()
                else f"{report} is a folder"
            )
        check_writable_parent(report)
    spec = spec_from_args(args)
    size = args.size or spec.input_size
    from ..shapes import check_input_shape

    check_input_shape(spec, (1, spec.in_channels, size, size))
    result = _run(path, name, spec, size, args.timeout)
    if "error" in result:
        raise UsageError(result["error"])
    result = CheckResult.from_dict(result)
    print(result.render())
    if report is not None:
        from ..platform.files import atomic_write

        text = result.render(markdown=True)
        atomic_write(report, lambda temporary: temporary.write_text(text))
        print(f"report: {report}")
    return result.status


def _run(path: Path, name: str | None, spec, size: int, timeout: float) -> dict:
    """The runner's result for one file, in a process of its own, within `timeout` s."""
    with tempfile.TemporaryDirectory(prefix="nin-check-") as folder:
        folder = Path(folder)
        progress, log = folder / "progress", folder / "output.log"
        target = str(path.resolve()) + (f":{name}" if name else "")
        command = [
            sys.executable,
            "-m",
            "common.tools.check.runner",
            "--spec",
            json.dumps(spec.to_dict()),
            "--size",
            str(size),
            "--out",
            str(folder),
            "--progress",
            str(progress),
            target,
        ]
        environment = {
            **os.environ,
            "MPLBACKEND": "Agg",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONPATH": os.pathsep.join(
                filter(
                    None, [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH")]
                )
            ),
        }
        with open(log, "w") as output:
            process = subprocess.Popen(
                command,
                cwd=path.resolve().parent,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                status = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill(process)
                where = progress.read_text() if progress.exists() else path.name
                raise UsageError(
                    f"{path.name} did not finish within {timeout:g} s (it was "
                    f"running {where}); give more with --timeout"
                ) from None
            except KeyboardInterrupt:
                _kill(process)
                raise
        result = folder / "0.json"
        if status != 0 or not result.exists():
            said = last_line(log)
            raise UsageError(
                f"the process running {path.name} died ({_status(status)})"
                + (f": {said}" if said else "")
            )
        return json.loads(result.read_text())


def _kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _status(status: int) -> str:
    return f"killed by {signal_name(-status)}" if status < 0 else f"exit status {status}"


def add_commands(commands) -> None:
    sub = commands.add_parser(
        "check",
        help="check your own NiN file (.py or .ipynb) against the book's",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.set_defaults(function=cmd_check)
    sub.add_argument(
        "file",
        metavar="PATH[:NAME]",
        help="a .py file or a Jupyter notebook, and optionally the name of the "
        "model (or of a function of no arguments that returns it)",
    )
    sub.add_argument(
        "--size", type=whole(1, 4096), help="input size in pixels (default 224, the book's)"
    )
    sub.add_argument("--report", metavar="OUT.md", help="also write the report as Markdown")
    sub.add_argument("--force", action="store_true", help="replace --report if it exists")
    sub.add_argument(
        "--timeout",
        type=whole(1, 24 * 3600),
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help=f"stop the file after S seconds (default {DEFAULT_TIMEOUT})",
    )
    add_spec_arguments(sub)
