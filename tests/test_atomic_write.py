"""`common.platform.files.atomic_write`, which writes every summary, metrics rewrite, report,
manifest, ONNX file and `nin check` report, held to what the checkpoint writer is held to
(test_checkpoint.py, test_checkpoint_format.py): the data synced before the rename and the
folder after it, the old file whole after a failure at each stage, and no partial file
visible after a real process is killed between the stages."""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from common.platform import failpoints
from common.platform.files import atomic_write

from .conftest import ROOT
from .processes import markers

OLD = b"old contents\n" * 1000
NEW = b"new contents, longer than the old\n" * 4000  # 136 kB: more than one write call


def _write(data: bytes):
    return lambda temporary: Path(temporary).write_bytes(data)


def _listing(folder: Path) -> list[str]:
    return sorted(entry.name for entry in folder.iterdir())


@pytest.fixture
def target(tmp_path) -> Path:
    """An old file in a folder of its own."""
    (tmp_path / "run").mkdir()
    path = tmp_path / "run" / "summary.json"
    path.write_bytes(OLD)
    return path


def test_the_data_is_synced_before_the_rename_and_the_folder_after(target, monkeypatch):
    """The calls in order, each identified by what its descriptor is: the temporary file's
    fsync, once it holds all the data; the rename of that same file over the target; the
    folder's fsync. (os.fsync is watched, not fsync_directory, so a sync made another way
    still counts, and one skipped cannot hide behind a helper.)"""
    calls = []
    fsync, replace = os.fsync, os.replace

    def watched_fsync(descriptor):
        status = os.fstat(descriptor)
        if stat.S_ISDIR(status.st_mode):
            calls.append(("fsync folder", status.st_ino))
        else:
            held = os.pread(descriptor, status.st_size + 1, 0)
            calls.append(("fsync file", status.st_ino, held == NEW))
        return fsync(descriptor)

    def watched_replace(source, destination):
        calls.append(("rename", os.stat(source).st_ino, Path(destination)))
        return replace(source, destination)

    monkeypatch.setattr(os, "fsync", watched_fsync)
    monkeypatch.setattr(os, "replace", watched_replace)
    assert atomic_write(target, _write(NEW)) == target
    monkeypatch.undo()
    written = target.stat().st_ino
    assert calls == [
        ("fsync file", written, True),  # the new data, complete, in the file renamed next
        ("rename", written, target),
        ("fsync folder", target.parent.stat().st_ino),
    ]
    assert target.read_bytes() == NEW and _listing(target.parent) == [target.name]


def _full_disk(original, call: int = 1, *, only=None):
    """`original`, failing with a full disk on its `call`-th call (of those `only` accepts)."""
    calls = 0

    def failing(*args, **kwargs):
        nonlocal calls
        if only is None or only(*args):
            calls += 1
            if calls == call:
                raise OSError(errno.ENOSPC, "No space left on device")
        return original(*args, **kwargs)

    return failing


def _is_a_file(descriptor) -> bool:
    return stat.S_ISREG(os.fstat(descriptor).st_mode)


def _is_a_folder(descriptor) -> bool:
    return stat.S_ISDIR(os.fstat(descriptor).st_mode)


def _half_then_full(temporary):
    with open(temporary, "wb") as file:
        file.write(NEW[: len(NEW) // 2])
        file.flush()
        raise OSError(errno.ENOSPC, "No space left on device")


# stage -> (what to break, the contents the target has after the failure)
STAGES = {
    "writing the data": (None, OLD),
    "fsyncing the data": ((os, "fsync", _is_a_file), OLD),
    "renaming it into place": ((os, "replace", None), OLD),
    # The rename is done: the new file is whole, and the error still says the write was not
    # made durable.
    "fsyncing the folder": ((os, "fsync", _is_a_folder), NEW),
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_failure_at_each_stage_leaves_a_whole_file_and_no_debris(target, monkeypatch, stage):
    broken, contents = STAGES[stage]
    write = _write(NEW)
    if broken is None:
        write = _half_then_full  # half the data written, then the disk is full
    else:
        owner, attribute, only = broken
        monkeypatch.setattr(owner, attribute, _full_disk(getattr(owner, attribute), only=only))
    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, write)
    monkeypatch.undo()
    assert target.read_bytes() == contents, stage
    assert _listing(target.parent) == [target.name], stage  # the temporary file is gone


# A fresh process writing NEW over argv[1] with atomic_write; it kills itself where NIN_FAULT
# says (common.platform.failpoints), or, with "mid-write", after half the data, inside the
# write itself.
_WRITER = """
import os, signal, sys
from pathlib import Path
from common.platform.files import atomic_write
NEW = b"new contents, longer than the old\\n" * 4000
def write(temporary):
    with open(temporary, "wb") as file:
        file.write(NEW[: len(NEW) // 2])
        if sys.argv[2] == "mid-write":
            file.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        file.write(NEW[len(NEW) // 2 :])
atomic_write(Path(sys.argv[1]), write)
"""

# Where the process dies, and what the target holds after it.
KILLS = {
    "mid-write": OLD,
    "write:written": OLD,
    "write:synced": OLD,
    "write:renamed": NEW,
}


def test_the_kills_cover_every_stage():
    assert set(failpoints.WRITE_POINTS) - set(KILLS) == {"write:done"}  # the write is over there


@pytest.mark.parametrize("point", list(KILLS))
def test_a_process_killed_between_the_stages_leaves_no_partial_file(target, tmp_path, point):
    """SIGKILL at each failpoint of a real process's write (the markers it leaves prove where
    the kill landed): the target is the old file or the new one, whole, and anything else
    left is hidden. (No timeout here: pytest-timeout fails a hang.)"""
    marks = tmp_path / "markers"
    env = {**os.environ, "NIN_MARKERS": str(marks), "NIN_FAULT": f"{point}@1"}
    result = subprocess.run(
        [sys.executable, "-c", _WRITER, str(target), point],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    reached = markers(marks)
    if point == "mid-write":
        assert reached == [], "killed inside the write, before its first point"
    else:
        assert reached[-1] == (point, 1), "the kill landed elsewhere"
    assert target.read_bytes() == KILLS[point], point
    visible = [name for name in _listing(target.parent) if not name.startswith(".")]
    assert visible == [target.name], visible
