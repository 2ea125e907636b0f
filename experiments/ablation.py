"""Ablation of the two-tier model, oversampling and GAN faces, over settings and seeds.

{flat, two-tier} x {none, oversampling, GAN, GAN + oversampling} in the 7-class and the seed's
6-class setting, over several seeds.

    python -m experiments.ablation [--data PATH] [--config experiments/configs/ablation_X.py]
        [--workdir DIR] [--config.key=value ...]

Defaults: ``ablation_default`` on the embedded SYNTHETIC faces, workdir
``checkpoints/ablation``. Synthetic faces come from ``config.synthetic_npz`` (e.g. a pipeline
workdir's ``synthetic.npz``) or, when unset, from the pipeline's GAN and synthesize stages run
in ``<workdir>/gan_pipeline``. Every classifier is one engine run in
``runs/<grouping>/<variant>/seed_<s>`` (the two-tier positive member is shared by both
settings; ``models/<cell>`` holds each two-tier cell's manifest, a directory that
``experiments.evaluate`` and ``experiments.calibrate`` load); every finished cell is
``cells/<cell>.json`` and is skipped on rerun, and the grid (settings, models, variants, seeds)
may grow between runs. Writes ``ablation.md`` and ``ablation.json`` (mean ± std over seeds of
accuracy, macro-F1, disgust recall).
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import time

import ml_collections
import numpy as np

from experiments import pipeline as pipeline_lib
from experiments import report as report_lib
from experiments.cli import check_workdir, experiment_parser, parse_with_config, run_main
from experiments.evaluate import evaluate
from fer_jax import classes, inference, plots, train, two_tier
from fer_jax.data import load_from_config, sampling
from fer_jax.errors import FerError

DEFAULT_CONFIG = pathlib.Path(__file__).parent / "configs" / "ablation_default.py"
DEFAULT_WORKDIR = pathlib.Path("checkpoints") / "ablation"
MODELS = ("flat", "two_tier")
# Variant -> (oversampling, GAN mixing).
VARIANTS = {"none": (False, False), "oversampling": (True, False), "gan": (False, True),
            "gan_oversampling": (True, True)}
VARIANT_LABELS = {"none": "none", "oversampling": "oversampling", "gan": "GAN",
                  "gan_oversampling": "GAN + oversampling"}


def cell_name(setting: str, model: str, variant: str, seed: int) -> str:
    return f"{setting}-{model}-{variant}-seed{seed}"


# What the cells are, not how each is trained: a workdir may grow or shrink along these.
GRID_KEYS = ("settings", "models", "variants", "seeds")


def check_config(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> None:
    """Records the config in ``<workdir>/config.json``; refuses to continue a workdir that was
    started with a config that trains cells differently (its finished cells would not match).
    Changing the grid (:data:`GRID_KEYS`, e.g. more seeds) is allowed: finished cells are kept.
    A key added since with the value None (a newer version's option, off) is no change."""
    current = json.loads(config.to_json_best_effort())
    path = workdir / "config.json"
    if path.is_file():
        changed = [key for key in pipeline_lib.changed_keys(json.loads(path.read_text()), current)
                   if key.split(".")[0] not in GRID_KEYS]
        if changed:
            raise FerError(f"{workdir}: this workdir was started with another config (changed: "
                           f"{', '.join(changed[:6])}{' ...' if len(changed) > 6 else ''}); use "
                           "another --workdir or the original config")
    workdir.mkdir(parents=True, exist_ok=True)
    pipeline_lib.write_json(path, current)


class Ablation:
    """Trains and scores every cell of one config in one workdir, skipping finished cells."""

    def __init__(self, config: ml_collections.ConfigDict, workdir):
        self.config = config
        self.workdir = pathlib.Path(workdir)
        for setting in config.settings:
            two_tier.setting_grouping(setting)
        unknown = sorted(set(config.models) - set(MODELS)) + \
            sorted(set(config.variants) - set(VARIANTS))
        if unknown:
            raise FerError(f"unknown models/variants {unknown}; models: {MODELS}, variants: "
                           f"{tuple(VARIANTS)}")
        self._data = None
        self._synthetic_npz = None

    @property
    def data(self):
        if self._data is None:
            self._data = load_from_config(self.config.data)
        return self._data

    def cells(self) -> list[tuple[str, str, str, int]]:
        c = self.config
        return [(setting, model, variant, int(seed)) for setting in c.settings
                for model in c.models for variant in c.variants for seed in c.seeds]

    # ------------------------------------------------------------------------- synthetic faces
    def synthetic_npz(self) -> pathlib.Path | None:
        """The synthetic faces GAN variants mix in: ``config.synthetic_npz``, else the
        pipeline's GAN + synthesize stages in ``<workdir>/gan_pipeline``."""
        if self._synthetic_npz is None:
            if self.config.synthetic_npz:
                path = pathlib.Path(self.config.synthetic_npz)
                if path.is_dir():
                    path = path / pipeline_lib.SYNTHETIC_NPZ
                if not path.is_file():
                    raise FerError(f"{path}: no synthetic faces (.npz) here; run "
                                   "python -m experiments.pipeline first or unset synthetic_npz")
            else:
                gan_config = self.config.gan_pipeline.copy_and_resolve_references()
                gan_config.data = self.config.data.copy_and_resolve_references()
                print("synthetic faces: running the pipeline's GAN stages in "
                      f"{self.workdir / 'gan_pipeline'}", flush=True)
                gan_pipeline = pipeline_lib.Pipeline(gan_config, self.workdir / "gan_pipeline",
                                                     data=self.data)
                gan_pipeline.run(until="synthesize")
                path = gan_pipeline.synthetic_npz
            self._synthetic_npz = path
        return self._synthetic_npz

    # ------------------------------------------------------------------------- runs
    def run_config(self, grouping: str, variant: str, seed: int) -> ml_collections.ConfigDict:
        """Engine config of one classifier run."""
        oversample, gan_mixing = VARIANTS[variant]
        config = self.config.classifier.copy_and_resolve_references()
        config.grouping = grouping
        config.seed = seed
        config.data.oversample = oversample
        config.data.gan_mixing = gan_mixing
        config.data.synthetic_npz = str(self.synthetic_npz()) if gan_mixing else None
        if oversample and self.config.get("equal_epoch_size", False):
            # Balanced epochs as long as the real split: every variant trains as many steps.
            config.data.target_per_class = sampling.mean_class_count(
                self.data.split("train").labels, classes.grouping(grouping))
        return config

    def train_run(self, grouping: str, variant: str, seed: int) -> pathlib.Path:
        """Trains (or resumes, or finds finished) one classifier run; returns its workdir."""
        workdir = self.workdir / "runs" / grouping / variant / f"seed_{seed}"
        if (workdir / "report.json").is_file():
            return workdir
        print(f"  training {grouping} / {variant} / seed {seed}", flush=True)
        summary = train.train_and_evaluate(self.run_config(grouping, variant, seed), workdir,
                                           self.data)
        if summary.get("interrupted") is not None:
            raise pipeline_lib.Interrupted(f"{grouping}/{variant}/seed_{seed}",
                                           summary["interrupted"])
        return workdir

    def two_tier_dir(self, setting: str, variant: str, seed: int) -> pathlib.Path:
        """Trains (or finds) the three member runs and writes a two-tier manifest over them in
        ``models/<cell>``: one directory that evaluate and calibrate load like any model."""
        directory = self.workdir / "models" / cell_name(setting, "two_tier", variant, seed)
        directory.mkdir(parents=True, exist_ok=True)
        members = {name: os.path.relpath(self.train_run(grouping.name, variant, seed), directory)
                   for name, grouping in two_tier.member_groupings(setting).items()}
        two_tier.write_manifest(directory, setting, self.config.routing, members)
        return directory

    def predictor(self, setting: str, model: str, variant: str, seed: int):
        best = self.config.checkpoint == "best"
        if model == "flat":
            return inference.load_predictor(self.train_run(setting, variant, seed), best=best)
        return two_tier.load_predictor(self.two_tier_dir(setting, variant, seed), best=best)

    # ------------------------------------------------------------------------- cells
    def eval_split(self) -> str:
        split = self.config.eval_split
        if split == "auto":
            return "test" if self.data.has("test") else "val"
        return split

    def run(self) -> dict:
        """Runs every unfinished cell, then writes the tables; returns the ablation dict."""
        check_config(self.workdir, self.config)
        cells_dir = self.workdir / "cells"
        cells_dir.mkdir(parents=True, exist_ok=True)
        cells = self.cells()
        results = {}
        for index, (setting, model, variant, seed) in enumerate(cells, 1):
            name = cell_name(setting, model, variant, seed)
            path = cells_dir / f"{name}.json"
            prefix = f"[{index}/{len(cells)}] {name}"
            if path.is_file():
                print(f"{prefix}: skipped (finished earlier)", flush=True)
                results[name] = json.loads(path.read_text())
                if model == "two_tier":  # workdirs from before models/ existed get theirs
                    self.two_tier_dir(setting, variant, seed)
                continue
            print(f"{prefix}: running", flush=True)
            start = time.perf_counter()
            split = self.eval_split()
            report = evaluate(self.predictor(setting, model, variant, seed),
                              self.data.split(split), classes.grouping(setting))
            result = {"setting": setting, "model": model, "variant": variant, "seed": seed,
                      "split": split, "accuracy": report["accuracy"],
                      "macro_f1": report["macro_f1"],
                      "disgust_recall": report_lib.recall(report, "disgust"),
                      "seconds": time.perf_counter() - start, "report": report}
            pipeline_lib.write_json(path, result)
            results[name] = result
            print(f"{prefix}: accuracy {report_lib.percent(result['accuracy'])}%, macro-F1 "
                  f"{report_lib.percent(result['macro_f1'])}%", flush=True)
        table = summarize(results.values())
        ablation = {"data": self.data.source, "synthetic_data": self.data.synthetic,
                    "config": json.loads(self.config.to_json_best_effort()),
                    "table": table, "cells": results}
        pipeline_lib.write_json(self.workdir / "ablation.json", ablation)
        seed_reports = six_class_reports(results.values())
        if seed_reports:
            plots.save_recall_bars_png(
                seed_reports, self.workdir / report_lib.FIGURES["recall_vs_seed"],
                reference=report_lib.SEED_REFERENCE["recall"],
                title=f"6-class recall on {table[0]['split']}; ticks: seed's published recall")
        (self.workdir / "ablation.md").write_text(render_markdown(ablation))
        return ablation


# ----------------------------------------------------------------------------- tables
def summarize(cells) -> list[dict]:
    """One row per (setting, model, variant), in first-seen order: mean and standard deviation
    over seeds of accuracy, macro-F1 and disgust recall (None in the 6-class setting)."""
    groups: dict[tuple, list[dict]] = {}
    for cell in cells:
        groups.setdefault((cell["setting"], cell["model"], cell["variant"]), []).append(cell)
    rows = []
    for (setting, model, variant), members in groups.items():
        row = {"setting": setting, "model": model, "variant": variant,
               "seeds": sorted(c["seed"] for c in members), "split": members[0]["split"]}
        for metric in ("accuracy", "macro_f1", "disgust_recall"):
            values = [c[metric] for c in members if c[metric] is not None]
            row[metric] = {"mean": float(np.mean(values)) if values else None,
                           "std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
                           "values": values}
        rows.append(row)
    return rows


def six_class_reports(cells) -> dict[str, dict]:
    """Per (model, variant) of the 6-class cells, in first-seen order: per-class recall and
    accuracy averaged over seeds, shaped like a ``classification_report`` for the seed tables."""
    groups: dict[str, list[dict]] = {}
    for cell in cells:
        if cell["setting"] == "six":
            label = f"{report_lib.MODEL_LABELS[cell['model']]}, {VARIANT_LABELS[cell['variant']]}"
            groups.setdefault(label, []).append(cell["report"])
    return {label: {"classes": reports[0]["classes"],
                    "accuracy": float(np.mean([r["accuracy"] for r in reports])),
                    "per_class": {name: {"recall": float(np.mean(
                        [r["per_class"][name]["recall"] for r in reports]))}
                        for name in reports[0]["classes"]}}
            for label, reports in groups.items()}


def seed_section(ablation: dict) -> list[str]:
    """Markdown: each 6-class cell's per-class recall beside the seed's, and the figure."""
    reports = six_class_reports(ablation["cells"].values())
    if not reports:
        return []
    beaten = [f"{label} {len(report_lib.classes_above_seed(r))}/6"
              for label, r in reports.items()]
    return ["## Per-class recall beside the seed (6 classes)", "",
            report_lib.markdown_table(["class", "seed", *reports],
                                      report_lib.seed_comparison_rows(reports)), "",
            ("Classes whose recall beats the seed's published recall (its own test split; ours "
             f"is {ablation['table'][0]['split']}): " + "; ".join(beaten) + "."), "",
            f"![recall_vs_seed]({report_lib.FIGURES['recall_vs_seed']})", ""]


def _format(stat: dict) -> str:
    return report_lib.mean_std(stat["values"])


def table_rows(table: list[dict]) -> list[list[str]]:
    return [[report_lib.VIEW_LABELS[row["setting"]], report_lib.MODEL_LABELS[row["model"]],
             VARIANT_LABELS[row["variant"]], str(len(row["seeds"])), _format(row["accuracy"]),
             _format(row["macro_f1"]), _format(row["disgust_recall"])] for row in table]


TABLE_HEADER = ("setting", "model", "training data", "seeds", "accuracy", "macro-F1",
                "disgust recall")


def balance_target(config: dict) -> str:
    """What oversampling draws each class up to, in words."""
    if config.get("equal_epoch_size"):
        return ("the mean class count, majority classes subsampled, so a balanced epoch is as "
                "long as the real split and every variant trains for about as many steps")
    if config["classifier"]["data"].get("target_per_class"):
        return f"{config['classifier']['data']['target_per_class']} images per class"
    return "the majority count"


def render_markdown(ablation: dict) -> str:
    table = ablation["table"]
    split = table[0]["split"] if table else "n/a"
    lines = ["# Ablation: two-tier model, oversampling and GAN faces", ""]
    if ablation["synthetic_data"]:
        lines += [("> **Synthetic data.** These runs used the embedded procedural faces (no "
                  "`--data`): the numbers are **not** FER-2013 results."), ""]
    lines += [(f"Data `{ablation['data']}`, scored on the {split} split; percentages, mean ± "
              "standard deviation over seeds (sample std; a single value when one seed). "
              "Disgust recall is n/a in the 6-class setting (the seed's, without disgust)."), "",
              report_lib.markdown_table(TABLE_HEADER, table_rows(table)), "",
              ("Training data: *oversampling* = class-balanced epochs (minority classes drawn "
              f"with replacement up to {balance_target(ablation['config'])}); *GAN* = "
              "synthetic faces of minority classes added (capped share per class); the "
              "classifier config is the same in every cell."), ""]
    lines += seed_section(ablation)
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    parser = experiment_parser("python -m experiments.ablation", __doc__.splitlines()[0],
                               example="--config.seeds=(0,1,2)", default_config=DEFAULT_CONFIG,
                               default_workdir=DEFAULT_WORKDIR)
    args, config, _ = parse_with_config(parser, argv, DEFAULT_CONFIG)
    check_workdir(args.workdir)
    ablation = Ablation(config, args.workdir)
    try:
        result = ablation.run()
    except pipeline_lib.Interrupted as stopped:
        print(f"interrupted: {stopped}", file=sys.stderr)
        return 128 + stopped.signal_number
    print(report_lib.text_table(TABLE_HEADER, table_rows(result["table"])))
    print(f"table: {ablation.workdir / 'ablation.md'}")
    return 0


if __name__ == "__main__":
    run_main(main)
