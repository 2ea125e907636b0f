"""The GAN dose-response study: nested seeded subsets, the exchange rate, and the study end to
end on tiny synthetic data (stages, equal steps, dose.json, a rerun that skips everything)."""

import contextlib
import io
import json

import numpy as np
import pytest

from experiments import gan_dose
from experiments.configs import dose_base
from fer_jax.classes import EMOTION_INDEX, EMOTIONS
from fer_jax.data import FerData, Split, sampling
from fer_jax.errors import FerDataError, FerError
from studies import dose as dose_lib

DISGUST = EMOTION_INDEX["disgust"]

# A tiny study: 2 ks, 2 seeds, a 2-step GAN, 1-epoch classifiers of width 4; the gate open
# (2-step faces would fail it) so that the GAN arm runs.
TINY = [
    "--config.data.synthetic_sizes.num_train=420",
    "--config.data.synthetic_sizes.num_val=140",
    "--config.data.synthetic_sizes.num_test=140",
    "--config.ks=(3,6)",
    "--config.gan_pipeline.gan.num_steps=2", "--config.gan_pipeline.gan.checkpoint_every=2",
    "--config.gan_pipeline.gan.log_every=2", "--config.gan_pipeline.gan.sample_every=2",
    "--config.gan_pipeline.gan.batch_size=16",
    "--config.gan_pipeline.synthesize.max_per_class=10",
    "--config.gan_pipeline.synthesize.min_recognizability=0.0",
    "--config.gan_pipeline.judge.model_kwargs.width=4",
    "--config.classifier.model_kwargs.width=4",
]


# ----------------------------------------------------------------------------- subsets
def test_nested_subsets_are_seeded_exact_and_nested():
    labels = np.repeat(np.arange(7), [30, 12, 25, 40, 20, 15, 18]).astype(np.int32)
    order, subsets = sampling.nested_class_subsets(labels, DISGUST, (8, 2, 5), seed=3)
    assert sorted(order) == list(np.flatnonzero(labels == DISGUST))
    others = np.flatnonzero(labels != DISGUST)
    for k, subset in subsets.items():
        assert np.sum(labels[subset] == DISGUST) == k
        assert np.array_equal(np.setdiff1d(subset, order), others)   # others untouched
        assert np.array_equal(subset, np.unique(subset))
    assert set(subsets[2]) <= set(subsets[5]) <= set(subsets[8])
    again, _ = sampling.nested_class_subsets(labels, DISGUST, (2,), seed=3)
    other_seed, _ = sampling.nested_class_subsets(labels, DISGUST, (2,), seed=4)
    assert np.array_equal(order, again) and not np.array_equal(order, other_seed)
    with pytest.raises(FerDataError, match="0..12"):
        sampling.nested_class_subsets(labels, DISGUST, (13,), seed=0)


def test_subsampled_data_cuts_disgust_only_and_leaves_val_and_no_test(tmp_path):
    config = dose_base.get_config()
    config.ks = (4, 9)
    study = dose_lib.Dose(config, tmp_path)
    study.stages.run("draw", study.draw, dict, label="draw")
    full = study.data
    for k in (4, 9):
        data = study.subsampled(k)
        counts, full_counts = data.split("train").counts(), full.split("train").counts()
        assert counts["disgust"] == k
        assert {n: c for n, c in counts.items() if n != "disgust"} == \
            {n: c for n, c in full_counts.items() if n != "disgust"}
        assert data.split("val") is full.split("val")
        assert not data.has("test")
    recorded = study.stages.outputs("draw")["order"]
    small = study.subsampled(4).split("train").images
    assert all(any(np.array_equal(full.split("train").images[i], image) for image in small)
               for i in recorded[:4])


