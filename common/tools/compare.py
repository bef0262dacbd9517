"""The parity run (``nin compare``): one config trained in every backend, and its report.

The folder holds ``compare.json`` (what was asked, written first), one run folder per backend
(:mod:`common.tools.runs`), ``curves.png``, ``report.md`` and ``summary.json``. An interrupted
comparison continues with ``nin compare --resume FOLDER``: finished backends are kept,
an interrupted one continues from its checkpoint.

Tools layer.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .. import resources
from ..backends import FRAMEWORK_LABELS, load_backend
from ..platform.files import atomic_write
from ..platform.machine import machine_description
from ..report import accuracy_text, format_table
from ..training import accuracy
from . import plots
from .config import RunConfig
from .crosscheck import param_rows, shape_rows
from .runs import RunResult, ensure_run

MANIFEST = "compare.json"


def write_manifest(out: Path, config: RunConfig, backends: list[str]) -> None:
    text = json.dumps({"config": config.to_dict(), "backends": backends}, indent=2) + "\n"
    atomic_write(out / MANIFEST, lambda temporary: temporary.write_text(text))


def read_manifest(out: Path) -> tuple[RunConfig, list[str]]:
    try:
        data = json.loads((Path(out) / MANIFEST).read_text())
        return RunConfig.from_dict(data["config"]), list(data["backends"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{out} is not a nin compare folder ({MANIFEST}: {error})") from None


@dataclass(frozen=True)
class CompareResult:
    """What a parity run measured: one finished run per backend, and every trained model
    scored by every framework."""

    config: RunConfig
    backends: list[str]
    runs: dict[str, RunResult]
    cross_accuracy: dict[str, dict[str, float]]  # {trained in: {evaluated in: test accuracy}}
    machine: str
    finished: datetime

    @property
    def accuracy_gap(self) -> float:
        """The largest test-accuracy gap between the frameworks' own runs."""
        accuracies = [run.history[-1].test_accuracy for run in self.runs.values()]
        return max(accuracies) - min(accuracies)


def compare(
    config: RunConfig,
    backends: list[str],
    out: Path,
    *,
    checkpoint_every=None,
    stop_requested=None,
    progress: bool | None = None,
    log=print,
) -> Path:
    """Train `config` in every backend (same weights, data order and recipe); the report."""
    result = run_compare(
        config,
        backends,
        out,
        checkpoint_every=checkpoint_every,
        stop_requested=stop_requested,
        progress=progress,
        log=log,
    )
    return write_compare(result, out)


def run_compare(
    config: RunConfig,
    backends: list[str],
    out: Path,
    *,
    checkpoint_every=None,
    stop_requested=None,
    progress: bool | None = None,
    log=print,
) -> CompareResult:
    """Train (or finish, or read back) `config` in every backend in `out`, and cross-evaluate."""
    train_data, test_data = config.loaders()
    write_manifest(out, config, backends)
    runs: dict[str, RunResult] = {}
    for name in backends:
        runs[name] = ensure_run(
            name,
            config,
            out / name,
            loaders=(train_data, test_data),
            checkpoint_every=checkpoint_every,
            stop_requested=stop_requested,
            progress=progress,
            log=log,
        )
    return CompareResult(
        config,
        list(backends),
        runs,
        cross_evaluate(config, backends, runs, test_data),
        machine_description(),
        datetime.now(),
    )


def cross_evaluate(
    config: RunConfig, backends: list[str], runs: dict[str, RunResult], test_data
) -> dict[str, dict[str, float]]:
    """Every trained model, moved through the interchange format, scored by every framework."""
    spec = config.spec()
    cross = {}
    for source, run in runs.items():
        cross[source] = {}
        for target in backends:
            backend = load_backend(target)
            net = backend.build_nin(spec)
            backend.import_weights(net, run.directory / "weights.npz")
            cross[source][target] = accuracy(
                functools.partial(backend.predict_logits, net), test_data.epoch()
            )
    return cross


