"""Data-parallel training: 2 workers on loopback take the steps of 1 process at the same
global batch, in every framework's engine; a dead worker stops the launch, and the run
resumes from its checkpoint on 2 workers again."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from common import distributed
from common.backends import BACKENDS
from common.cli import build_parser, main
from common.cli.workers import command_line
from common.platform import launcher
from common.platform.engines import TFConfig
from common.tools.checkpoint import checkpoint_folders, latest_checkpoint
from common.tools.config import RunConfig
from common.weights import init_weights, load_weights

from .processes import FIRST_STEP_STARTUPS, STOPPING_STARTUPS, Child, bound, markers

# 105 images at a global batch of 32: 3 full steps, then 9 images split 4 + 5, so the uneven
# last shard is covered. Plain momentum at a constant rate: an update that summed instead of
# averaged the workers' gradients, or weighted the uneven shards equally, would show in the
# weights (Adam's step hides a gradient's scale). The clip norm lies inside the gradient
# norms of these steps (0.16-0.39), so some steps are clipped on the global gradient.
EQUALITY = [
    "--epochs",
    "1",
    "--train-limit",
    "105",
    "--test-limit",
    "32",
    "--dropout",
    "0",
    "--optimizer",
    "momentum",
    "--lr",
    "0.02",
    "--warmup-steps",
    "0",
    "--schedule",
    "constant",
    "--weight-decay",
    "0.001",
    "--clip-norm",
    "0.25",
    "--no-progress",
]
# Measured (2026-12-02, this 2-core machine): the losses agree to 1.2e-7 in all three
# frameworks (2.4e-7 when first measured); the weights to 4.7e-7 in PyTorch, whose oneDNN
# convolutions pick other kernels for a batch of 16 than of 32, and to 7.5e-9 in MXNet and
# Keras, while training moves them by 1.1e-2. The README states these bounds, so they are the
# tolerances. Summing instead of averaging two workers' gradients would be off by about half
# of the distance moved.
LOSS_TOLERANCE = 2.4e-7
WEIGHT_TOLERANCE = 5e-7


def losses(run_dir: Path) -> list[float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [record["train_loss"] for record in records if record["kind"] == "step"]


def assert_same_training(
    run: Path, reference: Path, loss_tolerance=LOSS_TOLERANCE, weight_tolerance=WEIGHT_TOLERANCE
) -> None:
    assert (
        json.loads((run / "config.json").read_text())["config"]
        == json.loads((reference / "config.json").read_text())["config"]
    )
    np.testing.assert_allclose(losses(run), losses(reference), rtol=0, atol=loss_tolerance)
    config = RunConfig.from_dict(json.loads((reference / "config.json").read_text())["config"])
    start = init_weights(config.spec(), config.seed)
    ours, theirs = (load_weights(path / "weights.npz").arrays for path in (run, reference))
    moved = max(float(np.abs(theirs[name] - start[name]).max()) for name in theirs)
    differ = max(float(np.abs(ours[name] - theirs[name]).max()) for name in theirs)
    assert moved > 1e-3  # the test can fail: training moved the weights
    assert differ <= weight_tolerance, f"weights differ by {differ:.2e} (moved {moved:.2e})"


def test_two_workers_take_the_steps_of_one_process(backend, fashion_mnist, tmp_path, capfd):
    two, one = tmp_path / "two", tmp_path / "one"
    assert (
        main(
            [
                "train",
                "--backend",
                backend.BACKEND,
                "--out",
                str(two),
                "--workers",
                "2",
                "--batch-size",
                "16",
                *EQUALITY,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                "--backend",
                backend.BACKEND,
                "--out",
                str(one),
                "--batch-size",
                "32",
                *EQUALITY,
            ]
        )
        == 0
    )
    assert "batch 16 per worker, 32 in all" in capfd.readouterr().out
    assert_same_training(two, one)
    summary = json.loads((two / "summary.json").read_text())
    assert summary["workers"] == 2 and summary["config"]["batch_size"] == 32
    assert {"worker-0.log", "worker-1.log"} <= {path.name for path in (two / "logs").iterdir()}


def test_a_dead_worker_stops_the_launch_and_the_run_resumes(fashion_mnist, tmp_path):
    """SIGKILL one worker of a running MXNet launch (whose scheduler and server would wait for
    it for ever): every process is gone at once, with one line naming the worker; then the run
    resumes on 2 workers and ends where an uninterrupted run ends."""
    from .conftest import get_backend

    get_backend("mxnet")
    run, reference = tmp_path / "run", tmp_path / "reference"
    flags = [*EQUALITY, "--train-limit", "1024"]  # 32 steps: plenty of time to kill one
    command = ["train", "--backend", "mxnet", "--out", str(run), "--workers", "2"]
    with Child.nin(*command, "--batch-size", "16", "--checkpoint-every", "1", *flags) as launch:
        assert launch.wait_until(
            lambda: "started" in launch.stdout, bound("mxnet", FIRST_STEP_STARTUPS), "start"
        ), launch.stderr
        started = next(line for line in launch.stdout.splitlines() if line.startswith("started"))
        pids = {
            name: int(pid)
            for name, pid in re.findall(r"(?:started |, )([\w ]+?) \(pid (\d+)\)", started)
        }
        assert set(pids) == {"worker 0", "worker 1", "MXNet scheduler", "MXNet server"}
        assert launch.wait_until(
            lambda: checkpoint_folders(run),
            bound("mxnet", FIRST_STEP_STARTUPS, processes=len(pids)),
            "first checkpoint",
        ), launch.stderr
        os.kill(pids["worker 1"], signal.SIGKILL)
        # The launcher notices a death within its poll, then stops the rest: no start-up, but
        # a process that has not exited on SIGTERM is SIGKILLed only after the launcher's grace.
        stopping = launcher.GRACE_SECONDS + bound("mxnet", STOPPING_STARTUPS)
        assert launch.finish(stopping) == 1, launch.stderr
    error = launch.stderr
    message = [line for line in error.splitlines() if line.startswith("nin train:")]
    assert message == [
        f"nin train: error: worker 1 (pid {pids['worker 1']}) was killed by "
        "SIGKILL; the other processes were stopped"
    ], error
    assert f"resume with: nin train --resume {run} --workers 2" in error
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not (run / "summary.json").exists()

    assert main(["train", "--resume", str(run), "--workers", "2", "--no-progress"]) == 0
    assert json.loads((run / "summary.json").read_text())["resumed"]
    assert (
        main(
            [
                "train",
                "--backend",
                "mxnet",
                "--out",
                str(reference),
                "--workers",
                "2",
                "--batch-size",
                "16",
                *flags,
            ]
        )
        == 0
    )
    # The same computations in the same order (a sum of two is the same either way round).
    assert_same_training(run, reference, loss_tolerance=0, weight_tolerance=0)


# A worker of MXNet's parameter server that first puts the server in multi-precision mode, in
# which it keeps and sums every key that is not float32 in float32: what MXNet 1.9.1's server
# does by chance, as it never initialises that flag. Each worker writes its sums.
PS_SUMS_WORKER = """
import json, sys
sys.path.insert(0, {root!r})
from nin_mxnet.distributed import Group
group = Group()
if group.rank == 0:
    group.kvstore._send_command_to_servers(1, "")  # kSetMultiPrecision
