"""Seed sweeps (``nin sweep``): every (variant, backend, seed), a report that says whether the
frameworks really differ, and the machinery the exercises reuse.

The folder holds ``sweep.json`` (what was asked, written first), one run folder per
``<variant>/<backend>/seed-<k>``, ``report.md``, ``accuracy.png`` and ``summary.json``. Run
the same command again and finished runs are kept and an interrupted one continues from its
checkpoint.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from ..backends import FRAMEWORK_LABELS, framework_versions
from ..platform.files import atomic_write
from .config import RunConfig
from ..data import CLASS_NAMES
from ..report import accuracy_text, format_table
from .runs import ensure_run
from ..platform.machine import machine_description

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
    return {"variants": {variant.label: variant.config.replace(data_dir=None).to_dict()
                         for variant in variants},
            "backends": backends, "seeds": seeds}


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


def check_manifest(out: Path, variants: list[Variant], backends: list[str],
                   seeds: list[int]) -> dict:
    """A folder with a sweep.json continues the same sweep, or extends it with more seeds,
    backends or variants; a variant with other settings is a one-line error. Returns the
    folder's manifest ({} for a new sweep)."""
    existing = _read_manifest(out) or {}
    wanted = _manifest(variants, backends, seeds)["variants"]
    for label, config in existing.get("variants", {}).items():
        if label in wanted and wanted[label] != config:
            raise ValueError(f"{out} holds a sweep with other settings for {label!r} "
                             f"({MANIFEST}); give the same flags to continue or extend it, "
                             "or choose another --out")
    return existing


def _merged_manifest(existing: dict, variants: list[Variant], backends: list[str],
                     seeds: list[int]) -> dict:
    """Everything the folder's sweeps have asked for, old (`existing`) and new."""
    merged = _manifest(variants, backends, seeds)
    merged["variants"] = {**existing.get("variants", {}), **merged["variants"]}
    merged["backends"] = list(dict.fromkeys([*existing.get("backends", []), *backends]))
    merged["seeds"] = sorted({*existing.get("seeds", []), *seeds})
    return merged


def run_sweep(variants: list[Variant], backends: list[str], seeds: list[int], out: Path, *,
              title: str = "Seed sweep", stop_requested=None, progress: bool | None = None,
              log=print) -> Path:
    """Train every (variant, backend, seed) not yet done in `out`; write and return the report."""
    train_sweep(variants, backends, seeds, out, stop_requested=stop_requested,
                progress=progress, log=log)
    return write_report(out, variants, backends, seeds, title=title)


def train_sweep(variants: list[Variant], backends: list[str], seeds: list[int], out: Path, *,
                stop_requested=None, progress: bool | None = None, log=print) -> None:
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
                ensure_run(backend, config, run_folder(out, variant, backend, seed),
                           stop_requested=stop_requested, keep_checkpoint=False,
                           progress=progress, log=log)


# -- statistics --------------------------------------------------------------------------------

@dataclass(frozen=True)
class CellStats:
    """Test accuracy of one (variant, backend) over seeds."""

    accuracies: np.ndarray      # per seed, in seed order
    per_class: np.ndarray       # (seeds, classes)
    never_predicted: list[int]  # per seed: classes never predicted
    seconds: np.ndarray

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
    return CellStats(np.array([summary["test_accuracy"] for summary in summaries]),
                     np.array([summary["per_class_accuracy"] for summary in summaries]),
                     [len(summary["classes_never_predicted"]) for summary in summaries],
                     np.array([summary["train_seconds"] for summary in summaries]))


def paired_difference(a: np.ndarray, b: np.ndarray, *, confidence: float = 0.95,
                      seed: int = 0) -> tuple[float, float, float]:
    """(mean of a - b, low, high): a percentile bootstrap interval over the paired seeds.

    Paired because the same seed is the same initial weights and data order in every
    backend (and every head), so seed-to-seed luck cancels in the difference.
    """
    difference = np.asarray(a, float) - np.asarray(b, float)
    if len(difference) < 2:
        return float(difference.mean()), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    resampled = difference[rng.integers(0, len(difference), (BOOTSTRAP_SAMPLES, len(difference)))]
    means = resampled.mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(difference.mean()), float(low), float(high)


def verdict(mean: float, low: float, high: float, spread: float) -> str:
    if np.isnan(low):
        return "one seed only: no interval"
    if low <= 0 <= high:
        return f"no: the interval holds 0, and the seeds' own spread is {accuracy_text(spread)}"
    return (f"yes: the whole interval lies {'above' if low > 0 else 'below'} 0 "
            f"(seed spread {accuracy_text(spread)})")


# -- the report --------------------------------------------------------------------------------

def collect(out: Path, variants: list[Variant], backends: list[str],
            seeds: list[int]) -> dict[tuple[str, str], list[dict]]:
    """{(variant, backend): summaries of the finished runs, in seed order}."""
    from .runs import read_summary

    found = {}
    for variant in variants:
        for backend in backends:
            summaries = [read_summary(run_folder(out, variant, backend, seed)) for seed in seeds]
            found[(variant.label, backend)] = [summary for summary in summaries if summary]
    return found


