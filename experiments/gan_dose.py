"""GAN dose-response: are GAN faces worth real disgust faces?

Real disgust training faces cut to each k of ``config.ks`` (nested seeded subsets; val
untouched, test never read); per k a GAN and a judge trained on that split
(the pipeline's stages), judged GAN faces of every class, and three arms at equal steps over
paired seeds: the baseline imbalance recipe (``config.baseline``), the same with heavy
augmentation (the null control) and the same with the GAN faces (:mod:`studies.dose`).

    python -m experiments.gan_dose [--data PATH] [--config experiments/configs/gan_dose_X.py]
        [--workdir DIR] [--recompute] [--config.key=value ...]

Defaults: ``dose_base`` on the embedded SYNTHETIC faces (tiny sizes), workdir
``checkpoints/gan_dose``. Every finished GAN, judge, synthesis, run and cell is skipped on
rerun; a changed config is refused naming the changed keys (``--recompute`` redoes what it
changes). Writes ``dose.md``, ``dose.json`` and ``dose.png``: disgust AP / AUROC, macro-F1 and
accuracy per k and arm (mean ± 95% CI over seeds), each arm against the baseline seed by seed
(CIs over seeds and images), and the exchange rate: how many real disgust faces the baseline
needs to reach the GAN arm's disgust AP.
"""

from __future__ import annotations

import pathlib

from experiments.cli import check_workdir, experiment_parser, parse_with_config, run_main
from fer_jax import report
from studies.dose import TABLE_HEADER, Dose, table_rows

DEFAULT_CONFIG = pathlib.Path(__file__).parent / "configs" / "dose_base.py"
DEFAULT_WORKDIR = pathlib.Path("checkpoints") / "gan_dose"


def main(argv: list[str] | None = None) -> int:
    parser = experiment_parser("python -m experiments.gan_dose", __doc__.splitlines()[0],
                               example="--config.seeds=(0,1,2)", default_config=DEFAULT_CONFIG,
                               default_workdir=DEFAULT_WORKDIR)
    parser.add_argument("--recompute", action="store_true",
                        help="redo finished stages whose config changed (default: refuse "
                             "them, naming the changed keys)")
    args, config, _ = parse_with_config(parser, argv, DEFAULT_CONFIG)
    check_workdir(args.workdir)
    dose = Dose(config, args.workdir, recompute=args.recompute)
    result = dose.run()
    print(report.text_table(TABLE_HEADER, table_rows(result["table"])))
    print(result["answer"])
    print(f"report: {dose.workdir / 'dose.md'}")
    return 0


if __name__ == "__main__":
    run_main(main)
