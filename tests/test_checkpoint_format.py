"""The checkpoint format of common.tools.checkpoint, without a framework: a stand-in backend
hands over NumPy arrays, so what is written, read back, validated and refused is the format
itself (tests/test_checkpoint.py resumes real runs in every framework)."""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from common.platform import failpoints
from common.platform.files import fsync_directory
from common.tools.checkpoint import (
    DIRECTORY,
    FORMAT,
    FORMAT_VERSION,
    STATE_FILE,
    CheckpointError,
    check_resumable,
    checkpoint_folders,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from common.tools.config import RunConfig
from common.training import (
    EpochMetrics,
    OptimizerState,
    Recipe,
    StepMetrics,
    TrainingState,
    _Sums,
)
from common.weights import WeightsError, canonical_shapes, probe_weights

# A NiN small enough that a checkpoint is a few kilobytes; Fashion-MNIST-shaped, as a run's is.
# Four batches an epoch (the last one partial), three epochs.
CONFIG = RunConfig(
    spec_options={"widths": (4, 6, 8), "num_1x1": 1},
    recipe=Recipe(optimizer="adam", lr=1e-3),
    epochs=3,
    batch_size=16,
    train_limit=60,
)
BATCHES = 4
SPEC = CONFIG.spec()


class Backend:
    """What save_checkpoint needs of a backend package."""

    BACKEND = "torch"  # a registry name (only package metadata is read, never the framework)
    NATIVE_SUFFIX = ".native"

    @staticmethod
    def get_weights(net):
        return net.weights

    @staticmethod
    def save_native(net, path):
        Path(path).write_bytes(net.native)
        return path


class Trainer:
    def __init__(self, seed: int = 0, optimizer: str = "adam", step: int = 5):
        self.net = SimpleNamespace(
            spec=SPEC, weights=probe_weights(SPEC, seed), native=f"native weights {seed}".encode()
        )
        names = {"sgd": (), "momentum": ("velocity",), "adam": ("m", "v")}[optimizer]
        self.slots = {
            slot: probe_weights(SPEC, seed + 1 + index) for index, slot in enumerate(names)
        }
        self.optimizer, self.step = optimizer, step

    def optimizer_state(self):
        return OptimizerState(self.optimizer, self.step, self.slots)


def _state(step: int = 5, batches: int = BATCHES) -> TrainingState:
    """The state of a run of CONFIG after `step` steps: a history entry per epoch done, and a
    point logged at each epoch's end."""
    epoch, batch = divmod(step, batches)
    return TrainingState(
        epoch=epoch,
        batch=batch,
        step=step,
        epoch_sums=_Sums(1.5, 20, 32, 2),
        epoch_seconds=2.5,
        history=[EpochMetrics(n + 1, 1.5, 0.5, 0.6, 30.0, 2.0, 8) for n in range(epoch)],
        points=[StepMetrics((n + 1) * batches, n + 1.0, 1.5, 0.5) for n in range(epoch)],
    )


def _save(run: Path, step: int = 5, config: RunConfig = CONFIG, **trainer) -> tuple[Path, Trainer]:
    model = Trainer(step=step, **trainer)
    run.mkdir(parents=True, exist_ok=True)  # a run folder exists before its first checkpoint
    return save_checkpoint(run, Backend, model, config, _state(step)), model


def _rewrite(folder: Path, change_header=None, change_arrays=None) -> None:
    """Rewrite a checkpoint's state.npz with its header and arrays changed."""
    path = folder / STATE_FILE
    with np.load(path) as archive:
        header = json.loads(str(archive["__header__"]))
        arrays = {key: archive[key] for key in archive.files if key != "__header__"}
    if change_header:
        change_header(header)
    if change_arrays:
        change_arrays(arrays)
    with open(path, "wb") as file:
        np.savez(file, __header__=np.array(json.dumps(header)), **arrays)


def test_a_checkpoint_round_trips_everything_it_holds(tmp_path):
    folder, model = _save(tmp_path, step=5)
    assert folder == tmp_path / DIRECTORY / "step-000000005"
    assert sorted(path.name for path in folder.iterdir()) == ["model.native", STATE_FILE]
    assert (folder / "model.native").read_bytes() == model.net.native
    checkpoint = load_checkpoint(folder)
    assert checkpoint.path == folder and checkpoint.backend == Backend.BACKEND
    assert checkpoint.spec == SPEC and checkpoint.spec.to_dict() == SPEC.to_dict()
    assert checkpoint.config == CONFIG.from_dict(json.loads(json.dumps(CONFIG.to_dict())))
    assert checkpoint.config.recipe == CONFIG.recipe
    assert checkpoint.state.to_dict() == _state(5).to_dict()
    assert (checkpoint.state.epoch, checkpoint.state.batch, checkpoint.state.step) == (1, 1, 5)
    assert checkpoint.describe() == f"{Backend.BACKEND} checkpoint at epoch 1, batch 1 (step 5)"
    assert list(checkpoint.weights) == list(canonical_shapes(SPEC))
    for key, value in model.net.weights.items():
        np.testing.assert_array_equal(checkpoint.weights[key], value)
    assert (checkpoint.optimizer.optimizer, checkpoint.optimizer.step) == ("adam", 5)
    assert sorted(checkpoint.optimizer.slots) == ["m", "v"]
    for slot, values in model.slots.items():
        assert list(checkpoint.optimizer.slots[slot]) == list(canonical_shapes(SPEC))
        for key, value in values.items():
            np.testing.assert_array_equal(checkpoint.optimizer.slots[slot][key], value)
    assert "numpy" in checkpoint.versions
    with np.load(folder / STATE_FILE) as archive:
        header = json.loads(str(archive["__header__"]))
        assert (
            (header["format"], header["format_version"])
            == (FORMAT, FORMAT_VERSION)
            == (
                "nin-checkpoint",
                1,
            )
        )
        assert header["optimizer"] == {"name": "adam", "step": 5}
        assert sorted(archive.files) == sorted(
            ["__header__"]
            + [f"weights/{key}" for key in canonical_shapes(SPEC)]
            + [f"optimizer/{slot}/{key}" for slot in ("m", "v") for key in canonical_shapes(SPEC)]
        )


def test_momentum_keeps_its_velocity_and_sgd_or_step_0_need_no_slots(tmp_path):
    config = replace(CONFIG, recipe=Recipe(optimizer="momentum", lr=0.1))
    folder, model = _save(tmp_path / "momentum", config=config, optimizer="momentum")
    slots = load_checkpoint(folder).optimizer.slots
    assert list(slots) == ["velocity"]
    np.testing.assert_array_equal(
        slots["velocity"]["nin_block_1.0.weight"], model.slots["velocity"]["nin_block_1.0.weight"]
    )
    config = replace(CONFIG, recipe=Recipe.book())
    folder, _ = _save(tmp_path / "sgd", config=config, optimizer="sgd")
    assert load_checkpoint(folder).optimizer.slots == {}
    # before the first update Adam has no moments to save
    step0 = Trainer(step=0)
    step0.slots = {}
    (tmp_path / "step0").mkdir()
    folder = save_checkpoint(tmp_path / "step0", Backend, step0, CONFIG, _state(0))
    checkpoint = load_checkpoint(folder)
    assert checkpoint.optimizer == replace(checkpoint.optimizer, optimizer="adam", step=0, slots={})


def test_a_new_checkpoint_replaces_the_older_ones_and_leftovers(tmp_path):
    _save(tmp_path, step=5)
    root = tmp_path / DIRECTORY
    (root / ".step-000000007.tmp-123").mkdir()  # a write killed half-way
    (root / "notes").mkdir()  # not ours: kept
    newest, model = _save(tmp_path, step=9)
    assert sorted(path.name for path in root.iterdir()) == ["notes", "step-000000009"]
    assert checkpoint_folders(tmp_path) == [newest]
    # the same position again (a resumed run stopped where it started): swapped, not doubled
    again, other = (
        save_checkpoint(tmp_path, Backend, Trainer(seed=7, step=9), CONFIG, _state(9)),
        None,
    )
    assert again == newest and sorted(path.name for path in root.iterdir()) == ["notes", again.name]
    np.testing.assert_array_equal(
        load_checkpoint(again).weights["nin_block_1.0.weight"],
        Trainer(seed=7).net.weights["nin_block_1.0.weight"],
    )
    assert other is None and model is not None


def test_a_failed_write_leaves_the_previous_checkpoint_and_no_debris(tmp_path):
    previous, _ = _save(tmp_path, step=5)

    class FullDisk(Backend):
        @staticmethod
        def save_native(net, path):
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(tmp_path, FullDisk, Trainer(step=9), CONFIG, _state(9))
    assert list((tmp_path / DIRECTORY).iterdir()) == [previous]
    assert load_checkpoint(previous).state.step == 5


def test_a_failed_swap_at_the_same_position_puts_the_previous_checkpoint_back(
    tmp_path, monkeypatch
):
    """The same position again is two renames: the old copy out of the way, the new one in.
    If the second fails, the old copy must not stay under its hidden name (which no reader
    looks at and the next save removes)."""
    previous, _ = _save(tmp_path, step=9)
    real_replace = os.replace  # not dataclasses.replace, which this module imports

    def replace_but_not_the_new_copy(source, target):
        if ".tmp-" in Path(source).name:
            raise OSError(errno.EIO, "Input/output error")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace_but_not_the_new_copy)
    with pytest.raises(OSError, match="Input/output error"):
        save_checkpoint(tmp_path, Backend, Trainer(seed=7, step=9), CONFIG, _state(9))
    assert list((tmp_path / DIRECTORY).iterdir()) == [previous]
    np.testing.assert_array_equal(
        latest_checkpoint(tmp_path).weights["nin_block_1.0.weight"],
        Trainer(seed=0).net.weights["nin_block_1.0.weight"],
    )


