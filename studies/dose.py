"""The GAN dose-response study: are GAN faces worth real minority faces?

The real training faces of ``config.minority`` (disgust) are cut to each k of ``config.ks``:
nested seeded subsets (the faces of a smaller k are among those of every larger one; the draw
is the ``draw`` stage), every other class and the val split untouched; the test split is left
out, so nothing here reads it. Per k, as stages of :class:`fer_jax.stages.Stages`:

- ``generator-k<k>``: the pipeline's data, GAN and judge stages
  (:class:`studies.pipeline.Pipeline`, ``config.gan_pipeline``) on the subsampled training
  split, in ``k<k>/gan_pipeline``: the judge trains on those real faces only;
- ``faces-k<k>``: ``synthesize.max_per_class`` faces of each of ``synthesize.classes`` from the
  GAN's synthesis seed stream, kept per class by the pipeline's recognizability gate
  (``k<k>/gan.npz``). A classifier mix takes at most ``classifier.data.max_synthetic_share`` of
  a class from them (:func:`fer_jax.data.sampling.build_training_mix`); as many real training
  faces of the same classes, drawn seeded, fill the same slots in the other arms
  (``k<k>/repeats.npz``), so every arm trains on epochs of equal length and class
  frequencies: equal steps, and the arms differ only in what fills the slots;
- per arm and seed, a run and a cell (scored on val; without val's exact copies of training
  faces when ``config.val_without_train_copies``: FER-2013's PublicTest repeats 15 of its 56
  disgust faces from train): ``baseline`` (the ``config.baseline``
  variant of :data:`studies.ablation.VARIANTS`), ``baseline_augment`` (its augmentation with
  ``config.heavy_augment``: the null control) and ``baseline_gan`` (the GAN faces in the
  slots; skipped at a k whose gate kept no class).

Then per k each arm against ``baseline`` over paired seeds
(:func:`fer_jax.stats.seed_paired_comparison`) and the exchange rate (:func:`equivalent_k`):
how many real minority faces the baseline needs to reach the GAN arm's mean AP. Writes
``dose.json``, ``dose.md`` and ``dose.png``.
"""

from __future__ import annotations

import os
import pathlib

import ml_collections
import numpy as np

from fer_jax import (
    classes,
    evaluation,
    inference,
    plots,
    provenance,
    report,
    run_guard,
    stats,
    train,
)
from fer_jax.classes import EMOTION_INDEX
from fer_jax.data import FerData, Split, load_from_config, sampling
from fer_jax.data.duplicates import with_unseen_val
from fer_jax.errors import FerError, Interrupted
from fer_jax.stages import Stages
from gan import sample as gan_sample
from studies.ablation import VARIANTS
from studies.pipeline import Pipeline

ARMS = ("baseline", "baseline_augment", "baseline_gan")
FACE_SELECTIONS = ("class", "face")
# k's generator stage runs the pipeline's stages up to this one (data, GAN, judge) and depends
# on their sections only: the rest of gan_pipeline (flat, two-tier, eval, ...) never runs here.
GENERATOR_UNTIL = "judge"
GROUPING = classes.grouping("seven")
METRICS = {"ap": "AP", "auroc": "AUROC", "macro_f1": "macro-F1", "accuracy": "accuracy"}
COMPARED = {"ap": "AP", "macro_f1": "macro-F1", "accuracy": "accuracy"}
# stats.seed_paired_comparison's verdicts when A (the arm) or B (the baseline) wins
WIN, LOSS = "A beats B", "B beats A"


def run_name(k: int, arm: str, seed: int) -> str:
    return f"run-k{k}-{arm}-seed{seed}"


def cell_name(k: int, arm: str, seed: int) -> str:
    return f"cell-k{k}-{arm}-seed{seed}"


def equivalent_k(ks, means, target: float, *, start_k: int) -> float | None:
    """The number of real faces at which the baseline's mean score (``means`` over ascending
    ``ks``, linearly interpolated between them) first reaches ``target`` at or after
    ``start_k``; None when it does not within the measured ks."""
    ks, means = list(ks), list(means)
    first = ks.index(start_k)
    if means[first] >= target:
        return float(start_k)
    for k0, m0, k1, m1 in zip(ks[first:], means[first:], ks[first + 1:], means[first + 1:]):
        if m1 >= target:  # m0 < target here: the first crossing
            return k0 + (target - m0) * (k1 - k0) / (m1 - m0)
    return None


