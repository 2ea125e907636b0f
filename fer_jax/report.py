"""Tables, figures and markdown reports of evaluations, calibrations, the pipeline and the
ablation.

Everything here reads the JSON the evaluations wrote (``classification_report`` dicts from
:mod:`fer_jax.metrics`, :mod:`fer_jax.evaluation`), so a report can be rebuilt without touching
a model.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from fer_jax import plots, stats
from fer_jax.evaluation import SEED_REFERENCE

FIGURES = {
    "confusion_flat": "confusion_flat.png",
    "confusion_two_tier": "confusion_two_tier.png",
    "recall_vs_seed": "recall_vs_seed.png",
    "gan_samples": "gan_samples.png",
    "curves": "curves.png",
}
MODEL_LABELS = {"flat": "flat", "two_tier": "two-tier", "two_tier_joint": "two-tier (joint)",
                "two_tier_soft": "two-tier (soft)", "two_tier_hard": "two-tier (hard)"}
VIEW_LABELS = {"seven": "7-class", "six": "6-class"}
VARIANT_LABELS = {"none": "none", "oversampling": "oversampling", "gan": "GAN",
                  "gan_oversampling": "GAN + oversampling",
                  "logit_adjusted": "logit-adjusted loss",
                  "posthoc_logit_adjusted": "post-hoc logit adjustment"}


# ----------------------------------------------------------------------------- formatting
def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.1f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A GitHub markdown table; the first column left-aligned, the others right-aligned."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """An aligned plain-text table for the terminal."""
    cells = [list(map(str, header))] + [list(map(str, row)) for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def recall(report: Mapping, name: str) -> float | None:
    """Recall of class ``name`` in a classification report (None when the class is absent)."""
    row = report["per_class"].get(name)
    return None if row is None else row["recall"]


def main_split(evaluation: Mapping) -> str:
    """The split the headline numbers come from: test when present, else val."""
    return "test" if "test" in evaluation["splits"] else "val"


# ----------------------------------------------------------------------------- tables
def results_rows(evaluation: Mapping) -> list[list[str]]:
    """One row per (model, split): accuracy, macro-F1 and disgust recall in the setting, and
    accuracy/macro-F1 read in the 6-class setting."""
    rows = []
    labels = {**MODEL_LABELS, "two_tier": f"two-tier ({evaluation['routing']})"}
    for model, by_split in evaluation["models"].items():
        for split, views in by_split.items():
            first = views[evaluation["views"][0]]
            six = views.get("six")
            rows.append([labels[model], split, percent(first["accuracy"]),
                         percent(first["macro_f1"]), percent(recall(first, "disgust")),
                         percent(six and six["accuracy"]), percent(six and six["macro_f1"])])
    return rows


RESULTS_HEADER = ("model", "split", "accuracy", "macro-F1", "disgust recall", "accuracy (6)",
                  "macro-F1 (6)")


def summary_table(evaluation: Mapping) -> str:
    """The final terminal table of the pipeline (percentages)."""
    return text_table(RESULTS_HEADER, results_rows(evaluation))


def timing_table(timings: Mapping[str, float], total: float) -> str:
    rows = [[name, "skipped" if seconds == 0 else f"{seconds:.1f}s"]
            for name, seconds in timings.items()]
    return text_table(("stage", "time"), rows + [["total", f"{total:.1f}s"]])


def gate_table(gate: Mapping[str, Mapping], *, markdown: bool = False) -> str:
    """Per candidate class of the recognizability gate: images generated, the share the judge
    labels as the class, the share of the judge's labels of it that are right, the judge's
    recall on real val images, and the verdict."""
    rows = [[name, v["n"], percent(v["recognizability"]), percent(v["precision"]),
             percent(v["judge_real_recall"]), "kept" if v["kept"] else "rejected"]
            for name, v in gate.items()]
    header = ("class", "generated", "judged as its class", "precision", "judge's real val recall",
              "gate")
    return (markdown_table if markdown else text_table)(header, rows)


def mix_table(per_class: Mapping[str, Mapping[str, int]], *, markdown: bool = False) -> str:
    """Per class: real images, synthetic images available, draws per epoch (and how many of
    them synthetic), from ``TrainingMix.summary()``."""
    rows = [[name, c["real"], c["synthetic"], c["sampled"], c["sampled_synthetic"]]
            for name, c in per_class.items()]
    header = ("class", "real", "synthetic", "drawn per epoch", "of them synthetic")
    return (markdown_table if markdown else text_table)(header, rows)


def seed_comparison_rows(reports: Mapping[str, Mapping]) -> list[list[str]]:
    """Per-class recall of each named 6-class report beside the seed's, then accuracy."""
    rows = [[name, percent(reference)] + [percent(recall(r, name)) for r in reports.values()]
            for name, reference in SEED_REFERENCE["recall"].items()]
    rows.append(["**accuracy**", percent(SEED_REFERENCE["accuracy"])]
                + [percent(r["accuracy"]) for r in reports.values()])
    return rows


