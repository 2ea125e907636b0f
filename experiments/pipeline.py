"""Runs the whole project: data, GAN, synthetic faces, training mix, flat and two-tier models.

Stages: data -> conditional GAN -> judge (a classifier trained on the real training split) ->
synthetic minority faces, mixed only for the classes the judge recognizes
(``config.synthesize.min_recognizability``) -> training mix -> flat and two-tier classifiers ->
evaluation (GAN metrics on faces from a seed stream of their own) -> report
(:mod:`studies.pipeline`).

    python -m experiments.pipeline [--data PATH] [--config experiments/configs/pipeline_X.py]
        [--workdir DIR] [--until STAGE] [--recompute] [--config.key=value ...]

Defaults: ``pipeline_default`` on the embedded SYNTHETIC faces, workdir
``checkpoints/pipeline``. Each stage records its outputs and the fingerprint of what it read
in ``stages/<stage>/`` when it finishes; a rerun skips finished stages, refuses a stage whose
config or upstream outputs changed since (naming the changed keys; ``--recompute`` redoes it
and what depends on it), and a stage that was killed continues from its checkpoints. SIGTERM
or SIGINT stop after saving, with exit code 128 + the signal. The workdir ends up with
``report.md``, ``results.json`` and the figures it links.
"""

from __future__ import annotations

import json
import pathlib
import time

from experiments.cli import check_workdir, experiment_parser, parse_with_config, run_main
from fer_jax import report
from studies.pipeline import STAGES, Pipeline

DEFAULT_CONFIG = pathlib.Path(__file__).parent / "configs" / "pipeline_default.py"
DEFAULT_WORKDIR = pathlib.Path("checkpoints") / "pipeline"


def parse_args(argv: list[str] | None):
    parser = experiment_parser("python -m experiments.pipeline", __doc__.splitlines()[0],
                               example="--config.flat.num_epochs=3",
                               default_config=DEFAULT_CONFIG, default_workdir=DEFAULT_WORKDIR)
    parser.add_argument("--until", metavar="STAGE", default=None,
                        help=f"stop after this stage ({', '.join(STAGES)})")
    parser.add_argument("--recompute", action="store_true",
                        help="redo finished stages whose config or upstream outputs changed "
                             "(default: refuse them, naming the changed keys)")
    args, config, _ = parse_with_config(parser, argv, DEFAULT_CONFIG)
    return args, config


def main(argv: list[str] | None = None) -> int:
    args, config = parse_args(argv)
    check_workdir(args.workdir)
    pipeline = Pipeline(config, args.workdir, recompute=args.recompute)
    start = time.perf_counter()
    timings = pipeline.run(until=args.until)
    print(report.timing_table(timings, time.perf_counter() - start))
    evaluation = pipeline.workdir / "evaluation.json"
    if evaluation.is_file():
        print(report.summary_table(json.loads(evaluation.read_text())))
    if pipeline.stages.record("report"):
        print(f"report: {pipeline.workdir / 'report.md'}")
    return 0


if __name__ == "__main__":
    run_main(main)
