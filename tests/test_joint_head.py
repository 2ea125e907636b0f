"""The joint two-tier model (one backbone, tier-1 and tier-2 heads, hierarchical softmax): its
output is soft routing of its heads, its cross-entropy is the two tiers' losses, it warm-starts
from a flat checkpoint, and the ablation trains it and scales the two-tier members' epochs."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments import ablation
from experiments.configs import ablation_default
from fer_jax import classes, models, train, two_tier
from fer_jax import state as state_lib
from fer_jax.errors import FerError
from studies.ablation import Ablation
from tests.test_pipeline import TINY_ABLATION
from tests.test_train import tiny_config


@pytest.mark.parametrize("setting", ["seven", "six"])
def test_joint_output_is_soft_routing_of_its_three_heads(setting):
    model = state_lib.build_model(tiny_config(grouping=setting, head="two_tier"))
    images = jax.random.uniform(jax.random.PRNGKey(1), (5, 48, 48, 1))
    variables = model.init(jax.random.PRNGKey(0), images)
    out, captured = model.apply(variables, images, capture_intermediates=True)
    heads = captured["intermediates"]["HierarchicalHead_0"]
    probs = [jax.nn.softmax(heads[name]["__call__"][0]) for name in two_tier.MEMBERS]
    num_classes = classes.grouping(setting).num_classes
    assert out.shape == (5, num_classes) and out.dtype == jnp.float32
    routed = two_tier.route(*probs, setting=setting, routing="soft")
    np.testing.assert_allclose(jax.nn.softmax(out), routed, atol=1e-5)
    np.testing.assert_allclose(jax.nn.softmax(out).sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("setting", ["seven", "six"])
def test_cross_entropy_is_tier1_plus_the_true_groups_loss(setting):
    head = models.HierarchicalHead(setting)
    features = jax.random.normal(jax.random.PRNGKey(2), (6, 5))
    variables = head.init(jax.random.PRNGKey(3), features)
    out, captured = head.apply(variables, features, capture_intermediates=True)
    logits = {name: captured["intermediates"][name]["__call__"][0] for name in two_tier.MEMBERS}
    columns = two_tier.class_columns(setting)
    labels = np.arange(6) % classes.grouping(setting).num_classes  # every group, both tiers
    group = np.array([next(g for g, cols in enumerate(columns) if c in cols) for c in labels])
    within = np.array([list(columns[g]).index(c) for g, c in zip(group, labels)])
    joint = optax.softmax_cross_entropy_with_integer_labels(out, labels)
    tier1 = optax.softmax_cross_entropy_with_integer_labels(logits["tier1"], group)
    tier2 = [optax.softmax_cross_entropy_with_integer_labels(
        logits[two_tier.GROUPS[g]][i:i + 1], within[i:i + 1])[0] for i, g in enumerate(group)]
    np.testing.assert_allclose(joint, tier1 + jnp.stack(tier2), atol=1e-5)


def test_two_tier_head_needs_a_two_tier_setting():
    with pytest.raises(FerError, match="needs grouping 'seven' or 'six'"):
        state_lib.build_model(tiny_config(grouping="tier1_seven", head="two_tier"))
    with pytest.raises(FerError, match="unknown head 'flat'"):
        state_lib.build_model(tiny_config(head="flat"))
    assert models.hierarchy_of(None, "tier1_seven") is None


@pytest.mark.slow
def test_joint_model_warm_starts_from_a_flat_checkpoint(tiny_data, tmp_path):
    source = tmp_path / "flat"
    train.train_and_evaluate(tiny_config(num_epochs=1), source, data=tiny_data)
    joint = tiny_config(num_epochs=1, head="two_tier", init_from=str(source))
    _, fresh = train.initialize_from(state_lib.create_train_state(joint, 0, 10), joint, source)
    # Only the new heads start fresh; the backbone (every other array) is the flat model's.
    assert sorted(fresh) == [f"params/HierarchicalHead_0/{name}/{p}"
                             for name in ("negative", "positive", "tier1")
                             for p in ("bias", "kernel")]
    summary = train.train_and_evaluate(joint, tmp_path / "joint", data=tiny_data)
    assert summary["interrupted"] is None


def test_two_tier_epoch_scale_sets_the_members_epochs(tmp_path):
    config = ablation_default.get_config()
    config.models = ("flat", "two_tier", "two_tier_joint")
    config.classifier.num_epochs = 4
    config.two_tier_epoch_scale = 0.5
    study = Ablation(config, tmp_path)
    for grouping in ("tier1_seven", "tier2_negative_six", "tier2_positive"):
        assert study.run_config(grouping, "none", seed=0).num_epochs == 2
    assert study.run_config("seven", "none", seed=0).num_epochs == 4
    joint = study.run_config("seven", "none", seed=0, head="two_tier")
    assert joint.num_epochs == 4 and joint.head == "two_tier"
    runs = study.runs("six", "two_tier_joint")
    assert [study.run_dir(g, "none", 0, h).parts[-3] for g, h in runs] == ["six-two_tier"]
    config.two_tier_epoch_scale = 0.3
    with pytest.raises(FerError, match="whole number"):
        Ablation(config, tmp_path)


@pytest.mark.slow
def test_ablation_trains_and_scores_the_joint_model(tmp_path):
    args = ["--workdir", str(tmp_path), "--config.settings=('six',)",
            "--config.models=('flat','two_tier_joint')",
            "--config.variants=('none','oversampling')",
            "--config.seeds=(0,)", *TINY_ABLATION]
    assert ablation.main(args) == 0
    result = json.loads((tmp_path / "ablation.json").read_text())
    for variant in ("none", "oversampling"):
        cell = result["cells"][f"six-two_tier_joint-{variant}-seed0"]
        assert 0.0 <= cell["accuracy"] <= 1.0 and cell["report"]["classes"] == list(
            classes.SIX.class_names)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["six", "six-two_tier"]
    # each model against flat with the same recipe, and each recipe against none per model
    pairs = {(row["model"], row["variant"], row.get("reference_model"), row.get("reference"))
             for row in result["comparisons"]}
    assert pairs == {("two_tier_joint", "none", "flat", None),
                     ("two_tier_joint", "oversampling", "flat", None),
                     ("flat", "oversampling", None, "none"),
                     ("two_tier_joint", "oversampling", None, "none")}
    for row in result["comparisons"]:
        reference = (row.get("reference_model", row["model"]), row.get("reference", row["variant"]))
        np.testing.assert_allclose(
            row["accuracy"]["per_seed"],
            [result["cells"][f"six-{row['model']}-{row['variant']}-seed0"]["accuracy"]
             - result["cells"][f"six-{reference[0]}-{reference[1]}-seed0"]["accuracy"]],
            atol=1e-9)
    table = (tmp_path / "ablation.md").read_text()
    assert "two-tier (joint)" in table
    assert "| 6-class | two-tier (joint) vs flat | both none | accuracy | [0] |" in table