def test_real_repeats_fill_the_slots_the_gan_faces_take(tmp_path):
    config = dose_base.get_config()
    config.ks = (4,)
    study = dose_lib.Dose(config, tmp_path)
    study.stages.run("draw", study.draw, dict, label="draw")
    faces = Split(np.full((70, 48, 48), 7, np.uint8), np.repeat(np.arange(7), 10).astype(np.int32))
    slots = study.slots(4, faces)
    # share 0.5 without oversampling: at most as many GAN faces as real ones (disgust: 4),
    # and equal balance gives every class that many, happy too
    assert slots == dict.fromkeys(EMOTIONS, 4)
    repeats = study.repeats(4, slots)
    assert {n: c for n, c in repeats.counts().items() if c} == slots
    train_images = study.subsampled(4).split("train").images.reshape(-1, 48 * 48)
    assert all((train_images == image.ravel()).all(axis=1).any() for image in repeats.images)


@pytest.mark.parametrize("leave_out", [True, False])
def test_cells_are_scored_on_val_without_its_copies_of_training_faces(tmp_path, leave_out):
    config = dose_base.get_config()
    config.val_without_train_copies = leave_out
    study = dose_lib.Dose(config, tmp_path)
    full = study.data
    train, val = full.split("train"), full.split("val")
    copied = np.flatnonzero(train.labels == DISGUST)[:2]
    study._data = FerData({"train": train, "val": Split(
        np.concatenate([val.images, train.images[copied]]),
        np.concatenate([val.labels, train.labels[copied]]))}, full.source, full.synthetic)
    scored, left_out = study.scored()
    if leave_out:
        np.testing.assert_array_equal(scored.images, val.images)
        assert left_out == {name: 2 * (name == "disgust") for name in EMOTIONS}
        assert dose_lib.scored_on({"val_copies_left_out": left_out, "config": {
            "minority": "disgust"}}) == \
            "val without its 2 exact copies of training faces (2 of them disgust)"
    else:
        assert len(scored) == len(val) + 2 and left_out == {}
        assert dose_lib.scored_on({"val_copies_left_out": left_out}) == "val"


# ----------------------------------------------------------------------------- exchange rate
@pytest.mark.parametrize("target, start, expected", [
    (0.3, 50, 75.0),            # inside: 50 + (0.3 - 0.2) / (0.4 - 0.2) * 50
    (0.45, 50, 150.0),          # inside the second segment: 100 + 0.05 / 0.1 * 100
    (0.45, 100, 150.0),
    (0.4, 100, 100.0),          # reached where it starts: worth nothing
    (0.6, 50, None),            # beyond the measured range
])
def test_equivalent_k_interpolates_the_baseline_linearly(target, start, expected):
    result = dose_lib.equivalent_k((50, 100, 200), (0.2, 0.4, 0.5), target, start_k=start)
    assert result == pytest.approx(expected) if expected is not None else result is None


def test_equivalent_k_takes_the_first_crossing_of_a_non_monotone_baseline():
    ks, means = (50, 100, 200, 400), (0.2, 0.5, 0.3, 0.6)
    assert dose_lib.equivalent_k(ks, means, 0.4, start_k=50) == pytest.approx(50 + 0.2 / 0.3 * 50)
    assert dose_lib.equivalent_k(ks, means, 0.4, start_k=200) == pytest.approx(
        200 + 0.1 / 0.3 * 200)
    assert dose_lib.equivalent_k(ks, means, 0.7, start_k=200) is None


def test_the_answer_claims_a_benefit_only_where_the_verdict_says_so():
    rates = [{"k": 50, "verdict": dose_lib.WIN, "worth": 70.0},
             {"k": 100, "verdict": "no measurable difference", "worth": 30.0},
             {"k": 200, "verdict": dose_lib.WIN, "worth": None}]
    assert dose_lib.answer(rates, (50, 100, 200), "disgust") == (
        "GAN faces are worth 70 real disgust faces at k = 50; an unmeasured number of real "
        "disgust faces at k = 200 (beyond the measured range)")
    rates[2]["k"] = 100
    assert "more than 100 real disgust faces at k = 100" in dose_lib.answer(
        rates, (50, 100, 200), "disgust")
    assert "no measurable benefit" in dose_lib.answer(rates[1:2], (50, 100, 200), "disgust")