def classes_above_seed(report: Mapping) -> list[str]:
    """The seed's classes on which a 6-class report's recall beats the seed's published one."""
    return [name for name, reference in SEED_REFERENCE["recall"].items()
            if recall(report, name) > reference]


# ----------------------------------------------------------------------------- figures
def training_history(workdir: pathlib.Path, runs: Mapping[str, str]) -> list[dict]:
    """Per-epoch records of several engine runs merged by epoch, series prefixed by run name
    (``flat_val_accuracy`` ...), for :func:`fer_jax.plots.save_curves_png`."""
    by_epoch: dict[int, dict] = {}
    for name, subdir in runs.items():
        path = workdir / subdir / "metrics.jsonl"
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            record = json.loads(line) if line.strip() else {}
            if "val_accuracy" not in record:
                continue
            merged = by_epoch.setdefault(record["epoch"], {"epoch": record["epoch"]})
            for key in ("train_loss", "val_loss", "train_accuracy", "val_accuracy"):
                merged[f"{name}_{key}"] = record[key]
    return [by_epoch[e] for e in sorted(by_epoch)]


def save_figures(workdir: pathlib.Path, results: Mapping) -> dict[str, str]:
    """Writes the pipeline's PNGs into ``workdir``; returns ``{figure: file name}`` of those
    that exist (the GAN grid is written by the synthesize stage)."""
    evaluation = results["evaluation"]
    split = main_split(evaluation)
    view = evaluation["views"][0]
    synthetic_note = " (SYNTHETIC data)" if results["data"]["synthetic"] else ""
    for model in ("flat", "two_tier"):
        report = evaluation["models"][model][split][view]
        plots.save_confusion_png(
            report["confusion"], report["classes"], workdir / FIGURES[f"confusion_{model}"],
            title=f"{MODEL_LABELS[model]}, {split}, {VIEW_LABELS[view]}{synthetic_note}: "
                  f"{percent(report['accuracy'])}%")
    if "six" in evaluation["views"]:
        plots.save_recall_bars_png(
            {MODEL_LABELS[m]: evaluation["models"][m][split]["six"] for m in ("flat", "two_tier")},
            workdir / FIGURES["recall_vs_seed"], reference=SEED_REFERENCE["recall"],
            title=f"6-class recall on {split}{synthetic_note}; ticks: seed's published recall")
    history = training_history(workdir, {"flat": "flat", "tier1": "two_tier/tier1",
                                         "negative": "two_tier/negative",
                                         "positive": "two_tier/positive"})
    if history:
        plots.save_curves_png(history, workdir / FIGURES["curves"], keys=("loss", "accuracy"),
                              title=f"training curves{synthetic_note}")
    return {name: path for name, path in FIGURES.items() if (workdir / path).is_file()}


