"""`nin exercise`: every exercise and the readers' questions run end to end (two steps per
run here; docs/exercises.md is the real run), and each section says what it measured."""

from __future__ import annotations

from common.cli import main
from common.tools.exercises import catalogue

from .conftest import get_backend


def test_every_exercise_runs_and_writes_its_section(fashion_mnist, tmp_path, capsys):
    get_backend("torch")
    doc = tmp_path / "docs" / "exercises.md"
    # The machinery is the sweep's (tested in every backend); one backend keeps this short.
    assert (
        main(
            [
                "exercise",
                "all",
                "--smoke",
                "--seeds",
                "0",
                "--backends",
                "torch",
                "--out",
                str(tmp_path / "runs"),
                "--doc",
                str(doc),
            ]
        )
        == 0
    )
    text = doc.read_text()
    for exercise in catalogue().values():
        assert f"## {exercise.title}" in text
        for variant in exercise.variants:
            assert f"| {variant.label} " in text, variant.label
    for question in ("stay at 2.303", "blow up to NaN", "6,400 inputs", "pooling outside"):
        assert question in text
    assert "256 x 5 x 5 = 6,400 inputs" in text
    images = sorted(path.name for path in (doc.parent / "exercises").iterdir())
    assert images == [
        "exercise-1.png",
        "exercise-2.png",
        "exercise-4.png",
        "exercise-5.png",
        "exercise-dropout.png",
        "plateau.png",
    ]
    # Finished runs are kept: the same command again trains nothing.
    capsys.readouterr()
    assert (
        main(
            [
                "exercise",
                "2",
                "--smoke",
                "--seeds",
                "0",
                "--backends",
                "torch",
                "--out",
                str(tmp_path / "runs"),
            ]
        )
        == 0
    )
    assert "epoch 1" not in capsys.readouterr().out