def write_compare(result: CompareResult, out: Path) -> Path:
    """The parity run's curves.png, report.md and summary.json in `out`; the report's path."""
    config = result.config
    plots.plot_curves(
        {name: (run.points, run.history) for name, run in result.runs.items()},
        out / "curves.png",
        title=f"{config.spec().describe()} on Fashion-MNIST, "
        f"{config.size}x{config.size}, {config.recipe.describe()}",
    )
    report = render_markdown(result)
    atomic_write(out / "report.md", lambda temporary: temporary.write_text(report))
    summary = json.dumps(render_summary(result), indent=2) + "\n"
    atomic_write(out / "summary.json", lambda temporary: temporary.write_text(summary))
    return out / "report.md"


def render_summary(result: CompareResult) -> dict:
    """summary.json: the config, the machine, each run's summary and the cross accuracies."""
    return {
        "config": result.config.to_dict(),
        "machine": result.machine,
        "backends": {name: run.summary for name, run in result.runs.items()},
        "cross_accuracy": result.cross_accuracy,
    }


def render_markdown(result: CompareResult) -> str:
    """report.md: what this parity run measured, on this machine, with these versions."""
    config, backends = result.config, result.backends
    return "\n".join(
        [
            f"# NiN in {len(backends)} frameworks: parity report",
            "",
            f"{result.finished:%Y-%m-%d %H:%M}, {result.machine}.",
            "",
            f"{config.describe()}. Every backend starts from the same weights and sees the same "
            "examples in the same order.",
            *([""] + [config.head_sentence()] if config.head_sentence() else []),
            "",
            "## Results",
            "",
            format_table(
                [
                    "framework",
                    "device",
                    "train loss",
                    "train acc",
                    "test acc",
                    "classes never predicted",
                    "examples/s",
                    "seconds",
                ],
                _result_rows(result),
                markdown=True,
            ),
            "",
            f"Largest test-accuracy gap between frameworks: {accuracy_text(result.accuracy_gap)}.",
            "",
            "![training curves](curves.png)",
            "",
            *_cross_section(result),
            *_architecture_sections(config, backends),
            "## Versions",
            "",
            *[
                f"- {FRAMEWORK_LABELS[name]}: "
                + ", ".join(f"{key} {value}" for key, value in run.summary["versions"].items())
                for name, run in result.runs.items()
            ],
            "",
        ]
    )


def _result_rows(result: CompareResult) -> list[list]:
    rows = []
    for name, run in result.runs.items():
        final = run.history[-1]
        rows.append(
            [
                FRAMEWORK_LABELS[name],
                run.summary["device"],
                f"{final.train_loss:.4f}",
                accuracy_text(final.train_accuracy),
                accuracy_text(final.test_accuracy),
                len(run.summary["classes_never_predicted"]),
                round(final.examples_per_second),
                round(run.summary["train_seconds"], 1),
            ]
        )
    return rows


def _cross_section(result: CompareResult) -> list[str]:
    rows = [
        [source, *(accuracy_text(scores[target]) for target in result.backends)]
        for source, scores in result.cross_accuracy.items()
    ]
    return [
        "## Trained in one framework, evaluated in another",
        "",
        "Rows: where the model was trained; columns: the framework that ran it after moving the "
        "weights through `weights.npz`. Equal rows mean the frameworks compute the same function.",
        "",
        format_table(["trained in", *result.backends], rows, markdown=True),
        "",
    ]


def _architecture_sections(config: RunConfig, backends: list[str]) -> list[str]:
    """The layer shapes and parameters in every framework, and NiN against AlexNet: the
    model's arithmetic, the same for every run of `config`."""
    spec = config.spec()
    headers = ["layer", "analytic", *backends, "agree"]
    return [
        f"## Layer shapes at {config.size}x{config.size} (NCHW)",
        "",
        format_table(
            headers, shape_rows(spec, (1, 1, config.size, config.size), backends), markdown=True
        ),
        "",
        "## Parameters",
        "",
        format_table(headers, param_rows(spec, backends), markdown=True),
        "",
        "## NiN vs AlexNet (224x224, batch 128, float32, SGD)",
        "",
        resources.compare_models(("nin", "alexnet"), 224, 128, markdown=True),
        "",
    ]
