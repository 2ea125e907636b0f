"""fer_jax.provenance: the reproducibility block, data checksums, the test-once ledger."""

import hashlib
import json
import os
import subprocess

import pytest

from fer_jax import provenance, run_guard


def test_block_has_every_field(tiny_data):
    config = {"model": "vgg13", "seed": 3}
    block = provenance.reproducibility(data=provenance.data_block(None, tiny_data),
                                       config=config, seeds=[3], wall_seconds=1.5)
    assert set(block) == {"commit", "dirty", "versions", "device", "data", "config_hash",
                          "seeds", "wall_seconds", "date"}
    assert set(block["versions"]) == set(provenance.PACKAGES) and block["versions"]["jax"]
    assert block["device"]["backend"] == "cpu" and block["device"]["kind"]
    assert block["config_hash"] == run_guard.config_hash(config)
    assert block["seeds"] == [3] and block["wall_seconds"] == 1.5
    assert block["data"]["synthetic"] and len(block["data"]["sha256"]) == 64
    json.dumps(block)


def test_git_state_in_and_outside_a_checkout(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "a.txt").write_text("1")
    subprocess.run([*git, "add", "a.txt"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "a"], check=True)
    monkeypatch.setattr(provenance, "REPO_ROOT", repo)
    clean = provenance.git_state()
    assert len(clean["commit"]) == 40 and clean["dirty"] is False
    (repo / "untracked.txt").write_text("x")
    assert provenance.git_state()["dirty"] is False
    (repo / "a.txt").write_text("2")
    assert provenance.git_state() == {"commit": clean["commit"], "dirty": True}
    monkeypatch.setattr(provenance, "REPO_ROOT", tmp_path / "not_a_repo")
    assert provenance.git_state() == {"commit": None, "dirty": None}


def test_data_sha256_of_a_file_and_a_folder(tmp_path, monkeypatch):
    file = tmp_path / "data.csv"
    file.write_bytes(b"emotion,pixels\n")
    assert provenance.data_sha256(file) == hashlib.sha256(b"emotion,pixels\n").hexdigest()
    folder = tmp_path / "images"
    (folder / "b").mkdir(parents=True)
    (folder / "b" / "x.png").write_bytes(b"x")
    (folder / "a.png").write_bytes(b"a")
    first = provenance.data_sha256(folder)
    # cached by (path, size, mtime): no file is read again
    monkeypatch.setattr(provenance, "_file_sha256", lambda path: pytest.fail("re-hashed"))
    assert provenance.data_sha256(folder) == first
    monkeypatch.undo()
    (folder / "a.png").write_bytes(b"A")
    assert provenance.data_sha256(folder) != first


def test_arrays_sha256_follows_the_data(tiny_data):
    from fer_jax.data import synthetic

    again = synthetic.generate(num_train=420, num_val=140, num_test=140, seed=0)
    other = synthetic.generate(num_train=420, num_val=140, num_test=140, seed=1)
    assert provenance.arrays_sha256(again) == provenance.arrays_sha256(tiny_data)
    assert provenance.arrays_sha256(other) != provenance.arrays_sha256(tiny_data)


def _record(step, sha="d" * 64, accuracy=0.5):
    return {"date": "2025-01-01T00:00:00+00:00", "commit": "c" * 40, "dirty": False,
            "data": {"source": "x", "sha256": sha}, "config_hash": "h", "versions": {},
            "device": {"kind": "cpu"}, "checkpoint_step": step,
            "metrics": {"accuracy": accuracy}}


def test_ledger_appends_and_warns_on_a_second_test_of_one_checkpoint(tmp_path, capsys):
    assert provenance.append_test_record(tmp_path, _record({"flat": 10})) is None
    assert provenance.append_test_record(tmp_path, _record({"flat": 20})) is None
    assert provenance.append_test_record(tmp_path, _record({"flat": 10}, sha="e" * 64)) is None
    assert capsys.readouterr().err == ""
    warning = provenance.append_test_record(tmp_path, _record({"flat": 10}, accuracy=0.6))
    assert warning.startswith("warning: ") and "already evaluated" in warning
    assert capsys.readouterr().err == warning + "\n"
    records = provenance.read_ledger(tmp_path)
    assert len(records) == 4 and records[-1]["metrics"]["accuracy"] == 0.6
    assert (tmp_path / provenance.LEDGER).read_text().count("\n") == 4
    with pytest.raises(ValueError, match="metrics"):
        provenance.append_test_record(tmp_path, {k: v for k, v in _record(1).items()
                                                 if k != "metrics"})
    assert provenance.read_ledger(tmp_path / "elsewhere") == []
    assert os.listdir(tmp_path) == [provenance.LEDGER]
