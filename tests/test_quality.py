"""gan.quality: each metric against a closed form or a tiny hand-made case."""

import json

import numpy as np
import pytest

from fer_jax.classes import EMOTION_INDEX
from fer_jax.data import Split
from fer_jax.errors import FerError
from gan import metrics, quality


# ----------------------------------------------------------------------------- KID
@pytest.mark.parametrize("dims", [1, 2])
def test_kid_of_two_points_each_by_hand(dims):
    # k(x, y) = (x·y / d + 1)^3: within a k(1, -1) = 0, within b k(3, 3) = 1000, across
    # k(1, 3) = 64 and k(-1, 3) = -8 twice each (mean 28): MMD² = 0 + 1000 - 2 * 28.
    a = np.array([[1.0] * dims, [-1.0] * dims])
    b = np.array([[3.0] * dims, [3.0] * dims])
    result = quality.kid(a, b, subsets=3, subset_size=2)
    assert result["kid"] == pytest.approx(944.0)
    assert result["ci"] == pytest.approx([944.0, 944.0])
    assert result["subset_size"] == 2


@pytest.mark.parametrize("shift", [0.25, 0.5, 1.0])
def test_kid_of_shifted_sets_matches_the_closed_form(shift):
    # The cubic kernel sees moments up to 3; x = ±1 (equally often) has those of N(0, 1), so
    # MMD²(x, x + s) = (s³ + 3s)² + 3s⁴ + 3s², as for shifted unit Gaussians.
    points = np.repeat([-1.0, 1.0], 1000)[:, None]
    expected = (shift**3 + 3 * shift) ** 2 + 3 * shift**4 + 3 * shift**2
    result = quality.kid(points, points + shift, subsets=1, subset_size=len(points))
    assert result["kid"] == pytest.approx(expected, rel=0.01)


def test_kid_of_a_set_against_itself_is_its_kernel_diagonal_over_n():
    # Whole sets: within = 2 mean k(x_i, x_j≠i), across = (diag + (n - 1) off-diagonal) / n,
    # so KID = 2 (off-diagonal - diagonal) / n: -> 0 as n grows.
    points = np.random.default_rng(0).normal(size=(300, 16))
    kernel = (points @ points.T / 16 + 1.0) ** 3
    diagonal, off_diagonal = np.mean(np.diag(kernel)), np.mean(kernel[~np.eye(300, dtype=bool)])
    result = quality.kid(points, points, subsets=2, subset_size=300)
    assert result["kid"] == pytest.approx(2 * (off_diagonal - diagonal) / 300)
    assert abs(result["kid"]) < 0.05


def test_kid_is_near_zero_for_one_distribution_and_grows_with_the_shift():
    rng = np.random.default_rng(0)
    reference, same = rng.normal(size=(2, 400, 16))
    independent = quality.kid(reference, same, subsets=20, subset_size=200)
    shifted = [quality.kid(reference, same + shift, subsets=20, subset_size=200)["kid"]
               for shift in (0.25, 0.5, 1.0)]
    assert abs(independent["kid"]) < 0.05
    assert independent["ci"][0] < 0 < independent["ci"][1]
    assert 0.05 < shifted[0] < shifted[1] < shifted[2]


def test_kid_caps_the_subset_size_and_refuses_too_few_samples():
    points = np.arange(10.0).reshape(5, 2)
    assert quality.kid(points, points[:3], subsets=2, subset_size=100)["subset_size"] == 3
    with pytest.raises(FerError, match="2\\+ samples"):
        quality.kid(points, points[:1])


# ----------------------------------------------------------------------------- precision/recall
def _clusters(centres, per_cluster, seed):
    rng = np.random.default_rng(seed)
    return np.concatenate([centre + 0.1 * rng.normal(size=(per_cluster, 2))
                           for centre in np.asarray(centres, np.float64)])


def test_precision_recall_of_identical_sets_is_one_and_one():
    points = _clusters([[0, 0], [5, 5]], 50, seed=0)
    assert quality.precision_recall(points, points.copy()) == {"precision": 1.0, "recall": 1.0}


def test_precision_recall_of_far_apart_clouds_is_zero_and_zero():
    real = _clusters([[0, 0]], 60, seed=0)
    fake = _clusters([[100, 100]], 60, seed=1)
    assert quality.precision_recall(real, fake) == {"precision": 0.0, "recall": 0.0}


def test_fakes_in_one_of_two_modes_are_precise_but_cover_half():
    real = _clusters([[0, 0], [10, 0]], 100, seed=0)
    fake = _clusters([[0, 0]], 100, seed=1)
    result = quality.precision_recall(real, fake, k=3)
    assert result["precision"] > 0.9
    assert 0.4 < result["recall"] < 0.55


