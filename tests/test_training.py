"""Training on the real Fashion-MNIST: convergence in every backend, agreement between them,
and the NaN guard."""

from __future__ import annotations

import functools
import json

import pytest

from common.backends import BACKENDS
from common.runs import RunConfig
from common.training import Recipe, TrainingDiverged

from .conftest import get_backend

# The default `nin compare` recipe, so this test is what the README's main job promises.
CONFIG = RunConfig()


@functools.lru_cache(maxsize=None)
def train_default(name: str):
    backend = get_backend(name)
    train_data, test_data = CONFIG.loaders()
    net = backend.build_nin(CONFIG.spec(), seed=CONFIG.seed)
    history = backend.train(net, train_data, test_data, epochs=CONFIG.epochs, lr=CONFIG.lr,
                            optimizer=CONFIG.optimizer, seed=CONFIG.seed, progress=False)
    return net, history, test_data


@pytest.mark.slow
def test_default_recipe_converges(backend, fashion_mnist):
    net, history, test_data = train_default(backend.BACKEND)
    assert test_data.num_examples >= 2000
    assert history[0].train_loss < 2.0, "the first epoch should already leave ln(10) = 2.303"
    assert history[-1].train_loss < history[0].train_loss
    assert history[-1].test_accuracy >= 0.70, [m.test_accuracy for m in history]
    # evaluate() scores in inference mode and agrees with what the loop reported
    assert backend.evaluate(net, test_data) == pytest.approx(history[-1].test_accuracy)


@pytest.mark.slow
def test_backends_converge_to_the_same_accuracy(fashion_mnist):
    accuracies = {name: train_default(name)[1][-1].test_accuracy for name in BACKENDS}
    assert max(accuracies.values()) - min(accuracies.values()) <= 0.08, accuracies


def test_nan_guard_stops_at_once(backend, fashion_mnist):
    from common.data import load_data

    train_data, test_data = load_data(32, 67, train_limit=256, test_limit=64)
    net = backend.build_nin()
    with pytest.raises(TrainingDiverged, match=r"at epoch 1, step \d+ .*lower learning rate"):
        backend.train(net, train_data, test_data, epochs=3, lr=1e4, optimizer="sgd",
                      progress=False)


def test_recipe_rejects_bad_values():
    with pytest.raises(ValueError, match="unknown optimizer"):
        Recipe(optimizer="rmsprop")
    with pytest.raises(ValueError, match="positive"):
        Recipe(lr=0)
    assert Recipe.book() == Recipe(optimizer="sgd", lr=0.1)
