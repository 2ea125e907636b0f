"""Fits per-class decision offsets of a trained classifier on a labelled split, scored honestly.

The offsets (fer_jax.calibration) move recall between classes without retraining, toward the
best mean recall (``--objective balanced``) or an operating point that beats a reference's
per-class recall (``--objective seed``: the seed's published 6-class recall). Fitted on the
same split they are scored on, numbers are optimistic, so the table also shows the
cross-fitted estimate: each of ``--folds`` stratified folds scored with offsets fitted on the
others, averaged over ``--repeats`` fold assignments (and the lowest repeat). The offsets
fitted on the whole split go to ``--out`` (default ``<workdir>/calibration_<objective>.json``),
for ``experiments.evaluate --calibration``.

    python -m experiments.calibrate --workdir DIR [--data PATH] [--split val]
        [--grouping six] [--objective seed|balanced] [--folds 2] [--repeats 5] [--tta]
        [--checkpoint best|latest] [--routing soft|hard] [--out JSON]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

from experiments import report as report_lib
from experiments.cli import check_output_file, run_main
from experiments.evaluate import (
    SYNTHETIC_NOTE,
    add_model_arguments,
    load_model,
    predict_split,
    report_of,
)
from fer_jax import calibration, classes, plots
from fer_jax.errors import FerError

REFERENCES = {"seed": report_lib.SEED_REFERENCE["recall"]}
OBJECTIVES = ("seed", "balanced")


def reference_recall(objective: str, grouping: classes.Grouping) -> np.ndarray | None:
    """The reference per-class recall of ``objective`` in ``grouping``'s class order."""
    if objective == "balanced":
        return None
    reference = REFERENCES[objective]
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


REPORT_LABELS = {"uncalibrated": "uncalibrated",
                 "cross_fitted": "calibrated, cross-fitted (mean)",
                 "in_sample": "calibrated, in-sample"}


def recall_rows(result: dict, grouping: classes.Grouping, reference) -> list[list[str]]:
    """Per class: reference recall (when any), the recall of each report and the lowest
    cross-fitted recall over the repeats; then accuracy and macro-F1."""
    reports = result["reports"]
    rows = [[name, *([report_lib.percent(reference[i])] if reference is not None else []),
             *(report_lib.percent(r["per_class"][name]["recall"]) for r in reports.values()),
             report_lib.percent(reports["cross_fitted"]["per_class"][name]["recall_min"])]
            for i, name in enumerate(grouping.class_names)]
    for metric in ("accuracy", "macro_f1"):
        rows.append([metric, *([""] if reference is not None else []),
                     *(report_lib.percent(r[metric]) for r in reports.values()), ""])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.calibrate",
                                     description=__doc__.splitlines()[0])
    add_model_arguments(parser, split="val", checkpoint="latest",
                        split_help="labelled split to fit on (default val: never fit on the "
                                   "test split you report)")
    parser.add_argument("--objective", choices=OBJECTIVES, default="seed")
    parser.add_argument("--folds", type=int, default=2, help="cross-fitting folds (>= 2)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="cross-fitting repeats, each with another fold assignment")
    parser.add_argument("--out", metavar="JSON", default=None)
    args = parser.parse_args(argv)
    out = check_output_file(args.out or pathlib.Path(args.workdir)
                            / f"calibration_{args.objective}.json", "--out")

    from fer_jax.data import load

    if args.folds < 2 or args.repeats < 1:
        raise FerError(f"need --folds >= 2 and --repeats >= 1, got {args.folds} and "
                       f"{args.repeats}")
    predictor, grouping = load_model(args)
    reference = reference_recall(args.objective, grouping)
    data = load(args.data, strict=not args.skip_bad)
    labels, probs = predict_split(predictor, data.split(args.split), grouping, tta=args.tta)
    result = calibrate(labels, probs, grouping, objective=args.objective,
                       folds=args.folds, repeats=args.repeats)
    result.update(grouping=grouping.name, objective=args.objective,
                  reference=None if reference is None else
                  dict(zip(grouping.class_names, reference.tolist())),
                  folds=args.folds, repeats=args.repeats, model=predictor.description,
                  data=data.source,
                  synthetic=data.synthetic, split=args.split, n=len(labels), tta=args.tta,
                  checkpoint=args.checkpoint)
    out.write_text(json.dumps(result, indent=1))
    figure = out.with_suffix(".png")
    plots.save_recall_bars_png(
        {REPORT_LABELS[k]: r for k, r in result["reports"].items() if k != "in_sample"}, figure,
        reference=None if reference is None else dict(zip(grouping.class_names, reference)),
        title=f"recall on {args.split}, {args.objective} offsets"
              f"{'; ticks: seed' if reference is not None else ''}")
    if data.synthetic:
        print(f"note: {SYNTHETIC_NOTE}", file=sys.stderr)
    print(f"{predictor.description} on {args.split} of {data.source} ({len(labels)} images"
          f"{', TTA' if args.tta else ''}), offsets for objective {args.objective!r}:")
    header = ["class", *(["seed"] if reference is not None else []),
              *(REPORT_LABELS[k] for k in result["reports"]), "cross-fitted (min)"]
    print(report_lib.text_table(header, recall_rows(result, grouping, reference)))
    print("offsets (added to log-probabilities): " +
          ", ".join(f"{k} {v:+.3f}" for k, v in result["offsets"].items()))
    print(f"cross-fitted: {args.folds} stratified folds, each scored with offsets fitted on "
          f"the others; mean and lowest over {args.repeats} fold assignments. "
          f"Written: {out}, {figure}")
    return 0


if __name__ == "__main__":
    run_main(main)
