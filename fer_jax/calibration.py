"""Decision calibration: per-class log-offsets added to a classifier's log-probabilities.

A trained classifier's argmax is one operating point; adding an offset ``b_c`` to each class's
log-probability (post-hoc logit adjustment) moves recall between classes without retraining.
The offsets are fitted on labelled held-out predictions for one of two objectives:

- ``"balanced"``: the largest mean per-class recall (balanced accuracy);
- ``"reference"``: the largest worst-class margin over a reference per-class recall (e.g. the
  seed's published numbers): an operating point that dominates the reference where one exists.

Fitted and scored on the same split, the numbers are optimistic; :func:`cross_fit` gives the
honest estimate (each fold scored with offsets fitted on the other folds).
"""

from __future__ import annotations

import numpy as np

from fer_jax import stats

OBJECTIVES: tuple[str, ...] = ("balanced", "reference")


def apply_offsets(probs: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``probs * exp(offsets)``, rows renormalised: float32 ``[N, C]``."""
    probs = np.asarray(probs, np.float64)
    offsets = np.asarray(offsets, np.float64)
    if offsets.shape != probs.shape[1:]:
        raise ValueError(f"{offsets.shape[0] if offsets.ndim else 0} offsets for "
                         f"{probs.shape[1]} classes")
    scaled = probs * np.exp(offsets - offsets.max())
    return (scaled / np.maximum(scaled.sum(axis=1, keepdims=True), 1e-300)).astype(np.float32)


def per_class_recall(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """float ``[C]``: recall of each class (NaN for a class without examples)."""
    hits = np.bincount(labels[predictions == labels], minlength=num_classes)
    counts = np.bincount(labels, minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)


def _score(log_probs, labels, offsets, objective, reference) -> tuple[float, float]:
    """(objective, accuracy) of ``argmax(log_probs + offsets)``; compared lexicographically."""
    predictions = np.argmax(log_probs + offsets, axis=1)
    if objective == "balanced":
        value = stats.balanced_accuracy(labels, predictions, log_probs.shape[1])
    else:
        recall = per_class_recall(labels, predictions, log_probs.shape[1])
        present = ~np.isnan(recall)
        value = float(np.min(recall[present] - reference[present]))
    return value, float(np.mean(predictions == labels))


def fit_offsets(probs: np.ndarray, labels: np.ndarray, *, objective: str = "balanced",
                reference: np.ndarray | None = None, iterations: int = 3000,
                seed: int = 0) -> np.ndarray:
    """Per-class log-offsets ``float64 [C]`` maximising ``objective`` on ``(probs, labels)``
    (ties broken by accuracy), by a seeded local random search from zero offsets whose step
    shrinks from 0.3 to 0.01. ``reference``: per-class recall in [0, 1], for "reference"."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; expected one of {OBJECTIVES}")
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels, np.int64)
    num_classes = probs.shape[1]
    if objective == "reference":
        if reference is None or np.shape(reference) != (num_classes,):
            raise ValueError(f"objective 'reference' needs {num_classes} reference recalls")
        reference = np.asarray(reference, np.float64)
    if len(labels) != len(probs) or len(labels) == 0:
        raise ValueError(f"{len(probs)} predictions for {len(labels)} labels")
    log_probs = np.log(np.maximum(probs, 1e-30))
    rng = np.random.default_rng(seed)
    offsets = np.zeros(num_classes)
    best = _score(log_probs, labels, offsets, objective, reference)
    for step in np.geomspace(0.3, 0.01, iterations):
        candidate = offsets + rng.normal(0.0, step, num_classes)
        candidate -= candidate.mean()
        score = _score(log_probs, labels, candidate, objective, reference)
        if score > best:
            offsets, best = candidate, score
    return offsets


def logit_adjustment(prior: np.ndarray, tau: float) -> np.ndarray:
    """Post-hoc logit adjustment (Menon et al. 2021): the offsets ``-tau * log(prior)``; at
    ``tau = 1`` the argmax of a calibrated model minimises the balanced error."""
    return -float(tau) * np.log(np.maximum(np.asarray(prior, np.float64), 1e-30))


TAUS = tuple(np.round(np.linspace(0.0, 2.0, 21), 2))  # the logit-adjustment grid


def fit_logit_adjustment(probs: np.ndarray, labels: np.ndarray, prior: np.ndarray, *,
                         taus=TAUS) -> tuple[float, dict]:
    """The ``tau`` of :func:`logit_adjustment` with the best balanced accuracy on ``(probs,
    labels)`` (ties: the smaller tau), and ``{tau: balanced accuracy}`` of the grid. One
    parameter, not one per class: fitted on val, it barely overfits."""
    log_probs = np.log(np.maximum(np.asarray(probs, np.float64), 1e-30))
    labels = np.asarray(labels, np.int64)
    scores = {float(tau): _score(log_probs, labels, logit_adjustment(prior, tau), "balanced",
                                 None)[0] for tau in taus}
    best = max(scores, key=lambda tau: (scores[tau], -tau))
    return best, scores


def stratified_folds(labels: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """int ``[N]``: the fold of each example, every class spread evenly over the folds."""
    labels = np.asarray(labels)
    if folds < 2:
        raise ValueError(f"cross-fitting needs at least 2 folds, got {folds}")
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), np.int64)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        fold[members] = np.arange(len(members)) % folds
    return fold


def cross_fit(probs: np.ndarray, labels: np.ndarray, *, folds: int = 2, seed: int = 0,
              fit=None, **fit_kwargs) -> tuple[np.ndarray, list[np.ndarray]]:
    """Out-of-fold calibrated probabilities ``[N, C]``: each fold adjusted with offsets fitted
    on the other folds, by ``fit(probs, labels, fold)`` (default: :func:`fit_offsets` with
    ``fit_kwargs``, seeded per fold); also returns each fold's offsets."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    if fit is None:
        def fit(fit_probs, fit_labels, k):
            return fit_offsets(fit_probs, fit_labels, seed=seed + k, **fit_kwargs)
    fold = stratified_folds(labels, folds, seed)
    calibrated = np.zeros(probs.shape, np.float32)
    fitted = []
    for k in range(folds):
        held_out = fold == k
        offsets = fit(probs[~held_out], labels[~held_out], k)
        calibrated[held_out] = apply_offsets(probs[held_out], offsets)
        fitted.append(offsets)
    return calibrated, fitted


def cross_fit_logit_adjustment(probs: np.ndarray, labels: np.ndarray, prior: np.ndarray, *,
                               folds: int = 2, seed: int = 0) -> tuple[np.ndarray, list[float]]:
    """Post-hoc logit adjustment scored honestly: out-of-fold probabilities ``[N, C]``, each
    fold adjusted with the ``tau`` :func:`fit_logit_adjustment` chose on the other folds; also
    returns each fold's tau."""
    taus = []

    def fit(fit_probs, fit_labels, _):
        taus.append(fit_logit_adjustment(fit_probs, fit_labels, prior)[0])
        return logit_adjustment(prior, taus[-1])

    calibrated, _ = cross_fit(probs, labels, folds=folds, seed=seed, fit=fit)
    return calibrated, taus