# ----------------------------------------------------------------------------- report.md
def _setup_section(results: Mapping) -> list[str]:
    data, config = results["data"], results["config"]
    counts = data["counts"]
    sizes = ", ".join(f"{split} {sum(counts[split].values())}" for split in data["splits"])
    setting = ("7 classes (angry, disgust, fear, happy, sad, surprise, neutral)"
               if results["setting"] == "seven" else
               "the seed's 6 classes (disgust dropped)")
    two_tier = config["two_tier"]
    lines = ["## Setup", "",
             f"- **Data**: `{data['source']}` — {sizes} images"
             + (f" ({data['skipped']} bad records skipped, listed below)"
                if data["skipped"] else "") + ".",
             f"- **Setting**: {setting}. The two-tier model first separates negative "
             f"({'angry, disgust, fear, sad' if results['setting'] == 'seven' else 'angry, fear, sad'})"
             " from positive (happy, surprise, neutral) faces, then classifies within the group; "
             f"routing `{two_tier['routing']}`"
             + (" (p(class) = p(group) · p(class | group))" if two_tier["routing"] == "soft"
                else " (best group first, then best class in it)") + ".",
             _gan_summary(config)]
    per_class = results["synthetic"]["per_class"]
    lines.append("- **Synthetic faces mixed into training**: "
                 + (", ".join(f"{k} {v}" for k, v in per_class.items()) if per_class else "none")
                 + (" (see the recognizability gate below)." if results["synthetic"]["gate"]
                    else "."))
    for name, section in [("flat", config["flat"])] + [
            (f"two-tier {m}", two_tier[m]) for m in ("tier1", "negative", "positive")]:
        lines.append(f"- **{name}**: {_classifier_summary(section)}.")
    if two_tier.get("init_from_flat"):
        lines.append("- **Warm start**: each two-tier member starts from the final flat model "
                     "(its head re-initialised for the member's classes), so the members train "
                     "for the flat model's epochs plus their own.")
    evaluation = results["evaluation"]
    lines.append(f"- **Evaluation**: {evaluation['checkpoint']} checkpoint of each model, "
                 f"splits {', '.join(evaluation['splits'])}"
                 + (" (no test split in this source: val numbers are the only held-out ones)"
                    if "test" not in evaluation["splits"] else "")
                 + f"; TTA {'on' if results['config']['eval']['tta'] else 'off'}.")
    lines += [""] + _skipped_lines(data.get("skipped_records", []))
    lines += ["Training mix of the flat model (per epoch):", "",
              mix_table(results["mix"]["flat"]["per_class"], markdown=True), ""]
    return lines


def _skipped_lines(records: Sequence[str], shown: int = 20) -> list[str]:
    """Markdown: the bad records loading skipped (the first ``shown``; all in results.json)."""
    if not records:
        return []
    more = [f"- ... and {len(records) - shown} more (all in results.json)"] \
        if len(records) > shown else []
    return ["Bad records skipped while loading:", "",
            *(f"- `{record}`" for record in records[:shown]), *more, ""]


def gan_description(config: Mapping) -> str:
    """Which GAN made the synthetic faces: reused from a workdir, or its steps here."""
    if config.get("gan_workdir"):
        return f"GAN samples of {config['gan_workdir']}"
    return f"GAN samples after {config['gan']['num_steps']} steps"


def _gate_section(results: Mapping) -> list[str]:
    """Markdown: the recognizability gate's verdict per candidate class, plainly."""
    synthetic = results["synthetic"]
    gate = synthetic["gate"]
    if not gate:
        return []
    kept = [name for name, verdict in gate.items() if verdict["kept"]]
    threshold = percent(synthetic["min_recognizability"])
    lines = ["## Synthetic faces: the recognizability gate", "",
             (f"Before mixing, the judge (a classifier trained on the real training split only, "
              f"`{synthetic['judge']}`) labelled the generated candidates (seed "
              f"{synthetic['seed']}, truncation {synthetic['truncation']}). A class is mixed "
              f"only when at least {threshold}% of its faces are judged as it and at least "
              f"{threshold}% of the faces judged as it were generated as it (precision, classes "
              "weighted equally: faces the judge cannot tell apart score 1/K)."), "",
             gate_table(gate, markdown=True), ""]
    if kept:
        lines.append(f"Kept and mixed into training: {', '.join(kept)}.")
    else:
        lines.append("**No class passed the gate: no synthetic face was mixed into training**; "
                     "every classifier trained on real images only.")
    return lines + [""]


