"""``nin bench``: throughput, achieved GFLOP/s and MFU of each backend, measured side by side.

Speed lives here, never in timed tests. Every figure is the median over `repeats` blocks of
`steps` timed steps, after warm-up steps (graph building, oneDNN kernel selection, allocator
growth). MFU (model FLOPs utilisation) is achieved FLOP/s over this machine's fp32 peak,
measured in the same run as the best 2048x2048 matrix product of the installed libraries:
one library's own matmul can reach only a fraction of what the CPU does (on an AMD CPU,
PyTorch's and NumPy's BLAS reach about half of TensorFlow's), and a peak measured with it
would make every MFU look better than it is.

A training image costs three forward passes of FLOPs (forward, and a backward pass of twice
the work), the convention of the MFU literature; the FLOPs are :mod:`common.resources`'
count, which equals ``torch.utils.flop_counter``'s.

:func:`measure_bench` measures into a :class:`BenchResult`; :func:`render_markdown` and
:func:`render_json` turn it into the report, which says only what that run measured, on
which machine, with which versions (findings of one machine belong in docs/benchmarks.md's
hand-written part, after the report's end marker).

Tools layer.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from ..backends import BACKENDS, FRAMEWORK_LABELS, framework_versions, load_backend
from ..platform.files import atomic_write
from ..platform.machine import machine_description
from ..report import format_table
from ..resources import resources

WARMUP_STEPS = 2
GEMM_SIZE = 2048
HEADERS = ["framework", "mode", "path", "size", "batch", "img/s", "GFLOP/s", "MFU", "loader share"]
TRAIN_FLOPS_PER_FORWARD = 3
ONNX_RUNS = 7


@dataclass(frozen=True)
class Row:
    """One measurement; `--json` writes these fields."""

    backend: str
    mode: str  # "train", "infer" or "train-loop" (the real loop on Fashion-MNIST)
    size: int
    batch: int
    img_per_s: float
    gflop_per_s: float
    mfu: float
    peak_gflop_per_s: float
    baseline: bool  # the book's code path instead of the framework's fast one
    busy: bool = False  # measured while another process kept both cores busy
    loader_share: float | None = None  # train-loop only: time waiting for data / loop time
    device: str = "cpu"


def onnx_runs(repeats: int) -> int:
    """Rounds of the onnxruntime comparison: never fewer than ONNX_RUNS."""
    return max(ONNX_RUNS, repeats)


def numpy_gemm_seconds(n: int = GEMM_SIZE, repeats: int = 3) -> float:
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), np.float32), rng.random((n, n), np.float32)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return best


def measure_peak(backends: list[str]) -> dict[str, float]:
    """GFLOP/s of the best 2048^3 fp32 matrix product of NumPy and each backend's framework."""
    flops = 2 * GEMM_SIZE**3
    peaks = {"numpy": flops / numpy_gemm_seconds() / 1e9}
    for name in backends:
        peaks[name] = flops / load_backend(name).gemm_seconds(GEMM_SIZE) / 1e9
    return peaks


def _median_rate(step, batch: int, steps: int, repeats: int) -> float:
    """Images per second: the median over `repeats` blocks of `steps` timed steps."""
    for _ in range(WARMUP_STEPS):
        step()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(batch * steps / (time.perf_counter() - start))
    return statistics.median(rates)


def _flops_per_image(size: int) -> float:
    return resources("nin", size, 1).flops


def _row(
    name, mode, size, batch, rate, peak, baseline, busy=False, loader_share=None, device="cpu"
) -> Row:
    gflops = (
        rate * _flops_per_image(size) * (TRAIN_FLOPS_PER_FORWARD if mode != "infer" else 1) / 1e9
    )
    return Row(
        name,
        mode,
        size,
        batch,
        rate,
        gflops,
        gflops / peak,
        peak,
        baseline,
        busy,
        loader_share,
        device,
    )


