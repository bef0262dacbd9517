"""The process ``nin check`` runs a reader's file in: ``python -m common.check.runner``.

It executes the file's top-level statements in order (:mod:`.source` has the rules), finds
the model, checks it (:func:`.model.check_model`) and writes the result as JSON; a file that
cannot be checked writes ``{"error": "one line"}``. Being a separate process, whatever the
file does (its imports, prints, global settings, a crash of its framework) stays out of the
``nin`` process, and a file that never ends is stopped from outside.

Several files can be checked in one process (one framework import for all): the test suite's
corpus does that. Each file runs in its own namespace.

Tools layer.
"""

from __future__ import annotations

import argparse
import builtins
import contextlib
import json
import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from ... import d2l
from ...backends import BACKENDS, import_through_backend, listed, load_backend_module
from ...spec import spec_from_dict
from .model import check_model, framework_of, is_model, probe_of
from .source import Source, SourceError, read


class CheckError(ValueError):
    """A file that cannot be checked: one line that names the reader's file and line."""


@dataclass
class Execution:
    namespace: dict
    notes: list[str] = field(default_factory=list)
    stopped: str | None = None  # where and why the run stopped before the file's end


def _location(error: BaseException, source: Source, statement) -> str:
    """The reader's file and line an exception came from (the innermost frame in their
    file), and the statement that ran it when that is another line."""
    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if frame.filename in source.filenames
    ]
    if not frames:
        return statement.where
    inner = frames[-1]
    place = f"{source.filenames[inner.filename]}, line {inner.lineno}"
    if (inner.filename, inner.lineno) != (statement.filename, statement.line):
        place += f" (in {inner.name}, run by line {statement.line})"
    return place


def _message(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0][:300]}" if lines else type(error).__name__


def model_exists(namespace: dict, name: str | None) -> bool:
    if name is not None:
        value = namespace.get(name)
        return value is not None and (is_model(value) or callable(value))
    return any(is_model(value) for key, value in list(namespace.items()) if not key.startswith("_"))


def execute(source: Source, name: str | None = None, progress: Path | None = None) -> Execution:
    """Run the statements of `source` in order, as the module-level rules say."""
    run = Execution(
        {"__name__": "__main__", "__file__": str(source.path), "__builtins__": builtins},
        list(source.notes),
    )
    for statement in source.statements:
        if progress is not None:
            progress.write_text(statement.where)
        work = statement.work
        if work:
            if model_exists(run.namespace, name):
                run.stopped = f"{statement.where}, which {work}: not run"
                break
            run.notes.append(f"{statement.where} {work}: skipped")
            continue
        for package in statement.imported_packages:
            import_through_backend(package)
        try:
            exec(statement.code, run.namespace)
        except d2l.NotAvailable as error:
            if model_exists(run.namespace, name):
                run.stopped = f"{statement.where}: {error}"
                break
            run.notes.append(f"{statement.where} skipped: {error}")
        except (Exception, SystemExit) as error:
            if isinstance(error, ImportError) and statement.is_import:
                run.notes.append(
                    f"{statement.where}: {error.name or 'a module'} is not "
                    "installed; import skipped"
                )
                continue
            if model_exists(run.namespace, name):
                run.stopped = (
                    f"{_location(error, source, statement)} failed "
                    f"({_message(error)}): the model was built, so the check goes on"
                )
                break
            raise CheckError(f"{_location(error, source, statement)}: {_message(error)}") from None
    if run.stopped:
        run.notes.append(f"the file ran until {run.stopped}")
    return run