def test_a_leftover_temporary_folder_of_the_same_name_is_cleared_first(tmp_path):
    # a process killed mid-save whose pid this one has again (pids repeat, in containers often)
    leftover = tmp_path / DIRECTORY / f".step-000000005.tmp-{os.getpid()}"
    leftover.mkdir(parents=True)
    (leftover / "debris").write_bytes(b"half a file")
    folder, _ = _save(tmp_path, step=5)
    assert sorted(path.name for path in folder.iterdir()) == ["model.native", STATE_FILE]
    assert list((tmp_path / DIRECTORY).iterdir()) == [folder]


def _unlink_refusing(name: str):
    """os.unlink, except for files called `name` (as if another user owned them)."""
    unlink = os.unlink

    def refusing(path, *args, **kwargs):
        if os.path.basename(path) == name:
            raise PermissionError(errno.EPERM, "Operation not permitted", path)
        return unlink(path, *args, **kwargs)

    return refusing


def test_debris_that_resists_removal_does_not_fail_a_save(tmp_path, monkeypatch):
    """Once the new checkpoint is in place the save has succeeded: an older checkpoint, or the
    copy a save at the same position swapped out, that cannot be removed stays behind for the
    next save to try again."""
    older, _ = _save(tmp_path, step=5)
    (older / "locked").touch()
    monkeypatch.setattr(os, "unlink", _unlink_refusing("locked"))
    newest, _ = _save(tmp_path, step=9)
    assert latest_checkpoint(tmp_path).path == newest
    (newest / "locked").touch()
    again = save_checkpoint(tmp_path, Backend, Trainer(seed=7, step=9), CONFIG, _state(9))
    assert again == newest and latest_checkpoint(tmp_path).path == again
    assert (again / "model.native").read_bytes() == Trainer(seed=7).net.native