def summarize(cells, ks) -> list[dict]:
    """One row per (k, arm) with cells: per metric of :data:`METRICS` the seeds' values,
    mean and 95% t-interval half-width; the seeds and their step counts."""
    rows = []
    for k in ks:
        for arm in ARMS:
            members = [c for c in cells if c["k"] == k and c["arm"] == arm]
            if not members:
                continue
            row = {"k": k, "arm": arm, "seeds": [c["seed"] for c in members],
                   "steps": sorted({c["steps"] for c in members})}
            for metric in METRICS:
                values = [c[metric] for c in members if c[metric] is not None]
                mean, half = stats.mean_ci(values) if values else (None, None)
                row[metric] = {"mean": mean, "half_width": half if len(values) > 1 else None,
                               "values": values}
            rows.append(row)
    return rows


def exchange_rates(table: list[dict], comparisons: list[dict], ks) -> list[dict]:
    """Per k with a GAN arm: its mean AP, the baseline's, the paired verdict and the k at
    which the baseline reaches the GAN arm's AP (:func:`equivalent_k`; ``worth``: that k
    minus this one)."""
    baseline = {row["k"]: row["ap"]["mean"] for row in table if row["arm"] == "baseline"}
    measured = [k for k in ks if baseline.get(k) is not None]
    rows = []
    for comparison in comparisons:
        if comparison["arm"] != "baseline_gan" or comparison["ap"] is None:
            continue
        k, gan_ap = comparison["k"], comparison["ap"]["a"]
        equivalent = equivalent_k(measured, [baseline[m] for m in measured], gan_ap, start_k=k)
        rows.append({"k": k, "gan_ap": gan_ap, "baseline_ap": baseline[k],
                     "verdict": comparison["ap"]["verdict"], "equivalent_k": equivalent,
                     "worth": None if equivalent is None else equivalent - k})
    return rows


def answer(rates: list[dict], ks, minority: str) -> str:
    """The one-line answer: what GAN faces are worth in real ``minority`` faces, claimed only
    at a k where the paired verdict says the GAN arm beats the baseline on AP."""
    claims = []
    for rate in rates:
        if rate["verdict"] != WIN:
            continue
        if rate["worth"] is not None:
            claims.append(f"{rate['worth']:.0f} real {minority} faces at k = {rate['k']}")
        elif rate["k"] < max(ks):
            claims.append(f"more than {max(ks) - rate['k']} real {minority} faces at "
                          f"k = {rate['k']} (beyond the measured range)")
        else:
            claims.append(f"an unmeasured number of real {minority} faces at k = {rate['k']} "
                          "(beyond the measured range)")
    if not claims:
        return f"GAN faces: no measurable benefit to {minority} AP at any k"
    return f"GAN faces are worth {'; '.join(claims)}"