def _reproducibility_lines(block: Mapping) -> list[str]:
    """Markdown of a :func:`fer_jax.provenance.reproducibility` block."""
    versions = ", ".join(f"{name} {version}" for name, version in block["versions"].items())
    device = block["device"]
    dirty = {True: " (uncommitted changes)", False: "", None: ""}[block["dirty"]]
    wall = block["wall_seconds"]
    return ["## Reproducibility", "",
            f"- **Code**: commit `{block['commit']}`{dirty}",
            f"- **Versions**: {versions}",
            f"- **Device**: {device['backend']} ({device['kind']}) x {device['count']}",
            f"- **Data**: `{block['data']['source']}`, SHA-256 `{block['data']['sha256']}`",
            f"- **Config hash**: `{block['config_hash']}`",
            f"- **Seeds**: {', '.join(map(str, block['seeds'])) or 'none'}",
            "- **Wall time**: " + ("n/a" if wall is None else f"{wall:.1f} s")
            + f" (stages, summed); written {block['date']}", ""]


def _gan_summary(config: Mapping) -> str:
    if config.get("gan_workdir"):
        return (f"- **GAN**: reused from `{config['gan_workdir']}` (an `experiments.train_gan` "
                "run; its config is saved there), not trained by this pipeline.")
    gan = config["gan"]
    return (f"- **GAN**: `{gan['model']}`, {gan['num_steps']} steps, batch {gan['batch_size']}, "
            f"class-balanced over {', '.join(gan['classes'])}.")


def _classifier_summary(section: Mapping) -> str:
    data = section["data"]
    balance = "off"
    if data["oversample"]:
        balance = f"on ({data['target_per_class'] or 'majority count'} per class per epoch)"
    mixing = (f"on (at most {percent(data['max_synthetic_share'])}% of a class)"
              if data.get("gan_mixing") else "off")
    return (f"`{section['model']}` {section.get('model_kwargs') or ''}, {section['num_epochs']} "
            f"epochs, {section['optimizer']} lr {section['learning_rate']}, batch "
            f"{section['batch_size']}; oversampling {balance}; GAN mixing {mixing}")


def _findings(evaluation: Mapping) -> str:
    """One paragraph comparing the models on the headline split."""
    split = main_split(evaluation)
    view = evaluation["views"][0]
    routing = evaluation["routing"]
    other = "hard" if routing == "soft" else "soft"
    flat, two_tier, two_tier_other = (evaluation["models"][m][split][view]
                                      for m in ("flat", "two_tier", f"two_tier_{other}"))
    tier1 = evaluation["members"]["tier1"][split]["accuracy"]
    gap = 100 * (two_tier["accuracy"] - flat["accuracy"])
    return (f"On {split} ({VIEW_LABELS[view]}), the flat model reaches "
            f"{percent(flat['accuracy'])}% accuracy (macro-F1 {percent(flat['macro_f1'])}%) and "
            f"the two-tier model with {routing} routing {percent(two_tier['accuracy'])}% "
            f"({gap:+.1f} points; macro-F1 {percent(two_tier['macro_f1'])}%), "
            f"{percent(two_tier_other['accuracy'])}% with {other} routing. Tier 1 alone picks "
            f"the right group for {percent(tier1)}% of the faces: an upper bound for hard "
            "routing, which cannot recover a face sent to the wrong group.")


def _results_section(results: Mapping) -> list[str]:
    evaluation = results["evaluation"]
    lines = ["## Results", "",
             ("Accuracy, macro-F1 and recall in percent. `(6)`: the same predictions read in the "
             "seed's 6-class setting (disgust images dropped, disgust probability removed and the "
             "rest renormalised)."), "",
             markdown_table(RESULTS_HEADER, results_rows(evaluation)), "",
             _findings(evaluation), "",
             "Two-tier members, each on its own classes:", ""]
    rows = []
    for member, by_split in evaluation["members"].items():
        for split, report in by_split.items():
            rows.append([member, ", ".join(report["classes"]), split,
                         percent(report["accuracy"]), percent(report["macro_f1"])])
    lines += [markdown_table(("member", "classes", "split", "accuracy", "macro-F1"), rows), ""]
    gan = evaluation.get("gan")
    if gan:
        rows = [[name, percent(v["recognizability"]), percent(v["real_recall"]),
                 f"{v['fid']:.2f}", f"{v['fid_floor']:.2f}"] for name, v in gan["per_class"].items()]
        lines += [(f"GAN samples judged by the flat model, drawn from the evaluation seed stream "
                   f"(seed {gan['seed']}), so none of them was mixed into training (the flat "
                   "model may still have trained on other faces of this GAN: the gate above "
                   "is the independent judgement); FER-FID in its feature space, beside the "
                   "real-vs-real floor:"), "",
                  markdown_table(("class", "recognized as its class", "real val recall",
                                  "FER-FID", "FID floor"), rows), ""]
    return lines


