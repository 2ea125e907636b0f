"""The GAN experiment (``python -m experiments.train_gan``): trains the GAN(s), the feature
classifier when none is given, then measures every run with that classifier.

* ``<workdir>/gan_metrics.json``: FER-FID (against val, beside its real-vs-real floor) and
  recognizability of every run at every ``config.eval.truncations``, and CAS.
* ``<run workdir>/gan_eval.json`` for each run (the cgan in ``workdir``, the DCGAN baseline in
  ``workdir/dcgan_baseline``), at ``config.eval.quality_truncation``: per class and overall
  KID (against val, with its interval), precision, recall, memorization (its closest pairs in
  ``memorization_pairs.png`` beside it), label sensitivity, FER-FID, recognizability and (cgan)
  CAS (:mod:`gan.quality`).

"val" is the val split without its exact copies of training faces when
``config.eval.val_without_train_copies`` (gan_metrics.json ``val_copies_left_out`` counts them
per class); CAS is scored on the whole val split.

Every generated face measured comes from the evaluation seed stream
(:func:`gan.sample.evaluation_seed` of ``config.seed``), never from the stream that
``experiments.synthesize --seed config.seed`` mixes into a classifier's training.
"""

from __future__ import annotations

import importlib
import json
import pathlib

import ml_collections

from fer_jax import inference, plots, run_guard
from fer_jax.checkpoint import has_checkpoint
from fer_jax.data import load_from_config
from fer_jax.data.dataset import FerData
from fer_jax.data.duplicates import with_unseen_val
from fer_jax.errors import FerCheckpointError, FerError, Interrupted
from fer_jax.inference import Classifier
from fer_jax.train import train_and_evaluate as train_classifier
from gan import metrics, quality, sample, train

SYNTHETIC_NOTE = "SYNTHETIC faces (no --data): numbers say nothing about FER-2013"
PAIRS_PNG = "memorization_pairs.png"


def classifier_config(name: str, overrides) -> ml_collections.ConfigDict:
    """``experiments/configs/<name>.py``'s config with ``overrides`` (a dict) applied."""
    config = importlib.import_module(f"experiments.configs.{name}").get_config()
    config.update(dict(overrides))
    return config


def cas_dir(workdir: pathlib.Path, steps: int, samples_per_class: int, seed: int,
            cas_config: ml_collections.ConfigDict) -> pathlib.Path:
    """Where the CAS classifiers of a generator trained ``steps`` steps train: one directory
    per generator step, sample count, seed and classifier config, so a run resumed to more
    steps or a changed CAS setting trains afresh instead of reusing (or refusing) an older
    CAS."""
    return workdir / "cas" / (f"step{steps}_{samples_per_class}perclass_seed{seed}_"
                              f"{run_guard.config_hash(cas_config)[:8]}")


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


def check_eval_config(eval_config: ml_collections.ConfigDict) -> None:
    """FerError (before any training) for an evaluation that cannot run: a
    ``classifier_workdir`` without a checkpoint, a ``quality_truncation`` not evaluated."""
    if eval_config.classifier_workdir and not has_checkpoint(eval_config.classifier_workdir):
        raise FerCheckpointError(
            f"{eval_config.classifier_workdir}: no trained feature classifier (config.eval."
            "classifier_workdir); train it first with python -m experiments.train_classifier, "
            "or pass --config.eval.classifier_workdir= (empty) to train one here")
    if eval_config.quality_truncation not in eval_config.truncations:
        raise FerError(f"config.eval.quality_truncation={eval_config.quality_truncation} is not "
                       f"one of config.eval.truncations={tuple(eval_config.truncations)}")