def test_an_interrupt_after_the_rename_is_passed_on_with_the_new_checkpoint_in_place(
    tmp_path, monkeypatch
):
    previous, _ = _save(tmp_path, step=5)
    root = tmp_path / DIRECTORY

    def fsync_interrupted_at_the_root(path):
        if Path(path) == root:
            raise KeyboardInterrupt  # Ctrl-C during the last fsync
        fsync_directory(path)

    monkeypatch.setattr("common.tools.checkpoint.fsync_directory", fsync_interrupted_at_the_root)
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path, step=9)
    assert checkpoint_folders(tmp_path) == [previous, root / "step-000000009"]
    assert latest_checkpoint(tmp_path).state.step == 9


def _listing(root: Path) -> dict[str, list[str]]:
    return {entry.name: sorted(path.name for path in entry.iterdir()) for entry in root.iterdir()}


def test_a_save_passes_its_failpoints_in_order_with_the_folder_as_each_promises(
    tmp_path, monkeypatch
):
    """common.platform.failpoints: the points a save reaches (as NIN_MARKERS records them for
    the tests that kill a run there), and what a kill at each would leave."""
    _save(tmp_path, step=5)
    root = tmp_path / DIRECTORY
    seen = []
    reached = failpoints.reached

    def recording(point, step):
        seen.append((point, step, _listing(root)))
        reached(point, step)

    monkeypatch.setattr(failpoints, "reached", recording)
    monkeypatch.setenv("NIN_MARKERS", str(tmp_path / "markers"))
    _save(tmp_path, step=9)
    files = ["model.native", STATE_FILE]
    older, temporary = {"step-000000005": files}, f".step-000000009.tmp-{os.getpid()}"
    assert seen == [
        ("save:begun", 9, {**older, temporary: []}),
        ("save:state", 9, {**older, temporary: [STATE_FILE]}),
        ("save:native", 9, {**older, temporary: files}),
        ("save:renamed", 9, {**older, "step-000000009": files}),
        ("save:done", 9, {"step-000000009": files}),
    ]
    assert (tmp_path / "markers").read_text().splitlines() == [
        "save:begun 9",
        "save:state 9",
        "save:native 9",
        "save:renamed 9",
        "save:done 9",
    ]
    # the same position again: the copy swapped out is gone as soon as the new one is in
    seen.clear()
    save_checkpoint(tmp_path, Backend, Trainer(seed=7, step=9), CONFIG, _state(9))
    assert seen[3] == ("save:renamed", 9, {"step-000000009": files})


