"""Config files and --config.KEY=VALUE overrides of the experiment entry points."""

import shutil
import sys
from unittest import mock

import pytest

from experiments.cli import (
    check_output_file,
    check_workdir,
    default_workdir,
    experiment_parser,
    parse_config,
    parse_with_config,
)
from fer_jax.errors import FerError

SMOKE = "experiments/configs/smoke.py"


def test_overrides_come_from_the_given_arguments_not_from_sys_argv():
    with mock.patch.object(sys, "argv", ["pytest", "-q"]):
        config, path = parse_config(["--config", SMOKE, "--config.num_epochs=3",
                                     "--config.data.oversample=True",
                                     "--config.model_kwargs.multipliers=(1, 2, 3)"])
    assert path == SMOKE
    assert config.num_epochs == 3 and config.data.oversample is True
    assert tuple(config.model_kwargs.multipliers) == (1, 2, 3)
    assert parse_config(["--config", SMOKE])[0].num_epochs == 10   # the file's own value


def test_bad_config_arguments_are_clear_errors():
    with pytest.raises(FerError, match=r"^unknown config key 'no_such_key'; "
                                       r"experiments/configs/smoke.py has augment, batch_size"):
        parse_config(["--config", SMOKE, "--config.no_such_key=1"])
    with pytest.raises(FerError, match=r"^unknown config key 'num_epoch'; did you mean "
                                       r"'num_epochs' or 'warmup_epochs'\?$"):
        parse_config(["--config", SMOKE, "--config.num_epoch=1"])
    with pytest.raises(FerError, match=r"^unknown config key 'data.strictt'; did you mean "
                                       r"'data.strict'\?$"):
        parse_config(["--config", SMOKE, "--config.data.strictt=False"])
    with pytest.raises(FerError, match=r"^config key 'model' is a str, not a section"):
        parse_config(["--config", SMOKE, "--config.model.width=1"])
    with pytest.raises(FerError, match="--config PATH is required"):
        parse_config([])
    with pytest.raises(FerError, match="--config experiments/configs/missing.py: .*load"):
        parse_config(["--config", "experiments/configs/missing.py"])


def test_default_workdir_is_named_after_the_config_file():
    assert str(default_workdir(None, SMOKE)) == "checkpoints/smoke"
    assert str(default_workdir("runs/a", SMOKE)) == "runs/a"


def test_skip_bad_sets_data_strict_false():
    parser = experiment_parser("prog", "test", example="--config.num_epochs=1")
    _, config, _ = parse_with_config(parser, ["--config", SMOKE])
    assert config.data.strict is True and config.data.resize is False
    _, config, _ = parse_with_config(parser, ["--config", SMOKE, "--skip-bad"])
    assert config.data.strict is False


def test_output_checks_create_nothing_and_name_the_flag(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    assert check_workdir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert check_output_file(tmp_path / "c" / "out.json", "--json") == tmp_path / "c" / "out.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
    with pytest.raises(FerError, match=r"^--workdir .*/file: exists and is not a directory$"):
        check_workdir(tmp_path / "file")
    with pytest.raises(FerError, match=r"^--workdir .*/file/run: .*/file is not a directory$"):
        check_workdir(tmp_path / "file" / "run")
    with pytest.raises(FerError, match=r"^--json .*: is a directory$"):
        check_output_file(tmp_path, "--json")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1, 1, 2**20))
    with pytest.raises(FerError, match=r"^--workdir .*/run: no space left on .* \(1 MiB free, "
                                       r"need 16\)$"):
        check_workdir(tmp_path / "run")


def test_benchmark_help_describes_every_option(capsys):
    from experiments import benchmark

    with pytest.raises(SystemExit):
        benchmark.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    for text in ("--models MODELS [MODELS ...] model names to measure",
                 "--batches BATCHES [BATCHES ...] global batch sizes",
                 "--devices DEVICES [DEVICES ...] device counts", "(default: 5)"):
        assert text in out
