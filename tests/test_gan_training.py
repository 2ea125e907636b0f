"""GAN training: steps learn, jit == pmap, exact resume, NaN rollback, sampling, FER-FID."""

import dataclasses
import functools
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import synthesize, train_gan
from experiments.configs import gan_smoke
from fer_jax import inference, loop, parallel, runtime
from fer_jax import models as classifier_models
from fer_jax.checkpoint import Checkpointer
from fer_jax.classes import EMOTIONS, SEVEN
from fer_jax.data import Split, load_from_config
from fer_jax.data.augment import to_float
from fer_jax.data.sampling import load_synthetic_npz
from fer_jax.errors import FerError
from gan import experiment, input_pipeline, metrics, quality, sample, train

CLASSES = ("angry", "disgust", "happy")
VAL_COPIES = 3  # training faces the GAN evaluation's val split repeats


def tiny_config(**overrides):
    config = gan_smoke.get_config()
    config.cgan.update({"g_channels": (16, 8, 8, 8), "d_channels": (8, 8), "embed_dim": 4,
                        "latent_dim": 8})
    config.dcgan.update({"g_channels": (16, 8, 8), "d_channels": (8, 8), "latent_dim": 8})
    config.update({"classes": CLASSES, "batch_size": 8, "num_steps": 6, "log_every": 1,
                   "checkpoint_every": 2, "sample_every": 6, "grid_columns": 2,
                   "overfit_every": 3, "overfit_per_class": 8})
    config.update(overrides)
    return config


def restore(workdir, step=None):
    gan = train.build_gan(tiny_config())
    with Checkpointer(workdir) as checkpoints:
        return checkpoints.restore(gan.state_template(), step)


def assert_trees_equal(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    """A tiny conditional GAN trained 6 steps without interruption: (workdir, summary)."""
    workdir = tmp_path_factory.mktemp("gan") / "reference"
    summary = train.train_gan(tiny_config(), workdir, data=tiny_data)
    return workdir, summary["runs"]["cgan"]


@pytest.mark.slow
def test_d_step_and_g_step_lower_their_loss_on_a_fixed_batch(tiny_data):
    # The compiled iteration runs a D step then a G step; a zero learning rate freezes one
    # player (Adam's update is then exactly 0), so each step is checked on its own.
    placement = parallel.make_placement("jit")
    gan = train.build_gan(tiny_config())
    step = parallel.compile_step(gan.train_step, placement, num_consts=1)
    batches = input_pipeline.BalancedBatches.from_split(tiny_data.split("train"), CLASSES, 8, 0)
    images, batch = placement.replicate(batches.images), placement.shard_batch(batches.batch(0))
    start = gan.init_state(0)

    def losses_while_training(state, name, steps=6):
        state, values = placement.replicate(state), []
        for _ in range(steps):
            state, step_metrics = step(state, batch, jax.random.PRNGKey(0), images)
            values.append(float(step_metrics[name]))
        return placement.unreplicate(state), values

    d_state, d_losses = losses_while_training(
        train.with_learning_rates(start, g_lr=0.0, d_lr=1e-3), "d_loss")
    assert d_losses[-1] < d_losses[0] - 0.05, d_losses
    assert_trees_equal(d_state.g_params, start.g_params)

    g_state, g_losses = losses_while_training(
        train.with_learning_rates(start, g_lr=1e-3, d_lr=0.0), "g_loss")
    assert g_losses[-1] < g_losses[0] - 0.05, g_losses
    assert_trees_equal(g_state.d_params, start.d_params)


def test_balanced_batches_draw_classes_uniformly(tiny_data):
    split = tiny_data.split("train")
    batches = input_pipeline.BalancedBatches.from_split(split, EMOTIONS, 700, seed=3)
    batch = batches.batch(5)
    counts = np.bincount(batch["label"], minlength=7)
    assert counts.min() > 60  # ~100 each although disgust is ~1.5% of the split
    assert np.array_equal(batches.images[batch["image_index"]],
                          split.images[np.argsort(split.labels, kind="stable")][
                              batch["image_index"]])
    sorted_labels = np.sort(split.labels)
    assert np.array_equal(sorted_labels[batch["image_index"]], batch["label"])
    assert np.array_equal(batches.batch(5)["key"], batch["key"])  # pure in (seed, step)


@pytest.mark.slow
def test_pmap_and_jit_steps_agree_on_two_devices(tiny_data):
    assert jax.device_count() == 2
    config = tiny_config()
    batches = input_pipeline.BalancedBatches.from_split(tiny_data.split("train"), CLASSES, 8, 0)
    results = {}
    for mode in ("jit", "pmap"):
        placement = parallel.make_placement(mode)
        gan = train.build_gan(config, placement.axis_name if mode == "pmap" else None)
        step = parallel.compile_step(gan.train_step, placement, num_consts=1)
        state = placement.replicate(gan.init_state(0))
        images = placement.replicate(batches.images)
        history = []
        for i in range(2):
            state, step_metrics = step(state, placement.shard_batch(batches.batch(i)),
                                       jax.random.PRNGKey(0), images)
            history.append(jax.device_get(step_metrics))
        results[mode] = (placement.unreplicate(state), history)
    (jit_state, jit_metrics), (pmap_state, pmap_metrics) = results["jit"], results["pmap"]
    for a, b in zip(jit_metrics, pmap_metrics, strict=True):
        for key in a:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-5, err_msg=key)
    # oneDNN's weight gradients sum each device's half of the batch in another order than the
    # whole batch's: float32 rounding that Adam's normalised first steps carry into a few
    # parameters near 0 at ~2e-5 (a step's update is ~2e-4); hence atol 5e-5.
    for a, b in zip(jax.tree_util.tree_leaves(jit_state), jax.tree_util.tree_leaves(pmap_state),
                    strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=5e-5)


