"""A partial last batch trains alike in every framework: lock-step runs of two epochs whose
last batch is partial, so a full batch follows a partial one, compared for every pair of
backends directly (not through a reference) at test_parity's lock-step tolerances.

What it catches that the one-step test in test_parity does not: a trainer that divides a
partial batch's loss (or its gradient) by the size of an earlier, full batch, as Gluon's
``trainer.step(batch_size)`` idiom does with the loader's batch size. There the partial batch
is a fresh trainer's first, so no earlier batch size exists to be used by mistake.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pytest

from common.backends import BACKENDS
from common.data import load_data

from .conftest import get_backend
from .test_parity import (
    ADAM_ATOL_IN_LR,
    LOSS_RTOL,
    RECIPES,
    UPDATE_RTOL,
    WEIGHT_ATOL_OF_SCALE,
    WEIGHT_RTOL,
    LockStep,
    warm_start_folder,
)

# 80 examples in batches of 32: two full batches and one of 16 an epoch.
DATA = dict(batch_size=32, size=67, seed=0, train_limit=80)
EPOCHS = 2
SIZES = [32, 32, 16] * EPOCHS
# The optimizer whose update is the gradient itself (a wrong divisor scales it), and the one
# every preset uses. One optimizer's runs are kept at a time, so the cases run optimizer by
# optimizer: a run keeps the weights after every step (56 MB for NiN).
OPTIMIZERS = ["sgd", "adam"]
PAIRS = list(itertools.combinations(BACKENDS, 2))
CASES = [(optimizer, *pair) for optimizer in OPTIMIZERS for pair in PAIRS]


@dataclass
class Run:
    losses: np.ndarray  # what each step reported
    accuracies: np.ndarray
    expected: np.ndarray  # each batch's mean cross-entropy under the weights the step started from
    weights: list[dict]  # at the start and after each step
    history: list  # the loop's EpochMetrics


class PartialRuns:
    """Each backend's two epochs through `Trainer.fit` (the loop `nin train` runs), from the
    lock-step tests' warm state, with dropout off."""

    def __init__(self, directory):
        self.lockstep = LockStep(directory)
        self.train_data, _ = load_data(**DATA)
        self.batches = [batch for epoch in range(EPOCHS) for batch in self.train_data.epoch(epoch)]
        self.optimizer, self.runs = None, {}

    def run(self, name: str, optimizer: str) -> Run:
        if optimizer != self.optimizer:
            self.optimizer, self.runs = optimizer, {}
        if name not in self.runs:
            self.runs[name] = self._train(name, optimizer)
        return self.runs[name]

    def _train(self, name: str, optimizer: str) -> Run:
        seed, path = self.lockstep.start()
        backend = get_backend(name)
        net = backend.build_nin(seed=seed, dropout=0.0)
        backend.import_weights(net, path)
        weights, points = [backend.get_weights(net)], []
        trainer = backend.Trainer(net, RECIPES[optimizer], seed=0)
        history = trainer.fit(
            self.train_data,
            epochs=EPOCHS,
            progress=False,
            log_every=1,  # a point per step: that step's loss and accuracy
            on_point=points.append,
            checkpoint_every=1,  # after every step, and at each epoch's end
            checkpoint=lambda state: weights.append(backend.get_weights(net)),
        )
        expected = []
        for (images, labels), before in zip(self.batches, weights):
            backend.set_weights(net, before)
            expected.append(_mean_cross_entropy(backend.predict_logits(net, images), labels))
        backend.set_weights(net, weights[-1])
        return Run(
            np.array([point.train_loss for point in points]),
            np.array([point.train_accuracy for point in points]),
            np.array(expected),
            weights,
            history,
        )


def _mean_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    logits = logits.astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(logits).sum(axis=1))
    return float(np.mean(log_norm - logits[np.arange(len(labels)), labels]))


@pytest.fixture(scope="session")
def partial_runs(shared_tmp_path, fashion_mnist):
    return PartialRuns(warm_start_folder(shared_tmp_path))


