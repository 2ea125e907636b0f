"""Scores a trained classifier (flat or two-tier) on one split: accuracy, macro-F1, per class.

Prints per-class precision, recall and F1 and writes, with ``--json``, the confusion matrix too.

    python -m experiments.evaluate --workdir DIR [--data PATH] [--split val|test] [--tta]
        [--grouping NAME] [--checkpoint best|latest] [--routing soft|hard]
        [--calibration JSON] [--json OUT]

``DIR`` is a flat run or a two-tier checkpoint directory (``two_tier.json``).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

from experiments.cli import add_data_argument, run_main
from fer_jax import classes, metrics
from fer_jax.errors import FerError

SYNTHETIC_NOTE = "SYNTHETIC DEFAULT DATA (not FER-2013): pass --data PATH for real results"


def predict_split(predictor, split, grouping: classes.Grouping, *, tta: bool = False):
    """``(encoded split, probabilities)`` of ``predictor`` (see fer_jax.train.Predictor) on
    ``split`` (canonical labels) in ``grouping``: rows outside it are dropped; a model trained
    on a larger grouping is read through :func:`fer_jax.two_tier.restrict`."""
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
    return split, probs


def report_of(labels, probs, grouping: classes.Grouping) -> dict:
    """Classification report of top-1 predictions ``probs`` against encoded ``labels``."""
    confusion = metrics.confusion_matrix(labels, metrics.top1_predictions(probs),
                                         grouping.num_classes)
    return metrics.classification_report(confusion, grouping.class_names)


def evaluate(predictor, split, grouping: classes.Grouping, *, tta: bool = False,
             offsets=None) -> dict:
    """Classification report of ``predictor`` on ``split`` in ``grouping`` (see
    :func:`predict_split`); ``offsets``: per-class decision offsets
    (:mod:`fer_jax.calibration`) applied first."""
    split, probs = predict_split(predictor, split, grouping, tta=tta)
    if offsets is not None:
        from fer_jax import calibration

        probs = calibration.apply_offsets(probs, offsets)
    return report_of(split.labels, probs, grouping)


def load_offsets(path, grouping: classes.Grouping):
    """Per-class offsets from an ``experiments.calibrate`` JSON, in ``grouping``'s class
    order; a clear error when the file is unreadable or fitted for another grouping."""
    path = pathlib.Path(path)
    try:
        calibration = json.loads(path.read_text())
        fitted_for, offsets = calibration["grouping"], calibration["offsets"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise FerError(f"{path}: not a calibration file ({type(error).__name__}: {error})") \
            from None
    if fitted_for != grouping.name:
        raise FerError(f"{path}: offsets were fitted in grouping {fitted_for!r}; this evaluation "
                       f"is in {grouping.name!r} (pass --grouping {fitted_for})")
    return np.array([offsets[name] for name in grouping.class_names], np.float64)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.evaluate",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True,
                        help="run directory of a trained classifier (flat or two-tier)")
    add_data_argument(parser)
    parser.add_argument("--split", choices=("val", "test"), default="test")
    parser.add_argument("--tta", action="store_true",
                        help="average predictions over flip and 2-pixel shifts")
    parser.add_argument("--grouping", default=None, choices=sorted(classes.GROUPINGS),
                        help="label setting to score in (default: the model's)")
    parser.add_argument("--checkpoint", choices=("best", "latest"), default="best",
                        help="best-by-val-accuracy (default) or latest checkpoint")
    parser.add_argument("--routing", choices=("soft", "hard"), default=None,
                        help="two-tier models: routing (default: the model's own)")
    parser.add_argument("--calibration", metavar="JSON", default=None,
                        help="apply the per-class decision offsets of an experiments.calibrate "
                             "file")
    parser.add_argument("--json", metavar="OUT", default=None, help="also write the report here")
    args = parser.parse_args(argv)

    from fer_jax import two_tier
    from fer_jax.data import load

    workdir = pathlib.Path(args.workdir)
    if not workdir.is_dir():
        raise FerError(f"{workdir}: no such run directory")
    predictor = two_tier.load_classifier(workdir, best=args.checkpoint == "best",
                                         routing=args.routing)
    grouping = classes.grouping(args.grouping) if args.grouping else predictor.grouping
    offsets = load_offsets(args.calibration, grouping) if args.calibration else None
    data = load(args.data)
    report = evaluate(predictor, data.split(args.split), grouping, tta=args.tta, offsets=offsets)
    report.update(split=args.split, tta=args.tta, grouping=grouping.name, data=data.source,
                  synthetic=data.synthetic, model=predictor.description,
                  calibration=args.calibration)
    if data.synthetic:
        print(f"note: {SYNTHETIC_NOTE}", file=sys.stderr)
    print(f"{predictor.description} on {args.split} of {data.source}"
          f"{' with TTA' if args.tta else ''}"
          f"{f' with the offsets of {args.calibration}' if offsets is not None else ''}:")
    print(metrics.format_report_table(report))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    run_main(main)
