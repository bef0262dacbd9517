"""Training NiN in MXNet Gluon: ``autograd.record`` + ``Trainer.step`` on the hybridized net.

Backend layer.
"""

from __future__ import annotations

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd

from common import training

from .model import _context, predict_logits
from .weights import from_canonical, parameter_names, parameters, to_canonical


class Trainer(training.Trainer):
    def __init__(
        self,
        net: gluon.HybridBlock,
        recipe: training.Recipe | None = None,
        *,
        seed: int = 0,
        fast: bool = True,
    ):
        super().__init__(net, recipe, seed=seed, fast=fast)
        if not fast:
            net.hybridize(active=False)  # the book's imperative Gluon
        self.ctx = _context(net)
        self.loss = gluon.loss.SoftmaxCrossEntropyLoss()  # per example, not averaged
        recipe = self.recipe
        options = {"learning_rate": recipe.lr, "wd": recipe.weight_decay}
        if recipe.optimizer == "adam":
            options["epsilon"] = recipe.adam_epsilon
        else:
            options["momentum"] = recipe.momentum if recipe.optimizer == "momentum" else 0.0
        # The Parameters in canonical order, so the updater's index i is parameter_names[i].
        self._parameters = parameters(net)
        self.trainer = gluon.Trainer(
            self._parameters, "adam" if recipe.optimizer == "adam" else "sgd", options
        )

    @property
    def device(self) -> str:
        return str(self.ctx)

    def _seed_dropout(self, seed: int) -> None:
        mx.random.seed(seed)

    def _set_learning_rate(self, lr: float) -> None:
        self.trainer.set_learning_rate(lr)

    def _train_step(self, images: np.ndarray, labels: np.ndarray, total: int) -> tuple[float, int]:
        images = nd.array(images, ctx=self.ctx)
        labels = nd.array(labels, ctx=self.ctx, dtype="int64")
        with autograd.record():  # train mode: dropout on
            logits = self.net(images)
            losses = self.loss(logits, labels)
        # backward() of a vector sums the per-example gradients; update(total) divides them
        # by the batch size, which makes the update the mean-loss update of the others.
        losses.backward()
        self._sum_over_workers([parameter.grad() for parameter in self._parameters])
        divisor = total
        if self.recipe.clip_norm:
            # Clipping scales the mean gradient, whose norm is the summed gradient's / batch.
            norm = (
                float(
                    nd.sqrt(nd.add_n(*[(p.grad() ** 2).sum() for p in self._parameters])).asscalar()
                )
                / total
            )
            scale = min(1.0, self.recipe.clip_norm / (norm + training.CLIP_EPSILON))
            divisor = total / scale
        self.trainer.update(divisor)
        correct = (logits.argmax(axis=1).astype("int64") == labels).sum()
        return float(losses.mean().asscalar()) * (len(labels) / total), int(correct.asscalar())

    def _sum_over_workers(self, gradients: list[nd.NDArray]) -> None:
        """Replace each gradient by its sum over the workers: nothing to do in one process
        (nin_mxnet.distributed's worker goes through the kvstore)."""

    def predict(self, images: np.ndarray) -> np.ndarray:
        return predict_logits(self.net, images)

    def weights_finite(self) -> bool:
        # One fused op for all parameters (26 separate sums cost 5x more, ~5% of a step). A
        # square that overflows counts as diverged too: no healthy weight is near 1e19.
        arrays = [p.data() for p in self._parameters]
        return bool(np.isfinite(nd.multi_sum_sq(*arrays, num_arrays=len(arrays)).asnumpy()).all())

    # -- optimizer state in canonical form --------------------------------------------------
    # Gluon keeps it in the updater: states[i] is (mean, var) for Adam, the momentum NDArray
    # for SGD with momentum (None without), and the optimizer counts updates per index.
    def optimizer_state(self) -> training.OptimizerState:
        states = self.trainer._updaters[0].states
        slots: dict[str, dict[str, np.ndarray]] = {}
        for index, name in enumerate(parameter_names(self.net)):
            state = states.get(index)
            if state is None:
                continue
            if self.recipe.optimizer == "adam":
                slots.setdefault("m", {})[name] = state[0].asnumpy()
                slots.setdefault("v", {})[name] = state[1].asnumpy()
            elif self.recipe.optimizer == "momentum":
                slots.setdefault("velocity", {})[name] = state.asnumpy()
        return training.OptimizerState(
            self.recipe.optimizer,
            self.step_count,
            {slot: to_canonical(self.net, arrays) for slot, arrays in slots.items()},
        )

    def load_optimizer_state(self, state: training.OptimizerState) -> None:
        self.step_count = state.step
        updater, optimizer = self.trainer._updaters[0], self.trainer._optimizer
        updater.states.clear()
        updater.states_synced.clear()
        optimizer._index_update_count.clear()
        optimizer.num_update = optimizer.begin_num_update = state.step
        if state.step == 0:
            return
        slots = {slot: from_canonical(self.net, arrays) for slot, arrays in state.slots.items()}
        for index, (name, parameter) in enumerate(zip(parameter_names(self.net), self._parameters)):
            optimizer._index_update_count[index] = state.step  # Adam's t for bias correction
            if self.recipe.optimizer == "sgd":
                continue
            created = optimizer.create_state_multi_precision(index, parameter.data())
            if self.recipe.optimizer == "adam":
                created[0][:] = slots["m"][name]
                created[1][:] = slots["v"][name]
            else:
                created[:] = slots["velocity"][name]
            updater.states[index] = created
            updater.states_synced[index] = True