def bench_steps(
    name: str,
    size: int,
    batch: int,
    steps: int,
    repeats: int,
    peak: float,
    *,
    baseline: bool = False,
    busy: bool = False,
) -> list[Row]:
    """Training and inference on one synthetic batch, repeated."""
    from ..training import Recipe

    backend = load_backend(name)
    net = backend.build_nin()
    trainer = backend.Trainer(net, Recipe(), fast=not baseline)
    rng = np.random.default_rng(0)
    images = rng.random((batch, 1, size, size), dtype=np.float32)
    labels = rng.integers(0, 10, batch).astype(np.int64)
    train = _median_rate(lambda: trainer.train_step(images, labels), batch, steps, repeats)
    infer = _median_rate(lambda: trainer.predict(images), batch, steps, repeats)
    return [
        _row(name, "train", size, batch, train, peak, baseline, busy, device=trainer.device),
        _row(name, "infer", size, batch, infer, peak, baseline, busy, device=trainer.device),
    ]


def bench_real_loop(name: str, size: int, batch: int, steps: int, repeats: int, peak: float) -> Row:
    """The real training loop (:meth:`common.training.Trainer.fit`) on Fashion-MNIST: what
    the loop adds to the step (data, NaN guard, metrics), and the loader's share of it."""
    from .config import PRESETS

    backend = load_backend(name)
    config = PRESETS["quick"].replace(
        batch_size=batch, size=size, train_limit=batch * steps, test_limit=batch, epochs=1
    )
    train_data, _ = config.loaders()
    trainer = backend.Trainer(backend.build_nin(config.spec()), config.recipe)
    warm_up, _ = config.replace(train_limit=batch * WARMUP_STEPS).loaders()
    trainer.fit(warm_up, epochs=1, progress=False)
    rates, shares = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        trainer.fit(train_data, epochs=1, progress=False)
        seconds = time.perf_counter() - start
        rates.append(batch * steps / seconds)
        shares.append(trainer.data_seconds / seconds)
    return _row(
        name,
        "train-loop",
        size,
        batch,
        statistics.median(rates),
        peak,
        False,
        loader_share=statistics.median(shares),
        device=trainer.device,
    )


def in_fresh_process(function, *args, **kwargs):
    """`function(*args, **kwargs)` in a new Python process, for the book's code path: it runs
    in a process as the book's readers have it, without what this one's fast paths set
    (PyTorch's :func:`common.platform.memory.reuse_freed_memory`)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args, **kwargs).result()


class BusyMachine:
    """Another process keeping every core busy (NumPy matrix products) while it is open."""

    def __enter__(self):
        code = (
            "import numpy as np\na = np.random.rand(1024, 1024).astype('float32')\n"
            "while True:\n    a @ a\n"
        )
        self.process = subprocess.Popen([sys.executable, "-c", code])
        time.sleep(1.0)
        return self

    def __exit__(self, *exc):
        self.process.kill()
        self.process.wait()
        return False


@dataclass(frozen=True)
class BenchResult:
    """What one ``nin bench`` measured, on which machine, with which versions."""

    rows: list[Row]
    peaks: dict[str, float]  # GFLOP/s of each library's 2048^3 matrix product
    backends: list[str]
    steps: int
    repeats: int
    onnx_table: str | None  # `--onnx`: onnx_bench_table's Markdown table
    machine: str
    versions: dict[str, dict[str, str]]  # per backend, framework_versions
    finished: datetime

    @property
    def peak(self) -> float:
        """The peak MFU is measured against: the best of the libraries' matrix products."""
        return max(self.peaks.values())


def run_bench(
    backends: list[str],
    *,
    sizes: list[int],
    batch_size: int,
    steps: int,
    repeats: int = 3,
    baseline: bool = False,
    real_data: bool = False,
    busy: bool = False,
    onnx: bool = False,
    out: str | None = None,
    json_path: str | None = None,
    log=print,
) -> list[Row]:
    """``nin bench``: measure (each row logged as it comes), then write `json_path` and the
    Markdown report `out` (with its chart beside it) if asked; the rows."""
    result = measure_bench(
        backends,
        sizes=sizes,
        batch_size=batch_size,
        steps=steps,
        repeats=repeats,
        baseline=baseline,
        real_data=real_data,
        busy=busy,
        onnx=onnx,
        log=log,
    )
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(render_json(result.rows))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        write_report(result, Path(out))
    return result.rows


