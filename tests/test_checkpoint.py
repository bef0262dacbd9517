"""Never lose a run: exact resume, clean stops on signals, SIGKILL mid-step and mid-save, NaN,
a full disk at each stage of a save, cross-framework continuation and checkpoint validation."""

from __future__ import annotations

import errno
import json
import shutil
import signal
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from common.backends import BACKENDS
from common.cli import main
from common.tools.checkpoint import (
    CheckpointError,
    check_resumable,
    checkpoint_folders,
    latest_checkpoint,
    load_checkpoint,
)
from common.tools.config import PRESETS
from common.tools.runs import load_result, train_run
from common.training import TrainingStopped
from common.weights import load_weights

from .conftest import get_backend
from .processes import FIRST_STEP_STARTUPS, WHOLE_RUN_STARTUPS, Child, bound, markers
from .test_parity import LOSS_RTOL as LOCKSTEP_LOSS_RTOL
from .test_parity import UPDATE_RTOL as LOCKSTEP_UPDATE_RTOL

NAMES = list(BACKENDS)

# 128 images in batches of 16: 8 steps an epoch, 2 epochs; a short warm-up so it learns. What
# these tests check is where a run stops and how it resumes, which is counted in steps: small
# batches make each step cheap, and the module trains many runs in every framework.
CONFIG = replace(
    PRESETS["quick"],
    epochs=2,
    train_limit=128,
    test_limit=64,
    batch_size=16,
    recipe=replace(PRESETS["quick"].recipe, warmup_steps=4),
)
CLI_FLAGS = [
    "--epochs",
    "2",
    "--train-limit",
    "128",
    "--test-limit",
    "64",
    "--batch-size",
    "16",
    "--warmup-steps",
    "4",
    "--no-progress",
]
QUIET = {"log": lambda *args: None, "progress": False}


class StopAfter:
    """A stop request after `calls` checks (one check per step, one per epoch end)."""

    def __init__(self, calls: int):
        self.calls, self.count = calls, 0

    def __call__(self):
        self.count += 1
        return "SIGINT" if self.count == self.calls else None


def weights_of(run_dir: Path) -> dict:
    return load_weights(run_dir / "weights.npz").arrays


def timeless(run_dir: Path) -> list[dict]:
    """metrics.jsonl without the wall-clock fields."""
    import json

    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [
        {
            key: value
            for key, value in record.items()
            if key not in ("seconds", "examples_per_second")
        }
        for record in records
    ]


def assert_same_run(run_dir: Path, reference: Path) -> None:
    expected = weights_of(reference)
    for key, value in weights_of(run_dir).items():
        np.testing.assert_array_equal(value, expected[key], err_msg=key)
    assert timeless(run_dir) == timeless(reference)


@pytest.fixture(scope="session")
def straight(tmp_path_factory, fashion_mnist):
    """backend -> the folder of an uninterrupted run of CONFIG, trained once per module."""
    root, done = tmp_path_factory.mktemp("straight"), {}

    def run(name: str) -> Path:
        if name not in done:
            get_backend(name)
            train_run(name, CONFIG, root / name, **QUIET)
            done[name] = root / name
        return done[name]

    return run


# -- exact resume -------------------------------------------------------------------------------


@pytest.mark.parametrize("stop_after", [5, 8], ids=["mid-epoch", "epoch-end"])
def test_stopped_and_resumed_equals_uninterrupted_bitwise(backend, straight, tmp_path, stop_after):
    reference = straight(backend.BACKEND)
    out = tmp_path / "run"
    with pytest.raises(TrainingStopped) as stopped:
        train_run(backend.BACKEND, CONFIG, out, stop_requested=StopAfter(stop_after), **QUIET)
    assert stopped.value.state.step == stop_after
    assert not (out / "summary.json").exists()
    checkpoint = latest_checkpoint(out)
    assert checkpoint.state.step == stop_after and checkpoint.backend == backend.BACKEND
    assert checkpoint.optimizer.step == stop_after and set(checkpoint.optimizer.slots) == {"m", "v"}
    train_run(backend.BACKEND, CONFIG, out, resume=checkpoint, **QUIET)
    assert_same_run(out, reference)


