"""Training NiN in Keras 3: a compiled model driven one batch at a time with ``train_on_batch``.

Batches come from the shared loader (so all backends see the same examples in the same order)
instead of ``fit``'s own data pipeline; ``train_on_batch`` runs Keras's compiled train step.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from common import training

from .model import predict_logits, to_nhwc


class Trainer(training.Trainer):
    backend = "tf"

    def __init__(self, net: keras.Model, recipe: training.Recipe | None = None, *, seed: int = 0):
        super().__init__(net, recipe, seed=seed)
        recipe = self.recipe
        if recipe.optimizer == "adam":
            optimizer = keras.optimizers.Adam(recipe.lr, epsilon=recipe.adam_epsilon)
        else:
            momentum = recipe.momentum if recipe.optimizer == "momentum" else 0.0
            optimizer = keras.optimizers.SGD(recipe.lr, momentum=momentum)
        net.compile(optimizer=optimizer,
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    metrics=["sparse_categorical_accuracy"])

    def seed_framework(self, seed: int) -> None:
        keras.utils.set_random_seed(seed)

    @property
    def device(self) -> str:
        return "gpu:0" if tf.config.list_physical_devices("GPU") else "cpu"

    def train_step(self, images: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
        # train_on_batch accumulates its metrics across calls; reset them to get this batch's.
        self.net.reset_metrics()
        logs = self.net.train_on_batch(to_nhwc(images), labels, return_dict=True)
        return float(logs["loss"]), round(float(logs["sparse_categorical_accuracy"]) * len(labels))

    def predict(self, images: np.ndarray) -> np.ndarray:
        return predict_logits(self.net, images)

    def weights_finite(self) -> bool:
        sums = tf.stack([tf.reduce_sum(variable) for variable in self.net.trainable_variables])
        return bool(tf.reduce_all(tf.math.is_finite(sums)))


train = Trainer.train


def evaluate(net: keras.Model, data) -> float:
    """Accuracy of `net` on a :class:`common.data.DataLoader`, in inference mode."""
    return training.accuracy(lambda images: predict_logits(net, images), data.epoch())