def test_folders_are_listed_oldest_first_and_only_complete_ones(tmp_path):
    assert checkpoint_folders(tmp_path) == []
    root = tmp_path / DIRECTORY
    for name in ("step-000000010", "step-000000002", ".step-000000011.tmp-1", "step-12", "other"):
        (root / name).mkdir(parents=True)
    (root / "step-000000003").write_text("a file, not a folder")
    assert [path.name for path in checkpoint_folders(tmp_path)] == [
        "step-000000002",
        "step-000000010",
    ]


def test_the_latest_loadable_checkpoint_is_the_one_resumed(tmp_path):
    older, _ = _save(tmp_path, step=5)
    newer = older.with_name("step-000000009")
    shutil.copytree(older, newer)
    (newer / STATE_FILE).write_bytes(b"damaged")
    assert latest_checkpoint(tmp_path).path == older  # the newest is damaged: the one before
    assert latest_checkpoint(tmp_path).state.step == 5
    (older / STATE_FILE).unlink()
    with pytest.raises(
        CheckpointError,
        match=rf"no usable checkpoint in {tmp_path}: .*step-000000009/state.npz is not a NiN",
    ):
        latest_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="is not a run folder"):
        latest_checkpoint(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="has no checkpoint to resume from"):
        latest_checkpoint(tmp_path / "empty")


