"""A training run and the folder it leaves behind.

A run folder holds ``config.json`` (written first), ``metrics.jsonl`` (a line every few steps
and one per epoch, written as it happens), ``checkpoints/`` (the newest complete checkpoint,
:mod:`common.tools.checkpoint`), and when the run is complete ``curves.png``, ``weights.npz`` (the
interchange format), the framework's native weights and ``summary.json``. A data-parallel
run (``nin train --workers N``) also holds ``logs/``, the worker processes' output.

Tools layer.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from ..backends import FRAMEWORK_LABELS, framework_versions, load_backend
from ..data import CLASS_NAMES, DataLoader
from ..platform.files import atomic_write
from ..platform.machine import machine_description
from ..training import (
    EpochMetrics,
    StepMetrics,
    TrainingState,
    metrics_from_record,
    predict_classes,
)
from . import plots
from .checkpoint import DIRECTORY, Checkpoint, save_checkpoint
from .config import RunConfig

SUMMARY = "summary.json"
CONFIG = "config.json"
METRICS = "metrics.jsonl"
LOGS = "logs"  # written by the launcher of a data-parallel run before its workers start
# check_writable_parent's probe file: there for an instant, but the workers of a data-parallel
# run check the same folder at the same time, and one must not take another's probe for a file.
PROBE_PREFIX = ".nin-probe-"


def default_run_dir(kind: str) -> Path:
    return Path("runs") / f"{kind}-{datetime.now():%Y%m%d-%H%M%S}"


def check_new_run_dir(out: str | Path, parameters: int = 0) -> Path:
    """That `out` can become a new run folder for a model of `parameters` parameters: empty
    (but for a launcher's logs/) or absent, creatable, writable, with room for its files.

    Nothing is left behind; call before any work so that a bad --out fails at once.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a folder; choose another --out")
    if out.is_dir() and any(
        entry.name != LOGS and not entry.name.startswith(PROBE_PREFIX) for entry in out.iterdir()
    ):
        raise ValueError(
            f"{out} already exists and is not empty; choose another --out (nothing is overwritten)"
        )
    check_writable_parent(out / "summary.json", RUN_BYTES_PER_PARAMETER * parameters)
    return out


# What a run folder needs at most, per parameter: the weights (npz and native), and the
# newest checkpoint (weights, two Adam moments, native weights) while the next one is written.
RUN_BYTES_PER_PARAMETER = 4 * (2 + 2 * 4)


def check_writable_parent(path: Path, needed_bytes: int = 0) -> None:
    """That `path` (a file or folder to create) can be created, with `needed_bytes` free:
    its nearest existing ancestor is a folder in which a file can really be made (a probe
    file is created and removed, which also catches read-only file systems, even as root)."""
    import shutil
    import tempfile

    ancestor = Path(path).absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"cannot create {path}: {ancestor} is a file, not a folder")
    try:
        descriptor, probe = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=ancestor)
        os.close(descriptor)
        os.unlink(probe)
    except OSError as error:
        raise ValueError(
            f"cannot create {path}: {ancestor} is not writable ({error.strerror})"
        ) from None
    free = shutil.disk_usage(ancestor).free
    if free < needed_bytes:
        raise ValueError(
            f"cannot create {path}: {ancestor} has {free / 2**20:.0f} MiB free, "
            f"a run needs about {needed_bytes / 2**20:.0f} MiB"
        )


@dataclass(frozen=True)
class RunResult:
    """A finished run: what :func:`train_run` computed, and the folder it wrote it to.

    `summary` is the run's ``summary.json`` (:func:`run_summary`); `net` is None for a run
    read back from its folder (:func:`load_result`)."""

    backend: str
    net: object
    history: list[EpochMetrics]
    points: list[StepMetrics]
    summary: dict
    directory: Path


@dataclass(frozen=True)
class TestScores:
    """The trained network on every test image it was scored on."""

    accuracy: float
    per_class: list[float]  # accuracy on each class's images, in CLASS_NAMES order
    never_predicted: list[str]  # the classes it predicted for no image


def score_predictions(predicted: np.ndarray, labels: np.ndarray) -> TestScores:
    return TestScores(
        float((predicted == labels).mean()),
        [float((predicted[labels == label] == label).mean()) for label in range(len(CLASS_NAMES))],
        [CLASS_NAMES[label] for label in range(len(CLASS_NAMES)) if not np.any(predicted == label)],
    )


def read_summary(run_dir: Path) -> dict | None:
    """The summary of a complete run folder, or None."""
    try:
        return json.loads((Path(run_dir) / SUMMARY).read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data) -> None:
    atomic_write(path, lambda temporary: temporary.write_text(json.dumps(data, indent=2) + "\n"))