@pytest.mark.slow
def test_training_writes_checkpoints_logs_and_grids(trained):
    workdir, summary = trained
    assert summary["steps"] == 6 and summary["rollbacks"] == 0
    assert summary["it_per_s"] > 0
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in records if "d_loss" in r]
    assert [r["step"] for r in losses] == [1, 2, 3, 4, 5, 6]
    assert all(np.isfinite(r["d_loss"]) and np.isfinite(r["g_loss"]) for r in losses)
    monitored = [r for r in records if "d_overfit" in r]
    assert [r["step"] for r in monitored] == [3, 6]  # every overfit_every steps
    for record in monitored:
        assert set(record["d_overfit"]) == set(CLASSES)  # each has held-out (val) faces
        for name, values in record["d_overfit"].items():
            assert values["gap"] == pytest.approx(values["train"] - values["heldout"])
            assert record[f"d_overfit/{name}"] == values["overfit"]
    assert (workdir / "samples" / "step_000006.png").stat().st_size > 0
    assert list((workdir / "tensorboard").iterdir())
    assert int(restore(workdir).state.step) == 6


class Killed(Exception):
    """Stands in for the process dying."""


@pytest.mark.slow
def test_killed_and_resumed_run_equals_the_uninterrupted_one(trained, tiny_data, tmp_path,
                                                             monkeypatch):
    reference, _ = trained
    workdir = tmp_path / "resumed"
    real_batch = input_pipeline.BalancedBatches.batch

    def dying_batch(self, step):
        if step == 5:  # after the checkpoint at step 4, before the one at 6
            raise Killed
        return real_batch(self, step)

    monkeypatch.setattr(input_pipeline.BalancedBatches, "batch", dying_batch)
    with pytest.raises(Killed):
        train.train_gan(tiny_config(), workdir, data=tiny_data)
    monkeypatch.setattr(input_pipeline.BalancedBatches, "batch", real_batch)
    with Checkpointer(workdir) as checkpoints:
        assert checkpoints.latest_step() == 4

    summary = train.train_gan(tiny_config(), workdir, data=tiny_data)["runs"]["cgan"]
    assert summary["steps"] == 6
    assert_trees_equal(restore(workdir).state, restore(reference).state)
    logged, expected = ([json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
                        for run in (workdir, reference))
    assert [r["step"] for r in logged if "d_loss" in r] == [1, 2, 3, 4, 5, 6]
    assert ([r.get("d_loss", r.get("d_overfit")) for r in logged]
            == [r.get("d_loss", r.get("d_overfit")) for r in expected])


@pytest.mark.slow
def test_a_finished_run_extended_to_more_steps_equals_the_longer_run(trained, tiny_data,
                                                                      tmp_path):
    reference, _ = trained
    workdir = tmp_path / "extended"
    assert train.train_gan(tiny_config(num_steps=4), workdir, data=tiny_data)["runs"]["cgan"]["steps"] == 4
    summary = train.train_gan(tiny_config(), workdir, data=tiny_data)["runs"]["cgan"]
    assert summary["steps"] == 6
    assert_trees_equal(restore(workdir).state, restore(reference).state)


@pytest.mark.slow
def test_a_run_started_from_another_runs_checkpoint_continues_it(trained, tiny_data, tmp_path):
    reference, _ = trained
    first = tmp_path / "first4"
    train.train_gan(tiny_config(num_steps=4), first, data=tiny_data)
    # Same config: the continuation in a new workdir ends where the uninterrupted run does.
    continued = tmp_path / "continued"
    summary = train.train_gan(tiny_config(init_from=str(first)), continued,
                              data=tiny_data)["runs"]["cgan"]
    assert summary["steps"] == 6
    assert_trees_equal(restore(continued).state, restore(reference).state)
    logged = [json.loads(line) for line in (continued / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "d_loss" in r] == [5, 6]
    with Checkpointer(continued) as checkpoints:
        assert checkpoints.steps() == [4, 6]
    # Changed hyperparameters take over from the saved ones (learning rates live in the state).
    config = tiny_config(init_from=str(first))
    config.cgan.g_lr = 1e-3
    gan = train.build_gan(config)
    with Checkpointer(first) as checkpoints:
        saved = checkpoints.restore(gan.state_template()).state
    start = train.initial_state(gan, config)
    assert int(start.step) == 4
    assert train.learning_rates(start) == {"g_lr": pytest.approx(1e-3),
                                           "d_lr": pytest.approx(config.cgan.d_lr)}
    assert_trees_equal(start.g_opt_state.inner_state, saved.g_opt_state.inner_state)
    assert_trees_equal(start.ema_params, saved.ema_params)
    # Another architecture is refused, naming the checkpoint.
    wider = tiny_config(init_from=str(first))
    wider.cgan.latent_dim = 16
    with pytest.raises(FerError, match="first4.*not match"):
        train.initial_state(train.build_gan(wider), wider)


def test_a_start_from_a_missing_run_or_for_the_per_class_baseline_is_refused(tiny_data,
                                                                              tmp_path):
    config = tiny_config(init_from=str(tmp_path / "nowhere"))
    with pytest.raises(FerError, match="nowhere: init_from has no GAN checkpoint"):
        train.initial_state(train.build_gan(config), config)
    assert not (tmp_path / "nowhere").exists()
    with pytest.raises(FerError, match="continues one cgan run"):
        train.train_gan(tiny_config(model="dcgan", init_from=str(tmp_path)), tmp_path / "b",
                        data=tiny_data)


def test_a_rollback_halves_both_gan_learning_rates():
    state = train.build_gan(tiny_config()).init_state(0)
    base = tiny_config().cgan
    assert train.learning_rates(state) == pytest.approx({"g_lr": base.g_lr, "d_lr": base.d_lr})
    lowered = train.learning_rates(loop.scale_learning_rates(state, 0.5))
    assert lowered == pytest.approx({"g_lr": base.g_lr / 2, "d_lr": base.d_lr / 2})


@pytest.mark.slow
def test_synthesize_writes_a_loadable_npz_with_the_requested_counts(trained, tmp_path, capsys):
    workdir, _ = trained
    out, grid = tmp_path / "fake.npz", tmp_path / "grid.png"
    assert synthesize.main(["--workdir", str(workdir), "--per-class", "disgust=5,happy=3",
                            "--out", str(out), "--grid", str(grid), "--seed", "1"]) == 0
    loaded = load_synthetic_npz(out)
    assert {k: v for k, v in loaded.counts().items() if v} == {"disgust": 5, "happy": 3}
    assert grid.stat().st_size > 0
    again = sample.sample_images(workdir, {"disgust": 5}, seed=1)
    assert np.array_equal(again.images, loaded.images[loaded.labels == 1])  # seeded per class

    truncated_out = tmp_path / "truncated.npz"
    assert synthesize.main(["--workdir", str(workdir), "--per-class", "disgust=5", "--seed", "1",
                            "--truncation", "0.5", "--out", str(truncated_out)]) == 0
    truncated = load_synthetic_npz(truncated_out)
    assert np.array_equal(truncated.images, sample.sample_images(workdir, {"disgust": 5}, seed=1,
                                                                 truncation=0.5).images)
    assert not np.array_equal(truncated.images, again.images)

    with pytest.raises(SystemExit) as exit_info:
        synthesize.run_main(lambda: synthesize.main(
            ["--workdir", str(workdir), "--per-class", "sad=2", "--out", str(out)]))
    assert exit_info.value.code == 2
    assert "no trained generator for class 'sad'" in capsys.readouterr().err


def test_truncated_latents_stay_within_the_threshold():
    keys = jax.random.split(jax.random.PRNGKey(0), 500)
    plain, truncated = train.latents(keys, 16), train.latents(keys, 16, truncation=0.5)
    assert plain.shape == truncated.shape == (500, 16)
    assert float(jnp.abs(truncated).max()) <= 0.5
    assert float(jnp.abs(plain).max()) > 2.0   # the plain normal is not truncated
    np.testing.assert_array_equal(truncated, train.latents(keys, 16, truncation=0.5))


@pytest.mark.slow
def test_train_gan_cli_trains_baseline_and_reports_every_truncation(tiny_data, tmp_path,
                                                                    monkeypatch, capsys):
    monkeypatch.setattr(experiment, "load_from_config", lambda data_config: tiny_data)
    config_path = tmp_path / "tiny_gan.py"  # this module's tiny_config as a config file
    config_path.write_text(f"import sys\nsys.path.insert(0, {str(pathlib.Path(__file__).parent)!r})\n"
                           "from test_gan_training import tiny_config\n"
                           "def get_config():\n    return tiny_config()\n")
    workdir = tmp_path / "run"
    assert train_gan.main([
        "--config", str(config_path), "--workdir", str(workdir),
        "--config.num_steps=2", "--config.baseline.num_steps=2", f"--config.classes={EMOTIONS}",
        "--config.eval.classifier_overrides.num_epochs=1",
        "--config.eval.cas_overrides.num_epochs=1",
        "--config.eval.samples_per_class=10", "--config.eval.cas_samples_per_class=10",
        "--config.eval.sensitivity_latents=10", "--config.eval.truncations=(0.0, 1.0)"]) == 0
    result = json.loads((workdir / "gan_metrics.json").read_text())
    assert set(result["evaluation"]) == {"cgan", "cgan trunc 1", "dcgan", "dcgan trunc 1"}
    assert result["evaluation"]["cgan trunc 1"]["truncation"] == 1.0
    assert set(result["evaluation"]["dcgan"]["per_class"]) == {"disgust"}
    assert set(result["evaluation"]["cgan"]["per_class"]) == set(EMOTIONS)
    assert 0 <= result["cas"]["cas"] <= 1 and 0 <= result["cas"]["real_reference"]["cas"] <= 1
    out = capsys.readouterr().out
    assert "cgan trunc 1" in out and "the same trained on as many real faces" in out
    cgan_eval = json.loads((workdir / quality.GAN_EVAL).read_text())
    assert set(cgan_eval["per_class"]) == set(EMOTIONS)
    assert cgan_eval["overall"]["cas"] == result["cas"]["cas"]
    assert cgan_eval["overall"]["cas_real_reference"] == result["cas"]["real_reference"]["cas"]
    # Both CAS classifiers saw 10 faces of each class for 1 epoch: the same number of steps.
    (cas_run,) = (workdir / "cas").iterdir()
    assert cas_run.name.startswith("step2_10perclass_seed0_")
    generated_run, real_run = (runtime.read_history(run)[-1]["step"] for run in (
        cas_run, cas_run / "real_reference"))
    assert generated_run == real_run > 0
    assert all(0 <= values["cas"] <= 1 for values in cgan_eval["per_class"].values())
    assert (workdir / "dcgan_baseline" / quality.GAN_EVAL).is_file()


def test_each_generator_step_and_cas_setting_has_its_own_cas_directory(tmp_path):
    config = experiment.classifier_config("smoke", {"num_epochs": 1})
    first = experiment.cas_dir(tmp_path, 12000, 1000, 0, config)
    assert first == experiment.cas_dir(tmp_path, 12000, 1000, 0, config.copy_and_resolve_references())
    others = [experiment.cas_dir(tmp_path, 24000, 1000, 0, config),      # extended run
              experiment.cas_dir(tmp_path, 12000, 500, 0, config),       # fewer faces
              experiment.cas_dir(tmp_path, 12000, 1000, 1, config),      # another seed
              experiment.cas_dir(tmp_path, 12000, 1000, 0,
                                 experiment.classifier_config("smoke", {"num_epochs": 2}))]
    assert len({first, *others}) == 5 and all(d.parent == tmp_path / "cas" for d in others)


@pytest.mark.slow
def test_dcgan_baseline_trains_one_generator_per_class(tiny_data, tmp_path):
    config = tiny_config(model="dcgan", classes=("disgust", "fear"), num_steps=2)
    summary = train.train_gan(config, tmp_path, data=tiny_data)
    assert set(summary["runs"]) == {"disgust", "fear"}
    generators = sample.load_generators(tmp_path)
    assert generators.classes == ("disgust", "fear")
    fake = generators.sample({"fear": 4, "disgust": 2})
    assert fake.counts()["fear"] == 4 and fake.counts()["disgust"] == 2


def untrained_classifier():
    """A 7-class compact classifier with its initial weights (features without training)."""
    model = classifier_models.create_model("compact", 7, width=8)
    variables = jax.jit(functools.partial(model.init, train=False))(
        jax.random.key(0, impl="rbg"), jnp.zeros((1, 48, 48, 1)))
    return inference.Classifier(SEVEN, "untrained compact", model=model, variables=variables)


@pytest.mark.slow
def test_fer_fid_of_a_set_against_itself_is_zero_and_evaluation_reports(trained, tiny_data):
    classifier = untrained_classifier()
    variables = classifier.variables
    images = tiny_data.split("val").images
    features, probs = classifier.features(images), classifier.probabilities(images)
    assert features.ndim == 2 and len(features) == 140 and probs.shape == (140, 7)
    # They are the penultimate features: the classifier head maps them to the probabilities.
    head = [layer for layer in jax.tree_util.tree_leaves(
        variables["params"], is_leaf=lambda x: isinstance(x, dict) and "kernel" in x)
        if isinstance(layer, dict) and layer["kernel"].shape == (features.shape[1], 7)]
    assert len(head) == 1
    logits = features @ np.asarray(head[0]["kernel"]) + np.asarray(head[0]["bias"])
    np.testing.assert_allclose(np.asarray(jax.nn.softmax(logits)), probs, atol=1e-5)
    assert metrics.features_fid(features, features) == pytest.approx(0.0, abs=1e-6)

    workdir, _ = trained
    report = metrics.evaluate_generators(sample.load_generators(workdir), tiny_data, classifier,
                                         samples_per_class=10)
    assert set(report["per_class"]) == set(CLASSES)
    for values in [*report["per_class"].values(), report["overall"]]:
        assert values["fid"] >= 0 and values["fid_floor"] >= 0
        assert 0 <= values["recognizability"] <= 1 and 0 <= values["real_recall"] <= 1


def test_ema_applies_its_configured_decay_right_after_a_short_warmup():
    decays = [float(train.ema_decay_at(step, 0.999, 20)) for step in (0, 19, 20, 100, 9000)]
    # The former min(decay, (1 + s) / (10 + s)) stayed below 0.999 until step ~9000.
    assert decays == [0.0, 0.0, pytest.approx(0.999), pytest.approx(0.999),
                      pytest.approx(0.999)]


def test_standing_statistics_follow_the_sampling_truncation(tiny_data):
    gan = train.build_gan(tiny_config())
    state = gan.init_state(0)
    stats = {t: gan.standing_stats(state.ema_params, state.g_batch_stats, CLASSES,
                                   truncation=t, batch_size=32, num_batches=4)
             for t in (0.0, 0.5)}
    leaves = {t: np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(s)])
              for t, s in stats.items()}
    assert leaves[0.0].shape == leaves[0.5].shape and not np.allclose(leaves[0.0], leaves[0.5])
    one = gan.standing_stats(state.ema_params, state.g_batch_stats, CLASSES, batch_size=32,
                             num_batches=1)
    two = gan.standing_stats(state.ema_params, state.g_batch_stats, CLASSES, batch_size=32,
                             num_batches=2)
    assert not np.allclose(jax.tree_util.tree_leaves(one)[0], jax.tree_util.tree_leaves(two)[0])


