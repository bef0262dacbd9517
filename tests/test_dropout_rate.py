"""Each backend's training step drops the fraction of activations its spec says, at every
dropout layer: measured inside ``Trainer.train_step`` (each backend's ``taps.py`` sees the
layer's input and output there), not read from the layer's configuration, which a trainer
could override and ``nin check`` would still report."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from common.backends import load_backend_module
from common.spec import Dropout
from common.tools.config import PRESETS

# A two-sided tail: a backend dropping at the spec's rate falls outside the bounds with at most
# this probability (the masks are seeded, so a given backend and seed pass or fail for ever).
TAIL = 1e-6
STEPS = 2
BATCH = 32
# None: the preset's own rate (the book's 0.5); 0.2 reaches the model through the spec's
# options, as `nin train --dropout 0.2` does.
RATES = [None, 0.2]


def binomial_bounds(n: int, p: float, tail: float = TAIL) -> tuple[int, int]:
    """(low, high): n independent draws of probability p give fewer than `low` or more than
    `high` successes, each with probability at most tail / 2 (exact binomial tails)."""
    k = np.arange(n + 1)
    log_factorials = np.array([math.lgamma(i + 1) for i in k])
    log_choose = log_factorials[n] - log_factorials - log_factorials[::-1]
    pmf = np.exp(log_choose + k * math.log(p) + (n - k) * math.log1p(-p))
    below = np.cumsum(pmf)  # P(X <= k)
    above = np.cumsum(pmf[::-1])[::-1]  # P(X >= k), summed from the small end
    low = int(np.argmax(below > tail / 2))  # the first k with P(X <= k) > tail / 2
    high = int(np.nonzero(above > tail / 2)[0][-1])
    return low, high


def test_the_bounds_are_binomial_tails():
    """Against hand-computable cases: 10 fair coins, and the normal approximation at scale."""
    # P(X <= 1) = 11/1024 > 0.01 / 2 >= P(X <= 0) = 1/1024: low is 1; high is 9 by symmetry.
    assert binomial_bounds(10, 0.5, tail=0.01) == (1, 9)
    low, high = binomial_bounds(10_000, 0.5)
    # z = 4.89 standard deviations (50) below the mean: 4755, give or take the approximation
    assert 4750 <= low <= 4760 and high == 10_000 - low


def _trainer(backend, rate: float | None):
    """The model and trainer `nin train` makes (common.tools.runs.train_run) for the quick
    preset with `rate` as the spec's dropout."""
    config = PRESETS["quick"]
    if rate is not None:
        config = replace(config, spec_options={**config.spec_options, "dropout": rate})
    net = backend.build_nin(config.spec(), seed=0)
    return backend.Trainer(net, config.recipe, seed=0)


@pytest.mark.parametrize("rate", RATES, ids=["default", "0.2"])
def test_a_training_step_drops_the_specs_rate(backend, rate):
    trainer = _trainer(backend, rate)
    rates = {layer.rate for layer in trainer.net.spec.layers if isinstance(layer, Dropout)}
    count = sum(isinstance(layer, Dropout) for layer in trainer.net.spec.layers)
    assert rates == {0.5 if rate is None else rate}, rates  # the book's rate, or the option's
    (expected,) = rates
    rng = np.random.default_rng(0)
    taps = load_backend_module(backend.BACKEND, "taps")
    with taps.dropout_taps(trainer) as records:
        for _ in range(STEPS):
            images = rng.random((BATCH, 1, 67, 67), dtype=np.float32)
            trainer.train_step(images, rng.integers(0, 10, BATCH))
    layers = sorted({name for name, _, _ in records})
    assert len(layers) == count and len(records) == STEPS * count, layers
    for name in layers:
        pairs = [(x, y) for layer, x, y in records if layer == name]
        inputs = np.concatenate([x.ravel() for x, _ in pairs])
        outputs = np.concatenate([y.ravel() for _, y in pairs])
        # After a ReLU and a max pool some inputs are 0, and their outputs are 0 either way:
        # only the others tell dropped from kept.
        live = inputs != 0
        dropped = int(np.count_nonzero(outputs[live] == 0))
        n = int(np.count_nonzero(live))
        low, high = binomial_bounds(n, expected)
        print(
            f"[dropout] {backend.BACKEND} {name}: {dropped} of {n} dropped ({dropped / n:.4f}), "
            f"rate {expected}: bounds {low / n:.4f}-{high / n:.4f}"
        )
        assert n >= 5000, f"{name}: too few non-zero inputs ({n}) to measure a rate"
        assert low <= dropped <= high, (
            f"{name}: {backend.BACKEND} dropped {dropped / n:.4f} of {n} activations in "
            f"training; the spec's rate {expected} gives {low / n:.4f}-{high / n:.4f} "
            f"(two-sided tail {TAIL:g})"
        )
        # What is kept is scaled by 1 / (1 - rate): inverted dropout at the same rate.
        kept = live & (outputs != 0)
        np.testing.assert_allclose(
            outputs[kept], inputs[kept] / (1 - expected), rtol=1e-5, err_msg=name
        )
        np.testing.assert_array_equal(outputs[~live], 0)
