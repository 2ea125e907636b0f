"""Two-tier routing on hand-built probabilities, label mapping in both settings, and a tiny
two-tier model trained, saved as one directory, loaded and evaluated like a flat model."""

import json

import numpy as np
import pytest

from fer_jax import classes, inference, two_tier
from fer_jax.errors import FerCheckpointError, FerError

# Columns of a 7-class row: angry disgust fear happy sad surprise neutral.


def test_soft_routing_multiplies_group_and_class_probabilities():
    tier1 = np.array([[0.8, 0.2]])
    negative = np.array([[0.1, 0.2, 0.3, 0.4]])   # angry disgust fear sad
    positive = np.array([[0.5, 0.25, 0.25]])      # happy surprise neutral
    probs = two_tier.route(tier1, negative, positive, setting="seven")
    np.testing.assert_allclose(probs, [[0.08, 0.16, 0.24, 0.10, 0.32, 0.05, 0.05]], atol=1e-6)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)


def test_soft_and_hard_routing_disagree_when_the_likely_group_is_undecided():
    # Negative group slightly more likely, but its mass is spread over four classes while the
    # positive model is sure of happy: soft routing picks happy, hard routing stays negative.
    tier1 = np.array([[0.55, 0.45]])
    negative = np.array([[0.25, 0.25, 0.2, 0.3]])
    positive = np.array([[0.9, 0.05, 0.05]])
    soft = two_tier.route(tier1, negative, positive, setting="seven", routing="soft")
    hard = two_tier.route(tier1, negative, positive, setting="seven", routing="hard")
    assert classes.SEVEN.class_names[soft.argmax()] == "happy"
    assert classes.SEVEN.class_names[hard.argmax()] == "sad"
    np.testing.assert_allclose(hard, [[0.25, 0.25, 0.2, 0.0, 0.3, 0.0, 0.0]], atol=1e-6)


def test_routing_agrees_when_tier1_is_confident():
    rng = np.random.default_rng(0)
    tier1 = np.array([[0.99, 0.01], [0.02, 0.98]])
    negative = rng.dirichlet(np.ones(3), 2)
    positive = rng.dirichlet(np.ones(3), 2)
    soft = two_tier.route(tier1, negative, positive, setting="six")
    hard = two_tier.route(tier1, negative, positive, setting="six", routing="hard")
    np.testing.assert_array_equal(soft.argmax(1), hard.argmax(1))


@pytest.mark.parametrize("setting, negatives", [
    ("seven", ("angry", "disgust", "fear", "sad")),
    ("six", ("angry", "fear", "sad")),
])
def test_each_member_class_lands_on_its_canonical_class(setting, negatives):
    flat = two_tier.setting_grouping(setting)
    for group_index, names in enumerate((negatives, ("happy", "surprise", "neutral"))):
        for class_index, name in enumerate(names):
            tier1 = np.eye(2)[[group_index]]
            member = np.eye(len(names))[[class_index]]
            other = np.full((1, 3 if group_index == 0 else len(negatives)), 1.0 / 3)
            args = (member, other) if group_index == 0 else (other, member)
            probs = two_tier.route(tier1, *args, setting=setting)
            assert probs.shape == (1, flat.num_classes)
            canonical = flat.decode(probs.argmax(1))[0]
            assert classes.EMOTIONS[canonical] == name


def test_member_groupings_cover_the_setting_and_route_rejects_wrong_shapes():
    for setting, flat in (("seven", classes.SEVEN), ("six", classes.SIX)):
        groupings = two_tier.member_groupings(setting)
        assert groupings["tier1"].canonical_labels == flat.canonical_labels
        assert sorted(groupings["negative"].canonical_labels
                      + groupings["positive"].canonical_labels) == list(flat.canonical_labels)
    with pytest.raises(ValueError, match="negative probabilities must be"):
        two_tier.route(np.ones((1, 2)) / 2, np.ones((1, 4)) / 4, np.ones((1, 3)) / 3,
                       setting="six")
    with pytest.raises(ValueError, match="unknown routing"):
        two_tier.route(np.ones((1, 2)) / 2, np.ones((1, 3)) / 3, np.ones((1, 3)) / 3,
                       setting="six", routing="argmax")


def test_restrict_drops_disgust_and_renormalises():
    probs = np.array([[0.1, 0.5, 0.1, 0.1, 0.1, 0.05, 0.05]])
    six = two_tier.restrict(probs, classes.SEVEN, classes.SIX)
    np.testing.assert_allclose(six, [[0.2, 0.2, 0.2, 0.2, 0.1, 0.1]], atol=1e-6)


# ----------------------------------------------------------------------------- trained model
@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_data):
    """A two-tier model of the 6-class setting with hard routing, members trained 1 epoch
    (three trainings: every test that uses it is in the slow tier)."""
    from experiments.configs import pipeline_base
    from studies.pipeline import train_two_tier

    def member():
        config = pipeline_base.classifier(gan_mixing=False, num_epochs=1, batch_size=32,
                                          progress=False)
        config.model_kwargs.width = 4
        return config

    config = pipeline_base.get_config().two_tier
    config.setting = "six"
    config.routing = "hard"
    config.tier1, config.negative, config.positive = member(), member(), member()
    workdir = tmp_path_factory.mktemp("two_tier")
    summaries = train_two_tier(config, workdir, tiny_data)
    return workdir, summaries


