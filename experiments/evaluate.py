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

from experiments.cli import add_data_argument, check_output_file, run_main
from fer_jax import calibration, classes, metrics
from fer_jax.errors import FerError

SYNTHETIC_NOTE = "SYNTHETIC DEFAULT DATA (not FER-2013): pass --data PATH for real results"


def in_view(probs: np.ndarray, canonical_labels: np.ndarray, source: classes.Grouping,
            view: classes.Grouping) -> tuple[np.ndarray, np.ndarray]:
    """``(encoded labels, probabilities)`` of the rows of ``view``'s classes, from a model's
    probabilities over ``source`` classes for images with ``canonical_labels``; a model of a
    larger grouping is read through :func:`fer_jax.two_tier.restrict`."""
    from fer_jax import two_tier

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


def predict_split(predictor, split, grouping: classes.Grouping, *, tta: bool = False):
    """``(encoded labels, probabilities)`` of ``predictor`` (see fer_jax.inference.Predictor) on
    ``split`` (canonical labels), read in ``grouping`` (see :func:`in_view`)."""
    probs = predictor(split.images, tta=tta, progress="predict")
    return in_view(probs, split.labels, predictor.grouping, grouping)


def report_of(labels, probs, grouping: classes.Grouping) -> dict:
    """Classification report of top-1 predictions ``probs`` against encoded ``labels``."""
    confusion = metrics.confusion_matrix(labels, metrics.top1_predictions(probs),
                                         grouping.num_classes)
    return metrics.classification_report(confusion, grouping.class_names)


def offsets_vector(offsets: dict, grouping: classes.Grouping) -> np.ndarray:
    """``{class: offset}`` (as ``experiments.calibrate`` writes them) in ``grouping``'s order."""
    return np.array([offsets[name] for name in grouping.class_names], np.float64)


def evaluate(predictor, split, grouping: classes.Grouping, *, tta: bool = False,
             offsets=None) -> dict:
    """Classification report of ``predictor`` on ``split`` in ``grouping`` (see
    :func:`predict_split`); ``offsets``: per-class decision offsets
    (:mod:`fer_jax.calibration`) applied first."""
    labels, probs = predict_split(predictor, split, grouping, tta=tta)
    if offsets is not None:
        probs = calibration.apply_offsets(probs, offsets)
    return report_of(labels, probs, grouping)


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


def add_model_arguments(parser: argparse.ArgumentParser, *, split: str, checkpoint: str,
                        split_help: str = "labelled split to score") -> None:
    """The options naming a trained model and how to read it (shared with
    ``experiments.calibrate``): ``--workdir``, ``--data``, ``--split``, ``--tta``,
    ``--grouping``, ``--checkpoint``, ``--routing``; ``split`` and ``checkpoint`` are defaults."""
    parser.add_argument("--workdir", required=True,
                        help="run directory of a trained classifier (flat or two-tier)")
    add_data_argument(parser)
    parser.add_argument("--split", choices=("val", "test"), default=split, help=split_help)
    parser.add_argument("--tta", action="store_true",
                        help="average predictions over flip and 2-pixel shifts")
    parser.add_argument("--grouping", default=None, choices=sorted(classes.GROUPINGS),
                        help="label setting to score in (default: the model's)")
    parser.add_argument("--checkpoint", choices=("best", "latest"), default=checkpoint,
                        help=f"best-by-val-accuracy or latest checkpoint (default {checkpoint})")
    parser.add_argument("--routing", choices=("soft", "hard"), default=None,
                        help="two-tier models: routing (default: the model's own)")


def load_model(args: argparse.Namespace):
    """``(predictor, grouping)`` named by :func:`add_model_arguments`' options: a flat or
    two-tier model, read in ``--grouping`` (default: its own)."""
    from fer_jax import two_tier

    workdir = pathlib.Path(args.workdir)
    if not workdir.is_dir():
        raise FerError(f"{workdir}: no such run directory")
    predictor = two_tier.load_classifier(workdir, best=args.checkpoint == "best",
                                         routing=args.routing)
    return predictor, classes.grouping(args.grouping) if args.grouping else predictor.grouping


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.evaluate",
                                     description=__doc__.splitlines()[0])
    add_model_arguments(parser, split="test", checkpoint="best")
    parser.add_argument("--calibration", metavar="JSON", default=None,
                        help="apply the per-class decision offsets of an experiments.calibrate "
                             "file")
    parser.add_argument("--json", metavar="OUT", default=None, help="also write the report here")
    args = parser.parse_args(argv)
    if args.json:
        check_output_file(args.json, "--json")

    from fer_jax.data import load

    predictor, grouping = load_model(args)
    offsets = load_offsets(args.calibration, grouping) if args.calibration else None
    data = load(args.data, strict=not args.skip_bad)
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
