"""The `nin` command: every artifact it promises, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common.backends import BACKENDS
from common.cli import main
from common.tools.runs import load_result, read_metrics
from common.training import EpochMetrics, StepMetrics
from common.weights import load_weights

from .conftest import get_backend
from .processes import WHOLE_RUN_STARTUPS, bound

TINY = [
    "--epochs",
    "1",
    "--train-limit",
    "256",
    "--test-limit",
    "128",
    "--batch-size",
    "64",
    "--no-progress",
]


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def train_run(backend, fashion_mnist, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"train-{backend.BACKEND}") / "run"
    assert main(["train", "--backend", backend.BACKEND, "--out", str(out), *TINY]) == 0
    return out


def test_train_writes_every_artifact(backend, train_run):
    records = [json.loads(line) for line in (train_run / "metrics.jsonl").read_text().splitlines()]
    metrics = [record for record in records if record["kind"] == "epoch"]
    assert [m["epoch"] for m in metrics] == [1]
    points = [record for record in records if record["kind"] == "step"]
    assert [point["step"] for point in points] == [1, 2, 3, 4]  # 256 images, batch 64
    assert {
        "train_loss",
        "train_accuracy",
        "test_accuracy",
        "examples_per_second",
        "seconds",
    } <= set(metrics[0])
    assert is_png(train_run / "curves.png")
    summary = json.loads((train_run / "summary.json").read_text())
    assert summary["backend"] == backend.BACKEND and summary["final"] == metrics[-1]
    assert summary["config"]["train_limit"] == 256 and summary["device"]
    assert summary["versions"]["numpy"] == np.__version__
    assert (train_run / f"model{backend.NATIVE_SUFFIX}").is_file()
    assert load_weights(train_run / "weights.npz").metadata["framework"] == backend.BACKEND


def test_predict_writes_a_readable_png(backend, train_run, capsys):
    out = train_run / "grid.png"
    native = train_run / f"model{backend.NATIVE_SUFFIX}"
    assert (
        main(
            [
                "predict",
                "--backend",
                backend.BACKEND,
                "--weights",
                str(native),
                "--n",
                "12",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert is_png(out)
    import matplotlib.image

    assert matplotlib.image.imread(out).ndim == 3
    assert "of 12 right" in capsys.readouterr().out
    # nothing the user had is replaced without --force
    assert (
        main(["predict", "--backend", backend.BACKEND, "--weights", str(native), "--out", str(out)])
        == 2
    )


def test_convert_to_every_other_backend_keeps_predictions(
    backend, train_run, fashion_mnist, tmp_path
):
    from common.backends import BACKENDS
    from common.data import to_model_input

    images = to_model_input(fashion_mnist.test_images[:64], 67)
    source_net = backend.build_nin()
    backend.load_native(source_net, train_run / f"model{backend.NATIVE_SUFFIX}")
    expected = backend.predict_logits(source_net, images)
    for name in BACKENDS:
        target = get_backend(name)
        out = tmp_path / f"converted{target.NATIVE_SUFFIX}"
        assert (
            main(
                [
                    "convert",
                    "--from",
                    backend.BACKEND,
                    "--to",
                    name,
                    str(train_run / f"model{backend.NATIVE_SUFFIX}"),
                    str(out),
                ]
            )
            == 0
        )
        net = target.build_nin(seed=99)
        target.load_native(net, out)
        np.testing.assert_allclose(
            target.predict_logits(net, images), expected, rtol=1e-4, atol=1e-4
        )
        out.unlink()


def test_convert_to_and_from_the_interchange_npz(backend, train_run, tmp_path, capsys):
    native = train_run / f"model{backend.NATIVE_SUFFIX}"
    npz = tmp_path / "out.npz"
    assert (
        main(["convert", "--from", backend.BACKEND, "--to", backend.BACKEND, str(native), str(npz)])
        == 0
    )
    exported = load_weights(npz)
    assert exported.metadata["framework"] == backend.BACKEND
    back = tmp_path / f"back{backend.NATIVE_SUFFIX}"
    assert (
        main(["convert", "--from", backend.BACKEND, "--to", backend.BACKEND, str(npz), str(back)])
        == 0
    )
    net = backend.build_nin(seed=7)
    backend.load_native(net, back)
    original = load_weights(train_run / "weights.npz").arrays
    for key, value in backend.get_weights(net).items():
        np.testing.assert_array_equal(value, original[key])
    assert (
        main(
            [
                "convert",
                "--from",
                backend.BACKEND,
                "--to",
                backend.BACKEND,
                str(train_run),
                str(tmp_path / "from-folder.npz"),
            ]
        )
        == 0
    )  # a run folder works too
    capsys.readouterr()


def test_compare_writes_the_report(fashion_mnist, tmp_path, capsys):
    for name in BACKENDS:
        get_backend(name)
    out = tmp_path / "cmp"
    assert main(["compare", "--out", str(out), *TINY]) == 0
    assert f"report: {out / 'report.md'}" in capsys.readouterr().out
    report = (out / "report.md").read_text()
    for heading in (
        "## Results",
        "## Trained in one framework, evaluated in another",
        "## Layer shapes",
        "## Parameters",
        "## NiN vs AlexNet",
        "## Versions",
    ):
        assert heading in report
    assert is_png(out / "curves.png")
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["backends"]) == set(BACKENDS)
    for name in BACKENDS:
        assert (out / name / "weights.npz").is_file() and is_png(out / name / "curves.png")
        row = summary["cross_accuracy"][name]
        # a model scores the same whichever framework runs it, to the last image (the README)
        assert set(row) == set(BACKENDS) and len(set(row.values())) == 1, row
    # an existing, non-empty run folder is never overwritten
    assert main(["compare", "--out", str(out), *TINY]) == 2


def test_shapes_and_params_tables(backend, capsys):
    assert main(["shapes", "--backend", backend.BACKEND, "--size", "96", "--batch", "2"]) == 0
    output = capsys.readouterr().out
    assert "(2, 96, 22, 22)" in output and "DISAGREEMENT" not in output
    assert main(["params", "--backend", backend.BACKEND]) == 0
    assert "1,992,166" in capsys.readouterr().out


def test_resources_answers_exercise_3(capsys):
    assert main(["resources", "--in-channels", "3", "--no-bias", "--batch", "1"]) == 0
    output = capsys.readouterr().out
    for count in ("53,280", "745,472", "1,179,648", "34,760"):
        assert count in output
    assert main(["resources", "--model", "alexnet"]) == 0
    assert "46,764,746" in capsys.readouterr().out


A_FILE = Path(__file__)  # an existing file, for outputs placed "under" a file
READ_ONLY = Path("/proc")  # a folder in which nobody, root included, can create anything


@pytest.mark.parametrize(
    "argv, message",
    [
        (["shapes", "--backend", "caffe"], "unknown backend 'caffe'"),
        (["shapes", "--backend", "torch,torch"], "named twice"),
        (["shapes", "--size", "0"], "--size: must be between 1 and 4096"),
        (["params", "--num-1x1", "-1"], "--num-1x1: must be between 0 and 8"),
        (["params", "--model", "alexnet", "--num-1x1", "1"], "does not apply to --model alexnet"),
        (["resources", "--in-channels", "0"], "--in-channels: must be between 1 and 64"),
        (["resources", "--batch", "many"], "--batch: expected a whole number"),
        (["resources", "--dropout", "1.5"], "--dropout: must be in [0, 1)"),
        (["train"], "--backend is required"),
        (["train", "--backend", "torch", "--epochs", "0"], "--epochs: must be between 1"),
        (["train", "--backend", "torch", "--seed", "-3"], "--seed: must be between 0"),
        (["train", "--backend", "torch", "--clip-norm", "nan"], "--clip-norm: must be in"),
        (
            ["train", "--backend", "torch", "--model", "alexnet", "--size", "96"],
            "takes exactly 224x224",
        ),
        (["train", "--backend", "torch", "--out", str(A_FILE / "run")], "is a file, not a folder"),
        (["train", "--backend", "torch", "--out", str(A_FILE)], "is not a folder"),
        (["train", "--backend", "torch", "--out", str(READ_ONLY / "nin-run")], "is not writable"),
        (["compare", "--out", str(A_FILE / "cmp")], "is a file, not a folder"),
        (["compare", "--resume", "/nonexistent-compare"], "not a nin compare folder"),
        (["sweep", "--seeds", "4-0"], "bad seed range"),
        (["sweep", "--seeds", "zero"], "seeds must look like"),
        (["sweep", "--heads", "relu"], "--heads takes linear, book"),
        (["sweep", "--out", str(A_FILE / "sweep")], "is a file, not a folder"),
        (
            ["predict", "--backend", "torch", "--weights", "x.npz", "--n", "0"],
            "--n: must be between",
        ),
        (
            ["predict", "--backend", "torch", "--weights", "x.npz", "--out", str(A_FILE / "p.png")],
            "is a file, not a folder",
        ),
        (
            [
                "predict",
                "--backend",
                "torch",
                "--weights",
                "x.npz",
                "--out",
                str(READ_ONLY / "p.png"),
            ],
            "is not writable",
        ),
        (
            ["convert", "--from", "tf", "--to", "tf", "x.npz", str(A_FILE / "y.npz")],
            "is a file, not a folder",
        ),
        (["convert", "--from", "tf", "--to", "tf", "x.npz", "y.pt"], "saved as *.weights.h5"),
        (["shapes", "--size", "50", "--backend", "torch"], "at least 67x67"),
        (["train", "--backend", "torch", "--lr", "-1"], "--lr: must be a positive number"),
        (["train", "--backend", "torch", "--size", "40"], "at least 67x67"),
        (
            ["train", "--backend", "torch", "--train-limit", "70000"],
            "--train-limit: must be between",
        ),
        (["train", "--backend", "torch", "--data-dir", "/nonexistent"], "/nonexistent"),
        (["predict", "--backend", "torch", "--weights", "/nonexistent.pt"], "does not exist"),
        (
            ["convert", "--from", "tf", "--to", "tf", "/nonexistent.npz", "x.weights.h5"],
            "does not exist",
        ),
        (["resources", "--size", "10"], "at least 67x67"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1 and "Traceback" not in error


def test_a_rejected_run_leaves_nothing_behind(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for argv in (
        ["train", "--backend", "torch", "--size", "40"],
        ["train", "--backend", "torch", "--data-dir", str(tmp_path / "nowhere")],
        ["compare", "--data-dir", str(tmp_path / "nowhere")],
        ["sweep", "--data-dir", str(tmp_path / "nowhere")],
    ):
        assert main(argv) == 2, argv
    assert list(tmp_path.iterdir()) == [], "no runs/ folder may be left behind"
    capsys.readouterr()


_GOOD_METRICS = [
    StepMetrics(step=4, epoch=0.5, train_loss=1.5, train_accuracy=0.4),
    EpochMetrics(1, 1.2, 0.5, 0.7, 900.0, 3.5, classes_predicted=10),
]


def test_a_finished_runs_metrics_read_back_as_written(tmp_path):
    records = [metrics.to_dict() for metrics in _GOOD_METRICS]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert read_metrics(tmp_path / "metrics.jsonl") == ([_GOOD_METRICS[1]], [_GOOD_METRICS[0]])


@pytest.mark.parametrize(
    "line, message",
    [
        ("not json", "Expecting value"),
        ("[1, 2]", 'a record is a JSON object whose "kind" is "epoch" or "step"'),
        ('{"kind": "test"}', 'whose "kind" is "epoch" or "step"'),
        ('{"kind": "epoch", "epoch": 1}', "epoch records have the fields epoch, train_loss,"),
        (
            '{"kind": "step", "step": 9, "epoch": 1, "train_loss": NaN, "train_accuracy": 0.1}',
            "the step record: train_loss must be a finite number, got nan",
        ),
        (
            '{"kind": "step", "step": -9, "epoch": 1, "train_loss": 1, "train_accuracy": 0.1}',
            "the step record: step must be a whole number >= 0, got -9",
        ),
        ("[" * 100_000, "recursion"),
    ],
    ids=["not-json", "not-an-object", "unknown-kind", "missing-fields", "nan", "negative", "deep"],
)
def test_a_damaged_metrics_file_is_one_line_naming_the_line(tmp_path, line, message):
    """A run folder is the user's: `compare --resume` and a sweep read its metrics.jsonl back,
    and an edited or damaged line must be a one-line error (exit 2), not a traceback."""
    good = json.dumps(_GOOD_METRICS[0].to_dict())
    path = tmp_path / "metrics.jsonl"
    path.write_text(f"{good}\n{line}\n{good}\n")
    with pytest.raises(ValueError) as raised:
        read_metrics(path)
    assert str(raised.value).startswith(f"{path}, line 2: "), str(raised.value)[:200]
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_summary_that_is_not_a_runs_is_refused(tmp_path):
    (tmp_path / "summary.json").write_text('["not", "a", "summary"]')
    with pytest.raises(ValueError, match="is not a run's summary"):
        load_result(tmp_path)


def test_a_run_folder_is_new_despite_the_launchers_logs_and_another_workers_probe(tmp_path):
    """The workers of ``nin train --workers N`` check the launcher's folder at the same time;
    one's probe file, there for an instant, is not a file of the run (a CI failure once)."""
    from common.tools.runs import LOGS, PROBE_PREFIX, check_new_run_dir

    out = tmp_path / "run"
    (out / LOGS).mkdir(parents=True)
    (out / f"{PROBE_PREFIX}abc123").touch()
    assert check_new_run_dir(out) == out
    (out / "config.json").touch()
    with pytest.raises(ValueError, match="already exists and is not empty"):
        check_new_run_dir(out)


