"""The chapter's experimental exercises and the readers' questions, answered by measured runs.

``nin exercise N`` (1, 2, 4, 5 and ``dropout``) trains its variants in every backend over
several seeds with the sweep machinery (:mod:`common.tools.sweep`) and writes a Markdown
section with a table and a PNG; ``nin exercise questions`` measures the readers' questions (the NaN
blow-up, the 2.303 plateau, AlexNet's 6,400); ``nin exercise all --doc docs/exercises.md``
does everything and assembles the document.

Tools layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import numpy as np

from .. import shapes
from ..backends import FRAMEWORK_LABELS, load_backend
from ..platform.files import atomic_write
from ..platform.machine import machine_description
from ..report import accuracy_text, format_table
from ..resources import resources
from ..spec import make_spec
from ..training import Recipe
from .config import PRESETS, RunConfig
from .sweep import Variant, cell_stats, collect, paired_difference, train_sweep

# The exercises' budget: a third of the quick recipe's (one epoch on 20,000 images) so that
# four variants x three backends x three seeds fit in about ten minutes each on a 2-core CPU.
BUDGET = replace(
    PRESETS["quick"],
    epochs=1,
    train_limit=20_000,
    recipe=replace(PRESETS["quick"].recipe, warmup_steps=50),
)
# What CI runs: every variant of every exercise, two steps each.
SMOKE = dict(train_limit=64, test_limit=64, batch_size=32)


@dataclass(frozen=True)
class Exercise:
    key: str
    title: str
    question: str
    variants: tuple[Variant, ...]
    why: str  # the mechanism; the numbers speak for themselves in the table

    def section_name(self) -> str:
        return f"exercise-{self.key}"


def _spec_variant(label: str, base: RunConfig, **options) -> Variant:
    return Variant(label, replace(base, spec_options={**base.spec_options, **options}))


def catalogue(base: RunConfig = BUDGET) -> dict[str, Exercise]:
    """Every exercise `nin exercise` answers, by key, with `base` as its default variant."""
    return {key: make(base) for key, make in EXERCISES.items()}


def _exercise_1(base: RunConfig) -> Exercise:
    recipe = base.recipe
    return Exercise(
        "1",
        "Exercise 1: tune the hyperparameters",
        "Tune the hyperparameters to improve the classification accuracy.",
        (
            Variant("default", base),
            Variant("lr=0.001", replace(base, recipe=replace(recipe, lr=1e-3))),
            Variant("lr=0.004", replace(base, recipe=replace(recipe, lr=4e-3))),
            Variant("batch=64", replace(base, batch_size=64)),
            Variant("batch=256", replace(base, batch_size=256)),
            Variant("epochs=2", replace(base, epochs=2)),
        ),
        "One factor at a time around the default. A smaller batch takes more (noisier) "
        "steps for the same images; a larger one fewer. The learning rate trades speed "
        "against stability, and more epochs buy accuracy with time: the long recipe "
        "(docs/training.md) takes that road to about 0.93.",
    )


def _exercise_2(base: RunConfig) -> Exercise:
    return Exercise(
        "2",
        "Exercise 2: why two 1x1 convolutions per block?",
        "Why are there two 1x1 convolutional layers per NiN block? Increase their number "
        "to three. Reduce their number to one. What changes?",
        (
            _spec_variant("num_1x1=2", base, num_1x1=2),
            _spec_variant("num_1x1=3", base, num_1x1=3),
            _spec_variant("num_1x1=1", base, num_1x1=1),
            _spec_variant("num_1x1=0", base, num_1x1=0),
        ),
        "The 1x1 convolutions are the block's per-pixel multilayer perceptron (the "
        "paper's 'mlpconv'): after the spatial convolution they mix channels "
        "non-linearly at every position. With none, a NiN block is one convolution and "
        "NiN a plain (shallow) CNN with a global-average-pooling head.",
    )


def _exercise_4(base: RunConfig) -> Exercise:
    return Exercise(
        "4",
        "Exercise 4: squeezing 384 channels to 10 in one step",
        "What are the problems with reducing the 384 x 5 x 5 representation to a "
        "10 x 5 x 5 representation in one step?",
        (
            _spec_variant("book-head", base, final_relu=True),
            _spec_variant("linear-head", base, final_relu=False),
            _spec_variant("gradual-head", base, final_relu=True, head_width=96),
            _spec_variant("gradual-linear-head", base, final_relu=False, head_width=96),
        ),
        "In one step, the last block is three ReLU convolutions of only 10 channels: each "
        "class has a single map, and a map that is <= 0 on every image passes no "
        "gradient through its ReLU; unless the layers below lift it again, that class is "
        "never predicted (a 'dead' class). The gradual head (384 -> 96 -> 10) squeezes "
        "in two steps, through a block of 96 channels: more parameters and three more "
        "ReLU layers for the gradient to cross, and its last ReLU can still kill a "
        "class. Dropping the ReLU on the class maps (the linear head) removes the "
        "failure itself.",
    )


def _exercise_5(base: RunConfig) -> Exercise:
    return Exercise(
        "5",
        "Exercise 5: a family of NiN-like networks",
        "Design a family of NiN-like networks, as VGG-11, VGG-16 and VGG-19 do.",
        tuple(
            Variant(name, replace(base, model=name, spec_options={"final_relu": False}))
            for name in ("nin-s", "nin-m", "nin-l")
        ),
        "NiN-S, NiN-M (the book's) and NiN-L grow width and depth together, as VGG's "
        "family grows depth: feature blocks of (64, 192, 256), (96, 256, 384) and "
        "(128, 384, 512) channels with 1, 2 and 3 1x1 convolutions per block. They are "
        "specs in common/spec.py (`nin params --model nin-l`).",
    )


def _exercise_dropout(base: RunConfig) -> Exercise:
    return Exercise(
        "dropout",
        "Readers' question: why does Dropout sit where it does?",
        "Why is there a Dropout layer before the classifier block, and what does it do?",
        (
            _spec_variant("dropout=0.5", base, dropout=0.5),
            _spec_variant("dropout=0", base, dropout=0.0),
        ),
        "NiN has no fully connected layers for dropout to regularise; the paper puts it "
        "between the mlpconv layers. The book keeps one, on the 384 x 5 x 5 features "
        "before the classifier block, where it forces the class maps not to rely on any "
        "single feature channel. What it is worth depends on the run's length: in the "
        "long recipe (docs/training.md) the training accuracy, dropout on, ends 0.015 "
        "above the test accuracy, and a rate of 0.3 instead of 0.5 moved the result by "
        "less than the seeds do.",
    )


# Each exercise from its base configuration, in the order of the document.
EXERCISES = {
    "1": _exercise_1,
    "2": _exercise_2,
    "4": _exercise_4,
    "5": _exercise_5,
    "dropout": _exercise_dropout,
}


def variants_for(exercise: Exercise, smoke: bool) -> list[Variant]:
    if not smoke:
        return list(exercise.variants)
    return [
        Variant(variant.label, replace(variant.config, **SMOKE)) for variant in exercise.variants
    ]


def run_exercise(
    exercise: Exercise,
    out: Path,
    backends: list[str],
    seeds: list[int],
    *,
    smoke: bool = False,
    stop_requested=None,
    progress=None,
    log=print,
) -> Path:
    """Train the exercise's variants (finished runs in `out` are kept) and write its section."""
    variants = variants_for(exercise, smoke)
    folder = Path(out) / exercise.section_name()
    train_sweep(
        variants, backends, seeds, folder, stop_requested=stop_requested, progress=progress, log=log
    )
    return write_section(exercise, variants, folder, backends, seeds)