def test_a_checkpoint_holds_everything_it_promises(backend, straight):
    run_dir = straight(backend.BACKEND)
    folders = checkpoint_folders(run_dir)
    assert [folder.name for folder in folders] == ["step-000000016"]  # older ones removed
    checkpoint = load_checkpoint(folders[0])
    assert checkpoint.config == CONFIG and checkpoint.spec == CONFIG.spec()
    assert (checkpoint.state.epoch, checkpoint.state.batch) == (2, 0)
    assert [m.epoch for m in checkpoint.state.history] == [1, 2]
    assert len(checkpoint.state.points) == 16
    assert (folders[0] / f"model{backend.NATIVE_SUFFIX}").is_file()
    net = backend.build_nin(CONFIG.spec(), seed=99)
    backend.load_native(net, folders[0] / f"model{backend.NATIVE_SUFFIX}")
    for key, value in backend.get_weights(net).items():
        np.testing.assert_array_equal(value, checkpoint.weights[key])
    np.testing.assert_array_equal(
        checkpoint.weights["nin_block_1.0.weight"], weights_of(run_dir)["nin_block_1.0.weight"]
    )


def test_resume_to_more_epochs_continues_the_run(backend, straight, tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            ["train", "--backend", backend.BACKEND, "--out", str(out), *CLI_FLAGS, "--epochs", "1"]
        )
        == 0
    )
    assert main(["train", "--resume", str(out), "--no-progress"]) == 2
    assert "is complete" in capsys.readouterr().err
    assert main(["train", "--resume", str(out), "--epochs", "2", "--no-progress"]) == 0
    result = load_result(out)
    assert [m.epoch for m in result.history] == [1, 2] and result.summary["resumed"]
    assert latest_checkpoint(out).state.step == 16


def test_a_run_killed_after_its_last_checkpoint_resumes_to_its_end(backend, straight, tmp_path):
    """Killed between the last epoch's checkpoint and the summary: not complete, so
    --resume trains nothing and writes what is missing."""
    out = tmp_path / "run"
    assert main(["train", "--backend", backend.BACKEND, "--out", str(out), *CLI_FLAGS]) == 0
    for name in ("summary.json", "weights.npz", "curves.png"):
        (out / name).unlink()
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert load_result(out).summary["resumed"]
    assert_same_run(out, straight(backend.BACKEND))


# -- signals and SIGKILL in a real `nin train` process ------------------------------------------


def _train_command(backend_name: str, out: Path, *extra: str) -> list[str]:
    """`nin train` of CONFIG, or its resumption once `out` holds a checkpoint."""
    if checkpoint_folders(out):
        return ["train", "--resume", str(out), "--no-progress", *extra]
    return ["train", "--backend", backend_name, "--out", str(out), *CLI_FLAGS, *extra]


@pytest.mark.parametrize("signal_name, status", [("SIGINT", 130), ("SIGTERM", 143)])
def test_signal_stops_after_a_step_writes_a_checkpoint_and_says_how_to_resume(
    backend, straight, tmp_path, signal_name, status
):
    """No per-step checkpoints: the one this leaves is the signal's own."""
    out, marks = tmp_path / "run", tmp_path / "markers"
    with Child.nin(*_train_command(backend.BACKEND, out), env={"NIN_MARKERS": str(marks)}) as run:
        assert run.wait_until(
            lambda: ("step", 1) in markers(marks),
            bound(backend.BACKEND, FIRST_STEP_STARTUPS),
            "first step",
        ), run.stderr
        run.process.send_signal(getattr(signal, signal_name))
        assert run.finish(bound(backend.BACKEND, WHOLE_RUN_STARTUPS)) == status, run.stderr
    assert f"stopped by {signal_name}" in run.stderr and "Traceback" not in run.stderr
    assert f"resume with: nin train --resume {out}" in run.stderr
    last_step = max(step for point, step in markers(marks) if point == "step")
    saved = [step for point, step in markers(marks) if point == "save:done"]
    # The signal came within the first step; the epoch (8 steps) cannot have ended since.
    assert saved == [last_step] and last_step < 8, markers(marks)
    assert latest_checkpoint(out).state.step == last_step
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert_same_run(out, straight(backend.BACKEND))


