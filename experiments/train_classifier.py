"""Trains a classifier from a config file, resuming from the workdir's latest checkpoint.

    python -m experiments.train_classifier --config experiments/configs/cpu.py \\
        [--workdir DIR] [--data PATH] [--config.num_epochs=5 --config.model=vgg13 ...]

The workdir defaults to checkpoints/<config name>. SIGTERM/SIGINT save a checkpoint and exit
with 128 + the signal number; rerun the same command to resume.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from absl import flags, logging
from ml_collections import config_flags

from experiments.cli import add_data_argument, run_main
from fer_jax import parallel, train
from fer_jax.errors import FerError


def parse_config(argv: list[str]):
    """``(config, config_path)`` from ``--config PATH`` and ``--config.key=value`` overrides."""
    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "experiment config file (get_config())",
                                    flag_values=flag_values, lock_config=True)
    try:
        flag_values(["train_classifier"] + argv)
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as error:
        raise FerError(f"bad --config arguments {argv}: {error}") from None
    if flag_values["config"].value is None:
        raise FerError("--config PATH is required (e.g. experiments/configs/smoke.py)")
    return flag_values.config, flag_values["config"].config_filename


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.train_classifier", description=__doc__.splitlines()[0],
        epilog="also: --config PATH (required; e.g. experiments/configs/cpu.py) and any "
               "--config.KEY=VALUE overrides (e.g. --config.num_epochs=5)")
    parser.add_argument("--workdir", default=None,
                        help="run directory (default: checkpoints/<config name>)")
    add_data_argument(parser)
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    config, config_path = parse_config(rest)
    logging.set_verbosity(logging.ERROR)  # orbax's absl INFO/WARNING chatter
    parallel.maybe_initialize_distributed()  # before any computation touches a backend
    if args.data is not None:
        config.data.source = args.data
    workdir = pathlib.Path(args.workdir or pathlib.Path("checkpoints") /
                           pathlib.Path(config_path).stem)
    print(f"training {config.model} ({config.grouping}) in {workdir} on "
          f"{config.data.source or 'SYNTHETIC faces (no --data)'}", flush=True)
    summary = train.train_and_evaluate(config, workdir)
    print(json.dumps(summary))
    return 128 + summary["interrupted"] if summary["interrupted"] else 0


if __name__ == "__main__":
    run_main(main)
