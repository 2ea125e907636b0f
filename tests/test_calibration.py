"""fer_jax.calibration: offsets, the two objectives, stratified cross-fitting."""

import numpy as np
import pytest

from fer_jax import calibration


def _biased_predictions(n_per_class=200, seed=0):
    """3 classes; the model's scores for class 2 are too low, so class 2 is mostly called 1."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), n_per_class)
    logits = rng.normal(0.0, 1.0, (len(labels), 3))
    logits[np.arange(len(labels)), labels] += 2.5
    logits[:, 2] -= 3.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return probs, labels


def _recall(probs, labels):
    return calibration.per_class_recall(labels, probs.argmax(axis=1), probs.shape[1])


def test_apply_offsets_renormalises_and_moves_decisions():
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]])
    same = calibration.apply_offsets(probs, np.zeros(3))
    np.testing.assert_allclose(same, probs, atol=1e-6)
    shifted = calibration.apply_offsets(probs, np.array([0.0, 0.0, 3.0]))
    np.testing.assert_allclose(shifted.sum(axis=1), 1.0, atol=1e-6)
    assert (shifted.argmax(axis=1) == 2).all()
    with pytest.raises(ValueError, match="2 offsets for 3 classes"):
        calibration.apply_offsets(probs, np.zeros(2))


def test_balanced_objective_recovers_the_starved_class():
    probs, labels = _biased_predictions()
    before = _recall(probs, labels)
    offsets = calibration.fit_offsets(probs, labels, objective="balanced")
    after = _recall(calibration.apply_offsets(probs, offsets), labels)
    assert before[2] < 0.3 and after[2] > 0.8
    assert after.mean() > before.mean() + 0.15
    assert offsets[2] > offsets[0] and offsets[2] > offsets[1]
    np.testing.assert_array_equal(offsets,
                                  calibration.fit_offsets(probs, labels, objective="balanced"))


def test_reference_objective_dominates_a_reachable_reference():
    probs, labels = _biased_predictions()
    reference = np.array([0.8, 0.8, 0.8])
    assert (_recall(probs, labels) < reference).any()
    offsets = calibration.fit_offsets(probs, labels, objective="reference", reference=reference)
    assert (_recall(calibration.apply_offsets(probs, offsets), labels) >= reference).all()
    with pytest.raises(ValueError, match="needs 3 reference recalls"):
        calibration.fit_offsets(probs, labels, objective="reference")
    with pytest.raises(ValueError, match="unknown objective 'best'"):
        calibration.fit_offsets(probs, labels, objective="best")


def test_stratified_folds_spread_every_class_evenly():
    labels = np.array([0] * 10 + [1] * 7 + [2] * 4)
    fold = calibration.stratified_folds(labels, 2, seed=3)
    for label in range(3):
        counts = np.bincount(fold[labels == label], minlength=2)
        assert abs(counts[0] - counts[1]) <= 1
    with pytest.raises(ValueError, match="at least 2 folds"):
        calibration.stratified_folds(labels, 1)


def test_cross_fit_scores_each_fold_with_the_other_folds_offsets():
    probs, labels = _biased_predictions()
    calibrated, fold_offsets = calibration.cross_fit(probs, labels, folds=2, objective="balanced")
    fold = calibration.stratified_folds(labels, 2)
    for k, offsets in enumerate(fold_offsets):
        held_out = fold == k
        np.testing.assert_allclose(calibrated[held_out],
                                   calibration.apply_offsets(probs[held_out], offsets), atol=1e-6)
        np.testing.assert_array_equal(offsets, calibration.fit_offsets(
            probs[~held_out], labels[~held_out], objective="balanced", seed=k))
    assert _recall(calibrated, labels).mean() > _recall(probs, labels).mean() + 0.1


def test_logit_adjustment_recovers_the_balanced_bayes_rule():
    """Posteriors under a skewed prior: dividing the prior out (tau = 1) is Bayes-optimal for
    the balanced error, and the fitted tau finds it."""
    rng = np.random.default_rng(0)
    prior = np.array([0.7, 0.2, 0.1])
    labels = rng.choice(3, 20000, p=prior)
    means = np.array([0.0, 1.0, 2.0])
    x = rng.normal(means[labels], 1.0)
    likelihood = np.exp(-0.5 * (x[:, None] - means[None]) ** 2)
    posterior = likelihood * prior
    posterior /= posterior.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(calibration.apply_offsets(posterior,
                                                         calibration.logit_adjustment(prior, 1)),
                               likelihood / likelihood.sum(axis=1, keepdims=True), rtol=1e-5)
    tau, scores = calibration.fit_logit_adjustment(posterior, labels, prior)
    assert 0.7 <= tau <= 1.3, tau
    assert scores[tau] > scores[0.0] + 0.05  # the plain argmax under-calls the rare classes


def test_cross_fit_logit_adjustment_scores_each_fold_with_a_tau_fitted_elsewhere():
    rng = np.random.default_rng(1)
    prior = np.array([0.7, 0.2, 0.1])
    labels = rng.choice(3, 4000, p=prior)
    means = np.array([0.0, 1.0, 2.0])
    x = rng.normal(means[labels], 1.0)
    posterior = np.exp(-0.5 * (x[:, None] - means[None]) ** 2) * prior
    posterior /= posterior.sum(axis=1, keepdims=True)
    calibrated, taus = calibration.cross_fit_logit_adjustment(posterior, labels, prior, folds=2,
                                                              seed=5)
    fold = calibration.stratified_folds(labels, 2, seed=5)
    assert len(taus) == 2
    for k, tau in enumerate(taus):
        held_out = fold == k
        assert tau == calibration.fit_logit_adjustment(posterior[~held_out], labels[~held_out],
                                                       prior)[0]
        np.testing.assert_allclose(
            calibrated[held_out],
            calibration.apply_offsets(posterior[held_out],
                                      calibration.logit_adjustment(prior, tau)), atol=1e-6)
        assert 0.6 <= tau <= 1.4, tau
    assert _recall(calibrated, labels).mean() > _recall(posterior, labels).mean() + 0.05