# Where each SIGKILL lands (common.platform.failpoints), in the order of one run, and the step
# of the newest complete checkpoint it must leave (one is written after every step).
KILLS = [
    ("step", 3, 2),  # the update applied in memory, the step neither counted nor saved
    ("save:state", 6, 5),  # the new checkpoint half written, in its temporary folder
    ("save:native", 9, 8),  # written and fsynced, not yet renamed into place
    ("save:renamed", 12, 12),  # in place, the previous one not yet removed
]


def test_sigkill_mid_step_and_mid_save_loses_nothing(backend, straight, tmp_path):
    """SIGKILL `nin train` (checkpointing every step) in the middle of a step and at each
    stage of a save, one after another; the markers the run leaves prove where each kill
    landed, the newest complete checkpoint always loads, and the run resumed after the last
    kill ends bit for bit where the uninterrupted run ends."""
    out = tmp_path / "run"
    for point, step, newest in KILLS:
        marks = tmp_path / f"markers-{point}"
        env = {"NIN_MARKERS": str(marks), "NIN_FAULT": f"{point}@{step}"}
        command = _train_command(backend.BACKEND, out, "--checkpoint-every", "1")
        with Child.nin(*command, env=env) as run:
            status = run.finish(bound(backend.BACKEND, WHOLE_RUN_STARTUPS))
        assert status == -signal.SIGKILL, run.stderr
        assert markers(marks)[-1] == (point, step), "the kill landed elsewhere"
        assert latest_checkpoint(out).state.step == newest
    with Child.nin(*_train_command(backend.BACKEND, out)) as run:
        assert run.finish(bound(backend.BACKEND, WHOLE_RUN_STARTUPS)) == 0, run.stderr
    assert_same_run(out, straight(backend.BACKEND))


# -- NaN, full disk, validation -----------------------------------------------------------------


def test_nan_stops_and_leaves_the_last_good_checkpoint_resumable(backend, tmp_path, capsys):
    out = tmp_path / "run"
    momentum = replace(CONFIG, recipe=replace(CONFIG.recipe, optimizer="momentum", lr=0.01))
    with pytest.raises(TrainingStopped):
        train_run(backend.BACKEND, momentum, out, stop_requested=StopAfter(8), **QUIET)
    good = latest_checkpoint(out)
    # Continued at a rate that blows up (momentum at lr 50 reaches NaN within a few steps):
    assert main(["train", "--resume", str(out), "--lr", "50", "--no-progress"]) == 1
    assert "lower learning rate" in capsys.readouterr().err
    after = latest_checkpoint(out)  # untouched, and it loads: finite and complete
    assert after.path == good.path and after.state.step == 8
    assert main(["train", "--resume", str(out), "--lr", "0.005", "--no-progress"]) == 0
    result = load_result(out)
    assert result.summary["config"]["recipe"]["lr"] == 0.005
    assert all(np.isfinite(value).all() for value in weights_of(out).values())


def _fails_in_save(original, call: int):
    """`original`, failing with a full disk on its `call`-th call made by save_checkpoint."""
    from common.tools.checkpoint import save_checkpoint

    calls = 0

    def full_disk(*args, **kwargs):
        nonlocal calls
        if sys._getframe(1).f_code is save_checkpoint.__code__:
            calls += 1
            if calls == call:
                raise OSError(errno.ENOSPC, "No space left on device")
        return original(*args, **kwargs)

    return full_disk