def write_section(
    exercise: Exercise, variants: list[Variant], folder: Path, backends: list[str], seeds: list[int]
) -> Path:
    """The exercise's section (Markdown) and chart, from the finished runs in `folder`."""
    from .plots import plot_sweep

    found = collect(folder, variants, backends, seeds)
    stats = {key: cell_stats(summaries) for key, summaries in found.items() if summaries}
    chart = folder / f"{exercise.section_name()}.png"
    plot_sweep(
        {key: cell.accuracies for key, cell in stats.items()},
        [variant.label for variant in variants],
        backends,
        chart,
        title=exercise.title.split(": ", 1)[-1],
    )
    text = render_section(exercise, variants, backends, seeds, found, stats, chart.name)
    path = folder / f"{exercise.section_name()}.md"
    atomic_write(path, lambda temporary: temporary.write_text(text))
    return path


def render_section(
    exercise: Exercise,
    variants: list[Variant],
    backends: list[str],
    seeds: list[int],
    found: dict,
    stats: dict,
    chart_name: str,
) -> str:
    """The section: the question, the measured table and chart, the comparison, and why.
    `found` and `stats` are :func:`common.tools.sweep.collect`'s summaries and their
    :func:`common.tools.sweep.cell_stats`."""
    pooled = {
        variant.label: [
            stats[(variant.label, name)].accuracies if (variant.label, name) in stats else None
            for name in backends
        ]
        for variant in variants
    }
    return "\n".join(
        [
            f"## {exercise.title}",
            "",
            f"> {exercise.question}",
            "",
            f"Each variant trained in {', '.join(FRAMEWORK_LABELS[name] for name in backends)} "
            f"with seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}: "
            f"{variants[0].config.describe(seed=False)} (unless the "
            "variant says otherwise).",
            "",
            format_table(
                [
                    "variant",
                    "parameters",
                    "GFLOPs / image",
                    *[name + (" (mean ± std)" if len(seeds) > 1 else "") for name in backends],
                    "all runs",
                    "worst run",
                    "runs with a class never predicted",
                    "train img/s (" + " / ".join(backends) + ")",
                ],
                [_variant_row(variant, backends, found, stats) for variant in variants],
                markdown=True,
            ),
            "",
            f"![{exercise.key}]({chart_name})",
            "",
            "**What the numbers say.** " + _comparison(variants, pooled),
            "",
            f"**Why.** {exercise.why}",
            "",
        ]
    )


