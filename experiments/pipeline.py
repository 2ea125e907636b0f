"""Runs the whole project: data, GAN, synthetic faces, training mix, flat and two-tier models.

Stages: data -> conditional GAN -> synthetic minority faces -> training mix -> flat and
two-tier classifiers -> evaluation -> report.

    python -m experiments.pipeline [--data PATH] [--config experiments/configs/pipeline_X.py]
        [--workdir DIR] [--until STAGE] [--config.key=value ...]

Defaults: ``pipeline_default`` on the embedded SYNTHETIC faces, workdir
``checkpoints/pipeline``. Each stage writes ``stages/<stage>.json`` (its outputs and time)
when it finishes; a rerun skips finished stages, and a stage that was killed continues from
its checkpoints (classifier engine and GAN resume). The workdir ends up with ``report.md``,
``results.json`` and the figures it links.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import time
from collections.abc import Callable

import ml_collections
import numpy as np

from experiments import report as report_lib
from experiments import synthesize
from experiments.calibrate import calibrate
from experiments.cli import check_workdir, experiment_parser, parse_with_config, run_main
from experiments.evaluate import in_view, offsets_vector, report_of
from fer_jax import calibration, classes, inference, train, two_tier
from fer_jax.data import load_from_config, sampling
from fer_jax.errors import FerError
from gan import metrics as gan_metrics
from gan import train as gan_train
from gan.sample import load_generators

DEFAULT_CONFIG = pathlib.Path(__file__).parent / "configs" / "pipeline_default.py"
DEFAULT_WORKDIR = pathlib.Path("checkpoints") / "pipeline"
SYNTHETIC_NPZ = "synthetic.npz"


class Interrupted(FerError):
    """A training stage stopped on SIGTERM/SIGINT after checkpointing."""

    def __init__(self, stage: str, signal_number: int):
        super().__init__(f"stage {stage!r} stopped by signal {signal_number}; its checkpoint is "
                         "saved: rerun the same command to resume")
        self.signal_number = signal_number


# ----------------------------------------------------------------------------- stage records
class StageLog:
    """Done-markers of a workdir: ``stages/<name>.json`` = ``{"seconds", "outputs", "inputs"}``
    (``inputs``: the config values the stage's outputs depend on)."""

    def __init__(self, workdir: pathlib.Path):
        self.directory = workdir / "stages"

    def get(self, name: str) -> dict | None:
        path = self.directory / f"{name}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def mark(self, name: str, outputs: dict, seconds: float, inputs: dict) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        write_json(self.directory / f"{name}.json", {"stage": name, "seconds": seconds,
                                                     "outputs": outputs, "inputs": inputs})


def write_json(path: pathlib.Path, value) -> None:
    """Writes JSON atomically (temporary file + rename): a killed run never leaves half a file."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value, indent=1, default=_to_builtin) + "\n")
    os.replace(temporary, path)


def _to_builtin(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def changed_keys(saved, current, prefix: str = "") -> list[str]:
    """Dotted paths where two JSON trees differ (e.g. ``["flat.num_epochs"]``)."""
    if isinstance(saved, dict) and isinstance(current, dict):
        return [key for k in sorted(set(saved) | set(current))
                for key in changed_keys(saved.get(k), current.get(k), f"{prefix}{k}.")]
    return [] if saved == current else [prefix.rstrip(".") or "(everything)"]


# ----------------------------------------------------------------------------- helpers
def classifier_config(section: ml_collections.ConfigDict,
                      synthetic_npz: pathlib.Path | None) -> ml_collections.ConfigDict:
    """An engine config from a pipeline classifier section: ``data.synthetic_npz`` points at
    the pipeline's synthetic faces when the section has ``data.gan_mixing``."""
    config = section.copy_and_resolve_references()
    config.data.synthetic_npz = (str(synthetic_npz) if config.data.get("gan_mixing")
                                 and synthetic_npz is not None else None)
    return config


