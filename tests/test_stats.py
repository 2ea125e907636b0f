"""fer_jax.stats against closed forms and hand-computed tiny cases."""

import math
import time

import numpy as np
import pytest

from fer_jax import metrics, stats
from fer_jax.errors import FerError


# ----------------------------------------------------------------------------- bootstrap
def test_bootstrap_weights_are_seeded_draws_of_n_images():
    weights = stats.bootstrap_weights(5, resamples=300, seed=3)
    assert weights.shape == (300, 5)
    np.testing.assert_array_equal(weights.sum(axis=1), 5)
    np.testing.assert_array_equal(weights, stats.bootstrap_weights(5, resamples=300, seed=3))
    assert not np.array_equal(weights, stats.bootstrap_weights(5, resamples=300, seed=4))
    assert weights.mean() == pytest.approx(1.0, abs=0.05)
    with pytest.raises(FerError):
        stats.bootstrap_weights(0)


def test_weighted_metrics_equal_metrics_of_the_repeated_images():
    labels = np.array([0, 1, 2, 2, 1, 0])
    predictions = np.array([0, 2, 2, 1, 1, 1])
    weights = np.array([[2, 0, 1, 1, 0, 2], [1, 1, 1, 1, 1, 1]], np.float64)
    for row, w in enumerate(weights):
        repeated = np.repeat(np.arange(6), w.astype(int))
        report = metrics.classification_report(
            metrics.confusion_matrix(labels[repeated], predictions[repeated], 3), "abc")
        assert stats.accuracy(labels, predictions, weights)[row] == pytest.approx(
            report["accuracy"])
        assert stats.macro_f1(labels, predictions, 3, weights)[row] == pytest.approx(
            report["macro_f1"])
    # a class neither present nor predicted counts as F1 0, as in the report
    assert stats.macro_f1([0, 0], [0, 0], 2) == pytest.approx(0.5)


def test_bootstrap_ci_brackets_the_estimate_and_narrows_with_n():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 400)
    probs = np.eye(3)[np.where(rng.random(400) < 0.7, labels, (labels + 1) % 3)]
    ci = stats.bootstrap_ci(labels, probs, resamples=500, seed=0)
    acc = stats.accuracy(labels, probs.argmax(1))
    lo, hi = ci["accuracy"]
    assert lo < acc < hi
    # the binomial standard error: 95% half-width ~ 1.96 sqrt(p(1-p)/n)
    assert (hi - lo) / 2 == pytest.approx(1.96 * math.sqrt(acc * (1 - acc) / 400), rel=0.2)
    assert ci["macro_f1"][0] < ci["macro_f1"][1]
    assert stats.bootstrap_ci(labels, probs, resamples=500, seed=0) == ci


def test_bootstrap_of_3500_images_and_1000_resamples_is_fast():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 7, 3500)
    probs = rng.dirichlet(np.ones(7), 3500)
    start = time.perf_counter()
    stats.report_statistics(labels, probs, [str(c) for c in range(7)])
    assert time.perf_counter() - start < 3.0


# ----------------------------------------------------------------------------- ranking
def test_average_precision_hand_computed():
    # scores 0.9 (+), 0.8 (-), 0.7 (+), 0.6 (-): precision 1 at recall 1/2, 2/3 at recall 1
    positives = [True, False, True, False]
    assert stats.average_precision(positives, [0.9, 0.8, 0.7, 0.6]) == pytest.approx(
        0.5 * 1 + 0.5 * 2 / 3)
    # tied scores form one threshold: 0.5 (+, -) at once: precision 1/2 at recall 1
    assert stats.average_precision([True, False], [0.5, 0.5]) == pytest.approx(0.5)
    # scikit-learn's documented example: average_precision_score(...) = 0.83...
    assert stats.average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(
        0.5 * 1 + 0.5 * 2 / 3)
    assert math.isnan(stats.average_precision([False, False], [0.1, 0.2]))


def test_weighted_average_precision_equals_it_on_repeated_images():
    rng = np.random.default_rng(2)
    positives = rng.random(30) < 0.3
    scores = np.round(rng.random(30), 1)  # ties
    weights = stats.bootstrap_weights(30, resamples=20, seed=0)
    got = stats.average_precision(positives, scores, weights)
    for row, w in enumerate(weights):
        repeated = np.repeat(np.arange(30), w.astype(int))
        want = stats.average_precision(positives[repeated], scores[repeated])
        np.testing.assert_allclose(got[row], want, equal_nan=True)


def test_average_ranks_share_ties():
    np.testing.assert_array_equal(stats.average_ranks([3, 1, 3, 2, 3]), [4, 1, 4, 2, 4])


