"""The project's pipeline as stages: data, GAN, judge, synthetic faces, training mix, flat and
two-tier classifiers, evaluation, report.

Synthetic faces pass a recognizability gate before they are mixed into training: the judge, a
classifier trained on the real training split only (never a model under evaluation), labels
the generated candidates, and only classes it recognizes (:func:`gan.metrics.recognizability_gate`
at ``config.synthesize.min_recognizability``) are written to ``synthetic.npz``. The GAN metrics
of the evaluation stage sample from a seed stream of their own
(:func:`gan.sample.evaluation_seed`), never the faces a classifier trained on.

Each stage runs once in its workdir (:class:`fer_jax.stages.Stages`: a rerun skips finished
stages and refuses, or with ``recompute`` redoes, a stage whose config section or upstream
outputs changed); a stage that was killed continues from its checkpoints (classifier engine
and GAN resume). The workdir ends up with ``report.md``, ``results.json`` and the figures.
"""

from __future__ import annotations

import json
import os
import pathlib

import ml_collections
import numpy as np

from fer_jax import classes, evaluation, inference, provenance, report, run_guard, train, two_tier
from fer_jax.classes import EMOTION_INDEX
from fer_jax.data import FerData, load_from_config, sampling
from fer_jax.errors import FerError, Interrupted
from fer_jax.stages import Stages
from gan import metrics as gan_metrics
from gan import sample as gan_sample
from gan import train as gan_train

SYNTHETIC_NPZ = "synthetic.npz"
STAGES = ("data", "gan", "judge", "synthesize", "mix", "flat", "two_tier", "evaluate",
          "report")


def classifier_config(section: ml_collections.ConfigDict,
                      synthetic_npz: pathlib.Path | None) -> ml_collections.ConfigDict:
    """An engine config from a pipeline classifier section: ``data.synthetic_npz`` points at
    the pipeline's synthetic faces when the section has ``data.gan_mixing``."""
    config = section.copy_and_resolve_references()
    config.data.synthetic_npz = (str(synthetic_npz) if config.data.gan_mixing
                                 and synthetic_npz is not None else None)
    return config


def synthetic_per_class(train_counts: dict[str, int], names, *, grouping,
                        mixes: list[tuple[int | None, float, str]],
                        max_per_class: int) -> dict[str, int]:
    """Synthetic images to generate for each class of ``names`` in ``grouping``: as many as
    any training mix can use, at most ``max_per_class``. ``mixes``: ``(target_per_class,
    max_synthetic_share, synthetic_balance)`` of each classifier that mixes them in; a mix
    takes at most the share of a class's target (default: the majority count), and with
    ``"gap"`` balance only up to the target (see
    :func:`fer_jax.data.sampling.build_training_mix`)."""
    majority = max(train_counts[name] for name in grouping.class_names)
    counts = {}
    for name in names:
        if name not in grouping.class_names:
            continue
        usable = [min(target - train_counts[name] if balance == "gap" else target,
                      int(np.floor(share * target + 1e-9)))
                  for target, share, balance in ((t or majority, s, b) for t, s, b in mixes)]
        counts[name] = min(max(usable, default=0), max_per_class)
    return {name: n for name, n in counts.items() if n > 0}


def _mixes(config) -> list[tuple[int | None, float, str]]:
    """``(target_per_class, max_synthetic_share, synthetic_balance)`` of the classifiers with
    GAN mixing on."""
    sections = [config.flat] + [config.two_tier[m] for m in two_tier.MEMBERS]
    return [(s.data.target_per_class, s.data.max_synthetic_share, s.data.synthetic_balance)
            for s in sections
            if s.data.gan_mixing]


def _stages_until(until: str | None) -> tuple[str, ...]:
    """The stages in order up to and including ``until`` (all of them for None)."""
    if until is None:
        return STAGES
    if until not in STAGES:
        raise FerError(f"unknown stage {until!r}; stages: {', '.join(STAGES)}")
    return STAGES[:STAGES.index(until) + 1]