@pytest.fixture(scope="module")
def gan_evaluation(tmp_path_factory):
    """A 2-step cgan (+ a 2-step DCGAN baseline for disgust) on the embedded synthetic default,
    evaluated by :func:`gan.experiment.train_and_evaluate` with an untrained classifier at
    truncations 0 and 0.5 (gan_eval.json at 0.5), its val split extended by copies of
    ``VAL_COPIES`` training faces: (workdir, result, config, the FaceSets measured per
    (generators workdir, truncation), the val split without those copies)."""
    config = tiny_config(num_steps=2)
    data = load_from_config(config.data)
    train_split, val = data.split("train"), data.split("val")
    copied = train_split.take(np.flatnonzero(np.isin(train_split.labels, [
        EMOTIONS.index(name) for name in CLASSES]))[:VAL_COPIES])
    data = dataclasses.replace(data, splits={**data.splits, "val": Split(
        np.concatenate([val.images, copied.images]), np.concatenate([val.labels, copied.labels]))})
    config.baseline.num_steps = 2
    config.eval.update({"cas": False, "samples_per_class": 10, "truncations": (0.0, 0.5),
                        "quality_truncation": 0.5, "kid_subsets": 20,
                        "sensitivity_latents": 6})
    workdir = tmp_path_factory.mktemp("gan_eval") / "run"
    measured = {}
    real_face_sets = metrics.face_sets

    def recording_face_sets(generators, *args, **kwargs):
        sets = real_face_sets(generators, *args, **kwargs)
        measured[generators.workdir, kwargs["truncation"]] = sets
        return sets

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(metrics, "face_sets", recording_face_sets)
        patch.setattr(experiment, "feature_classifier", lambda *args: untrained_classifier())
        result = experiment.train_and_evaluate(config, workdir, data)
    return workdir, result, config, measured, val


