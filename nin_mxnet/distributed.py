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

SUMS_WIDTH = 3  # the most values one sum_over_workers call sums (loss, correct, stop)
FLOAT32_PIECES = 3  # float32s whose sum is a float64 exactly (3 x 24 bits hold its 53)


def split_float64(values) -> np.ndarray:
    """`values` as FLOAT32_PIECES rows of float32s whose sum in float64 is each value exactly
    (a non-finite value, or one beyond float32's range, is its first piece alone)."""
    values = np.asarray(values, dtype=np.float64)
    pieces = np.zeros((FLOAT32_PIECES, *values.shape), dtype=np.float32)
    rest = values.copy()
    with np.errstate(over="ignore", invalid="ignore"):
        for piece in pieces:
            piece[...] = rest  # rounded to the nearest float32
            rest = np.where(np.isfinite(piece), rest - piece, 0.0)  # exact in float64
    return pieces


def join_float64(pieces: np.ndarray) -> np.ndarray:
    """The float64 values that :func:`split_float64` split (its pieces on the second to
    last axis)."""
    pieces = np.asarray(pieces, dtype=np.float64)
    total = pieces[..., -1, :]
    for index in range(FLOAT32_PIECES - 2, -1, -1):  # smallest first: each sum is exact
        total = pieces[..., index, :] + total
    return total


class Group(distributed.Group):
    def __init__(self):
        # Registers with the scheduler (DMLC_PS_ROOT_URI:PORT) and waits for every node.
        self.kvstore = mx.kv.create("dist_sync")
        super().__init__(self.kvstore.rank, self.kvstore.num_workers)
        # A kvstore waits for every worker when it is freed; a worker that fails would wait
        # for ever for the others (who wait for it). Only leave() turns that barrier back on.
        self._barrier_before_exit(False)
        self._sums_key = 1 << 20  # above the parameters' keys, their indices
        self.init_keys([self._sums_key], [nd.zeros(self._sums_shape(), dtype="float32")])

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
        # The server only moves the values: each worker pushes its own exactly, as float32
        # pieces in its own row (zeros elsewhere, so the server's sum is exact), and every
        # worker adds the rows up in float64, in rank order. A float64 key summed on the
        # server was nondeterministic: MXNet 1.9.1's server never initialises its
        # multi_precision_ flag (src/kvstore/kvstore_dist_server.h), and when the garbage is
        # true it stores and sums every key that is not float32 in float32. Whether it is
        # depends on the server process's heap, so runs with the same seed differed by a
        # float32 rounding of the loss. Float32 keys (the parameters') never take that path.
        rows = np.zeros(self._sums_shape(), dtype=np.float32)
        rows[self.rank, :, : len(values)] = split_float64(values)
        pushed = nd.array(rows, dtype="float32")
        self.kvstore.push(self._sums_key, pushed)
        self.kvstore.pull(self._sums_key, out=pushed)
        total = np.zeros(SUMS_WIDTH)
        for row in join_float64(pushed.asnumpy()):  # in rank order, whoever pushed first
            total += row
        return total[: len(values)]

    def _sums_shape(self) -> tuple[int, int, int]:
        return (self.size, FLOAT32_PIECES, SUMS_WIDTH)

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
