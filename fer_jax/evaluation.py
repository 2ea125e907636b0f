"""Scoring trained classifiers: readings in a grouping, reports, calibration, evaluation JSON.

Every number the entry points, the pipeline and the ablation report comes from here: a
:class:`fer_jax.inference.Classifier`'s probabilities on a split, read in a grouping
(:func:`in_view`), scored (:func:`report_of`), optionally moved by per-class decision offsets
(:mod:`fer_jax.calibration`, fitted and cross-fitted by :func:`calibrate`).
"""

from __future__ import annotations

import json
import pathlib
import time

import numpy as np

from fer_jax import calibration, classes, metrics, provenance, stats, two_tier
from fer_jax.data.dataset import FerData, Split
from fer_jax.data.duplicates import copies_of
from fer_jax.errors import FerError
from fer_jax.inference import Classifier

SYNTHETIC_NOTE = "SYNTHETIC DEFAULT DATA (not FER-2013): pass --data PATH for real results"

# The seed project's published result: its Keras CNN in the 6-class setting (disgust dropped),
# per-class recall on its test split and overall accuracy (fractions).
SEED_REFERENCE = {
    "setting": "six",
    "accuracy": 0.65,
    "recall": {"angry": 0.58, "fear": 0.45, "happy": 0.84, "neutral": 0.59, "sad": 0.59,
               "surprise": 0.76},
}
# Calibration objectives: "seed" beats the seed's recall profile, "balanced" the mean recall.
OBJECTIVES = ("seed", "balanced")


# ----------------------------------------------------------------------------- readings
def in_view(probs: np.ndarray, canonical_labels: np.ndarray, source: classes.Grouping,
            view: classes.Grouping) -> tuple[np.ndarray, np.ndarray]:
    """``(encoded labels, probabilities)`` of the rows of ``view``'s classes, from a model's
    probabilities over ``source`` classes for images with ``canonical_labels``; a model of a
    larger grouping is read through :func:`fer_jax.two_tier.restrict`."""
    keep = view.covers(canonical_labels)
    if not keep.any():
        raise FerError(f"no images of grouping {view.name!r} in this split")
    probs = np.asarray(probs)[keep]
    if source != view:
        try:
            probs = two_tier.restrict(probs, source, view)
        except ValueError as error:
            raise FerError(f"cannot evaluate a {source.name!r} model in grouping "
                           f"{view.name!r}: {error}") from None
    return view.encode(canonical_labels[keep]).astype(np.int32), probs