def _seed_section(results: Mapping) -> list[str]:
    evaluation = results["evaluation"]
    if "six" not in evaluation["views"]:
        return []
    split = main_split(evaluation)
    reports = {MODEL_LABELS[m]: evaluation["models"][m][split]["six"]
               for m in ("flat", "two_tier")}
    calibration = evaluation.get("calibration")
    if calibration:
        scored = "test" if split == "test" else "cross_fitted"
        reports.update({f"{MODEL_LABELS[m]}, calibrated": c["reports"][scored]
                        for m, c in calibration["models"].items()})
    lines = ["## Comparison with the seed (6 classes)", "",
             (f"The seed's published per-class recall (Keras CNN, ~65% accuracy) beside this run's "
             f"models on {split}, read in the 6-class setting:"), "",
             markdown_table(["class", "seed", *reports], seed_comparison_rows(reports)), ""]
    if calibration:
        how = ("fitted on all of val and applied to test" if split == "test" else
               f"scored by {calibration['folds']}-fold cross-fitting on val (each fold with "
               "offsets fitted on the other folds; recall averaged over "
               f"{next(iter(calibration['models'].values()))['reports']['cross_fitted']['repeats']}"
               " fold assignments), so the column is an out-of-sample estimate")
        offsets = "; ".join(f"{MODEL_LABELS[m]} " + ", ".join(
            f"{k} {v:+.2f}" for k, v in c["offsets"].items())
            for m, c in calibration["models"].items())
        lines += [(f"*Calibrated*: per-class decision offsets added to the log-probabilities "
                  f"(`fer_jax.calibration`, objective `{calibration['objective']}`), {how}. "
                  f"The offsets fitted on all of val: {offsets}."), ""]
    if results["data"]["synthetic"]:
        lines += [("These numbers come from the synthetic faces, so this table only shows the "
                  "format of the comparison; it says nothing about FER-2013."), ""]
    else:
        beaten = []
        for label, report in reports.items():
            better = classes_above_seed(report)
            beaten.append(f"{label} {len(better)} of 6" + (f" ({', '.join(better)})"
                                                           if better else ""))
        lines += [("Classes whose recall beats the seed's: " + "; ".join(beaten) + ". Flat "
                  f"accuracy {percent(reports['flat']['accuracy'])}% vs the seed's "
                  f"{percent(SEED_REFERENCE['accuracy'])}%"
                  + (" (val split = FER-2013 PublicTest; the seed reports its own test split)."
                     if split == "val" else ".")), ""]
    return lines


def _gan_caption(results: Mapping) -> str:
    """The sample grid's caption: which GAN, what the gate kept, and plainly when nothing."""
    gate = results["synthetic"]["gate"] or {}
    kept = [name for name, verdict in gate.items() if verdict["kept"]]
    caption = (f"{gan_description(results['config'])}, one row per candidate class; classes "
               f"kept by the recognizability gate: {', '.join(kept) or 'none'}.")
    rejected = [name for name in gate if name not in kept]
    if rejected:
        caption += (f" The rows of {', '.join(rejected)} are not recognizable faces of their "
                    "class and were not used for training.")
    return caption