def test_the_data_ends_each_epoch_with_a_partial_batch(partial_runs):
    assert [len(labels) for _, labels in partial_runs.batches] == SIZES
    assert len(partial_runs.train_data) == len(SIZES) // EPOCHS


@pytest.mark.parametrize("name", list(BACKENDS))
def test_an_epochs_metrics_weigh_each_example_once(partial_runs, name):
    """The loop's epoch loss and accuracy are means over examples, so the partial batch
    counts for its 16, not as a full batch (a mean of the steps' means would)."""
    run = partial_runs.run(name, OPTIMIZERS[0])
    sizes = np.array(SIZES, dtype=np.float64).reshape(EPOCHS, -1)
    losses, accuracies = run.losses.reshape(EPOCHS, -1), run.accuracies.reshape(EPOCHS, -1)
    correct = np.round(accuracies * sizes)
    np.testing.assert_allclose(accuracies * sizes, correct, atol=1e-9)  # whole counts
    assert [metrics.epoch for metrics in run.history] == list(range(1, EPOCHS + 1))
    np.testing.assert_allclose(
        [metrics.train_loss for metrics in run.history],
        (losses * sizes).sum(axis=1) / sizes.sum(axis=1),
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        [metrics.train_accuracy for metrics in run.history],
        correct.sum(axis=1) / sizes.sum(axis=1),
        rtol=1e-12,
    )
    # Informative: the step-weighted mean differs here by more than the tolerance.
    assert not np.allclose(losses.mean(axis=1), (losses * sizes).sum(axis=1) / sizes.sum(axis=1))


@pytest.mark.parametrize("optimizer, first, second", CASES, ids=["-".join(case) for case in CASES])
def test_partial_last_batches_train_in_lock_step(partial_runs, optimizer, first, second):
    """Per step: each reports its batch's mean loss (the partial batch's over its own 16
    examples), the two report the same, and every tensor's update of the one is the other's
    within UPDATE_RTOL; after the last step the weights agree as in test_parity."""
    runs = {name: partial_runs.run(name, optimizer) for name in (first, second)}
    for name, run in runs.items():
        assert len(run.losses) == len(SIZES) and len(run.weights) == len(SIZES) + 1, name
        np.testing.assert_allclose(
            run.losses,
            run.expected,
            rtol=LOSS_RTOL,
            err_msg=f"{name}: each step's reported loss is its batch's mean ({SIZES})",
        )
    a, b = runs[first], runs[second]
    np.testing.assert_allclose(b.losses, a.losses, rtol=LOSS_RTOL, err_msg="per-step losses")
    misses = np.zeros((len(SIZES), len(a.weights[0])))
    for step in range(len(SIZES)):
        for index, key in enumerate(a.weights[0]):
            update = a.weights[step + 1][key] - a.weights[step][key]
            other = b.weights[step + 1][key] - b.weights[step][key]
            misses[step, index] = np.linalg.norm(other - update) / np.linalg.norm(update)
    worst = misses.max(axis=1)
    print(
        f"[partial] {optimizer} {first} vs {second}: max loss rel diff "
        f"{(np.abs(b.losses - a.losses) / a.losses).max():.1e}; worst update miss per step "
        f"{' '.join(f'{value:.1e}' for value in worst)} (batches {SIZES})"
    )
    for step, size in enumerate(SIZES):
        keys = [key for index, key in enumerate(a.weights[0]) if misses[step, index] > UPDATE_RTOL]
        assert not keys, (
            f"step {step + 1} (a batch of {size}): {second}'s update differs from {first}'s by "
            f"up to {worst[step]:.2e} in {keys[:4]}"
        )
    recipe = RECIPES[optimizer]
    for key, expected in a.weights[-1].items():
        atol = WEIGHT_ATOL_OF_SCALE * float(np.abs(expected).max())
        if recipe.optimizer == "adam":
            atol = max(atol, ADAM_ATOL_IN_LR * recipe.lr)
        np.testing.assert_allclose(
            b.weights[-1][key], expected, rtol=WEIGHT_RTOL, atol=atol, err_msg=key
        )