def train_runs(config: ml_collections.ConfigDict, workdir: pathlib.Path,
               data: FerData) -> dict[str, tuple[pathlib.Path, dict]]:
    """``{model: (workdir, training summary)}``: ``config.model`` in ``workdir`` and, for a
    cgan with ``config.baseline.classes``, the DCGAN baseline in ``workdir/dcgan_baseline``."""
    stages = [(config.model, config, workdir)]
    if config.model == "cgan" and config.baseline.classes:
        stages.append(("dcgan", baseline_config(config), workdir / "dcgan_baseline"))
    runs = {}
    for name, stage_config, stage_dir in stages:
        runs[name] = (stage_dir, train.train_gan(stage_config, stage_dir, data))
        for run in runs[name][1]["runs"].values():
            stop_if_interrupted(f"{name} training", run["interrupted"])
    return runs


def feature_classifier(eval_config: ml_collections.ConfigDict, workdir: pathlib.Path,
                       data: FerData) -> Classifier:
    """The best checkpoint of ``eval_config.classifier_workdir`` or, when unset, of one
    trained on the real training split in ``workdir/feature_classifier``."""
    classifier_dir = eval_config.classifier_workdir
    if not classifier_dir:
        classifier_dir = workdir / "feature_classifier"
        print(f"training the feature classifier ({eval_config.classifier_config}) on the real "
              f"training split in {classifier_dir}", flush=True)
        summary = train_classifier(classifier_config(eval_config.classifier_config,
                                                     eval_config.classifier_overrides),
                                   classifier_dir, data=data)
        stop_if_interrupted("feature classifier training", summary["interrupted"])
    return inference.load(classifier_dir, "best")


def label_sensitivity(generators: sample.Generators, classifier: Classifier, names: list[str],
                      *, latents_per_class: int, seed: int, truncation: float) -> dict:
    """:func:`gan.quality.label_sensitivity` of ``generators`` judged by ``classifier``: each
    latent of ``seed`` drawn with every label of ``names``."""
    def classify(images):
        return classifier.grouping.decode(classifier.probabilities(images).argmax(-1))

    def generate(labels, latent_seed):
        return generators.with_shared_latents(labels, latent_seed, truncation)

    return quality.label_sensitivity(classify, generate, names,
                                     latents_per_class=latents_per_class, seed=seed)


def write_gan_eval(run_dir: pathlib.Path, generators: sample.Generators,
                   sets: metrics.FaceSets, classifier: Classifier,
                   eval_config: ml_collections.ConfigDict, *, fer_metrics: dict,
                   cas: dict | None = None) -> dict:
    """Writes ``run_dir/gan_eval.json`` (:func:`gan.quality.gan_eval_json`) of the faces
    ``sets`` (generated with ``fer_metrics["seed"]`` at ``fer_metrics["truncation"]``) and
    ``run_dir/memorization_pairs.png``; returns the report."""
    seed, truncation = fer_metrics["seed"], fer_metrics["truncation"]
    report = quality.quality_report(sets.generated, sets.val, sets.train,
                                    kid_subsets=eval_config.kid_subsets,
                                    kid_subset_size=eval_config.kid_subset_size,
                                    k=eval_config.precision_recall_k, seed=seed)
    sensitivity = label_sensitivity(generators, classifier, list(sets.generated),
                                    latents_per_class=eval_config.sensitivity_latents,
                                    seed=seed, truncation=truncation)
    result = quality.gan_eval_json(run_dir, report, sensitivity, fer_metrics=fer_metrics,
                                   cas=cas)
    pooled = [quality.Faces.concatenate(list(faces.values()))
              for faces in (sets.generated, sets.train)]
    plots.save_image_grid_png(
        quality.closest_pairs_grid(pooled[0].images, pooled[1].images,
                                   report["overall"]["memorization"]["closest"]),
        run_dir / PAIRS_PNG, row_names=["generated", "nearest train"],
        title=f"closest generated/train pairs of {run_dir.name}")
    print(f"wrote {run_dir / quality.GAN_EVAL} and {run_dir / PAIRS_PNG}")
    return result