def test_a_failed_save_keeps_the_previous_checkpoint(backend, tmp_path, monkeypatch):
    """A full disk at each stage of a save in turn: the save fails, and the previous
    checkpoint stays the only one, complete, with nothing else left in the folder."""
    import os

    import common.tools.checkpoint as checkpoint_module

    stages = {  # stage -> (object, attribute, which of its calls in one save)
        "writing the state file": (np, "savez", 1),
        "fsyncing the state file": (os, "fsync", 1),
        "writing the native file": (backend, "save_native", 1),
        "fsyncing the native file": (os, "fsync", 2),
        "fsyncing the folder": (checkpoint_module, "fsync_directory", 1),
        "renaming it into place": (os, "replace", 1),
    }
    stopped = tmp_path / "stopped"
    with pytest.raises(TrainingStopped):
        train_run(backend.BACKEND, CONFIG, stopped, stop_requested=StopAfter(3), **QUIET)
    for stage, (owner, attribute, call) in stages.items():
        out = tmp_path / stage.replace(" ", "-")
        shutil.copytree(stopped, out)
        before = latest_checkpoint(out)
        monkeypatch.setattr(owner, attribute, _fails_in_save(getattr(owner, attribute), call))
        with pytest.raises(OSError, match="No space left"):
            train_run(backend.BACKEND, CONFIG, out, resume=before, checkpoint_every=1, **QUIET)
        monkeypatch.undo()
        after = latest_checkpoint(out)
        assert after.path == before.path and after.state.step == 3, stage
        assert [entry.name for entry in (out / "checkpoints").iterdir()] == [before.path.name], (
            stage
        )