class Dose:
    """Runs every stage of one dose config in one workdir, skipping finished ones."""

    def __init__(self, config: ml_collections.ConfigDict, workdir, *, recompute: bool = False):
        self.config = config
        self.workdir = pathlib.Path(workdir)
        self.recompute = recompute
        self.stages = Stages(self.workdir / "stages", recompute=recompute)
        variant = VARIANTS.get(config.baseline)
        if variant is None or variant.gan_mixing or variant.posthoc:
            usable = [name for name, v in VARIANTS.items() if not (v.gan_mixing or v.posthoc)]
            raise FerError(f"baseline {config.baseline!r}: the dose study's baseline is a "
                           f"variant that mixes no GAN faces and is scored as trained: {usable}")
        if config.face_selection not in FACE_SELECTIONS:
            raise FerError(f"face_selection {config.face_selection!r}: expected one of "
                           f"{FACE_SELECTIONS}")
        if config.minority not in GROUPING.class_names:
            raise FerError(f"minority {config.minority!r} is not a class of "
                           f"{GROUPING.class_names}")
        if not config.ks or min(config.ks) < 1 or not config.seeds:
            raise FerError(f"the dose study needs ks >= 1 (config.ks: {config.ks}) and at "
                           f"least one seed (config.seeds: {config.seeds})")
        self.ks = sorted({int(k) for k in config.ks})
        self._data = None
        self._scored = None
        self._subsets = None

    # ------------------------------------------------------------------------- data
    @property
    def data(self) -> FerData:
        if self._data is None:
            self._data = load_from_config(self.config.data)
        return self._data

    def scored(self) -> tuple[Split, dict[str, int]]:
        """``(the val split cells are scored on, {class: val faces left out})``: without val's
        exact copies of any training face (before the cut) when
        ``config.val_without_train_copies``."""
        if self._scored is None:
            data, left_out = with_unseen_val(
                self.data, leave_out=self.config.val_without_train_copies)
            self._scored = data.split("val"), left_out
        return self._scored

    def subsets(self) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """The draw and the nested training subsets (see
        :func:`fer_jax.data.sampling.nested_class_subsets`)."""
        if self._subsets is None:
            self._subsets = sampling.nested_class_subsets(
                self.data.split("train").labels, EMOTION_INDEX[self.config.minority], self.ks,
                seed=self.config.subsample_seed)
        return self._subsets

    def draw(self) -> dict:
        """Stage body: the seeded order of the minority's training faces (indices into the
        training split; subset k holds the first k)."""
        return {"class": self.config.minority, "seed": self.config.subsample_seed,
                "order": self.subsets()[0].tolist()}

    def subsampled(self, k: int) -> FerData:
        """The data of k: the training split with k minority faces, val as it is, no test."""
        self.stages.outputs("draw")
        data = self.data
        return FerData({"train": data.split("train").take(self.subsets()[1][k]),
                        "val": data.split("val")},
                       f"{data.source} ({self.config.minority} training faces: {k})",
                       data.synthetic, data.skipped)

    def k_dir(self, k: int) -> pathlib.Path:
        return self.workdir / f"k{k}"

    # ------------------------------------------------------------------------- GAN and faces
    def pipeline(self, k: int) -> Pipeline:
        """The pipeline whose data, GAN and judge stages serve k (its data section names the
        subsample, so its fingerprints do)."""
        config = self.config.gan_pipeline.copy_and_resolve_references()
        config.data = self.config.data.copy_and_resolve_references()
        with config.data.unlocked():
            config.data.subsample = {"class": self.config.minority, "k": k,
                                     "seed": self.config.subsample_seed}
        return Pipeline(config, self.k_dir(k) / "gan_pipeline", data=self.subsampled(k),
                        recompute=self.recompute)

    def train_generator(self, k: int) -> dict:
        """Stage body: the pipeline's data, GAN and judge stages on the data of k."""
        pipeline = self.pipeline(k)
        pipeline.run(until=GENERATOR_UNTIL)
        return {"path": os.path.relpath(pipeline.workdir, self.workdir)}

    def synthesize_faces(self, k: int) -> dict:
        """Stage body: GAN faces of every class chosen by the judge (``config.face_selection``:
        whole classes by the pipeline's gate, or face by face); the chosen ones in ``gan.npz``,
        as many real repeats of their classes in ``repeats.npz`` (equal slots per class)."""
        self.stages.outputs(f"generator-k{k}")
        pipeline = self.pipeline(k)
        synthesize = pipeline.config.synthesize
        by_face = self.config.face_selection == "face"
        generators = gan_sample.load_generators(pipeline.path("gan"))
        per_class = self.config.face_candidates if by_face else synthesize.max_per_class
        candidates = generators.sample(dict.fromkeys(synthesize.classes, per_class),
                                       synthesize.seed, synthesize.truncation)
        gate, recognized = pipeline.judge_candidates(candidates)
        print(report.gate_table(gate))
        if by_face:
            candidates = candidates.take(np.flatnonzero(recognized))
        counts = candidates.counts()
        if by_face:
            print(f"  k = {k}: faces the judge assigns to their class, of {per_class} per class: "
                  + ", ".join(f"{name} {n}" for name, n in counts.items()))
        kept = [name for name, verdict in gate.items()
                if (counts.get(name, 0) if by_face else verdict["kept"])]
        gan_sample.write_grid(
            generators, list(synthesize.classes), self.k_dir(k) / "gan_samples.png",
            seed=synthesize.seed, truncation=synthesize.truncation,
            row_names=[f"{name} ({'kept' if name in kept else 'rejected'})"
                       for name in synthesize.classes],
            title=f"k = {k}; kept: {', '.join(kept) or 'none'}")
        faces = candidates.take(np.flatnonzero(
            np.isin(candidates.labels, [EMOTION_INDEX[name] for name in kept])))
        slots = self.slots(k, faces)
        outputs = {"gan": None, "repeats": None, "kept": kept, "slots": slots, "gate": gate}
        if not slots:
            print(f"  k = {k}: no kept GAN face has a place in the training mix (kept: "
                  f"{', '.join(kept) or 'none'}); no GAN arm here")
            return outputs
        for name, split in (("gan", faces), ("repeats", self.repeats(k, slots))):
            gan_sample.write_npz(split, self.k_dir(k) / f"{name}.npz")
            outputs[name] = f"k{k}/{name}.npz"
        return outputs

    def slots(self, k: int, faces: Split) -> dict[str, int]:
        """Synthetic faces per class that an arm's training mix draws from ``faces``."""
        variant, data = VARIANTS[self.config.baseline], self.config.classifier.data
        mix = sampling.build_training_mix(
            self.subsampled(k).split("train"), faces, oversample=variant.oversample,
            target_per_class=data.target_per_class, max_synthetic_share=data.max_synthetic_share,
            classes=GROUPING, synthetic_balance=data.synthetic_balance)
        return {name: row["sampled_synthetic"] for name, row in mix.summary().items()
                if row["sampled_synthetic"]}

    def repeats(self, k: int, slots: dict[str, int]) -> Split:
        """``slots[c]`` real training faces of each class c of k's data (seeded; with
        replacement only where the class has fewer faces)."""
        train_split = self.subsampled(k).split("train")
        rng = np.random.default_rng((self.config.subsample_seed, k))
        drawn = []
        for name, count in slots.items():
            members = np.flatnonzero(train_split.labels == EMOTION_INDEX[name])
            drawn.append(rng.choice(members, count, replace=count > len(members)))
        return train_split.take(np.concatenate(drawn))

    def faces(self, k: int) -> dict:
        """The outputs of k's faces stage (a running stage reads it as an input)."""
        return self.stages.outputs(f"faces-k{k}")

    # ------------------------------------------------------------------------- runs and cells
    def run_config(self, k: int, arm: str, seed: int,
                   root: pathlib.Path | None = None) -> ml_collections.ConfigDict:
        """Engine config of one arm's run: the baseline recipe, the arm's augmentation and the
        faces in its synthetic slots (a path in ``root``: the workdir by default; the
        fingerprint passes ``pathlib.Path()``, so that a moved workdir keeps it)."""
        variant = VARIANTS[self.config.baseline]
        config = self.config.classifier.copy_and_resolve_references()
        config.grouping = GROUPING.name
        config.seed = seed
        config.loss = variant.loss
        config.data.oversample = variant.oversample
        if arm == "baseline_augment":
            with config.augment.unlocked():
                config.augment.update(self.config.heavy_augment)
        npz = self.faces(k)["gan" if arm == "baseline_gan" else "repeats"]
        config.data.synthetic_npz = (None if npz is None
                                     else str((self.workdir if root is None else root) / npz))
        return config

    def run_dir(self, k: int, arm: str, seed: int) -> pathlib.Path:
        return self.k_dir(k) / "runs" / arm / f"seed_{seed}"

    def train_run(self, k: int, arm: str, seed: int) -> dict:
        """Stage body: trains (or resumes) one arm's classifier on the data of k."""
        workdir = self.run_dir(k, arm, seed)
        summary = train.train_and_evaluate(self.run_config(k, arm, seed), workdir,
                                           self.subsampled(k))
        if summary["interrupted"] is not None:
            raise Interrupted(f"run k{k}/{arm}/seed_{seed}", summary["interrupted"])
        return {"path": os.path.relpath(workdir, self.workdir), "steps": summary["step"],
                "steps_per_epoch": summary["steps_per_epoch"]}

    def score_cell(self, k: int, arm: str, seed: int) -> dict:
        """Stage body: the run scored on val; labels and probabilities saved for the paired
        comparisons."""
        run = self.stages.outputs(run_name(k, arm, seed))
        classifier = inference.load(self.workdir / run["path"], self.config.checkpoint)
        labels, probs = evaluation.predict_split(classifier, self.scored()[0], GROUPING)
        path = self.workdir / "predictions" / f"{cell_name(k, arm, seed)}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, labels=labels, probs=probs)
        scored = evaluation.report_of(labels, probs, GROUPING)
        positives = labels == GROUPING.class_names.index(self.config.minority)
        scores = probs[:, GROUPING.class_names.index(self.config.minority)]
        cell = {"k": k, "arm": arm, "seed": seed, "steps": run["steps"],
                "ap": stats.average_precision(positives, scores),
                "auroc": stats.auroc(positives, scores), "macro_f1": scored["macro_f1"],
                "accuracy": scored["accuracy"],
                "predictions": os.path.relpath(path, self.workdir)}
        cell.update({key: None for key in ("ap", "auroc") if np.isnan(cell[key])})
        print(f"  val {self.config.minority} AP {report.percent(cell['ap'])}%, macro-F1 "
              f"{report.percent(cell['macro_f1'])}%", flush=True)
        return cell

    def run_cell(self, k: int, arm: str, seed: int, *, label: str) -> dict:
        """One arm's run trained and scored (or both found finished)."""
        self.stages.run(run_name(k, arm, seed), lambda: self.train_run(k, arm, seed),
                        lambda: {"data": self.config.data,
                                 "run": self.run_config(k, arm, seed, pathlib.Path())},
                        label=f"{label} run k{k}/{arm}/seed_{seed}",
                        clear=self.run_dir(k, arm, seed))
        cell, _ = self.stages.run(cell_name(k, arm, seed), lambda: self.score_cell(k, arm, seed),
                                  lambda: {"checkpoint": self.config.checkpoint,
                                           "minority": self.config.minority,
                                           "val_without_train_copies":
                                               self.config.val_without_train_copies},
                                  label=f"{label} {cell_name(k, arm, seed)}")
        return cell

    def prepare(self, k: int) -> dict:
        """k's GAN, judge and faces stages; returns the faces stage's outputs."""
        self.stages.run(f"generator-k{k}", lambda: self.train_generator(k),
                        lambda: {"gan_pipeline": self.pipeline(k).sections(GENERATOR_UNTIL)},
                        label=f"k = {k}: GAN and judge", clear=self.k_dir(k) / "gan_pipeline")
        faces, _ = self.stages.run(f"faces-k{k}", lambda: self.synthesize_faces(k),
                                   lambda: {"synthesize": self.config.gan_pipeline.synthesize,
                                            "classifier_data": self.config.classifier.data,
                                            "baseline": self.config.baseline,
                                            "face_selection": self.config.face_selection,
                                            "face_candidates": self.config.face_candidates},
                                   label=f"k = {k}: faces")
        return faces

    # ------------------------------------------------------------------------- the study
    def compare(self, cells: dict, k: int, arm: str) -> dict | None:
        """``arm`` vs ``baseline`` at k over the seeds both finished, or None."""
        seeds = [s for s in self.config.seeds if cell_name(k, arm, s) in cells
                 and cell_name(k, "baseline", s) in cells]
        if not seeds:
            return None
        saved = {key: [np.load(self.workdir / cells[cell_name(k, name, s)]["predictions"])
                       for s in seeds] for key, name in (("a", arm), ("b", "baseline"))}
        labels = saved["a"][0]["labels"]
        comparison = stats.seed_paired_comparison(
            labels, np.stack([p["probs"] for p in saved["a"]]),
            np.stack([p["probs"] for p in saved["b"]]), GROUPING.class_names,
            focus_class=self.config.minority, seed=self.config.bootstrap_seed)
        return {**comparison, "k": k, "arm": arm, "reference": "baseline", "seeds": seeds}

    def stage_seconds(self) -> float:
        """Seconds every finished stage of this workdir took when it ran."""
        return sum(record["seconds"] for name in sorted(os.listdir(self.stages.directory))
                   if (record := self.stages.record(name)) is not None)

    def run(self) -> dict:
        """Runs every unfinished stage, then writes ``dose.json``, ``dose.md`` and
        ``dose.png``; returns the dose dict."""
        draw, _ = self.stages.run("draw", self.draw,
                                  lambda: {"data": self.config.data,
                                           "minority": self.config.minority,
                                           "subsample_seed": self.config.subsample_seed},
                                  label="draw")
        cells, faces = {}, {}
        for k in self.ks:
            faces[k] = self.prepare(k)
            arms = ARMS if faces[k]["gan"] is not None else ARMS[:-1]
            for seed in self.config.seeds:
                for arm in arms:
                    cells[cell_name(k, arm, seed)] = self.run_cell(k, arm, int(seed),
                                                                   label=f"k = {k}:")
        table = summarize(cells.values(), self.ks)
        comparisons = [c for k in self.ks for arm in ARMS[1:]
                       if (c := self.compare(cells, k, arm)) is not None]
        rates = exchange_rates(table, comparisons, self.ks)
        dose = {"data": self.data.source, "synthetic_data": self.data.synthetic,
                "val_copies_left_out": self.scored()[1],
                "config": run_guard.to_json(self.config), "draw": draw,
                "train_counts": {str(k): self.subsampled(k).split("train").counts()
                                 for k in self.ks},
                "faces": {str(k): faces[k] for k in self.ks}, "table": table, "cells": cells,
                "comparisons": comparisons, "exchange_rates": rates,
                "answer": answer(rates, self.ks, self.config.minority),
                "reproducibility": provenance.reproducibility(
                    data=provenance.data_block(self.config.data.source, self.data),
                    config=self.config, seeds=self.seeds(),
                    wall_seconds=self.stage_seconds())}
        run_guard.write_json(self.workdir / "dose.json", dose)
        save_figure(self.workdir / "dose.png", dose)
        (self.workdir / "dose.md").write_text(render_report(dose))
        return dose

    def seeds(self) -> list[int]:
        """The distinct seeds: subsample, classifier runs, GAN, judge and synthesis."""
        pipeline = self.config.gan_pipeline
        return sorted({self.config.subsample_seed, *map(int, self.config.seeds),
                       pipeline.gan.seed, pipeline.judge.seed, pipeline.synthesize.seed})


