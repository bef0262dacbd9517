"""Data-parallel NiN in MXNet Gluon: the ``dist_sync`` kvstore, a parameter server.

Workers, the server and the scheduler are found through the ``DMLC_*`` variables; the
scheduler assigns the ranks. ``nin train --workers N`` starts all of them on this machine.

Backend layer.
"""

from __future__ import annotations

import ctypes

import mxnet as mx
import numpy as np
from mxnet import gluon, nd
from mxnet.base import _LIB, check_call

from common import distributed, training

from .train import Trainer as LocalTrainer


class Group(distributed.Group):
    def __init__(self):
        # Registers with the scheduler (DMLC_PS_ROOT_URI:PORT) and waits for every node.
        self.kvstore = mx.kv.create("dist_sync")
        super().__init__(self.kvstore.rank, self.kvstore.num_workers)
        # A kvstore waits for every worker when it is freed; a worker that fails would wait
        # for ever for the others (who wait for it). Only leave() turns that barrier back on.
        self._barrier_before_exit(False)
        self._sums_key = 1 << 20  # above the parameters' keys, their indices
        self.init_keys([self._sums_key], [nd.zeros(3, dtype="float64")])

    def init_keys(self, keys: list[int], values: list[nd.NDArray]) -> None:
        """Store rank 0's `values` under `keys` on the server before any worker uses them.

        kvstore.init pushes from rank 0 and then waits at a barrier, but the barrier can
        overtake the push, and a worker that reads a key the server does not hold yet kills
        the server ("init 0 first"; 2 launches in 100 here with Gluon's own
        Trainer(kvstore=...); apache/mxnet#7893). Rank 0 reads its keys back first: the
        server answers only after the push that came before on the same connection.
        """
        # Copies in the default layout: a hybridized net's weights may be in MKL-DNN's.
        values = [nd.array(value.asnumpy(), dtype=value.dtype) for value in values]
        self.kvstore.init(keys, values)
        if self.rank == 0:
            self.kvstore.pull(keys, out=values)
            nd.waitall()
        self.kvstore._barrier()

    def sum_over_workers(self, values: list[float]) -> np.ndarray:
        # With no optimizer on the server, a dist_sync push is summed over the workers.
        pushed = nd.zeros(3, dtype="float64")
        pushed[: len(values)] = nd.array(values, dtype="float64")
        total = nd.zeros(3, dtype="float64")
        self.kvstore.push(self._sums_key, pushed)
        self.kvstore.pull(self._sums_key, out=total)
        return total.asnumpy()[: len(values)]

    def leave(self) -> None:
        # When freed (at exit) the kvstore then waits for all workers, and rank 0's stops the
        # server and scheduler.
        self._barrier_before_exit(True)

    def _barrier_before_exit(self, barrier: bool) -> None:
        # In MXNet's C API, not its Python one.
        check_call(_LIB.MXKVStoreSetBarrierBeforeExit(self.kvstore.handle, ctypes.c_int(barrier)))


class Trainer(distributed.DataParallel, LocalTrainer):
    """nin_mxnet's Trainer on one worker: gradients are pushed to the server, which sums
    them, and pulled back; every worker then applies the same update with its own
    gluon.Trainer (no kvstore), where the learning-rate schedule, clipping and the optimizer
    state that checkpoints save live, as in one process."""

    def __init__(
        self,
        net: gluon.HybridBlock,
        recipe: training.Recipe | None = None,
        *,
        seed: int = 0,
        group: Group,
    ):
        super().__init__(net, recipe, seed=seed, group=group)
        # Gluon's Trainer could push and pull itself (kvstore=, update_on_kvstore=False), but
        # initialises its keys in the way init_keys explains; so the keys are ours.
        self._keys = list(range(len(self._parameters)))
        group.init_keys(self._keys, [parameter.data() for parameter in self._parameters])

    def _sum_over_workers(self, gradients: list[nd.NDArray]) -> None:
        self.group.kvstore.push(self._keys, gradients)  # the server adds all workers' pushes
        self.group.kvstore.pull(self._keys, out=gradients)