def evaluate_runs(runs: dict[str, pathlib.Path], data: FerData, classifier: Classifier,
                  eval_config: ml_collections.ConfigDict, *,
                  seed: int) -> tuple[dict[str, dict], dict[str, tuple]]:
    """``(reports, faces)``: the :func:`gan.metrics.evaluate_generators` report of every run
    (``{model: workdir}``) at every truncation, keyed "<model>[ trunc t]", and per model
    ``(generators, FaceSets, report)`` at ``eval_config.quality_truncation``. Faces are
    sampled with :func:`gan.sample.evaluation_seed` of ``seed``."""
    reports, faces = {}, {}
    for name, run_dir in runs.items():
        generators = sample.load_generators(run_dir)
        names = metrics.evaluated_classes(generators, data, classifier)
        for truncation in eval_config.truncations:
            settings = {"samples_per_class": eval_config.samples_per_class,
                        "seed": sample.evaluation_seed(seed), "truncation": truncation}
            sets = metrics.face_sets(generators, data, classifier, names, **settings)
            report = metrics.evaluate_generators(generators, data, classifier, sets=sets,
                                                 **settings)
            reports[name + (f" trunc {truncation:g}" if truncation else "")] = report
            if truncation == eval_config.quality_truncation:
                faces[name] = (generators, sets, report)
    return reports, faces


def train_and_evaluate(config: ml_collections.ConfigDict, workdir,
                       data: FerData | None = None) -> dict:
    """Trains the runs of ``config`` in ``workdir`` on ``data`` (default: ``config.data``),
    evaluates them (see the module) and returns what ``workdir/gan_metrics.json`` holds.
    Every stage resumes from its checkpoints; a stage stopped by SIGTERM/SIGINT raises
    :class:`Interrupted`."""
    workdir = pathlib.Path(workdir)
    eval_config = config.eval
    check_eval_config(eval_config)
    data = load_from_config(config.data) if data is None else data
    print(f"training {config.model} in {workdir} on "
          f"{SYNTHETIC_NOTE if data.synthetic else data.source}", flush=True)
    runs = train_runs(config, workdir, data)
    classifier = feature_classifier(eval_config, workdir, data)
    measured, left_out = with_unseen_val(data,
                                         leave_out=eval_config.val_without_train_copies)
    reports, faces = evaluate_runs({name: run_dir for name, (run_dir, _) in runs.items()},
                                   measured, classifier, eval_config, seed=config.seed)
    result = {"data": data.source, "synthetic_data": data.synthetic,
              "val_copies_left_out": left_out, "classifier": classifier.description,
              "training": {name: summary for name, (_, summary) in runs.items()},
              "evaluation": reports}
    if eval_config.cas and config.model == "cgan":
        cas_config = classifier_config(eval_config.cas_config, eval_config.cas_overrides)
        result["cas"] = metrics.classification_accuracy_score(
            faces["cgan"][0], data, cas_config,
            cas_dir(workdir, runs["cgan"][1]["runs"]["cgan"]["steps"],
                    eval_config.cas_samples_per_class,
                    config.seed, cas_config),
            samples_per_class=eval_config.cas_samples_per_class, seed=config.seed)
        stop_if_interrupted("CAS classifier training", result["cas"]["interrupted"])
    for name, (generators, sets, report) in faces.items():
        write_gan_eval(runs[name][0], generators, sets, classifier, eval_config,
                       fer_metrics=report, cas=result.get("cas") if name == "cgan" else None)

    print(f"\nFER-FID (lower is better; against real val; floor: real train vs real val) and "
          f"recognizability (share of generated images {classifier.description} assigns to "
          f"their class; beside: its recall on real val images)"
          f"{' -- ' + SYNTHETIC_NOTE if data.synthetic else ''}:")
    print(metrics.format_comparison(reports))
    if "cas" in result:
        print(f"CAS (val accuracy of a classifier trained on generated images only): "
              f"{result['cas']['cas']:.1%}; the same trained on as many real faces: "
              f"{result['cas']['real_reference']['cas']:.1%}")
    (workdir / "gan_metrics.json").write_text(json.dumps(result, indent=1))
    print(f"wrote {workdir / 'gan_metrics.json'}")
    return result
