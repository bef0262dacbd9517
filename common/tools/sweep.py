"""Seed sweeps (``nin sweep``): every (variant, backend, seed), a report that says whether the
frameworks really differ, and the machinery the exercises reuse.

The folder holds ``sweep.json`` (what was asked, written first), one run folder per
``<variant>/<backend>/seed-<k>``, ``report.md``, ``accuracy.png`` and ``summary.json``. Run
the same command again and finished runs are kept and an interrupted one continues from its
checkpoint.

Tools layer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from ..backends import FRAMEWORK_LABELS, framework_versions
from ..data import CLASS_NAMES
from ..platform.files import atomic_write
from ..platform.machine import machine_description
from ..report import accuracy_text, format_table
from .config import RunConfig
from .runs import ensure_run

MANIFEST = "sweep.json"
BOOTSTRAP_SAMPLES = 10_000


@dataclass(frozen=True)
class Variant:
    """One configuration of a sweep, under a short label (a folder name)."""

    label: str
    config: RunConfig

    def __post_init__(self):
        if not re.fullmatch(r"[A-Za-z0-9_.=+-]+", self.label):
            raise ValueError(f"variant label {self.label!r} must be letters, digits and _.=+-")


def parse_seeds(text: str) -> list[int]:
    """'0-4' -> [0, 1, 2, 3, 4]; '1,3,7' -> [1, 3, 7]; ranges and lists mix ('0-2,9')."""
    seeds: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise ValueError(f"seeds must look like 0-4 or 1,3,7; got {text!r}")
        low, high = int(match[1]), int(match[2] or match[1])
        if high < low or high - low >= 1000:
            raise ValueError(f"bad seed range {part.strip()!r} in {text!r}")
        seeds.extend(range(low, high + 1))
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"a seed is named twice in {text!r}")
    return seeds


def run_folder(out: Path, variant: Variant, backend: str, seed: int) -> Path:
    return out / variant.label / backend / f"seed-{seed}"


def _manifest(variants: list[Variant], backends: list[str], seeds: list[int]) -> dict:
    return {
        "variants": {
            variant.label: variant.config.replace(data_dir=None).to_dict() for variant in variants
        },
        "backends": backends,
        "seeds": seeds,
    }


def _read_manifest(out: Path) -> dict | None:
    path = Path(out) / MANIFEST
    if not path.exists():
        if Path(out).is_dir() and any(Path(out).iterdir()):
            raise ValueError(f"{out} is not empty and holds no {MANIFEST}; choose another --out")
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is unreadable ({error}); choose another --out") from None


def check_manifest(
    out: Path, variants: list[Variant], backends: list[str], seeds: list[int]
) -> dict:
    """A folder with a sweep.json continues the same sweep, or extends it with more seeds,
    backends or variants; a variant with other settings is a one-line error. Returns the
    folder's manifest ({} for a new sweep)."""
    existing = _read_manifest(out) or {}
    wanted = _manifest(variants, backends, seeds)["variants"]
    for label, config in existing.get("variants", {}).items():
        if label in wanted and wanted[label] != config:
            raise ValueError(
                f"{out} holds a sweep with other settings for {label!r} "
                f"({MANIFEST}); give the same flags to continue or extend it, "
                "or choose another --out"
            )
    return existing


def _merged_manifest(
    existing: dict, variants: list[Variant], backends: list[str], seeds: list[int]
) -> dict:
    """Everything the folder's sweeps have asked for, old (`existing`) and new."""
    merged = _manifest(variants, backends, seeds)
    merged["variants"] = {**existing.get("variants", {}), **merged["variants"]}
    merged["backends"] = list(dict.fromkeys([*existing.get("backends", []), *backends]))
    merged["seeds"] = sorted({*existing.get("seeds", []), *seeds})
    return merged


def run_sweep(
    variants: list[Variant],
    backends: list[str],
    seeds: list[int],
    out: Path,
    *,
    title: str = "Seed sweep",
    stop_requested=None,
    progress: bool | None = None,
    log=print,
) -> Path:
    """Train every (variant, backend, seed) not yet done in `out`; write and return the report."""
    train_sweep(
        variants, backends, seeds, out, stop_requested=stop_requested, progress=progress, log=log
    )
    return write_report(out, variants, backends, seeds, title=title)


