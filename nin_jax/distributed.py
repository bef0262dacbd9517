"""Data-parallel NiN in JAX: ``jax.distributed`` processes, gloo all-reduce on CPU.

Workers are found through ``JAX_COORDINATOR_ADDRESS`` (rank 0 runs the coordinator there; JAX
reads the address itself), ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` (passed on to
``initialize``). Each process holds one device; the gradients are summed over the processes
by a ``pmap`` whose ``psum`` spans every process's device, between the two jitted functions
of :mod:`nin_jax.train`'s step (the gradients of the Flax module's loss; optax's update).

On CPU, XLA runs no cross-process computation unless a collectives implementation is chosen
before the backend starts (``Multiprocess computations aren't implemented on the CPU
backend`` otherwise); gloo's is the one that needs no MPI. Two more of
``jax.distributed.initialize``'s habits are undone, as the other engines behave:

* it installs a SIGTERM handler of its own (for its preemption notices), which would swallow
  the launcher's forwarded SIGTERM; the Python handler (a clean stop) is put back;
* its exit hook waits for every process at a shutdown barrier, for up to five minutes, so a
  worker that fails would wait there for peers blocked in a collective on it. Workers leave
  together instead (:meth:`Group.leave`, also on a stop they agreed on), and one that fails
  exits at once, its traceback the last thing it writes; its peers' gloo collectives then
  fail, and XLA aborts them (SIGABRT).

Backend layer.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal

import jax
import numpy as np
from jax._src import distributed as jax_distributed
from jax.experimental import multihost_utils

from common import distributed, training

from .train import Trainer as LocalTrainer

AXIS = "workers"


def _sum_over_processes(tree):
    # One device per process: each adds its leaves to the sum's one slot, and every process
    # gets the whole sum (gloo's all-reduce; a + b is b + a, so the weights stay identical).
    return jax.lax.psum(tree, AXIS)


class Group(distributed.Group):
    def __init__(self):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # before the backend
        terminate = signal.getsignal(signal.SIGTERM)
        jax.distributed.initialize(  # waits until all JAX_NUM_PROCESSES processes are in
            num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
            process_id=int(os.environ["JAX_PROCESS_ID"]),
        )
        signal.signal(signal.SIGTERM, terminate)
        atexit.unregister(jax.distributed.shutdown)
        atexit.register(self._abandon)
        if jax.local_device_count() != 1:
            raise ValueError(
                f"each worker must hold one device, but this one holds "
                f"{jax.local_device_count()}; give each worker one device "
                "(CUDA_VISIBLE_DEVICES, or no --xla_force_host_platform_device_count)"
            )
        super().__init__(jax.process_index(), jax.process_count())
        self._sum = jax.pmap(_sum_over_processes, axis_name=AXIS)
        self._left = False

    def sum_tree(self, tree):
        """The leaf-wise sum of a pytree of arrays over all workers (a collective)."""
        total = self._sum(jax.tree_util.tree_map(lambda leaf: leaf[None], tree))
        return jax.tree_util.tree_map(lambda leaf: leaf[0], total)

    def sum_over_workers(self, values: list[float]) -> np.ndarray:
        # JAX computes in float32 unless told otherwise; the losses are summed in float64,
        # as the other engines sum them.
        with jax.enable_x64(True):
            return np.asarray(self.sum_tree(np.asarray(values, np.float64)))

    def leave(self) -> None:
        if self._left:
            return
        self._left = True
        multihost_utils.sync_global_devices("nin_jax leave")
        jax.distributed.shutdown()  # rank 0's coordinator too, once every client is gone

    def _abandon(self) -> None:
        # At an exit without leave() (an error): JAX's client, coordinator and preemption
        # watcher are never destroyed. Destroyed, rank 0's coordinator would give the
        # others' open calls 5 s of gRPC grace, and its watcher would log gRPC errors after
        # the traceback, the last line the launcher reports.
        if not self._left:
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(jax_distributed.global_state))


class Trainer(distributed.DataParallel, LocalTrainer):
    """nin_jax's Trainer on one worker: the gradients of its shard are summed over the
    workers, then clipped and applied as in one process."""

    def _sum_over_replicas(self, gradients):
        return self.group.sum_tree(gradients)

    def fit(self, *args, **kwargs):
        try:
            return super().fit(*args, **kwargs)
        except (training.TrainingStopped, training.TrainingDiverged):
            # Every worker stops on the same step (the stop request and the loss are summed,
            # the weights are the same), so they leave together; without this, the
            # coordinator's process takes seconds to exit.
            self.group.leave()
            raise