def synthetic_per_class(train_counts: dict[str, int], names, *, grouping,
                        mixes: list[tuple[int | None, float]],
                        max_per_class: int) -> dict[str, int]:
    """Synthetic images to generate for each class of ``names`` in ``grouping``: as many as
    any training mix can use, at most ``max_per_class``. ``mixes``: ``(target_per_class,
    max_synthetic_share)`` of each classifier that mixes them in; a mix tops a class up to its
    target (default: the majority count), synthetic images being at most the share of it (see
    :func:`fer_jax.data.sampling.build_training_mix`)."""
    majority = max(train_counts[name] for name in grouping.class_names)
    counts = {}
    for name in names:
        if name not in grouping.class_names:
            continue
        usable = [min(target - train_counts[name], int(np.floor(share * target + 1e-9)))
                  for target, share in ((t or majority, s) for t, s in mixes)]
        counts[name] = min(max(usable, default=0), max_per_class)
    return {name: n for name, n in counts.items() if n > 0}


def _mixes(config) -> list[tuple[int | None, float]]:
    """``(target_per_class, max_synthetic_share)`` of the classifiers with GAN mixing on."""
    sections = [config.flat] + [config.two_tier[m] for m in two_tier.MEMBERS]
    return [(s.data.target_per_class, s.data.max_synthetic_share) for s in sections
            if s.data.get("gan_mixing")]