def train_sweep(
    variants: list[Variant],
    backends: list[str],
    seeds: list[int],
    out: Path,
    *,
    stop_requested=None,
    progress: bool | None = None,
    log=print,
) -> None:
    """Train every (variant, backend, seed) not yet done in `out` (seed-major order)."""
    out = Path(out)
    existing = check_manifest(out, variants, backends, seeds)
    text = json.dumps(_merged_manifest(existing, variants, backends, seeds), indent=2) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / MANIFEST, lambda temporary: temporary.write_text(text))
    total = len(variants) * len(backends) * len(seeds)
    done = 0
    for seed in seeds:  # seed-major, so a partial sweep is balanced across backends
        for variant in variants:
            config = variant.config.replace(seed=seed)
            for backend in backends:
                done += 1
                log(f"[{done}/{total}] {variant.label} {backend} seed {seed}")
                # A finished run keeps its weights and metrics; its checkpoint (24 MB of
                # weights and moments) would only multiply the sweep's size.
                ensure_run(
                    backend,
                    config,
                    run_folder(out, variant, backend, seed),
                    stop_requested=stop_requested,
                    keep_checkpoint=False,
                    progress=progress,
                    log=log,
                )


# -- statistics --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellStats:
    """Test accuracy of one (variant, backend) over seeds."""

    accuracies: np.ndarray  # per seed, in seed order
    per_class: np.ndarray  # (seeds, classes)
    never_predicted: list[int]  # per seed: classes never predicted
    seconds: np.ndarray
    seeds: list[int]  # the seed of each run: differences pair runs by it

    @property
    def mean(self) -> float:
        return float(self.accuracies.mean())

    @property
    def std(self) -> float:
        return float(self.accuracies.std(ddof=1)) if len(self.accuracies) > 1 else 0.0

    def mean_text(self) -> str:
        """'mean ± std' over seeds; one run has no spread to show, only its accuracy."""
        if len(self.accuracies) == 1:
            return accuracy_text(self.mean)
        return f"{accuracy_text(self.mean)} ± {accuracy_text(self.std)}"


def cell_stats(summaries: list[dict]) -> CellStats:
    return CellStats(
        np.array([summary["test_accuracy"] for summary in summaries]),
        np.array([summary["per_class_accuracy"] for summary in summaries]),
        [len(summary["classes_never_predicted"]) for summary in summaries],
        np.array([summary["train_seconds"] for summary in summaries]),
        [summary["config"]["seed"] for summary in summaries],
    )


