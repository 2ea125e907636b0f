"""fer_jax.train + fer_jax.parallel: jit/pmap parity, learning, exact resume after SIGKILL,
checkpoint on SIGTERM, per-process batch sharding."""

import functools
import json
import os
import pathlib
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments.configs import smoke
from fer_jax import checkpoint, evaluation, inference, loop, parallel, train
from fer_jax import state as state_lib
from fer_jax.classes import SEVEN
from fer_jax.data import FerData, Split, augment
from fer_jax.errors import FerCheckpointError

REPO = pathlib.Path(__file__).resolve().parents[1]


def tiny_config(**overrides):
    """A two-conv VGG (quick to compile) for a couple of epochs."""
    config = smoke.get_config()
    config.model = "vgg13"
    config.model_kwargs = {"width": 4, "stages": ((1, 1), (2, 1)), "head": (16,)}
    config.batch_size = 32
    config.num_epochs = 2
    config.progress = False
    config.log_every_steps = 1
    config.update(overrides)
    return config


# ----------------------------------------------------------------------------- parallel
def _one_step(mode, devices, config, images, labels, indices, *, step_axis=None):
    """(initial state, state after one step, metrics) for ``mode`` on ``devices``;
    ``step_axis`` overrides the step's reduction axis (None: the placement's)."""
    placement = parallel.make_placement(mode, devices)
    axis = placement.step_axis if step_axis is None else step_axis or None
    initial = jax.device_get(state_lib.create_train_state(config, 0, 10,
                                                          bn_axis_name=placement.step_axis))
    step = parallel.compile_step(
        train.make_train_step(num_classes=7, augment_config=augment.AugmentConfig(),
                              label_smoothing=0.0, axis_name=axis), placement, num_consts=2)
    state, metrics = step(placement.replicate(initial),
                          placement.shard_batch({"indices": indices}), jax.random.PRNGKey(3),
                          placement.replicate(images), placement.replicate(labels))
    return initial, jax.device_get(placement.unreplicate(state)), jax.device_get(metrics)


def max_relative_update_error(got, want, before) -> float:
    """Max over leaves of |got - want| / max|want - before|: how far one step's update is
    from the reference update, relative to the update's size (integer leaves: exact)."""
    worst = 0.0
    for g, w, b in zip(*(jax.tree_util.tree_leaves(t) for t in (got, want, before)),
                       strict=True):
        g, w, b = (np.asarray(x, np.float64) for x in (g, w, b))
        error, size = np.max(np.abs(g - w)), np.max(np.abs(w - b))
        if error:
            worst = max(worst, error / size if size else np.inf)
    return worst


# One SGD step's update is a mean over 64 examples: reordering a float32 sum of n terms moves
# it by at most ~n * 2^-24 (4e-6 for n = 64) of the sum of the terms' magnitudes, which
# cancellation can make ~100x the result: 1e-3 of the update. A missing all-reduce changes the
# update by the difference between a half-batch and a full-batch gradient: tens of percent.
UPDATE_TOLERANCE = 1e-3


@pytest.mark.slow
def test_two_device_steps_equal_full_batch_steps_with_augmentation_and_dropout(tiny_data):
    assert jax.device_count() == 2, "conftest forces two host devices"
    # Flax's BatchNorm and max-pool: their float32 error is that of pairwise reductions. The
    # fast layers sum BatchNorm statistics over B*H*W = 147k values in one dot, whose rounding
    # (measured: 1.5% of the first conv's update, the same under jit and pmap) would swamp
    # the all-reduce this test is about.
    config = tiny_config(optimizer="sgd", learning_rate=0.1, schedule="constant",
                         weight_decay=1e-3, layer_impl="flax")
    config.model_kwargs.dropout = 0.5
    split = tiny_data.split("train")
    images, labels = split.images[:128], SEVEN.encode(split.labels[:128]).astype(np.int32)
    indices = np.arange(10, 74, dtype=np.int32)
    before, reference, reference_metrics = _one_step("jit", jax.devices()[:1], config, images,
                                                     labels, indices)
    for mode in ("jit", "pmap"):
        _, state, metrics = _one_step(mode, jax.devices(), config, images, labels, indices)
        np.testing.assert_allclose(metrics["loss"], reference_metrics["loss"], rtol=1e-5)
        np.testing.assert_allclose(metrics["accuracy"], reference_metrics["accuracy"])
        for name in ("params", "batch_stats", "opt_state"):
            error = max_relative_update_error(getattr(state, name), getattr(reference, name),
                                              getattr(before, name))
            assert error < UPDATE_TOLERANCE, (mode, name, error)
        assert int(state.step) == 1

    # The check catches a step whose gradients skip the all-reduce.
    _, state, _ = _one_step("pmap", jax.devices(), config, images, labels, indices,
                            step_axis="")
    assert max_relative_update_error(state.params, reference.params,
                                     before.params) > 10 * UPDATE_TOLERANCE