def measure_bench(
    backends: list[str],
    *,
    sizes: list[int],
    batch_size: int,
    steps: int,
    repeats: int = 3,
    baseline: bool = False,
    real_data: bool = False,
    busy: bool = False,
    onnx: bool = False,
    log=print,
) -> BenchResult:
    """Every measurement `nin bench`'s flags ask for, logged as it comes."""
    peaks = measure_peak(backends)
    log(
        "fp32 GEMM peak (2048^3): "
        + ", ".join(f"{name} {value:.0f} GFLOP/s" for name, value in peaks.items())
    )
    rows = _measure_rows(
        backends,
        sizes,
        batch_size,
        steps,
        repeats,
        max(peaks.values()),
        baseline=baseline,
        real_data=real_data,
        busy=busy,
        log=log,
    )
    onnx_table = None
    if onnx:
        from .onnx_bench import onnx_bench_table

        onnx_table = onnx_bench_table(
            backends, sizes=sizes, batch_size=batch_size, runs=onnx_runs(repeats)
        )
        log(onnx_table)
    return BenchResult(
        rows,
        peaks,
        list(backends),
        steps,
        repeats,
        onnx_table,
        machine_description(),
        {name: framework_versions(name) for name in backends},
        datetime.now(),
    )


def _measure_rows(
    backends: list[str],
    sizes: list[int],
    batch_size: int,
    steps: int,
    repeats: int,
    peak: float,
    *,
    baseline: bool,
    real_data: bool,
    busy: bool,
    log,
) -> list[Row]:
    rows: list[Row] = []
    line = "{:<21} {:<10} {:<18} {:>4} {:>5} {:>8} {:>7} {:>5} {:>12}"
    log(line.format(*HEADERS))

    def show(new: list[Row]) -> None:
        rows.extend(new)
        for row in new:
            log(line.format(*map(str, _cells(row))))

    for size in sizes:
        for name in backends:
            if baseline:
                show(
                    in_fresh_process(
                        bench_steps, name, size, batch_size, steps, repeats, peak, baseline=True
                    )
                )
            show(bench_steps(name, size, batch_size, steps, repeats, peak))
            if real_data:
                show([bench_real_loop(name, size, batch_size, steps, repeats, peak)])
    if busy:
        with BusyMachine():
            for name in backends:
                show(bench_steps(name, min(sizes), batch_size, steps, repeats, peak, busy=True))
    return rows


def _cells(row: Row) -> list:
    path = "baseline" if row.baseline else ("fast, busy machine" if row.busy else "fast")
    return [
        FRAMEWORK_LABELS[row.backend],
        row.mode,
        path,
        row.size,
        row.batch,
        round(row.img_per_s, 1),
        round(row.gflop_per_s),
        f"{row.mfu:.2f}",
        "-" if row.loader_share is None else f"{row.loader_share:.1%}",
    ]


def speedups(rows: list[Row]) -> list[list]:
    """Fast over baseline, real loop over synthetic step, and inference over training."""
    found = {(row.backend, row.mode, row.size, row.baseline, row.busy): row for row in rows}
    result = []
    for (name, mode, size, baseline, busy), row in found.items():
        if mode != "train" or baseline or busy:
            continue
        base = found.get((name, "train", size, True, False))
        loop = found.get((name, "train-loop", size, False, False))
        infer = found.get((name, "infer", size, False, False))
        quiet_busy = found.get((name, "train", size, False, True))
        result.append(
            [
                FRAMEWORK_LABELS[name],
                size,
                f"{row.img_per_s / base.img_per_s:.2f}x" if base else "-",
                f"{loop.img_per_s / row.img_per_s:.0%}" if loop else "-",
                f"{infer.img_per_s / row.img_per_s:.2f}x" if infer else "-",
                f"{quiet_busy.img_per_s / row.img_per_s:.2f}x" if quiet_busy else "-",
            ]
        )
    return result