@pytest.mark.slow
def test_gan_evaluation_writes_gan_eval_json_for_every_class_and_run(gan_evaluation):
    workdir, result, config, *_ = gan_evaluation
    assert result["synthetic_data"]
    assert {report["fid_reference"] for report in result["evaluation"].values()} == {"val"}
    for run_dir, classes in ((workdir, CLASSES), (workdir / "dcgan_baseline", ("disgust",))):
        report = json.loads((run_dir / quality.GAN_EVAL).read_text())
        assert report["fid_reference"] == "val" and report["truncation"] == 0.5
        assert report["seed"] == sample.evaluation_seed(config.seed)
        assert set(report["per_class"]) == set(classes)
        for values in [*report["per_class"].values(), report["overall"]]:
            lo, hi = values["kid"]["ci"]
            assert lo <= values["kid"]["kid"] <= hi
            for share in ("precision", "recall", "label_sensitivity", "recognizability"):
                assert 0 <= values[share] <= 1, share
            assert 0 <= values["memorization"]["near_copy_share"] <= 1
            assert values["fid"] >= 0 and values["fid_floor"] >= 0
            assert values["cas"] is None  # config.eval.cas is off
        assert 0 <= report["overall"]["label_sensitivity_every_label"] <= 1
        assert report["label_sensitivity_setup"]["latents"] == config.eval.sensitivity_latents
        assert (run_dir / experiment.PAIRS_PNG).stat().st_size > 0