def _figures_section(results: Mapping) -> list[str]:
    figures = results["figures"]
    captions = {
        "confusion_flat": "Confusion matrix of the flat model (rows: true class).",
        "confusion_two_tier": "Confusion matrix of the two-tier model.",
        "recall_vs_seed": "Per-class recall (6 classes) of both models; black ticks: the seed.",
        "gan_samples": _gan_caption(results),
        "curves": "Training curves of the flat model and the two-tier members.",
    }
    lines = ["## Figures", ""]
    for name, path in figures.items():
        lines += [f"{captions[name]}", "", f"![{name}]({path})", ""]
    return lines


def render_pipeline_report(results: Mapping) -> str:
    """report.md of a pipeline run, from its results.json content."""
    data = results["data"]
    lines = ["# fer-jax pipeline report", ""]
    if data["synthetic"]:
        lines += [("> **Synthetic data.** This run used the embedded procedural faces (no "
                  "`--data`), so every number below describes the pipeline on toy data and is "
                  "**not** a FER-2013 result."), ""]
    lines += _setup_section(results) + _gate_section(results) + _results_section(results)
    lines += _seed_section(results) + _figures_section(results)
    seconds = {k: v for k, v in results["stage_seconds"].items() if v is not None}
    rows = [[k, f"{v:.1f}"] for k, v in seconds.items()]
    rows.append(["total (excluding this report)", f"{sum(seconds.values()):.1f}"])
    lines += ["## Time", "", "Seconds per stage, as measured when each stage ran:", "",
              markdown_table(("stage", "seconds"), rows), ""]
    lines += _reproducibility_lines(results["reproducibility"])
    return "\n".join(lines)


# ----------------------------------------------------------------------------- calibration
CALIBRATION_LABELS = {"uncalibrated": "uncalibrated",
                      "cross_fitted": "calibrated, cross-fitted (mean)",
                      "in_sample": "calibrated, in-sample"}


def calibration_table(result: Mapping) -> str:
    """Per class of an ``experiments.calibrate`` result: the reference recall (when any), the
    recall of each report and the lowest cross-fitted recall over the repeats; then accuracy
    and macro-F1."""
    reports, reference = result["reports"], result["reference"]
    rows = [[name, *([percent(reference[name])] if reference is not None else []),
             *(percent(r["per_class"][name]["recall"]) for r in reports.values()),
             percent(reports["cross_fitted"]["per_class"][name]["recall_min"])]
            for name in reports["uncalibrated"]["classes"]]
    for metric in ("accuracy", "macro_f1"):
        rows.append([metric, *([""] if reference is not None else []),
                     *(percent(r[metric]) for r in reports.values()), ""])
    header = ["class", *(["seed"] if reference is not None else []),
              *(CALIBRATION_LABELS[k] for k in reports), "cross-fitted (min)"]
    return text_table(header, rows)


# ----------------------------------------------------------------------------- ablation
ABLATION_METRICS = ("accuracy", "macro_f1", "balanced_accuracy", "disgust_recall", "disgust_ap",
                    "disgust_auroc", "disgust_precision_at_recall")


def mean_interval(values: Sequence[float | None]) -> str:
    """``"m ± h"`` in percent over the non-None values: mean and the half-width of its 95%
    t-interval (``n/a`` when there are none; the value alone when one)."""
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    if len(values) == 1:
        return percent(values[0])
    mean, half = stats.mean_ci(values)
    return f"{100 * mean:.1f} ± {100 * half:.1f}"


def summarize(cells) -> list[dict]:
    """One row per (setting, model, variant) of ablation cells, in first-seen order: per
    metric of :data:`ABLATION_METRICS` (None in a setting without disgust, or a cell scored
    before the metric existed), the mean over seeds and the half-width of its 95% t-interval
    (None with fewer than two seeds)."""
    groups: dict[tuple, list[dict]] = {}
    for cell in cells:
        groups.setdefault((cell["setting"], cell["model"], cell["variant"]), []).append(cell)
    rows = []
    for (setting, model, variant), members in groups.items():
        row = {"setting": setting, "model": model, "variant": variant,
               "seeds": sorted(c["seed"] for c in members), "split": members[0]["split"]}
        for metric in ABLATION_METRICS:
            values = [c.get(metric) for c in members if c.get(metric) is not None]
            mean, half = stats.mean_ci(values) if values else (None, None)
            row[metric] = {"mean": mean, "half_width": half if len(values) > 1 else None,
                           "values": values}
        rows.append(row)
    return rows


