"""Named points in a training run, where a test can see how far a process got and kill it at an
exact place (the failpoints of etcd and TiKV, by environment variable).

- ``NIN_MARKERS=FILE``: every point a run reaches appends a line ``POINT STEP`` to FILE, so a
  test that kills the process knows where the kill landed (a SIGKILLed process's writes are
  in the OS already: no flush or fsync needed).
- ``NIN_FAULT=POINT@STEP``: the process SIGKILLs itself on reaching POINT at STEP.

The points, in the order a checkpointed step passes them: ``step`` (the update is applied,
the step not yet counted or saved), ``save:begun`` (an empty temporary folder),
``save:state`` (weights, moments and position written and fsynced), ``save:native`` (the
native file too, not yet renamed into place), ``save:renamed`` (in place, the older
checkpoints not yet removed) and ``save:done``. Every other file a run writes (summaries,
metrics, reports) goes through :func:`common.platform.files.atomic_write`, whose points are
``write:written`` (a hidden temporary file written), ``write:synced`` (fsynced, not yet
renamed), ``write:renamed`` (in place, its folder not yet fsynced) and ``write:done``, their
STEP the number of the write in the process, from 1. Unset, each point costs two dictionary
lookups.

Platform layer.
"""

from __future__ import annotations

import os
import signal

POINTS = ("step", "save:begun", "save:state", "save:native", "save:renamed", "save:done")
WRITE_POINTS = ("write:written", "write:synced", "write:renamed", "write:done")


def reached(point: str, step: int) -> None:
    """Record that the run reached `point` at `step`, and die there if a test asked for it."""
    markers = os.environ.get("NIN_MARKERS")
    if markers:
        with open(markers, "a") as file:
            file.write(f"{point} {step}\n")
    if os.environ.get("NIN_FAULT") == f"{point}@{step}":
        os.kill(os.getpid(), signal.SIGKILL)
