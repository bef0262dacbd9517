"""Training NiN in Keras 3: a compiled (``tf.function``) train step with a Keras optimizer.

Batches come from the shared loader (so all backends see the same examples in the same order)
instead of ``fit``'s own data pipeline. The step is Keras's own "training loop from scratch":
``GradientTape``, the loss, ``optimizer.apply``, traced once for any batch size.

Backend layer.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from common import training

from .model import predict_logits, to_nhwc
from .weights import _variables, from_canonical, parameter_names, to_canonical


class Trainer(training.Trainer):
    def __init__(
        self,
        net: keras.Model,
        recipe: training.Recipe | None = None,
        *,
        seed: int = 0,
        fast: bool = True,
    ):
        super().__init__(net, recipe, seed=seed, fast=fast)
        recipe = self.recipe
        if recipe.optimizer == "adam":
            self.optimizer = keras.optimizers.Adam(recipe.lr, epsilon=recipe.adam_epsilon)
        else:
            momentum = recipe.momentum if recipe.optimizer == "momentum" else 0.0
            self.optimizer = keras.optimizers.SGD(recipe.lr, momentum=momentum)
        # The variables in canonical order, so the optimizer's slot i is parameter_names[i].
        self._variables = _variables(net)
        self.optimizer.build(self._variables)
        # (A Dropout of rate 0 has no seed generator: it is the identity.)
        self._dropout_states = [
            layer.seed_generator.state
            for layer in _dropout_layers(net)
            if hasattr(layer, "seed_generator")
        ]
        self._summed_loss = keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction="sum"
        )
        self._compiled_step = tf.function(
            self._graph_step,
            input_signature=[
                tf.TensorSpec([None, None, None, net.spec.in_channels], tf.float32),
                tf.TensorSpec([None], tf.int64),
                tf.TensorSpec([], tf.float32),
            ],
        )
        if not fast:  # the book's Keras: compile() and Keras's own train step
            if recipe.clip_norm or recipe.weight_decay:
                raise ValueError("the plain-Keras baseline trains without clipping or weight decay")
            net.compile(
                optimizer=self.optimizer,
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["sparse_categorical_accuracy"],
            )

    @property
    def device(self) -> str:
        return "gpu:0" if tf.config.list_physical_devices("GPU") else "cpu"

    def _seed_dropout(self, seed: int) -> None:
        # A Keras Dropout draws stateless masks from its SeedGenerator's (seed, counter) state;
        # resetting the state makes this step's masks a function of `seed` alone.
        for index, state in enumerate(self._dropout_states):
            state.assign(np.array([seed + index, 0], np.int64))

    def _set_learning_rate(self, lr: float) -> None:
        self.optimizer.learning_rate = lr

    def _graph_step(self, images, labels, total):
        gradients, share, correct = self._on_replicas(self._replica_step, images, labels, total)
        self._apply(gradients)
        return share, correct

    def _replica_step(self, images, labels, total):
        with tf.GradientTape() as tape:
            logits = self.net(images, training=True)
            # The shares of the global batch's mean loss add up to it, and so do their
            # gradients (one process: the mean). A sum, as Keras divides a mean loss by the
            # number of replicas inside a distribution strategy.
            share = self._summed_loss(labels, logits) / total
        gradients = self._sum_over_replicas(tape.gradient(share, self._variables))
        correct = tf.reduce_sum(tf.cast(tf.argmax(logits, axis=1) == labels, tf.int32))
        return gradients, share, correct

    # How a worker of a data-parallel run differs (nin_tf.distributed): the replica step runs
    # in strategy.run, and its gradients are all-reduced there. In one process, as is.
    def _on_replicas(self, step, *args):
        return step(*args)

    def _sum_over_replicas(self, gradients):
        return gradients

    def _apply(self, gradients) -> None:
        """Clip to the global norm, add L2, and update: the Recipe, inside the traced step."""
        if self.recipe.clip_norm:
            norm = tf.linalg.global_norm(gradients)
            scale = tf.minimum(1.0, self.recipe.clip_norm / (norm + training.CLIP_EPSILON))
            gradients = [gradient * scale for gradient in gradients]
        if self.recipe.weight_decay:
            # L2 on the gradient, as PyTorch's and MXNet's weight_decay (Keras's own
            # `weight_decay` is decoupled, AdamW-style, which is another optimizer).
            gradients = [
                gradient + self.recipe.weight_decay * variable
                for gradient, variable in zip(gradients, self._variables)
            ]
        self.optimizer.apply(gradients, self._variables)

    def _train_step(self, images: np.ndarray, labels: np.ndarray, total: int) -> tuple[float, int]:
        if not self.fast:
            # train_on_batch accumulates its metrics across calls; reset them for this batch's.
            self.net.reset_metrics()
            logs = self.net.train_on_batch(to_nhwc(images), labels, return_dict=True)
            return (
                float(logs["loss"]),
                round(float(logs["sparse_categorical_accuracy"]) * len(labels)),
            )
        share, correct = self._compiled_step(to_nhwc(images), labels, np.float32(total))
        return float(share), int(correct)

    def predict(self, images: np.ndarray) -> np.ndarray:
        if not self.fast:  # the book's Keras calls the model eagerly
            return keras.ops.convert_to_numpy(self.net(to_nhwc(images), training=False))
        return predict_logits(self.net, images)

    def weights_finite(self) -> bool:
        return bool(self._all_finite())

    @tf.function
    def _all_finite(self):
        # One traced graph instead of 26 eager reductions (3 ms, 2% of a step, eagerly).
        return tf.reduce_all(
            tf.math.is_finite(tf.stack([tf.reduce_sum(variable) for variable in self._variables]))
        )

    # -- optimizer state in canonical form --------------------------------------------------
    def _slot_variables(self) -> dict[str, list]:
        if self.recipe.optimizer == "adam":
            return {"m": self.optimizer._momentums, "v": self.optimizer._velocities}
        if self.recipe.optimizer == "momentum":
            return {"velocity": self.optimizer.momentums}
        return {}

    def optimizer_state(self) -> training.OptimizerState:
        names = parameter_names(self.net)
        slots = {
            slot: to_canonical(
                self.net,
                {
                    name: keras.ops.convert_to_numpy(variable)
                    for name, variable in zip(names, variables)
                },
            )
            for slot, variables in self._slot_variables().items()
        }
        if self.step_count == 0:
            slots = {}
        return training.OptimizerState(self.recipe.optimizer, self.step_count, slots)

    def load_optimizer_state(self, state: training.OptimizerState) -> None:
        self.step_count = state.step
        self.optimizer.iterations.assign(state.step)
        names = parameter_names(self.net)
        for slot, variables in self._slot_variables().items():
            arrays = (
                from_canonical(self.net, state.slots[slot])
                if state.step
                else {
                    name: np.zeros(variable.shape, np.float32)
                    for name, variable in zip(names, variables)
                }
            )
            for name, variable in zip(names, variables):
                variable.assign(arrays[name])


def _dropout_layers(layer) -> list:
    if isinstance(layer, keras.layers.Dropout):
        return [layer]
    return [found for child in getattr(layer, "layers", []) for found in _dropout_layers(child)]
