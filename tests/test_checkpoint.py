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
    with pytest.raises(FerCheckpointError) as error:
        Checkpointer(tmp_path)
    assert str(step_dir) in str(error.value)

def test_missing_metadata_is_a_clear_error(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        _save_steps(ckpt, [(1, 0.5)])
    (tmp_path / "checkpoints" / "1" / "state" / "_METADATA").unlink()
    with pytest.raises(FerCheckpointError, match=r"checkpoints/1: state/_METADATA is missing"):
        Checkpointer(tmp_path)


# ----------------------------------------------------------------------------- damaged steps
def _random_tree(step):
    """Incompressible arrays, large enough to live in their own data file."""
    rng = np.random.default_rng(step)
    return {"w": jnp.asarray(rng.normal(size=(200, 100)), jnp.float32), "b": jnp.arange(10)}

def _save_random(tmp_path, steps, accuracies=None):
    with Checkpointer(tmp_path, max_to_keep=len(steps)) as ckpt:
        for step, accuracy in zip(steps, accuracies or [step / 10 for step in steps]):
            ckpt.save(step, _random_tree(step), meta={"epoch": step}, config={"model": "x"},
                      metrics={"val_accuracy": accuracy})

def _cut_in_half(path):
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])

def _truncate_array_file(step_dir):
    """Cuts the largest array data file in half (orbax's OCDBT ``d/`` files)."""
    data = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    _cut_in_half(max(data, key=lambda p: p.stat().st_size))

DAMAGE = {"arrays": _truncate_array_file,
          "metadata": lambda step_dir: _cut_in_half(step_dir / "state" / "_METADATA"),
          "meta json": lambda step_dir: _cut_in_half(step_dir / "meta" / "metadata"),
          "metrics": lambda step_dir: _cut_in_half(step_dir / "metrics" / "metrics")}

@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_newest_step_falls_back_to_the_newest_intact_one(tmp_path, capsys, damage):
    _save_random(tmp_path, [1, 2, 3])
    directory = tmp_path / "checkpoints"
    DAMAGE[damage](directory / "3")
    with Checkpointer(tmp_path) as ckpt:
        restored = ckpt.restore({"w": jnp.zeros((200, 100)), "b": jnp.zeros(10, jnp.int32)})
        meta, _ = ckpt.read_json()
        assert ckpt.steps() == [1, 2] and len(ckpt.skipped) == 1
    assert restored.step == 2 and meta == {"epoch": 2}
    np.testing.assert_array_equal(restored.state["w"], _random_tree(2)["w"])
    what = "arrays" if damage == "arrays" else "metadata"
    assert sorted(p.name for p in directory.iterdir()) == ["1", "2", f"3.damaged-{what}"]
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "skipped damaged checkpoint step 3 (" in lines[0]
    assert f"{directory}/3.damaged-{what}; using step 2" in lines[0]
    assert "pybind11" not in lines[0]  # TensorStore's spec dump is cut off

def test_set_aside_steps_are_kept_by_later_saves(tmp_path):
    _save_random(tmp_path, [1, 2])
    _truncate_array_file(tmp_path / "checkpoints" / "2")
    with Checkpointer(tmp_path, max_to_keep=1) as ckpt:
        assert ckpt.restore(_random_tree(0)).step == 1
        for step in (2, 3, 4):
            ckpt.save(step, _random_tree(step))
    with Checkpointer(tmp_path) as ckpt:
        assert ckpt.steps() == [1, 4] and ckpt.restore(_random_tree(0)).step == 4
    assert (tmp_path / "checkpoints" / "2.damaged-arrays").is_dir()

def test_best_restore_falls_back_to_the_next_best(tmp_path):
    _save_random(tmp_path, [1, 2, 3], [0.5, 0.9, 0.1])
    _truncate_array_file(tmp_path / "checkpoints" / "2")
    with Checkpointer(tmp_path) as ckpt:  # only the latest step's arrays are read on opening
        assert ckpt.best_step() == 2
        assert ckpt.restore(_random_tree(0), best=True).step == 1
        assert ckpt.steps() == [1, 3] and ckpt.best_step() == 1

def test_no_intact_step_is_an_error_with_a_remedy_and_moves_nothing(tmp_path):
    _save_random(tmp_path, [1, 2])
    for step in ("1", "2"):
        _truncate_array_file(tmp_path / "checkpoints" / step)
    with pytest.raises(FerCheckpointError) as error:
        Checkpointer(tmp_path)
    message = str(error.value)
    assert message.startswith("no intact checkpoint: ")
    assert f"{tmp_path}/checkpoints/2: unreadable" in message
    assert f"delete {tmp_path}/checkpoints" in message
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["1", "2"]