BAD_ENTRY = "damaged header: bad optimizer or backend entry$"


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda h: h.update(format="something-else"), "is not a NiN checkpoint"),
        (lambda h: h.pop("format"), "is not a NiN checkpoint"),
        (lambda h: h.update(format_version=2), "format version 2; this nin reads version 1"),
        (lambda h: h.pop("spec"), "damaged header: 'spec'"),
        (lambda h: h.update(config={"epochs": 0}), "damaged header: epochs"),
        (lambda h: h.update(state={**h["state"], "step": -1}), "damaged header: a position"),
        (lambda h: h.update(optimizer={"name": "rmsprop", "step": 5}), BAD_ENTRY),
        (lambda h: h.update(optimizer={"name": "adam", "step": -1}), BAD_ENTRY),
        (lambda h: h.update(optimizer={"name": "adam", "step": 5.0}), BAD_ENTRY),
        (lambda h: h.update(optimizer={"name": "adam", "step": "5"}), BAD_ENTRY),
        (lambda h: h.update(optimizer={"name": "adam", "step": True}), BAD_ENTRY),
        (lambda h: h.update(backend=3), BAD_ENTRY),
        (lambda h: h.pop("backend"), "damaged header: 'backend'"),
        (
            lambda h: h.update(optimizer=None),
            "damaged header: 'NoneType' object is not subscriptable",
        ),
        (lambda h: h.update(optimizer={"name": "adam", "step": 4}), "position and its optimizer"),
        (lambda h: h.update(optimizer={"name": "sgd", "step": 5}), "position and its optimizer"),
        (
            lambda h: h.update(spec={**h["spec"], "num_classes": 9}),
            "its config and its spec disagree",
        ),
        # the position against the config: 4 batches an epoch, 3 epochs
        (
            lambda h: _moved(h, 1, 1, 6),
            r"position \(epoch 1, batch 1, step 6\) does not add up: 4 batch\(es\) per epoch "
            "make step 5",
        ),
        (lambda h: _moved(h, 1, 4, 8), "beyond an epoch of its config's 4 batch"),
        (lambda h: _moved(h, 0, 9, 9), "beyond an epoch of its config's 4 batch"),
        (lambda h: _moved(h, 4, 0, 16), r"past its config's 3 epoch\(s\)"),
        (lambda h: _moved(h, 3, 1, 13), r"past its config's 3 epoch\(s\)"),
        (
            lambda h: _moved(h, 10**400, 0, 10**400 * 4, history=1),
            r"the history holds 1 epoch\(s\), but the position says 10000000000",
        ),
        # the history against the position, and every metric typed and finite
        (
            lambda h: _moved(h, 1, 1, 5, history=2),
            r"the history holds 2 epoch\(s\), but the position says 1 are complete",
        ),
        (lambda h: _moved(h, 2, 1, 9, history=0), r"the history holds 0 epoch\(s\)"),
        (
            lambda h: h["state"]["history"][0].update(epoch=2),
            r"the history's epochs are numbered \[2\], expected 1 to 1",
        ),
        (
            lambda h: h["state"]["history"][0].update(train_loss=math.nan),
            "history entry 1: train_loss must be a finite number, got nan",
        ),
        (
            lambda h: h["state"]["history"][0].update(test_accuracy="x"),
            "history entry 1: test_accuracy must be a finite number, got 'x'",
        ),
        (
            lambda h: h["state"]["history"][0].update(seconds=10**400),
            "history entry 1: seconds must be a finite number, got 1000",
        ),
        (
            lambda h: h["state"]["history"][0].update(classes_predicted=8.5),
            "history entry 1: classes_predicted must be a whole number >= 0, got 8.5",
        ),
        (
            lambda h: h["state"]["points"][0].update(train_accuracy=math.inf),
            "logged point 1: train_accuracy must be a finite number, got inf",
        ),
        (
            lambda h: h["state"]["points"][0].update(step=True),
            "logged point 1: step must be a whole number >= 0, got True",
        ),
        (
            lambda h: h["state"]["epoch_sums"].update(seen=32.0),
            r"the running sums must be finite numbers \(the counts whole",
        ),
        # numbers too large for a float
        (
            lambda h: h["state"].update(epoch_seconds=10**400),
            "damaged header: the running sums must be finite numbers",
        ),
        (
            lambda h: h["state"]["point_sums"].update(loss=-(10**400)),
            "damaged header: the running sums must be finite numbers",
        ),
        (
            lambda h: h["config"]["recipe"].update(lr=10**400),
            "damaged header: learning rate must be a positive number, got 1000",
        ),
        (
            lambda h: h["config"]["recipe"].update(adam_epsilon=10**400),
            "damaged header: adam_epsilon must be a positive number",
        ),
        # the rest of the header
        (lambda h: h.update(versions=[1, 2]), r"damaged header: versions must be an object"),
        (lambda h: h.update(versions="torch 2"), r"damaged header: versions must be an object"),
        # a long problem is cut to 200 characters
        (
            lambda h: h["spec"]["layers"][0].update(type="x" * 500),
            r"damaged header: unknown layer type 'x{180}$",
        ),
        (
            lambda h: h.update(format_version="9" * 5000),
            "has checkpoint format version '9999",
        ),
        (
            lambda h: h["spec"].update(layers=[{"type": "Flatten"}, *h["spec"]["layers"]]),
            "damaged header: a spec cannot put ConvBlock after Flatten",
        ),
    ],
)
def test_a_damaged_or_inconsistent_header_is_one_line(tmp_path, change, message):
    folder, _ = _save(tmp_path)
    _rewrite(folder, change_header=change)
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(folder)
    assert "\n" not in str(info.value) and str(folder) in str(info.value)
    assert len(str(info.value)) < len(str(folder)) + 400  # whatever the header holds
    assert isinstance(info.value, WeightsError)  # one family of errors for every file we read


