"""The sweep's statistics: each cell's mean and spread over seeds, the paired bootstrap
interval between two cells, the verdict on it, and how the report shows them. The README's
"no framework differs by more than the seeds" is read off these numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from common.backends import BACKENDS
from common.tools.config import RunConfig
from common.tools.sweep import (
    Variant,
    cell_stats,
    paired_difference,
    read_sweep,
    render_markdown,
    run_folder,
    verdict,
)

NAN = float("nan")


def _summary(accuracy: float, *, never_predicted=(), seconds: float = 60.0, seed: int = 0) -> dict:
    """The fields of a run's summary.json that the sweep reads."""
    per_class = [accuracy + index / 100 for index in range(10)]
    return {
        "config": {"seed": seed},
        "test_accuracy": accuracy,
        "per_class_accuracy": per_class,
        "classes_never_predicted": list(never_predicted),
        "train_seconds": seconds,
    }


# -- one cell: a (variant, backend) over seeds -------------------------------------------------


def test_cell_stats_keep_seed_order_and_use_the_sample_standard_deviation():
    summaries = [
        _summary(0.25, seconds=10.0),
        _summary(0.75, never_predicted=[3, 6], seconds=30.0),
        _summary(0.75, never_predicted=[4], seconds=20.0),
        _summary(0.75, seconds=40.0),
    ]
    cell = cell_stats(summaries)
    np.testing.assert_array_equal(cell.accuracies, [0.25, 0.75, 0.75, 0.75])
    assert cell.per_class.shape == (4, 10)  # (seeds, classes): the report averages axis 0
    np.testing.assert_array_equal(cell.per_class[1], summaries[1]["per_class_accuracy"])
    assert cell.never_predicted == [0, 2, 1, 0]  # how many classes, not which
    np.testing.assert_array_equal(cell.seconds, [10.0, 30.0, 20.0, 40.0])
    assert cell.mean == 0.625  # (the median is 0.75)
    # Deviations -0.375 and 3 x 0.125: sqrt(0.1875 / (4 - 1)) = 0.25 exactly; ddof=0: 0.2165.
    assert cell.std == 0.25
    assert cell.mean_text() == "0.6250 ± 0.2500"


def test_one_seed_has_no_spread_to_show():
    cell = cell_stats([_summary(0.8)])
    assert cell.std == 0.0  # not NaN, as ddof=1 of one value would be
    assert cell.mean_text() == "0.8000"


# -- the paired bootstrap interval ---------------------------------------------------------


def test_the_difference_is_first_minus_second_and_swapping_mirrors_it():
    first, second = [0.75, 0.5, 0.875, 0.625], [0.5, 0.5, 0.75, 0.75]  # differences exact
    mean, low, high = paired_difference(first, second)
    assert mean == (0.25 + 0.0 + 0.125 - 0.125) / 4
    swapped_mean, swapped_low, swapped_high = paired_difference(second, first)
    assert swapped_mean == -mean
    # The same seed draws the same resamples, so the interval is mirrored about 0.
    assert swapped_low == pytest.approx(-high, rel=1e-12)
    assert swapped_high == pytest.approx(-low, rel=1e-12)


def test_identical_samples_give_an_interval_of_exactly_zero():
    accuracies = [0.8247, 0.8481, 0.8534, 0.8572, 0.8311]
    assert paired_difference(accuracies, accuracies) == (0.0, 0.0, 0.0)


def test_a_constant_shift_gives_exactly_that_shift():
    second = np.array([0.5, 0.25, 0.75, 0.125, 0.875])
    shift = 0.0625  # every difference is exactly the shift (binary fractions)
    assert paired_difference(second + shift, second) == (shift, shift, shift)
    assert paired_difference(second, second + shift) == (-shift, -shift, -shift)