@pytest.mark.slow
def test_gan_evaluation_measures_against_val_without_its_copies_of_train(gan_evaluation):
    workdir, result, config, measured, val = gan_evaluation
    assert sum(result["val_copies_left_out"].values()) == VAL_COPIES
    assert "val without its 3 exact copies of train faces" in result["evaluation"]["cgan"]["data"]
    for truncation in config.eval.truncations:
        for name, faces in measured[workdir, truncation].val.items():
            np.testing.assert_array_equal(faces.images,
                                          val.images[val.labels == EMOTIONS.index(name)])
    report = json.loads((workdir / quality.GAN_EVAL).read_text())
    assert {name: values["n_val"] for name, values in report["per_class"].items()} == \
        {name: int(np.sum(val.labels == EMOTIONS.index(name))) for name in CLASSES}


@pytest.mark.slow
def test_gan_evaluation_measures_faces_of_the_evaluation_seed_stream(gan_evaluation):
    workdir, _, config, measured, _ = gan_evaluation
    sets = measured[workdir, 0.5]
    counts = {name: len(faces.images) for name, faces in sets.generated.items()}
    generators = sample.load_generators(workdir)
    scored = generators.sample(counts, sample.evaluation_seed(config.seed), truncation=0.5)
    np.testing.assert_array_equal(
        np.concatenate([faces.images for faces in sets.generated.values()]), scored.images)
    synthesized = generators.sample(counts, config.seed, truncation=0.5)
    shared = (synthesized.images[:, None] == scored.images[None]).all(axis=(2, 3))
    assert not shared.any()