@pytest.mark.slow
def test_train_two_tier_writes_one_loadable_checkpoint_directory(trained, tiny_data):
    workdir, summaries = trained
    assert set(summaries) == {"tier1", "negative", "positive"}
    manifest = json.loads((workdir / two_tier.MANIFEST).read_text())
    assert manifest["setting"] == "six" and manifest["routing"] == "hard"
    assert {m["grouping"] for m in manifest["members"].values()} == \
        {"tier1_six", "tier2_negative_six", "tier2_positive"}

    model = inference.load(workdir)
    assert model.members["tier1"].class_names == ("negative", "positive")
    assert model.members["negative"].class_names == ("angry", "fear", "sad")
    assert model.routing == "hard" and set(model.steps) == {"tier1", "negative", "positive"}
    images = tiny_data.split("test").images[:50]
    probs = model.probabilities(images)
    assert probs.shape == (50, 6)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    members = [model.members[name].probabilities(images)
               for name in ("tier1", "negative", "positive")]
    np.testing.assert_allclose(probs, two_tier.route(*members, setting="six", routing="hard"),
                               atol=1e-6)
    soft = inference.load(workdir, routing="soft").probabilities(images)
    np.testing.assert_allclose(soft, two_tier.route(*members, setting="six"), atol=1e-6)
    # Features of a two-tier model: its members' features side by side.
    features = model.features(images[:3])
    assert features.shape == (3, sum(model.members[name].features(images[:3]).shape[1]
                                     for name in ("tier1", "negative", "positive")))


@pytest.mark.slow
def test_two_tier_evaluates_like_a_flat_model(trained, tiny_data):
    from fer_jax.evaluation import evaluate

    workdir, _ = trained
    classifier = inference.load(workdir)
    assert classifier.grouping is classes.SIX
    split = tiny_data.split("test")
    report = evaluate(classifier, split, classes.SIX)
    assert report["classes"] == list(classes.SIX.class_names)
    assert report["n"] == int(np.sum(split.labels != classes.EMOTION_INDEX["disgust"]))
    assert 0.0 <= report["accuracy"] <= 1.0
    # Each member scores on its own group (the numbers the pipeline reports per tier).
    tier1 = evaluate(classifier.members["tier1"], split, classes.TIER1_SIX)
    assert tier1["classes"] == ["negative", "positive"] and tier1["n"] == report["n"]


@pytest.mark.slow
def test_loading_rejects_missing_or_mismatched_checkpoints(trained, tmp_path):
    workdir, _ = trained
    with pytest.raises(FerCheckpointError, match="no two-tier manifest"):
        two_tier.read_manifest(tmp_path)
    with pytest.raises(FerCheckpointError, match="no checkpoint found"):
        inference.load(tmp_path)
    (tmp_path / two_tier.MANIFEST).write_text("{not json")
    with pytest.raises(FerCheckpointError, match="malformed two-tier manifest"):
        inference.load(tmp_path)
    manifest = json.loads((workdir / two_tier.MANIFEST).read_text())
    for name in manifest["members"]:  # point every member at the trained negative model
        manifest["members"][name]["workdir"] = str(workdir / "negative")
    (tmp_path / two_tier.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(FerCheckpointError, match="member 'tier1' predicts grouping "
                                                 "'tier2_negative_six'"):
        inference.load(tmp_path)
    with pytest.raises(FerCheckpointError, match="routing applies to two-tier models"):
        inference.load(workdir / "tier1", routing="soft")


@pytest.mark.slow
def test_evaluate_and_calibrate_commands_accept_a_two_tier_directory(trained, tiny_csv, tmp_path,
                                                                      monkeypatch):
    from experiments import calibrate, evaluate

    workdir, _ = trained
    monkeypatch.setenv("FER_JAX_CACHE", str(tmp_path / "cache"))
    data = ["--workdir", str(workdir), "--data", str(tiny_csv), "--split", "val"]

    def evaluated(*extra):
        out = tmp_path / "report.json"
        assert evaluate.main([*data, *extra, "--json", str(out)]) == 0
        return json.loads(out.read_text())

    hard, soft = evaluated(), evaluated("--routing", "soft")
    assert hard["classes"] == list(classes.SIX.class_names) and "confusion" in hard
    assert "hard routing" in hard["model"] and "soft routing" in soft["model"]

    out = tmp_path / "calibration.json"
    assert calibrate.main([*data, "--objective", "seed", "--repeats", "3", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["grouping"] == "six" and set(result["offsets"]) == set(classes.SIX.class_names)
    assert set(result["reports"]) == {"uncalibrated", "cross_fitted", "in_sample"}
    repeats = result["cross_fitted_repeats"]
    assert len(repeats) == 3 and all(r["n"] == hard["n"] for r in repeats)
    for name, row in result["reports"]["cross_fitted"]["per_class"].items():
        recalls = [r["per_class"][name]["recall"] for r in repeats]
        assert row["recall"] == pytest.approx(np.mean(recalls))
        assert row["recall_min"] == pytest.approx(min(recalls))
    assert result["reports"]["uncalibrated"]["confusion"] == hard["confusion"]
    assert out.with_suffix(".png").stat().st_size > 0
    # evaluate --calibration applies the offsets fitted on the whole split: the in-sample report.
    calibrated = evaluated("--calibration", str(out))
    assert calibrated["confusion"] == result["reports"]["in_sample"]["confusion"]

    with pytest.raises(FerError, match="calibration.json: offsets were fitted in grouping 'six'"):
        evaluate.main([*data, "--grouping", "seven", "--calibration", str(out)])
    with pytest.raises(FerError, match="seed reference has no recall for \\['disgust'\\]"):
        calibrate.main([*data, "--grouping", "seven"])
