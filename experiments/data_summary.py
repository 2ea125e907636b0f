"""Counts per split and class of a FER-2013 source (or of the synthetic default), and its
exact copies (val faces that are training faces, repeats within train).

    python -m experiments.data_summary [--data PATH] [--json] [--no-cache] [--skip-bad]
"""

from __future__ import annotations

import argparse
import json
import sys

from experiments.cli import add_data_argument, run_main
from fer_jax.classes import EMOTIONS
from fer_jax.data import SPLITS, FerData, load
from fer_jax.data.duplicates import duplicate_report, format_duplicate_report

SKIPPED_SHOWN = 5
SYNTHETIC_NOTE = ("SYNTHETIC DEFAULT DATA: procedural faces, NOT FER-2013 "
                  "(pass --data PATH for the real dataset)")


def format_table(data: FerData) -> str:
    """Classes as rows, splits (+ total) as columns, with a totals row."""
    counts = data.counts()

    def row(name: str, values: list[int]) -> str:
        return f"{name:<10}" + "".join(f"{v:>8}" for v in values) + f"{sum(values):>8}"

    header = f"{'class':<10}" + "".join(f"{s:>8}" for s in SPLITS) + f"{'total':>8}"
    rule = "-" * len(header)
    lines = [header, rule]
    lines += [row(name, [counts[split][name] for split in SPLITS]) for name in EMOTIONS]
    lines += [rule, row("total", [sum(counts[split].values()) for split in SPLITS])]
    return "\n".join(lines)


def missing_splits_note(data: FerData) -> str | None:
    """Says why a real source has no test split (it holds no PrivateTest records)."""
    if data.synthetic or data.has("test"):
        return None
    return ("note: test = 0: this source holds no PrivateTest records, so it has no test split "
            "(val is its PublicTest, or carved from train); evaluate with --split val")


def format_skipped(data: FerData) -> str:
    lines = [f"skipped records: {len(data.skipped)}"]
    lines += [f"  {record}" for record in data.skipped[:SKIPPED_SHOWN]]
    if len(data.skipped) > SKIPPED_SHOWN:
        lines.append(f"  ... and {len(data.skipped) - SKIPPED_SHOWN} more")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.data_summary",
                                     description=__doc__.splitlines()[0])
    add_data_argument(parser)
    parser.add_argument("--json", action="store_true",
                        help="print only one JSON object {split: {class: count}} on stdout")
    parser.add_argument("--no-cache", action="store_true",
                        help="read the source again instead of using the parsed-array cache")
    args = parser.parse_args(argv)
    data = load(args.data, strict=not args.skip_bad, cache_dir=False if args.no_cache else None)
    if args.json:
        print(json.dumps(data.counts()))
        if data.synthetic:
            print(f"note: {SYNTHETIC_NOTE}", file=sys.stderr)
        if note := missing_splits_note(data):
            print(note, file=sys.stderr)
        if data.skipped:
            print(format_skipped(data), file=sys.stderr)
        return 0
    if data.synthetic:
        print(SYNTHETIC_NOTE)
    print(f"source: {data.source}")
    print(format_table(data))
    if note := missing_splits_note(data):
        print(note)
    if data.has("train"):
        print(format_duplicate_report(duplicate_report(data)))
    print(format_skipped(data))
    return 0


if __name__ == "__main__":
    run_main(main)