def test_an_unevaluated_quality_truncation_is_refused_before_training(tmp_path):
    config = tiny_config()
    config.eval.update({"truncations": (0.0,), "quality_truncation": 0.5})
    with pytest.raises(FerError, match="quality_truncation=0.5 is not one of"):
        experiment.train_and_evaluate(config, tmp_path)
    assert not list(tmp_path.iterdir())


def test_overfitting_monitor_sees_no_gap_when_held_out_faces_are_the_training_faces(tiny_data):
    gan = train.build_gan(tiny_config())
    state = gan.init_state(0)
    faces = train.monitor_faces(tiny_data.split("train"), CLASSES, 5, seed=0)
    heldout = train.monitor_faces(tiny_data.split("val"), CLASSES, 5, seed=0)
    assert faces.counts()["disgust"] == 5 and heldout.counts()["disgust"] == 2  # all there are
    same = train.overfitting_monitor(gan, faces, faces, seed=0)(0, state, {})
    assert set(same["d_overfit"]) == set(CLASSES)
    for name, values in same["d_overfit"].items():
        assert values["gap"] == 0.0 and same[f"d_overfit/{name}"] == 0.0
    apart = train.overfitting_monitor(gan, faces, heldout, seed=0)(0, state, {})
    assert all(values["gap"] != 0.0 for values in apart["d_overfit"].values())
    assert apart["d_overfit"]["happy"]["fake"] == same["d_overfit"]["happy"]["fake"]


