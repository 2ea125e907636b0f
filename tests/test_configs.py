"""Every config file under experiments/configs loads, its classifier sections build a model,
and presets sit one level from their family's schema (``*_base.py``)."""

import ast
import importlib
import pathlib

import ml_collections
import pytest

from fer_jax import models

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "configs"
CONFIGS = sorted(p.stem for p in CONFIG_DIR.glob("*.py") if p.stem != "__init__")
BASES = {"classifier_base", "gan_base", "pipeline_base", "ablation_base", "dose_base"}


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


def _imported_configs(name: str) -> set[str]:
    tree = ast.parse((CONFIG_DIR / f"{name}.py").read_text())
    return {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
            and node.module == "experiments.configs" for alias in node.names}


def _family(name: str) -> str:
    """The schema a config belongs to, by name (bases: themselves)."""
    if name in BASES:
        return name
    prefixes = {"gan_dose_": "dose_base", "gan_": "gan_base", "pipeline_": "pipeline_base",
                "ablation_": "ablation_base", "seed_comparison_": "ablation_base",
                "two_tier_": "ablation_base"}
    return next((base for prefix, base in prefixes.items() if name.startswith(prefix)),
                "classifier_base")


@pytest.mark.parametrize("name", CONFIGS)
def test_presets_start_from_their_schema_and_no_other_preset_of_it(name):
    family = _family(name)
    assert name == family or family in _imported_configs(name)
    for imported in _imported_configs(name) - {family}:
        # Another family's schema or preset fills a section (e.g. a pipeline's classifiers);
        # a preset of its own family would be a second level of inheritance.
        assert _family(imported) != family, (name, imported)


def test_no_config_stores_a_path_to_another_run():
    for name in CONFIGS:
        code = "\n".join(line for line in (CONFIG_DIR / f"{name}.py").read_text().splitlines()
                         if not line.lstrip().startswith(("#", "--", "nohup", "python")))
        assert '"checkpoints/' not in code, name


def test_two_tier_cpu_reuses_the_ablation_cpu_flat_runs():
    # Same classifier section and data: its flat none runs and cells are ablation_cpu's.
    from experiments.configs import ablation_cpu, two_tier_cpu

    ours, theirs = two_tier_cpu.get_config(), ablation_cpu.get_config()
    assert ours.classifier.to_json() == theirs.classifier.to_json()
    assert ours.data.to_json() == theirs.data.to_json()
    assert {"none"} <= set(theirs.variants) and set(theirs.seeds) <= set(ours.seeds)


# Sections that hold free-form keyword arguments or overrides, not schema keys.
FREE_FORM = {"model_kwargs", "cas_overrides", "classifier_overrides", "synthetic_sizes"}


def _key_paths(config, prefix=""):
    paths = set()
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict) and key not in FREE_FORM:
            paths |= _key_paths(value, f"{prefix}{key}.")
        else:
            paths.add(prefix + key)
    return paths


@pytest.mark.parametrize("name", [n for n in CONFIGS if n not in BASES])
def test_presets_set_only_keys_their_schema_defines(name):
    schema = _family(name)
    preset = importlib.import_module(f"experiments.configs.{name}").get_config()
    defined = _key_paths(importlib.import_module(f"experiments.configs.{schema}").get_config())
    assert _key_paths(preset) <= defined, sorted(_key_paths(preset) - defined)