def paired_difference(
    a: np.ndarray, b: np.ndarray, *, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """(mean of a - b, low, high): a percentile bootstrap interval over the paired seeds.

    Paired because the same seed is the same initial weights and data order in every
    backend (and every head), so seed-to-seed luck cancels in the difference.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples must match, seed for seed: {len(a)} and {len(b)} runs")
    difference = a - b
    if len(difference) < 2:
        return float(difference.mean()), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    resampled = difference[rng.integers(0, len(difference), (BOOTSTRAP_SAMPLES, len(difference)))]
    means = resampled.mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(difference.mean()), float(low), float(high)


def verdict(mean: float, low: float, high: float, spread: float) -> str:
    """Whether a paired difference is more than the seeds' luck: whether its interval
    excludes 0 (the spread, the seeds' own, is context, not the test)."""
    if np.isnan(mean):
        return "no answer: a run's accuracy is not a number"
    if np.isnan(low):
        return "one seed only: no interval"
    if low <= 0 <= high:
        return f"no: the interval holds 0, and the seeds' own spread is {accuracy_text(spread)}"
    return (
        f"yes: the whole interval lies {'above' if low > 0 else 'below'} 0 "
        f"(seed spread {accuracy_text(spread)})"
    )


# -- the report --------------------------------------------------------------------------------


def collect(
    out: Path, variants: list[Variant], backends: list[str], seeds: list[int]
) -> dict[tuple[str, str], list[dict]]:
    """{(variant, backend): summaries of the finished runs, in seed order}."""
    from .runs import read_summary

    found = {}
    for variant in variants:
        for backend in backends:
            summaries = [read_summary(run_folder(out, variant, backend, seed)) for seed in seeds]
            found[(variant.label, backend)] = [summary for summary in summaries if summary]
    return found


@dataclass(frozen=True)
class PairedDifference:
    """Mean test-accuracy difference `first` − `second` over paired seeds, within `within`
    (a variant, when two frameworks are compared; a backend, when two variants are)."""

    within: str
    first: str
    second: str
    mean: float
    low: float  # the 95% bootstrap interval; nan with one seed
    high: float
    spread: float  # the two cells' mean standard deviation over seeds

    def interval_text(self) -> str:
        return f"{self.low:+.4f} to {self.high:+.4f}" if not np.isnan(self.low) else "-"


@dataclass(frozen=True)
class SweepResult:
    """What the finished runs of a sweep folder measured, and where."""

    variants: list[Variant]
    backends: list[str]
    seeds: list[int]
    stats: dict[tuple[str, str], CellStats]  # {(variant, backend): its finished runs}
    framework_differences: list[PairedDifference]  # each pair of backends, per variant
    variant_differences: list[PairedDifference]  # the first variant against each other
    machine: str
    versions: dict[str, dict[str, str]]  # per backend, framework_versions
    finished: datetime


def write_report(
    out: Path,
    variants: list[Variant],
    backends: list[str],
    seeds: list[int],
    *,
    title: str = "Seed sweep",
) -> Path:
    """report.md, accuracy.png and summary.json of the finished runs in `out`; the report."""
    return write_sweep(read_sweep(out, variants, backends, seeds), out, title=title)


def read_sweep(
    out: Path, variants: list[Variant], backends: list[str], seeds: list[int]
) -> SweepResult:
    """The statistics of the finished runs in `out`."""
    found = collect(out, variants, backends, seeds)
    stats = {key: cell_stats(summaries) for key, summaries in found.items() if summaries}
    frameworks = [
        _difference(
            stats, variant.label, (variant.label, first), (variant.label, second), first, second
        )
        for variant in variants
        for index, first in enumerate(backends)
        for second in backends[index + 1 :]
    ]
    others = [
        _difference(
            stats,
            backend,
            (variants[0].label, backend),
            (other.label, backend),
            variants[0].label,
            other.label,
        )
        for other in variants[1:]
        for backend in backends
    ]
    return SweepResult(
        list(variants),
        list(backends),
        list(seeds),
        stats,
        [item for item in frameworks if item],
        [item for item in others if item],
        machine_description(),
        {name: framework_versions(name) for name in backends},
        datetime.now(),
    )


def _difference(
    stats: dict, within: str, first_key: tuple, second_key: tuple, first: str, second: str
) -> PairedDifference | None:
    """`first` − `second`, or None unless both cells have runs for the same seeds."""
    a, b = stats.get(first_key), stats.get(second_key)
    if a is None or b is None or a.seeds != b.seeds:
        return None
    mean, low, high = paired_difference(a.accuracies, b.accuracies)
    return PairedDifference(within, first, second, mean, low, high, float(np.mean([a.std, b.std])))


def write_sweep(result: SweepResult, out: Path, *, title: str = "Seed sweep") -> Path:
    """The sweep's report.md, accuracy.png and summary.json in `out`; the report's path."""
    from . import plots

    plots.plot_sweep(
        {key: cell.accuracies for key, cell in result.stats.items()},
        [variant.label for variant in result.variants],
        result.backends,
        out / "accuracy.png",
    )
    report = render_markdown(result, title=title)
    atomic_write(out / "report.md", lambda temporary: temporary.write_text(report))
    summary = json.dumps(render_summary(result), indent=2) + "\n"
    atomic_write(out / "summary.json", lambda temporary: temporary.write_text(summary))
    return out / "report.md"


def render_summary(result: SweepResult) -> dict:
    """summary.json: each cell's accuracies per seed, their mean and spread."""
    return {
        "variants": [variant.label for variant in result.variants],
        "backends": result.backends,
        "seeds": result.seeds,
        "cells": {
            f"{label}/{backend}": {
                "accuracies": cell.accuracies.tolist(),
                "mean": cell.mean,
                "std": cell.std,
                "never_predicted": cell.never_predicted,
            }
            for (label, backend), cell in result.stats.items()
        },
    }


def render_markdown(result: SweepResult, *, title: str = "Seed sweep") -> str:
    """report.md: what this sweep's runs measured, on this machine, with these versions."""
    lines = [
        f"# {title}",
        "",
        f"{result.finished:%Y-%m-%d %H:%M}, {result.machine}; "
        + "; ".join(
            f"{FRAMEWORK_LABELS[name]}: "
            + ", ".join(f"{key} {value}" for key, value in result.versions[name].items())
            for name in result.backends
        )
        + ".",
        "",
    ]
    for variant in result.variants:
        lines += [f"- **{variant.label}**: {variant.config.describe(seed=False)}"]
        sentence = variant.config.head_sentence()
        if sentence:
            lines[-1] += f" {sentence}"
    lines += [
        "",
        f"Seeds {', '.join(map(str, result.seeds))}. Test accuracy on every test "
        "image each run was scored on, after the last epoch.",
        "",
    ]
    lines += _accuracy_section(result)
    lines += _framework_section(result)
    if len(result.variants) > 1:
        lines += _variant_section(result)
    lines += _per_class_section(result)
    return "\n".join(lines)


def _accuracy_section(result: SweepResult) -> list[str]:
    rows = []
    for variant in result.variants:
        for backend in result.backends:
            cell = result.stats.get((variant.label, backend))
            if cell is None:
                rows.append([variant.label, FRAMEWORK_LABELS[backend], 0, *["-"] * 7])
                continue
            rows.append(
                [
                    variant.label,
                    FRAMEWORK_LABELS[backend],
                    len(cell.accuracies),
                    cell.mean_text(),
                    accuracy_text(cell.accuracies.min()),
                    accuracy_text(cell.accuracies.max()),
                    " ".join(accuracy_text(value) for value in cell.accuracies),
                    sum(count > 0 for count in cell.never_predicted),
                    max(cell.never_predicted),
                    f"{np.median(cell.seconds):.0f}",
                ]
            )
    return [
        "## Test accuracy",
        "",
        format_table(
            [
                "variant",
                "framework",
                "runs",
                "mean ± std",
                "min",
                "max",
                "per seed",
                "runs with a class never predicted",
                "most classes never predicted",
                "median seconds",
            ],
            rows,
            markdown=True,
        ),
        "",
        "![test accuracy per seed](accuracy.png)",
        "",
    ]


def _framework_section(result: SweepResult) -> list[str]:
    rows = [
        [
            item.within,
            f"{item.first} − {item.second}",
            f"{item.mean:+.4f}",
            item.interval_text(),
            verdict(item.mean, item.low, item.high, item.spread),
        ]
        for item in result.framework_differences
    ]
    return [
        "## Do two frameworks differ by more than the seeds explain?",
        "",
        "Mean paired difference in test accuracy and its 95% bootstrap interval over "
        "seeds (paired: a seed is the same initial weights and the same data order in "
        "every framework, so only the dropout masks and float rounding differ).",
        "",
        format_table(
            ["variant", "difference", "mean", "95% interval", "more than the seeds explain?"],
            rows,
            markdown=True,
        ),
        "",
    ]


def _variant_section(result: SweepResult) -> list[str]:
    rows = [
        [f"{item.first} − {item.second}", item.within, f"{item.mean:+.4f}", item.interval_text()]
        for item in result.variant_differences
    ]
    return [
        f"## {result.variants[0].label} against the other variants",
        "",
        "Paired by seed (the same seed gives the same initial weights and data order in "
        "every variant with the same parameters).",
        "",
        format_table(["difference", "backend", "mean", "95% interval"], rows, markdown=True),
        "",
    ]


def _per_class_section(result: SweepResult) -> list[str]:
    rows = [
        [label, backend, *(accuracy_text(value) for value in cell.per_class.mean(axis=0))]
        for (label, backend), cell in result.stats.items()
    ]
    return [
        "## Accuracy per class (mean over seeds)",
        "",
        format_table(["variant", "backend", *CLASS_NAMES], rows, markdown=True),
        "",
    ]