@pytest.mark.slow
def test_ada_never_lowers_the_augmentation_probability_below_its_floor(tiny_data):
    # A target above 1 is never reached (ADA's r_t is a mean of signs), so every step lowers
    # p by ada_speed: 0.3 -> 0.2 -> 0.15 (the floor) -> 0.15.
    config = tiny_config()
    config.cgan.update({"augment_p": 0.3, "ada_target": 1.5, "ada_speed": 0.1,
                        "ada_min_p": 0.15})
    placement = parallel.make_placement("jit")
    gan = train.build_gan(config)
    step = parallel.compile_step(gan.train_step, placement, num_consts=1)
    batches = input_pipeline.BalancedBatches.from_split(tiny_data.split("train"), CLASSES, 8, 0)
    images, batch = placement.replicate(batches.images), placement.shard_batch(batches.batch(0))
    state, seen = placement.replicate(gan.init_state(0)), []
    for _ in range(3):
        state, _ = step(state, batch, jax.random.PRNGKey(0), images)
        seen.append(float(placement.unreplicate(state).augment_p))
    np.testing.assert_allclose(seen, [0.2, 0.15, 0.15], atol=1e-6)


@pytest.mark.slow
def test_a_hierarchical_cgan_trains_and_samples_end_to_end(tiny_data, tmp_path):
    config = tiny_config(num_steps=2, checkpoint_every=2, sample_every=2, overfit_every=0)
    config.cgan.update({"conditioning": "hierarchical", "latent_dim": 10})  # 5 chunks of 2
    summary = train.train_gan(config, tmp_path, data=tiny_data)["runs"]["cgan"]
    assert summary["steps"] == 2 and summary["rollbacks"] == 0
    generators = sample.load_generators(tmp_path)
    assert generators.run_for("happy").gan.hparams.conditioning == "hierarchical"
    faces = generators.sample({"angry": 3, "happy": 2}, seed=1, truncation=0.5)
    assert faces.images.shape == (5, 48, 48)
    assert (faces.counts()["angry"], faces.counts()["happy"]) == (3, 2)
    assert generators.with_shared_latents([0, 3], seed=2, truncation=0.5).shape == (2, 48, 48)