def six_class_reports(cells) -> dict[str, dict]:
    """Per (model, variant) of the 6-class ablation cells, in first-seen order: per-class recall
    and accuracy averaged over seeds, shaped like a ``classification_report`` for the seed
    tables."""
    groups: dict[str, list[dict]] = {}
    for cell in cells:
        if cell["setting"] == "six":
            label = f"{MODEL_LABELS[cell['model']]}, {VARIANT_LABELS[cell['variant']]}"
            groups.setdefault(label, []).append(cell["report"])
    return {label: {"classes": reports[0]["classes"],
                    "accuracy": float(np.mean([r["accuracy"] for r in reports])),
                    "per_class": {name: {"recall": float(np.mean(
                        [r["per_class"][name]["recall"] for r in reports]))}
                        for name in reports[0]["classes"]}}
            for label, reports in groups.items()}


def _ablation_seed_section(ablation: Mapping) -> list[str]:
    """Markdown: each 6-class cell's per-class recall beside the seed's, and the figure."""
    reports = six_class_reports(ablation["cells"].values())
    if not reports:
        return []
    beaten = [f"{label} {len(classes_above_seed(r))}/6" for label, r in reports.items()]
    return ["## Per-class recall beside the seed (6 classes)", "",
            markdown_table(["class", "seed", *reports], seed_comparison_rows(reports)), "",
            ("Classes whose recall beats the seed's published recall (its own test split; ours "
             f"is {ablation['table'][0]['split']}): " + "; ".join(beaten) + "."), "",
            f"![recall_vs_seed]({FIGURES['recall_vs_seed']})", ""]


def ablation_rows(table: Sequence[Mapping]) -> list[list[str]]:
    """Rows of :data:`ABLATION_HEADER` from :func:`summarize`'s table."""
    return [[VIEW_LABELS[row["setting"]], MODEL_LABELS[row["model"]],
             VARIANT_LABELS[row["variant"]], str(len(row["seeds"])),
             *(mean_interval(row[metric]["values"]) for metric in ABLATION_METRICS)]
            for row in table]


ABLATION_HEADER = ("setting", "model", "imbalance / training data", "seeds", "accuracy",
                   "macro-F1", "balanced acc.", "disgust recall", "disgust AP", "disgust AUROC",
                   "disgust precision @ recall")
COMPARISON_METRICS = {"accuracy": "accuracy", "macro_f1": "macro-F1",
                      "balanced_accuracy": "balanced acc.", "ap": "AP"}


def comparison_rows(comparisons: Sequence[Mapping]) -> list[list[str]]:
    """Rows of :data:`COMPARISON_HEADER`: per comparison and metric, the means of A and B,
    A - B (mean over seeds), its CIs over seeds and over images, and the verdict."""
    rows = []
    for row in comparisons:
        if "reference_model" in row:  # two models trained with the same recipe
            model = f"{MODEL_LABELS[row['model']]} vs {MODEL_LABELS[row['reference_model']]}"
            label = f"both {VARIANT_LABELS[row['variant']]}"
        else:
            model = MODEL_LABELS[row["model"]]
            label = f"{VARIANT_LABELS[row['variant']]} vs {VARIANT_LABELS[row['reference']]}"
        for key, name in COMPARISON_METRICS.items():
            if key not in row:
                continue
            metric = row[key]
            rows.append([VIEW_LABELS[row["setting"]], model, label,
                         f"{name} {row['class']}" if key == "ap" else name,
                         str(row["seeds"]), percent(metric["a"]), percent(metric["b"]),
                         f"{100 * metric['difference']:+.1f}", interval(metric["seed_ci"]),
                         interval(metric["image_ci"]), metric["verdict"]])
    return rows


def interval(bounds: Sequence[float]) -> str:
    """``"[lo, hi]"`` in signed percentage points (``n/a`` when undefined)."""
    if any(np.isnan(bound) for bound in bounds):
        return "n/a"
    return "[{:+.1f}, {:+.1f}]".format(*(100 * bound for bound in bounds))