def test_checkpoints_are_validated_with_one_line_errors(backend, straight, tmp_path, capsys):
    run_dir = straight(backend.BACKEND)
    checkpoint = latest_checkpoint(run_dir)
    other = next(name for name in NAMES if name != backend.BACKEND)
    with pytest.raises(CheckpointError, match=f"is a {backend.BACKEND} checkpoint"):
        check_resumable(checkpoint, backend=other)
    with pytest.raises(CheckpointError, match="batch_size 16 instead of 32"):
        check_resumable(checkpoint, config=replace(CONFIG, batch_size=32))
    with pytest.raises(CheckpointError, match="model"):
        check_resumable(checkpoint, config=replace(CONFIG, spec_options={"num_1x1": 1}))

    for argv, message in [
        (["train", "--resume", str(run_dir), "--batch-size", "32"], "--batch-size cannot change"),
        (["train", "--resume", str(run_dir), "--num-1x1", "1"], "--num-1x1 cannot change"),
        (
            ["train", "--resume", str(run_dir), "--backend", other, "--epochs", "3"],
            f"is a {backend.BACKEND} checkpoint",
        ),
        (["train", "--resume", str(run_dir), "--epochs", "1"], "already past epoch 1"),
        (["train", "--resume", str(tmp_path / "nowhere")], "does not exist"),
        (["train", "--resume", str(tmp_path)], "has no checkpoint"),
    ]:
        assert main(argv) == 2, argv
        error = capsys.readouterr().err
        assert message in error and error.count("\n") == 1, (argv, error)

    damaged = tmp_path / "damaged"
    (damaged / "checkpoints").mkdir(parents=True)
    copy = damaged / "checkpoints" / checkpoint.path.name
    copy.mkdir()
    state = (checkpoint.path / "state.npz").read_bytes()
    (copy / "state.npz").write_bytes(state[: len(state) // 3])
    assert main(["train", "--resume", str(damaged)]) == 2
    error = capsys.readouterr().err
    assert "no usable checkpoint" in error and error.count("\n") == 1


# -- cross-framework continuation ---------------------------------------------------------------

# Dropout off: the only randomness a backend adds is its dropout masks. In batches of 64 (512
# images, 8 steps an epoch): the tolerances below were measured at that batch size.
NO_DROPOUT = replace(
    CONFIG,
    train_limit=512,
    test_limit=256,
    batch_size=64,
    spec_options={**CONFIG.spec_options, "dropout": 0.0},
)
# Measured over the 6 ordered pairs (8 Adam steps after the switch): losses within 2e-6
# relative; per tensor, |w_B - w_A| / |update_A| (Frobenius) under 1e-2, as in the lock-step
# test (elements whose gradient is at rounding level step by up to one lr in either direction).
LOSS_RTOL = 1e-4
UPDATE_RTOL = 3e-2


@pytest.fixture(scope="session")
def halfway(tmp_path_factory, fashion_mnist):
    """backend -> a checkpoint of NO_DROPOUT stopped after epoch 1 of 2 in that backend."""
    root, done = tmp_path_factory.mktemp("halfway"), {}

    def checkpoint(name: str):
        if name not in done:
            get_backend(name)
            with pytest.raises(TrainingStopped):
                train_run(name, NO_DROPOUT, root / name, stop_requested=StopAfter(8), **QUIET)
            done[name] = latest_checkpoint(root / name)
        return done[name]

    return checkpoint


@pytest.fixture(scope="session")
def continued(tmp_path_factory, halfway):
    """backend -> the folder and result of its halfway checkpoint continued in its own
    framework: what every other framework's continuation is held to, run once per source."""
    root, done = tmp_path_factory.mktemp("continued"), {}

    def run(name: str):
        if name not in done:
            folder = root / name
            done[name] = folder, train_run(name, NO_DROPOUT, folder, resume=halfway(name), **QUIET)
        return done[name]

    return run


@pytest.mark.parametrize(
    "source, target", [(a, b) for a in NAMES for b in NAMES if a != b], ids=lambda name: name
)
def test_a_checkpoint_continues_in_another_framework(halfway, continued, tmp_path, source, target):
    get_backend(target)
    checkpoint = halfway(source)
    start = checkpoint.weights
    same_folder, same = continued(source)
    other = train_run(target, NO_DROPOUT, tmp_path / "other", resume=checkpoint, **QUIET)
    expected_losses = [point.train_loss for point in same.points[8:]]
    losses = [point.train_loss for point in other.points[8:]]
    np.testing.assert_allclose(losses, expected_losses, rtol=LOSS_RTOL)
    expected, got = weights_of(same_folder), weights_of(tmp_path / "other")
    for key, value in expected.items():
        update = np.linalg.norm(value - start[key])
        assert update > 0, f"{key} did not move"
        miss = np.linalg.norm(got[key] - value) / update
        assert miss <= UPDATE_RTOL, f"{key}: {target} continued {source}'s run {miss:.1e} apart"
    # The continuation through the interchange is a real one: the moments moved too.
    assert other.summary["resumed"] and other.summary["backend"] == target


# -- a checkpoint of an older nin_jax ---------------------------------------------------------

# Written by nin_jax when its layers and optimizers were hand-written, before Flax and optax,
# with what that code continued them to (tests/data/jax-before-optax/README.md).
BEFORE_OPTAX = Path(__file__).parent / "data" / "jax-before-optax"


@pytest.mark.parametrize("optimizer", ["adam", "momentum"])
def test_a_jax_checkpoint_from_before_optax_resumes(optimizer, fashion_mnist, tmp_path):
    """Its native file loads, and the run continues with the losses and weights the old code
    reached, within the lock-step tolerances: the optimizer's slots (Adam's moments and step
    count; Keras's momentum velocity) are read as that code stored them."""
    backend = get_backend("jax")
    folder = BEFORE_OPTAX / optimizer
    checkpoint = load_checkpoint(folder / "step-000000005")
    assert checkpoint.backend == backend.BACKEND and checkpoint.optimizer.slots
    net = backend.build_nin(checkpoint.spec, seed=1)
    backend.load_native(net, folder / "step-000000005" / f"model{backend.NATIVE_SUFFIX}")
    for key, value in backend.get_weights(net).items():
        np.testing.assert_array_equal(value, checkpoint.weights[key], err_msg=key)

    result = train_run(
        backend.BACKEND, checkpoint.config, tmp_path / "run", resume=checkpoint, **QUIET
    )
    expected = json.loads((folder / "continued-losses.json").read_text())["losses"]
    losses = [point.train_loss for point in result.points[checkpoint.state.step :]]
    np.testing.assert_allclose(losses, expected, rtol=LOCKSTEP_LOSS_RTOL)
    reached = load_weights(folder / "continued-weights.npz").arrays
    for key, value in weights_of(tmp_path / "run").items():
        update = np.linalg.norm(reached[key] - checkpoint.weights[key])
        miss = np.linalg.norm(value - reached[key]) / update
        assert miss <= LOCKSTEP_UPDATE_RTOL, f"{key}: {miss:.1e} of the old code's update apart"


# -- interrupted comparisons and sweeps continue where they stopped ------------------------------


def _stamps(folder: Path) -> dict:
    return {path: path.stat().st_mtime_ns for path in folder.rglob("summary.json")}


def test_an_interrupted_compare_continues_with_resume(tmp_path, fashion_mnist, capsys):
    from common.tools.compare import compare

    for name in NAMES:
        get_backend(name)
    out = tmp_path / "cmp"
    out.mkdir()
    with pytest.raises(TrainingStopped):  # torch finishes, mxnet stops after 3 steps
        compare(CONFIG, list(NAMES), out, stop_requested=StopAfter(16 + 3), **QUIET)
    finished = _stamps(out)
    assert list(finished) == [out / "torch" / "summary.json"]
    assert latest_checkpoint(out / "mxnet").state.step == 3
    assert main(["compare", "--resume", str(out), "--no-progress"]) == 0
    assert _stamps(out)[out / "torch" / "summary.json"] == finished[out / "torch" / "summary.json"]
    assert load_result(out / "mxnet").summary["resumed"]
    assert (out / "report.md").is_file()
    capsys.readouterr()


def test_an_interrupted_sweep_continues_when_run_again(tmp_path, fashion_mnist, capsys):
    from common.tools.sweep import Variant, run_sweep

    get_backend("torch")
    out = tmp_path / "sweep"
    variants = [Variant("tiny", CONFIG)]
    with pytest.raises(TrainingStopped):  # seed 0 finishes, seed 1 stops after 5 steps
        run_sweep(variants, ["torch"], [0, 1], out, stop_requested=StopAfter(16 + 5), **QUIET)
    done = _stamps(out)
    assert len(done) == 1 and checkpoint_folders(out / "tiny" / "torch" / "seed-1")
    report = run_sweep(variants, ["torch"], [0, 1], out, **QUIET)
    assert _stamps(out)[next(iter(done))] == next(iter(done.values()))
    assert "| tiny    | PyTorch   |    2 |" in report.read_text()
    # a finished run keeps its weights but not its checkpoint
    assert not checkpoint_folders(out / "tiny" / "torch" / "seed-0")
    # More seeds extend it: the finished runs stay as they are.
    report = run_sweep(variants, ["torch"], [0, 1, 2], out, **QUIET)
    assert _stamps(out)[next(iter(done))] == next(iter(done.values()))
    assert "| tiny    | PyTorch   |    3 |" in report.read_text()
    changed = [Variant("tiny", CONFIG.replace(seed=0, epochs=3))]
    with pytest.raises(ValueError, match="holds a sweep with other settings for 'tiny'"):
        run_sweep(changed, ["torch"], [0, 1, 2], out, **QUIET)
