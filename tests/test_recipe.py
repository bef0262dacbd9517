"""common.training.Recipe: its defaults, its validation and the learning rate of every step,
checked against the formulas the docstrings state (linear warm-up, then constant or half-cosine
decay to 0 at the last step). No framework is imported."""

from __future__ import annotations

import math

import pytest

from common.training import OPTIMIZERS, SCHEDULES, Recipe


def test_the_default_is_plain_adam_at_a_constant_rate():
    recipe = Recipe()
    assert recipe.to_dict() == {
        "optimizer": "adam",
        "lr": 2e-3,
        "momentum": 0.9,
        "adam_epsilon": 1e-8,  # PyTorch's and MXNet's default, imposed on Keras too
        "weight_decay": 0.0,
        "warmup_steps": 0,
        "schedule": "constant",
        "clip_norm": 0.0,
        "standardize": False,
        "augment": False,
    }
    assert [recipe.learning_rate(step) for step in (0, 1, 10**6)] == [2e-3] * 3


def test_the_books_recipe_is_sgd_at_0_1_and_nothing_else():
    """d2l 7.3 trains NiN with plain minibatch SGD, learning rate 0.1."""
    book = Recipe.book()
    assert book == Recipe(optimizer="sgd", lr=0.1)
    assert {
        key: value for key, value in book.to_dict().items() if key not in ("optimizer", "lr")
    } == {key: value for key, value in Recipe().to_dict().items() if key not in ("optimizer", "lr")}
    assert book.describe() == "sgd lr 0.1"


def test_warm_up_is_linear_from_lr_over_n_to_lr():
    recipe = Recipe(lr=0.8, warmup_steps=4)
    rates = [recipe.learning_rate(step) for step in range(7)]
    assert rates == pytest.approx([0.2, 0.4, 0.6, 0.8, 0.8, 0.8, 0.8], abs=1e-15)
    one = Recipe(lr=0.5, warmup_steps=1)
    assert [one.learning_rate(step) for step in range(3)] == [0.5, 0.5, 0.5]


def test_cosine_decays_from_lr_to_zero_at_the_last_step():
    recipe = Recipe(lr=1.0, schedule="cosine")
    total = 10
    rates = [recipe.learning_rate(step, total) for step in range(total + 1)]
    expected = [0.5 * (1 + math.cos(math.pi * step / total)) for step in range(total + 1)]
    assert rates == pytest.approx(expected, abs=1e-15)
    assert rates[0] == 1.0 and rates[5] == pytest.approx(0.5) and rates[total] == 0.0
    # past the end it stays at 0 (no second period of the cosine)
    assert [recipe.learning_rate(step, total) for step in (11, 15, 20, 100)] == [0.0] * 4


def test_cosine_after_warm_up_counts_its_steps_from_the_end_of_the_warm_up():
    recipe = Recipe(lr=2.0, warmup_steps=4, schedule="cosine")
    total = 12  # 4 warm-up steps, then 8 decay steps
    rates = [recipe.learning_rate(step, total) for step in range(total)]
    assert rates[:4] == [0.5, 1.0, 1.5, 2.0]
    decay = [2.0 * 0.5 * (1 + math.cos(math.pi * k / 8)) for k in range(8)]
    assert rates[4:] == pytest.approx(decay, abs=1e-15)
    assert recipe.learning_rate(total, total) == 0.0
    # a run no longer than its warm-up: the step after it is the last, at rate 0
    short = Recipe(lr=1.0, warmup_steps=3, schedule="cosine")
    rates = [short.learning_rate(step, 3) for step in range(5)]
    assert rates == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0, 0.0], abs=1e-15)
    # warm-up steps need no total; decay steps do
    assert short.learning_rate(0) == pytest.approx(1 / 3)
    message = "^a cosine schedule needs the run's total number of steps$"
    with pytest.raises(ValueError, match=message):
        short.learning_rate(3)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"optimizer": "rmsprop"}, "unknown optimizer 'rmsprop'; choose from sgd, momentum, adam"),
        ({"lr": 0}, "learning rate must be a positive number, got 0"),
        ({"lr": -0.1}, "learning rate"),
        ({"lr": math.inf}, "learning rate"),
        ({"lr": math.nan}, "learning rate"),
        ({"lr": "0.1"}, "learning rate"),
        ({"momentum": 1.0}, r"momentum must be in \[0, 1\), got 1.0"),
        ({"momentum": -0.1}, "momentum"),
        ({"adam_epsilon": 0.0}, "adam_epsilon must be a positive number"),
        ({"adam_epsilon": math.inf}, "adam_epsilon"),
        ({"weight_decay": 1.0}, r"weight decay must be in \[0, 1\)"),
        ({"weight_decay": -1e-9}, "weight decay"),
        ({"warmup_steps": -1}, "warmup steps must be a whole number >= 0, got -1"),
        ({"warmup_steps": 2.5}, "warmup steps"),
        ({"warmup_steps": True}, "warmup steps"),
        ({"schedule": "step"}, "unknown schedule 'step'; choose from constant, cosine"),
        ({"clip_norm": -1.0}, "clip norm must be >= 0"),
        ({"clip_norm": math.inf}, "clip norm"),
        ({"clip_norm": math.nan}, "clip norm"),
    ],
)
def test_bad_values_are_refused_with_their_name(fields, message):
    with pytest.raises(ValueError, match=message):
        Recipe(**fields)


def test_the_edges_of_every_range_are_accepted():
    for optimizer in OPTIMIZERS:
        assert Recipe(optimizer=optimizer).optimizer == optimizer
    for schedule in SCHEDULES:
        assert Recipe(schedule=schedule).schedule == schedule
    edges = Recipe(lr=1, momentum=0.0, weight_decay=0.0, warmup_steps=0, clip_norm=0.0)
    assert edges.learning_rate(0) == 1
    assert Recipe(momentum=0.999, weight_decay=0.999, adam_epsilon=1e-30, lr=1e-30)


def test_describe_names_what_differs_from_plain_training():
    assert Recipe().describe() == "adam lr 0.002"
    assert Recipe(momentum=0.5).describe() == "adam lr 0.002"  # momentum only for "momentum"
    everything = Recipe(
        optimizer="momentum",
        lr=0.05,
        momentum=0.8,
        weight_decay=5e-4,
        warmup_steps=100,
        schedule="cosine",
        clip_norm=1.0,
        standardize=True,
        augment=True,
    )
    assert everything.describe() == (
        "momentum lr 0.05, momentum 0.8, 100-step warm-up, cosine decay, weight decay 0.0005, "
        "gradient norm clipped at 1, standardized inputs, random crops and flips"
    )


def test_dict_round_trip_and_unknown_fields():
    recipe = Recipe(optimizer="momentum", lr=0.05, warmup_steps=7, schedule="cosine", augment=True)
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    assert Recipe.from_dict({}) == Recipe()
    assert Recipe.from_dict({"lr": 0.5}) == Recipe(lr=0.5)
    with pytest.raises(ValueError, match="unknown recipe field[(]s[)]: beta, gamma"):
        Recipe.from_dict({"lr": 0.5, "gamma": 1, "beta": 2})
    with pytest.raises(ValueError, match="learning rate"):
        Recipe.from_dict({"lr": -1})