# ----------------------------------------------------------------------------- memorization
def test_memorization_flags_an_exact_copy_of_a_training_face():
    rng = np.random.default_rng(0)
    train, val, generated = (rng.integers(0, 256, (n, 48, 48), dtype=np.uint8)
                             for n in (50, 20, 10))
    generated[7] = train[31]
    result = quality.memorization(generated, train, val, pairs=3)
    assert result["closest"][0] == {"generated": 7, "train": 31, "distance": 0.0}
    assert result["near_copies"] == 1 and result["near_copy_share"] == 0.1
    assert result["generated_to_train"]["q01"] < result["val_to_train"]["q01"]
    grid = quality.closest_pairs_grid(generated, train, result["closest"])
    assert grid.shape == (2, 3, 48, 48)
    assert np.array_equal(grid[0, 0], grid[1, 0])


def test_memorization_ratio_is_below_one_for_near_copies():
    rng = np.random.default_rng(1)
    train, val = rng.normal(size=(2, 200, 8))
    near_copies = train[:50] + 0.01 * rng.normal(size=(50, 8))
    assert quality.memorization(near_copies, train, val)["ratio"] < 0.1
    assert quality.memorization(val, train, val)["ratio"] == pytest.approx(1.0)


# ----------------------------------------------------------------------------- conditioning
CLASSES = ("angry", "disgust", "happy")


def _faces_of(labels, seed):
    """A fake generator: a face's pixels are its latent index (from the seed) and its label."""
    latent = seed + np.arange(len(labels))
    return np.stack([latent, labels], axis=1)


def test_label_sensitivity_counts_the_faces_judged_as_asked():
    # The judge sees the label, except for disgust asked with an odd latent (judged happy).
    def classify(faces):
        latent, label = faces[:, 0], faces[:, 1]
        return np.where((label == EMOTION_INDEX["disgust"]) & (latent % 2 == 1),
                        EMOTION_INDEX["happy"], label)

    result = quality.label_sensitivity(classify, _faces_of, CLASSES, latents_per_class=10,
                                       seed=4)
    assert result["per_class"] == {"angry": 1.0, "disgust": 0.5, "happy": 1.0}
    assert result["overall"] == pytest.approx(2.5 / 3)
    assert result["every_label"] == 0.5
    # a latent's share is 1 (even) or 2/3 (odd): the interval lies between, around the mean
    low, high = result["overall_ci"]
    assert 2 / 3 <= low < 2.5 / 3 < high <= 1
    assert result["per_class_ci"]["angry"] == [1.0, 1.0]


def test_label_sensitivity_of_a_generator_that_ignores_the_label():
    def classify(faces):  # the judge sees only the latent: one class per face, any label
        return np.array([EMOTION_INDEX[CLASSES[latent % 3]] for latent in faces[:, 0]])

    result = quality.label_sensitivity(classify, _faces_of, CLASSES, latents_per_class=30,
                                       seed=0)
    assert result["per_class"] == pytest.approx({name: 1 / 3 for name in CLASSES})
    assert result["every_label"] == 0.0
    # every latent is judged as asked for exactly one label of three: no spread over latents
    assert result["overall_ci"] == pytest.approx([1 / 3, 1 / 3])


def test_label_sensitivity_interval_has_the_binomial_width_over_latents():
    # each latent is judged as asked for all labels or for none (half of them): the overall
    # share is a mean of 400 coin flips, standard error sqrt(0.25 / 400) = 0.025
    def classify(faces):
        latent, label = faces[:, 0], faces[:, 1]
        return np.where(latent % 2 == 0, label, EMOTION_INDEX["neutral"])

    result = quality.label_sensitivity(classify, _faces_of, CLASSES, latents_per_class=400,
                                       seed=0)
    low, high = result["overall_ci"]
    assert result["overall"] == 0.5 and low < 0.5 < high
    assert high - low == pytest.approx(2 * 1.96 * 0.025, rel=0.2)


# ----------------------------------------------------------------------------- D overfitting
def test_d_gap_per_class_tells_an_overfit_class_from_a_sound_one():
    angry, disgust = EMOTION_INDEX["angry"], EMOTION_INDEX["disgust"]
    labels = np.array([angry, angry, disgust, disgust])
    report = quality.d_gap_per_class(
        heldout_logits=[1.0, 3.0, -2.0, -2.0], heldout_labels=labels,
        train_logits=[2.0, 2.0, 3.0, 1.0], train_labels=labels,
        fake_logits=[-2.0, -2.0, -2.0], fake_labels=labels[1:])
    assert report["angry"] == {"train": 2.0, "heldout": 2.0, "fake": -2.0, "gap": 0.0,
                               "overfit": 0.0}
    assert report["disgust"] == {"train": 2.0, "heldout": -2.0, "fake": -2.0, "gap": 4.0,
                                 "overfit": 1.0}