def _moved(header: dict, epoch: int, batch: int, step: int, history: int | None = None) -> None:
    """The header's position (and Adam's step with it) moved, with `history` entries (one
    per epoch done by default)."""
    header["state"].update(epoch=epoch, batch=batch, step=step)
    entry = header["state"]["history"][0]
    count = epoch if history is None else history
    header["state"]["history"] = [{**entry, "epoch": n + 1} for n in range(count)]
    header["optimizer"]["step"] = step


def test_positions_a_run_reaches_load(tmp_path):
    """Each epoch is ceil(60 / 16) = 4 batches, the last one partial; the last checkpoint of
    a run is at the end of its last epoch."""
    for step in (0, 1, 3, 4, 5, 11, 12):
        folder, _ = _save(tmp_path / str(step), step=step)
        state = load_checkpoint(folder).state
        assert (state.epoch, state.batch, state.step) == (*divmod(step, BATCHES), step)
        assert [metrics.epoch for metrics in state.history] == list(range(1, state.epoch + 1))


def test_a_header_nested_too_deeply_is_one_line(tmp_path):
    folder, _ = _save(tmp_path)
    with np.load(folder / STATE_FILE) as archive:
        arrays = {key: archive[key] for key in archive.files if key != "__header__"}
    with open(folder / STATE_FILE, "wb") as file:
        np.savez(file, __header__=np.array("[" * 100_000 + "]" * 100_000), **arrays)
    with pytest.raises(CheckpointError, match="has a damaged header: it is nested too deeply$"):
        load_checkpoint(folder)


def test_missing_or_poisoned_arrays_are_refused(tmp_path):
    folder, _ = _save(tmp_path)
    _rewrite(folder, change_arrays=lambda arrays: arrays.pop("optimizer/v/nin_block_2.0.bias"))
    with pytest.raises(
        CheckpointError,
        match=r"incomplete: 1 array\(s\) missing, e.g. optimizer/v/nin_block_2.0.bias",
    ):
        load_checkpoint(folder)

    def poison(arrays):
        arrays["optimizer/m/nin_block_1.0.weight"] = (
            arrays["optimizer/m/nin_block_1.0.weight"] * np.nan
        )

    folder, _ = _save(tmp_path / "nan")
    _rewrite(folder, change_arrays=poison)
    with pytest.raises(
        CheckpointError, match="optimizer/m/nin_block_1.0.weight holds NaN or infinite"
    ):
        load_checkpoint(folder)
    with pytest.raises(CheckpointError, match=r"is not a checkpoint \(state.npz is missing\)"):
        load_checkpoint(tmp_path / "nowhere")


def test_resuming_checks_the_backend_and_every_field_but_the_allowed_ones(tmp_path):
    checkpoint = load_checkpoint(_save(tmp_path)[0])
    check_resumable(checkpoint, backend="torch", config=CONFIG)
    check_resumable(checkpoint)
    with pytest.raises(CheckpointError, match="is a torch checkpoint, not mxnet's"):
        check_resumable(checkpoint, backend="mxnet", config=CONFIG)
    longer = replace(CONFIG, epochs=5, data_dir="/elsewhere")  # where the data is: no difference
    check_resumable(checkpoint, config=longer, may_change=("epochs",))
    with pytest.raises(CheckpointError, match="was made for another run: epochs 3 instead of 5$"):
        check_resumable(checkpoint, config=longer)
    other = replace(CONFIG, epochs=5, recipe=Recipe(optimizer="adam", lr=0.5))
    with pytest.raises(CheckpointError, match="epochs 3 instead of 5; lr 0.001 instead of 0.5"):
        check_resumable(checkpoint, config=other)
    with pytest.raises(CheckpointError, match="^.*lr 0.001 instead of 0.5$"):
        check_resumable(checkpoint, config=other, may_change=("epochs",))
