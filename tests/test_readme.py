"""The README's figures and transcripts are what the project's commands produce."""

from __future__ import annotations

from pathlib import Path

from common.tools.bench import load_rows, summary_table

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_the_speed_table_is_the_benchmark_run_in_docs():
    """README, "Speed": the table is `summary_table` of docs/benchmarks.json, the run that
    docs/benchmarks.md reports, so a new `nin bench --json` run shows up as a difference."""
    assert summary_table(load_rows(ROOT / "docs" / "benchmarks.json")) in README


def test_the_speed_prose_quotes_the_same_run():
    """README, "Speed": the inference MFUs above 1 and the real loop's share at the small size
    are docs/benchmarks.json's; the H100 figure is docs/gpu.md's table."""
    rows = load_rows(ROOT / "docs" / "benchmarks.json")
    largest, smallest = max(row.size for row in rows), min(row.size for row in rows)
    # The frameworks the prose says train at the peak (their oneDNN convolutions): every one
    # but JAX, which trains "at about a third of it".
    at_peak = {
        row.backend
        for row in rows
        if row.mode == "train-loop" and row.size == largest and not row.baseline
        if not row.busy and row.mfu >= 0.9
    }
    assert len(at_peak) == len({row.backend for row in rows}) - 1
    inference = [
        row.mfu
        for row in rows
        if row.mode == "infer" and row.size == largest and not row.baseline
        if not row.busy and row.backend in at_peak
    ]
    assert f"MFUs of {min(inference):.2f}-{max(inference):.2f} there" in README

    def rate(backend, mode):
        (row,) = [
            row
            for row in rows
            if (row.backend, row.mode, row.size) == (backend, mode, smallest)
            if not row.baseline and not row.busy
        ]
        return row.img_per_s

    shares = [rate(name, "train-loop") / rate(name, "train") for name in {r.backend for r in rows}]
    assert (
        f"it reached {min(shares):.0%}-{max(shares):.0%} of it in this run".replace("%-", "-")
        in README
    )
    assert (
        "| train | fast (channels-last) | 224 | 128 | 9,840 |"
        in (ROOT / "docs" / "gpu.md").read_text()
    )
    assert "PyTorch trains at 9,840 img/s at 224 px, batch 128" in README
