"""Training NiN in PyTorch: the usual zero_grad / backward / step loop."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from common import training

from .model import predict_logits


class Trainer(training.Trainer):
    backend = "torch"

    def __init__(self, net: nn.Module, recipe: training.Recipe | None = None, *, seed: int = 0):
        super().__init__(net, recipe, seed=seed)
        self._device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        net.to(self._device)
        self.loss = nn.CrossEntropyLoss()  # mean over the batch
        recipe = self.recipe
        self.steps = 0
        if recipe.optimizer == "adam":
            self.optimizer = torch.optim.Adam(net.parameters(), lr=recipe.lr, eps=recipe.adam_epsilon)
        else:
            momentum = recipe.momentum if recipe.optimizer == "momentum" else 0.0
            self.optimizer = torch.optim.SGD(net.parameters(), lr=recipe.lr, momentum=momentum)

    def seed_framework(self, seed: int) -> None:
        torch.manual_seed(seed)

    @property
    def device(self) -> str:
        return str(self._device)

    def train_step(self, images: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
        self.net.train()
        images = torch.from_numpy(images).to(self._device)
        labels = torch.from_numpy(labels).to(self._device)
        logits = self.net(images)
        loss = self.loss(logits, labels)
        self.optimizer.zero_grad()
        loss.backward()
        self.steps += 1
        if self.recipe.optimizer == "adam":
            self._match_keras_adam_epsilon()
        self.optimizer.step()
        return loss.item(), int((logits.argmax(dim=1) == labels).sum())

    def _match_keras_adam_epsilon(self) -> None:
        """Make torch's Adam take the step Keras's and MXNet's Adam take.

        Keras and MXNet fold both bias corrections into the step size and add epsilon to the
        uncorrected sqrt(v): lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps). PyTorch adds it
        to the corrected one: lr / (1 - b1^t) m / (sqrt(v) / sqrt(1 - b2^t) + eps). They are
        equal when PyTorch's epsilon is eps / sqrt(1 - b2^t) at step t; without this, the
        updates differ by 10-30% where sqrt(v) is near eps (tests/test_parity.py).
        """
        for group in self.optimizer.param_groups:
            group["eps"] = self.recipe.adam_epsilon / math.sqrt(1.0 - group["betas"][1] ** self.steps)

    def predict(self, images: np.ndarray) -> np.ndarray:
        return predict_logits(self.net, images)

    def weights_finite(self) -> bool:
        with torch.no_grad():
            return bool(torch.isfinite(torch.stack([p.sum() for p in self.net.parameters()])).all())


train = Trainer.train


def evaluate(net: nn.Module, data) -> float:
    """Accuracy of `net` on a :class:`common.data.DataLoader`, in inference mode."""
    return training.accuracy(lambda images: predict_logits(net, images), data.epoch())
