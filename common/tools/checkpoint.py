"""Checkpoints: everything needed to continue a run exactly, written so that none is ever lost.

A checkpoint is a folder ``RUN/checkpoints/step-000001234/`` holding

* ``state.npz``: the weights and the optimizer state in the interchange layout (so any
  backend can continue it), and a JSON header with the backend, the spec, the run config
  (recipe included), the position (epoch, batch, step) and the metrics so far;
* ``model.<native suffix>``: the same weights in the framework's own format.

There is no RNG state to save: every random draw of a run is a function of the seed and the
position (:mod:`common.training`), so the position is the RNG state.

It is written into a hidden temporary folder, each file fsynced, then renamed into place in
one atomic ``os.replace``; only then are older checkpoints removed. A process killed at any
moment therefore leaves the previous checkpoint or the new one complete, never neither, and a
failed write (a full disk) leaves the previous one untouched.

Tools layer.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..platform import failpoints
from ..platform.files import fsync_directory
from ..spec import Spec, spec_from_dict
from ..training import OptimizerState, TrainingState
from ..weights import NpzReader, WeightsError, canonical_shapes
from .config import RunConfig

FORMAT = "nin-checkpoint"
FORMAT_VERSION = 1
DIRECTORY = "checkpoints"
STATE_FILE = "state.npz"
_NAME = re.compile(r"^step-(\d{9})$")
_SLOTS = {"sgd": (), "momentum": ("velocity",), "adam": ("m", "v")}


class CheckpointError(WeightsError):
    """A checkpoint that is missing, damaged, or made for another model, recipe or backend."""


@dataclass(frozen=True)
class Checkpoint:
    path: Path  # the checkpoint folder
    backend: str
    spec: Spec
    config: RunConfig
    state: TrainingState
    weights: dict[str, np.ndarray]
    optimizer: OptimizerState
    versions: dict

    def describe(self) -> str:
        return (
            f"{self.backend} checkpoint at epoch {self.state.epoch}, batch "
            f"{self.state.batch} (step {self.state.step})"
        )


# -- writing ---------------------------------------------------------------------------------


def save_checkpoint(
    run_dir: Path, backend, trainer, config: RunConfig, state: TrainingState
) -> Path:
    """Write a checkpoint of `trainer` (a backend Trainer) at `state`; returns its folder."""
    root = Path(run_dir) / DIRECTORY
    root.mkdir(exist_ok=True)
    name = f"step-{state.step:09d}"
    temporary = root / f".{name}.tmp-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    failpoints.reached("save:begun", state.step)
    try:
        optimizer = trainer.optimizer_state()
        header = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "backend": backend.BACKEND,
            "versions": _versions(backend.BACKEND),
            "spec": trainer.net.spec.to_dict(),
            "config": config.to_dict(),
            "state": state.to_dict(),
            "optimizer": {"name": optimizer.optimizer, "step": optimizer.step},
        }
        arrays = {
            f"weights/{key}": value for key, value in backend.get_weights(trainer.net).items()
        }
        for slot, values in optimizer.slots.items():
            arrays.update({f"optimizer/{slot}/{key}": value for key, value in values.items()})
        with open(temporary / STATE_FILE, "wb") as file:
            np.savez(file, __header__=np.array(json.dumps(header)), **arrays)
            file.flush()
            os.fsync(file.fileno())
        failpoints.reached("save:state", state.step)
        native = backend.save_native(trainer.net, temporary / f"model{backend.NATIVE_SUFFIX}")
        with open(native, "rb+") as file:
            os.fsync(file.fileno())
        fsync_directory(temporary)
        failpoints.reached("save:native", state.step)
        final = root / name
        if final.exists():  # the same position again: swap it out, then drop the old copy
            stale = root / f".{name}.old-{os.getpid()}"
            os.replace(final, stale)
            try:
                os.replace(temporary, final)
            except BaseException:  # the new copy is not in place: the old one goes back
                if not final.exists():
                    os.replace(stale, final)
                raise
            shutil.rmtree(stale, ignore_errors=True)
        else:
            os.replace(temporary, final)
        fsync_directory(root)
        failpoints.reached("save:renamed", state.step)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    for entry in root.iterdir():  # the new one is complete: older ones and leftovers go
        if entry.name != name and (_NAME.match(entry.name) or entry.name.startswith(".")):
            shutil.rmtree(entry, ignore_errors=True)
    failpoints.reached("save:done", state.step)
    return final


def _versions(backend_name: str) -> dict:
    from ..backends import framework_versions

    return framework_versions(backend_name)


# -- reading ---------------------------------------------------------------------------------


def checkpoint_folders(run_dir: Path) -> list[Path]:
    """Complete checkpoint folders of a run, oldest first (temporary ones are ignored)."""
    root = Path(run_dir) / DIRECTORY
    if not root.is_dir():
        return []
    return sorted(entry for entry in root.iterdir() if _NAME.match(entry.name) and entry.is_dir())


def latest_checkpoint(run_dir: Path) -> Checkpoint:
    """The newest checkpoint of `run_dir` that loads; CheckpointError if there is none."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir} is not a run folder (it does not exist)")
    problems = []
    for folder in reversed(checkpoint_folders(run_dir)):
        try:
            return load_checkpoint(folder)
        except CheckpointError as error:
            problems.append(str(error))
    if problems:
        raise CheckpointError(f"no usable checkpoint in {run_dir}: {problems[0]}")
    raise CheckpointError(
        f"{run_dir} has no checkpoint to resume from (a run writes one "
        f"at the end of every epoch and on Ctrl-C)"
    )


