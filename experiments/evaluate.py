"""Scores a trained classifier (flat or two-tier) on one split: accuracy, macro-F1, per class.

Prints per-class precision, recall and F1 and writes, with ``--json``, the confusion matrix too.

    python -m experiments.evaluate --workdir DIR [--data PATH] [--split val|test] [--tta]
        [--grouping NAME] [--checkpoint best|latest] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from experiments.cli import add_data_argument, run_main
from fer_jax import classes, metrics
from fer_jax.errors import FerError

SYNTHETIC_NOTE = "SYNTHETIC DEFAULT DATA (not FER-2013): pass --data PATH for real results"


def evaluate(predictor, split, grouping: classes.Grouping, *, tta: bool = False) -> dict:
    """Classification report of ``predictor`` (see fer_jax.train.Predictor) on ``split``
    (canonical labels), in ``grouping``: rows outside it are dropped; a model trained on a
    larger grouping is read through :func:`fer_jax.two_tier.restrict`."""
    from fer_jax import train, two_tier

    split = train.encode_split(split, grouping)
    if len(split) == 0:
        raise FerError(f"no images of grouping {grouping.name!r} in this split")
    probs = predictor(split.images, tta=tta, progress="predict")
    if predictor.grouping != grouping:
        try:
            probs = two_tier.restrict(probs, predictor.grouping, grouping)
        except ValueError as error:
            raise FerError(f"cannot evaluate a {predictor.grouping.name!r} model in grouping "
                           f"{grouping.name!r}: {error}") from None
    confusion = metrics.confusion_matrix(split.labels, metrics.top1_predictions(probs),
                                         grouping.num_classes)
    return metrics.classification_report(confusion, grouping.class_names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.evaluate",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="run directory of a trained classifier")
    add_data_argument(parser)
    parser.add_argument("--split", choices=("val", "test"), default="test")
    parser.add_argument("--tta", action="store_true",
                        help="average predictions over flip and 2-pixel shifts")
    parser.add_argument("--grouping", default=None, choices=sorted(classes.GROUPINGS),
                        help="label setting to score in (default: the model's)")
    parser.add_argument("--checkpoint", choices=("best", "latest"), default="best",
                        help="best-by-val-accuracy (default) or latest checkpoint")
    parser.add_argument("--json", metavar="OUT", default=None, help="also write the report here")
    args = parser.parse_args(argv)

    from fer_jax import train
    from fer_jax.data import load

    workdir = pathlib.Path(args.workdir)
    if not workdir.is_dir():
        raise FerError(f"{workdir}: no such run directory")
    predictor = train.load_predictor(workdir, best=args.checkpoint == "best")
    data = load(args.data)
    grouping = classes.grouping(args.grouping) if args.grouping else predictor.grouping
    report = evaluate(predictor, data.split(args.split), grouping, tta=args.tta)
    report.update(split=args.split, tta=args.tta, grouping=grouping.name, data=data.source,
                  synthetic=data.synthetic, model=predictor.description)
    if data.synthetic:
        print(f"note: {SYNTHETIC_NOTE}", file=sys.stderr)
    print(f"{predictor.description} on {args.split} of {data.source}"
          f"{' with TTA' if args.tta else ''}:")
    print(metrics.format_report_table(report))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    run_main(main)