def predict_split(classifier: Classifier, split: Split, grouping: classes.Grouping, *,
                  tta: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(encoded labels, probabilities)`` of ``classifier`` on ``split`` (canonical labels),
    read in ``grouping`` (see :func:`in_view`)."""
    probs = classifier.probabilities(split.images, tta=tta, progress="predict")
    return in_view(probs, split.labels, classifier.grouping, grouping)


def report_of(labels, probs, grouping: classes.Grouping) -> dict:
    """Classification report of top-1 predictions ``probs`` against encoded ``labels``."""
    confusion = metrics.confusion_matrix(labels, metrics.top1_predictions(probs),
                                         grouping.num_classes)
    return metrics.classification_report(confusion, grouping.class_names)


def evaluate(classifier: Classifier, split: Split, grouping: classes.Grouping, *,
             tta: bool = False, offsets=None, statistics: bool = False) -> dict:
    """Classification report of ``classifier`` on ``split`` in ``grouping`` (see
    :func:`score`)."""
    probs = classifier.probabilities(split.images, tta=tta, progress="predict")
    return score(probs, split.labels, classifier.grouping, grouping, offsets=offsets,
                 statistics=statistics)


def score(probs, canonical_labels, source: classes.Grouping, grouping: classes.Grouping, *,
          offsets=None, statistics: bool = False) -> dict:
    """Classification report of a model's probabilities over ``source`` classes for images
    with ``canonical_labels``, read in ``grouping``; ``offsets``: per-class decision offsets
    (:mod:`fer_jax.calibration`) applied first; ``statistics``: adds bootstrap CIs and
    per-class AP and AUROC (:func:`fer_jax.stats.add_statistics`)."""
    labels, probs = in_view(probs, canonical_labels, source, grouping)
    if offsets is not None:
        probs = calibration.apply_offsets(probs, offsets)
    report = report_of(labels, probs, grouping)
    if statistics:
        stats.add_statistics(report, stats.report_statistics(labels, probs,
                                                             grouping.class_names))
    return report


def unseen_scores(probs, split: Split, train: Split, source: classes.Grouping,
                  grouping: classes.Grouping, *, offsets=None) -> dict:
    """Accuracy and macro-F1 of a model's probabilities ``probs`` (over ``source`` classes,
    one row per image of ``split``) on the images of ``split`` that are not exact copies of
    ``train`` images (FER-2013's PublicTest repeats 280 training faces):
    ``{"left_out", "accuracy", "macro_f1", "recall": {class: recall}}`` (None when every image
    is a copy)."""
    copies = copies_of(split, train)
    scores = {"left_out": int(copies.sum()), "accuracy": None, "macro_f1": None, "recall": None}
    if not copies.all():
        report = score(np.asarray(probs)[~copies], split.labels[~copies], source, grouping,
                       offsets=offsets)
        scores |= {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"],
                   "recall": {name: row["recall"] for name, row in report["per_class"].items()}}
    return scores


def evaluation_json(classifier: Classifier, data: FerData, split: str,
                    grouping: classes.Grouping, *, checkpoint: str, tta: bool = False,
                    calibration_path: str | None = None,
                    data_path: str | pathlib.Path | None = None,
                    workdir: str | pathlib.Path | None = None) -> dict:
    """What ``experiments.evaluate --json`` writes: the report of :func:`evaluate` with its
    statistics (the offsets of ``calibration_path`` applied when given), how it was scored
    (split, TTA, grouping, data, model, checkpoint, the step of each network scored) and the
    reproducibility block (:mod:`fer_jax.provenance`; ``data_path``: where ``data`` was read,
    None for the synthetic default), and ``without_train_copies`` (:func:`unseen_scores`) for
    a split other than train. On the test split, appends a record to ``workdir``'s
    test ledger."""
    start = time.perf_counter()
    offsets = load_offsets(calibration_path, grouping) if calibration_path else None
    scored = data.split(split)
    probs = classifier.probabilities(scored.images, tta=tta, progress="predict")
    report = score(probs, scored.labels, classifier.grouping, grouping, offsets=offsets,
                   statistics=True)
    if split != "train" and data.has("train"):
        report["without_train_copies"] = unseen_scores(
            probs, scored, data.split("train"), classifier.grouping, grouping, offsets=offsets)
    data_block = provenance.data_block(data_path, data)
    wall_seconds = time.perf_counter() - start
    if split == "test" and workdir is not None:
        metrics = {key: report[key] for key in ("accuracy", "macro_f1", "ci")}
        provenance.append_test_record(workdir, provenance.ledger_record(
            classifier, data=data_block, metrics=metrics, wall_seconds=wall_seconds))
    return {**report, "split": split, "tta": tta, "grouping": grouping.name,
            "data": data.source, "synthetic": data.synthetic, "model": classifier.description,
            "checkpoint": checkpoint, "steps": classifier.steps,
            "calibration": calibration_path,
            "reproducibility": provenance.classifier_reproducibility(
                classifier, data=data_block, wall_seconds=wall_seconds)}


# ----------------------------------------------------------------------------- calibration
def offsets_vector(offsets: dict, grouping: classes.Grouping) -> np.ndarray:
    """``{class: offset}`` (as :func:`calibrate` gives them) in ``grouping``'s order."""
    return np.array([offsets[name] for name in grouping.class_names], np.float64)


def load_offsets(path, grouping: classes.Grouping) -> np.ndarray:
    """Per-class offsets from an ``experiments.calibrate`` JSON, in ``grouping``'s class
    order; a clear error when the file is unreadable or fitted for another grouping."""
    path = pathlib.Path(path)
    try:
        calibrated = json.loads(path.read_text())
        fitted_for, offsets = calibrated["grouping"], calibrated["offsets"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise FerError(f"{path}: not a calibration file ({type(error).__name__}: {error})") \
            from None
    if fitted_for != grouping.name:
        raise FerError(f"{path}: offsets were fitted in grouping {fitted_for!r}; this evaluation "
                       f"is in {grouping.name!r} (pass --grouping {fitted_for})")
    return offsets_vector(offsets, grouping)


def reference_recall(objective: str, grouping: classes.Grouping) -> np.ndarray | None:
    """The reference per-class recall of ``objective`` in ``grouping``'s class order (None
    for ``"balanced"``)."""
    if objective == "balanced":
        return None
    if objective not in OBJECTIVES:
        raise FerError(f"unknown calibration objective {objective!r}; expected one of "
                       f"{OBJECTIVES}")
    reference = SEED_REFERENCE["recall"]
    missing = [name for name in grouping.class_names if name not in reference]
    if missing:
        raise FerError(f"the {objective} reference has no recall for {missing}; calibrate in "
                       f"its grouping (--grouping six)")
    return np.array([reference[name] for name in grouping.class_names])


def mean_report(reports: list[dict]) -> dict:
    """Per-class recall, accuracy and macro-F1 averaged over ``reports`` (same classes), with
    each class's lowest recall: a ``classification_report``-shaped summary of repeats."""
    names = reports[0]["classes"]
    recalls = {name: [r["per_class"][name]["recall"] for r in reports] for name in names}
    return {"classes": names, "repeats": len(reports),
            "accuracy": float(np.mean([r["accuracy"] for r in reports])),
            "macro_f1": float(np.mean([r["macro_f1"] for r in reports])),
            "per_class": {name: {"recall": float(np.mean(values)),
                                 "recall_min": float(np.min(values))}
                          for name, values in recalls.items()}}


def calibrate(labels: np.ndarray, probs: np.ndarray, grouping: classes.Grouping, *,
              objective: str, folds: int, repeats: int = 5, seed: int = 0) -> dict:
    """Offsets fitted on all of ``(probs, labels)`` and the reports: uncalibrated, cross-fitted
    (honest; averaged over ``repeats`` fold assignments, each repeat also kept) and in-sample
    (optimistic)."""
    reference = reference_recall(objective, grouping)
    fit = {"objective": "balanced" if reference is None else "reference",
           "reference": reference}
    offsets = calibration.fit_offsets(probs, labels, seed=seed, **fit)
    repeated = [report_of(labels, calibration.cross_fit(probs, labels, folds=folds,
                                                        seed=seed + 100 * r, **fit)[0], grouping)
                for r in range(repeats)]
    return {"offsets": dict(zip(grouping.class_names, offsets.round(4).tolist())),
            "reports": {"uncalibrated": report_of(labels, probs, grouping),
                        "cross_fitted": mean_report(repeated),
                        "in_sample": report_of(labels, calibration.apply_offsets(probs, offsets),
                                               grouping)},
            "cross_fitted_repeats": repeated}


def calibration_json(classifier: Classifier, data: FerData, split: str,
                     grouping: classes.Grouping, *, objective: str, folds: int, repeats: int,
                     checkpoint: str, tta: bool = False) -> dict:
    """What ``experiments.calibrate`` writes: :func:`calibrate` of ``classifier`` on
    ``split``, with the reference and how it was fitted."""
    if folds < 2 or repeats < 1:
        raise FerError(f"need --folds >= 2 and --repeats >= 1, got {folds} and {repeats}")
    reference = reference_recall(objective, grouping)
    labels, probs = predict_split(classifier, data.split(split), grouping, tta=tta)
    result = calibrate(labels, probs, grouping, objective=objective, folds=folds,
                       repeats=repeats)
    return {**result, "grouping": grouping.name, "objective": objective,
            "reference": None if reference is None else
            dict(zip(grouping.class_names, reference.tolist())),
            "folds": folds, "repeats": repeats, "model": classifier.description,
            "data": data.source, "synthetic": data.synthetic, "split": split, "n": len(labels),
            "tta": tta, "checkpoint": checkpoint, "steps": classifier.steps}


# ----------------------------------------------------------------------------- flat vs two-tier
def compare_models(flat: Classifier, model: Classifier, data: FerData, *, tta: bool,
                   checkpoint: str, calibration_objective: str | None,
                   calibration_folds: int) -> dict:
    """Scores a flat and a two-tier model (both routings) on val and, when present, test: in
    the setting and, for the 7-class setting, also read as 6 classes (the seed's setting);
    each two-tier member on its own grouping; the 6-class decisions calibrated toward
    ``calibration_objective`` (fitted and cross-fitted on val, applied to test). Every network
    runs once per split: the readings, both routings and the member scores share its
    predictions."""
    setting = model.grouping.name
    other = "hard" if model.routing == "soft" else "soft"
    views = [setting] + (["six"] if setting == "seven" else [])
    splits = [name for name in ("val", "test") if data.has(name)]
    out = {"splits": splits, "views": views, "checkpoint": checkpoint,
           "routing": model.routing, "models": {}, "members": {}}
    six: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}  # (model, split) -> readings
    for split_name in splits:
        split = data.split(split_name)
        members = model.member_probabilities(split.images, tta=tta, progress="predict")
        probs = {"flat": (flat.grouping, flat.probabilities(split.images, tta=tta,
                                                            progress="predict [flat]"))}
        for name, routing in (("two_tier", model.routing), (f"two_tier_{other}", other)):
            probs[name] = (model.grouping, model.route(members, routing))
        for name, (grouping, model_probs) in probs.items():
            for view in views:
                reading = in_view(model_probs, split.labels, grouping, classes.grouping(view))
                out["models"].setdefault(name, {}).setdefault(split_name, {})[view] = \
                    report_of(*reading, classes.grouping(view))
                if view == "six":
                    six[name, split_name] = reading
        for name, member_probs in members.items():
            grouping = model.members[name].grouping
            out["members"].setdefault(name, {})[split_name] = report_of(
                *in_view(member_probs, split.labels, grouping, grouping), grouping)
    if calibration_objective and "six" in views and "val" in splits:
        out["calibration"] = {"objective": calibration_objective, "split": "val",
                              "folds": calibration_folds, "models": {}}
        for name in ("flat", "two_tier"):
            result = calibrate(*six[name, "val"], classes.SIX, objective=calibration_objective,
                               folds=calibration_folds)
            if "test" in splits:  # the offsets fitted on all of val, applied to test
                labels, test_probs = six[name, "test"]
                offsets = offsets_vector(result["offsets"], classes.SIX)
                result["reports"]["test"] = report_of(
                    labels, calibration.apply_offsets(test_probs, offsets), classes.SIX)
            out["calibration"]["models"][name] = result
    return out