def test_auroc_hand_computed():
    # positives 0.9, 0.5; negatives 0.5, 0.1: pairs won 1 + 1 + 0.5 (tie) + 1 of 4
    assert stats.auroc([1, 1, 0, 0], [0.9, 0.5, 0.5, 0.1]) == pytest.approx(3.5 / 4)
    assert stats.auroc([1, 0], [0.2, 0.8]) == 0.0
    assert math.isnan(stats.auroc([1, 1], [0.2, 0.8]))


def test_per_class_ranking_reads_one_vs_rest():
    labels = np.array([0, 0, 1, 2])
    probs = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]])
    ranking = stats.per_class_ranking(labels, probs, ["a", "b", "c"])
    assert ranking["a"] == {"ap": pytest.approx(1.0), "auroc": pytest.approx(1.0)}
    # class b: scores 0.7 (+), 0.6, 0.1, 0.1: perfectly ranked
    assert ranking["b"]["auroc"] == pytest.approx(1.0)
    missing = stats.per_class_ranking(np.array([0, 0]), np.eye(2)[[0, 1]], ["a", "b"])
    assert missing["b"] == {"ap": None, "auroc": None}


def test_add_statistics_puts_ci_and_ranking_beside_the_report():
    labels = np.array([0, 1, 1, 0])
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])
    report = metrics.classification_report(metrics.confusion_matrix(labels, probs.argmax(1), 2),
                                           ["a", "b"])
    report = stats.add_statistics(report, stats.report_statistics(labels, probs, ["a", "b"],
                                                                  resamples=50))
    assert set(report["ci"]) == {"accuracy", "macro_f1"}
    assert set(report["per_class"]["b"]) >= {"precision", "recall", "ap", "auroc"}


# ----------------------------------------------------------------------------- paired
def test_mcnemar_exact_p_values():
    # only A right on 3 images, only B right on 0: p = 2 * (1/2)^3
    assert stats.mcnemar_p([1, 1, 1, 0], [0, 0, 0, 0]) == pytest.approx(0.25)
    # 1 vs 4 discordant: 2 * (C(5,0) + C(5,1)) / 2^5
    a = [1, 0, 0, 0, 0, 1]
    b = [0, 1, 1, 1, 1, 1]
    assert stats.mcnemar_p(a, b) == pytest.approx(2 * 6 / 32)
    assert stats.mcnemar_p([1, 0], [1, 0]) == 1.0
    assert stats.mcnemar_p([1, 0], [0, 1]) == 1.0


def test_verdict_only_when_the_interval_excludes_zero():
    assert stats.verdict([0.01, 0.05]) == "A beats B"
    assert stats.verdict([-0.05, -0.01]) == "B beats A"
    assert stats.verdict([0.0, 0.0]) == stats.verdict([-0.01, 0.02]) == stats.NO_DIFFERENCE


def test_paired_comparison_of_a_model_with_itself_is_zero():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, 200)
    probs = rng.dirichlet(np.ones(3), 200)
    result = stats.paired_comparison(labels, probs, probs, ["angry", "disgust", "fear"],
                                     resamples=100)
    for key in ("accuracy", "macro_f1", "ap"):
        assert result[key]["ci"] == [0.0, 0.0] and result[key]["difference"] == 0.0
        assert result[key]["verdict"] == stats.NO_DIFFERENCE
    assert result["accuracy"]["mcnemar_p"] == 1.0 and result["ap"]["class"] == "disgust"
    assert stats.paired_comparison(labels, probs, probs, ["a", "b", "c"],
                                   resamples=10)["ap"] is None


def test_paired_comparison_finds_a_clearly_better_model():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 500)
    good = np.eye(2)[np.where(rng.random(500) < 0.9, labels, 1 - labels)]
    bad = np.eye(2)[np.where(rng.random(500) < 0.6, labels, 1 - labels)]
    result = stats.paired_comparison(labels, good, bad, ["happy", "disgust"], resamples=200)
    assert result["accuracy"]["verdict"] == "A beats B"
    assert result["accuracy"]["mcnemar_p"] < 1e-6
    assert result["accuracy"]["difference"] == pytest.approx(
        (result["accuracy"]["only_a"] - result["accuracy"]["only_b"]) / 500)
    assert result["macro_f1"]["ci"][0] > 0 and result["ap"]["ci"][0] > 0
    with pytest.raises(FerError, match="same images"):
        stats.paired_comparison(labels, good, bad[:10], ["happy", "disgust"])


# ----------------------------------------------------------------------------- over seeds
@pytest.mark.parametrize("df", [1, 2, 3, 4, 7])
def test_student_t_cdf_closed_forms(df):
    # df 1: Cauchy; df 2: t / (2 sqrt(2 + t^2)) + 1/2; symmetric for every df
    for t in (-3.0, -0.5, 0.0, 1.2, 10.0):
        if df == 1:
            assert stats.student_t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi)
        if df == 2:
            assert stats.student_t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)))
        assert stats.student_t_cdf(t, df) + stats.student_t_cdf(-t, df) == pytest.approx(1.0)