def _variant_row(variant: Variant, backends: list[str], found: dict, stats: dict) -> list:
    """A variant's size and cost, and its test accuracy and speed in every backend."""
    spec = variant.config.spec()
    cells = [stats.get((variant.label, name)) for name in backends]
    accuracies = np.concatenate(
        [cell.accuracies for cell in cells if cell is not None] or [np.zeros(0)]
    )
    never = sum(sum(count > 0 for count in cell.never_predicted) for cell in cells if cell)
    rates = [
        np.median(
            [summary["final"]["examples_per_second"] for summary in found[(variant.label, name)]]
        )
        if found[(variant.label, name)]
        else float("nan")
        for name in backends
    ]
    return [
        variant.label,
        shapes.count_params(spec),
        f"{resources(spec, variant.config.size, 1).flops / 1e9:.3f}",
        *[cell.mean_text() if cell else "-" for cell in cells],
        accuracy_text(accuracies.mean()) if accuracies.size else "-",
        accuracy_text(accuracies.min()) if accuracies.size else "-",
        f"{never}/{accuracies.size}",
        " / ".join("-" if math.isnan(rate) else f"{rate:.0f}" for rate in rates),
    ]


def _comparison(variants: list[Variant], pooled: dict[str, list]) -> str:
    """Each variant against the first, paired by (backend, seed), in one sentence each."""
    first = variants[0].label
    sentences = []
    for variant in variants[1:]:
        a, b = [], []
        for mine, theirs in zip(pooled[variant.label], pooled[first]):
            if mine is not None and theirs is not None and len(mine) == len(theirs):
                a.extend(mine)
                b.extend(theirs)
        if len(a) < 2:
            continue
        mean, low, high = paired_difference(np.array(a), np.array(b))
        verdict = "within the noise" if low <= 0 <= high else "better" if low > 0 else "worse"
        sentences.append(
            f"{variant.label} − {first}: {mean:+.4f} (95% interval {low:+.4f} to "
            f"{high:+.4f} over {len(a)} paired runs): {verdict}."
        )
    return " ".join(sentences) or "Too few runs to compare."


