"""CPU threads: how many cores this process may use and how many threads its operators get.

Platform layer.
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def intra_op_threads() -> int:
    """Threads one process's operators should use: OMP_NUM_THREADS when the user (or the
    worker launcher) set it, else one per usable core."""
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        return usable_cores()