COMPARISON_HEADER = ("setting", "model", "A vs B", "metric", "seeds", "A", "B", "A - B",
                     "95% CI over seeds", "95% CI over images", "verdict")


def balance_target(config: Mapping) -> str:
    """What the ablation's oversampling draws each class up to, in words."""
    if config.get("equal_epoch_size"):
        return ("the mean class count, majority classes subsampled, so a balanced epoch is as "
                "long as the real split and every variant trains for about as many steps")
    if config["classifier"]["data"].get("target_per_class"):
        return f"{config['classifier']['data']['target_per_class']} images per class"
    return "the majority count"


def render_ablation_report(ablation: Mapping) -> str:
    """ablation.md, from its ablation.json content."""
    table = ablation["table"]
    split = table[0]["split"] if table else "n/a"
    config = ablation["config"]
    lines = ["# Ablation: imbalance handling, training data and the two-tier model", ""]
    if ablation["synthetic_data"]:
        lines += [("> **Synthetic data.** These runs used the embedded procedural faces (no "
                  "`--data`): the numbers are **not** FER-2013 results."), ""]
    lines += [(f"Data `{ablation['data']}`, scored on the {split} split; percentages, mean ± "
              "half-width of the 95% t-interval over seeds (a single value when one seed). "
              "Balanced acc. = mean per-class recall. Disgust metrics are n/a in the 6-class "
              "setting (the seed's, without disgust); AP and AUROC rank the disgust "
              "probability (no threshold), and its precision is read at recall "
              f"{percent(config.get('matched_recall', 0.5))}% for every model (one operating "
              "point)."), "",
              markdown_table(ABLATION_HEADER, ablation_rows(table)), "",
              ("*oversampling* = class-balanced epochs (minority classes drawn with replacement "
              f"up to {balance_target(config)}); *logit-adjusted loss* = cross-entropy on "
              "logits + tau log prior (Menon et al. 2021); *post-hoc logit adjustment* = the "
              "*none* runs' probabilities divided by prior^tau, tau fitted on the other "
              f"half of {split} (cross-fitted: no image is scored by a tau fitted on it); "
              "*GAN* = synthetic faces added (capped share per class); the classifier config is "
              "otherwise the same in every cell."), ""]
    if ablation.get("comparisons"):
        reference_model = MODEL_LABELS[config.get("reference_model", "flat")]
        lines += [(f"## Each variant against {VARIANT_LABELS[config['reference_variant']]}, "
                   f"each model against {reference_model}, seed by seed"), "",
                  ("A - B is the mean over seeds of the paired difference (seed s of A against "
                   "seed s of B, on the same images). The verdict names a winner only when the "
                   "95% CI over seeds (t-interval: training noise) AND the 95% CI over images "
                   "(paired bootstrap of the mean difference: test-set noise) both exclude 0; "
                   "otherwise: no measurable difference."), "",
                  markdown_table(COMPARISON_HEADER, comparison_rows(ablation["comparisons"])),
                  ""]
    if ablation["gate"]:
        lines += [("Recognizability gate of the GAN faces (judged by a classifier trained on the "
                  "real training split only; see the pipeline report):"), "",
                  gate_table(ablation["gate"], markdown=True), ""]
    if ablation["gan_variants_skipped"]:
        lines += [("**The GAN variants were not run**: the recognizability gate kept no class of "
                  "the GAN's faces, so there was nothing worth mixing into training."), ""]
    lines += _ablation_seed_section(ablation)
    lines += _reproducibility_lines(ablation["reproducibility"])
    return "\n".join(lines)


def save_ablation_figure(workdir: pathlib.Path, ablation: Mapping) -> None:
    """The 6-class cells' recall beside the seed's (when there are 6-class cells)."""
    reports = six_class_reports(ablation["cells"].values())
    if reports:
        plots.save_recall_bars_png(
            reports, workdir / FIGURES["recall_vs_seed"], reference=SEED_REFERENCE["recall"],
            title=f"6-class recall on {ablation['table'][0]['split']}; ticks: seed's published "
                  "recall")