def test_reduce_mean_is_identity_without_axis_and_pmean_under_pmap():
    x = np.arange(4, dtype=np.float32).reshape(2, 2)
    np.testing.assert_array_equal(jax.jit(lambda v: parallel.reduce_mean(v, None))(x), x)
    out = jax.pmap(lambda v: parallel.reduce_mean(v, parallel.AXIS), axis_name=parallel.AXIS)(x)
    np.testing.assert_array_equal(out, [[1.0, 2.0], [1.0, 2.0]])
    with pytest.raises(NameError):  # a wrong axis name fails loudly instead of skipping
        jax.pmap(lambda v: parallel.reduce_mean(v, "wrong"), axis_name=parallel.AXIS)(x)


def test_example_keys_do_not_depend_on_the_device_split():
    key = jax.random.PRNGKey(7)
    whole = parallel.example_keys(key, 8, None)
    parts = jax.pmap(lambda _: parallel.example_keys(key, 4, parallel.AXIS),
                     axis_name=parallel.AXIS)(np.zeros(2))
    np.testing.assert_array_equal(np.asarray(parts).reshape(whole.shape), whole)


def test_process_shards_partition_the_global_batch():
    batch = {"indices": np.arange(64), "weights": np.arange(64) * 2}
    parts = [parallel.process_shard(batch, index, 4) for index in range(4)]
    assert parallel.process_slice(64, 1, 4) == slice(16, 32)
    np.testing.assert_array_equal(parts[1]["indices"], np.arange(16, 32))
    np.testing.assert_array_equal(np.concatenate([p["weights"] for p in parts]),
                                  batch["weights"])
    assert parallel.process_slice(64) == slice(0, 64)  # one real process here
    with pytest.raises(ValueError, match="not divisible"):
        parallel.process_slice(63, 0, 2)
    with pytest.raises(ValueError, match="outside"):
        parallel.process_slice(64, 2, 2)


