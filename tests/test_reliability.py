"""Reliability a new user can count on: a run resumes past a damaged checkpoint."""

import jax
import numpy as np
import pytest

from fer_jax import checkpoint, inference, train
from fer_jax.data import synthetic
from tests.test_checkpoint import DAMAGE
from tests.test_train import tiny_config


@pytest.fixture(scope="module")
def small_data():
    return synthetic.generate(num_train=128, num_val=64, num_test=0, seed=0)


def _config():
    """2 epochs of 4 steps, a checkpoint every 2 steps."""
    return tiny_config(num_epochs=2, checkpoint_every_steps=2, keep_checkpoints=3)


@pytest.fixture(scope="module")
def uninterrupted(small_data, tmp_path_factory):
    """``(summary, workdir)`` of the run never damaged."""
    workdir = tmp_path_factory.mktemp("full")
    return train.train_and_evaluate(_config(), workdir, data=small_data), workdir


@pytest.mark.parametrize("damage", ["arrays", "metadata"])
def test_training_resumed_past_a_damaged_checkpoint_ends_as_an_uninterrupted_run(
        small_data, uninterrupted, tmp_path, capsys, damage):
    expected, full = uninterrupted
    workdir = tmp_path / "damaged"
    train.train_and_evaluate(_config(), workdir, data=small_data)
    DAMAGE[damage](workdir / checkpoint.CHECKPOINT_DIR / "8")
    capsys.readouterr()
    resumed = train.train_and_evaluate(_config(), workdir, data=small_data)
    out, err = capsys.readouterr()
    assert "skipped damaged checkpoint step 8 (" in err and "using step 6" in err
    assert "at step 6" in out
    for key in ("step", "val_accuracy", "val_loss", "best_step"):
        assert resumed[key] == expected[key], key
    got = inference.load(workdir).variables
    want = inference.load(full).variables
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_array_equal(a, b)