def test_student_t_quantiles_match_the_table():
    for df, want in ((1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (30, 2.0423)):
        assert stats.student_t_quantile(0.975, df) == pytest.approx(want, abs=1e-4)
    assert stats.student_t_quantile(0.975, 1) == pytest.approx(math.tan(math.pi * 0.475))


def test_mean_ci_over_seeds():
    mean, half = stats.mean_ci([0.60, 0.62, 0.64])
    # sd 0.02, n 3: t(0.975, 2) * 0.02 / sqrt(3)
    assert mean == pytest.approx(0.62) and half == pytest.approx(4.3027 * 0.02 / math.sqrt(3),
                                                                  rel=1e-4)
    assert math.isnan(stats.mean_ci([0.5])[1])
    with pytest.raises(FerError):
        stats.mean_ci([])


def test_balanced_accuracy_is_the_mean_recall_of_present_classes():
    labels = np.array([0, 0, 0, 0, 1, 1, 2])
    predictions = np.array([0, 0, 0, 1, 1, 0, 2])
    # recalls 3/4, 1/2, 1 over three classes; class 3 absent does not count
    assert stats.balanced_accuracy(labels, predictions, 4) == pytest.approx((0.75 + 0.5 + 1) / 3)
    weights = np.array([[1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 2, 1, 1, 3.0]])
    np.testing.assert_allclose(stats.balanced_accuracy(labels, predictions, 4, weights),
                               [(0.75 + 0.5 + 1) / 3, (0.0 + 0.5 + 1) / 3])


def test_precision_at_recall_hand_computed():
    positives = np.array([1, 0, 1, 0, 0, 1], bool)
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    assert stats.precision_at_recall(positives, scores, 1 / 3) == 1.0      # top 1
    assert stats.precision_at_recall(positives, scores, 0.5) == pytest.approx(2 / 3)  # top 3
    assert stats.precision_at_recall(positives, scores, 1.0) == 0.5        # all six
    # a tie is one threshold: both tied images are retrieved together
    tied = np.array([0.9, 0.7, 0.7, 0.6, 0.5, 0.4])
    assert stats.precision_at_recall(positives, tied, 0.5) == pytest.approx(2 / 3)
    assert stats.precision_at_recall(positives, np.array([0.9, 0.9, 0.7, 0.6, 0.5, 0.4]),
                                     1 / 3) == 0.5
    assert math.isnan(stats.precision_at_recall(np.zeros(3, bool), scores[:3], 0.5))


def test_seed_paired_comparison_counts_the_seeds_and_the_images():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 600)
    names = ["happy", "disgust"]

    def model(hit_rate, seed):
        r = np.random.default_rng(seed).random(600)
        return np.eye(2)[np.where(r < hit_rate, labels, 1 - labels)]

    good = np.stack([model(0.9, s) for s in range(3)])
    bad = np.stack([model(0.6, 10 + s) for s in range(3)])
    result = stats.seed_paired_comparison(labels, good, bad, names, resamples=200)
    assert result["seeds"] == 3 and result["class"] == "disgust"
    for key in ("accuracy", "macro_f1", "balanced_accuracy", "ap"):
        row = result[key]
        assert row["verdict"] == "A beats B" and row["seed_ci"][0] > 0 < row["image_ci"][0]
    per_seed = [np.mean(g.argmax(1) == labels) - np.mean(b.argmax(1) == labels)
                for g, b in zip(good, bad)]
    np.testing.assert_allclose(result["accuracy"]["per_seed"], per_seed)
    mean, half = stats.mean_ci(per_seed)
    np.testing.assert_allclose(result["accuracy"]["seed_ci"], [mean - half, mean + half])
    # The same recipe twice: no win, whatever the noise.
    same = stats.seed_paired_comparison(labels, good, good[::-1], names, resamples=200)
    assert all(same[k]["verdict"] == stats.NO_DIFFERENCE for k in ("accuracy", "ap"))
    # One seed: the seeds' spread is unknown, so no win either.
    single = stats.seed_paired_comparison(labels, good[:1], bad[:1], names, resamples=200)
    assert single["accuracy"]["image_ci"][0] > 0
    assert single["accuracy"]["verdict"] == stats.NO_DIFFERENCE
    assert stats.seed_paired_comparison(labels, good, bad, ["a", "b"], resamples=10)["class"] \
        is None
    with pytest.raises(FerError, match="same seeds"):
        stats.seed_paired_comparison(labels, good, bad[:2], names)
