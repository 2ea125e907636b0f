"""The pipeline end to end on a tiny synthetic config (outputs, skip on rerun, resume after a
stop), its config guard, and the ablation table built on the pipeline's synthetic faces."""

import contextlib
import io
import json
import shutil

import numpy as np
import pytest

from experiments import ablation, pipeline
from fer_jax import classes, inference, report, stats
from fer_jax.errors import FerError
from gan import sample as gan_sample
from studies import pipeline as pipeline_lib

pytestmark = pytest.mark.slow  # pipelines and ablations end to end: the integration tier

# A tiny pipeline: 2 GAN steps, 1-epoch classifiers of width 4, small synthetic splits; the
# recognizability gate open (its 2-step faces would fail it) so that mixing runs end to end.
TINY = [
    "--config.data.synthetic_sizes.num_train=420",
    "--config.data.synthetic_sizes.num_val=140",
    "--config.data.synthetic_sizes.num_test=140",
    "--config.gan.num_steps=2", "--config.gan.checkpoint_every=2", "--config.gan.log_every=2",
    "--config.gan.sample_every=2", "--config.gan.batch_size=16",
    "--config.synthesize.max_per_class=20", "--config.synthesize.truncation=0.5",
    "--config.synthesize.min_recognizability=0.0", "--config.eval.gan_samples_per_class=5",
] + [f"--config.{section}.{key}={value}"
     for section in ("judge", "flat", "two_tier.tier1", "two_tier.negative",
                     "two_tier.positive")
     for key, value in (("num_epochs", 1), ("model_kwargs.width", 4), ("batch_size", 32))]
STAGES = ("data", "gan", "judge", "synthesize", "mix", "flat", "two_tier", "evaluate",
          "report")