def test_multi_process_detection_from_environment():
    assert not parallel.multi_process_requested({})
    assert parallel.multi_process_requested({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"})
    assert parallel.multi_process_requested({"SLURM_NTASKS": "4"})
    assert not parallel.multi_process_requested({"SLURM_NTASKS": "1"})
    assert not parallel.maybe_initialize_distributed({})


# ----------------------------------------------------------------------------- training
@pytest.mark.slow
def test_training_learns_the_synthetic_faces(tiny_data, tmp_path):
    config = tiny_config(num_epochs=8, learning_rate=3e-3, optimizer="adam", model="compact")
    config.model_kwargs = {"width": 8, "multipliers": (2, 4, 8), "dense": 64, "dropout": 0.0}
    config.augment = {"max_shift": 2, "flip": True, "max_rotation_deg": 0.0, "brightness": 0.0,
                          "contrast": 0.0}
    summary = train.train_and_evaluate(config, tmp_path, data=tiny_data)
    majority = np.bincount(tiny_data.split("val").labels).max() / len(tiny_data.split("val"))
    assert summary["best_val_accuracy"] > majority + 0.05
    assert summary["val_macro_f1"] > 0.15
    for name in ("metrics.jsonl", "report.json", "confusion.png", "curves.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_report_also_scores_val_without_its_copies_of_training_images(tiny_data, tmp_path):
    train_split, val = tiny_data.split("train"), tiny_data.split("val")
    copied = train_split.take(np.arange(5))
    data = FerData({"train": train_split, "val": Split(
        np.concatenate([val.images, copied.images]),
        np.concatenate([val.labels, copied.labels]))}, source="val + 5 training faces")
    train.train_and_evaluate(tiny_config(num_epochs=1), tmp_path, data=data)
    reports = json.loads((tmp_path / "report.json").read_text())["reports"]
    assert reports["val"]["n"] == len(val) + 5
    unseen = evaluation.evaluate(inference.load(tmp_path), val, SEVEN)
    assert reports["val_without_train_copies"]["confusion"] == unseen["confusion"]


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_the_rerun_finishes(tiny_data, tmp_path, monkeypatch):
    config = tiny_config()
    steps_per_epoch = len(tiny_data.split("train")) // config.batch_size
    original_key = loop.step_key

    def key_then_signal(seed, step):
        if step == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return original_key(seed, step)

    handler = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(loop, "step_key", key_then_signal)
    summary = train.train_and_evaluate(config, tmp_path, data=tiny_data)
    assert summary["interrupted"] == signal.SIGTERM and summary["step"] == 6
    assert signal.getsignal(signal.SIGTERM) is handler
    with checkpoint.Checkpointer(tmp_path) as ckpt:
        assert ckpt.latest_step() == 6
        meta, saved_config = ckpt.read_json()
    assert meta["steps_per_epoch"] == steps_per_epoch
    assert saved_config["model"] == "vgg13"

    monkeypatch.setattr(loop, "step_key", original_key)
    summary = train.train_and_evaluate(config, tmp_path, data=tiny_data)
    assert summary["interrupted"] is None
    assert summary["step"] == config.num_epochs * steps_per_epoch


# A training run in a subprocess; with a kill step (-1: none) it SIGKILLs itself when asked to
# save that step (after the previous checkpoint was written, with un-checkpointed steps done since).
DRIVER = """
import json, os, signal, sys
from fer_jax import checkpoint, train
from tests.test_train import resume_config
workdir, kill_at = sys.argv[1], int(sys.argv[2])
save = checkpoint.Checkpointer.save
def save_or_die(self, step, *args, **kwargs):
    if step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return save(self, step, *args, **kwargs)
checkpoint.Checkpointer.save = save_or_die
print("SUMMARY " + json.dumps(train.train_and_evaluate(resume_config(), workdir)))
"""


def resume_config():
    """3 epochs of 8 steps; checkpoints every 3 steps and at epoch ends."""
    config = tiny_config(num_epochs=3, checkpoint_every_steps=3)
    config.data.synthetic_sizes = {"num_train": 256, "num_val": 64, "num_test": 0}
    return config


def _start(workdir, kill_at, env):
    return subprocess.Popen([sys.executable, "-c", DRIVER, str(workdir), str(kill_at)], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _summary(process):
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    return json.loads(next(line for line in out.splitlines()
                           if line.startswith("SUMMARY "))[len("SUMMARY "):])


def _epoch_records(workdir):
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "val_accuracy" in r]


@pytest.mark.slow
def test_resume_after_sigkill_mid_epoch_is_exact(tmp_path):
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(tmp_path / "xla_cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    full, killed = tmp_path / "full", tmp_path / "killed"
    # The uninterrupted and the doomed run side by side (separate data caches: no race).
    full_run = _start(full, -1, dict(env, FER_JAX_CACHE=str(tmp_path / "cache_full")))
    env["FER_JAX_CACHE"] = str(tmp_path / "cache_killed")
    doomed = _start(killed, 12, env)
    doomed.communicate(timeout=300)
    assert doomed.returncode == -signal.SIGKILL
    with checkpoint.Checkpointer(killed) as ckpt:
        assert ckpt.latest_step() in (8, 9)  # 9 = epoch 2, position 1 (unless still writing)
    resumed = _summary(_start(killed, -1, env))
    expected = _summary(full_run)

    for key in ("step", "val_accuracy", "val_loss", "val_macro_f1", "best_step"):
        assert resumed[key] == expected[key], key
    assert _epoch_records(killed) == _epoch_records(full)
    resumed_vars = inference.load(killed).variables
    expected_vars = inference.load(full).variables
    for got, want in zip(jax.tree_util.tree_leaves(resumed_vars),
                         jax.tree_util.tree_leaves(expected_vars)):
        np.testing.assert_array_equal(got, want)


# ----------------------------------------------------------------------------- warm start
@pytest.mark.slow
def test_init_from_copies_the_backbone_and_keeps_a_fresh_head(tiny_data, tmp_path, capsys):
    source = tmp_path / "source"
    train.train_and_evaluate(tiny_config(num_epochs=1), source, data=tiny_data)
    trained = inference.load(source).variables

    tier1 = tiny_config(num_epochs=1, grouping="tier1_seven", init_from=str(source))
    fresh_state = state_lib.create_train_state(tier1, tier1.seed, 10)
    state, fresh = train.initialize_from(fresh_state, tier1, source)
    head = [p for p in fresh if p.startswith("params/")]
    assert len(head) == 2 and all("Dense" in p for p in head), fresh  # head kernel + bias
    flat = lambda tree: jax.tree_util.tree_flatten_with_path(tree)[0]
    copied = 0
    for (path, value), (_, before) in zip(flat(state.params), flat(fresh_state.params)):
        name = "params/" + "/".join(k.key for k in path)
        if name in fresh:
            assert value.shape[-1] == 2 and np.array_equal(value, before)
        else:
            source_value = trained["params"]
            for k in path:
                source_value = source_value[k.key]
            np.testing.assert_array_equal(value, source_value)
            copied += 1
    assert copied >= 4
    np.testing.assert_array_equal(
        jax.tree_util.tree_leaves(state.batch_stats)[0],
        jax.tree_util.tree_leaves(trained["batch_stats"])[0])

    # The engine warm-starts a new run once; the rerun resumes its own checkpoint instead.
    workdir = tmp_path / "tier1"
    train.train_and_evaluate(tier1, workdir, data=tiny_data)
    assert f"initialized from {source}" in capsys.readouterr().out
    train.train_and_evaluate(tier1, workdir, data=tiny_data)
    out = capsys.readouterr().out
    assert "resuming from" in out and "initialized from" not in out


@pytest.mark.slow
def test_init_from_refuses_another_architecture_or_no_checkpoint(tiny_data, tmp_path):
    source = tmp_path / "source"
    train.train_and_evaluate(tiny_config(num_epochs=1), source, data=tiny_data)
    wider = tiny_config()
    wider.model_kwargs = {"width": 8, "stages": ((1, 1), (2, 1)), "head": (16,)}
    state = state_lib.create_train_state(wider, 0, 10)
    with pytest.raises(FerCheckpointError, match="source: init_from checkpoint has model_kwargs"):
        train.initialize_from(state, wider, source)
    with pytest.raises(FerCheckpointError, match="missing.*no checkpoint found"):
        train.initialize_from(state, wider, tmp_path / "missing")


# ----------------------------------------------------------------------------- weight EMA
def test_ema_follows_the_weights_during_warmup_then_averages_with_its_decay():
    config = tiny_config(ema_decay=0.9, ema_warmup_steps=2)
    state = state_lib.create_train_state(config, 0, 10)
    ones = jax.tree_util.tree_map(np.ones_like, state.params)
    twos = jax.tree_util.tree_map(lambda p: 2 * np.ones_like(p), state.params)
    warm = state_lib.update_ema(state.replace(step=1, params=ones), 0.9, 2)
    leaf = lambda tree: np.asarray(jax.tree_util.tree_leaves(tree["params"])[0])
    np.testing.assert_array_equal(leaf(warm.ema), 1.0)          # d = 0 before step 2
    after = state_lib.update_ema(warm.replace(step=2, params=twos), 0.9, 2)
    np.testing.assert_allclose(leaf(after.ema), 0.9 * 1.0 + 0.1 * 2.0, rtol=1e-6)
    assert state_lib.inference_variables(after) is after.ema
    assert state_lib.create_train_state(tiny_config(), 0, 10).ema is None


@pytest.mark.slow
def test_a_run_with_ema_predicts_with_the_average(tiny_data, tmp_path):
    config = tiny_config(num_epochs=1, ema_decay=0.5, ema_warmup_steps=1)
    train.train_and_evaluate(config, tmp_path, data=tiny_data)
    classifier = inference.load(tmp_path)
    with checkpoint.Checkpointer(tmp_path) as ckpt:
        saved = ckpt.restore(state_lib.state_template(config, 13)).state
    for got, want in zip(jax.tree_util.tree_leaves(classifier.variables),
                         jax.tree_util.tree_leaves(saved.ema), strict=True):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(jax.tree_util.tree_leaves(saved.ema["params"])[0],
                              jax.tree_util.tree_leaves(saved.params)[0])


# ----------------------------------------------------------------------------- ensembles
@pytest.mark.slow
def test_vmapped_members_equal_separate_runs_with_the_same_seeds(tiny_data, tmp_path):
    config = tiny_config(num_epochs=1, optimizer="sgd", learning_rate=0.05,
                         schedule="constant", parallel="jit")
    train.train_and_evaluate(tiny_config(num_epochs=1, ensemble_size=2, optimizer="sgd",
                                         learning_rate=0.05, schedule="constant"),
                             tmp_path / "ensemble", data=tiny_data)
    ensemble = inference.load(tmp_path / "ensemble")
    assert len(ensemble.ensemble) == 2
    alone = []
    for k in range(2):
        config.seed = k
        train.train_and_evaluate(config, tmp_path / f"seed{k}", data=tiny_data)
        alone.append(inference.load(tmp_path / f"seed{k}"))

    def distance(a, b) -> float:
        """Max over leaves of max|a - b| / max|b|."""
        return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))) / np.max(np.abs(y)))
                   for x, y in zip(jax.tree_util.tree_leaves(a.variables),
                                   jax.tree_util.tree_leaves(b.variables), strict=True))

    # 13 SGD steps: the vmapped and the plain programs differ by float rounding (measured
    # ~3e-3 of a leaf's scale), another seed by the whole initialisation (order 1).
    for k, member in enumerate(ensemble.ensemble):
        assert distance(member, alone[k]) < 2e-2
        assert distance(member, alone[1 - k]) > 0.2
    images = tiny_data.split("val").images
    np.testing.assert_allclose(ensemble.probabilities(images),
                               np.mean([a.probabilities(images) for a in alone], axis=0),
                               atol=1e-2)


