"""experiments.evaluate on a tiny trained run: report JSON, groupings, TTA, CLI errors."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from experiments import evaluate
from fer_jax import inference, train
from fer_jax.classes import EMOTIONS, SIX
from fer_jax.data import Split
from tests.conftest import write_fer2013_csv
from tests.test_train import tiny_config

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tiny_data, tiny_csv, tmp_path_factory):
    """(workdir, csv path of the same data): one epoch of a tiny classifier."""
    root = tmp_path_factory.mktemp("evaluate")
    train.train_and_evaluate(tiny_config(num_epochs=1), root / "run", data=tiny_data)
    return root / "run", tiny_csv


def _run(args, tmp_path):
    out = tmp_path / "report.json"
    assert evaluate.main([*args, "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_report_json_matches_its_confusion(trained, tmp_path, tiny_data, monkeypatch):
    workdir, csv = trained
    monkeypatch.setenv("FER_JAX_CACHE", str(tmp_path / "cache"))
    report = _run(["--workdir", str(workdir), "--data", str(csv), "--split", "test"], tmp_path)
    assert {"accuracy", "macro_f1", "per_class", "confusion", "n", "classes"} <= set(report)
    confusion = np.array(report["confusion"])
    assert report["classes"] == list(EMOTIONS) and confusion.shape == (7, 7)
    assert report["n"] == confusion.sum() == len(tiny_data.split("test"))
    assert report["accuracy"] == pytest.approx(np.trace(confusion) / confusion.sum())
    for i, name in enumerate(EMOTIONS):
        row = report["per_class"][name]
        assert set(row) >= {"precision", "recall"}
        if confusion[i].sum():
            assert row["recall"] == pytest.approx(confusion[i, i] / confusion[i].sum())
    assert not report["synthetic"] and report["split"] == "test"


def test_grouping_and_tta_options(trained, tmp_path, tiny_data, monkeypatch):
    workdir, csv = trained
    monkeypatch.setenv("FER_JAX_CACHE", str(tmp_path / "cache"))
    report = _run(["--workdir", str(workdir), "--data", str(csv), "--split", "val",
                   "--grouping", "six", "--tta"], tmp_path)
    assert report["classes"] == list(SIX.class_names) and report["tta"]
    assert report["n"] == int(SIX.covers(tiny_data.split("val").labels).sum())


def test_evaluate_scores_the_final_checkpoint_and_names_its_step(trained, tmp_path,
                                                                   monkeypatch):
    workdir, csv = trained
    monkeypatch.setenv("FER_JAX_CACHE", str(tmp_path / "cache"))
    report = _run(["--workdir", str(workdir), "--data", str(csv)], tmp_path)
    final = inference.load(workdir).step
    assert report["checkpoint"] == "latest" and report["steps"] == {"flat": final}
    assert f"step {final}" in report["model"]


def test_val_copies_of_training_faces_are_also_scored_left_out(trained, tmp_path, tiny_data,
                                                                monkeypatch, capsys):
    workdir, _ = trained
    monkeypatch.setenv("FER_JAX_CACHE", str(tmp_path / "cache"))
    train_split, val = tiny_data.split("train"), tiny_data.split("val")
    copied = train_split.take(np.arange(5))
    with_copies = Split(np.concatenate([val.images, copied.images]),
                        np.concatenate([val.labels, copied.labels]))
    csv = write_fer2013_csv(tmp_path / "fer2013.csv", {"train": train_split, "val": with_copies})
    report = _run(["--workdir", str(workdir), "--data", str(csv), "--split", "val"], tmp_path)
    assert report["n"] == len(val) + 5
    plain = write_fer2013_csv(tmp_path / "plain.csv", {"train": train_split, "val": val})
    only_val = _run(["--workdir", str(workdir), "--data", str(plain), "--split", "val"],
                    tmp_path)
    assert only_val["without_train_copies"]["left_out"] == 0  # the synthetic val repeats none
    assert report["without_train_copies"] == {
        "left_out": 5, "accuracy": only_val["accuracy"], "macro_f1": only_val["macro_f1"],
        "recall": {name: row["recall"] for name, row in only_val["per_class"].items()}}
    assert (f"without the 5 val images that are exact copies of training images: accuracy "
            f"{100 * only_val['accuracy']:.1f}%") in capsys.readouterr().out


def test_evaluate_help_shows_every_default(capsys):
    with pytest.raises(SystemExit):
        evaluate.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for default in ("(default: test)", "(default: latest)", "(default: None)"):
        assert default in text


def test_classifier_gives_probabilities_and_features(trained, tiny_data):
    classifier = inference.load(trained[0])
    images = tiny_data.split("val").images[:5]
    probs = classifier.probabilities(images, tta=True)
    assert probs.shape == (5, 7) and classifier.class_names == EMOTIONS
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    features = classifier.features(images)
    assert features.shape[0] == 5 and features.ndim == 2 and np.isfinite(features).all()


def test_missing_workdir_exits_2_with_a_message(tmp_path):
    missing = tmp_path / "nothing_here"
    done = subprocess.run([sys.executable, "-m", "experiments.evaluate", "--workdir",
                           str(missing)], check=False, cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and str(missing) in done.stderr
    assert "Traceback" not in done.stderr
