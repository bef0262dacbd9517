"""Plain-text and Markdown tables shared by the CLI and the reports.

Core layer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence


def _cell(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, tuple):
        return "(" + ", ".join(str(item) for item in value) + ")"
    return str(value)


_NUMBER = re.compile(r"^[-+]?[\d,]*\.?\d+(e[-+]?\d+)?%?$")


def accuracy_text(value: float | None) -> str:
    """Every accuracy in every table and log line, with the same four decimals."""
    return "-" if value is None else f"{value:.4f}"


def _is_number(value) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, (int, float)) or (
        isinstance(value, str) and bool(_NUMBER.match(value))
    )


def format_table(
    headers: Sequence[str], rows: Iterable[Sequence], *, markdown: bool = False
) -> str:
    """Align `rows` under `headers`; numbers (and number-like text such as
    :func:`accuracy_text`) right-aligned, integers with thousands separators."""
    rows = [list(row) for row in rows]
    cells = [[_cell(value) for value in row] for row in rows]
    numeric = [
        all(_is_number(row[i]) for row in rows if i < len(row)) and bool(rows)
        for i in range(len(headers))
    ]
    widths = [
        max([len(header)] + [len(row[i]) for row in cells]) for i, header in enumerate(headers)
    ]

    def line(values):
        padded = [
            value.rjust(width) if right else value.ljust(width)
            for value, width, right in zip(values, widths, numeric)
        ]
        return ("| " + " | ".join(padded) + " |") if markdown else "  ".join(padded).rstrip()

    if markdown:
        rule = (
            "|"
            + "|".join(
                ("-" * (w + 1) + ":") if right else ("-" * (w + 2))
                for w, right in zip(widths, numeric)
            )
            + "|"
        )
    else:
        rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule] + [line(row) for row in cells])