@pytest.mark.parametrize(
    ("confidence", "expected"),
    [(0.95, (1 / 6, 0.0, 0.5)), (0.80, (1 / 6, 0.0, 1 / 3))],
)
def test_the_interval_is_the_percentiles_of_the_resampled_means(confidence, expected):
    """Differences (0, 0, 0.5): a resample's mean is 0 with probability 8/27, 1/6 with 12/27,
    1/3 with 6/27 and 0.5 with 1/27 (3.7%). A 95% interval cuts 2.5% off each end, so it runs
    from 0 to 0.5; an 80% interval cuts 10%, so it ends at 1/3. Cutting 5% (one tail's share
    taken as both) would end the 95% one at 1/3; percentiles of the differences themselves,
    not of the means, at 0.475."""
    first, second = [0.75, 0.5, 0.875], [0.75, 0.5, 0.375]
    mean, low, high = paired_difference(first, second, confidence=confidence)
    assert mean == pytest.approx(expected[0], rel=1e-15)
    assert low == expected[1]
    assert high == pytest.approx(expected[2], rel=1e-15)


def test_the_interval_holds_the_mean_and_widens_with_the_spread():
    differences = np.array([0.02, -0.01, 0.03, 0.0, 0.01, 0.015])
    zeros = np.zeros_like(differences)
    mean, low, high = paired_difference(differences, zeros)
    assert mean == pytest.approx(0.065 / 6, rel=1e-12)
    assert low < mean < high
    # Three times the spread: the same resamples (same seed), so three times the interval.
    wide_mean, wide_low, wide_high = paired_difference(3 * differences, zeros)
    assert wide_mean == pytest.approx(3 * mean, rel=1e-12)
    assert wide_low == pytest.approx(3 * low, rel=1e-12)
    assert wide_high == pytest.approx(3 * high, rel=1e-12)
    assert wide_high - wide_low > high - low > 0


def test_the_interval_is_fixed_by_its_seed():
    first, second = [0.81, 0.79, 0.84, 0.80, 0.83], [0.80, 0.81, 0.82, 0.78, 0.80]
    assert paired_difference(first, second) == paired_difference(first, second, seed=0)
    assert paired_difference(first, second, seed=7) == paired_difference(first, second, seed=7)
    assert paired_difference(first, second, seed=7) != paired_difference(first, second)


def test_one_seed_gives_its_difference_and_no_interval():
    mean, low, high = paired_difference([0.75], [0.625])
    assert mean == 0.125
    assert np.isnan(low) and np.isnan(high)


def test_samples_of_unequal_length_are_refused():
    with pytest.raises(ValueError, match="seed for seed: 3 and 2 runs"):
        paired_difference([0.8, 0.7, 0.9], [0.8, 0.7])
    with pytest.raises(ValueError, match="seed for seed: 1 and 3 runs"):  # no broadcasting
        paired_difference([0.8], [0.8, 0.7, 0.9])


def test_a_nan_accuracy_is_never_averaged_away():
    mean, low, high = paired_difference([NAN, 0.5, 0.75], [0.5, 0.5, 0.5])
    assert np.isnan(mean) and np.isnan(low) and np.isnan(high)


# -- the verdict -------------------------------------------------------------------------------

TINY = 5e-324  # the smallest positive float: just off the boundary at 0


@pytest.mark.parametrize(
    ("low", "high", "says"),
    [
        (-0.02, 0.03, "no: the interval holds 0, and the seeds' own spread is 0.0123"),
        (0.0, 0.03, "no: the interval holds 0, and the seeds' own spread is 0.0123"),
        (-0.03, 0.0, "no: the interval holds 0, and the seeds' own spread is 0.0123"),
        (0.0, 0.0, "no: the interval holds 0, and the seeds' own spread is 0.0123"),
        (TINY, 0.03, "yes: the whole interval lies above 0 (seed spread 0.0123)"),
        (0.02, 0.04, "yes: the whole interval lies above 0 (seed spread 0.0123)"),
        (-0.03, -TINY, "yes: the whole interval lies below 0 (seed spread 0.0123)"),
        (-0.04, -0.02, "yes: the whole interval lies below 0 (seed spread 0.0123)"),
        (NAN, NAN, "one seed only: no interval"),
    ],
)
def test_verdict(low, high, says):
    mean = 0.0 if np.isnan(low) else (low + high) / 2
    assert verdict(mean, low, high, spread=0.0123) == says


