"""Data-parallel NiN in Keras 3 on TensorFlow: MultiWorkerMirroredStrategy, collective
all-reduce, driven by a custom train step.

Workers are found through ``TF_CONFIG``. Keras's own ``fit`` under this strategy fails in
Keras 3 (keras-team/keras#20585), and ``keras.distribution`` has no TensorFlow backend, so the
step is ``strategy.run`` of a GradientTape step, as TensorFlow's custom-loop guide does it.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from common import distributed, training
from common.platform import launcher

from .model import build_nin, to_nhwc
from .train import Trainer as LocalTrainer


class Group(distributed.Group):
    engine = launcher.ENGINES["tf"]

    def __init__(self):
        # Reads TF_CONFIG, starts this worker's gRPC server and waits for the others.
        self.strategy = tf.distribute.MultiWorkerMirroredStrategy()
        resolver = self.strategy.cluster_resolver
        size = len(resolver.cluster_spec().as_dict()["worker"])
        if self.strategy.num_replicas_in_sync != size:
            raise ValueError(f"each worker must hold one replica, but {size} workers hold "
                             f"{self.strategy.num_replicas_in_sync}; give each worker one "
                             "device (CUDA_VISIBLE_DEVICES)")
        super().__init__(resolver.task_id, size)
        self._all_sum = tf.function(self._graph_all_sum)

    def build(self, spec, recipe, seed: int):
        with self.strategy.scope():  # every variable mirrored: weights, slots, seeds
            net = build_nin(spec, seed=seed)
            return net, Trainer(net, recipe, seed=seed, group=self)

    def _graph_all_sum(self, values):
        # Each worker's values as its replica's, then reduced over the replicas: a collective.
        per_replica = self.strategy.run(tf.identity, args=(values,))
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    def sum_over_workers(self, values: list[float]) -> np.ndarray:
        return self._all_sum(tf.constant(values, tf.float64)).numpy()

    def leave(self) -> None:
        self.sum_over_workers([0.0])  # a barrier: nobody exits while rank 0 still writes


def join() -> Group:
    return Group()


class Trainer(distributed.DataParallel, LocalTrainer):
    """nin_tf's Trainer on one worker: the gradients are all-reduced inside ``strategy.run``,
    then clipped and applied as in one process."""

    def __init__(self, net: keras.Model, recipe: training.Recipe | None = None, *,
                 seed: int = 0, group: Group):
        super().__init__(net, recipe, seed=seed, group=group)
        self._summed_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True,
                                                                      reduction="sum")
        self._distributed_step = tf.function(self._graph_distributed_step, input_signature=[
            tf.TensorSpec([None, None, None, net.spec.in_channels], tf.float32),
            tf.TensorSpec([None], tf.int64), tf.TensorSpec([], tf.float32)])

    def _replica_step(self, images, labels, total):
        with tf.GradientTape() as tape:
            logits = self.net(images, training=True)
            share = self._summed_loss(labels, logits) / total
        gradients = tape.gradient(share, self._variables)
        # The shares of the global batch's mean loss add up to it, and so do their gradients.
        gradients = tf.distribute.get_replica_context().all_reduce(
            tf.distribute.ReduceOp.SUM, gradients)
        correct = tf.reduce_sum(tf.cast(tf.argmax(logits, axis=1) == labels, tf.int32))
        return gradients, share, correct

    def _graph_distributed_step(self, images, labels, total):
        gradients, share, correct = self.group.strategy.run(
            self._replica_step, args=(images, labels, total))
        # Back in cross-replica context with one replica per worker, the all-reduced gradients
        # are plain tensors. Applied here, outside strategy.run, the Keras optimizer does not
        # all-reduce them a second time (inside, it sums them again), and clipping and L2 act
        # on the global gradient, as in a single process.
        self._apply(gradients)
        return share, correct

    def _shard_step(self, images: np.ndarray, labels: np.ndarray,
                    total: int) -> tuple[float, int]:
        share, correct = self._distributed_step(to_nhwc(images), labels, float(total))
        return float(share), int(correct)
