"""One training loop for every backend: epochs, metrics, progress bar and the NaN guard.

A backend subclasses :class:`Trainer` and implements only what its framework does differently:
seeding, one optimisation step and inference. Everything a user compares across frameworks
(what is averaged, when accuracy is measured, how time is counted) is therefore defined once.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterable

import numpy as np

OPTIMIZERS = ("sgd", "momentum", "adam")


@dataclass(frozen=True)
class Recipe:
    """How to train. ``Recipe()`` is this project's default, ``Recipe.book()`` is d2l's.

    Plain SGD at the book's lr 0.1 often leaves NiN at loss ln(10) = 2.303 for epochs: the
    last block ends in ReLU and Xavier initialisation makes the initial logits tiny (about
    1e-3), so at the start most class maps are <= 0 on every image ("dead") and get no
    gradient. Adam's per-parameter step sizes leave that plateau within the first hundred
    steps; a class map that stays dead caps the accuracy instead (see the README).
    """

    optimizer: str = "adam"
    lr: float = 2e-3
    momentum: float = 0.9  # only for "momentum"
    # The same epsilon everywhere (Keras defaults to 1e-7, PyTorch and MXNet to 1e-8), and in
    # the same place: see nin_torch.train.Trainer._match_keras_adam_epsilon.
    adam_epsilon: float = 1e-8

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"learning rate must be a positive number, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")

    @classmethod
    def book(cls) -> "Recipe":
        """d2l 7.3: plain minibatch SGD, learning rate 0.1."""
        return cls(optimizer="sgd", lr=0.1)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; training stopped at once."""


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int
    train_loss: float
    train_accuracy: float
    test_accuracy: float | None
    examples_per_second: float
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def accuracy(predict: Callable[[np.ndarray], np.ndarray], batches: Iterable) -> float:
    """Fraction of correctly classified examples; `predict` maps images to logits."""
    correct = total = 0
    for images, labels in batches:
        correct += int((predict(images).argmax(axis=1) == labels).sum())
        total += len(labels)
    return correct / total


class Trainer:
    """Trains one backend's network; subclasses implement the three framework-specific hooks."""

    backend = "?"

    def __init__(self, net, recipe: Recipe | None = None, *, seed: int = 0):
        self.net = net
        self.recipe = recipe or Recipe()
        self.seed = seed
        self.seed_framework(seed)

    # -- framework hooks -------------------------------------------------------------------
    def seed_framework(self, seed: int) -> None:
        """Seed the framework's RNG (dropout masks)."""
        raise NotImplementedError

    def train_step(self, images: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
        """One optimisation step on NCHW float32 `images`: (mean loss, number correct)."""
        raise NotImplementedError

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Logits in inference mode (dropout off)."""
        raise NotImplementedError

    def weights_finite(self) -> bool:
        """Whether every parameter is finite. Checked after every step because a finite loss
        does not prove it: MXNet's ReLU maps NaN to 0, so a net with NaN weights still reports
        loss ln(10)."""
        raise NotImplementedError

    @property
    def device(self) -> str:
        return "cpu"

    # -- shared loop ---------------------------------------------------------------------
    def evaluate(self, batches: Iterable) -> float:
        return accuracy(self.predict, batches)

    def fit(self, train_data, test_data=None, *, epochs: int, progress: bool | None = None,
            on_epoch: Callable[[EpochMetrics], None] | None = None) -> list[EpochMetrics]:
        """Train for `epochs` passes over `train_data` (a :class:`common.data.DataLoader`).

        After each epoch, `test_data` is scored in inference mode. `progress=None` shows a
        tqdm bar only on a terminal. Raises :class:`TrainingDiverged` on a NaN/inf loss.
        """
        from tqdm.auto import tqdm

        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        history = []
        for epoch in range(1, epochs + 1):
            loss_sum = correct = seen = 0
            start = time.perf_counter()
            bar = tqdm(train_data.epoch(epoch - 1), total=len(train_data), leave=False,
                       desc=f"{self.backend} epoch {epoch}/{epochs}",
                       disable=None if progress is None else not progress)
            for step, (images, labels) in enumerate(bar, start=1):
                loss, batch_correct = self.train_step(images, labels)
                problem = (f"loss became {loss}" if not math.isfinite(loss) else
                           None if self.weights_finite() else "weights became NaN or inf")
                if problem:
                    bar.close()
                    raise TrainingDiverged(
                        f"{self.backend}: {problem} at epoch {epoch}, step {step} "
                        f"({self.recipe.optimizer}, lr {self.recipe.lr:g}); training stopped. "
                        f"Try a lower learning rate, e.g. --lr {self.recipe.lr / 10:g}")
                loss_sum += loss * len(labels)
                correct += batch_correct
                seen += len(labels)
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
            seconds = time.perf_counter() - start
            test_accuracy = self.evaluate(test_data.epoch()) if test_data is not None else None
            metrics = EpochMetrics(epoch, loss_sum / seen, correct / seen, test_accuracy,
                                   seen / seconds, seconds)
            history.append(metrics)
            if on_epoch:
                on_epoch(metrics)
        return history

    @classmethod
    def train(cls, net, train_data, test_data=None, *, epochs: int, lr: float = 2e-3,
              optimizer: str = "adam", momentum: float = 0.9, seed: int = 0,
              progress: bool | None = None,
              on_epoch: Callable[[EpochMetrics], None] | None = None) -> list[EpochMetrics]:
        """Train `net` in place (the book's ``train_ch6``); returns per-epoch metrics.

        The batch size and input size are the data loaders' (``common.data.load_data``).
        """
        trainer = cls(net, Recipe(optimizer=optimizer, lr=lr, momentum=momentum), seed=seed)
        return trainer.fit(train_data, test_data, epochs=epochs, progress=progress,
                           on_epoch=on_epoch)