def test_a_full_disk_is_refused_before_training(tmp_path, monkeypatch, capsys):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 << 20, 9 << 20, 1 << 20))
    out = tmp_path / "run"
    assert main(["train", "--backend", "torch", "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "1 MiB free, a run needs about" in error and error.count("\n") == 1
    assert not out.exists()


def test_predict_refuses_weights_of_another_class_count(tmp_path, capsys):
    from common.spec import make_spec
    from common.weights import init_weights, save_weights

    spec = make_spec("nin", num_classes=100)
    path = save_weights(tmp_path / "cifar100.npz", spec, init_weights(spec, 0))
    assert main(["predict", "--backend", "torch", "--weights", str(path)]) == 2
    assert "does not take Fashion-MNIST" in capsys.readouterr().err


def test_a_framework_that_fails_to_import_is_one_clear_error(monkeypatch, capsys):
    """A framework built for another NumPy raises AttributeError while importing (MXNet 1.9
    does under NumPy 2 unless nin_mxnet first restores the names it reads)."""
    import importlib

    from common import backends

    real = importlib.import_module

    def broken(name, *args, **kwargs):
        if name in (BACKENDS["mxnet"].framework, BACKENDS["mxnet"].package):
            raise AttributeError("module 'numpy' has no attribute 'bool'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(backends.importlib, "import_module", broken)
    assert main(["params", "--backend", "mxnet"]) == 2
    error = capsys.readouterr().err
    assert "mxnet is installed but fails to import (AttributeError" in error
    assert error.count("\n") == 1


def test_core_dependencies_cover_what_every_command_uses():
    """`pip install '.[torch]'` alone must give a working `nin train` (progress bars, plots)."""
    import tomllib

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    assert {"numpy", "tqdm", "matplotlib"} <= set(project["dependencies"])


def test_console_script_reports_errors_without_traceback(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "common.cli",
            "predict",
            "--backend",
            "torch",
            "--weights",
            str(bad),
        ],
        capture_output=True,
        text=True,
        timeout=bound("torch", WHOLE_RUN_STARTUPS),
    )
    assert result.returncode == 2
    assert "not a NiN weights file" in result.stderr and "Traceback" not in result.stderr


def test_bench_measures_throughput_flops_and_mfu(backend, tmp_path, capsys):
    out, rows_path = tmp_path / "bench" / "benchmarks.md", tmp_path / "bench.json"
    assert (
        main(
            [
                "bench",
                "--backends",
                backend.BACKEND,
                "--size",
                "67",
                "--batch",
                "4",
                "--steps",
                "1",
                "--repeats",
                "1",
                "--baseline",
                "--real-data",
                "--onnx",
                "--out",
                str(out),
                "--json",
                str(rows_path),
            ]
        )
        == 0
    )
    assert "fp32 GEMM peak" in capsys.readouterr().out
    rows = json.loads(rows_path.read_text())
    assert {(row["mode"], row["baseline"]) for row in rows} == {
        ("train", True),
        ("infer", True),
        ("train", False),
        ("infer", False),
        ("train-loop", False),
    }
    fields = {
        "backend",
        "mode",
        "size",
        "batch",
        "img_per_s",
        "gflop_per_s",
        "mfu",
        "peak_gflop_per_s",
        "baseline",
    }
    for row in rows:
        assert fields <= set(row) and row["backend"] == backend.BACKEND
        assert row["img_per_s"] > 0 and 0 < row["mfu"] == pytest.approx(
            row["gflop_per_s"] / row["peak_gflop_per_s"]
        )
        forward = 2 * 53_940_520 / 1e9  # twice the MACs of one 67x67 image (nin resources)
        flops = forward * (3 if row["mode"] != "infer" else 1)
        assert row["gflop_per_s"] == pytest.approx(row["img_per_s"] * flops, rel=1e-3)
    loop = next(row for row in rows if row["mode"] == "train-loop")
    assert 0 <= loop["loader_share"] < 1
    text = out.read_text()
    assert "| framework" in text and "fast / baseline" in text
    assert "onnxruntime against each framework" in text and "onnxruntime img/s" in text
    assert is_png(out.with_suffix(".png"))
