"""Every config file under experiments/configs loads, and its classifier sections build a model."""

import importlib
import pathlib

import ml_collections
import pytest

from fer_jax import models

CONFIGS = sorted(p.stem for p in (pathlib.Path(__file__).resolve().parents[1] / "experiments" /
                                  "configs").glob("*.py") if p.stem != "__init__")


GAN_MODELS = ("cgan", "dcgan")


def _classifier_sections(config):
    """The engine configs inside a config: itself, or its flat / two-tier / classifier parts
    (a GAN config has none)."""
    if "model" in config:
        return [] if config.model in GAN_MODELS else [config]
    sections = [config[k] for k in ("flat", "classifier") if k in config]
    if "two_tier" in config:
        sections += [config.two_tier[m] for m in ("tier1", "negative", "positive")]
    return sections


@pytest.mark.parametrize("name", CONFIGS)
def test_config_loads_and_names_known_models(name):
    config = importlib.import_module(f"experiments.configs.{name}").get_config()
    assert isinstance(config, ml_collections.ConfigDict)
    config.copy_and_resolve_references()  # references (e.g. flat.grouping -> setting) resolve
    for section in _classifier_sections(config):
        assert section.model in models.MODELS, (name, section.model)
        assert "init_from" in section  # every engine config has the warm-start option
