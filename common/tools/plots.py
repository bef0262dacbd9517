"""Matplotlib figures: training curves (one line per backend), a prediction grid, class maps.

Tools layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..backends import BACKENDS
from ..data import CLASS_NAMES
from ..training import EpochMetrics, StepMetrics


def _color(backend: str) -> str | None:
    info = BACKENDS.get(backend)
    return info.color if info else None


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def _save(plt, figure, path: str | Path, title: str) -> Path:
    if title:
        figure.suptitle(title)
    path = Path(path)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_curves(
    runs: dict[str, tuple[Sequence[StepMetrics], Sequence[EpochMetrics]]],
    path: str | Path,
    title: str = "",
) -> Path:
    """Train loss and accuracy every few steps (fractional epochs, as the book's animator
    draws them) and test accuracy after each epoch, one line per backend."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.6), constrained_layout=True)
    for backend, (points, history) in runs.items():
        color = _color(backend)
        epochs = [point.epoch for point in points]
        axes[0].plot(epochs, [point.train_loss for point in points], color=color, label=backend)
        axes[1].plot(epochs, [point.train_accuracy for point in points], color=color, label=backend)
        scored = [metrics for metrics in history if metrics.test_accuracy is not None]
        axes[2].plot(
            [metrics.epoch for metrics in scored],
            [metrics.test_accuracy for metrics in scored],
            marker="o",
            color=color,
            label=backend,
        )
    for axis, label in zip(axes, ("train loss", "train accuracy", "test accuracy")):
        axis.set_xlabel("epoch")
        axis.set_title(label)
        axis.grid(alpha=0.3)
        axis.set_xlim(left=0)
    axes[0].legend()
    return _save(plt, figure, path, title)


# Class maps' colours: brightness rises with the value, so they read in greyscale too.
MAP_COLORS = "magma"
MAP_ALPHA = 0.6  # the heatmap over the image, which shows through


def _overlay(axis, image: np.ndarray, heatmap: np.ndarray, vmin=None, vmax=None) -> None:
    """`heatmap` over the grey `image`; the same extent for both, as the map was upsampled with
    the image's edges aligned, whatever the two resolutions."""
    extent = (0, 1, 1, 0)
    axis.imshow(image, cmap="gray", extent=extent)
    axis.imshow(heatmap, cmap=MAP_COLORS, alpha=MAP_ALPHA, extent=extent, vmin=vmin, vmax=vmax)


def plot_predictions(
    images: np.ndarray,
    labels: np.ndarray,
    predicted: np.ndarray,
    path: str | Path,
    title: str = "",
    *,
    maps: np.ndarray | None = None,
    scores: np.ndarray | None = None,
) -> Path:
    """A grid of (N, H, W) images titled 'true / predicted' (wrong ones in red), like d2l's
    predict_ch3; with `maps` (N, S, S), each predicted class's map over its image, and with
    `scores` (N,), its score beside the prediction."""
    plt = _pyplot()
    count = len(images)
    columns = min(count, 10)
    rows = -(-count // columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(1.5 * columns, 1.8 * rows), squeeze=False, constrained_layout=True
    )
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index >= count:
            continue
        if maps is None:
            axis.imshow(images[index], cmap="gray")
        else:
            _overlay(axis, images[index], maps[index])
        right = labels[index] == predicted[index]
        score = "" if scores is None else f" {scores[index]:.2f}"
        axis.set_title(
            f"{CLASS_NAMES[labels[index]]}\n{CLASS_NAMES[predicted[index]]}{score}",
            fontsize=7,
            color="black" if right else "red",
        )
    return _save(plt, figure, path, title)