@pytest.mark.slow
def test_the_auxiliary_terms_add_their_weighted_cross_entropy_to_both_losses(tiny_data):
    # Same seed: the adversarial part of D (and G) is initialised identically with or without
    # the class head, so each loss is the adversarial loss + aux_weight x its cross-entropy.
    batches = input_pipeline.BalancedBatches.from_split(tiny_data.split("train"), CLASSES, 8, 0)
    batch = batches.batch(0)
    real = to_float(batches.images[batch["image_index"]]) * 2.0 - 1.0
    keys = jax.vmap(functools.partial(jax.random.split, num=5))(batch["key"])
    labels = jnp.asarray(batch["label"])
    measured = {}
    for weight, g_scale in ((0.0, 1.0), (2.5, 1.0), (2.5, 3.0)):
        config = tiny_config()
        config.cgan.update({"aux_weight": weight, "g_aux_scale": g_scale})
        gan = train.build_gan(config)
        state = gan.init_state(0)

        def losses(state, gan=gan):
            _, d_metrics = gan.d_step(state, real, labels, keys[:, :3])
            _, g_metrics = gan.g_step(state, labels, keys[:, 3:])
            return {**d_metrics, **g_metrics}

        measured[weight, g_scale] = jax.jit(losses)(state)
    none = measured[0.0, 1.0]
    assert "d_aux" not in none and "g_aux" not in none
    # g_aux_scale weighs G's term only: D's loss is the same, G's term is 3x as heavy.
    for (weight, g_scale), weighted in measured.items():
        for player, scale in (("d", 1.0), ("g", g_scale)):
            aux = float(weighted.get(f"{player}_aux", 0.0))
            assert (aux > 0) == (weight > 0)
            assert float(weighted[f"{player}_loss"]) == pytest.approx(
                float(none[f"{player}_loss"]) + weight * scale * aux, abs=1e-5)


def test_gan_configs_saved_before_conditioning_existed_load_as_embedding():
    saved = {k: v for k, v in gan_smoke.get_config().cgan.items()
             if k not in ("conditioning", "aux_weight")}
    hparams = train.GanHparams.from_config(saved)
    assert hparams.conditioning == "embedding" and hparams.aux_weight == 0.0
