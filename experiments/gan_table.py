"""One table of GAN evaluations: a row per ``gan_eval.json`` (or GAN run directory).

Each row: truncation, the val it was measured against, CAS (beside the same classifier trained
on real faces), label sensitivity with its 95% interval, recognizability, precision / recall,
FER-FID (floor), KID with its interval, how many classes' KID is within ``--kid-ratio`` times
their real-vs-real floor (the others listed, worst first) and memorisation.

    python -m experiments.gan_table PATH [PATH ...] [--kid-ratio R] [--markdown] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import pathlib

from experiments.cli import check_output_file, run_main
from fer_jax.report import markdown_table, percent, text_table
from gan.quality import GAN_EVAL, read_gan_eval, summary_row

HEADER = ("run", "val", "trunc", "CAS % (real)", "label sensitivity % [95% CI]",
          "recognizability %", "P / R", "FER-FID (floor)", "KID [95% CI]", "KID within ratio",
          "memorisation; copies")


def val_name(data: str | None) -> str:
    """What val was: the whole split, or without its copies of training faces."""
    marker = "(val without its "
    if data and marker in data:
        return f"without {data.split(marker)[1].split()[0]} train copies"
    return "all"


def row_name(path: str) -> str:
    """A row's name: the run directory's (also for its ``gan_eval.json``), else the file's stem."""
    path = pathlib.Path(path)
    if path.name == GAN_EVAL:
        path = path.parent
    return path.resolve().name if path.is_dir() else path.stem


def row_cells(name: str, row: dict, kid_ratio: float) -> list[str]:
    def number(value, digits: int) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    low, high = row["label_sensitivity_ci"] or (None, None)
    outside = row["outside_kid_ratio"]
    ratios = row["kid_ratios"]
    listed = ", ".join(f"{c} {ratios[c]:.1f}x" if ratios[c] is not None else f"{c} (no floor)"
                       for c in outside)
    return [name, val_name(row["data"]), f"{row['truncation'] or 0:g}",
            f"{percent(row['cas'])} ({percent(row['cas_real_reference'])})",
            f"{percent(row['label_sensitivity'])} [{percent(low)}, {percent(high)}]",
            percent(row["recognizability"]),
            f"{number(row['precision'], 2)} / {number(row['recall'], 2)}",
            f"{number(row['fid'], 2)} ({number(row['fid_floor'], 2)})",
            f"{row['kid']:.4f} [{row['kid_ci'][0]:.4f}, {row['kid_ci'][1]:.4f}]",
            f"{row['classes'] - len(outside)} of {row['classes']} within {kid_ratio:g}x"
            + (f" ({listed})" if outside else ""),
            f"{number(row['memorization_ratio'], 2)}; {row['near_copies']}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.gan_table",
                                     description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="gan_eval.json files or GAN run directories holding one")
    parser.add_argument("--kid-ratio", type=float, default=3.0,
                        help="a class's KID counts as close to real when at most this many "
                             "times its real-vs-real floor (issue #16's target: 3)")
    parser.add_argument("--markdown", action="store_true", help="a Markdown table")
    parser.add_argument("--json", metavar="OUT", default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    if args.json:
        check_output_file(args.json, "--json")
    rows = {path: summary_row(read_gan_eval(path), kid_ratio=args.kid_ratio)
            for path in args.paths}
    cells = [row_cells(row_name(path), row, args.kid_ratio) for path, row in rows.items()]
    print((markdown_table if args.markdown else text_table)(HEADER, cells))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    run_main(main)
