"""Fits per-class decision offsets of a trained classifier on a labelled split, scored honestly.

The offsets (fer_jax.calibration) move recall between classes without retraining, toward the
best mean recall (``--objective balanced``) or an operating point that beats a reference's
per-class recall (``--objective seed``: the seed's published 6-class recall). Fitted on the
same split they are scored on, numbers are optimistic, so the table also shows the
cross-fitted estimate: each of ``--folds`` stratified folds scored with offsets fitted on the
others. The offsets fitted on the whole split go to ``--out`` (default
``<workdir>/calibration_<objective>.json``), for ``experiments.evaluate --calibration``.

    python -m experiments.calibrate --workdir DIR [--data PATH] [--split val]
        [--grouping six] [--objective seed|balanced] [--folds 2] [--tta]
        [--checkpoint best|latest] [--routing soft|hard] [--out JSON]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

from experiments import report as report_lib
from experiments.cli import add_data_argument, run_main
from experiments.evaluate import SYNTHETIC_NOTE, predict_split, report_of
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


def calibrate(labels: np.ndarray, probs: np.ndarray, grouping: classes.Grouping, *,
              objective: str, folds: int, seed: int = 0) -> dict:
    """Offsets fitted on all of ``(probs, labels)`` and the reports: uncalibrated, cross-fitted
    (honest) and in-sample (optimistic)."""
    reference = reference_recall(objective, grouping)
    fit = {"objective": "balanced" if reference is None else "reference",
           "reference": reference}
    offsets = calibration.fit_offsets(probs, labels, seed=seed, **fit)
    cross_fitted, fold_offsets = calibration.cross_fit(probs, labels, folds=folds, seed=seed,
                                                       **fit)
    return {"offsets": dict(zip(grouping.class_names, offsets.round(4).tolist())),
            "fold_offsets": [dict(zip(grouping.class_names, o.round(4).tolist()))
                             for o in fold_offsets],
            "reports": {"uncalibrated": report_of(labels, probs, grouping),
                        "cross_fitted": report_of(labels, cross_fitted, grouping),
                        "in_sample": report_of(labels, calibration.apply_offsets(probs, offsets),
                                               grouping)}}


REPORT_LABELS = {"uncalibrated": "uncalibrated", "cross_fitted": "calibrated, cross-fitted",
                 "in_sample": "calibrated, in-sample"}


def recall_rows(result: dict, grouping: classes.Grouping, reference) -> list[list[str]]:
    """Per class: reference recall (when any) and the recall of each report; then accuracy."""
    reports = result["reports"]
    rows = [[name, *([report_lib.percent(reference[i])] if reference is not None else []),
             *(report_lib.percent(r["per_class"][name]["recall"]) for r in reports.values())]
            for i, name in enumerate(grouping.class_names)]
    for metric in ("accuracy", "macro_f1"):
        rows.append([metric, *([""] if reference is not None else []),
                     *(report_lib.percent(r[metric]) for r in reports.values())])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.calibrate",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True,
                        help="run directory of a trained classifier (flat or two-tier)")
    add_data_argument(parser)
    parser.add_argument("--split", choices=("val", "test"), default="val",
                        help="labelled split to fit on (default val: never fit on the test "
                             "split you report)")
    parser.add_argument("--grouping", default=None, choices=sorted(classes.GROUPINGS),
                        help="label setting (default: the model's; 'seed' needs six)")
    parser.add_argument("--objective", choices=OBJECTIVES, default="seed")
    parser.add_argument("--folds", type=int, default=2, help="cross-fitting folds (>= 2)")
    parser.add_argument("--tta", action="store_true",
                        help="average predictions over flip and 2-pixel shifts")
    parser.add_argument("--checkpoint", choices=("best", "latest"), default="latest")
    parser.add_argument("--routing", choices=("soft", "hard"), default=None,
                        help="two-tier models: routing (default: the model's own)")
    parser.add_argument("--out", metavar="JSON", default=None)
    args = parser.parse_args(argv)

    from fer_jax import two_tier
    from fer_jax.data import load

    workdir = pathlib.Path(args.workdir)
    if not workdir.is_dir():
        raise FerError(f"{workdir}: no such run directory")
    if args.folds < 2:
        raise FerError(f"--folds must be at least 2, got {args.folds}")
    predictor = two_tier.load_classifier(workdir, best=args.checkpoint == "best",
                                         routing=args.routing)
    grouping = classes.grouping(args.grouping) if args.grouping else predictor.grouping
    reference = reference_recall(args.objective, grouping)
    data = load(args.data)
    split, probs = predict_split(predictor, data.split(args.split), grouping, tta=args.tta)
    result = calibrate(split.labels, probs, grouping, objective=args.objective,
                       folds=args.folds)
    out = pathlib.Path(args.out or workdir / f"calibration_{args.objective}.json")
    result.update(grouping=grouping.name, objective=args.objective,
                  reference=None if reference is None else
                  dict(zip(grouping.class_names, reference.tolist())),
                  folds=args.folds, model=predictor.description, data=data.source,
                  synthetic=data.synthetic, split=args.split, n=len(split), tta=args.tta,
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
    print(f"{predictor.description} on {args.split} of {data.source} ({len(split)} images"
          f"{', TTA' if args.tta else ''}), offsets for objective {args.objective!r}:")
    header = ["class", *(["seed"] if reference is not None else []),
              *(REPORT_LABELS[k] for k in result["reports"])]
    print(report_lib.text_table(header, recall_rows(result, grouping, reference)))
    print("offsets (added to log-probabilities): " +
          ", ".join(f"{k} {v:+.3f}" for k, v in result["offsets"].items()))
    print(f"cross-fitted: {args.folds} stratified folds, each scored with offsets fitted on "
          f"the others. Written: {out}, {figure}")
    return 0


if __name__ == "__main__":
    run_main(main)
