"""The accelerator check as one prepared command (logic in :mod:`studies.accel_check`).

    python -m experiments.accel_check --prepare [--data ZIP]   # here: .carry/, sizes, command
    python -m experiments.accel_check --data .carry/fer2013_images.zip --out "$OUT"  # there
    python -m experiments.accel_check --dry-run [--out DIR]    # here: same path, tiny runs

The run writes ``results.json`` (what finished, per part), ``check.log`` and figures under
``--out`` (default ``$OUT``, else a new temporary folder). ``--parts`` runs some parts only.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import sys
import tempfile

from experiments.cli import run_main
from fer_jax.errors import FerError
from studies import accel_check

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m experiments.accel_check",
                                     description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--prepare", action="store_true",
                      help=f"fill {accel_check.CARRY}/ with the data and wheels, check the "
                           "size budget and print the device command")
    mode.add_argument("--dry-run", action="store_true",
                      help="run the check here on the synthetic faces with tiny models")
    parser.add_argument("--data", metavar="PATH", default=None,
                        help="FER-2013 zip. --prepare: default $FER_JAX_DATA, else "
                             "../shared/data/fer2013/fer2013_images.zip; the run: default the "
                             "synthetic faces")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="results folder (default $OUT, else a new temporary folder)")
    parser.add_argument("--workdir", metavar="DIR", default=None,
                        help="training runs (default: a temporary folder, removed at the end)")
    parser.add_argument("--parts", nargs="+", choices=accel_check.PARTS,
                        default=list(accel_check.PARTS), help="parts to run, in this order")
    parser.add_argument("--part", choices=accel_check.PARTS, help=argparse.SUPPRESS)
    parser.add_argument("--plan", choices=sorted(accel_check.PLANS), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def base_configs() -> dict:
    """The accelerator configs the parts start from."""
    from experiments.configs import accel, gan_accel, pipeline_accel

    return {"classifier": accel.get_config(), "two_tier": pipeline_accel.get_config().two_tier,
            "gan": gan_accel.get_config()}


def print_prepared(prepared: dict) -> None:
    mib = lambda n: f"{n / 2**20:.2f} MiB"
    print(f"working tree (tracked + untracked, not ignored): {mib(prepared['tree_bytes'])}")
    print(f"{accel_check.CARRY}/ (data + wheels): {mib(prepared['carry_bytes'])}")
    print(f"total: {mib(prepared['total_bytes'])} ({prepared['total_bytes']} bytes) of "
          f"{mib(prepared['limit_bytes'])}; "
          f"{mib(prepared['limit_bytes'] - prepared['total_bytes'])} left")
    print(f"wheels: {', '.join(prepared['wheels']) or 'none'}")
    print(f"device run: carry={prepared['carry']} timeout_s={prepared['timeout_s']}")
    print(f"command ({len(prepared['command'])} characters):\n{prepared['command']}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.prepare:
        data = args.data or accel_check.default_data_path(REPO_ROOT)
        print_prepared(accel_check.prepare(REPO_ROOT, data))
        return 0
    out = pathlib.Path(args.out or os.environ.get("OUT")
                       or tempfile.mkdtemp(prefix="accel_check_out-"))
    if args.part:
        if not (args.plan and args.workdir):
            raise FerError("--part needs --plan and --workdir")
        accel_check.run_part(args.part, accel_check.PLANS[args.plan], base_configs(),
                             data=args.data, workdir=pathlib.Path(args.workdir), out=out)
        return 0
    plan = accel_check.DRY_RUN if args.dry_run else accel_check.DEVICE
    workdir = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="accel_check-"))
    print(f"accelerator check ({plan.name} plan, {plan.total_s:.0f} s planned): results in "
          f"{out}, runs in {workdir}", flush=True)
    try:
        results = accel_check.run_check(plan, [sys.executable, "-m", "experiments.accel_check"],
                                        data=args.data, out=out, workdir=workdir,
                                        parts=args.parts)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"wrote {out / accel_check.RESULTS} in {results['wall_s']:.0f} s")
    return 0 if all(p["status"] == "done" for p in results["parts"].values()) else 1


if __name__ == "__main__":
    run_main(main)
