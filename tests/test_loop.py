"""The one training loop, `common.training.Trainer.fit`, with no framework: a stub backend
records what the loop hands each step. Every backend shares these decisions, so lock-step
tests between frameworks cannot see a mistake in them (all four would make it alike)."""

from __future__ import annotations

import numpy as np
import pytest

from common.data import DataLoader
from common.training import Recipe, Trainer, TrainingStopped, dropout_seed

SIZES = [4, 4, 2]  # 10 examples in batches of 4: the last one partial
EPOCHS = 3
RECIPE = Recipe(optimizer="momentum", lr=0.1, warmup_steps=4, schedule="cosine")


class Stub(Trainer):
    """A backend whose step computes nothing: loss and accuracy are functions of the batch,
    and every hook call is recorded."""

    def __init__(self, seed: int = 3):
        super().__init__(None, RECIPE, seed=seed)
        self.rates, self.seeds, self.steps = [], [], []

    def _set_learning_rate(self, lr: float) -> None:
        self.rates.append(lr)

    def _seed_dropout(self, seed: int) -> None:
        self.seeds.append(seed)

    def _train_step(self, images, labels, total):
        self.steps.append((len(labels), total))
        # A loss that differs from batch to batch, so that how it is averaged shows.
        return float(labels.mean()), int(np.count_nonzero(labels % 2))

    def predict(self, images):
        return np.zeros((len(images), 10), np.float32)

    def weights_finite(self) -> bool:
        return True


@pytest.fixture
def data() -> DataLoader:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (sum(SIZES), 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, sum(SIZES))
    return DataLoader(images, labels, batch_size=4, size=28, shuffle=True)


def test_each_step_gets_its_learning_rate_dropout_seed_and_own_batch_size(data):
    trainer = Stub()
    trainer.fit(data, epochs=EPOCHS, progress=False)
    total = EPOCHS * len(SIZES)
    assert trainer.rates == [RECIPE.learning_rate(step, total) for step in range(total)]
    assert trainer.seeds == [dropout_seed(3, step) for step in range(total)]
    assert len(set(trainer.seeds)) == total  # a new mask every step
    assert trainer.steps == [(size, size) for size in SIZES] * EPOCHS
    assert trainer.step_count == trainer.state.step == total


def _metrics(history) -> list[tuple]:
    return [(item.epoch, item.train_loss, item.train_accuracy) for item in history]


def test_a_resumed_fit_continues_the_schedule_and_the_seeds(data):
    straight = Stub()
    straight.fit(data, epochs=EPOCHS, progress=False)
    stopped = Stub()
    checks = iter(range(100))  # one check after each step but an epoch's last, one per epoch
    with pytest.raises(TrainingStopped) as stop:  # at the fifth check: after step 5, mid-epoch
        stopped.fit(data, epochs=EPOCHS, progress=False, stop_requested=lambda: next(checks) == 4)
    state = stop.value.state  # one epoch complete, two batches of the second done
    assert (state.epoch, state.batch, state.step) == (1, 2, 5)
    resumed = Stub()
    resumed.fit(data, epochs=EPOCHS, progress=False, state=stop.value.state)
    assert stopped.rates + resumed.rates == straight.rates
    assert stopped.seeds + resumed.seeds == straight.seeds
    assert stopped.steps + resumed.steps == straight.steps
    assert _metrics(resumed.state.history) == _metrics(straight.state.history)


def test_an_epochs_metrics_are_means_over_its_examples(data):
    trainer = Stub()
    points = []
    history = trainer.fit(data, epochs=EPOCHS, progress=False, log_every=1, on_point=points.append)
    for epoch, metrics in enumerate(history):
        batches = list(data.epoch(epoch))
        labels = np.concatenate([labels for _, labels in batches])
        # Each step's loss is its batch's mean label, so the epoch's is the mean over examples.
        assert metrics.train_loss == pytest.approx(labels.mean(), rel=1e-12)
        assert metrics.train_accuracy == np.count_nonzero(labels % 2) / len(labels)
        assert metrics.train_loss != pytest.approx(np.mean([b.mean() for _, b in batches]))
    assert [point.step for point in points] == list(range(1, EPOCHS * len(SIZES) + 1))
