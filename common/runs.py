"""Training runs and the cross-framework comparison, with the files they leave behind.

A run folder holds ``metrics.jsonl`` (one line per epoch, written as it happens),
``curves.png``, ``weights.npz`` (the interchange format), the framework's native weights and
``summary.json``. ``nin compare`` adds one such folder per backend plus ``report.md``.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from . import plots, resources, shapes
from .backends import FRAMEWORK_LABELS, framework_versions, load_backend
from .data import DataLoader, load_data
from .report import format_table
from .spec import Spec, make_spec
from .training import EpochMetrics, Recipe, accuracy


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a training run; the same for every backend in a comparison."""

    model: str = "nin"
    spec_options: dict = field(default_factory=dict)
    epochs: int = 2
    batch_size: int = 128
    size: int = 67
    optimizer: str = "adam"
    lr: float = 2e-3
    seed: int = 0
    train_limit: int | None = 30_000
    test_limit: int | None = 2_000
    data_dir: str | None = None

    def spec(self) -> Spec:
        return make_spec(self.model, **self.spec_options)

    def recipe(self) -> Recipe:
        return Recipe(optimizer=self.optimizer, lr=self.lr)

    def check(self) -> None:
        """Fail on a bad configuration before any data is read or framework imported."""
        self.recipe()
        spec = self.spec()
        if spec.in_channels != 1 or spec.num_classes != 10:
            raise ValueError("Fashion-MNIST has 1 input channel and 10 classes; "
                             f"{spec.describe()} cannot be trained on it")
        shapes.check_input_shape(spec, (1, 1, self.size, self.size))
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")

    def loaders(self) -> tuple[DataLoader, DataLoader]:
        return load_data(self.batch_size, self.size, seed=self.seed, train_limit=self.train_limit,
                         test_limit=self.test_limit, data_dir=self.data_dir)


def new_run_dir(out: str | Path | None, kind: str) -> Path:
    """`out`, which must not hold anything yet, or a fresh ``runs/<kind>-<time>``."""
    if out is None:
        out = Path("runs") / f"{kind}-{datetime.now():%Y%m%d-%H%M%S}"
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} already exists and is not empty; choose another --out "
                         "(nothing is overwritten)")
    out.mkdir(parents=True, exist_ok=True)
    return out


def machine_description() -> str:
    return f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}"


@dataclass
class RunResult:
    backend: str
    net: object
    history: list[EpochMetrics]
    summary: dict
    directory: Path


