"""ONNX Runtime's speed on each backend's exported NiN (``nin bench --onnx``).

Tools layer.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ..onnx import DEFAULT_OPSET, OnnxModel

WARMUP_RUNS = 2


def _interleaved_medians(functions, runs: int) -> list[float]:
    """Median seconds of each function over `runs` rounds, after warm-up rounds. Each round
    calls every function once, so a busy spell on a shared machine slows all of them alike."""
    for _ in range(WARMUP_RUNS):
        for function in functions:
            function()
    times = [[] for _ in functions]
    for _ in range(runs):
        for function, measured in zip(functions, times):
            start = time.perf_counter()
            function()
            measured.append(time.perf_counter() - start)
    return [statistics.median(measured) for measured in times]


def bench_onnx(
    name: str, size: int, batch_size: int = 64, runs: int = 5, *, opset: int = DEFAULT_OPSET
) -> dict:
    """Inference throughput (images/s) of backend `name` and of onnxruntime running that
    backend's export of the same default NiN, on the same synthetic batch, in turns
    (onnxruntime without spin-waiting, which would slow the framework's next turn)."""
    from ..backends import load_backend

    backend = load_backend(name)
    net = backend.build_nin()
    images = np.random.default_rng(0).random((batch_size, 1, size, size), dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="nin-bench-") as folder:
        model = OnnxModel(
            backend.export_onnx(net, Path(folder) / f"{name}.onnx", opset=opset), spin_wait=False
        )
    framework, runtime = _interleaved_medians(
        [
            lambda: backend.predict_logits(net, images, batch_size),
            lambda: model.predict_logits(images, batch_size),
        ],
        runs,
    )
    return {
        "backend": name,
        "size": size,
        "batch": batch_size,
        "runs": runs,
        "framework_per_s": batch_size / framework,
        "onnxruntime_per_s": batch_size / runtime,
    }


def onnx_bench_table(
    backends: list[str], *, sizes=(67, 224), batch_size: int = 64, runs: int = 5
) -> str:
    """:func:`bench_onnx` for each backend and size, as a Markdown table."""
    from ..backends import FRAMEWORK_LABELS
    from ..report import format_table

    rows = []
    for size in sizes:
        for name in backends:
            result = bench_onnx(name, size, batch_size, runs)
            rows.append(
                [
                    FRAMEWORK_LABELS[name],
                    size,
                    batch_size,
                    round(result["framework_per_s"], 1),
                    round(result["onnxruntime_per_s"], 1),
                    f"{result['onnxruntime_per_s'] / result['framework_per_s']:.2f}x",
                ]
            )
    return format_table(
        [
            "exported from",
            "size",
            "batch",
            "framework img/s",
            "onnxruntime img/s",
            "onnxruntime / framework",
        ],
        rows,
        markdown=True,
    )
