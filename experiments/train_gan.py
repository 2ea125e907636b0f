"""Trains a GAN from a config file, then measures it with a classifier trained on real data.

    python -m experiments.train_gan --config experiments/configs/gan_cpu.py \\
        [--workdir DIR] [--data PATH] [--config.num_steps=2000 --config.model=dcgan ...]

``config.model=cgan`` trains the conditional GAN in DIR and, for ``config.baseline.classes``,
the DCGAN baseline (one per class) in DIR/dcgan_baseline; ``config.model=dcgan`` trains only
DCGANs (per class of ``config.classes``) in DIR. Then FER-FID (with its real-vs-real floor),
recognizability (beside the classifier's real recall) and optionally CAS are printed and saved
to DIR/gan_metrics.json. The feature classifier is ``config.eval.classifier_workdir`` or, when
unset, one trained here (DIR/feature_classifier) with ``config.eval.classifier_config``.
Every stage resumes from its checkpoints: rerun the same command after an interruption.
"""

from __future__ import annotations

import importlib
import json

import ml_collections

from experiments.cli import (
    check_workdir,
    default_workdir,
    experiment_parser,
    parse_with_config,
    run_main,
)
from fer_jax import inference
from fer_jax.checkpoint import has_checkpoint
from fer_jax.data import load_from_config
from fer_jax.errors import FerCheckpointError, Interrupted
from fer_jax.train import train_and_evaluate
from gan import metrics, sample, train

SYNTHETIC_NOTE = "SYNTHETIC faces (no --data): numbers say nothing about FER-2013"


def classifier_config(name: str, overrides) -> ml_collections.ConfigDict:
    """``experiments/configs/<name>.py``'s config with ``overrides`` (a dict) applied."""
    config = importlib.import_module(f"experiments.configs.{name}").get_config()
    config.update(dict(overrides))
    return config


def stop_if_interrupted(what: str, signal: int | None) -> None:
    """Raises :class:`Interrupted` when ``what`` stopped on SIGTERM/SIGINT (it saved a
    checkpoint first, so rerunning the command resumes)."""
    if signal:
        raise Interrupted(what, signal)


def baseline_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The DCGAN baseline run of a cgan config: ``config.baseline`` classes and steps."""
    baseline = config.copy_and_resolve_references()
    baseline.model = "dcgan"
    baseline.classes = tuple(config.baseline.classes)
    baseline.num_steps = config.baseline.num_steps
    return baseline


def main(argv: list[str] | None = None) -> int:
    parser = experiment_parser("python -m experiments.train_gan", __doc__.splitlines()[0],
                               example="--config.num_steps=500")
    args, config, config_path = parse_with_config(parser, argv)
    workdir = check_workdir(default_workdir(args.workdir, config_path))
    eval_config = config.eval
    if eval_config.classifier_workdir and not has_checkpoint(eval_config.classifier_workdir):
        raise FerCheckpointError(
            f"{eval_config.classifier_workdir}: no trained feature classifier (config.eval."
            "classifier_workdir); train it first with python -m experiments.train_classifier, "
            "or pass --config.eval.classifier_workdir= (empty) to train one here")
    data = load_from_config(config.data)
    print(f"training {config.model} in {workdir} on "
          f"{SYNTHETIC_NOTE if data.synthetic else data.source}", flush=True)

    stages = [(config.model, config, workdir)]
    if config.model == "cgan" and config.baseline.classes:
        stages.append(("dcgan", baseline_config(config), workdir / "dcgan_baseline"))
    runs = {}
    for name, stage_config, stage_dir in stages:
        runs[name] = (stage_dir, train.train_gan(stage_config, stage_dir, data))
        for run in runs[name][1]["runs"].values():
            stop_if_interrupted(f"{name} training", run["interrupted"])

    classifier_dir = eval_config.classifier_workdir
    if not classifier_dir:
        classifier_dir = workdir / "feature_classifier"
        print(f"training the feature classifier ({eval_config.classifier_config}) on the real "
              f"training split in {classifier_dir}", flush=True)
        summary = train_and_evaluate(classifier_config(eval_config.classifier_config,
                                                       eval_config.classifier_overrides),
                                     classifier_dir, data=data)
        stop_if_interrupted("feature classifier training", summary["interrupted"])
    classifier = inference.load(classifier_dir, "best")

    reports, generators = {}, {}
    for name, (run_dir, _) in runs.items():
        generators[name] = sample.load_generators(run_dir)
        for truncation in eval_config.truncations:
            reports[name + (f" trunc {truncation:g}" if truncation else "")] = \
                metrics.evaluate_generators(generators[name], data, classifier,
                                            samples_per_class=eval_config.samples_per_class,
                                            seed=config.seed, truncation=truncation)
    result = {"data": data.source, "synthetic_data": data.synthetic,
              "classifier": classifier.description,
              "training": {name: summary for name, (_, summary) in runs.items()},
              "evaluation": reports}
    if eval_config.cas and config.model == "cgan":
        result["cas"] = metrics.classification_accuracy_score(
            generators["cgan"], data,
            classifier_config(eval_config.cas_config, eval_config.cas_overrides),
            workdir / "cas_classifier",
            samples_per_class=eval_config.cas_samples_per_class, seed=config.seed)
        stop_if_interrupted("CAS classifier training", result["cas"]["interrupted"])

    print(f"\nFER-FID (lower is better; floor: real val vs real train) and recognizability "
          f"(share of generated images {classifier.description} assigns to their class; "
          f"beside: its recall on real val images)"
          f"{' -- ' + SYNTHETIC_NOTE if data.synthetic else ''}:")
    print(metrics.format_comparison(reports))
    if "cas" in result:
        print(f"CAS (val accuracy of a classifier trained on generated images only): "
              f"{result['cas']['cas']:.1%}")
    (workdir / "gan_metrics.json").write_text(json.dumps(result, indent=1))
    print(f"wrote {workdir / 'gan_metrics.json'}")
    return 0


if __name__ == "__main__":
    run_main(main)