def test_seeds_do_not_share_their_data_order(tiny_data):
    """Epoch e+1 of seed s and epoch e of seed s+1 are independent draws (they were equal
    when the order was seeded with seed + epoch)."""
    config = tiny_config(seed=0)
    prepared = train.prepare_data(config, tiny_data)
    later = train.epoch_indices(config, prepared, 1)
    config.seed = 1
    assert not np.array_equal(later, train.epoch_indices(config, prepared, 0))
    assert sorted(later) == sorted(train.epoch_indices(config, prepared, 0))  # same pool


# ----------------------------------------------------------------------------- imbalance
def test_logit_adjusted_loss_adds_tau_log_prior_to_the_logits(tiny_data):
    config = tiny_config(loss="logit_adjusted", logit_adjustment_tau=0.5)
    prepared = train.prepare_data(config, tiny_data)
    shift = np.asarray(train.logit_shift_of(config, prepared))
    counts = np.bincount(prepared.pool_labels, minlength=7)
    np.testing.assert_allclose(shift, 0.5 * np.log(counts / counts.sum()), rtol=1e-6)
    assert train.logit_shift_of(tiny_config(), prepared) is None

    config.model_kwargs.dropout = 0.0
    state = state_lib.create_train_state(config, 0, 10)
    indices = np.arange(32, dtype=np.int32)
    step = jax.jit(train.make_train_step(num_classes=7, augment_config=augment.NO_AUGMENT,
                                         label_smoothing=0.0, axis_name=None,
                                         logit_shift=tuple(shift)))
    _, metrics = step(state, {"indices": indices}, jax.random.PRNGKey(0),
                      prepared.pool_images, prepared.pool_labels)
    logits, _ = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats},
                               augment.to_float(prepared.pool_images[indices]), train=True,
                               mutable=["batch_stats"])
    labels = prepared.pool_labels[indices]
    log_probs = jax.nn.log_softmax(np.asarray(logits) + shift)
    expected = -np.mean(np.asarray(log_probs)[np.arange(32), labels])
    np.testing.assert_allclose(float(metrics["loss"]), expected, rtol=1e-5)