def test_the_baseline_must_be_a_plain_variant_and_ks_positive(tmp_path):
    config = dose_base.get_config()
    config.baseline = "gan_oversampling"
    with pytest.raises(FerError, match="mixes no GAN faces"):
        dose_lib.Dose(config, tmp_path)
    config = dose_base.get_config()
    config.ks = (0, 5)
    with pytest.raises(FerError, match="ks >= 1"):
        dose_lib.Dose(config, tmp_path)
    config = dose_base.get_config()
    config.face_selection = "pixel"
    with pytest.raises(FerError, match="face_selection"):
        dose_lib.Dose(config, tmp_path)


def test_the_face_filter_keeps_faces_the_judge_assigns_to_their_class():
    from fer_jax import classes
    from gan import metrics as gan_metrics

    class Judge:  # a 6-class judge that calls every face "happy" but the first two
        grouping = classes.SIX

        def probabilities(self, images, progress=None):
            predicted = np.full(len(images), classes.SIX.class_names.index("happy"))
            predicted[:2] = classes.SIX.class_names.index("angry")
            return np.eye(classes.SIX.num_classes)[predicted]

    labels = np.array([EMOTION_INDEX[name] for name in
                       ("angry", "happy", "happy", "disgust", "fear", "happy")], np.int32)
    faces = Split(np.zeros((6, 48, 48), np.uint8), labels)
    # angry judged angry; happy judged angry; happy, happy judged happy; disgust (outside
    # the judge's classes) and fear judged happy
    assert gan_metrics.recognized(Judge(), faces).tolist() == [True, False, True, False, False,
                                                               True]


# ----------------------------------------------------------------------------- end to end
def run_captured(args) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert gan_dose.main(args) == 0
    return out.getvalue()


@pytest.mark.slow
def test_the_study_end_to_end_at_equal_steps_and_a_rerun_skips_everything(tmp_path):
    args = ["--workdir", str(tmp_path)] + TINY
    first = run_captured(args)
    dose = json.loads((tmp_path / "dose.json").read_text())
    names = {path.parent.name for path in (tmp_path / "stages").glob("*/outputs.json")}
    cells = [(k, arm, seed) for k in (3, 6) for arm in dose_lib.ARMS for seed in (0, 1)]
    assert names == {"draw", "generator-k3", "generator-k6", "faces-k3", "faces-k6"} | {
        f(*cell) for cell in cells for f in (dose_lib.run_name, dose_lib.cell_name)}
    for k in (3, 6):
        assert dose["train_counts"][str(k)]["disgust"] == k
        assert dose["faces"][str(k)]["slots"]
        for seed in (0, 1):
            steps = {dose["cells"][dose_lib.cell_name(k, arm, seed)]["steps"]
                     for arm in dose_lib.ARMS}
            assert len(steps) == 1, (k, seed, steps)        # every arm trains as many steps
    assert set(dose) >= {"config", "draw", "faces", "table", "cells", "comparisons",
                         "exchange_rates", "answer", "reproducibility"}
    assert {(c["k"], c["arm"]) for c in dose["comparisons"]} == {
        (k, arm) for k in (3, 6) for arm in dose_lib.ARMS[1:]}
    assert all(c["seeds"] == [0, 1] for c in dose["comparisons"])
    assert len(dose["table"]) == 6 and dose["answer"] in first
    assert (tmp_path / "dose.png").is_file()
    assert dose["answer"] in (tmp_path / "dose.md").read_text()
    assert dose["reproducibility"]["data"]["synthetic"]

    again = run_captured(args)
    assert "running" not in again and again.count("skipped (finished earlier)") == len(names)
    # the generator stages depend on the pipeline's data, GAN and judge sections only
    unused = run_captured(args + ["--config.gan_pipeline.flat.num_epochs=9",
                                  "--config.gan_pipeline.gan.eval.samples_per_class=3"])
    assert "running" not in unused and "recomputing" not in unused
    with pytest.raises(FerError, match="synthesize"):
        run_captured(args + ["--config.gan_pipeline.synthesize.seed=9"])

    with pytest.raises(FerError, match="learning_rate"):
        run_captured(args + ["--config.classifier.learning_rate=0.5"])
