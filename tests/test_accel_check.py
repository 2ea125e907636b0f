"""The accelerator check: --prepare's size accounting, the plans, and the dry run end to end."""

import json
import pathlib
import subprocess
import sys

import pytest

from experiments.configs import accel, gan_accel, pipeline_accel
from fer_jax.errors import FerError
from studies import accel_check

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _git(repo: pathlib.Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def fake_repo(tmp_path):
    """A git checkout: a tracked file (1000 bytes), an untracked one (200), an ignored one
    (5000, does not travel) and the carry folder ignored; and a fake 3000-byte zip."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / ".gitignore").write_text("/.carry/\n*.npz\n")
    (repo / "tracked.py").write_bytes(b"x" * 1000)
    _git(repo, "add", "tracked.py", ".gitignore")
    (repo / "untracked.py").write_bytes(b"y" * 200)
    (repo / "ignored.npz").write_bytes(b"z" * 5000)
    data = tmp_path / "fer2013_images.zip"
    data.write_bytes(b"PK" + b"0" * 2998)
    return repo, data


def test_prepare_counts_what_travels(fake_repo):
    repo, data = fake_repo
    prepared = accel_check.prepare(repo, data, wheels=())
    gitignore = len((repo / ".gitignore").read_bytes())
    assert prepared["tree_bytes"] == 1000 + 200 + gitignore
    assert prepared["carry_bytes"] == 3000
    assert prepared["total_bytes"] == prepared["tree_bytes"] + 3000
    assert (repo / ".carry" / data.name).read_bytes() == data.read_bytes()
    assert prepared["carry"] == [".carry"]
    command = prepared["command"]
    assert len(command) <= accel_check.COMMAND_LIMIT
    assert ".carry/fer2013_images.zip" in command and "experiments.accel_check" in command
    assert "pip install" not in command  # no wheels, nothing to install
    assert prepared["timeout_s"] <= 600
    # Preparing again keeps the copy; an old file in the carry folder is removed.
    (repo / ".carry" / "old.zip").write_bytes(b"0" * 10)
    assert accel_check.prepare(repo, data, wheels=())["carry_bytes"] == 3000


def test_prepare_refuses_over_the_limit_and_a_missing_zip(fake_repo, monkeypatch):
    repo, data = fake_repo
    monkeypatch.setattr(accel_check, "DEVICE_TREE_LIMIT", 4000)
    with pytest.raises(FerError, match=r"over the device's 0\.00 MiB"):
        accel_check.prepare(repo, data, wheels=())
    with pytest.raises(FerError, match="no FER-2013 zip"):
        accel_check.prepare(repo, repo / "missing.zip", wheels=())


def test_wheel_files_match_as_pip_names_them(tmp_path):
    (tmp_path / "tensorboardx-2.6.5-py3-none-any.whl").write_bytes(b"")
    (tmp_path / "ml_collections-1.1.0-py3-none-any.whl").write_bytes(b"")
    assert accel_check._wheel_file(tmp_path, "tensorboardX==2.6.5").name.startswith("tensorb")
    assert accel_check._wheel_file(tmp_path, "ml-collections==1.1.0") is not None
    assert accel_check._wheel_file(tmp_path, "ml_collections==1.0.0") is None


def test_device_command_installs_the_wheels_first():
    command = accel_check.device_command(pathlib.PurePath(".carry/fer2013_images.zip"), True)
    assert command.index("pip install") < command.index("experiments.accel_check")
    assert f"--target {accel_check.SITE}" in command and "--no-index" in command
    assert "FER_JAX_CPU_DEFAULTS=0" in command and '--out "$OUT"' in command


@pytest.mark.parametrize("plan", list(accel_check.PLANS.values()), ids=list(accel_check.PLANS))
def test_plans_budget_every_part_and_configure_matching_models(plan):
    assert set(plan.budgets) == set(accel_check.PARTS)
    assert all(plan.reserves.get(p, 0) < plan.budgets[p] for p in accel_check.PARTS)
    configs = accel_check._with_plan(plan, {
        "classifier": accel.get_config(), "two_tier": pipeline_accel.get_config().two_tier,
        "gan": gan_accel.get_config()}, "data.zip")
    flat = configs["classifier"]
    assert flat.data.source == "data.zip" and configs["gan"].data.source == "data.zip"
    for member in ("tier1", "negative", "positive"):  # fine-tuning needs the same network
        section = configs["two_tier"][member]
        assert (section.model, section.model_kwargs) == (flat.model, flat.model_kwargs)
    assert configs["gan"].num_steps == plan.gan_steps


def test_device_plan_fits_eight_minutes_and_the_timeout():
    assert accel_check.DEVICE.total_s <= 8 * 60
    assert accel_check.DEVICE.total_s + 60 <= accel_check.DEVICE_TIMEOUT_S <= 600
    assert accel_check.DEVICE.ensemble_size >= 4


def test_part_mode_needs_its_arguments():
    done = subprocess.run([sys.executable, "-m", "experiments.accel_check", "--part", "accel"],
                          check=False, cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "error: --part needs --plan and --workdir" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_dry_run_writes_every_part(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "experiments.accel_check", "--dry-run",
                           "--out", str(out), "--workdir", str(tmp_path / "work")],
                          check=False, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted([accel_check.RESULTS, accel_check.LOG,
                            *accel_check.FIGURES.values()])
    assert len(files) <= accel_check.MAX_OUT_FILES
    results = json.loads((out / accel_check.RESULTS).read_text())
    assert results["plan"] == "dry-run" and results["data"] == "synthetic"
    assert {"git", "versions", "started", "wall_s", "planned_s"} <= results.keys()
    parts = results["parts"]
    assert list(parts) == list(accel_check.PARTS)
    for name, part in parts.items():
        assert part["status"] == "done" and part["finished"], name
        assert part["device"]["backend"] == "cpu"

    plan = accel_check.DRY_RUN
    rows = parts["benchmark"]["rows"]
    assert [(r["model"], r["batch"]) for r in rows] == [
        (m, b) for m in plan.bench_models for b in plan.bench_batches]
    assert all(r["train_images_per_s"] > 0 and r["compile_s"] > 0 for r in rows)

    def check_evaluation(evaluation):
        for tta in ("none", "shifts", "tencrop"):
            assert 0 <= evaluation[tta]["accuracy"] <= 1
        assert len(evaluation["tencrop"]["confusion"]) == 7

    accel_part = parts["accel"]
    assert accel_part["training"]["interrupted"] is None
    assert len(accel_part["epochs"]) == plan.classifier["num_epochs"]
    check_evaluation(accel_part["evaluation"])
    assert parts["ensemble"]["members"] == plan.ensemble_size
    assert parts["ensemble"]["training"]["interrupted"] is None
    check_evaluation(parts["ensemble"]["evaluation"])
    assert len(parts["ensemble"]["evaluation"]["steps"]) == plan.ensemble_size
    for mode in ("jit", "pmap"):
        check_evaluation(parts["two_tier"][mode]["evaluation"])
        assert set(parts["two_tier"][mode]["training"]) == {"tier1", "negative", "positive"}
    gan = parts["gan"]
    assert gan["training"]["steps"] == plan.gan_steps and gan["training"]["interrupted"] is None
    assert gan["grid"] == accel_check.FIGURES["gan"]
