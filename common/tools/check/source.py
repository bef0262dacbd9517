"""A reader's file as statements to run in order: a ``.py`` file, or a notebook's code cells.

The rules, which ``nin check --help`` states too:

* top-level statements run in order; the body of ``if __name__ == "__main__":`` counts as
  top-level;
* notebook magics (``%matplotlib inline``, ``!pip install d2l``) are skipped;
* a statement that would train or load data (it calls ``fit``, ``train...``, ``backward``,
  ``step``, ``load_data...`` or anything in a ``datasets`` module) is never run: skipped
  before the model exists, the end of the run after.

Tools layer.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path
from types import CodeType

TRAINING_CALLS = ("fit", "fit_generator", "backward", "step")
_MAGIC = re.compile(r"^\s*[%!]")


class SourceError(ValueError):
    """A file that cannot be read or parsed: one line naming the file and line."""


@dataclass(frozen=True)
class Statement:
    code: CodeType
    node: ast.stmt
    filename: str  # what tracebacks of this statement name (a cell has its own)
    place: str  # "reader.py" or "nin.ipynb, cell 3"
    line: int

    @property
    def where(self) -> str:
        return f"{self.place}, line {self.line}"

    @property
    def work(self) -> str | None:
        """What this statement would do that the checker never does, "would train (fit)" or
        "would load data (load_data)", or None (definitions and imports do nothing)."""
        if isinstance(
            self.node,
            (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom),
        ):
            return None
        for node in ast.walk(self.node):
            if not isinstance(node, ast.Call):
                continue
            dotted = _dotted(node.func)
            name = dotted.rsplit(".", 1)[-1]
            if name in TRAINING_CALLS or name.startswith("train"):
                return f"would train ({name})"
            if name.startswith("load_data") or ".datasets." in f".{dotted}":
                return f"would load data ({dotted})"
        return None

    @property
    def is_import(self) -> bool:
        return isinstance(self.node, (ast.Import, ast.ImportFrom))

    @property
    def imported_packages(self) -> list[str]:
        """The top-level packages an import statement names (``mxnet`` for ``from mxnet
        import gluon``); none for any other statement or a relative import."""
        if isinstance(self.node, ast.Import):
            return [alias.name.split(".")[0] for alias in self.node.names]
        if isinstance(self.node, ast.ImportFrom) and self.node.module and not self.node.level:
            return [self.node.module.split(".")[0]]
        return []


@dataclass(frozen=True)
class Source:
    path: Path
    statements: list[Statement]
    filenames: dict[str, str]  # a compiled filename -> its place, for tracebacks
    notes: list[str]
    functions: list[str]  # module-level functions that take no arguments


def read(path: str | Path) -> Source:
    """The statements of a .py file or a notebook's code cells, in order."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SourceError(f"cannot read {path}: {error}") from None
    if path.suffix == ".ipynb":
        cells, notes = _cells(path, text)
    else:
        cells, notes = [(str(path), path.name, text)], []
    statements, filenames, functions = [], {}, []
    for filename, place, code in cells:
        filenames[filename] = place
        try:
            module = ast.parse(code, filename=filename)
        except SyntaxError as error:
            raise SourceError(f"{place}, line {error.lineno}: SyntaxError: {error.msg}") from None
        for node in _top_level(module.body):
            functions += _zero_argument_functions(node)
            statements.append(
                Statement(
                    compile(ast.Module(body=[node], type_ignores=[]), filename, "exec"),
                    node,
                    filename,
                    place,
                    node.lineno,
                )
            )
    return Source(path, statements, filenames, notes, functions)


def _cells(path: Path, text: str) -> tuple[list[tuple[str, str, str]], list[str]]:
    try:
        notebook = json.loads(text)
        cells = [cell for cell in notebook["cells"] if cell.get("cell_type") == "code"]
    except (ValueError, KeyError, TypeError) as error:
        raise SourceError(f"{path} is not a Jupyter notebook ({error})") from None
    result, magics = [], 0
    for number, cell in enumerate(cells, 1):
        source = cell.get("source", "")
        lines = ("".join(source) if isinstance(source, list) else str(source)).splitlines()
        kept = []
        for line in lines:
            if _MAGIC.match(line):
                magics += 1
                line = ""  # keeps the line numbers
            kept.append(line)
        place = f"{path.name}, code cell {number}"
        result.append((f"<{path.name} cell {number}>", place, "\n".join(kept) + "\n"))
    notes = [f"{magics} notebook magic line(s) (% or !) skipped"] if magics else []
    return result, notes


def _dotted(node: ast.expr) -> str:
    """`a.b.c` for a call of ``a.b.c(...)``; the last name alone for anything fancier."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """`body`, with ``if __name__ == "__main__":`` replaced by its own statements."""
    flat = []
    for node in body:
        if isinstance(node, ast.If) and _is_main_guard(node.test) and not node.orelse:
            flat += _top_level(node.body)
        else:
            flat.append(node)
    return flat


def _is_main_guard(test: ast.expr) -> bool:
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and len(test.comparators) == 1
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value == "__main__"
    )


def _zero_argument_functions(node: ast.stmt) -> list[str]:
    if not isinstance(node, ast.FunctionDef):
        return []
    arguments = node.args
    required = (
        len(arguments.posonlyargs)
        + len(arguments.args)
        - len(arguments.defaults)
        + sum(default is None for default in arguments.kw_defaults)
    )
    return [node.name] if required == 0 else []
