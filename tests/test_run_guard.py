"""fer_jax.run_guard: fingerprints record, pass unchanged, refuse changed sections by key."""

import ml_collections
import pytest

from fer_jax import run_guard
from fer_jax.errors import FerError


def section(**overrides):
    config = ml_collections.ConfigDict({"lr": 0.1, "data": {"source": None, "split_seed": 0}})
    config.update(overrides)
    return config


def test_hash_is_stable_across_key_order_and_types():
    assert run_guard.config_hash({"a": 1, "b": [1, 2]}) == run_guard.config_hash({"b": (1, 2),
                                                                                  "a": 1})
    assert run_guard.config_hash(section()) != run_guard.config_hash(section(lr=0.2))


def test_changed_keys_are_dotted_paths():
    assert run_guard.changed_keys({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}, "d": 0}) == [
        "a.c", "d"]
    assert run_guard.changed_keys(1, 1) == []


def test_check_records_then_passes_then_refuses_naming_the_key(tmp_path):
    run_guard.check(tmp_path, section())
    assert run_guard.recorded(tmp_path)["config"]["lr"] == 0.1
    run_guard.check(tmp_path, section())
    changed = section()
    changed.data.source = "other.zip"
    assert run_guard.differences(tmp_path, changed) == ["data.source"]
    with pytest.raises(FerError, match=r"changed: data\.source\)"):
        run_guard.check(tmp_path, changed)


def test_a_new_key_left_unset_is_no_change(tmp_path):
    run_guard.check(tmp_path, section())
    run_guard.check(tmp_path, section(new_option=None))
    assert run_guard.differences(tmp_path, section(new_option=1)) == ["new_option"]


def test_a_key_added_later_matches_old_records_only_at_its_legacy_value(tmp_path):
    run_guard.check(tmp_path, section())   # recorded before data.synthetic_balance existed
    legacy = section()
    legacy.data.synthetic_balance = run_guard.ADDED_KEYS["synthetic_balance"]
    run_guard.check(tmp_path, legacy)
    legacy.data.synthetic_balance = "equal"
    assert run_guard.differences(tmp_path, legacy) == ["data.synthetic_balance"]


def test_kernel_choice_is_not_part_of_a_runs_identity(tmp_path):
    run_guard.check(tmp_path, section(layer_impl="fast", cgan={"conv_impl": "xla", "lr": 1}))
    switched = section(layer_impl="onednn", cgan={"conv_impl": "onednn", "lr": 1})
    run_guard.check(tmp_path, switched)   # resumes: same variables, same results within rounding
    assert run_guard.config_hash(switched) == run_guard.config_hash(
        section(cgan={"lr": 1}))
    switched.cgan.lr = 2
    assert run_guard.differences(tmp_path, switched) == ["cgan.lr"]
    assert run_guard.recorded(tmp_path)["config"]["layer_impl"] == "fast"  # still recorded


def test_ignored_keys_may_change_even_where_the_record_has_them(tmp_path):
    run_guard.check(tmp_path, section(num_steps=10))   # recorded before num_steps was ignored
    run_guard.check(tmp_path, section(num_steps=20), ignore=("num_steps",))
    with pytest.raises(FerError, match=r"changed: num_steps\)"):
        run_guard.check(tmp_path, section(num_steps=20))
    fresh = tmp_path / "fresh"
    run_guard.check(fresh, section(num_steps=10), ignore=("num_steps",))
    assert "num_steps" not in run_guard.recorded(fresh)["config"]
    assert run_guard.differences(fresh, section(lr=0.2), ignore=("num_steps",)) == ["lr"]