def _rewrite_metrics(path: Path, state: TrainingState) -> None:
    """metrics.jsonl as of `state` (a resumed run drops lines written after its checkpoint)."""
    text = "".join(json.dumps(record) + "\n" for record in _interleave(state))
    atomic_write(path, lambda temporary: temporary.write_text(text))


def _interleave(state: TrainingState) -> list[dict]:
    """Step points and epoch records in the order they were written."""
    records, epochs = [], iter(state.history)
    upcoming = next(epochs, None)
    for point in state.points:
        records.append(point.to_dict())
        if upcoming is not None and point.epoch >= upcoming.epoch:
            records.append(upcoming.to_dict())
            upcoming = next(epochs, None)
    while upcoming is not None:
        records.append(upcoming.to_dict())
        upcoming = next(epochs, None)
    return records


def train_run(
    backend_name: str,
    config: RunConfig,
    out: Path,
    *,
    resume: Checkpoint | None = None,
    loaders: tuple[DataLoader, DataLoader] | None = None,
    checkpoint_every: int | None = None,
    stop_requested: Callable[[], str | None] | None = None,
    keep_checkpoint: bool = True,
    progress: bool | None = None,
    log=print,
    group=None,
) -> RunResult:
    """Train one backend as `config` says in the run folder `out`, or continue `resume`.

    A checkpoint is written after every epoch, every `checkpoint_every` steps and before a
    requested stop (which raises :class:`common.training.TrainingStopped`). The last one is
    kept (to train further with ``--resume --epochs``) unless `keep_checkpoint` is False.
    With `group` (a :class:`common.distributed.Group` of rank 0), this is the writing worker
    of a data-parallel run: see :func:`common.distributed.train_worker`.
    """
    backend = load_backend(backend_name)
    train_data, test_data = loaders or config.loaders()
    if group is None:
        net = backend.build_nin(config.spec(), seed=config.seed)
        trainer = backend.Trainer(net, config.recipe, seed=config.seed)
    else:
        net, trainer = group.build(config.spec(), config.recipe, config.seed)
    state = _open_run_folder(out, backend_name, config, backend, net, trainer, resume, log)
    metrics_path = out / METRICS

    def on_epoch(metrics: EpochMetrics) -> None:
        _append_record(metrics_path, metrics.to_dict())
        log(epoch_line(backend_name, metrics))

    start = time.perf_counter()
    history = trainer.fit(
        train_data,
        test_data,
        epochs=config.epochs,
        progress=progress,
        state=state,
        checkpoint=lambda current: save_checkpoint(out, backend, trainer, config, current),
        checkpoint_every=checkpoint_every,
        stop_requested=stop_requested,
        on_point=lambda point: _append_record(metrics_path, point.to_dict()),
        on_epoch=on_epoch,
    )
    seconds = time.perf_counter() - start + (resume.state.epoch_seconds if resume else 0.0)
    points = trainer.state.points
    scores = score_predictions(*_final_predictions(trainer, test_data))
    result = _finish_run_folder(
        out,
        backend_name,
        config,
        backend,
        net,
        trainer.device,
        history,
        points,
        scores,
        seconds,
        resumed=resume is not None,
        workers=group.size if group else 1,
    )
    if not keep_checkpoint:
        shutil.rmtree(out / DIRECTORY, ignore_errors=True)
    return result


def _open_run_folder(
    out: Path,
    backend_name: str,
    config: RunConfig,
    backend,
    net,
    trainer,
    resume: Checkpoint | None,
    log,
) -> TrainingState | None:
    """Create `out` with its config.json and metrics.jsonl (cut back to `resume`'s state, whose
    weights and optimizer state `net` and `trainer` take); the state to continue from."""
    out.mkdir(parents=True, exist_ok=True)
    state = None
    if resume is not None:
        backend.set_weights(net, resume.weights)
        trainer.load_optimizer_state(resume.optimizer)
        state = resume.state
        _rewrite_metrics(out / METRICS, state)
        log(f"  {backend_name:6} resuming from the {resume.describe()}")
    else:
        (out / METRICS).write_text("")
    _write_json(out / CONFIG, {"backend": backend_name, "config": config.to_dict()})
    return state


def _append_record(path: Path, record: dict) -> None:
    with open(path, "a") as file:
        file.write(json.dumps(record) + "\n")


def epoch_line(backend_name: str, metrics: EpochMetrics) -> str:
    """The log line of a finished epoch."""
    return (
        f"  {backend_name:6} epoch {metrics.epoch}: loss {metrics.train_loss:.4f}, "
        f"train acc {metrics.train_accuracy:.4f}, test acc {metrics.test_accuracy:.4f}, "
        f"{metrics.examples_per_second:.0f} examples/s"
    )


def _final_predictions(trainer, test_data: DataLoader) -> tuple[np.ndarray, np.ndarray]:
    """(predicted, true) classes of the test images after the last epoch."""
    if trainer.test_predictions is not None:
        return trainer.test_predictions, test_data.labels
    # resumed after the last epoch's checkpoint: nothing was scored in this process
    return predict_classes(trainer.predict, test_data.epoch())


