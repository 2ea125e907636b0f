"""The ablation grid: {flat, two-tier, joint two-tier} x training-data variants x settings x
seeds, as stages.

Models: ``flat`` (one softmax over the setting's classes), ``two_tier`` (three networks: tier 1
and one per group, routed by :mod:`fer_jax.two_tier`; its members train ``num_epochs *
two_tier_epoch_scale`` epochs, 0.5 being equal compute with flat) and ``two_tier_joint`` (one
backbone with tier-1 and tier-2 heads trained jointly: the engine's ``head="two_tier"``,
:class:`fer_jax.models.HierarchicalHead`). Every variant applies to each; for the joint model
the logit-adjusted loss shifts its class log-probabilities (still a proper loss over the
classes, no longer the sum of the two tiers' losses) and post-hoc adjustment acts on its
probabilities as on any model's.

Every classifier is one engine run (a stage ``run-<key>-<variant>-seed<s>`` training in
``runs/<key>/<variant>/seed_<s>``, the key being the grouping, or ``<setting>-two_tier`` for
the joint model; the two-tier positive member is shared by both settings); every cell
(``<setting>-<model>-<variant>-seed<s>``) scores one model on the evaluation split, a
two-tier cell through the manifest in ``models/<cell>`` (a directory that
``experiments.evaluate`` and ``experiments.calibrate`` load). Cells and runs are stages of
:class:`fer_jax.stages.Stages`: each is fingerprinted by its own config values and the runs or
synthetic faces it read, so the grid may grow (settings, models, variants, seeds) and keep
every finished cell, while a changed classifier config is refused (or, with ``recompute``,
redone) naming the changed keys.
"""

from __future__ import annotations

import os
import pathlib
from typing import NamedTuple

import ml_collections
import numpy as np

from fer_jax import (
    calibration,
    classes,
    evaluation,
    inference,
    provenance,
    report,
    run_guard,
    stats,
    train,
    two_tier,
)
from fer_jax.data import FerData, load_from_config, sampling
from fer_jax.errors import FerError, Interrupted
from fer_jax.stages import Stages
from studies.pipeline import SYNTHETIC_NPZ, Pipeline

MODELS = ("flat", "two_tier", "two_tier_joint")
# The engine's config.head of each model's runs (None: one dense softmax).
HEADS = {"flat": None, "two_tier": None, "two_tier_joint": "two_tier"}


class Variant(NamedTuple):
    """How one training-data / imbalance variant trains its classifiers."""

    oversample: bool
    gan_mixing: bool
    loss: str = "cross_entropy"
    # Scores the runs of the variant that trains as this one does, with post-hoc logit
    # adjustment (tau cross-fitted on the evaluation split).
    posthoc: bool = False


VARIANTS = {"none": Variant(False, False), "oversampling": Variant(True, False),
            "gan": Variant(False, True), "gan_oversampling": Variant(True, True),
            # Menon et al. (2021): tau * log prior added to the logits in the loss.
            "logit_adjusted": Variant(False, False, "logit_adjusted"),
            "posthoc_logit_adjusted": Variant(False, False, posthoc=True)}
EVAL_SPLITS = ("auto", "val", "test")


def cell_name(setting: str, model: str, variant: str, seed: int) -> str:
    return f"{setting}-{model}-{variant}-seed{seed}"


def run_key(grouping: str, head: str | None = None) -> str:
    """What names a run: its grouping, and its head when it has one (``seven-two_tier``)."""
    return grouping if head is None else f"{grouping}-{head}"


def run_name(grouping: str, variant: str, seed: int, head: str | None = None) -> str:
    return f"run-{run_key(grouping, head)}-{trained_variant(variant)}-seed{seed}"


def trained_variant(variant: str) -> str:
    """The variant whose runs ``variant`` scores: itself, or for a post-hoc variant the one
    that trains as it does."""
    trains_as = VARIANTS[variant]._replace(posthoc=False)
    return next(name for name, other in VARIANTS.items() if other == trains_as)