def gan_dir(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> pathlib.Path:
    """The GAN a pipeline samples: ``config.gan_workdir`` when it reuses a finished
    ``experiments.train_gan`` run, else the one its gan stage trains in ``<workdir>/gan``."""
    return pathlib.Path(config.gan_workdir) if config.get("gan_workdir") else workdir / "gan"


# ----------------------------------------------------------------------------- the pipeline
class Pipeline:
    """Runs the stages of one config in one workdir, skipping finished ones."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: str | os.PathLike, *,
                 data=None):
        """``data``: the FerData ``config.data`` names, when the caller has it loaded."""
        self.config = config
        self.workdir = pathlib.Path(workdir)
        self.stages = StageLog(self.workdir)
        self._data = data
        self.setting = two_tier.setting_grouping(config.setting)  # validates the setting
        self.steps: list[tuple[str, Callable[[], dict]]] = [
            ("data", self.stage_data), ("gan", self.stage_gan),
            ("synthesize", self.stage_synthesize), ("mix", self.stage_mix),
            ("flat", self.stage_flat), ("two_tier", self.stage_two_tier),
            ("evaluate", self.stage_evaluate), ("report", self.stage_report)]

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.steps]

    @property
    def data(self):
        if self._data is None:
            self._data = load_from_config(self.config.data)
        return self._data

    @property
    def gan_dir(self) -> pathlib.Path:
        return gan_dir(self.workdir, self.config)

    @property
    def synthetic_npz(self) -> pathlib.Path:
        return self.workdir / SYNTHETIC_NPZ

    def outputs(self, stage: str) -> dict:
        record = self.stages.get(stage)
        if record is None:
            raise FerError(f"{self.workdir}: stage {stage!r} has not finished")
        return record["outputs"]

    def run(self, until: str | None = None) -> dict:
        """Runs every unfinished stage in order (up to and including ``until``); returns
        ``{stage: seconds}`` of the stages run now (0 for skipped ones)."""
        if until is not None and until not in self.names:
            raise FerError(f"unknown stage {until!r}; stages: {', '.join(self.names)}")
        timings = {}
        for index, (name, stage) in enumerate(self.steps, 1):
            prefix = f"[{index}/{len(self.steps)}] {name}"
            record = self.stages.get(name)
            if record is not None:
                self._check_inputs(name, record)
                print(f"{prefix}: skipped (finished earlier; stages/{name}.json)", flush=True)
                timings[name] = 0.0
            else:
                print(f"{prefix}: running", flush=True)
                start = time.perf_counter()
                outputs = stage()
                timings[name] = time.perf_counter() - start
                self.stages.mark(name, outputs, timings[name], self.stage_inputs(name))
                print(f"{prefix}: done in {timings[name]:.1f}s", flush=True)
            if name == until:
                break
        return timings

    def stage_inputs(self, name: str) -> dict:
        """The config values the outputs of stage ``name`` depend on, its upstream stages'
        included (JSON)."""
        c = json.loads(self.config.to_json_best_effort())
        sections = {"flat": c["flat"], **{m: c["two_tier"][m] for m in two_tier.MEMBERS}}
        chain = {"data": {"data": c["data"]}}
        # gan.baseline and gan.eval configure experiments.train_gan, not gan.train.train_gan.
        if c.get("gan_workdir"):
            chain["gan"] = {**chain["data"], "gan_workdir": c["gan_workdir"]}
        else:
            chain["gan"] = {**chain["data"], "gan": {k: v for k, v in c["gan"].items()
                                                     if k not in ("baseline", "eval")}}
        chain["synthesize"] = {**chain["gan"], "setting": c["setting"],
                               "synthesize": c["synthesize"],
                               "mixing": {k: [v["data"].get("gan_mixing"),
                                              v["data"]["max_synthetic_share"],
                                              v["data"]["target_per_class"]]
                                          for k, v in sections.items()}}
        chain["mix"] = {**chain["synthesize"], "mix": {k: v["data"] for k, v in sections.items()}}
        chain["flat"] = {**chain["synthesize"], "flat": c["flat"]}
        chain["two_tier"] = {**chain["flat" if c["two_tier"].get("init_from_flat")
                                    else "synthesize"], "two_tier": c["two_tier"]}
        chain["evaluate"] = {**chain["flat"], **chain["two_tier"], "eval": c["eval"]}
        chain["report"] = {**chain["evaluate"], **chain["mix"]}
        return chain[name]

    def _check_inputs(self, name: str, record: dict) -> None:
        """Refuses to build on a finished stage whose config values have changed since."""
        changed = changed_keys(record.get("inputs"), self.stage_inputs(name))
        if changed:
            more = f" (+{len(changed) - 6} more)" if len(changed) > 6 else ""
            raise FerError(
                f"{self.workdir}: stage {name!r} finished with other settings than this config "
                f"(changed: {', '.join(changed[:6])}{more}); use another --workdir, the original "
                f"config, or delete stages/{name}.json and the later markers to redo them")

    # ------------------------------------------------------------------------- stages
    def stage_data(self) -> dict:
        data = self.data
        print(f"  data: {data.source}" + ("  (SYNTHETIC: not FER-2013)" if data.synthetic else ""))
        for split, counts in data.counts().items():
            print(f"  {split:>5}: {sum(counts.values()):6d} " +
                  " ".join(f"{name} {n}" for name, n in counts.items()))
        return {"source": data.source, "synthetic": data.synthetic, "counts": data.counts(),
                "skipped": len(data.skipped), "splits": [s for s in ("train", "val", "test")
                                                         if data.has(s)]}

    def stage_gan(self) -> dict:
        if self.config.get("gan_workdir"):
            generators = load_generators(self.gan_dir)  # a clear error when there is none
            print(f"  reusing the GAN trained in {self.gan_dir} "
                  f"({', '.join(generators.classes)})")
            return {"reused": str(self.gan_dir), "classes": list(generators.classes)}
        summary = gan_train.train_gan(self.config.gan, self.gan_dir, self.data)
        for run in summary["runs"].values():
            if run.get("interrupted") is not None:
                raise Interrupted("gan", run["interrupted"])
        return summary

    def stage_synthesize(self) -> dict:
        per_class = synthetic_per_class(
            self.data.split("train").counts(), self.config.synthesize.classes,
            grouping=self.setting, mixes=_mixes(self.config),
            max_per_class=self.config.synthesize.max_per_class)
        if not per_class:
            print("  no minority class needs synthetic images (or no classifier mixes them)")
            return {"path": None, "per_class": {}}
        synthesize.main(["--workdir", str(self.gan_dir),
                         "--per-class", ",".join(f"{k}={v}" for k, v in per_class.items()),
                         "--out", str(self.synthetic_npz), "--seed",
                         str(self.config.synthesize.seed),
                         "--truncation", str(self.config.synthesize.truncation),
                         "--grid", str(self.workdir / report_lib.FIGURES["gan_samples"])])
        written = sampling.load_synthetic_npz(self.synthetic_npz).counts()
        return {"path": SYNTHETIC_NPZ, "per_class": {k: v for k, v in written.items() if v}}

    def _synthetic_path(self) -> pathlib.Path | None:
        return self.synthetic_npz if self.outputs("synthesize")["path"] else None

    def classifier_sections(self) -> dict[str, ml_collections.ConfigDict]:
        """Engine configs of the flat model and the two-tier members, ready to train."""
        npz = self._synthetic_path()
        sections = {"flat": classifier_config(self.config.flat, npz)}
        for member in two_tier.MEMBERS:
            sections[member] = classifier_config(
                two_tier.member_config(self.config.two_tier, member), npz)
        return sections

    def stage_mix(self) -> dict:
        synthetic = sampling.load_synthetic_npz(self.synthetic_npz) \
            if self._synthetic_path() else None
        mixes = {}
        for name, section in self.classifier_sections().items():
            mix = sampling.build_training_mix(
                self.data.split("train"), synthetic if section.data.synthetic_npz else None,
                oversample=section.data.oversample,
                target_per_class=section.data.target_per_class,
                max_synthetic_share=section.data.max_synthetic_share,
                classes=classes.grouping(section.grouping), seed=section.seed)
            mixes[name] = {"grouping": section.grouping, "images_per_epoch": len(mix),
                           "per_class": mix.summary()}
        print(report_lib.mix_table(mixes["flat"]["per_class"]))
        return mixes

    def stage_flat(self) -> dict:
        summary = train.train_and_evaluate(self.classifier_sections()["flat"],
                                           self.workdir / "flat", self.data)
        if summary.get("interrupted") is not None:
            raise Interrupted("flat", summary["interrupted"])
        return summary

    def two_tier_config(self) -> ml_collections.ConfigDict:
        """The two-tier section ready to train: members mix the synthetic faces as configured
        and, with ``init_from_flat``, fine-tune this run's flat model."""
        config = self.config.two_tier.copy_and_resolve_references()
        npz = self._synthetic_path()
        for member in two_tier.MEMBERS:
            config[member] = classifier_config(config[member], npz)
            if config.get("init_from_flat"):
                config[member].init_from = str(self.workdir / "flat")
        return config

    def stage_two_tier(self) -> dict:
        summaries = two_tier.train_two_tier(self.two_tier_config(), self.workdir / "two_tier",
                                            self.data)
        if summaries["interrupted"] is not None:
            raise Interrupted("two_tier", summaries["interrupted"])
        return summaries

    def stage_evaluate(self) -> dict:
        evaluation = evaluate_models(self.workdir, self.data, self.config)
        write_json(self.workdir / "evaluation.json", evaluation)
        return {"path": "evaluation.json"}

    def stage_report(self) -> dict:
        results = {
            "data": self.outputs("data"),
            "setting": self.config.setting,
            "config": json.loads(self.config.to_json_best_effort()),
            "gan": self.outputs("gan"),
            "synthetic": self.outputs("synthesize"),
            "mix": self.outputs("mix"),
            "training": {"flat": self.outputs("flat"), "two_tier": self.outputs("two_tier")},
            "evaluation": json.loads((self.workdir / "evaluation.json").read_text()),
            "stage_seconds": {name: (self.stages.get(name) or {}).get("seconds")
                              for name in self.names[:-1]},
            "reference": report_lib.SEED_REFERENCE,
        }
        results["figures"] = report_lib.save_figures(self.workdir, results)
        write_json(self.workdir / "results.json", results)
        (self.workdir / "report.md").write_text(report_lib.render_pipeline_report(results))
        return {"report": "report.md", "results": "results.json", "figures": results["figures"]}


# ----------------------------------------------------------------------------- evaluation
def evaluate_models(workdir: pathlib.Path, data, config: ml_collections.ConfigDict) -> dict:
    """Scores the flat and two-tier models (both routings) on val and, when present, test:
    in the setting and, for the 7-class setting, also read as 6 classes (the seed's setting);
    each two-tier member on its own grouping; the 6-class decisions calibrated toward the
    seed (``config.eval.calibration``); the GAN's samples by the flat model. Every model runs
    once per split: the readings, both routings and the member scores share its predictions."""
    best, tta = config.eval.checkpoint == "best", config.eval.tta
    flat = inference.load_predictor(workdir / "flat", best=best)
    model = two_tier.load_two_tier(workdir / "two_tier", best=best)
    other = "hard" if model.routing == "soft" else "soft"
    views = [config.setting] + (["six"] if config.setting == "seven" else [])
    splits = [name for name in ("val", "test") if data.has(name)]
    out = {"splits": splits, "views": views, "checkpoint": config.eval.checkpoint,
           "routing": model.routing, "models": {}, "members": {}}
    six: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}  # (model, split) -> readings
    for split_name in splits:
        split = data.split(split_name)
        members = {name: model.member(name)(split.images, tta=tta, progress=f"predict [{name}]")
                   for name in two_tier.MEMBERS}
        probs = {"flat": (flat.grouping, flat(split.images, tta=tta, progress="predict [flat]"))}
        for name, routing in (("two_tier", model.routing), (f"two_tier_{other}", other)):
            probs[name] = (model.grouping, two_tier.route(*members.values(),
                                                          setting=model.setting, routing=routing))
        for name, (grouping, model_probs) in probs.items():
            for view in views:
                reading = in_view(model_probs, split.labels, grouping, classes.grouping(view))
                out["models"].setdefault(name, {}).setdefault(split_name, {})[view] = \
                    report_of(*reading, classes.grouping(view))
                if view == "six":
                    six[name, split_name] = reading
        for name, member_probs in members.items():
            grouping = model.member(name).grouping
            out["members"].setdefault(name, {})[split_name] = report_of(
                *in_view(member_probs, split.labels, grouping, grouping), grouping)
    objective = config.eval.get("calibration")
    if objective and "six" in views and "val" in splits:
        # Decision offsets toward the seed's operating point, scored by cross-fitting on val.
        out["calibration"] = {"objective": objective, "split": "val",
                              "folds": config.eval.calibration_folds, "models": {}}
        for name in ("flat", "two_tier"):
            result = calibrate(*six[name, "val"], classes.SIX, objective=objective,
                               folds=config.eval.calibration_folds)
            if "test" in splits:  # the offsets fitted on all of val, applied to test
                labels, test_probs = six[name, "test"]
                offsets = offsets_vector(result["offsets"], classes.SIX)
                result["reports"]["test"] = report_of(
                    labels, calibration.apply_offsets(test_probs, offsets), classes.SIX)
            out["calibration"]["models"][name] = result
    out["gan"] = _gan_recognizability(workdir, data, config)
    return out