def load_checkpoint(folder: Path) -> Checkpoint:
    """Read and validate one checkpoint folder; every problem is a one-line CheckpointError."""
    folder = Path(folder)
    path = folder / STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"{folder} is not a checkpoint ({STATE_FILE} is missing)")
    with NpzReader(path, CheckpointError, "a NiN checkpoint") as archive:
        header = archive.header()
        if header.get("format") != FORMAT:
            raise CheckpointError(f"{path} is not a NiN checkpoint")
        if header.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(
                f"{path} has checkpoint format version "
                f"{header.get('format_version')!r:.40}; this nin reads "
                f"version {FORMAT_VERSION}"
            )
        try:
            spec = spec_from_dict(header["spec"])
            expected = canonical_shapes(spec)
            config = RunConfig.from_dict(header["config"]).check()
            state = TrainingState.from_dict(header["state"])
            optimizer_name, step = header["optimizer"]["name"], header["optimizer"]["step"]
            backend = header["backend"]
            if (
                optimizer_name not in _SLOTS
                or isinstance(step, bool)
                or not isinstance(step, int)
                or step < 0
                or not isinstance(backend, str)
            ):
                raise ValueError("bad optimizer or backend entry")
            versions = header.get("versions")
            if versions is not None and not isinstance(versions, dict):
                raise ValueError(f"versions must be an object, got {versions!r:.40}")
        except (
            ValueError,
            KeyError,
            TypeError,
            AttributeError,
            OverflowError,
            RecursionError,
        ) as error:
            detail = " ".join(str(error).split())[:200] or type(error).__name__
            raise CheckpointError(f"{path} has a damaged header: {detail}") from None
        _check_position(path, config, state)
        wanted = {f"weights/{key}": shape for key, shape in expected.items()}
        slots = _SLOTS[optimizer_name] if step else ()
        for slot in slots:
            wanted.update({f"optimizer/{slot}/{key}": shape for key, shape in expected.items()})
        missing = sorted(set(wanted) - archive.names)
        if missing:
            raise CheckpointError(
                f"{path} is incomplete: {len(missing)} array(s) missing, e.g. {missing[0]}"
            )
        arrays = {key: archive.array(key, shape) for key, shape in wanted.items()}
    for key, array in arrays.items():
        if not np.isfinite(array).all():
            raise CheckpointError(f"{path}: {key} holds NaN or infinite values")
    weights = {
        key.removeprefix("weights/"): value
        for key, value in arrays.items()
        if key.startswith("weights/")
    }
    moments = {
        slot: {
            key.split("/", 2)[2]: value
            for key, value in arrays.items()
            if key.startswith(f"optimizer/{slot}/")
        }
        for slot in slots
    }
    if config.spec().to_dict() != spec.to_dict():
        raise CheckpointError(f"{path}: its config and its spec disagree")
    if state.step != step or config.recipe.optimizer != optimizer_name:
        raise CheckpointError(f"{path}: its position and its optimizer state disagree")
    return Checkpoint(
        folder,
        backend,
        spec,
        config,
        state,
        weights,
        OptimizerState(optimizer_name, step, moments),
        dict(versions or {}),
    )


def _check_position(path: Path, config: RunConfig, state: TrainingState) -> None:
    """That `state`'s position is one a run of `config` reaches: within its epochs, and the
    step the epochs and batches done make (each epoch is `config`'s training images in
    batches, the last one partial if they do not divide)."""
    batches = -(-config.train_images // config.batch_size)
    where = f"its position (epoch {state.epoch!r:.20}, batch {state.batch!r:.20}, step "
    where += f"{state.step!r:.20})"
    if state.batch >= batches:
        raise CheckpointError(
            f"{path}: {where} is beyond an epoch of its config's {batches} batch(es)"
        )
    if state.epoch > config.epochs or (state.epoch == config.epochs and state.batch):
        raise CheckpointError(f"{path}: {where} is past its config's {config.epochs} epoch(s)")
    if state.step != state.epoch * batches + state.batch:
        raise CheckpointError(
            f"{path}: {where} does not add up: {batches} batch(es) per epoch make step "
            f"{state.epoch * batches + state.batch!r:.20}"
        )


def check_resumable(
    checkpoint: Checkpoint,
    *,
    backend: str | None = None,
    config: RunConfig | None = None,
    may_change=(),
) -> None:
    """That `checkpoint` continues a run of `backend` and `config`, which may differ from
    the checkpoint's only in the fields `may_change` (one-line CheckpointError otherwise)."""
    if backend is not None and backend != checkpoint.backend:
        raise CheckpointError(
            f"{checkpoint.path} is a {checkpoint.backend} checkpoint, not "
            f"{backend}'s; continue it in another framework with --out NEW_RUN"
        )
    if config is not None:
        differences = {
            key: values
            for key, values in checkpoint.config.differences(config).items()
            if key not in may_change
        }
        if differences:
            said = "; ".join(
                f"{key} {ours} instead of {theirs}" for key, (ours, theirs) in differences.items()
            )
            raise CheckpointError(f"{checkpoint.path} was made for another run: {said}")
