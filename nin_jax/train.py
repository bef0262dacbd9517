"""Training NiN in JAX: a pure step compiled by ``jax.jit``, with optax's optimizers.

A step is two pure functions of arrays: the gradients of the batch's loss (``jax.grad`` of a
function of the parameters, through the Flax module's ``apply``) and the update, optax's
chain of clipping, L2 and the optimizer, which takes the parameters and the optimizer's state
and returns new ones. Nothing changes in place; the Trainer keeps the latest pytrees. The
learning rate is a hyperparameter of the state (``optax.inject_hyperparams``), so XLA compiles
each function once, whatever the schedule does.

optax's conventions are PyTorch's; the project's are Keras's and MXNet's. Two differences
matter and are bridged here, as :mod:`nin_torch.train` bridges PyTorch's (README, "How the
frameworks differ"):

* Adam's epsilon is added to the bias-corrected sqrt(v): it is given as
  ``epsilon / sqrt(1 - b2^t)`` at step t (:func:`adam_epsilon_at`);
* momentum keeps the trace ``t = mu t + g`` and steps ``-lr t``, so the trace is rescaled by
  lr_old / lr_new when the rate changes (:meth:`Trainer._rescale_momentum`), and stored as
  Keras's velocity ``-lr t``.

``optax.clip_by_global_norm`` scales by ``max_norm / norm`` where PyTorch's
``clip_grad_norm_`` scales by ``max_norm / (norm + 1e-6)`` (``common.training.CLIP_EPSILON``):
a relative difference of 1e-6 / norm in the update, and clipping acts only where the norm is
at least the clip norm (0.1 or more in every recipe), so it is left as optax has it.

Backend layer.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from common import training

from .model import compiled_logits, predict_logits, to_nhwc
from .weights import from_canonical, to_canonical

# Keras's, PyTorch's, MXNet's and optax's Adam defaults.
ADAM_BETAS = (0.9, 0.999)


def cross_entropy_sum(logits, labels):
    """The summed softmax cross-entropy of integer `labels`."""
    log_probabilities = jax.nn.log_softmax(logits)
    return -jnp.sum(jnp.take_along_axis(log_probabilities, labels[:, None], axis=1))


@functools.cache
def optimizer(recipe: training.Recipe) -> optax.GradientTransformation:
    """The recipe's update as an optax chain: clip to the global norm, add L2 to the gradient
    (PyTorch's and MXNet's weight_decay, not Keras's decoupled one), then the optimizer, whose
    learning rate (and Adam's epsilon) the Trainer sets every step."""
    chain = []
    if recipe.clip_norm:
        chain.append(optax.clip_by_global_norm(recipe.clip_norm))
    if recipe.weight_decay:
        chain.append(optax.add_decayed_weights(recipe.weight_decay))
    if recipe.optimizer == "adam":
        beta_1, beta_2 = ADAM_BETAS
        rule = optax.inject_hyperparams(optax.adam)(
            learning_rate=recipe.lr, b1=beta_1, b2=beta_2, eps=recipe.adam_epsilon
        )
    elif recipe.optimizer == "momentum":
        rule = optax.inject_hyperparams(optax.sgd)(
            learning_rate=recipe.lr, momentum=recipe.momentum
        )
    else:
        rule = optax.inject_hyperparams(optax.sgd)(learning_rate=recipe.lr)
    return optax.chain(*chain, rule)


def adam_epsilon_at(recipe: training.Recipe, t: int) -> float:
    """The epsilon that makes optax's Adam take Keras's and MXNet's step t.

    Keras and MXNet fold both bias corrections into the step size and add epsilon to the
    uncorrected sqrt(v): lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps). optax, like
    PyTorch, adds it to the corrected one: lr m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps).
    They are equal when optax's epsilon is eps / sqrt(1 - b2^t); without this, the updates
    differ by 10-30 % where sqrt(v) is near eps (tests/test_parity.py).
    """
    return recipe.adam_epsilon / math.sqrt(1.0 - ADAM_BETAS[1] ** t)


# The state of optimizer(recipe): a tuple, one state per link of the chain; the last is the
# optimizer's, ``inject_hyperparams``' (its `hyperparams`, and `inner_state`, whose first link
# holds Adam's `count`, `mu` and `nu`, or momentum's `trace`).


def _with_hyperparameters(state, **values):
    """The chain's `state` with the optimizer's injected hyperparameters `values`."""
    *chain, rule = state
    return (*chain, rule._replace(hyperparams={**rule.hyperparams, **values}))


def _slots(state):
    """The optimizer's own state: Adam's ``ScaleByAdamState`` or momentum's ``TraceState``."""
    return state[-1].inner_state[0]


def _with_slots(state, **fields):
    """The chain's `state` with `fields` of the optimizer's own state replaced."""
    *chain, rule = state
    slots, *others = rule.inner_state
    return (*chain, rule._replace(inner_state=(slots._replace(**fields), *others)))


def batch_gradients(module, params, images, labels, total, key):
    """The gradients of a batch's share of the loss, the share and the number correct."""

    def share_of_loss(params):
        logits = module.apply({"params": params}, images, training=True, rngs={"dropout": key})
        # The shares of the global batch's mean loss add up to it, and so do their gradients
        # (one process: the mean).
        return cross_entropy_sum(logits, labels) / total, logits

    (share, logits), gradients = jax.value_and_grad(share_of_loss, has_aux=True)(params)
    correct = jnp.sum(jnp.argmax(logits, axis=1) == labels)
    return gradients, share, correct


def update(recipe: training.Recipe, params, state, gradients, hyperparameters: dict):
    """The Recipe's update, one pure function of the parameters, the optimizer's state, the
    gradients and this step's hyperparameters (the learning rate; Adam's epsilon)."""
    state = _with_hyperparameters(state, **hyperparameters)
    updates, state = optimizer(recipe).update(gradients, state, params)
    return optax.apply_updates(params, updates), state


def all_finite(params):
    return jnp.all(
        jnp.array([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(params)])
    )


# Compiled once per (module or recipe, shapes) for every Trainer: both are static arguments,
# hashed by value, so a second Trainer of the same model reuses the first's XLA programs
# (about a second of compilation).
compiled_gradients = jax.jit(batch_gradients, static_argnums=0)
compiled_update = jax.jit(update, static_argnums=0)
compiled_all_finite = jax.jit(all_finite)
compiled_scale = jax.jit(lambda tree, factor: jax.tree_util.tree_map(lambda x: x * factor, tree))


class Trainer(training.Trainer):
    def __init__(self, net, recipe: training.Recipe | None = None, *, seed: int = 0, fast=True):
        """`fast=False` trains on the book's path: its JAX code (Flax) jits its step too, and
        pools with ``nn.max_pool`` (XLA's ``reduce_window``), whose gradient is XLA:CPU's slow
        ``select_and_scatter``; the fast path pools with :func:`nin_jax.model.max_pool`."""
        super().__init__(net, recipe, seed=seed, fast=fast)
        self.module = net.module.clone(fast_pooling=fast)
        self._key = jax.random.PRNGKey(seed)
        self._lr = self.recipe.lr  # the rate the momentum trace is scaled for
        self._state = self._initial_state()

    @property
    def device(self) -> str:
        device = jax.devices()[0]
        return "cpu" if device.platform == "cpu" else f"{device.platform}:{device.id}"

    def _initial_state(self):
        state = optimizer(self.recipe).init(self.net.params)
        # As the update returns them (float32 arrays), or the second step compiles it again.
        hyperparameters = {
            name: jnp.asarray(value) for name, value in self._hyperparameters(1).items()
        }
        return _with_hyperparameters(state, **hyperparameters)

    def _hyperparameters(self, t: int) -> dict:
        values = {"learning_rate": self._lr}
        if self.recipe.optimizer == "adam":
            values["eps"] = adam_epsilon_at(self.recipe, t)
        return {name: np.float32(value) for name, value in values.items()}

    def _seed_dropout(self, seed: int) -> None:
        # No generator to reset: the key is an argument of the step, made from the seed.
        self._key = jax.random.PRNGKey(seed)

    def _set_learning_rate(self, lr: float) -> None:
        if self.recipe.optimizer == "momentum" and lr != self._lr:
            self._rescale_momentum(self._lr / lr)
        self._lr = lr

    def _rescale_momentum(self, factor: float) -> None:
        """Keep optax's momentum the update Keras and MXNet make when the lr changes.

        optax (as PyTorch) keeps t = mu t + g and steps w -= lr t; Keras and MXNet keep
        v = mu v - lr g and step w += v. They agree while v = -lr t, which a new lr breaks
        unless t is rescaled by lr_old / lr_new (with a schedule they would otherwise differ).
        """
        trace = _slots(self._state).trace
        self._state = _with_slots(self._state, trace=compiled_scale(trace, np.float32(factor)))

    def _train_step(self, images: np.ndarray, labels: np.ndarray, total: int) -> tuple[float, int]:
        gradients, share, correct = compiled_gradients(
            self.module,
            self.net.params,
            to_nhwc(images),
            np.asarray(labels, np.int32),
            np.float32(total),
            self._key,
        )
        gradients = self._sum_over_replicas(gradients)
        self.net.params, self._state = compiled_update(
            self.recipe,
            self.net.params,
            self._state,
            gradients,
            self._hyperparameters(self.step_count + 1),  # Adam's t
        )
        return float(share), int(correct)

    # How a worker of a data-parallel run differs (nin_jax.distributed): the gradients are
    # summed over the processes between the two pure functions. In one process, as they are.
    def _sum_over_replicas(self, gradients):
        return gradients

    def predict(self, images: np.ndarray) -> np.ndarray:
        if not self.fast:
            return np.asarray(compiled_logits(self.module, self.net.params, to_nhwc(images)))
        return predict_logits(self.net, images)

    def weights_finite(self) -> bool:
        return bool(compiled_all_finite(self.net.params))

    # -- optimizer state in canonical form --------------------------------------------------
    def optimizer_state(self) -> training.OptimizerState:
        slots, held = {}, _slots(self._state)
        if self.step_count and self.recipe.optimizer == "adam":
            slots = {"m": to_canonical(self.net, held.mu), "v": to_canonical(self.net, held.nu)}
        elif self.step_count and self.recipe.optimizer == "momentum":
            velocity = compiled_scale(held.trace, np.float32(-self._lr))  # Keras's v = -lr t
            slots = {"velocity": to_canonical(self.net, velocity)}
        return training.OptimizerState(self.recipe.optimizer, self.step_count, slots)

    def load_optimizer_state(self, state: training.OptimizerState) -> None:
        self.step_count = state.step
        # Stored for the recipe's base rate; the next _set_learning_rate rescales them.
        self._lr = self.recipe.lr
        self._state = self._initial_state()
        if not state.step or self.recipe.optimizer == "sgd":
            return
        slots = {name: from_canonical(self.net, arrays) for name, arrays in state.slots.items()}
        if self.recipe.optimizer == "adam":
            # Adam's bias corrections count the updates taken (optax's `count`).
            count = jnp.asarray(state.step, jnp.int32)
            self._state = _with_slots(self._state, count=count, mu=slots["m"], nu=slots["v"])
        else:
            trace = compiled_scale(slots["velocity"], np.float32(-1.0 / self._lr))
            self._state = _with_slots(self._state, trace=trace)