# ----------------------------------------------------------------------------- plateau
def test_plateau_scale_replays_reduce_on_plateau_of_the_val_loss():
    plateau = functools.partial(state_lib.plateau_scale, factor=0.5, patience=2)
    assert plateau([]) == 1.0
    assert plateau([1.0, 0.9, 0.8]) == 1.0               # improving
    assert plateau([1.0, 1.1, 1.2]) == 0.5               # two epochs without improvement
    assert plateau([1.0, 1.1, 1.2, 1.3, 1.4]) == 0.25    # and two more
    assert plateau([1.0, 1.1, 0.9, 1.0]) == 1.0          # the count restarts on improvement


@pytest.mark.slow
def test_plateau_schedule_follows_the_val_loss_of_the_run(tiny_data, tmp_path):
    # At this rate the val loss of epoch 2 does not improve on epoch 1's (measured).
    config = tiny_config(num_epochs=4, schedule="plateau", plateau_patience=1,
                         plateau_factor=0.5, learning_rate=0.5, optimizer="sgd")
    train.train_and_evaluate(config, tmp_path, data=tiny_data)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = []
    for record in records:
        if "val_loss" in record:
            losses.append(record["val_loss"])
        elif "lr" in record:   # a step record: the rate after the epochs evaluated so far
            expected = 0.5 * state_lib.plateau_scale(losses, factor=0.5, patience=1)
            assert record["lr"] == pytest.approx(expected), (record["step"], losses)
    assert [r["lr"] for r in records if "lr" in r][-1] < 0.5  # the rate was lowered