def train_two_tier(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
                   data: FerData | None = None) -> dict:
    """Trains the three members with :func:`fer_jax.train.train_and_evaluate`, each in
    ``<workdir>/<member>`` (resuming from its checkpoints), then writes the manifest that makes
    ``workdir`` one loadable two-tier checkpoint.

    ``config``: ``setting`` ("seven" | "six"), ``routing`` ("soft" | "hard") and one engine
    config per member (``tier1``, ``negative``, ``positive``). Returns ``{member: summary}``;
    raises :class:`Interrupted` when a member was stopped by a signal (no manifest then).
    """
    workdir = pathlib.Path(workdir)
    summaries = {}
    for member, grouping in two_tier.member_groupings(config.setting).items():
        print(f"two-tier ({config.setting}): training {member} [{grouping.name}]", flush=True)
        summary = train.train_and_evaluate(two_tier.member_config(config, member),
                                           workdir / member, data)
        if summary["interrupted"] is not None:
            raise Interrupted(f"two-tier member {member!r}", summary["interrupted"])
        summaries[member] = summary
    two_tier.write_manifest(workdir, config.setting, config.routing)
    return summaries


class Pipeline:
    """The stages of one config in one workdir, each run once (see the module docstring)."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: str | os.PathLike, *,
                 data: FerData | None = None, recompute: bool = False):
        """``data``: the FerData ``config.data`` names, when the caller has it loaded;
        ``recompute``: redo stages whose inputs changed instead of refusing them."""
        self.config = config
        self.workdir = pathlib.Path(workdir)
        self.stages = Stages(self.workdir / "stages", recompute=recompute)
        self._data = data
        self.setting = two_tier.setting_grouping(config.setting)  # validates the setting

    @property
    def data(self) -> FerData:
        """The data (its stage read: every stage that uses it depends on ``config.data``)."""
        self.stages.outputs("data")
        return self._loaded_data()

    def _loaded_data(self) -> FerData:
        if self._data is None:
            self._data = load_from_config(self.config.data)
        return self._data

    def path(self, stage: str, root: pathlib.Path | None = None) -> pathlib.Path | None:
        """The folder or file a finished stage wrote (its ``path`` output) in ``root`` (the
        workdir by default; sections pass ``pathlib.Path()``, so that a moved workdir keeps
        its fingerprints)."""
        path = self.stages.outputs(stage)["path"]
        return None if path is None else (self.workdir if root is None else root) / path

    def run(self, until: str | None = None) -> dict[str, float]:
        """Runs every unfinished stage in order (up to and including ``until``); returns
        ``{stage: seconds}`` of the stages run now (0 for skipped ones)."""
        timings = {}
        for index, name in enumerate(_stages_until(until), 1):
            body, section, clear = getattr(self, f"stage_{name}")()
            _, seconds = self.stages.run(name, body, section,
                                         label=f"[{index}/{len(STAGES)}] {name}", clear=clear)
            timings[name] = seconds or 0.0
        return timings

    def sections(self, until: str) -> dict:
        """``{stage: the config section it reads}`` of the stages up to and including
        ``until``: what a caller of ``run(until)`` depends on (not the rest of the config)."""
        return {name: getattr(self, f"stage_{name}")()[1]() for name in _stages_until(until)}

    # ------------------------------------------------------------------------- stages
    # Each stage_<name>() gives (body, the config section body reads itself, folder to clear
    # before recomputing it).
    def stage_data(self):
        def body():
            data = self._loaded_data()
            print(f"  data: {data.source}"
                  + ("  (SYNTHETIC: not FER-2013)" if data.synthetic else ""))
            for split, counts in data.counts().items():
                print(f"  {split:>5}: {sum(counts.values()):6d} " +
                      " ".join(f"{name} {n}" for name, n in counts.items()))
            return {"source": data.source, "synthetic": data.synthetic,
                    "counts": data.counts(), "skipped": len(data.skipped),
                    "skipped_records": data.skipped_records(),
                    "splits": [s for s in ("train", "val", "test") if data.has(s)]}

        return body, lambda: {"data": self.config.data}, None

    def stage_gan(self):
        reused = self.config.gan_workdir
        gan_dir = pathlib.Path(reused) if reused else self.workdir / "gan"

        def body():
            if reused:
                generators = gan_sample.load_generators(gan_dir)  # clear error when none
                print(f"  reusing the GAN trained in {gan_dir} "
                      f"({', '.join(generators.classes)})")
                return {"reused": str(gan_dir), "classes": list(generators.classes),
                        "path": str(gan_dir)}
            summary = gan_train.train_gan(self.config.gan, gan_dir, self.data)
            for run in summary["runs"].values():
                if run["interrupted"] is not None:
                    raise Interrupted("stage 'gan'", run["interrupted"])
            return {**summary, "path": "gan"}

        # gan.baseline and gan.eval configure experiments.train_gan, not gan.train.train_gan.
        def section():
            if reused:
                return {"gan_workdir": reused}
            return {"gan": {k: v for k, v in run_guard.to_json(self.config.gan).items()
                            if k not in ("baseline", "eval")}}

        return body, section, None if reused else gan_dir

    def stage_judge(self):
        reused = self.config.judge_workdir

        def body():
            if not _mixes(self.config):
                print("  no classifier mixes synthetic faces: no judge needed")
                return {"path": None}
            if reused:
                judge = inference.load(reused)  # clear error when there is no classifier
                print(f"  reusing the judge trained in {reused} ({judge.description})")
                return {"reused": reused, "path": str(pathlib.Path(reused).resolve())}
            summary = train.train_and_evaluate(classifier_config(self.config.judge, None),
                                               self.workdir / "judge", self.data)
            if summary["interrupted"] is not None:
                raise Interrupted("stage 'judge'", summary["interrupted"])
            return {**summary, "path": "judge"}

        def section():
            judge = {"judge_workdir": reused} if reused else {
                "judge": classifier_config(self.config.judge, None)}
            return {**judge, "mixes": _mixes(self.config)}

        return body, section, None if reused else self.workdir / "judge"

    def stage_synthesize(self):
        def body():
            synthesize = self.config.synthesize
            (self.workdir / SYNTHETIC_NPZ).unlink(missing_ok=True)  # none left from a rerun
            per_class = synthetic_per_class(
                self.data.split("train").counts(), synthesize.classes,
                grouping=self.setting, mixes=_mixes(self.config),
                max_per_class=synthesize.max_per_class)
            if not per_class:
                print("  no minority class needs synthetic images (or no classifier mixes "
                      "them)")
                return {"path": None, "per_class": {}, "gate": None}
            generators = gan_sample.load_generators(self.path("gan"))
            candidates = generators.sample(per_class, synthesize.seed, synthesize.truncation)
            gate, _ = self.judge_candidates(candidates)
            kept = [name for name, verdict in gate.items() if verdict["kept"]]
            print(report.gate_table(gate))
            gan_sample.write_grid(
                generators, list(per_class), self.workdir / report.FIGURES["gan_samples"],
                seed=synthesize.seed, truncation=synthesize.truncation,
                row_names=[f"{name} ({'kept' if gate[name]['kept'] else 'rejected'})"
                           for name in per_class],
                title=f"{report.gan_description(run_guard.to_json(self.config))}; "
                      f"kept: {', '.join(kept) or 'none'}")
            outputs = {"path": None, "per_class": {}, "seed": synthesize.seed,
                       "truncation": synthesize.truncation,
                       "min_recognizability": synthesize.min_recognizability,
                       "judge": self.stages.outputs("judge")["path"], "gate": gate}
            if not kept:
                print("  the recognizability gate kept no class: no synthetic face is mixed "
                      "into training")
                return outputs
            keep = np.isin(candidates.labels, [EMOTION_INDEX[name] for name in kept])
            gan_sample.write_npz(candidates.take(np.flatnonzero(keep)),
                                 self.workdir / SYNTHETIC_NPZ)
            return {**outputs, "path": SYNTHETIC_NPZ,
                    "per_class": {name: per_class[name] for name in kept}}

        return body, lambda: {"setting": self.config.setting,
                              "synthesize": self.config.synthesize,
                              "mixes": _mixes(self.config)}, None

    def judge_candidates(self, candidates) -> tuple[dict, np.ndarray]:
        """The recognizability gate of the synthetic ``candidates``
        (:func:`gan.metrics.recognizability_gate` by the judge), each class with its count and
        the judge's recall on real val images of it; and, from the same predictions, which
        candidates the judge assigns to their class (:func:`gan.metrics.recognized`)."""
        judge = inference.load(self.path("judge"))
        predicted = gan_metrics.judge(judge, candidates)
        gate = gan_metrics.recognizability_gate(
            gan_metrics.judged_shares(judge, candidates, predicted),
            self.config.synthesize.min_recognizability)
        real = evaluation.evaluate(judge, self.data.split("val"), judge.grouping)["per_class"]
        counts = candidates.counts()
        return ({name: {**verdict, "n": counts[name], "judge_real_recall": real[name]["recall"]}
                 for name, verdict in gate.items()},
                gan_metrics.recognized(judge, candidates, predicted))

    def classifier_sections(self, root: pathlib.Path | None = None
                            ) -> dict[str, ml_collections.ConfigDict]:
        """Engine configs of the flat model and the two-tier members, ready to train (paths
        in ``root``, see :meth:`path`)."""
        npz = self.path("synthesize", root)
        sections = {"flat": classifier_config(self.config.flat, npz)}
        for member in two_tier.MEMBERS:
            sections[member] = classifier_config(
                two_tier.member_config(self.config.two_tier, member), npz)
        return sections

    def stage_mix(self):
        def body():
            npz = self.path("synthesize")
            synthetic = sampling.load_synthetic_npz(npz) if npz else None
            mixes = {}
            for name, section in self.classifier_sections().items():
                mix = sampling.build_training_mix(
                    self.data.split("train"), synthetic if section.data.synthetic_npz else None,
                    oversample=section.data.oversample,
                    target_per_class=section.data.target_per_class,
                    max_synthetic_share=section.data.max_synthetic_share,
                    classes=classes.grouping(section.grouping), seed=section.seed,
                    synthetic_balance=section.data.synthetic_balance)
                mixes[name] = {"grouping": section.grouping, "images_per_epoch": len(mix),
                               "per_class": mix.summary()}
            print(report.mix_table(mixes["flat"]["per_class"]))
            return mixes

        def section():
            return {"mix": {name: {"grouping": s.grouping, "seed": s.seed, "data": s.data}
                            for name, s in self.classifier_sections(pathlib.Path()).items()}}

        return body, section, None

    def stage_flat(self):
        def body():
            summary = train.train_and_evaluate(self.classifier_sections()["flat"],
                                               self.workdir / "flat", self.data)
            if summary["interrupted"] is not None:
                raise Interrupted("stage 'flat'", summary["interrupted"])
            return {**summary, "path": "flat"}

        return (body, lambda: {"flat": self.classifier_sections(pathlib.Path())["flat"]},
                self.workdir / "flat")

    def two_tier_config(self, root: pathlib.Path | None = None) -> ml_collections.ConfigDict:
        """The two-tier section ready to train: members mix the synthetic faces as configured
        and, with ``init_from_flat``, fine-tune this run's flat model (paths in ``root``, see
        :meth:`path`)."""
        config = self.config.two_tier.copy_and_resolve_references()
        npz = self.path("synthesize", root)
        for member in two_tier.MEMBERS:
            config[member] = classifier_config(config[member], npz)
            if config.init_from_flat:
                config[member].init_from = str(self.path("flat", root))
        return config

    def stage_two_tier(self):
        def body():
            summaries = train_two_tier(self.two_tier_config(), self.workdir / "two_tier",
                                       self.data)
            return {**summaries, "path": "two_tier"}

        return (body, lambda: {"two_tier": self.two_tier_config(pathlib.Path())},
                self.workdir / "two_tier")

    def stage_evaluate(self):
        def body():
            run_guard.write_json(self.workdir / "evaluation.json", self.evaluate_models())
            return {"path": "evaluation.json"}

        return body, lambda: {"eval": self.config.eval,
                              "synthesize": {k: self.config.synthesize[k]
                                             for k in ("seed", "truncation")}}, None

    def evaluate_models(self) -> dict:
        """:func:`fer_jax.evaluation.compare_models` of the flat and two-tier models, and the
        GAN metrics (FER-FID, recognizability) judged by the flat model's best-by-val
        checkpoint, of faces sampled at synthesize's truncation from the evaluation stream of
        its seed (:func:`gan.sample.evaluation_seed`: none of them was mixed into training;
        None when ``config.eval.gan_samples_per_class`` is 0)."""
        eval_config = self.config.eval
        flat_dir = self.path("flat")
        out = evaluation.compare_models(
            inference.load(flat_dir, eval_config.checkpoint),
            inference.load(self.path("two_tier"), eval_config.checkpoint), self.data,
            tta=eval_config.tta, checkpoint=eval_config.checkpoint,
            calibration_objective=eval_config.calibration,
            calibration_folds=eval_config.calibration_folds)
        out["gan"] = None
        if eval_config.gan_samples_per_class:
            out["gan"] = gan_metrics.evaluate_generators(
                gan_sample.load_generators(self.path("gan")), self.data,
                inference.load(flat_dir, "best"),
                samples_per_class=eval_config.gan_samples_per_class,
                seed=gan_sample.evaluation_seed(self.config.synthesize.seed),
                truncation=self.config.synthesize.truncation)
        return out

    def stage_report(self):
        def body():
            outputs = {name: self.stages.outputs(name) for name in STAGES[:-1]}
            results = {
                "data": outputs["data"],
                "setting": self.config.setting,
                "config": run_guard.to_json(self.config),
                "gan": outputs["gan"],
                "synthetic": outputs["synthesize"],
                "mix": outputs["mix"],
                "training": {"flat": outputs["flat"], "two_tier": outputs["two_tier"]},
                "evaluation": json.loads(self.path("evaluate").read_text()),
                "stage_seconds": {name: self.stages.record(name)["seconds"]
                                  for name in STAGES[:-1]},
                "reference": evaluation.SEED_REFERENCE,
            }
            results["reproducibility"] = provenance.reproducibility(
                data=provenance.data_block(self.config.data.source, self.data),
                config=self.config, seeds=self.seeds(),
                wall_seconds=sum(results["stage_seconds"].values()))
            results["figures"] = report.save_figures(self.workdir, results)
            run_guard.write_json(self.workdir / "results.json", results)
            (self.workdir / "report.md").write_text(report.render_pipeline_report(results))
            return {"report": "report.md", "results": "results.json",
                    "figures": results["figures"]}

        return body, dict, None

    def seeds(self) -> list[int]:
        """The distinct seeds of the run: GAN (when trained here), synthesis, judge and
        classifiers."""
        c = self.config
        sections = [c.judge, c.flat] + [c.two_tier[m] for m in two_tier.MEMBERS]
        return sorted({c.synthesize.seed, *(s.seed for s in sections),
                       *([] if c.gan_workdir else [c.gan.seed])})
