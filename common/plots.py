"""Matplotlib figures: training curves (one line per backend) and a prediction grid."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .data import CLASS_NAMES
from .training import EpochMetrics

BACKEND_COLORS = {"torch": "tab:red", "mxnet": "tab:blue", "tf": "tab:orange"}


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


def plot_curves(histories: dict[str, Sequence[EpochMetrics]], path: str | Path,
                title: str = "") -> Path:
    """Train loss, train accuracy and test accuracy per epoch, overlaying the backends."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.6), constrained_layout=True)
    panels = [("train loss", "train_loss"), ("train accuracy", "train_accuracy"),
              ("test accuracy", "test_accuracy")]
    for axis, (label, field) in zip(axes, panels):
        for backend, history in histories.items():
            epochs = [metrics.epoch for metrics in history]
            values = [getattr(metrics, field) for metrics in history]
            if any(value is None for value in values):
                continue
            axis.plot(epochs, values, marker="o", label=backend,
                      color=BACKEND_COLORS.get(backend))
        axis.set_xlabel("epoch")
        axis.set_title(label)
        axis.grid(alpha=0.3)
        if len(epochs) < 12:
            axis.set_xticks(epochs)
    axes[0].legend()
    return _save(plt, figure, path, title)


def plot_predictions(images: np.ndarray, labels: np.ndarray, predicted: np.ndarray,
                     path: str | Path, title: str = "") -> Path:
    """A grid of (N, H, W) images titled 'true / predicted' (wrong ones in red), like d2l's
    predict_ch3."""
    plt = _pyplot()
    count = len(images)
    columns = min(count, 10)
    rows = -(-count // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(1.5 * columns, 1.8 * rows),
                                squeeze=False, constrained_layout=True)
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index >= count:
            continue
        axis.imshow(images[index], cmap="gray")
        right = labels[index] == predicted[index]
        axis.set_title(f"{CLASS_NAMES[labels[index]]}\n{CLASS_NAMES[predicted[index]]}",
                       fontsize=7, color="black" if right else "red")
    return _save(plt, figure, path, title)