def run_captured(args) -> str:
    """Runs the pipeline CLI; returns what it printed (exit code must be 0)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert pipeline.main(args) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    """The tiny pipeline run in parts: until the flat model, after which the run is "killed"
    inside that stage (its marker removed, its checkpoints kept); then to the end; then once
    more. Returns (workdir, args, [output 1, stages done after 1, output 2, output 3])."""
    workdir = tmp_path_factory.mktemp("pipeline")
    args = ["--workdir", str(workdir)] + TINY
    outputs = [run_captured(args + ["--until", "flat"])]
    outputs.append(sorted(p.parent.name for p in (workdir / "stages").glob("*/outputs.json")))
    shutil.rmtree(workdir / "stages" / "flat")
    outputs.append(run_captured(args))
    outputs.append(run_captured(args))
    return workdir, args, outputs


def test_pipeline_stops_after_a_stage_and_resumes_an_interrupted_one(pipeline_run):
    workdir, _, (first, done_after_first, resumed, _) = pipeline_run
    assert "[1/9] data: running" in first and "[6/9] flat: done" in first
    assert "two_tier" not in first
    assert done_after_first == ["data", "flat", "gan", "judge", "mix", "synthesize"]
    for stage in ("data", "gan", "judge", "synthesize", "mix"):
        assert f"{stage}: skipped" in resumed
    # The killed stage runs again and the engine resumes from its checkpoint: no retraining.
    assert "[6/9] flat: running" in resumed and "resuming from" in resumed
    assert "epoch 1/1" not in resumed.split("[7/9]")[0]
    assert "[9/9] report: done" in resumed
    assert (workdir / "two_tier" / "two_tier.json").is_file()


def test_pipeline_writes_report_results_and_figures(pipeline_run):
    workdir, _, _ = pipeline_run
    results = json.loads((workdir / "results.json").read_text())
    evaluation = results["evaluation"]
    assert evaluation["splits"] == ["val", "test"] and evaluation["views"] == ["seven", "six"]
    for model in ("flat", "two_tier", "two_tier_hard"):
        seven = evaluation["models"][model]["test"]["seven"]
        six = evaluation["models"][model]["test"]["six"]
        assert seven["n"] == 140 and len(seven["classes"]) == 7
        assert six["n"] == 140 - seven["per_class"]["disgust"]["support"]
        assert "disgust" not in six["per_class"]
    assert evaluation["members"]["tier1"]["val"]["classes"] == ["negative", "positive"]
    assert evaluation["members"]["positive"]["val"]["classes"] == ["happy", "surprise", "neutral"]
    assert results["data"]["synthetic"] is True
    synthetic = results["synthetic"]["per_class"]
    assert synthetic and all(0 < n <= 20 for n in synthetic.values())
    flat_mix = results["mix"]["flat"]["per_class"]
    assert sum(c["sampled_synthetic"] for c in flat_mix.values()) > 0
    # The gate (open here) judged every candidate with the judge trained on real images only.
    gate = results["synthetic"]["gate"]
    assert set(gate) == set(synthetic) and all(v["kept"] for v in gate.values())
    assert results["synthetic"]["judge"] == "judge" and (workdir / "judge" / "report.json").exists()
    # GAN metrics draw from the evaluation stream, never the synthesized training faces (#13).
    assert evaluation["gan"]["seed"] == gan_sample.evaluation_seed(0) != 0
    # Reproducibility block (#13) and skipped records (none here).
    block = results["reproducibility"]
    assert block["seeds"] == [0] and block["config_hash"] and len(block["data"]["sha256"]) == 64
    assert block["wall_seconds"] == pytest.approx(sum(results["stage_seconds"].values()))
    assert results["data"]["skipped_records"] == []

    # Decision offsets toward the seed's operating point: fitted on val, applied to test.
    calibration = evaluation["calibration"]
    assert calibration["objective"] == "seed" and calibration["split"] == "val"
    for model in ("flat", "two_tier"):
        calibrated = calibration["models"][model]
        assert set(calibrated["offsets"]) == set(classes.SIX.class_names)
        assert calibrated["reports"]["uncalibrated"]["confusion"] == \
            evaluation["models"][model]["val"]["six"]["confusion"]
        assert calibrated["reports"]["test"]["n"] == evaluation["models"][model]["test"]["six"]["n"]

    markdown = (workdir / "report.md").read_text()
    assert "not** a FER-2013 result" in markdown
    assert "| angry | 58.0 |" in markdown  # the seed's published recall beside ours
    two_tier_calibrated = calibration["models"]["two_tier"]["reports"]["test"]
    assert "| accuracy | 65.0 | " in markdown.replace("**", "")
    assert markdown.replace("**", "").split("| accuracy | 65.0 | ")[1].split("\n")[0].endswith(
        f"| {report.percent(two_tier_calibrated['accuracy'])} |")
    assert "fitted on all of val and applied to test" in markdown
    assert "## Synthetic faces: the recognizability gate" in markdown
    # every class is synthesized and (the gate open) mixed, each the same number of faces
    assert "Kept and mixed into training: angry, disgust, fear, happy, sad, surprise, " \
        "neutral." in markdown
    assert "GAN samples after 2 steps, one row per candidate class; classes kept by the " \
        "recognizability gate: angry, disgust, fear, happy, sad, surprise, neutral." in markdown
    assert len({c["sampled_synthetic"]
                for c in results["mix"]["flat"]["per_class"].values()}) == 1
    assert f"commit `{block['commit']}`" in markdown and "## Reproducibility" in markdown
    for figure in ("confusion_flat", "confusion_two_tier", "recall_vs_seed", "gan_samples",
                   "curves"):
        name = report.FIGURES[figure]
        assert (workdir / name).stat().st_size > 1000
        assert f"]({name})" in markdown


def test_pipeline_rerun_skips_every_stage(pipeline_run):
    *_, (_, _, _, rerun) = pipeline_run
    assert all(f"{stage}: skipped" in rerun for stage in STAGES)
    assert "running" not in rerun


def test_the_gate_mixes_nothing_when_no_class_passes(pipeline_run, tmp_path):
    trained, _, _ = pipeline_run
    workdir = tmp_path / "gated"
    shutil.copytree(trained, workdir)
    args = ["--workdir", str(workdir)] + TINY + ["--config.synthesize.min_recognizability=0.5",
                                                 "--recompute", "--until", "mix"]
    out = run_captured(args)
    assert "judge: skipped" in out and "synthesize: recomputing" in out
    synthesized = json.loads((workdir / "stages" / "synthesize" / "outputs.json").read_text())
    outputs = synthesized["outputs"]
    # 2 GAN steps make noise: the judge recognizes no class of it.
    assert outputs["gate"] and not any(v["kept"] for v in outputs["gate"].values())
    assert outputs["path"] is None and outputs["per_class"] == {}
    assert "no synthetic face is mixed into training" in out
    assert not (workdir / pipeline_lib.SYNTHETIC_NPZ).exists()
    mix = json.loads((workdir / "stages" / "mix" / "outputs.json").read_text())["outputs"]
    assert all(c["synthetic"] == 0 for c in mix["flat"]["per_class"].values())
    markdown = report.render_pipeline_report(
        {**json.loads((trained / "results.json").read_text()), "synthetic": outputs})
    assert "**No class passed the gate: no synthetic face was mixed into training**" in markdown
    assert "classes kept by the recognizability gate: none. The rows of angry, disgust, fear, " \
        "happy, sad, surprise, neutral are not recognizable faces of their class" in markdown


def test_the_data_stage_and_report_list_skipped_records(tmp_path):
    import dataclasses

    from fer_jax.data import SkippedRecord, load_from_config

    config = pipeline.parse_args(["--workdir", str(tmp_path)] + TINY)[1]
    data = dataclasses.replace(load_from_config(config.data), skipped=(
        SkippedRecord("faces.csv", "line 7", "pixels: 2303 values, expected 2304"),))
    pipeline_lib.Pipeline(config, tmp_path, data=data).run(until="data")
    outputs = json.loads((tmp_path / "stages" / "data" / "outputs.json").read_text())["outputs"]
    assert outputs["skipped"] == 1
    assert outputs["skipped_records"] == [str(data.skipped[0])]
    assert f"- `{data.skipped[0]}`" in "\n".join(report._skipped_lines(
        outputs["skipped_records"]))


def test_pipeline_refuses_to_build_on_stages_finished_with_other_settings(pipeline_run):
    _workdir, args, _ = pipeline_run
    with pytest.raises(FerError, match=r"stage 'flat' was made with another config "
                                       r"\(changed: flat\.num_epochs\); .*--recompute"):
        pipeline.main(args + ["--config.flat.num_epochs=2"])
    # Settings no finished stage depends on (here: the GAN's own evaluation) do not block.
    assert pipeline.main(args + ["--config.gan.eval.samples_per_class=7"]) == 0


def test_pipeline_reuses_a_trained_gan(pipeline_run, tmp_path):
    trained, _, _ = pipeline_run
    args = ["--workdir", str(tmp_path / "reuse"), "--until", "synthesize",
            f"--config.gan_workdir={trained / 'gan'}"] + TINY
    out = run_captured(args)
    assert f"reusing the GAN trained in {trained / 'gan'}" in out
    assert not (tmp_path / "reuse" / "gan").exists()  # nothing trained here
    gan_stage = json.loads((tmp_path / "reuse" / "stages" / "gan" / "outputs.json").read_text())
    assert gan_stage["outputs"]["reused"] == str(trained / "gan")
    # The same generator, seed and truncation give the same faces as the pipeline that trained it.
    with np.load(tmp_path / "reuse" / "synthetic.npz") as reused, \
            np.load(trained / "synthetic.npz") as original:
        np.testing.assert_array_equal(reused["images"], original["images"])
    with pytest.raises(FerError, match="no GAN checkpoint"):
        pipeline.main(["--workdir", str(tmp_path / "bad"), "--until", "gan",
                       f"--config.gan_workdir={tmp_path / 'absent'}"] + TINY)


def test_two_tier_members_can_fine_tune_the_flat_model(pipeline_run, tmp_path):
    trained, _, _ = pipeline_run
    workdir = tmp_path / "warm"
    shutil.copytree(trained, workdir)
    warm = ["--workdir", str(workdir), "--config.two_tier.init_from_flat=True"] + TINY
    study = pipeline_lib.Pipeline(pipeline.parse_args(warm)[1], workdir)
    assert {study.two_tier_config()[m].init_from for m in ("tier1", "negative", "positive")} \
        == {str(workdir / "flat")}
    # The finished two-tier stage was trained otherwise: refused, or redone with --recompute
    # (with what depends on it), the flat model kept.
    with pytest.raises(FerError, match=r"stage 'two_tier' .*changed: .*two_tier\.init_from_flat"):
        pipeline.main(warm)
    out = run_captured(warm + ["--recompute"])
    assert "[6/9] flat: skipped" in out and "[7/9] two_tier: recomputing" in out
    assert "[8/9] evaluate: recomputing (changed: upstream.two_tier)" in out
    # The members read the flat model, so retraining flat would redo them.
    assert "flat" in json.loads((workdir / "stages" / "two_tier" / "outputs.json")
                                .read_text())["reads"]
    assert out.count(f"initialized from {workdir / 'flat'}") == 3
    assert "[9/9] report: done" in out
    assert "**Warm start**: each two-tier member starts from the final flat model" in \
        (workdir / "report.md").read_text()


def test_synthetic_counts_fill_the_gap_up_to_the_caps():
    from fer_jax.classes import SEVEN, SIX

    counts = {"angry": 50, "disgust": 5, "fear": 90, "happy": 100, "sad": 60, "surprise": 100,
              "neutral": 70}
    names = ("disgust", "angry", "fear", "surprise")
    # Target = majority (100), share 0.5: gap to 100, at most 50, at most max_per_class.
    assert pipeline_lib.synthetic_per_class(counts, names, grouping=SEVEN,
                                            mixes=[(None, 0.5, "gap")], max_per_class=45) == \
        {"disgust": 45, "angry": 45, "fear": 10}
    # Several mixes: the largest need; a target of 60 needs nothing for fear (90 real).
    assert pipeline_lib.synthetic_per_class(counts, names, grouping=SEVEN,
                                            mixes=[(60, 1.0, "gap"), (None, 0.2, "gap")],
                                            max_per_class=1000) == \
        {"disgust": 55, "angry": 20, "fear": 10}
    assert pipeline_lib.synthetic_per_class(counts, names, grouping=SEVEN, mixes=[],
                                            max_per_class=1000) == {}
    # The 6-class setting has no disgust to synthesize.
    assert pipeline_lib.synthetic_per_class(counts, ("disgust", "angry"), grouping=SIX,
                                            mixes=[(None, 0.3, "gap")], max_per_class=1000) == \
        {"angry": 30}
    # equal balance: every class may take the share of the target, majority ones too
    assert pipeline_lib.synthetic_per_class(counts, ("happy", "fear"), grouping=SEVEN,
                                            mixes=[(None, 0.3, "equal")],
                                            max_per_class=1000) == {"happy": 30, "fear": 30}


def test_ablation_summary_is_mean_and_t_interval_over_seeds():
    cells = [{"setting": "seven", "model": "flat", "variant": "gan", "seed": seed, "split": "val",
              "accuracy": acc, "macro_f1": acc / 2, "disgust_recall": recall}
             for seed, acc, recall in ((0, 0.5, 0.1), (1, 0.7, 0.3), (2, 0.6, 0.2))]
    cells.append({**cells[0], "setting": "six", "disgust_recall": None})
    rows = report.summarize(cells)
    assert [(r["setting"], r["seeds"]) for r in rows] == [("seven", [0, 1, 2]), ("six", [0])]
    assert rows[0]["accuracy"]["mean"] == pytest.approx(0.6)
    # sample std 0.1 over 3 seeds: t(0.975, 2) * 0.1 / sqrt(3)
    assert rows[0]["accuracy"]["half_width"] == pytest.approx(4.3027 * 0.1 / 3 ** 0.5, rel=1e-4)
    assert rows[1]["accuracy"]["half_width"] is None and rows[1]["disgust_recall"]["mean"] is None
    assert rows[0]["disgust_ap"]["values"] == []  # cells scored before the metric existed
    table = report.ablation_rows(rows)
    assert table[0][4:8] == ["60.0 ± 24.8", "30.0 ± 12.4", "n/a", "20.0 ± 24.8"]
    assert table[1][4:8] == ["50.0", "25.0", "n/a", "n/a"]


# Tiny synthetic data and a tiny classifier: an ablation grid in seconds per run.
TINY_ABLATION = ("--config.data.synthetic_sizes.num_train=420",
                 "--config.data.synthetic_sizes.num_val=140",
                 "--config.data.synthetic_sizes.num_test=140",
                 "--config.classifier.num_epochs=1", "--config.classifier.model_kwargs.width=4",
                 "--config.classifier.batch_size=32")


def test_ablation_table_from_the_pipelines_synthetic_faces(pipeline_run, tmp_path, capsys):
    pipeline_workdir, _, _ = pipeline_run
    args = ["--workdir", str(tmp_path), "--config.settings=('six',)",
            "--config.variants=('gan_oversampling',)", "--config.seeds=(0,)",
            f"--config.synthetic_npz={pipeline_workdir}", *TINY_ABLATION]
    assert ablation.main(args) == 0
    result = json.loads((tmp_path / "ablation.json").read_text())
    rows = {(r["model"], r["variant"]): r for r in result["table"]}
    assert set(rows) == {("flat", "gan_oversampling"), ("two_tier", "gan_oversampling")}
    for row in rows.values():
        # eval_split "auto" scores val: selection never looks at test unless asked.
        assert row["seeds"] == [0] and row["split"] == "val"
        assert len(row["accuracy"]["values"]) == 1 and row["accuracy"]["half_width"] is None
        assert row["disgust_recall"]["mean"] is None  # no disgust in the 6-class setting
    # One engine run per grouping (the flat model and the three members), in runs/.
    assert sorted(p.parts[-3] for p in (tmp_path / "runs").glob("*/*/seed_0")) == \
        ["six", "tier1_six", "tier2_negative_six", "tier2_positive"]
    table = (tmp_path / "ablation.md").read_text()
    assert "| 6-class | two-tier | GAN + oversampling | 1 |" in table
    assert result["reproducibility"]["seeds"] == [0] and "## Reproducibility" in table
    assert not result["gan_variants_skipped"]
    assert "n/a" in table
    # Per-class recall of each 6-class cell beside the seed's, and its figure.
    reports = [result["cells"][f"six-{model}-gan_oversampling-seed0"]["report"]
               for model in ("flat", "two_tier")]
    flat_sad, two_tier_sad = (100 * r["per_class"]["sad"]["recall"] for r in reports)
    assert f"| sad | 59.0 | {flat_sad:.1f} | {two_tier_sad:.1f} |" in table
    assert "two-tier, GAN + oversampling " in table.split("beats the seed's")[1]
    assert (tmp_path / "recall_vs_seed.png").stat().st_size > 0
    # The two-tier cell is one loadable directory over the member runs, scoring as the cell did.
    import ml_collections

    from fer_jax import two_tier
    from fer_jax.data import load_from_config
    from fer_jax.evaluation import evaluate

    model_dir = tmp_path / "models" / "six-two_tier-gan_oversampling-seed0"
    members = json.loads((model_dir / two_tier.MANIFEST).read_text())["members"]
    assert members["tier1"]["workdir"] == "../../runs/tier1_six/gan_oversampling/seed_0"
    rescored = evaluate(inference.load(model_dir),
                        load_from_config(ml_collections.ConfigDict(result["config"]["data"]))
                        .split("val"),
                        classes.SIX)
    assert rescored["confusion"] == reports[1]["confusion"]

    # Rerun: every run and cell is skipped, the table is the same, a lost manifest is written
    # again.
    (model_dir / two_tier.MANIFEST).unlink()
    capsys.readouterr()
    assert ablation.main(args) == 0
    assert "running" not in capsys.readouterr().out
    assert two_tier.is_two_tier(model_dir)
    assert json.loads((tmp_path / "ablation.json").read_text())["table"] == result["table"]

    # A changed classifier config is refused by name; a grown grid keeps the finished cells.
    with pytest.raises(FerError, match=r"changed: run\.num_epochs\)"):
        ablation.main(args + ["--config.classifier.num_epochs=2"])
    grown = args + ["--config.models=('flat',)", "--config.variants=('gan_oversampling','none')"]
    assert ablation.main(grown) == 0
    out = capsys.readouterr().out
    assert "six-flat-gan_oversampling-seed0: skipped" in out
    assert "six-flat-none-seed0: running" in out


def test_ablation_compares_every_variant_with_none_seed_by_seed(tmp_path):
    args = ["--workdir", str(tmp_path), "--config.settings=('seven',)",
            "--config.models=('flat',)",
            "--config.variants=('none','posthoc_logit_adjusted','logit_adjusted')",
            "--config.seeds=(0,1)", *TINY_ABLATION]
    assert ablation.main(args) == 0
    result = json.loads((tmp_path / "ablation.json").read_text())
    # The post-hoc variant scores the none runs: no run of its own.
    assert sorted(p.name for p in (tmp_path / "runs" / "seven").iterdir()) == \
        ["logit_adjusted", "none"]
    cells = result["cells"]
    for seed in (0, 1):
        plain, posthoc = (cells[f"seven-flat-{v}-seed{seed}"]
                          for v in ("none", "posthoc_logit_adjusted"))
        assert plain["posthoc_taus"] is None and len(posthoc["posthoc_taus"]) == 2
        saved = {v: np.load(tmp_path / cells[f"seven-flat-{v}-seed{seed}"]["predictions"])
                 for v in ("none", "posthoc_logit_adjusted")}
        np.testing.assert_array_equal(saved["none"]["labels"],
                                      saved["posthoc_logit_adjusted"]["labels"])
        labels, probs = saved["posthoc_logit_adjusted"]["labels"], \
            saved["posthoc_logit_adjusted"]["probs"]
        assert posthoc["accuracy"] == pytest.approx(np.mean(probs.argmax(1) == labels))
        for key in ("disgust_ap", "disgust_auroc", "disgust_precision_at_recall",
                    "balanced_accuracy"):
            assert 0.0 <= posthoc[key] <= 1.0
    rows = {row["variant"]: row for row in result["comparisons"]}
    assert set(rows) == {"posthoc_logit_adjusted", "logit_adjusted"}
    for variant, row in rows.items():
        assert row["reference"] == "none" and row["seeds"] == [0, 1] and row["class"] == "disgust"
        np.testing.assert_allclose(
            row["accuracy"]["per_seed"],
            [cells[f"seven-flat-{variant}-seed{s}"]["accuracy"]
             - cells[f"seven-flat-none-seed{s}"]["accuracy"] for s in (0, 1)], atol=1e-9)
        assert row["ap"]["verdict"] in (stats.NO_DIFFERENCE, "A beats B", "B beats A")
    table = (tmp_path / "ablation.md").read_text()
    assert "## Each variant against none, each model against flat, seed by seed" in table
    assert "| 7-class | flat | post-hoc logit adjustment vs none | accuracy | [0, 1] |" in table


def test_ablation_equal_epoch_size_balances_to_the_mean_class_count():
    from experiments.configs import ablation_default
    from fer_jax import train
    from studies.ablation import Ablation

    config = ablation_default.get_config()
    config.data.synthetic_sizes.num_train = 420
    config.equal_epoch_size = True
    study = Ablation(config, "unused")
    real = study.data.split("train").labels
    for grouping in ("seven", "tier2_negative_six", "tier1_seven"):
        group = classes.grouping(grouping)
        expressions = len(group.canonical_labels)
        covered = int(group.covers(real).sum())
        balanced = study.run_config(grouping, "oversampling", seed=0)
        assert balanced.data.target_per_class == round(covered / expressions)
        prepared = train.prepare_data(balanced, study.data)
        order = train.epoch_indices(balanced, prepared, epoch=0)
        # Every expression drawn equally often (also inside a tier-1 group); the epoch is as
        # long as the real split, up to rounding.
        drawn = np.bincount(prepared.real_train.labels[order], minlength=7)
        assert drawn[list(group.canonical_labels)].tolist() == \
            [balanced.data.target_per_class] * expressions
        assert abs(len(order) - covered) <= expressions
        assert study.run_config(grouping, "none", seed=0).data.target_per_class is None
    assert "mean class count" in report.balance_target(
        json.loads(config.to_json_best_effort()))
