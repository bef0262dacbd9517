"""Data-parallel NiN in Keras 3 on TensorFlow: MultiWorkerMirroredStrategy, collective
all-reduce, driven by a custom train step.

Workers are found through ``TF_CONFIG``. Keras's own ``fit`` under this strategy fails in
Keras 3 (keras-team/keras#20585), and ``keras.distribution`` has no TensorFlow backend, so the
step is ``strategy.run`` of a GradientTape step, as TensorFlow's custom-loop guide does it.

Backend layer.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from common import distributed

from .train import Trainer as LocalTrainer


class Group(distributed.Group):
    def __init__(self):
        # Reads TF_CONFIG, starts this worker's gRPC server and waits for the others.
        self.strategy = tf.distribute.MultiWorkerMirroredStrategy()
        resolver = self.strategy.cluster_resolver
        size = len(resolver.cluster_spec().as_dict()["worker"])
        if self.strategy.num_replicas_in_sync != size:
            raise ValueError(
                f"each worker must hold one replica, but {size} workers hold "
                f"{self.strategy.num_replicas_in_sync}; give each worker one "
                "device (CUDA_VISIBLE_DEVICES)"
            )
        super().__init__(resolver.task_id, size)
        self._all_sum = tf.function(self._graph_all_sum)

    def scope(self):
        return self.strategy.scope()  # every variable mirrored: weights, slots, seeds

    def _graph_all_sum(self, values):
        # Each worker's values as its replica's, then reduced over the replicas: a collective.
        per_replica = self.strategy.run(tf.identity, args=(values,))
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    def sum_over_workers(self, values: list[float]) -> np.ndarray:
        return self._all_sum(tf.constant(values, tf.float64)).numpy()

    def leave(self) -> None:
        self.sum_over_workers([0.0])  # a barrier: nobody exits while rank 0 still writes


class Trainer(distributed.DataParallel, LocalTrainer):
    """nin_tf's Trainer on one worker: the gradients are all-reduced inside ``strategy.run``,
    then clipped and applied as in one process."""

    def _on_replicas(self, step, *args):
        # Back in cross-replica context with one replica per worker, the all-reduced gradients
        # are plain tensors. Applied outside strategy.run (by _graph_step), the Keras optimizer
        # does not all-reduce them a second time (inside, it sums them again), and clipping
        # and L2 act on the global gradient, as in a single process.
        return self.group.strategy.run(step, args=args)

    def _sum_over_replicas(self, gradients):
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, gradients)