def find_model(run: Execution, source: Source, name: str | None):
    """(name, model): NAME's model (or what the function NAME returns), or the file's only
    module-level model."""
    namespace = run.namespace
    if name is not None:
        if name not in namespace:
            known = sorted(
                key
                for key, value in namespace.items()
                if not key.startswith("_") and (is_model(value) or key in source.functions)
            )
            raise CheckError(
                f"{source.path.name} has no {name!r}"
                + (f"; its models and functions: {', '.join(known)}" if known else "")
            )
        value = namespace[name]
        if is_model(value):
            return name, value
        if isinstance(value, type) or not callable(value):
            raise CheckError(
                f"{name} in {source.path.name} is a {type(value).__name__}, not a "
                "model or a function that returns one"
            )
        try:
            with _quiet():
                model = value()
        except TypeError as error:
            if name not in source.functions:
                raise CheckError(
                    f"{name}() needs arguments: name a model, or a function "
                    f"of no arguments that returns one ({error})"
                ) from None
            raise CheckError(f"{name}() failed: {_message(error)}") from None
        except Exception as error:
            place = _location(error, source, source.statements[-1])
            raise CheckError(f"{place}: {name}() failed: {_message(error)}") from None
        if not is_model(model):
            raise CheckError(
                f"{name}() returned a {type(model).__name__}, not a model with "
                "convolutions or dense layers"
            )
        return name, model
    found: list[tuple[str, object]] = []
    for key, value in list(namespace.items()):
        if key.startswith("_") or not is_model(value) or any(value is known for _, known in found):
            continue
        found.append((key, value))
    outer = [
        (key, value)
        for key, value in found
        if not any(
            probe_of(framework_of(other)).contains(other, value)
            for _, other in found
            if framework_of(other) == framework_of(value)
        )
    ]
    if len(outer) == 1:
        return outer[0]
    if not outer:
        functions = ", ".join(source.functions)
        hint = (
            f"; functions that may return one: {functions} (name one, e.g. "
            f"nin check {source.path.name}:{source.functions[0]})"
            if functions
            else ""
        )
        raise CheckError(
            f"no model in {source.path.name}: no module-level "
            f"{listed((info.model_class for info in BACKENDS.values()), 'or')} with "
            f"convolutions{hint}"
        )
    names = ", ".join(key for key, _ in outer)
    raise CheckError(
        f"several models in {source.path.name}: {names}; name one, e.g. "
        f"nin check {source.path.name}:{outer[0][0]}"
    )


@contextlib.contextmanager
def _quiet():
    """The reader's prints go to this process's stderr, which ``nin check`` keeps out of
    its report."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def check_file(path: str | Path, name: str | None, spec, size: int, progress: Path | None = None):
    """Run the reader's file and check its model: a CheckResult, or CheckError."""
    try:
        source = read(path)
    except SourceError as error:
        raise CheckError(str(error)) from None
    with _quiet():
        run = execute(source, name, progress)
        name, model = find_model(run, source, name)
        return check_model(
            model, spec, size=size, name=name, source=f"{source.path.name}:{name}", notes=run.notes
        )


def _reset_frameworks() -> None:
    """Between two files of one process: what a reader's file may switch on globally (only
    in frameworks a file imported: none is imported here)."""
    for name, info in BACKENDS.items():
        if info.framework in sys.modules:
            load_backend_module(name, "probe").reset()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.check.runner")
    parser.add_argument("--spec", required=True, help="the reference spec as JSON")
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--out", required=True, help="folder for one result JSON per file")
    parser.add_argument("--progress", help="file that names the statement running")
    parser.add_argument("files", nargs="+", help="PATH or PATH:NAME")
    args = parser.parse_args(argv)
    spec = spec_from_dict(json.loads(args.spec))
    d2l.install()
    os.environ.setdefault("MPLBACKEND", "Agg")  # a reader's plt.show() must not block
    out = Path(args.out)
    for index, target in enumerate(args.files):
        path, name = split_target(target)
        sys.path.insert(0, str(Path(path).resolve().parent))  # the reader's own imports
        try:
            result = check_file(
                path, name, spec, args.size, Path(args.progress) if args.progress else None
            )
            data = result.to_dict()
        except (CheckError, ValueError) as error:
            data = {"error": " ".join(str(error).split())}
        finally:
            sys.path.pop(0)
            _reset_frameworks()
        (out / f"{index}.json").write_text(json.dumps(data))
    return 0


def split_target(target: str) -> tuple[str, str | None]:
    """PATH[:NAME] -> (PATH, NAME or None)."""
    path, colon, name = target.rpartition(":")
    if colon and name.isidentifier() and not Path(target).exists():
        return path, name
    return target, None


if __name__ == "__main__":
    sys.exit(main())
