"""Compares two trained classifiers on the same images: is A better than B, measurably?

Prints, for accuracy (with McNemar's exact p), macro-F1 and disgust's average precision, both
models' values, the difference A - B and its 95% paired bootstrap CI, and "A beats B" only where
that CI excludes 0 ("no measurable difference" otherwise). ``--split test`` appends a record to
each model's test ledger (``<DIR>/test_ledger.jsonl``).

    python -m experiments.compare --a DIR --b DIR [--data PATH] [--split val|test] [--tta]
        [--checkpoint latest|best] [--resamples N] [--seed S] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import pathlib

from experiments.cli import add_data_argument, run_main
from fer_jax.errors import FerError
from fer_jax.inference import CHECKPOINTS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.compare",
                                     description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--a", required=True, metavar="DIR", help="run directory of model A")
    parser.add_argument("--b", required=True, metavar="DIR", help="run directory of model B")
    add_data_argument(parser)
    parser.add_argument("--split", choices=("val", "test"), default="val",
                        help="labelled split to compare on (test: once, recorded in the ledgers)")
    parser.add_argument("--tta", action="store_true",
                        help="average predictions over flip and 2-pixel shifts")
    parser.add_argument("--checkpoint", choices=CHECKPOINTS, default="latest",
                        help="each model's final (latest) checkpoint, or its best by val accuracy")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--json", metavar="OUT", default=None, help="also write the comparison")
    args = parser.parse_args(argv)

    from fer_jax import comparison, inference
    from fer_jax.data import load

    for workdir in (args.a, args.b):
        if not pathlib.Path(workdir).is_dir():
            raise FerError(f"{workdir}: no such run directory")
    a, b = (inference.load(workdir, args.checkpoint) for workdir in (args.a, args.b))
    data = load(args.data, strict=not args.skip_bad)
    result = comparison.compare(a, b, data, args.split, data_path=args.data,
                                workdirs=(args.a, args.b), tta=args.tta,
                                resamples=args.resamples, seed=args.seed)
    print(comparison.format_comparison(result))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    run_main(main)