def load_rows(path: Path) -> list[Row]:
    """The rows a ``--json`` file holds."""
    return [Row(**fields) for fields in json.loads(Path(path).read_text())]


def summary_table(rows: list[Row]) -> str:
    """The README's speed table: one column per framework, the ratios that carry from machine
    to machine, for the run `rows` (a ``--json`` file) holds."""
    found = {(row.backend, row.mode, row.size, row.baseline, row.busy): row for row in rows}
    names = [name for name in BACKENDS if any(row.backend == name for row in rows)]
    sizes = sorted({row.size for row in rows}, reverse=True)
    largest, peak = sizes[0], max(row.peak_gflop_per_s for row in rows)

    def rate(name, mode, size, baseline=False, busy=False):
        row = found.get((name, mode, size, baseline, busy))
        return row.img_per_s if row else None

    def ratio_row(label, top, bottom, fmt="{:.2f}x", extra=None):
        cells = []
        for name in names:
            a, b = top(name), bottom(name)
            cell = fmt.format(a / b) if a and b else "-"
            cells.append(cell + (extra(name) if extra and a and b else ""))
        return [label, *cells]

    def loader_share(size):
        return lambda name: f" ({found[(name, 'train-loop', size, False, False)].loader_share:.1%})"

    loop = [found.get((name, "train-loop", largest, False, False)) for name in names]
    table = [
        [f"training at {largest} px, real loop: img/s"]
        + [round(row.img_per_s, 1) if row else "-" for row in loop],
        [f"MFU of that (peak: the run's best 2048³ GEMM, {peak:.0f} GFLOP/s)"]
        + [f"{row.mfu:.2f}" if row else "-" for row in loop],
    ]
    for size in sizes:
        table.append(
            ratio_row(
                f"fast path / book's path, training at {size} px",
                lambda name, size=size: rate(name, "train", size),
                lambda name, size=size: rate(name, "train", size, baseline=True),
            )
        )
    for size in sizes:
        table.append(
            ratio_row(
                f"real loop / synthetic step, {size} px (loader's share)",
                lambda name, size=size: rate(name, "train-loop", size),
                lambda name, size=size: rate(name, "train", size),
                fmt="{:.0%}",
                extra=loader_share(size),
            )
        )
    table.append(
        ratio_row(
            f"inference / training, {largest} px",
            lambda name: rate(name, "infer", largest),
            lambda name: rate(name, "train", largest),
        )
    )
    for size in sizes:
        if any(row.busy and row.size == size for row in rows):
            table.append(
                ratio_row(
                    f"busy / quiet machine, training at {size} px",
                    lambda name, size=size: rate(name, "train", size, busy=True),
                    lambda name, size=size: rate(name, "train", size),
                )
            )
    batches = sorted({row.batch for row in rows})
    header = f"measured in one run, batch {', '.join(map(str, batches))}"
    return format_table([header, *(FRAMEWORK_LABELS[name] for name in names)], table, markdown=True)


# -- the report --------------------------------------------------------------------------------

# A Markdown file that holds these two lines (docs/benchmarks.md) has only the part between
# them replaced by a new report; what is written around them by hand is kept.
BEGIN_MARKER = (
    "<!-- generated by nin bench: everything from here to the end marker is "
    "replaced when nin bench --out writes this file -->"
)
END_MARKER = "<!-- end of what nin bench generated; what follows is written by hand -->"


def render_json(rows: list[Row]) -> str:
    """What ``--json`` writes: every row's fields."""
    return json.dumps([asdict(row) for row in rows], indent=2) + "\n"


def write_markdown(
    path: Path,
    rows: list[Row],
    peaks: dict[str, float],
    backends: list[str],
    *,
    steps: int,
    repeats: int,
    onnx_table: str | None = None,
) -> Path:
    """The Markdown report of `rows`, measured here now, with its chart beside it."""
    result = BenchResult(
        list(rows),
        dict(peaks),
        list(backends),
        steps,
        repeats,
        onnx_table,
        machine_description(),
        {name: framework_versions(name) for name in backends},
        datetime.now(),
    )
    return write_report(result, Path(path))


