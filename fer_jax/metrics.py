"""Classification metrics from a confusion matrix: accuracy, per-class precision/recall/F1,
macro-F1, and a plain-text table of them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def top1_predictions(logits) -> np.ndarray:
    """int32 ``[...]``: the arg-max class of logits ``[..., C]``."""
    return np.asarray(logits).argmax(axis=-1).astype(np.int32)


def confusion_matrix(labels, predictions, num_classes: int) -> np.ndarray:
    """int64 ``[C, C]`` counts; rows are true classes, columns predicted classes."""
    labels = np.asarray(labels).reshape(-1)
    predictions = np.asarray(predictions).reshape(-1)
    if labels.shape != predictions.shape:
        raise ValueError(f"labels and predictions differ in size: {labels.size} vs "
                         f"{predictions.size}")
    for name, values in (("labels", labels), ("predictions", predictions)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} must lie in 0..{num_classes - 1}, found "
                             f"{values.min()}..{values.max()} (filter out labels the grouping "
                             "does not cover first)")
    flat = labels.astype(np.int64) * num_classes + predictions.astype(np.int64)
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)


def classification_report(confusion, class_names: Sequence[str]) -> dict:
    """Accuracy, macro-F1 and per-class precision/recall/F1/support (fractions in [0, 1]).

    A class never predicted has precision 0; a class with no examples has recall 0; both
    give F1 0. ``macro_f1`` is the unweighted mean of per-class F1 over ``class_names``.
    Returns ``{"accuracy", "macro_f1", "per_class": {name: {...}}, "confusion", "n",
    "classes"}``, JSON-serialisable.
    """
    confusion = np.asarray(confusion, np.int64)
    if confusion.shape != (len(class_names), len(class_names)):
        raise ValueError(f"confusion matrix {confusion.shape} does not match "
                         f"{len(class_names)} class names")
    correct = np.diag(confusion)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    precision = _safe_ratio(correct, predicted)
    recall = _safe_ratio(correct, support)
    f1 = _safe_ratio(2 * precision * recall, precision + recall)
    n = int(confusion.sum())
    return {
        "accuracy": float(correct.sum() / n) if n else 0.0,
        "macro_f1": float(f1.mean()) if len(class_names) else 0.0,
        "per_class": {name: {"precision": float(precision[i]), "recall": float(recall[i]),
                             "f1": float(f1[i]), "support": int(support[i])}
                      for i, name in enumerate(class_names)},
        "confusion": confusion.tolist(),
        "n": n,
        "classes": list(class_names),
    }


def format_report_table(report: dict) -> str:
    """The report as an aligned text table (percentages), one row per class, then accuracy
    and macro-F1."""
    width = max([len("macro F1"), *(len(name) for name in report["classes"])])
    lines = [f"{'class':<{width}}  {'precision':>9}  {'recall':>7}  {'f1':>7}  {'support':>7}"]
    for name in report["classes"]:
        row = report["per_class"][name]
        lines.append(f"{name:<{width}}  {_percent(row['precision']):>9}  "
                     f"{_percent(row['recall']):>7}  {_percent(row['f1']):>7}  "
                     f"{row['support']:>7d}")
    lines.append(f"{'accuracy':<{width}}  {'':>9}  {'':>7}  {_percent(report['accuracy']):>7}  "
                 f"{report['n']:>7d}")
    lines.append(f"{'macro F1':<{width}}  {'':>9}  {'':>7}  {_percent(report['macro_f1']):>7}")
    return "\n".join(lines)


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (no warnings, no NaN)."""
    numerator = np.asarray(numerator, np.float64)
    denominator = np.asarray(denominator, np.float64)
    out = np.zeros_like(numerator)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def format_without_copies(left_out: int, split: str, accuracy: float, macro_f1: float) -> str:
    """The line printed under a report for its split scored without the ``left_out`` images
    that are exact copies of training images."""
    return (f"without the {left_out} {split} images that are exact copies of training images: "
            f"accuracy {_percent(accuracy)}, macro-F1 {_percent(macro_f1)}")


def _percent(fraction: float) -> str:
    return f"{100.0 * fraction:.1f}%"