def write_report(out: Path, variants: list[Variant], backends: list[str], seeds: list[int],
                 *, title: str = "Seed sweep") -> Path:
    from . import plots

    found = collect(out, variants, backends, seeds)
    stats = {key: cell_stats(summaries) for key, summaries in found.items() if summaries}
    lines = [f"# {title}", "",
             f"{datetime.now():%Y-%m-%d %H:%M}, {machine_description()}; "
             + "; ".join(f"{FRAMEWORK_LABELS[name]}: " + ", ".join(
                 f"{key} {value}" for key, value in framework_versions(name).items())
                 for name in backends) + ".", ""]
    for variant in variants:
        lines += [f"- **{variant.label}**: {variant.config.describe(seed=False)}"]
        sentence = variant.config.head_sentence()
        if sentence:
            lines[-1] += f" {sentence}"
    lines += ["", f"Seeds {', '.join(map(str, seeds))}. Test accuracy on every test image "
              "each run was scored on, after the last epoch.", "",
              "## Test accuracy", ""]
    rows = []
    for variant in variants:
        for backend in backends:
            cell = stats.get((variant.label, backend))
            if cell is None:
                rows.append([variant.label, FRAMEWORK_LABELS[backend], 0, *["-"] * 7])
                continue
            rows.append([variant.label, FRAMEWORK_LABELS[backend], len(cell.accuracies),
                         cell.mean_text(),
                         accuracy_text(cell.accuracies.min()), accuracy_text(cell.accuracies.max()),
                         " ".join(accuracy_text(value) for value in cell.accuracies),
                         sum(count > 0 for count in cell.never_predicted),
                         max(cell.never_predicted), f"{np.median(cell.seconds):.0f}"])
    lines += [format_table(["variant", "framework", "runs", "mean ± std", "min", "max",
                            "per seed", "runs with a class never predicted",
                            "most classes never predicted", "median seconds"], rows,
                           markdown=True), "", "![test accuracy per seed](accuracy.png)", ""]

    lines += ["## Is the difference between two frameworks larger than the spread across seeds?",
              "", "Mean paired difference in test accuracy and its 95% bootstrap interval over "
              "seeds (paired: a seed is the same initial weights and the same data order in "
              "every framework, so only the dropout masks and float rounding differ).", ""]
    rows = []
    for variant in variants:
        for index, first in enumerate(backends):
            for second in backends[index + 1:]:
                a, b = stats.get((variant.label, first)), stats.get((variant.label, second))
                if a is None or b is None or len(a.accuracies) != len(b.accuracies):
                    continue
                mean, low, high = paired_difference(a.accuracies, b.accuracies)
                spread = float(np.mean([a.std, b.std]))
                rows.append([variant.label, f"{first} − {second}", f"{mean:+.4f}",
                             f"{low:+.4f} to {high:+.4f}" if not np.isnan(low) else "-",
                             verdict(mean, low, high, spread)])
    lines += [format_table(["variant", "difference", "mean", "95% interval", "larger than the "
                            "seed spread?"], rows, markdown=True), ""]
    if len(variants) > 1:
        lines += _variant_comparison(variants, backends, stats)

    lines += ["## Accuracy per class (mean over seeds)", ""]
    rows = []
    for (label, backend), cell in stats.items():
        rows.append([label, backend,
                     *(accuracy_text(value) for value in cell.per_class.mean(axis=0))])
    lines += [format_table(["variant", "backend", *CLASS_NAMES], rows, markdown=True), ""]

    plots.plot_sweep({key: cell.accuracies for key, cell in stats.items()},
                     [variant.label for variant in variants], backends, out / "accuracy.png")
    report = "\n".join(lines)
    atomic_write(out / "report.md", lambda temporary: temporary.write_text(report))
    summary = {"variants": [variant.label for variant in variants], "backends": backends,
               "seeds": seeds,
               "cells": {f"{label}/{backend}": {"accuracies": cell.accuracies.tolist(),
                                                "mean": cell.mean, "std": cell.std,
                                                "never_predicted": cell.never_predicted}
                         for (label, backend), cell in stats.items()}}
    atomic_write(out / "summary.json",
                 lambda temporary: temporary.write_text(json.dumps(summary, indent=2) + "\n"))
    return out / "report.md"


def _variant_comparison(variants, backends, stats) -> list[str]:
    first = variants[0]
    lines = [f"## {first.label} against the other variants", "",
             "Paired by seed (the same seed gives the same initial weights and data order in "
             "every variant with the same parameters).", ""]
    rows = []
    for other in variants[1:]:
        for backend in backends:
            a, b = stats.get((first.label, backend)), stats.get((other.label, backend))
            if a is None or b is None or len(a.accuracies) != len(b.accuracies):
                continue
            mean, low, high = paired_difference(a.accuracies, b.accuracies)
            rows.append([f"{first.label} − {other.label}", backend, f"{mean:+.4f}",
                         f"{low:+.4f} to {high:+.4f}" if not np.isnan(low) else "-"])
    return lines + [format_table(["difference", "backend", "mean", "95% interval"], rows,
                                 markdown=True), ""]
