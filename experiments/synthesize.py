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
import pathlib

import numpy as np

from experiments.cli import check_output_file, run_main
from fer_jax import plots
from gan.sample import load_generators, parse_per_class

GRID_COLUMNS = 10


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.synthesize",
                                     description=__doc__.splitlines()[0])
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

    per_class = parse_per_class(args.per_class)
    generators = load_generators(args.workdir)
    synthetic = generators.sample(per_class, args.seed, args.truncation)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, images=synthetic.images, labels=synthetic.labels)
    print(f"wrote {len(synthetic)} images to {out}: "
          + ", ".join(f"{name} {count}" for name, count in synthetic.counts().items() if count))
    if args.grid:
        names = [name for name, count in per_class.items() if count]
        plots.save_image_grid_png(generators.grid(names, GRID_COLUMNS, args.seed,
                                                  args.truncation), args.grid,
                                  row_names=names, title=f"samples of {args.workdir}")
        print(f"wrote sample grid {args.grid}")
    return 0


if __name__ == "__main__":
    run_main(main)