# ----------------------------------------------------------------------------- report
ARM_LABELS = {"baseline": "baseline", "baseline_augment": "baseline + heavy augmentation",
              "baseline_gan": "baseline + GAN faces"}
TABLE_HEADER = ("k", "arm", "seeds", "steps", *METRICS.values())


def table_rows(table: list[dict]) -> list[list[str]]:
    """Rows of :data:`TABLE_HEADER`: mean ± 95% CI over seeds, in percent."""
    return [[str(row["k"]), ARM_LABELS[row["arm"]], str(len(row["seeds"])),
             "/".join(map(str, row["steps"])),
             *(report.mean_interval(row[metric]["values"]) for metric in METRICS)]
            for row in table]


def verdict_text(verdict: str, arm: str) -> str:
    """A paired verdict in the arms' names."""
    return {WIN: f"{ARM_LABELS[arm]} wins", LOSS: "baseline wins"}.get(verdict, verdict)


def comparison_rows(comparisons: list[dict]) -> list[list[str]]:
    """Per comparison and metric: A, B, A - B, its CIs over seeds and images, the verdict."""
    rows = []
    for row in comparisons:
        for key, name in COMPARED.items():
            metric = row.get(key)
            if metric is None:
                continue
            rows.append([str(row["k"]), f"{ARM_LABELS[row['arm']]} vs baseline", name,
                         report.percent(metric["a"]), report.percent(metric["b"]),
                         f"{100 * metric['difference']:+.1f}", report.interval(metric["seed_ci"]),
                         report.interval(metric["image_ci"]),
                         verdict_text(metric["verdict"], row["arm"])])
    return rows


