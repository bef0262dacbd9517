"""Training NiN in MXNet Gluon: ``autograd.record`` + ``Trainer.step`` on the hybridized net."""

from __future__ import annotations

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd

from common import training

from .model import _context, predict_logits


class Trainer(training.Trainer):
    backend = "mxnet"

    def __init__(self, net: gluon.HybridBlock, recipe: training.Recipe | None = None, *,
                 seed: int = 0):
        super().__init__(net, recipe, seed=seed)
        self.ctx = _context(net)
        self.loss = gluon.loss.SoftmaxCrossEntropyLoss()  # per example, not averaged
        recipe = self.recipe
        if recipe.optimizer == "adam":
            options = {"learning_rate": recipe.lr, "epsilon": recipe.adam_epsilon}
        else:
            momentum = recipe.momentum if recipe.optimizer == "momentum" else 0.0
            options = {"learning_rate": recipe.lr, "momentum": momentum}
        self.trainer = gluon.Trainer(net.collect_params(),
                                     "adam" if recipe.optimizer == "adam" else "sgd", options)

    def seed_framework(self, seed: int) -> None:
        mx.random.seed(seed)

    @property
    def device(self) -> str:
        return str(self.ctx)

    def train_step(self, images: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
        images = nd.array(images, ctx=self.ctx)
        labels = nd.array(labels, ctx=self.ctx, dtype="int64")
        with autograd.record():  # train mode: dropout on
            logits = self.net(images)
            losses = self.loss(logits, labels)
        # backward() of a vector sums the per-example gradients; step(batch_size) divides
        # them by the batch size, which makes the update the mean-loss update of the others.
        losses.backward()
        self.trainer.step(len(labels))
        correct = (logits.argmax(axis=1).astype("int64") == labels).sum()
        return float(losses.mean().asscalar()), int(correct.asscalar())

    def predict(self, images: np.ndarray) -> np.ndarray:
        return predict_logits(self.net, images)

    def weights_finite(self) -> bool:
        sums = nd.stack(*[p.data().sum() for p in self.net.collect_params().values()])
        return bool(nd.contrib.isfinite(sums).min().asscalar())


train = Trainer.train


def evaluate(net: gluon.Block, data) -> float:
    """Accuracy of `net` on a :class:`common.data.DataLoader`, in inference mode."""
    return training.accuracy(lambda images: predict_logits(net, images), data.epoch())
