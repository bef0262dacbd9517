"""``nin bench``: training and inference throughput of each backend on synthetic batches.

Speed lives here, never in timed tests. Each figure is the median of `steps` timed steps
after two warm-up steps (graph building, oneDNN kernel selection and allocator growth).
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from .backends import FRAMEWORK_LABELS, load_backend
from .report import format_table
from .resources import format_bytes, resources
from .runs import machine_description
from .training import Recipe

WARMUP_STEPS = 2


def _median_seconds(step, steps: int) -> float:
    for _ in range(WARMUP_STEPS):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_backend(name: str, size: int, batch_size: int, steps: int) -> dict:
    backend = load_backend(name)
    net = backend.build_nin()
    trainer = backend.Trainer(net, Recipe())
    rng = np.random.default_rng(0)
    images = rng.random((batch_size, 1, size, size), dtype=np.float32)
    labels = rng.integers(0, 10, batch_size).astype(np.int64)
    train = _median_seconds(lambda: trainer.train_step(images, labels), steps)
    infer = _median_seconds(lambda: trainer.predict(images), steps)
    return {"backend": name, "device": trainer.device, "size": size, "batch": batch_size,
            "train_per_s": batch_size / train, "infer_per_s": batch_size / infer}


def run_bench(backends: list[str], *, sizes: list[int], batch_size: int, steps: int,
              out: str | None = None) -> str:
    rows = []
    for size in sizes:
        estimate = resources("nin", size, batch_size)
        memory = format_bytes(estimate.training_memory("adam").total)
        for name in backends:
            result = bench_backend(name, size, batch_size, steps)
            rows.append([FRAMEWORK_LABELS[name], result["device"], size, batch_size,
                         round(result["train_per_s"], 1), round(result["infer_per_s"], 1), memory])
            print(format_table(["framework", "device", "size", "batch", "train img/s",
                                "infer img/s", "train memory (est., Adam)"], rows[-1:]).splitlines()[-1],
                  flush=True)
    table = format_table(["framework", "device", "size", "batch", "train img/s", "infer img/s",
                          "train memory (est., Adam)"], rows, markdown=True)
    text = (f"NiN throughput, median of {steps} steps after {WARMUP_STEPS} warm-up steps; "
            f"{machine_description()}.\n\n{table}\n")
    print()
    print(text)
    if out:
        with open(out, "w") as file:
            file.write(text)
    return text
