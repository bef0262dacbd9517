"""Launching the worker processes of a data-parallel run on this machine, and telling each
one who it is: the engines' own launch variables (torchrun's ``RANK`` and ``WORLD_SIZE``,
``TF_CONFIG``, MXNet's ``DMLC_*``), free ports, and :func:`run_processes`, which starts the
processes, forwards Ctrl-C, and when one dies stops the others and says which one died.

Platform layer, framework-free: each engine's own conventions are :mod:`.engines`, the
training side :mod:`common.distributed`.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .engines import LOOPBACK, Engine
from .threads import usable_cores

LAUNCHER_PID = "NIN_LAUNCHER_PID"  # set in the processes the launcher starts
# After a worker exits with an error of its own (a diverged loss, a bad flag, a stop), the
# others are about to exit the same way; they get this long before they are stopped.
SETTLE_SECONDS = 20.0
GRACE_SECONDS = 5.0  # between SIGTERM and SIGKILL when stopping a process


# -- how workers find each other -----------------------------------------------------------------


def pick_ports(count: int, first: int | None = None, host: str = LOOPBACK) -> list[int]:
    """`count` free ports: first, first + 1, ... if `first` is given, else the OS's choice.

    A port taken is a one-line ValueError. (A port found free may still be taken by another
    program before the engine binds it; the engine then fails and the launch stops.)
    """
    if first is not None:
        if first + count - 1 > 65535:
            raise ValueError(f"--port {first} leaves no room for the {count} ports needed")
        for port in range(first, first + count):
            with _socket() as probe:
                try:
                    probe.bind((host, port))
                except OSError:
                    raise ValueError(
                        f"port {port} on {host} is taken; choose another --port, "
                        "or leave it out to let the OS pick free ports"
                    ) from None
        return list(range(first, first + count))
    probes = [_socket() for _ in range(count)]
    try:
        for probe in probes:  # all held open at once, so the OS gives distinct ports
            probe.bind((host, 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def _socket() -> socket.socket:
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # As the engines bind: a port whose last connection is in TIME_WAIT counts as free.
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return probe


def thread_environment(workers: int) -> dict[str, str]:
    """Intra-op threads per worker: the cores shared out, so N workers do not each start a
    thread per core (the user's own settings win)."""
    threads = str(max(1, usable_cores() // workers))
    names = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")
    return {name: os.environ.get(name, threads) for name in names}


# -- the launcher --------------------------------------------------------------------------------


class WorkerFailed(RuntimeError):
    """A process of a launch failed; the others were stopped. One line; `status` is the
    exit status to end with."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


@dataclass
class Process:
    """One process of a launch: a worker, or an engine's helper (MXNet's scheduler, server)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path  # its stderr (and a helper's stdout); workers share our stdout
    worker: bool = True
    popen: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> None:
        with open(self.log, "w") as log:  # the child keeps its own descriptor
            # A session of its own: Ctrl-C reaches the launcher alone, which forwards it once.
            self.popen = subprocess.Popen(
                self.argv,
                env={**os.environ, **self.env, LAUNCHER_PID: str(os.getpid())},
                stdin=subprocess.DEVNULL,
                stdout=None if self.worker else log,
                stderr=log,
                start_new_session=True,
            )

    @property
    def status(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def send(self, number: int) -> None:
        if self.status is None:
            try:
                self.popen.send_signal(number)
            except ProcessLookupError:
                pass

    def describe(self) -> str:
        """What became of it, in words, with the last line it wrote when it exited itself."""
        status = self.status
        if status < 0:
            return f"{self.name} (pid {self.popen.pid}) was killed by {signal_name(-status)}"
        said = last_line(self.log)
        return f"{self.name} (pid {self.popen.pid}) exited with status {status}" + (
            f": {said}" if said else ""
        )


def signal_name(number: int) -> str:
    """SIGKILL for 9, and so on."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def last_line(path: Path) -> str:
    """The last non-empty line of a log, without a ``nin ...: error:`` prefix."""
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines()]
    except OSError:
        return ""
    line = next((line for line in reversed(lines) if line), "")
    for prefix in ("nin train: ", "error: "):
        line = line.removeprefix(prefix)
    return line[:300]


def run_processes(
    processes: list[Process],
    *,
    settle: float = SETTLE_SECONDS,
    grace: float = GRACE_SECONDS,
    log=print,
) -> int:
    """Start `processes` and wait for the workers; no process outlives this call.

    SIGINT and SIGTERM are forwarded to the workers (which checkpoint and stop together); a
    second one stops everything within `grace` seconds. Returns 0 when every worker
    succeeded, or 130/143 when they stopped on a forwarded signal. Raises
    :class:`WorkerFailed` naming the first process that failed: one killed by a signal stops
    the others at once (they would wait for it for ever), one that exits with an error gives
    them `settle` seconds to end the same way.
    """
    workers = [process for process in processes if process.worker]
    forwarded: list[int] = []

    def forward(number, frame):
        forwarded.append(number)
        for process in workers:
            process.send(number)

    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = (
        {number: signal.signal(number, forward) for number in (signal.SIGINT, signal.SIGTERM)}
        if on_main_thread
        else {}
    )
    try:
        for process in processes:
            process.start()
        log(
            "started "
            + ", ".join(f"{process.name} (pid {process.popen.pid})" for process in processes)
            + f"; their output is in {processes[0].log.parent}"
        )
        failed = _wait(processes, forwarded, settle, grace)
        if failed is None:
            return 0
        stopped = [process.status for process in workers]
        if forwarded and all(status in (130, 143) for status in stopped):
            return stopped[0]
        if failed.status > 0 and all(status == failed.status for status in stopped):
            raise WorkerFailed(failed.describe(), failed.status)  # each said the same
        raise WorkerFailed(f"{failed.describe()}; the other processes were stopped")
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        _stop(processes, grace)


def _wait(
    processes: list[Process], forwarded: list[int], settle: float, grace: float
) -> Process | None:
    """Poll until every worker has ended (None: all succeeded) or a failure is final (the
    first process that failed)."""
    workers = [process for process in processes if process.worker]
    failed, deadline = None, math.inf
    while time.monotonic() < deadline:
        if all(process.status is not None for process in workers):
            if failed is None and any(process.status for process in workers):
                failed = next(process for process in workers if process.status)
            break
        if failed is None:
            # (A helper that exits 0 is done: the workers are leaving.)
            ended = [process for process in processes if process.status not in (None, 0)]
            if ended:
                # A process killed by a signal is the cause; the others' errors its effect,
                # and so is an abort (XLA aborts a JAX worker whose peer left a collective).
                failed = min(
                    ended,
                    key=lambda process: (process.status >= 0, process.status == -signal.SIGABRT),
                )
                killed = failed.status < 0 and -failed.status not in forwarded
                deadline = time.monotonic() + (0 if killed or not failed.worker else settle)
        if len(forwarded) >= 2:
            deadline = min(deadline, time.monotonic() + grace)
        time.sleep(0.05)
    return failed


def _stop(processes: list[Process], grace: float) -> None:
    """SIGTERM every process still running, SIGKILL what is left after `grace` seconds."""
    running = [process for process in processes if process.status is None]
    for process in running:
        process.send(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in running:
        try:
            process.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.popen.kill()
            process.popen.wait()


def launch_processes(
    engine: Engine, workers: int, argv: list[str], ports: list[int], logs: Path
) -> list[Process]:
    """The processes of a launch on this machine: `workers` copies of `argv` with each one's
    engine variables, and the engine's helpers (MXNet's scheduler and server)."""
    threads = thread_environment(workers)
    processes = [
        Process(
            f"worker {rank}",
            argv,
            {**engine.environment(rank, workers, ports), **threads},
            logs / f"worker-{rank}.log",
        )
        for rank in range(workers)
    ]
    for helper in engine.helpers(workers, ports):
        processes.append(
            Process(helper.name, helper.argv, helper.env, logs / helper.log, worker=False)
        )
    return processes


def watch_launcher(poll: float = 1.0) -> None:
    """In a process started by :func:`run_processes`: exit when the launcher is gone (even
    killed by SIGKILL, which it cannot forward), instead of waiting for ever on a collective."""
    launcher = os.environ.get(LAUNCHER_PID)
    if not launcher:
        return

    def watch():
        while os.getppid() == int(launcher):
            time.sleep(poll)
        os._exit(1)

    threading.Thread(target=watch, name="watch-launcher", daemon=True).start()