class Ablation:
    """Trains and scores every cell of one config in one workdir, skipping finished ones."""

    def __init__(self, config: ml_collections.ConfigDict, workdir, *, recompute: bool = False):
        self.config = config
        self.workdir = pathlib.Path(workdir)
        self.recompute = recompute
        self.stages = Stages(self.workdir / "stages", recompute=recompute)
        for setting in config.settings:
            two_tier.setting_grouping(setting)
        unknown = sorted(set(config.models) - set(MODELS)) + \
            sorted(set(config.variants) - set(VARIANTS))
        if unknown:
            raise FerError(f"unknown models/variants {unknown}; models: {MODELS}, variants: "
                           f"{tuple(VARIANTS)}")
        if config.eval_split not in EVAL_SPLITS:
            raise FerError(f"eval_split must be one of {EVAL_SPLITS}, got {config.eval_split!r}")
        if "two_tier" in config.models:
            self.member_epochs()
        self._data = None

    @property
    def data(self) -> FerData:
        if self._data is None:
            self._data = load_from_config(self.config.data)
        return self._data

    def cells(self) -> list[tuple[str, str, str, int]]:
        c = self.config
        return [(setting, model, variant, int(seed)) for setting in c.settings
                for model in c.models for variant in c.variants for seed in c.seeds]

    def uses_gan(self) -> bool:
        return any(VARIANTS[v].gan_mixing for v in self.config.variants)

    def eval_split(self) -> str:
        """The split cells are scored on: val unless ``eval_split`` is ``"test"`` (selection
        never looks at test unless asked)."""
        split = "test" if self.config.eval_split == "test" else "val"
        if not self.data.has(split):
            raise FerError(f"{self.data.source} has no {split} split to score the ablation on")
        return split

    # ------------------------------------------------------------------------- synthetic faces
    def synthetic_faces(self) -> dict:
        """Stage: the faces GAN variants mix in: ``config.synthetic_npz`` (a .npz or a pipeline
        workdir holding one), else the pipeline's GAN and synthesize stages run in
        ``<workdir>/gan_pipeline``."""
        if self.config.synthetic_npz:
            path = pathlib.Path(self.config.synthetic_npz)
            if path.is_dir():
                path = path / SYNTHETIC_NPZ
            if not path.is_file():
                raise FerError(f"{path}: no synthetic faces (.npz) here; run "
                               "python -m experiments.pipeline first or unset synthetic_npz")
            return {"path": str(path)}
        print("synthetic faces: running the pipeline's GAN stages in "
              f"{self.workdir / 'gan_pipeline'}", flush=True)
        gan_pipeline = Pipeline(self.gan_pipeline_config(), self.workdir / "gan_pipeline",
                                data=self.data, recompute=self.recompute)
        gan_pipeline.run(until="synthesize")
        synthesized = gan_pipeline.stages.outputs("synthesize")
        if synthesized["path"] is None:
            print("synthetic faces: the recognizability gate kept no class; the GAN variants "
                  "are skipped", flush=True)
            return {"path": None, "gate": synthesized["gate"]}
        return {"path": f"gan_pipeline/{SYNTHETIC_NPZ}", "gate": synthesized["gate"]}

    def gan_pipeline_config(self) -> ml_collections.ConfigDict:
        config = self.config.gan_pipeline.copy_and_resolve_references()
        config.data = self.config.data.copy_and_resolve_references()
        return config

    def synthetic_faces_section(self) -> dict:
        if self.config.synthetic_npz:
            return {"synthetic_npz": self.config.synthetic_npz}
        return {"gan_pipeline": self.gan_pipeline_config()}

    # ------------------------------------------------------------------------- runs
    def member_epochs(self) -> int:
        """Epochs of a two-tier member: ``classifier.num_epochs * two_tier_epoch_scale``, which
        must be a whole number (the engine trains whole epochs)."""
        epochs = self.config.classifier.num_epochs * self.config.two_tier_epoch_scale
        if epochs != int(epochs) or epochs < 1:
            raise FerError(f"two-tier members would train classifier.num_epochs "
                           f"({self.config.classifier.num_epochs}) x two_tier_epoch_scale "
                           f"({self.config.two_tier_epoch_scale}) = {epochs} epochs; choose "
                           "values whose product is a whole number >= 1")
        return int(epochs)

    def run_config(self, grouping: str, variant: str, seed: int,
                   root: pathlib.Path | None = None, *,
                   head: str | None = None) -> ml_collections.ConfigDict:
        """Engine config of one classifier run (GAN variants read the synthetic faces stage,
        a path in ``root``: the workdir by default; the run's fingerprint passes
        ``pathlib.Path()``, so that a moved workdir keeps it). A two-tier member (a grouping
        that is not a setting) trains :meth:`member_epochs`; ``head`` is its config.head."""
        oversample, gan_mixing, loss, _ = VARIANTS[variant]
        config = self.config.classifier.copy_and_resolve_references()
        config.grouping = grouping
        config.head = head
        if grouping not in two_tier.SETTINGS:
            config.num_epochs = self.member_epochs()
        config.seed = seed
        config.loss = loss
        config.data.oversample = oversample
        config.data.gan_mixing = gan_mixing
        config.data.synthetic_npz = (
            str((self.workdir if root is None else root)
                / self.stages.outputs("synthetic_faces")["path"]) if gan_mixing else None)
        if oversample and self.config.equal_epoch_size:
            # Balanced epochs as long as the real split: every variant trains as many steps.
            config.data.target_per_class = sampling.mean_class_count(
                self.data.split("train").labels, classes.grouping(grouping))
        return config

    def run_dir(self, grouping: str, variant: str, seed: int,
                head: str | None = None) -> pathlib.Path:
        return self.workdir / "runs" / run_key(grouping, head) / variant / f"seed_{seed}"

    def train_run(self, grouping: str, variant: str, seed: int, head: str | None = None) -> dict:
        """Stage body: trains (or resumes) one classifier run."""
        key = run_key(grouping, head)
        print(f"  training {key} / {variant} / seed {seed}", flush=True)
        workdir = self.run_dir(grouping, variant, seed, head)
        summary = train.train_and_evaluate(self.run_config(grouping, variant, seed, head=head),
                                           workdir, self.data)
        if summary["interrupted"] is not None:
            raise Interrupted(f"run {key}/{variant}/seed_{seed}", summary["interrupted"])
        return {"path": os.path.relpath(workdir, self.workdir)}

    def model_dir(self, setting: str, model: str, variant: str, seed: int) -> pathlib.Path:
        """The directory a cell's model loads from: its run (flat, joint two-tier), or a
        two-tier manifest over the member runs in ``models/<cell>``."""
        if model != "two_tier":
            return self.workdir / self.stages.outputs(
                run_name(setting, variant, seed, HEADS[model]))["path"]
        directory = self.workdir / "models" / cell_name(setting, model, variant, seed)
        directory.mkdir(parents=True, exist_ok=True)
        members = {name: os.path.relpath(
            self.workdir / self.stages.outputs(run_name(grouping.name, variant, seed))["path"],
            directory) for name, grouping in two_tier.member_groupings(setting).items()}
        two_tier.write_manifest(directory, setting, self.config.routing, members)
        return directory

    def runs(self, setting: str, model: str) -> list[tuple[str, str | None]]:
        """``(grouping, head)`` of each run a cell's model reads."""
        if model != "two_tier":
            return [(setting, HEADS[model])]
        return [(grouping.name, None) for grouping in two_tier.member_groupings(setting).values()]

    # ------------------------------------------------------------------------- cells
    def train_prior(self, grouping: classes.Grouping) -> np.ndarray:
        """The class frequencies of the real training split in ``grouping``."""
        labels = self.data.split("train").labels
        counts = np.bincount(grouping.encode(labels[grouping.covers(labels)]),
                             minlength=grouping.num_classes)
        return np.maximum(counts, 1) / max(counts.sum(), 1)

    def predictions_path(self, setting: str, model: str, variant: str, seed: int) -> pathlib.Path:
        return self.workdir / "predictions" / f"{cell_name(setting, model, variant, seed)}.npz"

    def score_cell(self, setting: str, model: str, variant: str, seed: int) -> dict:
        """Stage body: the cell's model scored on the evaluation split (a post-hoc variant's
        probabilities logit-adjusted out of fold); its labels and probabilities saved to
        ``predictions/<cell>.npz`` for the paired comparisons."""
        split = self.eval_split()
        grouping = classes.grouping(setting)
        classifier = inference.load(self.model_dir(setting, model, variant, seed),
                                    self.config.checkpoint)
        labels, probs = evaluation.predict_split(classifier, self.data.split(split), grouping)
        taus = None
        if VARIANTS[variant].posthoc:
            probs, taus = calibration.cross_fit_logit_adjustment(
                probs, labels, self.train_prior(grouping), folds=self.config.posthoc_folds,
                seed=seed)
        path = self.predictions_path(setting, model, variant, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, labels=labels, probs=probs)
        scored = stats.add_statistics(evaluation.report_of(labels, probs, grouping),
                                      stats.report_statistics(labels, probs,
                                                              grouping.class_names))
        print(f"  {split} accuracy {report.percent(scored['accuracy'])}%, macro-F1 "
              f"{report.percent(scored['macro_f1'])}%", flush=True)
        return {"setting": setting, "model": model, "variant": variant, "seed": seed,
                "split": split, "accuracy": scored["accuracy"], "macro_f1": scored["macro_f1"],
                "balanced_accuracy": stats.balanced_accuracy(labels, probs.argmax(1),
                                                             grouping.num_classes),
                **self.minority_metrics(scored, labels, probs), "posthoc_taus": taus,
                "predictions": os.path.relpath(path, self.workdir), "report": scored}

    def minority_metrics(self, scored: dict, labels, probs) -> dict:
        """Disgust's recall at the argmax and its AP and AUROC (threshold-free; read from the
        ``scored`` report) and its precision at recall ``config.matched_recall`` (one operating
        point for every model); None in a setting without disgust."""
        keys = ("disgust_recall", "disgust_ap", "disgust_auroc", "disgust_precision_at_recall")
        if "disgust" not in scored["per_class"]:
            return dict.fromkeys(keys)
        disgust = scored["per_class"]["disgust"]
        index = scored["classes"].index("disgust")
        return dict(zip(keys, (disgust["recall"], disgust["ap"], disgust["auroc"],
                               stats.precision_at_recall(labels == index, probs[:, index],
                                                         self.config.matched_recall))))

    def cell_section(self, setting: str, model: str, variant: str, seed: int) -> dict:
        """What a cell's score depends on: how it is scored and the runs it reads."""
        return {"cell": {"setting": setting, "model": model, "variant": variant},
                "checkpoint": self.config.checkpoint, "eval_split": self.eval_split(),
                "matched_recall": self.config.matched_recall,
                "posthoc_folds": self.config.posthoc_folds if VARIANTS[variant].posthoc else None,
                "routing": self.config.routing if model == "two_tier" else None,
                "runs": [self.stages.outputs(run_name(grouping, variant, seed, head))["path"]
                         for grouping, head in self.runs(setting, model)]}

    def run_cell(self, setting: str, model: str, variant: str, seed: int, *, label: str) -> dict:
        """The result of one cell: its runs trained, its model scored (or both found
        finished)."""
        trained = trained_variant(variant)
        for grouping, head in self.runs(setting, model):
            self.stages.run(run_name(grouping, trained, seed, head),
                            lambda g=grouping, h=head: self.train_run(g, trained, seed, h),
                            lambda g=grouping, h=head: {
                                "data": self.config.data,
                                "run": self.run_config(g, trained, seed, pathlib.Path(), head=h)},
                            label=f"  run {run_key(grouping, head)}/{trained}/seed_{seed}",
                            clear=self.run_dir(grouping, trained, seed, head))
        if model == "two_tier":  # the manifest, also for cells finished without one
            self.model_dir(setting, model, variant, seed)
        name = cell_name(setting, model, variant, seed)
        result, _ = self.stages.run(name, lambda: self.score_cell(setting, model, variant, seed),
                                    lambda: self.cell_section(setting, model, variant, seed),
                                    label=f"{label} {name}")
        return result

    def stage_seconds(self, cells) -> float:
        """Seconds the stages of ``cells`` took when they ran (each shared run once)."""
        names = {"synthetic_faces"} if self.uses_gan() else set()
        for setting, model, variant, seed in cells:
            names.add(cell_name(setting, model, variant, seed))
            names.update(run_name(grouping, variant, seed, head)
                         for grouping, head in self.runs(setting, model))
        return sum(self.stages.record(name)["seconds"] for name in names)

    def comparisons(self, results: dict) -> list[dict]:
        """In every setting, over the seeds both finished
        (:func:`fer_jax.stats.seed_paired_comparison` of the saved predictions): each variant
        against ``config.reference_variant`` within a model (rows with ``reference``), and
        each model against ``config.reference_model`` within a variant (rows with
        ``reference_model``)."""
        config, rows = self.config, []
        for setting in config.settings:
            for model in config.models:
                for variant in config.variants:
                    if variant != config.reference_variant:
                        row = self.paired(results, setting, (model, variant),
                                          (model, config.reference_variant))
                        rows += [{**row, "reference": config.reference_variant}] if row else []
                    if model != config.reference_model:
                        row = self.paired(results, setting, (model, variant),
                                          (config.reference_model, variant))
                        rows += [{**row, "reference_model": config.reference_model}] if row \
                            else []
        return rows

    def paired(self, results: dict, setting: str, a: tuple[str, str],
               b: tuple[str, str]) -> dict | None:
        """Cells ``a`` = (model, variant) against ``b`` seed by seed, or None when no seed has
        both; the row names ``a``'s model and variant."""
        pairs = [(results.get(cell_name(setting, *a, seed)),
                  results.get(cell_name(setting, *b, seed))) for seed in self.config.seeds]
        pairs = [pair for pair in pairs if None not in pair]
        if not pairs:
            return None
        labels, probs = {}, {"a": [], "b": []}
        for pair in pairs:
            for key, cell in zip("ab", pair):
                saved = np.load(self.workdir / cell["predictions"])
                labels[key] = saved["labels"]
                probs[key].append(saved["probs"])
        if not np.array_equal(labels["a"], labels["b"]):
            raise FerError(f"{setting}: {'/'.join(a)} and {'/'.join(b)} were scored on "
                           "different images; rerun with --recompute")
        comparison = stats.seed_paired_comparison(
            labels["a"], np.stack(probs["a"]), np.stack(probs["b"]),
            classes.grouping(setting).class_names, seed=self.config.bootstrap_seed)
        return {**comparison, "setting": setting, "model": a[0], "variant": a[1],
                "seeds": [cell["seed"] for cell, _ in pairs]}

    def run(self) -> dict:
        """Runs every unfinished run and cell, then writes the tables; returns the ablation
        dict (also ``ablation.json``)."""
        faces = None
        if self.uses_gan():
            faces, _ = self.stages.run("synthetic_faces", self.synthetic_faces,
                                       self.synthetic_faces_section, label="synthetic faces")
        skipped_gan = faces is not None and faces["path"] is None
        cells = [cell for cell in self.cells()
                 if not (skipped_gan and VARIANTS[cell[2]].gan_mixing)]
        results = {}
        for index, cell in enumerate(cells, 1):
            results[cell_name(*cell)] = self.run_cell(*cell, label=f"[{index}/{len(cells)}]")
        ablation = {"data": self.data.source, "synthetic_data": self.data.synthetic,
                    "config": run_guard.to_json(self.config),
                    "table": report.summarize(results.values()), "cells": results,
                    "comparisons": self.comparisons(results),
                    "gan_variants_skipped": skipped_gan,
                    "gate": faces and faces.get("gate"),
                    "reproducibility": provenance.reproducibility(
                        data=provenance.data_block(self.config.data.source, self.data),
                        config=self.config, seeds=self.config.seeds,
                        wall_seconds=self.stage_seconds(cells))}
        run_guard.write_json(self.workdir / "ablation.json", ablation)
        report.save_ablation_figure(self.workdir, ablation)
        (self.workdir / "ablation.md").write_text(report.render_ablation_report(ablation))
        return ablation
