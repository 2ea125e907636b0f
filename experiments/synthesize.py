"""Writes labelled synthetic faces from a trained GAN as an .npz for classifier training.

    python -m experiments.synthesize --workdir DIR --per-class disgust=4000,fear=1000 \\
        --out FILE.npz [--seed S] [--truncation T] [--grid PNG]

The .npz holds ``images`` uint8 [N,48,48] and canonical int32 ``labels`` [N] (read by
``fer_jax.data.sampling.load_synthetic_npz``); ``--grid`` also saves a PNG with one row per
class. DIR is a conditional GAN run or a folder of per-class DCGAN runs. ``--truncation T``
draws latents from the normal truncated to [-T, T]: more typical, less varied faces.
"""

from __future__ import annotations

import argparse

from experiments.cli import check_output_file, run_main
from gan.sample import parse_per_class, synthesize


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.synthesize",
                                     description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--workdir", required=True, help="GAN run directory (train_gan)")
    parser.add_argument("--per-class", required=True, metavar="CLASS=N,...",
                        help="images per class, e.g. disgust=4000,fear=1000")
    parser.add_argument("--out", required=True, help="output .npz")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--truncation", type=float, default=0.0, metavar="T",
                        help="truncate latents to [-T, T] (0: no truncation)")
    parser.add_argument("--grid", metavar="PNG", help="also save a sample grid, one row per class")
    args = parser.parse_args(argv)
    for flag, path in (("--out", args.out), ("--grid", args.grid)):
        if path:
            check_output_file(path, flag)
    synthesize(args.workdir, parse_per_class(args.per_class), args.out, seed=args.seed,
               truncation=args.truncation, grid=args.grid)
    return 0


if __name__ == "__main__":
    run_main(main)
