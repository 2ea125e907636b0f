"""Trains a GAN from a config file, then measures it with a classifier trained on real data.

    python -m experiments.train_gan --config experiments/configs/gan_cpu.py \\
        [--workdir DIR] [--data PATH] [--config.num_steps=2000 --config.model=dcgan ...]

``config.model=cgan`` trains the conditional GAN in DIR and, for ``config.baseline.classes``,
the DCGAN baseline (one per class) in DIR/dcgan_baseline; ``config.model=dcgan`` trains only
DCGANs (per class of ``config.classes``) in DIR. Then FER-FID against val (with its
real-vs-real floor), recognizability (beside the classifier's real recall) and optionally CAS
are printed and saved to DIR/gan_metrics.json, and each run's gan_eval.json (KID, precision,
recall, memorization, label sensitivity, ...) is written in its workdir (see
:mod:`gan.experiment`). The feature classifier is ``config.eval.classifier_workdir`` or, when
unset, one trained here (DIR/feature_classifier) with ``config.eval.classifier_config``.
Every stage resumes from its checkpoints: rerun the same command after an interruption.
"""

from __future__ import annotations

from experiments.cli import (
    check_workdir,
    default_workdir,
    experiment_parser,
    parse_with_config,
    run_main,
)
from gan import experiment


def main(argv: list[str] | None = None) -> int:
    parser = experiment_parser("python -m experiments.train_gan", __doc__.splitlines()[0],
                               example="--config.num_steps=500")
    args, config, config_path = parse_with_config(parser, argv)
    experiment.train_and_evaluate(config, check_workdir(default_workdir(args.workdir,
                                                                        config_path)))
    return 0


if __name__ == "__main__":
    run_main(main)
