"""PNG figures for reports: confusion matrices, training curves, image grids, recall bars.

Matplotlib runs on the Agg backend (no display). Every function creates the parent folder,
writes ``path`` and closes its figure.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np


def save_confusion_png(confusion, class_names: Sequence[str], path, title: str = "") -> None:
    """Confusion matrix (rows = true class) coloured by row-normalised rate, annotated with
    counts."""
    confusion = np.asarray(confusion, np.int64)
    support = confusion.sum(axis=1, keepdims=True)
    rates = np.divide(confusion, support, out=np.zeros(confusion.shape), where=support > 0)
    size = 1.0 + 0.8 * len(class_names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    for (row, col), count in np.ndenumerate(confusion):
        ax.text(col, row, str(count), ha="center", va="center", fontsize=8,
                color="white" if rates[row, col] > 0.5 else "black")
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    _save(fig, path)


def save_curves_png(history: Sequence[Mapping], path, keys: Sequence[str] = ("loss", "accuracy"),
                    title: str = "") -> None:
    """One subplot per metric in ``keys``, x = "step" (else "epoch", else record index).

    A subplot for ``key`` draws every series named ``key`` or ``<prefix>_key`` /
    ``<prefix>/key`` (e.g. ``train_loss`` and ``val_loss``); records lacking a series are
    skipped for it, so sparse validation entries are fine.
    """
    if not history:
        raise ValueError("history is empty: nothing to plot")
    x_name = next((name for name in ("step", "epoch") if all(name in h for h in history)), None)
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys):
        series = sorted({name for record in history for name in record
                         if name == key or name.endswith(("_" + key, "/" + key))})
        if not series:
            plt.close(fig)
            available = sorted({name for record in history for name in record})
            raise ValueError(f"no series for {key!r} in history; keys present: {available}")
        for name in series:
            points = [(record[x_name] if x_name else i, record[name])
                      for i, record in enumerate(history) if name in record]
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o" if len(points) < 30 else None, markersize=3, label=name)
        ax.set_xlabel(x_name or "record")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    _save(fig, path)


def save_image_grid_png(images, path, row_names: Sequence[str] | None = None,
                        title: str = "") -> None:
    """Grid of uint8 images ``[rows, cols, 48, 48]``, one row per class, names on the left."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be [rows, cols, H, W], got {images.shape}")
    rows, cols, height, width = images.shape
    if row_names is not None and len(row_names) != rows:
        raise ValueError(f"{len(row_names)} row names for {rows} rows")
    gap = 2
    mosaic = np.full((rows * (height + gap) - gap, cols * (width + gap) - gap), 255, np.uint8)
    for r in range(rows):
        for c in range(cols):
            mosaic[r * (height + gap):r * (height + gap) + height,
                   c * (width + gap):c * (width + gap) + width] = images[r, c]
    fig, ax = plt.subplots(figsize=(0.7 * cols + 1.5, 0.7 * rows + 0.6))
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks((np.arange(rows) * (height + gap) + height / 2) if row_names else [],
                  row_names or [])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title)
    _save(fig, path)


def save_recall_bars_png(reports: Mapping[str, Mapping], path,
                         reference: Mapping[str, float] | None = None, title: str = "") -> None:
    """Grouped per-class recall bars, one colour per named report (``classification_report``
    dicts); ``reference`` ({class: recall fraction}, e.g. published numbers) is drawn as black
    ticks. Classes are the union over the reports, in first-seen order."""
    if not reports:
        raise ValueError("no reports to plot")
    classes = list(dict.fromkeys(name for report in reports.values()
                                 for name in report["classes"]))
    positions = np.arange(len(classes))
    width = 0.8 / len(reports)
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(classes) * max(1, len(reports) / 2), 4))
    for i, (label, report) in enumerate(reports.items()):
        recall = [100 * report["per_class"][c]["recall"] if c in report["per_class"] else np.nan
                  for c in classes]
        ax.bar(positions - 0.4 + width * (i + 0.5), recall, width, label=label)
    if reference:
        known = [(p, 100 * reference[c]) for p, c in zip(positions, classes) if c in reference]
        if known:
            xs, ys = zip(*known)
            ax.scatter(xs, ys, marker="_", s=600, color="black", zorder=3, label="reference")
    ax.set_xticks(positions, classes, rotation=30, ha="right")
    ax.set_ylabel("recall (%)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    _save(fig, path)


def save_dose_response_png(doses: Sequence[float], series: Mapping[str, Sequence], path, *,
                           xlabel: str, ylabel: str, title: str = "") -> None:
    """One line per series over ``doses``: ``{label: [(mean, half_width) | None per dose]}``
    (error bars of the half-widths, NaN ones drawn without a bar; None: not measured)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, points in series.items():
        measured = [(dose, *point) for dose, point in zip(doses, points) if point is not None]
        if not measured:
            continue
        xs, means, halves = (np.asarray(column, np.float64) for column in zip(*measured))
        ax.errorbar(xs, means, yerr=np.nan_to_num(halves), marker="o", capsize=3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xticks(list(doses))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    _save(fig, path)


def _save(fig, path) -> None:
    path = pathlib.Path(os.fspath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