def test_a_nan_accuracy_gets_no_answer_rather_than_one_seeds():
    assert verdict(NAN, NAN, NAN, spread=0.0123) == "no answer: a run's accuracy is not a number"


# -- what the report shows -------------------------------------------------------------------

TORCH = [0.75, 0.875, 0.5]
# Sample standard deviation of TORCH: sqrt((0.0417² + 0.1667² + 0.2083²) / 2) = 0.1909.
TORCH_SPREAD = "0.1909"


def _write_runs(out, variant: Variant, backend: str, accuracies: dict[int, float]) -> None:
    for seed, accuracy in accuracies.items():
        folder = run_folder(out, variant, backend, seed)
        folder.mkdir(parents=True)
        (folder / "summary.json").write_text(json.dumps(_summary(accuracy, seed=seed)))


def test_the_report_compares_each_pair_of_frameworks_over_the_same_seeds(tmp_path):
    """The second backend equals the first at every seed, the third is 0.0625 above it at
    every seed; in the second variant the second backend has one seed fewer, so it is
    compared with no one there."""
    first, second, third = list(BACKENDS)[:3]
    full, short = Variant("full", RunConfig()), Variant("short", RunConfig())
    for variant in (full, short):
        _write_runs(tmp_path, variant, first, dict(enumerate(TORCH)))
        _write_runs(tmp_path, variant, third, {seed: a + 0.0625 for seed, a in enumerate(TORCH)})
    _write_runs(tmp_path, full, second, dict(enumerate(TORCH)))
    _write_runs(tmp_path, short, second, dict(enumerate(TORCH[:2])))

    result = read_sweep(tmp_path, [full, short], [first, second, third], [0, 1, 2])
    found = {(item.within, item.first, item.second): item for item in result.framework_differences}
    assert list(found) == [
        ("full", first, second),
        ("full", first, third),
        ("full", second, third),
        ("short", first, third),
    ]
    same, below = found[("full", first, second)], found[("full", first, third)]
    assert (same.mean, same.low, same.high) == (0.0, 0.0, 0.0)
    assert (below.mean, below.low, below.high) == (-0.0625, -0.0625, -0.0625)
    assert f"{below.spread:.4f}" == TORCH_SPREAD  # the mean of two equal spreads

    report = render_markdown(result).splitlines()
    rows = {tuple(cell.strip() for cell in line.strip("|").split("|")) for line in report}
    assert (
        "full",
        f"{first} − {second}",
        "+0.0000",
        "+0.0000 to +0.0000",
        f"no: the interval holds 0, and the seeds' own spread is {TORCH_SPREAD}",
    ) in rows
    below_row = (
        "-0.0625",
        "-0.0625 to -0.0625",
        f"yes: the whole interval lies below 0 (seed spread {TORCH_SPREAD})",
    )
    assert ("full", f"{first} − {third}", *below_row) in rows
    assert ("short", f"{first} − {third}", *below_row) in rows
    assert not any(row[:2] == ("short", f"{first} − {second}") for row in rows)


def test_runs_are_paired_by_seed_not_by_position(tmp_path):
    """Two backends that finished different seeds ({0, 1} and {0, 2}) share only seed 0:
    pairing by position would compare seed 1 with seed 2. They are not compared."""
    first, second = list(BACKENDS)[:2]
    variant = Variant("v", RunConfig())
    _write_runs(tmp_path, variant, first, {0: 0.8, 1: 0.9})
    _write_runs(tmp_path, variant, second, {0: 0.8, 2: 1.0})
    result = read_sweep(tmp_path, [variant], [first, second], [0, 1, 2])
    assert result.stats[("v", first)].seeds == [0, 1]
    assert result.stats[("v", second)].seeds == [0, 2]
    assert result.framework_differences == []
