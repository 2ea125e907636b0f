"""fer_jax.checkpoint: round-trip, retention (latest N + best), clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.training import train_state

from fer_jax.checkpoint import Checkpointer, has_checkpoint
from fer_jax.errors import FerCheckpointError


class _State(train_state.TrainState):
    batch_stats: dict

def _state(rows=3, offset=0.0):
    params = {"dense": {"kernel": jnp.full((rows, 2), offset), "bias": jnp.zeros(2)}}
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.1, momentum=0.9, nesterov=True))
    return _State.create(apply_fn=None, params=params, tx=tx, batch_stats={"mean": jnp.ones(2)})

def _tree(state, seed=0):
    return {"state": state, "rng": jax.random.PRNGKey(seed)}

def _save_steps(ckpt, accuracies):
    for step, accuracy in accuracies:
        metrics = None if accuracy is None else {"val_accuracy": accuracy}
        ckpt.save(step, _tree(_state(offset=float(step)), seed=step), meta={"epoch": step},
                  config={"model": "x"}, metrics=metrics)
    ckpt.wait()

def test_round_trip_restores_every_part(tmp_path):
    state = _state(offset=2.5)
    grads = jax.tree_util.tree_map(jnp.ones_like, state.params)
    state = state.apply_gradients(grads=grads)  # non-trivial optimizer state and step
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(7, _tree(state, seed=3), meta={"epoch": 1, "position": 4},
                  config={"model": "compact", "widths": [1, 2]}, metrics={"val_accuracy": 0.5})
    assert has_checkpoint(tmp_path)
    with Checkpointer(tmp_path) as ckpt:
        restored = ckpt.restore(_tree(_state()))
    assert restored.step == 7
    assert restored.meta == {"epoch": 1, "position": 4}
    assert restored.config == {"model": "compact", "widths": [1, 2]}
    assert restored.metrics == {"val_accuracy": 0.5}
    got = restored.state["state"]
    assert isinstance(got, _State) and int(got.step) == 1
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(restored.state["rng"], jax.random.PRNGKey(3))

def test_keeps_latest_n_and_best(tmp_path, caplog):
    with Checkpointer(tmp_path, max_to_keep=2) as ckpt:
        _save_steps(ckpt, [(1, 0.2), (2, 0.9), (3, None), (4, 0.3), (5, 0.4)])
        assert ckpt.steps() == [2, 4, 5]
        assert ckpt.latest_step() == 5 and ckpt.best_step() == 2
    # Step 3 (a mid-epoch save, no metrics) is ranked without orbax's warning.
    assert not [r for r in caplog.records if "tracked_metric" in r.getMessage()]
    with Checkpointer(tmp_path, max_to_keep=2) as ckpt:  # retention survives a restart
        _save_steps(ckpt, [(6, 0.1), (7, 0.95)])
        assert ckpt.steps() == [6, 7]
        best = ckpt.restore(_tree(_state()), best=True)
        assert best.step == 7
        np.testing.assert_array_equal(best.state["state"].params["dense"]["kernel"],
                                      np.full((3, 2), 7.0))

def test_without_a_best_metric_keeps_only_the_latest_n_and_does_not_warn(tmp_path, caplog):
    with Checkpointer(tmp_path, max_to_keep=2, best_metric=None) as ckpt:
        _save_steps(ckpt, [(1, None), (2, 0.9), (3, None), (4, None)])
        assert ckpt.steps() == [3, 4]
        assert ckpt.best_step() is None
    assert not [r for r in caplog.records if "tracked_metric" in r.getMessage()]

def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with Checkpointer(tmp_path) as ckpt, pytest.raises(FerCheckpointError, match="no checkpoint"):
        ckpt.restore(_tree(_state()))
    assert not has_checkpoint(tmp_path / "absent")

def test_incompatible_shapes_name_the_leaf(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        _save_steps(ckpt, [(1, 0.5)])
        with pytest.raises(FerCheckpointError) as error:
            ckpt.restore(_tree(_state(rows=4)))
    message = str(error.value)
    assert str(tmp_path / "checkpoints" / "1") in message
    assert "['dense']['kernel']: saved (3, 2), expected (4, 2)" in message

def test_different_tree_is_a_clear_error(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        _save_steps(ckpt, [(1, 0.5)])
        with pytest.raises(FerCheckpointError, match=r"unexpected \['rng'\]"):
            ckpt.restore({"state": _state()})

def test_truncated_files_are_a_clear_error(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        _save_steps(ckpt, [(1, 0.5)])
    step_dir = tmp_path / "checkpoints" / "1"
    data_files = [p for p in (step_dir / "state").rglob("*")
                  if p.is_file() and p.parent.name == "d"]
    assert data_files
    for path in data_files:
        path.write_bytes(path.read_bytes()[:5])
    with Checkpointer(tmp_path) as ckpt, pytest.raises(FerCheckpointError) as error:
        ckpt.restore(_tree(_state()))
    assert str(step_dir) in str(error.value)

def test_missing_metadata_is_a_clear_error(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        _save_steps(ckpt, [(1, 0.5)])
    (tmp_path / "checkpoints" / "1" / "state" / "_METADATA").unlink()
    with Checkpointer(tmp_path) as ckpt, \
            pytest.raises(FerCheckpointError, match=r"checkpoints/1: "):
        ckpt.restore(_tree(_state()))
