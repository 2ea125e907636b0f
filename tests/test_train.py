"""fer_jax.train + fer_jax.parallel: jit/pmap parity, learning, exact resume after SIGKILL,
checkpoint on SIGTERM, per-process batch sharding."""

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
from fer_jax import checkpoint, inference, parallel, train
from fer_jax import state as state_lib
from fer_jax.classes import SEVEN
from fer_jax.data import augment
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
def _run_steps(mode, devices, config, images, labels, batches):
    placement = parallel.make_placement(mode, devices)
    bn_axis = parallel.AXIS if mode == "pmap" else None
    state = state_lib.create_train_state(config, 0, 10, bn_axis_name=bn_axis)
    step = parallel.compile_step(
        train.make_train_step(num_classes=7, augment_config=augment.NO_AUGMENT), placement,
        num_consts=2)
    state = placement.replicate(state)
    consts = placement.replicate(images), placement.replicate(labels)
    for i, indices in enumerate(batches):
        state, metrics = step(state, placement.shard_batch({"indices": indices}),
                              jax.random.PRNGKey(i), *consts)
    return jax.device_get(placement.unreplicate(state)), jax.device_get(metrics)


def test_two_device_steps_equal_full_batch_steps(tiny_data):
    assert jax.device_count() == 2, "conftest forces two host devices"
    config = tiny_config(optimizer="sgd", learning_rate=0.1, schedule="constant",
                         weight_decay=1e-3)
    config.model_kwargs.dropout = 0.0  # dropout masks depend on how the batch is split
    split = tiny_data.split("train")
    images, labels = split.images[:128], SEVEN.encode(split.labels[:128])
    # One step: later steps amplify float rounding through max-pool ties (argmax flips).
    batches = [np.arange(10, 74, dtype=np.int32)]
    reference = _run_steps("jit", jax.devices()[:1], config, images, labels, batches)
    for mode in ("jit", "pmap"):
        state, metrics = _run_steps(mode, jax.devices(), config, images, labels, batches)
        np.testing.assert_allclose(metrics["loss"], reference[1]["loss"], rtol=1e-6)
        np.testing.assert_allclose(metrics["accuracy"], reference[1]["accuracy"])
        for name in ("params", "batch_stats", "opt_state"):
            for got, want in zip(jax.tree_util.tree_leaves(getattr(state, name)),
                                 jax.tree_util.tree_leaves(getattr(reference[0], name))):
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6, err_msg=mode)
        assert int(state.step) == 1


def test_reduce_mean_is_identity_under_jit_and_pmean_under_pmap():
    x = np.arange(4, dtype=np.float32).reshape(2, 2)
    np.testing.assert_array_equal(jax.jit(parallel.reduce_mean)(x), x)
    out = jax.pmap(parallel.reduce_mean, axis_name=parallel.AXIS)(x)
    np.testing.assert_array_equal(out, [[1.0, 2.0], [1.0, 2.0]])


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


def test_sigterm_saves_a_checkpoint_and_the_rerun_finishes(tiny_data, tmp_path, monkeypatch):
    config = tiny_config()
    steps_per_epoch = len(tiny_data.split("train")) // config.batch_size
    original_rng = train._rng_for_step

    def rng_then_signal(seed, step):
        if step == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return original_rng(seed, step)

    handler = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(train, "_rng_for_step", rng_then_signal)
    summary = train.train_and_evaluate(config, tmp_path, data=tiny_data)
    assert summary["interrupted"] == signal.SIGTERM and summary["step"] == 6
    assert signal.getsignal(signal.SIGTERM) is handler
    with checkpoint.Checkpointer(tmp_path) as ckpt:
        assert ckpt.latest_step() == 6
        meta, saved_config = ckpt.read_json()
    assert meta["epoch"] == 0 and meta["position"] == 6
    assert saved_config["model"] == "vgg13"

    monkeypatch.setattr(train, "_rng_for_step", original_rng)
    summary = train.train_and_evaluate(config, tmp_path, data=tiny_data)
    assert summary["interrupted"] is None
    assert summary["step"] == config.num_epochs * steps_per_epoch


# A training run in a subprocess; with a kill step it SIGKILLs itself when asked to save that
# step (after the previous checkpoint was written, with un-checkpointed steps done since).
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


def test_resume_after_sigkill_mid_epoch_is_exact(tmp_path):
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(tmp_path / "xla_cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    full, killed = tmp_path / "full", tmp_path / "killed"
    # The uninterrupted and the doomed run side by side (separate data caches: no race).
    full_run = _start(full, 0, dict(env, FER_JAX_CACHE=str(tmp_path / "cache_full")))
    env["FER_JAX_CACHE"] = str(tmp_path / "cache_killed")
    doomed = _start(killed, 12, env)
    doomed.communicate(timeout=300)
    assert doomed.returncode == -signal.SIGKILL
    with checkpoint.Checkpointer(killed) as ckpt:
        assert ckpt.latest_step() in (8, 9)  # 9 = epoch 2, position 1 (unless still writing)
    resumed = _summary(_start(killed, 0, env))
    expected = _summary(full_run)

    for key in ("step", "val_accuracy", "val_loss", "val_macro_f1", "best_step"):
        assert resumed[key] == expected[key], key
    assert _epoch_records(killed) == _epoch_records(full)
    _, resumed_vars, _ = inference.load_trained(killed, best=False)
    _, expected_vars, _ = inference.load_trained(full, best=False)
    for got, want in zip(jax.tree_util.tree_leaves(resumed_vars),
                         jax.tree_util.tree_leaves(expected_vars)):
        np.testing.assert_array_equal(got, want)


# ----------------------------------------------------------------------------- warm start
def test_init_from_copies_the_backbone_and_keeps_a_fresh_head(tiny_data, tmp_path, capsys):
    source = tmp_path / "source"
    train.train_and_evaluate(tiny_config(num_epochs=1), source, data=tiny_data)
    _, trained, _ = inference.load_trained(source, best=False)

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
    tier1.num_epochs = 2
    train.train_and_evaluate(tier1, workdir, data=tiny_data)
    out = capsys.readouterr().out
    assert "resuming from" in out and "initialized from" not in out


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
