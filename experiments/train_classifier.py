"""Trains a classifier from a config file, resuming from the workdir's latest checkpoint.

    python -m experiments.train_classifier --config experiments/configs/cpu.py \\
        [--workdir DIR] [--data PATH] [--config.num_epochs=5 --config.model=vgg13 ...]

The workdir defaults to checkpoints/<config name>. SIGTERM/SIGINT save a checkpoint and exit
with 128 + the signal number; rerun the same command to resume.
"""

from __future__ import annotations

import json

from absl import logging

from experiments.cli import (
    check_workdir,
    default_workdir,
    experiment_parser,
    parse_with_config,
    run_main,
)
from fer_jax import parallel, train
from fer_jax.errors import Interrupted


def main(argv: list[str] | None = None) -> int:
    parser = experiment_parser("python -m experiments.train_classifier",
                               __doc__.splitlines()[0], example="--config.num_epochs=5")
    args, config, config_path = parse_with_config(parser, argv)
    logging.set_verbosity(logging.ERROR)  # orbax's absl INFO/WARNING chatter
    parallel.maybe_initialize_distributed()  # before any computation touches a backend
    workdir = check_workdir(default_workdir(args.workdir, config_path))
    print(f"training {config.model} ({config.grouping}) in {workdir} on "
          f"{config.data.source or 'SYNTHETIC faces (no --data)'}", flush=True)
    summary = train.train_and_evaluate(config, workdir)
    print(json.dumps(summary))
    if summary["interrupted"]:
        raise Interrupted(f"training in {workdir}", summary["interrupted"])
    return 0


if __name__ == "__main__":
    run_main(main)
