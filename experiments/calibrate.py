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
        [--checkpoint latest|best] [--routing soft|hard] [--out JSON]
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from experiments.cli import add_model_arguments, check_output_file, load_model, run_main
from fer_jax import evaluation, plots, report, run_guard


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.calibrate",
                                     description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_model_arguments(parser, split="val",
                        split_help="labelled split to fit on (val: never fit on the test split "
                                   "you report)")
    parser.add_argument("--objective", choices=evaluation.OBJECTIVES, default="seed")
    parser.add_argument("--folds", type=int, default=2, help="cross-fitting folds (>= 2)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="cross-fitting repeats, each with another fold assignment")
    parser.add_argument("--out", metavar="JSON", default=None,
                        help="offsets file (None: <workdir>/calibration_<objective>.json)")
    args = parser.parse_args(argv)
    out = check_output_file(args.out or pathlib.Path(args.workdir)
                            / f"calibration_{args.objective}.json", "--out")

    from fer_jax.data import load

    classifier, grouping = load_model(args)
    evaluation.reference_recall(args.objective, grouping)  # a missing reference fails early
    data = load(args.data, strict=not args.skip_bad)
    result = evaluation.calibration_json(classifier, data, args.split, grouping,
                                         objective=args.objective, folds=args.folds,
                                         repeats=args.repeats, checkpoint=args.checkpoint,
                                         tta=args.tta)
    run_guard.write_json(out, result)
    figure = out.with_suffix(".png")
    plots.save_recall_bars_png(
        {report.CALIBRATION_LABELS[k]: r for k, r in result["reports"].items()
         if k != "in_sample"}, figure, reference=result["reference"],
        title=f"recall on {args.split}, {args.objective} offsets"
              f"{'; ticks: seed' if result['reference'] is not None else ''}")
    if data.synthetic:
        print(f"note: {evaluation.SYNTHETIC_NOTE}", file=sys.stderr)
    print(f"{classifier.description} on {args.split} of {data.source} ({result['n']} images"
          f"{', TTA' if args.tta else ''}), offsets for objective {args.objective!r}:")
    print(report.calibration_table(result))
    print("offsets (added to log-probabilities): " +
          ", ".join(f"{k} {v:+.3f}" for k, v in result["offsets"].items()))
    print(f"cross-fitted: {args.folds} stratified folds, each scored with offsets fitted on "
          f"the others; mean and lowest over {args.repeats} fold assignments. "
          f"Written: {out}, {figure}")
    return 0


if __name__ == "__main__":
    run_main(main)