def _finish_run_folder(
    out: Path,
    backend_name: str,
    config: RunConfig,
    backend,
    net,
    device: str,
    history: list[EpochMetrics],
    points: list[StepMetrics],
    scores: TestScores,
    seconds: float,
    *,
    resumed: bool,
    workers: int,
) -> RunResult:
    """Write a trained run's weights, curves and summary.json into `out`; its result."""
    backend.export_weights(
        net,
        out / "weights.npz",
        input={"size": config.size, "standardize": config.recipe.standardize},
    )
    native = backend.save_native(net, out / f"model{backend.NATIVE_SUFFIX}")
    plots.plot_curves(
        {backend_name: (points, history)},
        out / "curves.png",
        title=f"{config.spec().describe()} in {FRAMEWORK_LABELS[backend_name]}",
    )
    summary = run_summary(
        backend_name,
        config,
        device=device,
        workers=workers,
        history=history,
        scores=scores,
        train_seconds=seconds,
        resumed=resumed,
        native_weights=native.name,
    )
    _write_json(out / SUMMARY, summary)
    return RunResult(backend_name, net, history, points, summary, out)


def run_summary(
    backend_name: str,
    config: RunConfig,
    *,
    device: str,
    workers: int,
    history: list[EpochMetrics],
    scores: TestScores,
    train_seconds: float,
    resumed: bool,
    native_weights: str,
) -> dict:
    """A run's summary.json: what it trained, where, and how it scored on the test images."""
    return {
        "backend": backend_name,
        "framework": FRAMEWORK_LABELS[backend_name],
        "versions": framework_versions(backend_name),
        "device": device,
        "workers": workers,
        "machine": machine_description(),
        "config": config.to_dict(),
        "spec": config.spec().to_dict(),
        "final": history[-1].to_dict(),
        "test_accuracy": scores.accuracy,
        "per_class_accuracy": scores.per_class,
        "classes_never_predicted": scores.never_predicted,
        "train_seconds": train_seconds,
        "resumed": resumed,
        "native_weights": native_weights,
    }


def load_run(run_dir: Path) -> tuple[str, RunConfig]:
    """(backend, config) recorded in a run folder's config.json."""
    path = Path(run_dir) / CONFIG
    try:
        data = json.loads(path.read_text())
        return str(data["backend"]), RunConfig.from_dict(data["config"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{run_dir} is not a nin run folder ({CONFIG}: {error})") from None


def clear_run_dir(run_dir: Path) -> None:
    """Empty an unfinished run folder that has no checkpoint, to start it again."""
    for entry in Path(run_dir).iterdir():
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def load_result(run_dir: Path) -> RunResult:
    """A complete run read back from its folder (no network is built)."""
    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    if summary is None:
        raise ValueError(f"{run_dir} holds no finished run ({SUMMARY} is missing)")
    if not isinstance(summary, dict) or summary.get("backend") not in FRAMEWORK_LABELS:
        raise ValueError(f"{run_dir / SUMMARY} is not a run's summary (no known backend)")
    history, points = read_metrics(run_dir / METRICS)
    return RunResult(summary["backend"], None, history, points, summary, run_dir)


def read_metrics(path: Path) -> tuple[list[EpochMetrics], list[StepMetrics]]:
    """The epoch records and logged points of a metrics.jsonl; ValueError naming the line
    of a damaged file (a run folder is a user's file, and may have been edited)."""
    history, points = [], []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        try:
            metrics = metrics_from_record(json.loads(line))
        except (ValueError, RecursionError) as error:  # RecursionError: JSON nested too deep
            raise ValueError(f"{path}, line {number}: {error}") from None
        (history if isinstance(metrics, EpochMetrics) else points).append(metrics)
    return history, points


def ensure_run(backend_name: str, config: RunConfig, out: Path, **options) -> RunResult:
    """A complete run of `config` in `out`: the finished one if there is one, else the
    interrupted one continued from its checkpoint, else a new one (`options` go to
    :func:`train_run`)."""
    from .checkpoint import check_resumable, checkpoint_folders, latest_checkpoint

    out = Path(out)
    finished = read_summary(out)
    if finished is not None:
        if finished.get("backend") != backend_name or RunConfig.from_dict(
            finished["config"]
        ).differences(config):
            raise ValueError(f"{out} holds a finished run of other settings; use another folder")
        return load_result(out)
    if checkpoint_folders(out):
        checkpoint = latest_checkpoint(out)
        check_resumable(checkpoint, backend=backend_name, config=config)
        return train_run(backend_name, config, out, resume=checkpoint, **options)
    if out.exists():
        clear_run_dir(out)  # started, but stopped before its first checkpoint
    return train_run(backend_name, config, out, **options)
