"""The parity run (``nin compare``): one config trained in every backend, and its report.

The folder holds ``compare.json`` (what was asked, written first), one run folder per backend
(:mod:`common.tools.runs`), ``curves.png``, ``report.md`` and ``summary.json``. An interrupted
comparison continues with ``nin compare --resume FOLDER``: finished backends are kept,
an interrupted one continues from its checkpoint.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from . import plots
from .. import resources
from ..backends import FRAMEWORK_LABELS, load_backend
from ..platform.files import atomic_write
from .config import RunConfig
from .crosscheck import param_rows, shape_rows
from ..report import accuracy_text, format_table
from .runs import RunResult, ensure_run
from ..platform.machine import machine_description
from ..training import accuracy

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


def compare(config: RunConfig, backends: list[str], out: Path, *, checkpoint_every=None,
            stop_requested=None, progress: bool | None = None, log=print) -> Path:
    """Train `config` in every backend (same weights, data order and recipe); the report."""
    spec = config.spec()
    train_data, test_data = config.loaders()
    write_manifest(out, config, backends)
    results: dict[str, RunResult] = {}
    for name in backends:
        results[name] = ensure_run(name, config, out / name, loaders=(train_data, test_data),
                                   checkpoint_every=checkpoint_every,
                                   stop_requested=stop_requested, progress=progress, log=log)
    plots.plot_curves({name: (result.points, result.history) for name, result in results.items()},
                      out / "curves.png", title=f"{spec.describe()} on Fashion-MNIST, "
                      f"{config.size}x{config.size}, {config.recipe.describe()}")

    # Every trained model, moved through the interchange format, scored by every framework.
    cross = []
    for source, result in results.items():
        row = [source]
        for target in backends:
            backend = load_backend(target)
            net = backend.build_nin(spec)
            backend.import_weights(net, result.directory / "weights.npz")
            row.append(accuracy(lambda images: backend.predict_logits(net, images),
                                test_data.epoch()))
        cross.append(row)

    final_rows = []
    for name, result in results.items():
        final = result.history[-1]
        never = result.summary["classes_never_predicted"]
        final_rows.append([FRAMEWORK_LABELS[name], result.summary["device"],
                           f"{final.train_loss:.4f}", accuracy_text(final.train_accuracy),
                           accuracy_text(final.test_accuracy), len(never),
                           round(final.examples_per_second),
                           round(result.summary["train_seconds"], 1)])
    accuracies = [result.history[-1].test_accuracy for result in results.values()]
    headers = ["layer", "analytic", *backends, "agree"]
    report = [
        f"# NiN in {len(backends)} frameworks: parity report",
        "",
        f"{datetime.now():%Y-%m-%d %H:%M}, {machine_description()}.",
        "",
        f"{config.describe()}. Every backend starts from the same weights and sees the same "
        "examples in the same order.",
        *([""] + [config.head_sentence()] if config.head_sentence() else []),
        "",
        "## Results",
        "",
        format_table(["framework", "device", "train loss", "train acc", "test acc",
                      "classes never predicted", "examples/s", "seconds"], final_rows,
                     markdown=True),
        "",
        f"Largest test-accuracy gap between frameworks: "
        f"{accuracy_text(max(accuracies) - min(accuracies))}.",
        "",
        "![training curves](curves.png)",
        "",
        "## Trained in one framework, evaluated in another",
        "",
        "Rows: where the model was trained; columns: the framework that ran it after moving the "
        "weights through `weights.npz`. Equal rows mean the frameworks compute the same function.",
        "",
        format_table(["trained in", *backends],
                     [[row[0], *map(accuracy_text, row[1:])] for row in cross], markdown=True),
        "",
        f"## Layer shapes at {config.size}x{config.size} (NCHW)",
        "",
        format_table(headers, shape_rows(spec, (1, 1, config.size, config.size), backends),
                     markdown=True),
        "",
        "## Parameters",
        "",
        format_table(headers, param_rows(spec, backends), markdown=True),
        "",
        "## NiN vs AlexNet (224x224, batch 128, float32, SGD)",
        "",
        resources.compare_models(("nin", "alexnet"), 224, 128, markdown=True),
        "",
        "## Versions",
        "",
        *[f"- {FRAMEWORK_LABELS[name]}: " + ", ".join(f"{key} {value}" for key, value in
                                                     result.summary["versions"].items())
          for name, result in results.items()],
        "",
    ]
    atomic_write(out / "report.md", lambda temporary: temporary.write_text("\n".join(report)))
    summary = {"config": config.to_dict(), "machine": machine_description(),
               "backends": {name: result.summary for name, result in results.items()},
               "cross_accuracy": {row[0]: dict(zip(backends, row[1:])) for row in cross}}
    atomic_write(out / "summary.json",
                 lambda temporary: temporary.write_text(json.dumps(summary, indent=2) + "\n"))
    return out / "report.md"
