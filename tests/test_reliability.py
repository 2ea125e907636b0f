"""Reliability a new user can count on: a run resumes past a damaged checkpoint; unwritable
outputs and bad records fail up front with one line (or are skipped with --skip-bad)."""

import os
import pathlib
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from fer_jax import checkpoint, inference, train
from fer_jax.data import synthetic
from tests.test_checkpoint import DAMAGE
from tests.test_train import tiny_config

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = {"train_classifier": ["--config", "experiments/configs/smoke.py"],
           "train_gan": ["--config", "experiments/configs/gan_smoke.py"]}


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


# ----------------------------------------------------------------------------- entry points
def run_command(module, *args, unprivileged=False):
    """``python -m experiments.<module> ARGS``; ``unprivileged``: as root without
    CAP_DAC_OVERRIDE (root ignores permission bits), via setpriv."""
    command = [sys.executable, "-m", f"experiments.{module}", *CONFIGS.get(module, []),
               *map(str, args)]
    if unprivileged and os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root and setpriv is not available to drop CAP_DAC_OVERRIDE")
        command = [setpriv, "--bounding-set=-dac_override,-dac_read_search", *command]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300,
                          check=False)


def assert_one_error_line(result, message):
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"error: {message}"]


@pytest.mark.parametrize("module", ["train_classifier", "train_gan", "pipeline", "ablation"])
def test_workdir_that_is_a_file_fails_up_front(tmp_path, module):
    workdir = tmp_path / "file"
    workdir.write_text("not a directory")
    result = run_command(module, "--workdir", workdir)
    assert_one_error_line(result, f"--workdir {workdir}: exists and is not a directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.fixture
def read_only(tmp_path):
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    yield folder
    folder.chmod(0o755)


@pytest.mark.parametrize("module,args", [
    ("train_classifier", ["--workdir", "{ro}"]),
    ("train_classifier", ["--workdir", "{ro}/run"]),
    ("pipeline", ["--workdir", "{ro}/run"]),
    ("evaluate", ["--workdir", "{ro}/trained", "--json", "{ro}/report.json"]),
    ("calibrate", ["--workdir", "{ro}"]),
    ("synthesize", ["--workdir", "{ro}", "--per-class", "happy=1", "--out", "{ro}/x.npz"]),
])
def test_read_only_outputs_fail_up_front_and_create_nothing(read_only, module, args):
    result = run_command(module, *(a.format(ro=read_only) for a in args), unprivileged=True)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --")
    assert lines[0].endswith("is not writable (permission denied)")
    assert list(read_only.iterdir()) == []


def _csv_with_bad_records(tiny_csv, tmp_path):
    path = tmp_path / "fer2013.csv"
    lines = tiny_csv.read_text().splitlines()
    lines[3] = "0,1 2 3,Training"          # line 4: too few pixels
    lines[5] = "9," + lines[5].split(",", 1)[1]  # line 6: unknown emotion
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
def test_train_classifier_skip_bad_trains_and_strict_names_file_and_line(tiny_csv, tmp_path):
    data = _csv_with_bad_records(tiny_csv, tmp_path)
    options = ["--data", data, "--config.num_epochs=1", "--config.progress=False",
               "--config.model_kwargs.width=4", "--config.model_kwargs.dense=16"]
    strict = run_command("train_classifier", "--workdir", tmp_path / "strict", *options)
    assert_one_error_line(strict, f"{data} [line 4]: expected 2304 pixel values, got 3")
    skipped = run_command("train_classifier", "--workdir", tmp_path / "run", "--skip-bad",
                          *options)
    assert skipped.returncode == 0, skipped.stderr[-3000:]
    assert (tmp_path / "run" / "report.json").is_file()