def train_run(backend_name: str, config: RunConfig, out: Path, *,
              loaders: tuple[DataLoader, DataLoader] | None = None,
              progress: bool | None = None, log=print) -> RunResult:
    """Train one backend as `config` says and write the run folder `out`."""
    backend = load_backend(backend_name)
    train_data, test_data = loaders or config.loaders()
    spec = config.spec()
    net = backend.build_nin(spec, seed=config.seed)
    trainer = backend.Trainer(net, config.recipe(), seed=config.seed)
    out.mkdir(parents=True, exist_ok=True)
    metrics_path = out / "metrics.jsonl"

    def on_epoch(metrics: EpochMetrics) -> None:
        with open(metrics_path, "a") as file:
            file.write(json.dumps(metrics.to_dict()) + "\n")
        log(f"  {backend_name:6} epoch {metrics.epoch}: loss {metrics.train_loss:.4f}, "
            f"train acc {metrics.train_accuracy:.3f}, test acc {metrics.test_accuracy:.3f}, "
            f"{metrics.examples_per_second:.0f} examples/s")

    start = time.perf_counter()
    history = trainer.fit(train_data, test_data, epochs=config.epochs, progress=progress,
                          on_epoch=on_epoch)
    seconds = time.perf_counter() - start
    backend.export_weights(net, out / "weights.npz")
    native = backend.save_native(net, out / f"model{backend.NATIVE_SUFFIX}")
    plots.plot_curves({backend_name: history}, out / "curves.png",
                      title=f"{spec.describe()} in {FRAMEWORK_LABELS[backend_name]}")
    summary = {
        "backend": backend_name,
        "framework": FRAMEWORK_LABELS[backend_name],
        "versions": framework_versions(backend_name),
        "device": trainer.device,
        "machine": machine_description(),
        "config": asdict(config),
        "spec": spec.to_dict(),
        "final": history[-1].to_dict(),
        "train_seconds": seconds,
        "native_weights": native.name,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return RunResult(backend_name, net, history, summary, out)


def shape_rows(spec: Spec, input_shape: tuple[int, ...], backends: list[str]):
    """Rows of layer name, analytic shape and each backend's shape, plus whether all agree."""
    columns = [shapes.layer_shapes(spec, input_shape)]
    for name in backends:
        backend = load_backend(name)
        columns.append(backend.layer_shapes(backend.build_nin(spec), input_shape))
    rows = []
    for index, reference in enumerate(columns[0]):
        values = [column[index].output_shape if index < len(column) else "missing"
                  for column in columns]
        names = {column[index].name for column in columns if index < len(column)}
        rows.append([reference.name, *values, len(set(values)) == 1 and len(names) == 1])
    return rows


def param_rows(spec: Spec, backends: list[str]):
    analytic = shapes.layer_params(spec)
    counts = []
    for name in backends:
        backend = load_backend(name)
        counts.append(backend.params_by_layer(backend.build_nin(spec)))
    rows = []
    for layer in analytic:
        values = [layer.total] + [count.get(layer.name, "missing") for count in counts]
        rows.append([layer.name, *values, len(set(values)) == 1])
    totals = [sum(layer.total for layer in analytic)] + [sum(count.values()) for count in counts]
    rows.append(["total", *totals, len(set(totals)) == 1])
    return rows


def compare(config: RunConfig, backends: list[str], out: Path, *,
            progress: bool | None = None, log=print) -> Path:
    """The parity run: the same spec, data order, seed and recipe in every backend."""
    spec = config.spec()
    train_data, test_data = config.loaders()
    headers = ["layer", "analytic", *backends, "agree"]
    shape_table = format_table(headers, shape_rows(spec, (1, 1, config.size, config.size), backends),
                               markdown=True)
    param_table = format_table(headers, param_rows(spec, backends), markdown=True)
    log(f"Training {spec.describe()} in {', '.join(backends)}: {config.epochs} epochs, "
        f"{train_data.num_examples} training images at {config.size}x{config.size}, "
        f"{config.optimizer} lr {config.lr:g}, batch {config.batch_size}, "
        f"seed {config.seed}")

    results = {}
    for name in backends:
        results[name] = train_run(name, config, out / name, loaders=(train_data, test_data),
                                  progress=progress, log=log)
    plots.plot_curves({name: result.history for name, result in results.items()},
                      out / "curves.png", title=f"{spec.describe()} on Fashion-MNIST, "
                      f"{config.size}x{config.size}, {config.optimizer} lr {config.lr:g}")

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
        final_rows.append([FRAMEWORK_LABELS[name], result.summary["device"], final.train_loss,
                           final.train_accuracy, final.test_accuracy,
                           round(final.examples_per_second), round(result.summary["train_seconds"], 1)])
    accuracies = [result.history[-1].test_accuracy for result in results.values()]

    report = [
        f"# NiN in {len(backends)} frameworks: parity report",
        "",
        f"{datetime.now():%Y-%m-%d %H:%M}, {machine_description()}.",
        "",
        f"Model {spec.describe()}, input {config.size}x{config.size}, {config.epochs} epochs on "
        f"{train_data.num_examples:,} training images (same order in every backend), "
        f"test accuracy on {test_data.num_examples:,} test images; {config.optimizer}, lr {config.lr:g}, "
        f"batch {config.batch_size}, seed {config.seed}.",
        "",
        "## Results",
        "",
        format_table(["framework", "device", "train loss", "train acc", "test acc",
                      "examples/s", "seconds"], final_rows, markdown=True),
        "",
        f"Largest test-accuracy gap between frameworks: {max(accuracies) - min(accuracies):.4f}.",
        "",
        "![training curves](curves.png)",
        "",
        "## Trained in one framework, evaluated in another",
        "",
        "Rows: where the model was trained; columns: the framework that ran it after moving the "
        "weights through `weights.npz`. Equal rows mean the frameworks compute the same function.",
        "",
        format_table(["trained in", *backends], cross, markdown=True),
        "",
        f"## Layer shapes at {config.size}x{config.size} (NCHW)",
        "",
        shape_table,
        "",
        "## Parameters",
        "",
        param_table,
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
    (out / "report.md").write_text("\n".join(report))
    summary = {"config": asdict(config), "machine": machine_description(),
               "backends": {name: result.summary for name, result in results.items()},
               "cross_accuracy": {row[0]: dict(zip(backends, row[1:])) for row in cross}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return out / "report.md"
