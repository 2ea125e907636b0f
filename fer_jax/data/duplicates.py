"""Exact (pixel-for-pixel) copies of faces across and within splits.

FER-2013's PublicTest (our val) repeats 280 of its 3,589 faces from train, unevenly: 27% of
val's surprise and disgust faces are training faces. A model that memorised train looks better
on them, and a "real vs real" reference (train against val) is partly train against itself;
:func:`copies_of` finds them so evaluations can also be scored on the val faces no model saw.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib

import numpy as np

from fer_jax.classes import EMOTIONS
from fer_jax.data.dataset import FerData, Split


def digests(images: np.ndarray) -> list[bytes]:
    """One SHA-1 digest per image of ``[N, ...]`` (equal digests: equal pixels)."""
    return [hashlib.sha1(np.ascontiguousarray(image).tobytes()).digest() for image in images]


def copies_of(split: Split, reference: Split) -> np.ndarray:
    """bool ``[len(split)]``: which images of ``split`` equal an image of ``reference``."""
    seen = set(digests(reference.images))
    return np.array([digest in seen for digest in digests(split.images)], dtype=bool)


def with_unseen_val(data: FerData, *, leave_out: bool = True) -> tuple[FerData, dict[str, int]]:
    """``(data whose val split leaves out its exact copies of training faces, {class: faces left
    out})``; when it left some out, the source description says how many. The test split is
    carried along, never read. ``leave_out=False``: ``(data, {})``."""
    if not leave_out:
        return data, {}
    train, val = data.split("train"), data.split("val")
    copies = copies_of(val, train)
    left_out = dict(zip(EMOTIONS, np.bincount(val.labels[copies], minlength=len(EMOTIONS))
                        .tolist()))
    if not copies.any():
        return data, left_out
    unseen = val.take(np.flatnonzero(~copies))
    return dataclasses.replace(
        data, splits={**data.splits, "val": unseen},
        source=f"{data.source} (val without its {int(copies.sum())} exact copies of train faces)"
    ), left_out


def duplicate_report(data: FerData) -> dict:
    """Exact copies in ``data``'s train and val splits (never its test split):

    ``{"val_in_train": {"total", "label_differs", "per_class": {class: copies}, "val_per_class":
    {class: val images}}, "within_train": {"groups", "images", "label_differs"}}``; "label_differs"
    counts copies (val) or groups (train) whose labels disagree.
    """
    train = data.split("train")
    by_digest = collections.defaultdict(list)
    for index, digest in enumerate(digests(train.images)):
        by_digest[digest].append(index)
    groups = [indices for indices in by_digest.values() if len(indices) > 1]
    report = {"within_train": {
        "groups": len(groups), "images": sum(len(group) for group in groups),
        "label_differs": sum(len(set(train.labels[group].tolist())) > 1 for group in groups)}}
    if data.has("val"):
        val = data.split("val")
        copied = [(label, by_digest[digest]) for label, digest
                  in zip(val.labels.tolist(), digests(val.images)) if digest in by_digest]
        per_class = np.bincount([label for label, _ in copied], minlength=len(EMOTIONS))
        report["val_in_train"] = {
            "total": len(copied),
            "label_differs": sum(label not in train.labels[indices] for label, indices in copied),
            "per_class": dict(zip(EMOTIONS, per_class.tolist())),
            "val_per_class": val.counts()}
    return report


def format_duplicate_report(report: dict) -> str:
    """The lines ``experiments.data_summary`` prints for :func:`duplicate_report`."""
    train = report["within_train"]
    lines = [(f"exact copies within train: {train['images']} images in {train['groups']} "
              f"groups ({train['label_differs']} groups with differing labels)")]
    if val := report.get("val_in_train"):
        shares = ", ".join(f"{name} {copies}/{val['val_per_class'][name]}"
                           for name, copies in val["per_class"].items() if copies)
        total = sum(val["val_per_class"].values())
        lines.append(f"val images that are exact copies of train images: {val['total']} of "
                     f"{total} ({val['label_differs']} labelled differently)"
                     + (f": {shares}" if shares else ""))
    return "\n".join(lines)
