"""experiments.compare on two tiny trained runs: JSON fields, a model against itself, the test
ledger, clear errors; and the statistics, reproducibility block and ledger of
experiments.evaluate (same trained run)."""

import dataclasses
import json
import shutil

import pytest

from experiments import compare, evaluate
from experiments.cli import run_main
from fer_jax import comparison, inference, provenance, stats, train
from fer_jax.classes import SIX
from fer_jax.errors import FerError
from tests.test_train import tiny_config


def _train(tiny_data, tmp_path_factory, seed):
    workdir = tmp_path_factory.mktemp("compare") / f"seed{seed}"
    train.train_and_evaluate(tiny_config(num_epochs=1, seed=seed), workdir, data=tiny_data)
    return workdir


@pytest.fixture(scope="module")
def run(tiny_data, tmp_path_factory):
    """Workdir of a tiny classifier (seed 0), one epoch."""
    return _train(tiny_data, tmp_path_factory, seed=0)


@pytest.fixture(scope="module")
def runs(run, tiny_data, tmp_path_factory):
    """``run`` and a second tiny classifier (seed 1)."""
    return run, _train(tiny_data, tmp_path_factory, seed=1)


@pytest.fixture(autouse=True)
def data_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_JAX_CACHE", str(tmp_path / "cache"))


def _compare(a, b, csv, out, *extra):
    assert compare.main(["--a", str(a), "--b", str(b), "--data", str(csv), "--resamples", "200",
                         "--json", str(out), *extra]) == 0
    return json.loads(out.read_text())


def test_a_model_against_itself_differs_by_nothing(run, tiny_csv, tmp_path):
    result = _compare(run, run, tiny_csv, tmp_path / "c.json")
    for name in ("accuracy", "macro_f1", "ap"):
        assert result[name]["ci"] == [0.0, 0.0] and result[name]["difference"] == 0.0
        assert result[name]["verdict"] == stats.NO_DIFFERENCE
    assert result["accuracy"]["mcnemar_p"] == 1.0


def test_test_split_goes_to_both_ledgers_and_a_second_time_warns(run, tiny_csv, tmp_path,
                                                                capsys):
    runs = shutil.copytree(run, tmp_path / "a"), shutil.copytree(run, tmp_path / "b")
    result = _compare(*runs, tiny_csv, tmp_path / "c.json", "--split", "test")
    assert "warning:" not in capsys.readouterr().err
    for key, workdir in zip("ab", runs):
        [record] = provenance.read_ledger(workdir)
        assert record["checkpoint_step"] == result[key]["steps"]
        assert record["metrics"]["accuracy"] == result[key]["accuracy"]
        assert record["data"]["sha256"] == provenance.data_sha256(tiny_csv)
        assert set(provenance.LEDGER_KEYS) <= set(record)
    _compare(*runs, tiny_csv, tmp_path / "c.json", "--split", "test")
    assert capsys.readouterr().err.count("warning: ") == 2


def test_evaluate_json_has_statistics_reproducibility_and_a_ledger(run, tiny_csv, tmp_path,
                                                                    capsys):
    run = shutil.copytree(run, tmp_path / "run")  # a ledger of its own
    out = tmp_path / "report.json"
    args = ["--workdir", str(run), "--data", str(tiny_csv), "--split", "test", "--json", str(out)]
    assert evaluate.main(args) == 0
    report = json.loads(out.read_text())
    for name in ("accuracy", "macro_f1"):
        lo, hi = report["ci"][name]
        assert 0 <= lo <= hi <= 1
    assert set(report["per_class"]["disgust"]) >= {"precision", "recall", "ap", "auroc"}
    block = report["reproducibility"]
    assert block["data"]["sha256"] == provenance.data_sha256(tiny_csv) and block["seeds"] == [0]
    [record] = provenance.read_ledger(run)
    assert record["checkpoint_step"] == report["steps"]
    assert record["metrics"]["ci"] == report["ci"]
    assert "warning:" not in capsys.readouterr().err
    assert evaluate.main(args) == 0
    assert "warning: " in capsys.readouterr().err and len(provenance.read_ledger(run)) == 2
    (run / provenance.LEDGER).unlink()
    assert evaluate.main([*args[:4], "--split", "val"]) == 0
    assert not (run / provenance.LEDGER).exists()


def test_different_groupings_are_refused(run, tiny_data):
    a = inference.load(run)
    with pytest.raises(FerError, match="different groupings"):
        comparison.compare(a, dataclasses.replace(a, grouping=SIX), tiny_data, "val",
                           data_path=None, workdirs=(run, run))


def test_missing_run_directory_is_a_clean_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: compare.main(["--a", str(tmp_path / "none"), "--b", str(tmp_path)]))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'none'}: no such run")


@pytest.mark.slow
def test_comparison_json_and_table(runs, tiny_csv, tiny_data, tmp_path, capsys):
    result = _compare(*runs, tiny_csv, tmp_path / "c.json")
    assert result["split"] == "val" and result["n"] == len(tiny_data.split("val"))
    assert result["grouping"] == "seven" and result["resamples"] == 200
    for key, workdir in zip("ab", runs):
        assert result[key]["workdir"] == str(workdir) and set(result[key]["steps"]) == {"flat"}
    for name in ("accuracy", "macro_f1", "ap"):
        row = result[name]
        assert row["ci"][0] <= row["ci"][1]
        assert row["difference"] == pytest.approx(row["a"] - row["b"])
        assert row["verdict"] == stats.verdict(row["ci"])
    assert result["a"]["accuracy"] == result["accuracy"]["a"]
    assert result["ap"]["class"] == "disgust" and 0 <= result["accuracy"]["mcnemar_p"] <= 1
    block = result["reproducibility"]
    assert block["data"]["sha256"] == provenance.data_sha256(tiny_csv)
    assert block["seeds"] == [0, 1] and block["config_hash"]
    table = capsys.readouterr().out
    assert "McNemar p" in table and result["accuracy"]["verdict"] in table
    assert not (runs[0] / provenance.LEDGER).exists(), "val is not recorded in the test ledger"