# -- the readers' questions ----------------------------------------------------------------------

# The book's head and two recipes that show its failure: the book's SGD (the 2.303 plateau)
# and plain Adam at a constant rate (this project's earlier default).
PLATEAU_RECIPES = {
    "sgd lr 0.1 (the book's)": PRESETS["book"].recipe,
    "adam lr 0.002": replace(
        PRESETS["quick"].recipe, standardize=False, warmup_steps=0, schedule="constant"
    ),
}
PLATEAU_STEPS = 200
PROBE_IMAGES = 512


def live_class_maps(backend, net, images: np.ndarray) -> int:
    """How many class maps (the last block's output channels) are > 0 somewhere on `images`:
    with the book's ReLU head, a map that is not is dead (it passes no gradient)."""
    last_block = [name for name in net.spec.layer_names() if name.startswith("nin_block")][-1]
    maps = backend.layer_output(net, images, last_block)
    return int((maps.reshape(len(maps), maps.shape[1], -1).max(axis=(0, 2)) > 0).sum())


def measure_plateau(
    backends: list[str], seeds: list[int], *, steps: int = PLATEAU_STEPS, smoke: bool = False
) -> dict:
    """Loss and live class maps over the first `steps` steps of the book's head, per
    (recipe, backend, seed), every few steps."""
    steps = 4 if smoke else steps
    every = max(1, steps // 40)
    results = {}
    for recipe_label, recipe in PLATEAU_RECIPES.items():
        config = replace(
            BUDGET,
            spec_options={"final_relu": True},
            recipe=recipe,
            train_limit=steps * BUDGET.batch_size,
        )
        for name in backends:
            backend = load_backend(name)
            for seed in seeds:
                train_data, _ = replace(config, seed=seed).loaders()
                _, probe_data = replace(
                    config, test_limit=PROBE_IMAGES, batch_size=PROBE_IMAGES
                ).loaders()
                probe = next(probe_data.epoch())[0]
                net = backend.build_nin(config.spec(), seed=seed)
                trainer = backend.Trainer(net, recipe, seed=seed)
                trainer.total_steps = steps
                curve = [(0, live_class_maps(backend, net, probe), math.log(10))]
                losses = []
                for step, (images, labels) in enumerate(train_data.epoch(0), start=1):
                    losses.append(trainer.train_step(images, labels)[0])
                    if step % every == 0:
                        curve.append(
                            (
                                step,
                                live_class_maps(backend, net, probe),
                                float(np.mean(losses[-every:])),
                            )
                        )
                results[(recipe_label, name, seed)] = curve
    return results


# Learning rates around the book's 0.1, each for NAN_STEPS steps from seed 0.
NAN_RECIPES = {
    "adam lr 0.1": ("adam", 0.1),
    "momentum lr 0.1": ("momentum", 0.1),
    "momentum lr 1": ("momentum", 1.0),
    "momentum lr 10": ("momentum", 10.0),
}
NAN_STEPS = 40


def measure_nan(backends: list[str], *, smoke: bool = False) -> list[list]:
    """Rows of (backend, recipe, what happened): the last loss, or where the NaN guard
    stopped the run."""
    from ..training import TrainingDiverged

    rows = []
    for label, (optimizer, lr) in NAN_RECIPES.items():
        recipe = Recipe(optimizer=optimizer, lr=lr, standardize=True)
        config = replace(
            BUDGET, recipe=recipe, train_limit=BUDGET.batch_size * (2 if smoke else NAN_STEPS)
        )
        train_data, _ = config.loaders()
        for name in backends:
            backend = load_backend(name)
            trainer = backend.Trainer(backend.build_nin(config.spec(), seed=0), recipe)
            try:
                history = trainer.fit(train_data, epochs=1, progress=False)
                outcome = (
                    f"finite: mean loss {history[-1].train_loss:.3g}, train accuracy "
                    f"{accuracy_text(history[-1].train_accuracy)}"
                )
            except TrainingDiverged as error:
                outcome = "stopped by the guard: " + str(error).split(": ", 1)[1]
            rows.append([FRAMEWORK_LABELS[name], label, outcome])
    return rows


def alexnet_arithmetic() -> list[str]:
    """AlexNet's 6,400 and what padding=1 does, from the spec's own arithmetic."""
    spec = make_spec("alexnet")
    table = [
        [layer.name, layer.output_shape] for layer in shapes.layer_shapes(spec, (1, 1, 224, 224))
    ]
    flatten = next(
        layer for layer in shapes.layer_shapes(spec, (1, 1, 224, 224)) if layer.name == "flatten"
    ).output_shape[1]
    first = spec.layers[0].convs[0]

    def covered(padding: int) -> tuple[int, int, int]:
        size = shapes.conv_output_size(224, first.kernel_size, first.stride, padding)
        last_start = -padding + (size - 1) * first.stride
        return size, last_start, last_start + first.kernel_size - 1

    rows = []
    for padding in (1, 0):
        size, start, end = covered(padding)
        rows.append([padding, size, f"{-padding} .. {end}", 223 - min(end, 223)])
    return [
        format_table(["layer", "output (NCHW)"], table, markdown=True),
        "",
        f"The last max-pool leaves 256 channels of 5 x 5, and Flatten turns them into "
        f"256 x 5 x 5 = {flatten:,} inputs for the first dense layer (`nin shapes --model "
        "alexnet`). In NiN the same place holds global average pooling, which is why NiN has "
        "no 6,400 x 4,096 weight matrix (26.2 M parameters in AlexNet's first dense layer "
        "alone).",
        "",
        "What `padding=1` does to the first 11 x 11, stride-4 convolution at 224 x 224:",
        "",
        format_table(
            [
                "padding",
                "output side",
                "input rows/columns the windows span",
                "trailing pixels never seen",
            ],
            rows,
            markdown=True,
        ),
        "",
        "The output is 54 x 54 either way (floor((224 + 2p - 11) / 4) + 1 is 54 for p = 0 "
        "and 1): padding=1 only shifts the 54 windows one pixel up and left, so they start "
        "on the zero border instead of the first pixel. It does not change a single shape "
        "downstream, so the 6,400 is the same with or without it.",
    ]


def write_questions(
    out: Path, backends: list[str], seeds: list[int], *, smoke: bool = False
) -> Path:
    """Measure the readers' questions and write their section (and its chart) in
    `out`/questions."""
    from .plots import plot_plateau

    folder = Path(out) / "questions"
    folder.mkdir(parents=True, exist_ok=True)
    plateau = measure_plateau(backends, seeds, smoke=smoke)
    chart = plot_plateau(plateau, folder / "plateau.png")
    nan = measure_nan(backends, smoke=smoke)
    text = render_questions(plateau, nan, chart.name)
    path = folder / "questions.md"
    atomic_write(path, lambda temporary: temporary.write_text(text))
    return path


def render_questions(plateau: dict, nan: list[list], chart_name: str) -> str:
    """The readers' questions' section from :func:`measure_plateau` and :func:`measure_nan`."""
    return "\n".join(
        [
            *_plateau_section(plateau, chart_name),
            *_nan_section(nan),
            *_alexnet_section(),
            *_pooling_section(),
        ]
    )


def _plateau_section(plateau: dict, chart_name: str) -> list[str]:
    rows = [
        [recipe_label, name, seed, curve[0][1], curve[-1][1], f"{curve[-1][2]:.3f}"]
        for (recipe_label, name, seed), curve in plateau.items()
    ]
    last_step = next(iter(plateau.values()))[-1][0]
    return [
        "## Readers' question: why does training sometimes stay at 2.303?",
        "",
        "A loss of ln(10) = 2.303 is what a network that gives every class the same logit "
        "scores. NiN starts there: through twelve ReLU convolutions the book's Xavier "
        "initialisation shrinks the signal, so the initial logits are about 1e-3. With the "
        "book's head the logits are the averages of ReLU outputs, and a class map that is "
        "<= 0 on every image is dead: no gradient reaches its own weights, and its logit "
        "stays 0. Count the live maps (> 0 somewhere on the first "
        f"{PROBE_IMAGES} test images) over the first {PLATEAU_STEPS} steps, book's "
        "head, per backend and seed:",
        "",
        f"![live class maps and loss over the first steps]({chart_name})",
        "",
        format_table(
            [
                "recipe",
                "backend",
                "seed",
                "live class maps at step 0",
                f"live at step {last_step}",
                "loss then",
            ],
            rows,
            markdown=True,
        ),
        "",
        "Plain SGD at lr 0.1 barely moves the tiny logits, so the loss stays near 2.303 "
        "for hundreds of steps; Adam's per-parameter steps leave the plateau sooner. A dead "
        "map gets no gradient of its own, but the features below it keep changing for the "
        "other classes' sake and can revive it, or kill a live one: the table shows both. "
        "A map still dead at the end is a class never predicted (the sweeps in "
        "docs/training.md count them). The linear head (no ReLU on the class maps; "
        "`--linear-head`, the presets' default) cannot lose a class this way: every class "
        "map gets a gradient on every image.",
        "",
    ]


def _nan_section(nan: list[list]) -> list[str]:
    return [
        "## Readers' question: why does it blow up to NaN?",
        "",
        f"The first {NAN_STEPS} steps (batch {BUDGET.batch_size}, seed 0, linear head, "
        "standardized inputs) at the book's learning rate and above. A step too large for "
        "the curvature overshoots, the next gradient is larger still, and the weights grow: "
        "the loss explodes (to millions, at chance accuracy) or, once a float32 overflows "
        "to inf and inf - inf gives NaN, becomes NaN. Which comes first, and when, differs "
        "from framework to framework (float rounding decides it), as the table shows; a "
        "rate that only stalls the loss at 2.3 is too large as well. Every backend's guard "
        "checks the loss and the weights after each step (MXNet's ReLU maps NaN to 0, so "
        "its loss alone can look finite) and stops at the first non-finite value, naming "
        "the step and suggesting a lower rate; the last checkpoint before it stays "
        "resumable (`nin train --resume RUN --lr 0.01`).",
        "",
        format_table(["framework", "recipe", "what happened"], nan, markdown=True),
        "",
    ]


def _alexnet_section() -> list[str]:
    return [
        "## Readers' question: why does AlexNet's Flatten have 6,400 inputs, and what does "
        "padding=1 do?",
        "",
        *alexnet_arithmetic(),
        "",
    ]


def _pooling_section() -> list[str]:
    return [
        "## Readers' question: why is pooling outside the NiN block?",
        "",
        "So that a block is only convolutions (one spatial convolution and its 1x1 "
        "'MLP'), reusable as the classifier: the last block must not be followed by a "
        "max-pool, because global average pooling takes its place. In `common/spec.py` "
        "the spec lists `MaxPool` between blocks, and the classifier block is followed by "
        "`GlobalAvgPool`.",
        "",
    ]


def assemble(sections: list[Path], doc: Path) -> Path:
    """docs/exercises.md from the sections (their PNGs are copied beside it)."""
    import shutil

    doc = Path(doc)
    images = doc.parent / doc.stem
    images.mkdir(parents=True, exist_ok=True)
    parts = [
        "# The chapter's exercises and the readers' questions, measured",
        "",
        f"Generated by `nin exercise` on {datetime.now():%Y-%m-%d %H:%M}, "
        f"{machine_description()}. Exercise 3 (parameters, FLOPs, memory) is arithmetic: "
        "`nin resources` and the README answer it.",
        "",
    ]
    for section in sections:
        text = section.read_text()
        for png in section.parent.glob("*.png"):
            shutil.copyfile(png, images / png.name)
            text = text.replace(f"]({png.name})", f"]({images.name}/{png.name})")
        parts.append(text)
    atomic_write(doc, lambda temporary: temporary.write_text("\n".join(parts)))
    return doc
