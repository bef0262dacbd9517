"""Training NiN in JAX: a pure step, compiled by ``jax.jit``, with the optimizers written out.

A step is two pure functions of arrays: the gradients of the batch's loss (``jax.grad`` of a
function of the parameters) and the update, which takes the parameters and the optimizer's
slots and returns new ones. Nothing changes in place; the Trainer keeps the latest pytrees.
The learning rate, the batch size and the dropout key are arguments, so XLA compiles each
function once, whatever the schedule does.

The optimizers are the update rules of Keras (which MXNet's match), written in ``jax.numpy``:
optax, JAX's optimizer library, needs chex, and no chex release both installs beside NumPy
1.23 and imports in jax 0.4.30 (constraints.txt). Ten lines each, and they must match the
other frameworks to the last bit the tests allow anyway.

Backend layer.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from common import training

from .model import compiled_forward, forward, predict_logits, to_nhwc, with_xla_pooling
from .weights import from_canonical, to_canonical

# Keras's, PyTorch's and MXNet's Adam defaults.
ADAM_BETAS = (0.9, 0.999)


def cross_entropy_sum(logits, labels):
    """The summed softmax cross-entropy of integer `labels`."""
    log_probabilities = jax.nn.log_softmax(logits)
    return -jnp.sum(jnp.take_along_axis(log_probabilities, labels[:, None], axis=1))


def global_norm(tree):
    return jnp.sqrt(sum(jnp.sum(leaf * leaf) for leaf in jax.tree_util.tree_leaves(tree)))


def batch_gradients(architecture, params, images, labels, total, key):
    """The gradients of a batch's share of the loss, the share and the number correct."""

    def share_of_loss(params):
        logits = forward(architecture, params, images, training=True, key=key)
        # The shares of the global batch's mean loss add up to it, and so do their gradients
        # (one process: the mean).
        return cross_entropy_sum(logits, labels) / total, logits

    (share, logits), gradients = jax.value_and_grad(share_of_loss, has_aux=True)(params)
    correct = jnp.sum(jnp.argmax(logits, axis=1) == labels)
    return gradients, share, correct


def update(recipe: training.Recipe, params, slots, gradients, lr, step):
    """Clip to the global norm, add L2, and update: the Recipe, as one pure function of the
    parameters, the optimizer's slots, the gradients, the rate and Adam's t."""
    tree_map = jax.tree_util.tree_map
    if recipe.clip_norm:
        scale = jnp.minimum(
            1.0, recipe.clip_norm / (global_norm(gradients) + training.CLIP_EPSILON)
        )
        gradients = tree_map(lambda gradient: gradient * scale, gradients)
    if recipe.weight_decay:
        # L2 on the gradient, as PyTorch's and MXNet's weight_decay.
        gradients = tree_map(
            lambda gradient, weight: gradient + recipe.weight_decay * weight, gradients, params
        )
    if recipe.optimizer == "sgd":
        return tree_map(lambda w, g: w - lr * g, params, gradients), slots
    if recipe.optimizer == "momentum":
        # Keras's and MXNet's convention: v = mu v - lr g; w += v.
        velocity = tree_map(lambda v, g: recipe.momentum * v - lr * g, slots["velocity"], gradients)
        return tree_map(jnp.add, params, velocity), {"velocity": velocity}
    # Adam as Keras and MXNet take it: both bias corrections folded into the step size, epsilon
    # added to the uncorrected sqrt(v) (nin_torch.train makes PyTorch's agree).
    beta_1, beta_2 = ADAM_BETAS
    alpha = lr * jnp.sqrt(1.0 - beta_2**step) / (1.0 - beta_1**step)
    m = tree_map(lambda m, g: m + (g - m) * (1.0 - beta_1), slots["m"], gradients)
    v = tree_map(lambda v, g: v + (g * g - v) * (1.0 - beta_2), slots["v"], gradients)
    params = tree_map(
        lambda w, m, v: w - (m * alpha) / (jnp.sqrt(v) + recipe.adam_epsilon), params, m, v
    )
    return params, {"m": m, "v": v}


def all_finite(params):
    return jnp.all(
        jnp.array([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(params)])
    )


# Compiled once per (architecture or recipe, shapes) for every Trainer: both are static
# arguments, hashed by value, so a second Trainer of the same model reuses the first's XLA
# programs (about a second of compilation).
compiled_gradients = jax.jit(batch_gradients, static_argnums=0)
compiled_update = jax.jit(update, static_argnums=0)
compiled_all_finite = jax.jit(all_finite)


class Trainer(training.Trainer):
    def __init__(self, net, recipe: training.Recipe | None = None, *, seed: int = 0, fast=True):
        """`fast=False` trains on the book's path: its JAX code (Flax) jits its step too, and
        pools with XLA's own ``reduce_window``, whose gradient is XLA:CPU's slow
        ``select_and_scatter`` (:func:`nin_jax.model.max_pool`)."""
        super().__init__(net, recipe, seed=seed, fast=fast)
        self._lr = self.recipe.lr
        self._key = jax.random.PRNGKey(seed)
        self._slots = self._zero_slots()
        self.architecture = net.architecture if fast else with_xla_pooling(net.architecture)

    @property
    def device(self) -> str:
        device = jax.devices()[0]
        return "cpu" if device.platform == "cpu" else f"{device.platform}:{device.id}"

    def _zero_slots(self) -> dict[str, dict]:
        names = {"adam": ("m", "v"), "momentum": ("velocity",)}.get(self.recipe.optimizer, ())
        return {name: jax.tree_util.tree_map(jnp.zeros_like, self.net.params) for name in names}

    def _seed_dropout(self, seed: int) -> None:
        # No generator to reset: the key is an argument of the step, made from the seed.
        self._key = jax.random.PRNGKey(seed)

    def _set_learning_rate(self, lr: float) -> None:
        self._lr = lr

    def _train_step(self, images: np.ndarray, labels: np.ndarray, total: int) -> tuple[float, int]:
        gradients, share, correct = compiled_gradients(
            self.architecture,
            self.net.params,
            to_nhwc(images),
            np.asarray(labels, np.int32),
            np.float32(total),
            self._key,
        )
        gradients = self._sum_over_replicas(gradients)
        self.net.params, self._slots = compiled_update(
            self.recipe,
            self.net.params,
            self._slots,
            gradients,
            np.float32(self._lr),
            np.float32(self.step_count + 1),  # Adam's t
        )
        return float(share), int(correct)

    # How a worker of a data-parallel run differs (nin_jax.distributed): the gradients are
    # summed over the processes between the two pure functions. In one process, as they are.
    def _sum_over_replicas(self, gradients):
        return gradients

    def predict(self, images: np.ndarray) -> np.ndarray:
        if not self.fast:
            return np.asarray(compiled_forward(self.architecture, self.net.params, to_nhwc(images)))
        return predict_logits(self.net, images)

    def weights_finite(self) -> bool:
        return bool(compiled_all_finite(self.net.params))

    # -- optimizer state in canonical form --------------------------------------------------
    def optimizer_state(self) -> training.OptimizerState:
        slots = {}
        if self.step_count:
            slots = {name: to_canonical(self.net, tree) for name, tree in self._slots.items()}
        return training.OptimizerState(self.recipe.optimizer, self.step_count, slots)

    def load_optimizer_state(self, state: training.OptimizerState) -> None:
        self.step_count = state.step
        self._slots = (
            {name: from_canonical(self.net, state.slots[name]) for name in self._slots}
            if state.step
            else self._zero_slots()
        )