group.kvstore._barrier()
values = [1 + 2.0**-40 * (group.rank + 1), 5 / 21 * (group.rank + 1), group.rank]
with open({out!r} + f"/rank-{{group.rank}}.json", "w") as file:
    json.dump([float(value).hex() for value in group.sum_over_workers(values)], file)
group.leave()
"""


def test_mxnet_sums_over_workers_are_float64_whatever_the_server_keeps(tmp_path):
    from .conftest import get_backend

    get_backend("mxnet")
    engine = BACKENDS["mxnet"].engine
    code = PS_SUMS_WORKER.format(root=str(Path(__file__).parent.parent), out=str(tmp_path))
    processes = launcher.launch_processes(
        engine, 2, [sys.executable, "-c", code], launcher.pick_ports(1), tmp_path
    )
    assert launcher.run_processes(processes, log=lambda line: None) == 0
    # float64 sums, in rank order: in float32, 2 + 3 * 2**-40 would be 2.
    expected = [(1 + 2.0**-40) + (1 + 2.0**-39), 5 / 21 + 10 / 21, 1.0]
    for rank in range(2):
        sums = json.loads((tmp_path / f"rank-{rank}.json").read_text())
        assert [float.fromhex(value) for value in sums] == expected


def test_ctrl_c_stops_every_worker_after_one_step_and_resumes_on_another_count(
    backend, fashion_mnist, tmp_path
):
    """SIGINT to the launcher (what Ctrl-C sends) stops both workers after the same step with
    one checkpoint; the run then resumes in one process at the same global batch and ends
    where a one-process run ends."""
    run, reference, marks = tmp_path / "run", tmp_path / "reference", tmp_path / "markers"
    flags = EQUALITY  # 4 steps; the signal comes within the first
    command = ["train", "--backend", backend.BACKEND, "--out", str(run), "--workers", "2"]
    engine = BACKENDS[backend.BACKEND].engine  # with MXNet's scheduler and server too
    processes = 2 + len(engine.helpers(2, list(range(engine.ports_needed(2)))))
    env = {"NIN_MARKERS": str(marks)}
    with Child.nin(*command, "--batch-size", "16", *flags, env=env) as launch:
        assert launch.wait_until(
            lambda: ("step", 1) in markers(marks),
            bound(backend.BACKEND, FIRST_STEP_STARTUPS, processes),
            "first step",
        ), launch.stderr
        launch.process.send_signal(signal.SIGINT)
        status = launch.finish(bound(backend.BACKEND, FIRST_STEP_STARTUPS, processes))
    assert status == 130, launch.stderr
    assert f"resume with: nin train --resume {run} --workers 2" in launch.stderr
    steps = [step for point, step in markers(marks) if point == "step"]
    last = max(steps)
    assert steps.count(last) == 2, "the workers stopped after different steps"
    assert latest_checkpoint(run).state.step == last < 4
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0  # one process
    assert json.loads((run / "summary.json").read_text())["resumed"]
    one = ["train", "--backend", backend.BACKEND, "--out", str(reference), "--batch-size", "32"]
    assert main([*one, *flags]) == 0
    assert_same_training(run, reference)


# -- the launcher, with plain Python processes ---------------------------------------------------


def sleeper(name: str, tmp_path: Path, code: str = "import time; time.sleep(60)", **options):
    return launcher.Process(
        name, [sys.executable, "-c", code], {}, tmp_path / f"{name}.log", **options
    )


def test_a_killed_process_stops_the_others_at_once(tmp_path, capsys):
    dying = "import os, signal, time; time.sleep(0.5); os.kill(os.getpid(), signal.SIGKILL)"
    processes = [
        sleeper("worker 0", tmp_path),
        sleeper("worker 1", tmp_path, dying),
        sleeper("helper", tmp_path, worker=False),
    ]
    start = time.monotonic()
    with pytest.raises(
        launcher.WorkerFailed,
        match=r"^worker 1 \(pid \d+\) was killed by "
        r"SIGKILL; the other processes",
    ):
        launcher.run_processes(processes, grace=2)
    assert time.monotonic() - start < 10
    assert all(process.status is not None for process in processes)
    assert "started worker 0 (pid" in capsys.readouterr().out


def test_workers_that_fail_alike_report_their_own_line(tmp_path):
    failing = "import sys; print('nin train: error: no such data', file=sys.stderr); sys.exit(2)"
    processes = [sleeper(f"worker {rank}", tmp_path, failing) for rank in range(2)]
    with pytest.raises(launcher.WorkerFailed) as failure:
        launcher.run_processes(processes, log=lambda line: None)
    assert failure.value.status == 2
    assert re.fullmatch(
        r"worker [01] \(pid \d+\) exited with status 2: no such data", str(failure.value)
    )


def test_a_taken_port_is_one_line_and_exit_2(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind((launcher.LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert (
            main(
                [
                    "train",
                    "--backend",
                    "torch",
                    "--workers",
                    "2",
                    "--port",
                    str(port),
                    "--out",
                    str(tmp_path / "run"),
                ]
            )
            == 2
        )
    error = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is taken" in error and error.count("\n") == 1


# -- the arithmetic and the conventions ----------------------------------------------------------


@pytest.mark.parametrize("count, workers", [(32, 2), (9, 2), (7, 3), (5, 5), (64, 4)])
def test_shards_cover_a_batch_once_and_evenly(count, workers):
    parts = [distributed.shard(count, rank, workers) for rank in range(workers)]
    covered = np.concatenate([np.arange(count)[part] for part in parts])
    assert covered.tolist() == list(range(count))
    sizes = [part.stop - part.start for part in parts]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


def test_batches_that_cannot_be_shared_are_refused():
    distributed.check_shardable(105, 32, 2)
    with pytest.raises(ValueError, match="does not split into 3 equal"):
        distributed.check_shardable(128, 32, 3)
    with pytest.raises(ValueError, match="last batch holds 1 example"):
        distributed.check_shardable(129, 32, 2)


def test_mxnet_workers_push_their_float64_sums_exactly_as_float32_pieces():
    from .conftest import get_backend

    get_backend("mxnet")
    from nin_mxnet.distributed import join_float64, split_float64

    rng = np.random.default_rng(0)
    values = np.concatenate(
        [
            rng.standard_normal(10_000) * 10.0 ** rng.integers(-20, 30, 10_000),
            rng.random(100).astype(np.float32) * (5 / 21),  # a loss share of an uneven shard
            [0.0, 1.0, 3.0, 2**24 + 1, 2.302423357963562],
        ]
    )
    pieces = split_float64(values)
    assert pieces.dtype == np.float32
    assert np.array_equal(join_float64(pieces), values)
    for value in (np.inf, -np.inf, 1e300):
        assert join_float64(split_float64([value]))[0] == np.sign(value) * np.inf
    assert np.isnan(join_float64(split_float64([np.nan]))[0])


def test_workers_draw_their_own_dropout_masks():
    seeds = [distributed.worker_dropout_seed(1234, rank) for rank in range(4)]
    assert seeds[0] == 1234 and len(set(seeds)) == 4


@pytest.mark.parametrize("backend_name", list(BACKENDS))
def test_launch_variables_say_how_many_workers(backend_name):
    engine = BACKENDS[backend_name].engine
    environment = engine.environment(1, 3, [29500, 29501, 29502])
    assert engine.launched_workers(environment) == 3
    assert engine.launched_workers({}) is None


def test_malformed_launch_variables_are_a_clear_error():
    with pytest.raises(ValueError, match="TF_CONFIG launch variables are malformed"):
        TFConfig().launched_workers({"TF_CONFIG": "{not json"})


def test_the_os_picks_distinct_free_ports():
    ports = launcher.pick_ports(3)
    assert len(set(ports)) == 3 and launcher.pick_ports(3, first=ports[0])[0] == ports[0]


@pytest.mark.parametrize(
    "argv",
    [
        [
            "--backend",
            "tf",
            "--out",
            "runs/x",
            "--batch-size",
            "16",
            "--lr",
            "0.001",
            "--linear-head",
            "--no-standardize",
            "--no-progress",
            "--train-limit",
            "0",
        ],
        ["--resume", "runs/x", "--epochs", "3", "--book-head", "--augment", "--clip-norm", "0.5"],
    ],
)
def test_workers_run_the_command_the_launcher_was_given(argv):
    parser = build_parser()
    given = parser.parse_args(["train", *argv, "--workers", "2", "--port", "29500"])
    again = parser.parse_args(["train", *command_line(given.parser, given)])
    assert {**vars(again), "workers": 2, "port": 29500, "parser": None} == {
        **vars(given),
        "parser": None,
    }