def write_report(result: BenchResult, path: Path) -> Path:
    """`path` (Markdown) and its chart (the same name, .png): a new file, or, in a file with
    the markers, the part between them (the rest is kept)."""
    from .plots import plot_bench

    chart = path.with_suffix(".png")
    plot_bench(result.rows, chart)
    text = splice_generated(
        path.read_text() if path.is_file() else "", render_markdown(result, chart.name)
    )
    atomic_write(path, lambda temporary: temporary.write_text(text))
    return path


def splice_generated(existing: str, report: str) -> str:
    """`report` between the markers of `existing`, or, if it has none, `report` alone."""
    begin, end = existing.find(BEGIN_MARKER), existing.find(END_MARKER)
    if begin < 0 or end < begin:
        return report
    return (
        existing[: begin + len(BEGIN_MARKER)] + "\n" + report.rstrip("\n") + "\n\n" + existing[end:]
    )


def render_markdown(result: BenchResult, chart_name: str) -> str:
    """The report: this run's figures, its machine and versions, and how it measured them."""
    return "\n".join(
        [
            "# Benchmarks",
            "",
            f"Generated by `nin bench` on {result.finished:%Y-%m-%d %H:%M}: {result.machine}; "
            f"{_versions_text(result)}.",
            "",
            f"fp32 peak, the best {GEMM_SIZE}x{GEMM_SIZE} matrix product of each library: "
            + ", ".join(f"{name} {value:.0f} GFLOP/s" for name, value in result.peaks.items())
            + f". MFU below is against the best, {result.peak:.0f} GFLOP/s.",
            "",
            f"Each figure is the median of {result.repeats} blocks of {result.steps} timed steps "
            f"after {WARMUP_STEPS} warm-up steps. *fast* is this project's code path, *baseline* "
            f"the book's ({'; '.join(info.book_path for info in BACKENDS.values())}), timed in a "
            "fresh process as a reader of the book runs it; "
            "*train-loop* is the real loop (`Trainer.fit`) on Fashion-MNIST, with its loader's "
            "share of the time.",
            "",
            format_table(HEADERS, [_cells(row) for row in result.rows], markdown=True),
            "",
            f"![throughput]({chart_name})",
            "",
            "## Ratios measured in the same run",
            "",
            format_table(
                [
                    "framework",
                    "size",
                    "fast / baseline",
                    "real loop / synthetic step",
                    "inference / training",
                    "busy / quiet machine",
                ],
                speedups(result.rows),
                markdown=True,
            ),
            "",
            *_onnx_section(result),
            *_noise_section(),
        ]
    )


def _versions_text(result: BenchResult) -> str:
    return "; ".join(
        f"{FRAMEWORK_LABELS[name]}: "
        + ", ".join(f"{key} {value}" for key, value in result.versions[name].items())
        for name in result.backends
    )


def _onnx_section(result: BenchResult) -> list[str]:
    if result.onnx_table is None:
        return []
    return [
        "## onnxruntime against each framework (inference)",
        "",
        "Each backend's export of the same NiN on onnxruntime (CPU provider, no "
        "spin-waiting), timed in turns with the framework on the same batch, so a busy "
        f"spell slows both alike; medians of {onnx_runs(result.repeats)} rounds "
        "(docs/onnx.md).",
        "",
        result.onnx_table,
        "",
    ]


def _noise_section() -> list[str]:
    """How to read the figures: true of every run, on every machine."""
    return [
        "## Noise",
        "",
        "Absolute figures move from run to run and machine to machine, so compare ratios "
        "measured in one run (the table above), never absolute times across runs. "
        "*busy / quiet* is the same measurement with another process keeping every core busy "
        "(`--busy`): what a shared machine does to each framework. The peak is a measured "
        "matrix product, not a datasheet figure: a convolution that reuses its cache better "
        "can beat it, which shows as an MFU above 1.",
        "",
    ]
