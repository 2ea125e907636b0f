"""Scores a trained classifier (flat or two-tier) on one split: accuracy, macro-F1, per class.

Prints per-class precision, recall and F1, and which checkpoint (step) it scored; writes, with
``--json``, the report with the confusion matrix (:func:`fer_jax.evaluation.evaluation_json`).

    python -m experiments.evaluate --workdir DIR [--data PATH] [--split val|test] [--tta]
        [--grouping NAME] [--checkpoint latest|best] [--routing soft|hard]
        [--calibration JSON] [--json OUT]

``DIR`` is a flat run or a two-tier checkpoint directory (``two_tier.json``).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from experiments.cli import add_model_arguments, check_output_file, load_model, run_main
from fer_jax import evaluation, metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.evaluate",
                                     description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_model_arguments(parser, split="test")
    parser.add_argument("--calibration", metavar="JSON", default=None,
                        help="apply the per-class decision offsets of an experiments.calibrate "
                             "file")
    parser.add_argument("--json", metavar="OUT", default=None, help="also write the report here")
    args = parser.parse_args(argv)
    if args.json:
        check_output_file(args.json, "--json")

    from fer_jax.data import load

    classifier, grouping = load_model(args)
    data = load(args.data, strict=not args.skip_bad)
    report = evaluation.evaluation_json(classifier, data, args.split, grouping,
                                        checkpoint=args.checkpoint, tta=args.tta,
                                        calibration_path=args.calibration,
                                        data_path=args.data, workdir=args.workdir)
    if data.synthetic:
        print(f"note: {evaluation.SYNTHETIC_NOTE}", file=sys.stderr)
    print(f"{classifier.description} on {args.split} of {data.source}"
          f"{' with TTA' if args.tta else ''}"
          f"{f' with the offsets of {args.calibration}' if args.calibration else ''}:")
    print(metrics.format_report_table(report))
    if (unseen := report.get("without_train_copies")) and unseen["accuracy"] is not None:
        print(metrics.format_without_copies(unseen["left_out"], args.split, unseen["accuracy"],
                                            unseen["macro_f1"]))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    run_main(main)
