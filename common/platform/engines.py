"""How each data-parallel engine is launched: the variables that tell a process it is worker
`rank` of `workers` (torchrun's, a ``TF_CONFIG``, MXNet's ``DMLC_*``), the ports a launch
takes, and the helper processes an engine needs besides its workers.

Platform layer, framework-free: a backend's registry entry (:mod:`common.backends`) names its
engine, and :mod:`common.platform.launcher` starts the processes through it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Helper:
    """A process an engine runs beside its workers (MXNet's scheduler and server)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: str  # the file name of its output, in the launch's log folder


class Engine:
    """One engine's launch convention. Subclasses set `description` and `variables` and
    implement :meth:`workers_in` and :meth:`environment`."""

    description = "?"  # what the engine is, in words, for the launch's first line
    variables = "?"  # the launch variables' name(s), for error messages

    def launched_workers(self, environ: Mapping[str, str] = os.environ) -> int | None:
        """How many workers this process is one of, as the launch variables say; None when
        it was not launched as a worker."""
        try:
            count = self.workers_in(environ)
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"the {self.variables} launch variables are malformed: {error}"
            ) from None
        if count is not None and count < 1:
            raise ValueError(f"the {self.variables} launch variables ask for {count} workers")
        return count

    def workers_in(self, environ: Mapping[str, str]) -> int | None:
        raise NotImplementedError

    def ports_needed(self, workers: int) -> int:
        """Loopback ports a launch of `workers` takes."""
        return 1

    def environment(
        self, rank: int, workers: int, ports: list[int], host: str = LOOPBACK
    ) -> dict[str, str]:
        """The variables that make a process worker `rank` of `workers` on `host`."""
        raise NotImplementedError

    def helpers(self, workers: int, ports: list[int], host: str = LOOPBACK) -> list[Helper]:
        """The processes the engine needs besides its workers."""
        return []


class TorchRun(Engine):
    """PyTorch's: torchrun's variables, one rendezvous port."""

    description = "DistributedDataParallel (gloo all-reduce)"
    variables = "torchrun (RANK, WORLD_SIZE)"

    def workers_in(self, environ):
        if "RANK" in environ and "WORLD_SIZE" in environ:
            return int(environ["WORLD_SIZE"])
        return None

    def environment(self, rank, workers, ports, host=LOOPBACK):
        variables = {
            "MASTER_ADDR": host,
            "MASTER_PORT": str(ports[0]),
            "RANK": str(rank),
            "WORLD_SIZE": str(workers),
            "LOCAL_RANK": str(rank),
            "LOCAL_WORLD_SIZE": str(workers),
        }
        if sys.platform.startswith("linux"):
            variables["GLOO_SOCKET_IFNAME"] = "lo"  # else gloo picks the host name's interface
        return variables


class TFConfig(Engine):
    """TensorFlow's: a ``TF_CONFIG`` cluster of workers, one gRPC port each."""

    description = "MultiWorkerMirroredStrategy (collective all-reduce)"
    variables = "TF_CONFIG"

    def workers_in(self, environ):
        if not environ.get("TF_CONFIG"):
            return None
        config = json.loads(environ["TF_CONFIG"])
        if set(config["cluster"]) != {"worker"} or config["task"]["type"] != "worker":
            raise ValueError("only 'worker' tasks are supported (no chief, ps or evaluator)")
        return len(config["cluster"]["worker"])

    def ports_needed(self, workers):
        return workers

    def environment(self, rank, workers, ports, host=LOOPBACK):
        cluster = {"worker": [f"{host}:{port}" for port in ports]}
        return {
            "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": rank}})
        }


@dataclass(frozen=True)
class ParameterServer(Engine):
    """MXNet's kvstore: ``DMLC_*`` variables, and a scheduler and a server beside the
    workers, on one port (the scheduler's). `package` is the module whose import imports
    MXNet (its backend package, which first restores the NumPy names MXNet reads)."""

    package: str = "mxnet"
    description = "kvstore dist_sync (a parameter server)"
    variables = "DMLC_*"

    def workers_in(self, environ):
        if environ.get("DMLC_ROLE") == "worker":
            return int(environ["DMLC_NUM_WORKER"])
        return None

    def environment(self, rank, workers, ports, host=LOOPBACK, role="worker"):
        return {
            "DMLC_ROLE": role,
            "DMLC_PS_ROOT_URI": host,
            "DMLC_PS_ROOT_PORT": str(ports[0]),
            "DMLC_NUM_SERVER": "1",
            "DMLC_NUM_WORKER": str(workers),
            "DMLC_NODE_HOST": host,
        }  # each node listens on this address

    def helpers(self, workers, ports, host=LOOPBACK):
        # Importing mxnet in a scheduler or server role runs that role until the workers
        # leave (mxnet/kvstore/kvstore_server.py); watch_launcher ends it if we die first.
        argv = [
            sys.executable,
            "-c",
            f"import common.platform.launcher as l; l.watch_launcher(); import {self.package}",
        ]
        return [
            Helper(
                f"MXNet {role}",
                argv,
                self.environment(0, workers, ports, host, role),
                f"{role}.log",
            )
            for role in ("scheduler", "server")
        ]


class JaxDistributed(Engine):
    """JAX's: ``jax.distributed``'s coordinator (``JAX_COORDINATOR_ADDRESS``, which JAX reads
    itself) and each process's id and count, one port for the coordinator. Gloo's own
    connections take ports the OS picks."""

    description = "jax.distributed (gloo CPU collectives)"
    variables = "JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID"

    def workers_in(self, environ):
        if "JAX_COORDINATOR_ADDRESS" in environ and "JAX_NUM_PROCESSES" in environ:
            return int(environ["JAX_NUM_PROCESSES"])
        return None

    def environment(self, rank, workers, ports, host=LOOPBACK):
        return {
            "JAX_COORDINATOR_ADDRESS": f"{host}:{ports[0]}",
            "JAX_NUM_PROCESSES": str(workers),
            "JAX_PROCESS_ID": str(rank),
            # Else the coordinator listens on every interface ([::]), not the one probed free.
            "JAX_COORDINATOR_BIND_ADDRESS": f"{host}:{ports[0]}",
        }