def _gan_recognizability(workdir: pathlib.Path, data, config) -> dict | None:
    """GAN metrics (FER-FID, recognizability) of the images the pipeline synthesizes (same
    truncation), judged by the flat model, or None when off."""
    if not config.eval.gan_samples_per_class:
        return None
    return gan_metrics.evaluate_generators(
        load_generators(gan_dir(workdir, config)), data,
        gan_metrics.load_feature_classifier(workdir / "flat"),
        samples_per_class=config.eval.gan_samples_per_class, seed=config.synthesize.seed,
        truncation=config.synthesize.truncation)


# ----------------------------------------------------------------------------- CLI
def parse_args(argv: list[str] | None):
    parser = experiment_parser("python -m experiments.pipeline", __doc__.splitlines()[0],
                               example="--config.flat.num_epochs=3",
                               default_config=DEFAULT_CONFIG, default_workdir=DEFAULT_WORKDIR)
    parser.add_argument("--until", metavar="STAGE", default=None,
                        help="stop after this stage (data, gan, synthesize, mix, flat, "
                             "two_tier, evaluate, report)")
    args, config, _ = parse_with_config(parser, argv, DEFAULT_CONFIG)
    return args, config


def main(argv: list[str] | None = None) -> int:
    args, config = parse_args(argv)
    check_workdir(args.workdir)
    pipeline = Pipeline(config, args.workdir)
    start = time.perf_counter()
    try:
        timings = pipeline.run(until=args.until)
    except Interrupted as stopped:
        print(f"interrupted: {stopped}", file=sys.stderr)
        return 128 + stopped.signal_number
    print(report_lib.timing_table(timings, time.perf_counter() - start))
    evaluation = pipeline.workdir / "evaluation.json"
    if evaluation.is_file():
        print(report_lib.summary_table(json.loads(evaluation.read_text())))
    if pipeline.stages.get("report"):
        print(f"report: {pipeline.workdir / 'report.md'}")
    return 0


if __name__ == "__main__":
    run_main(main)
