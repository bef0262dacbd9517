"""Child processes for the tests that need a real `nin` process (signals, SIGKILL, launches):
output drained as it comes, so a chatty child never blocks on a full pipe, and every wait
bounded by a multiple of the start-up measured on this machine, never by fixed seconds."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest

from common.backends import BACKENDS, is_installed

ROOT = Path(__file__).resolve().parents[1]

# What a process may take, in start-ups (a fresh Python importing the framework and building
# a model; 3-8 s here): a few steps of the tests' small runs take well under one.
FIRST_STEP_STARTUPS = 20
WHOLE_RUN_STARTUPS = 60
STOPPING_STARTUPS = 5


@cache
def startup_seconds(backend: str | None = None) -> float:
    """Measured once per backend and session: how long a fresh Python takes to import the
    backend and build the quick preset's model, on this machine under its present load.
    Without a backend, the slowest installed one's (for processes that may load any)."""
    if backend is None or not is_installed(backend):
        return max(startup_seconds(name) for name in BACKENDS if is_installed(name))
    code = (
        "from common.backends import load_backend; from common.tools.config import PRESETS; "
        f"load_backend({backend!r}).build_nin(PRESETS['quick'].spec(), seed=0)"
    )
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=600)
    return time.monotonic() - start


def bound(backend: str | None, startups: float, processes: int = 1) -> float:
    """`startups` start-ups of `backend` (of the slowest, for None), stretched when more
    processes than cores share the machine."""
    crowding = max(1.0, processes / (os.cpu_count() or 1))
    return startups * startup_seconds(backend) * crowding


class Child:
    """A subprocess whose stdout and stderr are read by threads as it writes them."""

    def __init__(self, argv: list[str], env: dict | None = None):
        self.process = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self.pid = self.process.pid
        self._lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._readers = [
            threading.Thread(target=self._drain, args=(name,), daemon=True) for name in self._lines
        ]
        for reader in self._readers:
            reader.start()

    @classmethod
    def nin(cls, *args: str, env: dict | None = None) -> Child:
        return cls([sys.executable, "-m", "common.cli", *args], env)

    def _drain(self, name: str) -> None:
        for line in getattr(self.process, name):
            self._lines[name].append(line)

    @property
    def stdout(self) -> str:
        return "".join(self._lines["stdout"])

    @property
    def stderr(self) -> str:
        return "".join(self._lines["stderr"])

    def wait_until(self, predicate: Callable[[], object], seconds: float, what: str) -> bool:
        """Poll `predicate` until it holds (True) or the process ends first (False); a
        process still short of it after `seconds` is killed and the test fails."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if predicate():
                return True
            if self.process.poll() is not None:
                return bool(predicate())
            time.sleep(0.01)
        self.kill()
        pytest.fail(f"no {what} within {seconds:.0f} s; stderr ends:\n{self.stderr[-2000:]}")

    def finish(self, seconds: float) -> int:
        """Wait for the process to end (killing it and failing after `seconds`) and for its
        output to be read; its exit status."""
        try:
            self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"still running after {seconds:.0f} s; stderr ends:\n{self.stderr[-2000:]}")
        for reader in self._readers:
            reader.join()
        return self.process.returncode

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        for reader in self._readers:
            reader.join(timeout=STOPPING_STARTUPS)  # a grandchild may still hold the pipe

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc) -> None:
        if self.process.poll() is None:
            self.kill()


def markers(path: Path) -> list[tuple[str, int]]:
    """The (point, step) lines a run left in its NIN_MARKERS file (common.platform.failpoints);
    read while the run writes, a last line without its newline is still being written."""
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]
    return [(point, int(step)) for point, step in (line.split() for line in lines)]
