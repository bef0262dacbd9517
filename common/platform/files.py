"""Writing files so that a crash leaves the old file or the new one, never half of either.

Platform layer.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from pathlib import Path

from . import failpoints

# Numbers this process's atomic writes from 1: the STEP of their failpoints.
_writes = itertools.count(1)


def fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Call `write(temporary path)`, fsync it and move it over `path` in one step, then fsync
    the folder, which makes the move itself durable.

    Its failpoints (:mod:`common.platform.failpoints`) are ``write:written``,
    ``write:synced``, ``write:renamed`` and ``write:done``, with the write's number in this
    process as their step. A failure before the move leaves `path` as it was and removes the
    temporary file; a crash there leaves it beside `path`, hidden (a dot name).
    """
    path = Path(path)
    number = next(_writes)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(temporary)
        failpoints.reached("write:written", number)
        # The data must be on disk before the new name points at it: after a power cut the
        # move could otherwise survive without the data, leaving `path` empty or partial.
        with open(temporary, "rb+") as file:
            os.fsync(file.fileno())
        failpoints.reached("write:synced", number)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    failpoints.reached("write:renamed", number)
    fsync_directory(path.parent)
    failpoints.reached("write:done", number)
    return path
