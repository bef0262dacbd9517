"""The `nin` command: every artifact it promises, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common.cli import main
from common.weights import load_weights

from .conftest import get_backend

TINY = ["--epochs", "1", "--train-limit", "256", "--test-limit", "128", "--batch-size", "64",
        "--no-progress"]


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
    assert {"train_loss", "train_accuracy", "test_accuracy", "examples_per_second",
            "seconds"} <= set(metrics[0])
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
    assert main(["predict", "--backend", backend.BACKEND, "--weights", str(native),
                 "--n", "12", "--out", str(out)]) == 0
    assert is_png(out)
    import matplotlib.image

    assert matplotlib.image.imread(out).ndim == 3
    assert "of 12 right" in capsys.readouterr().out
    # nothing the user had is replaced without --force
    assert main(["predict", "--backend", backend.BACKEND, "--weights", str(native),
                 "--out", str(out)]) == 2


def test_convert_to_every_other_backend_keeps_predictions(backend, train_run, fashion_mnist,
                                                          tmp_path):
    from common.backends import BACKENDS
    from common.data import to_model_input

    images = to_model_input(fashion_mnist.test_images[:64], 67)
    source_net = backend.build_nin()
    backend.load_native(source_net, train_run / f"model{backend.NATIVE_SUFFIX}")
    expected = backend.predict_logits(source_net, images)
    for name in BACKENDS:
        target = get_backend(name)
        out = tmp_path / f"converted{target.NATIVE_SUFFIX}"
        assert main(["convert", "--from", backend.BACKEND, "--to", name,
                     str(train_run / f"model{backend.NATIVE_SUFFIX}"), str(out)]) == 0
        net = target.build_nin(seed=99)
        target.load_native(net, out)
        np.testing.assert_allclose(target.predict_logits(net, images), expected,
                                   rtol=1e-4, atol=1e-4)
        out.unlink()


def test_compare_writes_the_report(fashion_mnist, tmp_path, capsys):
    for name in ("torch", "mxnet", "tf"):
        get_backend(name)
    out = tmp_path / "cmp"
    assert main(["compare", "--out", str(out), *TINY]) == 0
    assert f"report: {out / 'report.md'}" in capsys.readouterr().out
    report = (out / "report.md").read_text()
    for heading in ("## Results", "## Trained in one framework, evaluated in another",
                    "## Layer shapes", "## Parameters", "## NiN vs AlexNet", "## Versions"):
        assert heading in report
    assert is_png(out / "curves.png")
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["backends"]) == {"torch", "mxnet", "tf"}
    for name in ("torch", "mxnet", "tf"):
        assert (out / name / "weights.npz").is_file() and is_png(out / name / "curves.png")
        row = summary["cross_accuracy"][name]
        # a model scores the same whichever framework runs it
        assert max(row.values()) - min(row.values()) <= 1 / 128 + 1e-9, row
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


@pytest.mark.parametrize("argv, message", [
    (["shapes", "--backend", "caffe"], "unknown backend 'caffe'"),
    (["shapes", "--size", "50", "--backend", "torch"], "at least 67x67"),
    (["train", "--backend", "torch", "--lr", "-1"], "--lr: must be a positive number"),
    (["train", "--backend", "torch", "--size", "40"], "at least 67x67"),
    (["train", "--backend", "torch", "--train-limit", "70000"], "--train-limit: must be between"),
    (["train", "--backend", "torch", "--data-dir", "/nonexistent"], "/nonexistent"),
    (["predict", "--backend", "torch", "--weights", "/nonexistent.pt"], "does not exist"),
    (["convert", "--from", "torch", "--to", "tf", "/nonexistent.npz", "x.weights.h5"],
     "does not exist"),
    (["resources", "--size", "10"], "at least 67x67"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1 and "Traceback" not in error


def test_console_script_reports_errors_without_traceback(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    result = subprocess.run([sys.executable, "-m", "common.cli", "predict", "--backend", "torch",
                             "--weights", str(bad)], capture_output=True, text=True)
    assert result.returncode == 2
    assert "not a NiN weights file" in result.stderr and "Traceback" not in result.stderr


def test_bench_prints_and_writes_a_table(backend, tmp_path, capsys):
    out = tmp_path / "bench.md"
    assert main(["bench", "--backends", backend.BACKEND, "--size", "67", "--batch", "4",
                 "--steps", "1", "--out", str(out)]) == 0
    table = out.read_text()
    assert "| framework" in table and "train img/s" in table
    row = next(line for line in table.splitlines() if line.startswith("| ") and "67" in line)
    train_rate, infer_rate = (float(cell) for cell in row.strip("|").split("|")[4:6])
    assert train_rate > 0 and infer_rate > 0