def scored_on(dose: dict) -> str:
    """What the cells were scored on, for dose.md."""
    left_out = sum(dose.get("val_copies_left_out", {}).values())
    if not left_out:
        return "val"
    minority = dose["config"]["minority"]
    return (f"val without its {left_out} exact copies of training faces "
            f"({dose['val_copies_left_out'][minority]} of them {minority})")


def render_report(dose: dict) -> str:
    """dose.md, from its dose.json content."""
    config = dose["config"]
    minority = config["minority"]
    lines = ["# GAN dose-response: are GAN faces worth real " + minority + " faces?", ""]
    if dose["synthetic_data"]:
        lines += [("> **Synthetic data.** These runs used the embedded procedural faces (no "
                  "`--data`): the numbers are **not** FER-2013 results."), ""]
    lines += [f"**{dose['answer']}.**", "",
              (f"Data `{dose['data']}`; real {minority} training faces cut to k = "
               f"{', '.join(map(str, sorted(map(int, dose['faces']))))} (nested, seed "
               f"{config['subsample_seed']}), every other class and val untouched, scored on "
               f"{scored_on(dose)}. Every arm is the `{config['baseline']}` recipe at equal "
               "steps (its synthetic slots filled with GAN faces, or with repeats of real faces of the "
               "same classes); percentages, mean ± 95% t-interval over seeds."), "",
              "## Cells", "",
              report.markdown_table(TABLE_HEADER, table_rows(dose["table"])), "",
              "## Each arm against the baseline (paired seeds)", "",
              report.markdown_table(("k", "A vs B", "metric", "A", "B", "A - B",
                                     "95% CI over seeds", "95% CI over images", "verdict"),
                                    comparison_rows(dose["comparisons"])), "",
              "## Exchange rate", "",
              (f"The k at which the baseline's mean {minority} AP, linearly interpolated over "
               "k, reaches the GAN arm's (a benefit is claimed only where the paired verdict "
               "says so)."), "",
              report.markdown_table(
                  ("k", "GAN arm AP", "baseline AP", "verdict", "baseline reaches it at k",
                   "GAN faces worth"),
                  [[str(r["k"]), report.percent(r["gan_ap"]), report.percent(r["baseline_ap"]),
                    verdict_text(r["verdict"], "baseline_gan"),
                    "beyond the measured range" if r["equivalent_k"] is None
                    else f"{r['equivalent_k']:.0f}",
                    "n/a" if r["worth"] is None else f"{r['worth']:.0f}"]
                   for r in dose["exchange_rates"]]), "",
              "## GAN faces kept by the judge", "",
              report.markdown_table(("k", "kept classes", "slots per class"),
                                    [[k, ", ".join(f["kept"]) or "none (no GAN arm)",
                                      ", ".join(f"{n} {c}" for n, c in f["slots"].items())]
                                     for k, f in dose["faces"].items()]), "",
              "![dose](dose.png)", ""]
    return "\n".join(lines + report._reproducibility_lines(dose["reproducibility"]))


def save_figure(path: pathlib.Path, dose: dict) -> None:
    """dose.png: the minority's AP against k per arm, mean ± 95% CI over seeds."""
    ks = sorted({row["k"] for row in dose["table"]})
    series = {ARM_LABELS[arm]: [next(((row["ap"]["mean"], row["ap"]["half_width"])
                                      for row in dose["table"] if row["k"] == k
                                      and row["arm"] == arm and row["ap"]["mean"] is not None),
                                     None) for k in ks] for arm in ARMS}
    minority = dose["config"]["minority"]
    plots.save_dose_response_png(ks, series, path, xlabel=f"real {minority} training faces (k)",
                                 ylabel=f"{minority} AP (val)",
                                 title="synthetic data" if dose["synthetic_data"] else "")