def plot_class_maps(
    images: np.ndarray,
    labels: np.ndarray,
    shown: np.ndarray,
    maps: dict[str, np.ndarray],
    scores: dict[str, np.ndarray],
    path: str | Path,
    title: str = "",
) -> Path:
    """For each image, a block: the image (titled with its true class), then for each group of
    maps (a framework) the maps of the classes in `shown` over the image, titled with the class
    and its score. `images` (N, S, S) in [0, 1]; `shown` (N, K) classes; `maps` {group: (N, K,
    S, S)}, upsampled; `scores` {group: (N, K)}. A block shares one colour scale, so that its
    maps, and its frameworks, compare. Narrow blocks sit side by side, up to 10 panels a row."""
    import textwrap

    plt = _pyplot()
    count, per_group = shown.shape
    width = 1 + len(maps) * per_group
    per_row = max(1, min(count, 10 // width))
    rows, columns = -(-count // per_row), per_row * width
    side = 1.3 if per_group == 1 else 1.1
    figure, axes = plt.subplots(
        rows,
        columns,
        figsize=(side * columns, (side + 0.35) * rows + 0.5),
        squeeze=False,
        constrained_layout=True,
    )
    for axis in axes.flat:
        axis.axis("off")
    for index in range(count):
        row, first = divmod(index, per_row)
        panels = axes[row][first * width : (first + 1) * width]
        values = np.stack([group[index] for group in maps.values()])
        low, high = float(values.min()), float(values.max())
        panels[0].imshow(images[index], cmap="gray", extent=(0, 1, 1, 0))
        panels[0].set_title(f"true:\n{CLASS_NAMES[labels[index]]}", fontsize=7)
        for number, (group, group_maps) in enumerate(maps.items()):
            for slot in range(per_group):
                axis = panels[1 + number * per_group + slot]
                _overlay(axis, images[index], group_maps[index, slot], low, high)
                label = f"{CLASS_NAMES[shown[index, slot]]} {scores[group][index, slot]:.2f}"
                heading = f"{group}\n" if row == 0 and slot == 0 and len(maps) > 1 else ""
                if per_group == 1:  # the prediction: red when wrong, as plot_predictions
                    wrong = shown[index, 0] != labels[index]
                    style = dict(fontsize=7, color="red" if wrong else "black")
                else:  # every class: the highest score in bold
                    best = scores[group][index].argmax() == slot
                    style = dict(fontsize=6, fontweight="bold" if best else "normal")
                axis.set_title(heading + label, **style)
    # wrapped to the figure's width (about 11 characters an inch at this size)
    figure.suptitle(textwrap.fill(title, max(40, int(11 * side * columns))), fontsize=9)
    return _save(plt, figure, path, "")


def plot_sweep(
    accuracies: dict[tuple[str, str], np.ndarray],
    variants: Sequence[str],
    backends: Sequence[str],
    path: str | Path,
    title: str = "",
) -> Path:
    """Test accuracy of every seed as a dot, per (variant, backend), with the mean as a bar."""
    plt = _pyplot()
    figure, axis = plt.subplots(
        figsize=(max(5.0, 1.1 * len(variants) * len(backends) + 1.5), 4), constrained_layout=True
    )
    positions, labels = [], []
    for group, variant in enumerate(variants):
        for index, backend in enumerate(backends):
            x = group * (len(backends) + 1) + index
            values = accuracies.get((variant, backend))
            positions.append(x)
            labels.append(f"{backend}\n{variant}" if len(variants) > 1 else backend)
            if values is None or len(values) == 0:
                continue
            jitter = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else np.zeros(1)
            axis.scatter(x + jitter, values, color=_color(backend), zorder=3, s=22)
            axis.hlines(np.mean(values), x - 0.3, x + 0.3, color="black", zorder=4)
    axis.set_xticks(positions, labels, fontsize=8)
    axis.set_ylabel("test accuracy")
    axis.grid(axis="y", alpha=0.3)
    return _save(plt, figure, path, title or "Test accuracy per seed (bar: mean)")


def plot_bench(rows, path: str | Path, title: str = "") -> Path:
    """Images per second per backend, one panel per input size: baseline and fast training,
    the real loop, and inference side by side."""
    plt = _pyplot()
    rows = [row for row in rows if not row.busy]
    sizes = sorted({row.size for row in rows})
    backends = list(dict.fromkeys(row.backend for row in rows))
    kinds = [
        ("train", True, "train, baseline"),
        ("train", False, "train, fast"),
        ("train-loop", False, "real loop"),
        ("infer", True, "infer, baseline"),
        ("infer", False, "infer, fast"),
    ]
    kinds = [kind for kind in kinds if any((row.mode, row.baseline) == kind[:2] for row in rows)]
    figure, axes = plt.subplots(
        1, len(sizes), figsize=(5.5 * len(sizes), 3.8), squeeze=False, constrained_layout=True
    )
    width = 0.8 / len(kinds)
    for axis, size in zip(axes[0], sizes):
        for index, (mode, baseline, label) in enumerate(kinds):
            values = [
                next(
                    (
                        row.img_per_s
                        for row in rows
                        if (row.backend, row.mode, row.size, row.baseline)
                        == (name, mode, size, baseline)
                    ),
                    0.0,
                )
                for name in backends
            ]
            axis.bar(
                np.arange(len(backends)) + (index - (len(kinds) - 1) / 2) * width,
                values,
                width,
                label=label,
                hatch="//" if baseline else None,
                color=plt.cm.tab10(index),
            )
        axis.set_xticks(np.arange(len(backends)), backends)
        axis.set_title(f"{size}x{size}, batch {rows[0].batch}")
        axis.set_ylabel("images / s")
        axis.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    return _save(plt, figure, path, title or "NiN throughput (higher is better)")


def plot_plateau(
    curves: dict[tuple[str, str, int], list[tuple[int, int, float]]],
    path: str | Path,
    title: str = "",
) -> Path:
    """Live class maps and training loss over the first steps, one line per
    (recipe, backend, seed): the book's head losing classes, and the 2.303 plateau."""
    plt = _pyplot()
    recipes = list(dict.fromkeys(recipe for recipe, _, _ in curves))
    figure, axes = plt.subplots(
        2,
        len(recipes),
        figsize=(5.5 * len(recipes), 6.4),
        squeeze=False,
        sharex=True,
        constrained_layout=True,
    )
    for column, recipe in enumerate(recipes):
        for (label, backend, seed), curve in curves.items():
            if label != recipe:
                continue
            steps, live, loss = zip(*curve)
            style = dict(color=_color(backend), alpha=0.75, lw=1.2, label=f"{backend} seed {seed}")
            axes[0][column].plot(steps, live, **style)
            axes[1][column].plot(steps, loss, **style)
        axes[0][column].set_title(f"book's head, {recipe}")
        axes[0][column].set_ylabel("live class maps")
        axes[0][column].set_ylim(-0.3, 10.3)
        axes[1][column].set_ylabel("training loss")
        axes[1][column].axhline(np.log(10), color="gray", ls="--", lw=1)
        axes[1][column].set_xlabel("step")
        for axis in axes[:, column]:
            axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6, ncol=3)
    return _save(plt, figure, path, title or "Dead class maps and the ln(10) = 2.303 plateau")
