"""Config files and --config.KEY=VALUE overrides of the experiment entry points."""

import sys
from unittest import mock

import pytest

from experiments.cli import default_workdir, parse_config
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
    with pytest.raises(FerError, match="config.no_such_key"):
        parse_config(["--config", SMOKE, "--config.no_such_key=1"])
    with pytest.raises(FerError, match="--config PATH is required"):
        parse_config([])
    with pytest.raises(FerError, match="--config experiments/configs/missing.py: .*load"):
        parse_config(["--config", "experiments/configs/missing.py"])


def test_default_workdir_is_named_after_the_config_file():
    assert str(default_workdir(None, SMOKE)) == "checkpoints/smoke"
    assert str(default_workdir("runs/a", SMOKE)) == "runs/a"
