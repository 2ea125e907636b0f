"""experiments.data_summary and experiments.cli: table, --json, clean errors and exit codes."""

import json
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from experiments import cli, data_summary
from fer_jax.classes import EMOTIONS
from fer_jax.data import synthetic
from fer_jax.errors import FerDataError

REPO = pathlib.Path(__file__).resolve().parents[1]
ROW = " ".join(["9"] * 2304)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "experiments.data_summary", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def csv_path(tmp_path):
    """3 train angry, 1 val happy, 2 test neutral, and one bad row (line 5)."""
    path = tmp_path / "fer2013.csv"
    rows = ["emotion,pixels,Usage"] + [f"0,{ROW},Training"] * 3 + [f"3,{ROW} 1,PublicTest"] + \
        [f"3,{ROW},PublicTest"] + [f"6,{ROW},PrivateTest"] * 2
    path.write_text("\n".join(rows) + "\n")
    return path


def test_json_is_the_only_stdout(csv_path):
    result = run_cli("--data", str(csv_path), "--json", "--no-cache", "--skip-bad")
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout)  # fails on anything but exactly one JSON document
    zero = dict.fromkeys(EMOTIONS, 0)
    assert counts == {"train": {**zero, "angry": 3}, "val": {**zero, "happy": 1},
                      "test": {**zero, "neutral": 2}}
    assert "skipped records: 1" in result.stderr and "[line 5]" in result.stderr


def test_bad_data_exits_2_with_message_and_no_traceback(csv_path, tmp_path):
    result = run_cli("--data", str(csv_path), "--no-cache")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: {csv_path} [line 5]: expected 2304 pixel values")
    assert "Traceback" not in result.stderr
    missing = run_cli("--data", str(tmp_path / "absent.zip"))
    assert missing.returncode == 2
    assert missing.stderr == f"error: {tmp_path / 'absent.zip'}: no such file or directory\n"


def test_table_counts_totals_and_skipped(csv_path, capsys):
    assert data_summary.main(["--data", str(csv_path), "--no-cache", "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert "SYNTHETIC" not in out
    assert f"source: {csv_path}" in out
    assert out.count("angry") == 1 and "angry            3       0       0       3" in out
    assert "total            3       1       2       6" in out
    assert "exact copies within train: 3 images in 1 groups (0 groups with differing labels)\n" \
        "val images that are exact copies of train images: 1 of 1 (1 labelled differently): " \
        "happy 1/1\n" in out  # every valid row holds the same pixels
    assert "skipped records: 1" in out
    assert f"  {csv_path} [line 5]: expected 2304 pixel values, got 2305" in out


def test_table_says_when_data_is_synthetic(monkeypatch, capsys, tiny_data):
    monkeypatch.setattr(synthetic, "generate", lambda **kwargs: tiny_data)
    assert data_summary.main(["--no-cache"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("SYNTHETIC DEFAULT DATA: procedural faces, NOT FER-2013")
    assert "total          420     140     140     700" in out


def test_run_main_exit_codes(capsys):
    def bad():
        raise FerDataError("broken row", path="x.csv", record="line 9")

    def interrupted():
        raise KeyboardInterrupt

    for main_fn, code, message in ((bad, 2, "error: x.csv [line 9]: broken row\n"),
                                   (interrupted, 130, "interrupted\n"),
                                   (lambda: None, 0, ""), (lambda: 3, 3, "")):
        with pytest.raises(SystemExit) as raised:
            cli.run_main(main_fn)
        assert raised.value.code == code
        assert capsys.readouterr().err == message
    with pytest.raises(ValueError):  # anything else is a bug: it keeps its traceback
        cli.run_main(lambda: np.zeros(2).reshape(3))


def test_kaggle_zip_without_private_test_says_so(tmp_path, capsys):
    from PIL import Image

    for member in ("train/happy/Training_1.png", "test/sad/PublicTest_2.png"):
        (tmp_path / "fer" / member).parent.mkdir(parents=True)
        Image.new("L", (48, 48), 9).save(tmp_path / "fer" / member)
    source = shutil.make_archive(str(tmp_path / "fer2013_images"), "zip", tmp_path / "fer")
    assert data_summary.main(["--data", source, "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert "total            1       1       0       2" in out
    assert ("note: test = 0: this source holds no PrivateTest records, so it has no test split"
            in out)
    assert data_summary.main(["--data", source, "--no-cache", "--json"]) == 0
    assert "holds no PrivateTest records" in capsys.readouterr().err