def test_d_gap_per_class_skips_classes_missing_from_a_set_and_equal_train_and_fake():
    report = quality.d_gap_per_class([0.0, 1.0], [0, 1], [1.0, 1.0], [0, 1], [1.0], [0])
    assert list(report) == ["angry"]
    assert report["angry"]["overfit"] is None


# ----------------------------------------------------------------------------- gan_eval.json
def _faces(centre, count, seed):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, 48, 48), dtype=np.uint8)
    return quality.Faces(images, centre + rng.normal(size=(count, 4)))


def test_gan_eval_json_merges_quality_sensitivity_and_gan_metrics(tmp_path):
    names = ("disgust", "happy")
    train = {name: _faces(i, 40, seed=i) for i, name in enumerate(names)}
    val = {name: _faces(i, 12, seed=10 + i) for i, name in enumerate(names)}
    generated = {name: _faces(i + 0.5, 16, seed=20 + i) for i, name in enumerate(names)}
    generated["disgust"].images[0] = train["disgust"].images[5]
    report = quality.quality_report(generated, val, train, kid_subsets=5, seed=0)
    assert report["per_class"]["disgust"]["kid"]["subset_size"] == 6  # half the val faces
    assert report["per_class"]["disgust"]["memorization"]["closest"][0]["distance"] == 0.0
    assert report["overall"]["kid"]["subset_size"] == 12
    sensitivity = {"per_class": {"disgust": 0.5, "happy": 0.9}, "overall": 0.7,
                   "every_label": 0.4, "per_class_ci": {"disgust": [0.2, 0.8], "happy": [0.7, 1]},
                   "overall_ci": [0.5, 0.85], "latents": 10, "seed": 0}
    fer_metrics = {"classifier": "judge", "seed": 3,
                   "per_class": {"disgust": {"fid": 9.0, "recognizability": 0.6}},
                   "overall": {"fid": 7.0, "recognizability": 0.7}}
    written = quality.gan_eval_json(tmp_path, report, sensitivity, fer_metrics=fer_metrics,
                                    cas={"cas": 0.4, "cas_macro_f1": 0.3, "workdir": "x",
                                         "cas_recall": {"disgust": 0.2, "happy": 0.8},
                                         "real_reference": {
                                             "cas": 0.45, "cas_macro_f1": 0.35,
                                             "cas_recall": {"disgust": 0.25, "happy": 0.85}}})
    assert json.loads((tmp_path / quality.GAN_EVAL).read_text()) == written
    assert written["classifier"] == "judge" and written["label_sensitivity_setup"] == {"latents": 10, "seed": 0}
    disgust = written["per_class"]["disgust"]
    assert {"kid", "kid_floor", "precision", "recall", "memorization"} <= disgust.keys()
    assert (disgust["fid"], disgust["label_sensitivity"], disgust["cas"]) == (9.0, 0.5, 0.2)
    assert "fid" not in written["per_class"]["happy"]
    assert written["overall"]["cas"] == 0.4 and written["overall"]["label_sensitivity"] == 0.7
    assert (written["overall"]["label_sensitivity_ci"], disgust["label_sensitivity_ci"]) == (
        [0.5, 0.85], [0.2, 0.8])
    assert (written["overall"]["cas_real_reference"], disgust["cas_real_reference"]) == (0.45, 0.25)


def test_the_cas_real_reference_draws_each_class_equally_and_repeats_only_a_short_class():
    labels = np.array([EMOTION_INDEX["happy"]] * 8 + [EMOTION_INDEX["disgust"]] * 2, np.int32)
    images = np.arange(10, dtype=np.uint8)[:, None, None] * np.ones((1, 48, 48), np.uint8)
    sample = metrics.balanced_real_sample(Split(images, labels), ["disgust", "happy"], 5, seed=0)
    assert sample.labels.tolist() == [EMOTION_INDEX["disgust"]] * 5 + [EMOTION_INDEX["happy"]] * 5
    disgust, happy = sample.images[:5, 0, 0], sample.images[5:, 0, 0]
    assert set(disgust.tolist()) <= {8, 9}          # 2 faces drawn 5 times: with replacement
    assert len(set(happy.tolist())) == 5 and set(happy.tolist()) <= set(range(8))  # without
    assert (metrics.balanced_real_sample(Split(images, labels), ["disgust", "happy"], 5, seed=0)
            .images == sample.images).all()
    with pytest.raises(FerError, match="no training images of 'fear'"):
        metrics.balanced_real_sample(Split(images, labels), ["fear"], 5, seed=0)
