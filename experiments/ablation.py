"""Ablation of imbalance handling, GAN faces and the two-tier model, over settings and seeds.

{flat, two-tier} x {none, oversampling, logit-adjusted loss, post-hoc logit adjustment, GAN,
GAN + oversampling} in the 7-class and the seed's 6-class setting, over several seeds
(:mod:`studies.ablation`).

    python -m experiments.ablation [--data PATH] [--config experiments/configs/ablation_X.py]
        [--workdir DIR] [--recompute] [--config.key=value ...]

Defaults: ``ablation_default`` on the embedded SYNTHETIC faces, workdir
``checkpoints/ablation``. Synthetic faces come from ``config.synthetic_npz`` (e.g. a pipeline
workdir's ``synthetic.npz``) or, when unset, from the pipeline's GAN and synthesize stages run
in ``<workdir>/gan_pipeline`` (when its recognizability gate keeps no class, the GAN variants
are skipped and the report says so). Cells are scored on val; on test only with
``--config.eval_split=test``. Every finished run and cell is skipped on rerun and the grid
(settings, models, variants, seeds) may grow between runs; a changed classifier config is
refused naming the changed keys (``--recompute`` redoes what it changes). Writes
``ablation.md`` and ``ablation.json``: mean ± 95% CI over seeds of accuracy, macro-F1,
balanced accuracy and disgust recall / AP / AUROC / precision at a matched recall, and every
variant against ``config.reference_variant`` seed by seed (CIs over seeds and over images);
``predictions/<cell>.npz`` holds each cell's scored probabilities, ``models/<cell>`` each
two-tier cell's loadable directory.
"""

from __future__ import annotations

import pathlib

from experiments.cli import check_workdir, experiment_parser, parse_with_config, run_main
from fer_jax import report
from studies.ablation import Ablation

DEFAULT_CONFIG = pathlib.Path(__file__).parent / "configs" / "ablation_default.py"
DEFAULT_WORKDIR = pathlib.Path("checkpoints") / "ablation"


def main(argv: list[str] | None = None) -> int:
    parser = experiment_parser("python -m experiments.ablation", __doc__.splitlines()[0],
                               example="--config.seeds=(0,1,2)", default_config=DEFAULT_CONFIG,
                               default_workdir=DEFAULT_WORKDIR)
    parser.add_argument("--recompute", action="store_true",
                        help="redo finished runs and cells whose config changed (default: "
                             "refuse them, naming the changed keys)")
    args, config, _ = parse_with_config(parser, argv, DEFAULT_CONFIG)
    check_workdir(args.workdir)
    ablation = Ablation(config, args.workdir, recompute=args.recompute)
    result = ablation.run()
    print(report.text_table(report.ABLATION_HEADER, report.ablation_rows(result["table"])))
    print(f"table: {ablation.workdir / 'ablation.md'}")
    return 0


if __name__ == "__main__":
    run_main(main)
