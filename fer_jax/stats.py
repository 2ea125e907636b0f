"""Statistics that say how far a result can be trusted (numpy only, pure functions).

- bootstrap confidence intervals over images of accuracy and macro-F1;
- per-class average precision (scikit-learn's step-wise sum) and one-vs-rest AUROC (ranks,
  ties averaged) from probabilities;
- a paired comparison of two models on the same images: paired bootstrap CIs of the accuracy,
  macro-F1 and one class's AP differences, and McNemar's exact p-value;
- mean ± t-interval half-width over seeds, and a comparison of two training recipes over
  paired seeds (:func:`seed_paired_comparison`): the seeds' spread and the images' both count.

Every bootstrap resample is a row of :func:`bootstrap_weights` (how often each image is
drawn), so one matrix product scores all resamples at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from fer_jax.errors import FerError

RESAMPLES = 1000
CONFIDENCE = 0.95
NO_DIFFERENCE = "no measurable difference"


# ----------------------------------------------------------------------------- bootstrap
def bootstrap_weights(n: int, *, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """float64 ``[resamples, n]``: how many times each of ``n`` images is drawn in each
    bootstrap resample (``n`` draws with replacement; each row sums to ``n``)."""
    if n < 1 or resamples < 1:
        raise FerError(f"bootstrap needs images and resamples (got n={n}, "
                       f"resamples={resamples})")
    draws = np.random.default_rng(seed).integers(0, n, (resamples, n))
    rows = np.arange(resamples)[:, None] * n
    return np.bincount((rows + draws).ravel(), minlength=resamples * n).reshape(
        resamples, n).astype(np.float64)


def percentile_interval(samples, confidence: float = CONFIDENCE) -> list[float]:
    """``[lo, hi]``: the central ``confidence`` percentile interval of ``samples``."""
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(np.asarray(samples, np.float64), [tail, 1.0 - tail])
    return [float(lo), float(hi)]


def accuracy(labels, predictions, weights=None):
    """Top-1 accuracy; with ``weights`` ``[..., N]`` (image multiplicities), one per row."""
    correct = np.asarray(labels) == np.asarray(predictions)
    if weights is None:
        return float(correct.mean())
    weights = np.asarray(weights, np.float64)
    return weights @ correct / weights.sum(axis=-1)


def macro_f1(labels, predictions, num_classes: int, weights=None):
    """Unweighted mean over ``num_classes`` of per-class F1 = 2 TP / (support + predicted), 0
    for a class neither present nor predicted (as :func:`fer_jax.metrics.classification_report`);
    with ``weights`` ``[..., N]``, one per row."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    classes = np.arange(num_classes)
    is_label = (labels[:, None] == classes).astype(np.float64)      # [N, C]
    is_predicted = (predictions[:, None] == classes).astype(np.float64)
    weights = np.ones(len(labels)) if weights is None else np.asarray(weights, np.float64)
    true_positives = weights @ (is_label * is_predicted)
    counted = weights @ (is_label + is_predicted)
    f1 = np.divide(2 * true_positives, counted, out=np.zeros_like(counted), where=counted > 0)
    mean = f1.mean(axis=-1)
    return float(mean) if np.ndim(mean) == 0 else mean


def balanced_accuracy(labels, predictions, num_classes: int, weights=None):
    """Mean over the classes present of per-class recall; with ``weights`` ``[..., N]``, one
    per row."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    is_label = (labels[:, None] == np.arange(num_classes)).astype(np.float64)   # [N, C]
    weights = np.ones(len(labels)) if weights is None else np.asarray(weights, np.float64)
    support = weights @ is_label
    hits = weights @ (is_label * (predictions == labels)[:, None])
    recall = np.divide(hits, support, out=np.zeros_like(support), where=support > 0)
    mean = recall.sum(axis=-1) / np.maximum((support > 0).sum(axis=-1), 1)
    return float(mean) if np.ndim(mean) == 0 else mean


# ----------------------------------------------------------------------------- ranking
def _ranking(scores) -> tuple[np.ndarray, np.ndarray]:
    """``(order, last_of_tie)``: indices by descending score (stable), and the positions in
    that order where a run of tied scores ends (each tie one threshold)."""
    scores = np.asarray(scores, np.float64)
    order = np.argsort(-scores, kind="stable")
    return order, np.r_[np.flatnonzero(np.diff(scores[order])), len(scores) - 1]


def average_precision(positives, scores, weights=None):
    """Average precision of ``scores`` for the boolean ``positives``: sum over score
    thresholds (descending, ties one threshold) of (recall step) x precision, as scikit-learn's
    ``average_precision_score``; NaN without positives. With ``weights`` ``[..., N]`` (image
    multiplicities), one per row."""
    positives = np.asarray(positives, bool)
    order, last_of_tie = _ranking(scores)
    weights = np.ones(len(order)) if weights is None else np.asarray(weights, np.float64)
    weights = weights[..., order]
    true_positives = np.cumsum(weights * positives[order], axis=-1)[..., last_of_tie]
    retrieved = np.cumsum(weights, axis=-1)[..., last_of_tie]
    total = true_positives[..., -1:]
    precision = np.divide(true_positives, retrieved, out=np.zeros_like(retrieved),
                          where=retrieved > 0)
    recall_steps = np.diff(true_positives, axis=-1, prepend=0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = (recall_steps * precision).sum(axis=-1) / total[..., 0]
    return float(ap) if np.ndim(ap) == 0 else ap


def precision_at_recall(positives, scores, recall: float) -> float:
    """Precision at the highest score threshold whose recall reaches ``recall`` (ties one
    threshold): two rankings compared at one operating point. NaN without positives."""
    positives = np.asarray(positives, bool)
    if not positives.any():
        return float("nan")
    order, last_of_tie = _ranking(scores)
    true_positives = np.cumsum(positives[order])[last_of_tie]
    reached = np.flatnonzero(true_positives >= recall * positives.sum() - 1e-9)[0]
    return float(true_positives[reached] / (last_of_tie[reached] + 1))


def average_ranks(values) -> np.ndarray:
    """1-based ranks of ``values`` ascending, tied values sharing their mean rank."""
    _, inverse, counts = np.unique(np.asarray(values), return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts + 1
    return (first + (counts - 1) / 2.0)[inverse.reshape(-1)]


def auroc(positives, scores) -> float:
    """Area under the ROC curve (Mann-Whitney U / (positives x negatives), ties counting
    half); NaN when either class is absent."""
    positives = np.asarray(positives, bool)
    n_pos = int(positives.sum())
    n_neg = positives.size - n_pos
    if not (n_pos and n_neg):
        return float("nan")
    rank_sum = average_ranks(scores)[positives].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def per_class_ranking(labels, probs, class_names: Sequence[str]) -> dict:
    """``{class: {"ap", "auroc"}}`` one-vs-rest from probabilities ``[N, C]`` (None where a
    class has no images, or every image is of it)."""
    labels, probs = np.asarray(labels), np.asarray(probs)
    out = {}
    for index, name in enumerate(class_names):
        positives = labels == index
        values = (average_precision(positives, probs[:, index]),
                  auroc(positives, probs[:, index]))
        out[name] = {key: None if math.isnan(value) else value
                     for key, value in zip(("ap", "auroc"), values)}
    return out


# ----------------------------------------------------------------------------- reports
def bootstrap_ci(labels, probs, *, resamples: int = RESAMPLES, seed: int = 0,
                 confidence: float = CONFIDENCE) -> dict:
    """``{"accuracy": [lo, hi], "macro_f1": [lo, hi]}``: percentile bootstrap over images of
    the top-1 predictions of ``probs`` ``[N, C]`` against encoded ``labels``."""
    probs = np.asarray(probs)
    predictions = probs.argmax(axis=1)
    weights = bootstrap_weights(len(probs), resamples=resamples, seed=seed)
    return {"accuracy": percentile_interval(accuracy(labels, predictions, weights), confidence),
            "macro_f1": percentile_interval(
                macro_f1(labels, predictions, probs.shape[1], weights), confidence)}


def report_statistics(labels, probs, class_names: Sequence[str], *, seed: int = 0,
                      resamples: int = RESAMPLES) -> dict:
    """``{"ci": {"accuracy", "macro_f1"}, "per_class": {class: {"ap", "auroc"}}}`` of
    probabilities ``probs`` ``[N, C]`` against encoded ``labels`` (see :func:`add_statistics`)."""
    return {"ci": bootstrap_ci(labels, probs, resamples=resamples, seed=seed),
            "per_class": per_class_ranking(labels, probs, class_names)}


def add_statistics(report: dict, statistics: dict) -> dict:
    """``report`` (:func:`fer_jax.metrics.classification_report`) with ``statistics``
    (:func:`report_statistics`) merged in: ``"ci"`` at the top, ``"ap"`` and ``"auroc"`` beside
    each class's precision and recall. Modifies and returns ``report``."""
    report["ci"] = statistics["ci"]
    for name, ranking in statistics["per_class"].items():
        report["per_class"][name].update(ranking)
    return report


# ----------------------------------------------------------------------------- paired
def mcnemar_p(correct_a, correct_b) -> float:
    """Exact (binomial) two-sided McNemar p-value of paired right/wrong outcomes: the images
    only one model gets right, tested against a fair coin; 1 when there are none."""
    correct_a, correct_b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    only_a = int((correct_a & ~correct_b).sum())
    only_b = int((correct_b & ~correct_a).sum())
    n = only_a + only_b
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1))
    return min(1.0, 2 * tail / 2**n)


def verdict(interval: Sequence[float], a: str = "A", b: str = "B") -> str:
    """"A beats B" / "B beats A" when the CI of A - B excludes 0, else
    :data:`NO_DIFFERENCE`."""
    lo, hi = interval
    if lo > 0:
        return f"{a} beats {b}"
    if hi < 0:
        return f"{b} beats {a}"
    return NO_DIFFERENCE


def _difference(a, b, samples, confidence: float) -> dict:
    interval = percentile_interval(samples, confidence)
    return {"a": a, "b": b, "difference": a - b, "ci": interval, "verdict": verdict(interval)}


def paired_comparison(labels, probs_a, probs_b, class_names: Sequence[str], *,
                      focus_class: str | None = "disgust", resamples: int = RESAMPLES,
                      seed: int = 0, confidence: float = CONFIDENCE) -> dict:
    """Model A vs model B on the same images (probabilities ``[N, C]`` over ``class_names``,
    encoded ``labels``), differences A - B with paired percentile bootstrap CIs (the same
    resamples for both models):

    ``{"n", "resamples", "seed", "confidence",
    "accuracy": {"a", "b", "difference", "ci", "verdict", "mcnemar_p", "only_a", "only_b"},
    "macro_f1": {...}, "ap": {..., "class"} or None}`` — ``"ap"`` is ``focus_class``'s average
    precision, None when the class is not among ``class_names``.
    """
    labels = np.asarray(labels)
    probs_a, probs_b = np.asarray(probs_a), np.asarray(probs_b)
    if probs_a.shape != probs_b.shape or probs_a.shape != (len(labels), len(class_names)):
        raise FerError(f"paired comparison needs both models' probabilities on the same images "
                       f"and classes: got {probs_a.shape} and {probs_b.shape} for "
                       f"{len(labels)} images of {len(class_names)} classes")
    num_classes = len(class_names)
    weights = bootstrap_weights(len(labels), resamples=resamples, seed=seed)
    pred_a, pred_b = probs_a.argmax(axis=1), probs_b.argmax(axis=1)
    correct_a, correct_b = pred_a == labels, pred_b == labels
    result = {"n": len(labels), "resamples": resamples, "seed": seed, "confidence": confidence}
    result["accuracy"] = _difference(
        accuracy(labels, pred_a), accuracy(labels, pred_b),
        accuracy(labels, pred_a, weights) - accuracy(labels, pred_b, weights), confidence)
    result["accuracy"].update(mcnemar_p=mcnemar_p(correct_a, correct_b),
                              only_a=int((correct_a & ~correct_b).sum()),
                              only_b=int((correct_b & ~correct_a).sum()))
    result["macro_f1"] = _difference(
        macro_f1(labels, pred_a, num_classes), macro_f1(labels, pred_b, num_classes),
        macro_f1(labels, pred_a, num_classes, weights)
        - macro_f1(labels, pred_b, num_classes, weights), confidence)
    result["ap"] = None
    if focus_class in class_names:
        index = list(class_names).index(focus_class)
        positives = labels == index
        if not positives.any():
            raise FerError(f"no images of class {focus_class!r} to compare its AP on")
        a, b = (average_precision(positives, probs[:, index]) for probs in (probs_a, probs_b))
        samples = (average_precision(positives, probs_a[:, index], weights)
                   - average_precision(positives, probs_b[:, index], weights))
        # a resample without the class has no AP: it does not count
        result["ap"] = {"class": focus_class,
                        **_difference(a, b, samples[~np.isnan(samples)], confidence)}
    return result


# ----------------------------------------------------------------------------- over seeds
def student_t_cdf(t: float, df: int) -> float:
    """CDF of Student's t with integer ``df`` >= 1 (the closed-form finite series)."""
    theta = math.atan2(t, math.sqrt(df))
    sin, cos2 = math.sin(theta), math.cos(theta) ** 2
    term, total = (sin, sin) if df % 2 == 0 else (sin * math.cos(theta),) * 2
    for k in range(2 if df % 2 == 0 else 3, df, 2):
        term *= cos2 * (k - 1) / k
        total += term
    if df % 2 == 0:
        return 0.5 + total / 2.0
    return 0.5 + (theta + (total if df > 1 else 0.0)) / math.pi


def student_t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile (0 < p < 1) of Student's t with integer ``df`` >= 1, by bisection."""
    lo, hi = -1e8, 1e8
    for _ in range(200):
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if student_t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2.0


def mean_ci(values, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """``(mean, half-width)`` of the t-interval of the mean of ``values`` (e.g. one metric
    over seeds); the half-width is NaN for a single value."""
    values = np.asarray(values, np.float64)
    if values.size == 0:
        raise FerError("mean ± CI of no values")
    mean = float(values.mean())
    if values.size == 1:
        return mean, float("nan")
    quantile = student_t_quantile(0.5 + confidence / 2.0, values.size - 1)
    return mean, quantile * float(values.std(ddof=1)) / math.sqrt(values.size)


SEED_METRICS = ("accuracy", "macro_f1", "balanced_accuracy")


def seed_paired_comparison(labels, probs_a, probs_b, class_names: Sequence[str], *,
                           focus_class: str | None = "disgust", resamples: int = RESAMPLES,
                           seed: int = 0, confidence: float = CONFIDENCE) -> dict:
    """Recipe A vs recipe B, each trained with the same seeds and scored on the same images:
    ``probs_a``/``probs_b`` ``[S, N, C]`` (seed s of A paired with seed s of B).

    For accuracy, macro-F1, balanced accuracy and ``focus_class``'s AP: ``{"a", "b"}`` (means
    over seeds), ``"per_seed"`` (the S differences A - B), ``"difference"`` (their mean),
    ``"seed_ci"`` (t-interval over seeds: training noise), ``"image_ci"`` (paired bootstrap over
    images of the mean difference, the same resamples for every seed: test-set noise) and
    ``"verdict"``: a win only when BOTH intervals exclude 0 on the same side, else
    :data:`NO_DIFFERENCE`. With one seed, ``seed_ci`` is NaN and there is no win."""
    labels = np.asarray(labels)
    probs_a, probs_b = np.asarray(probs_a), np.asarray(probs_b)
    shape = (probs_a.shape[0], len(labels), len(class_names))
    if probs_a.shape != probs_b.shape or probs_a.shape != shape or not shape[0]:
        raise FerError(f"a seed-paired comparison needs both recipes' probabilities for the "
                       f"same seeds, images and classes: got {probs_a.shape} and "
                       f"{probs_b.shape} for {len(labels)} images of {len(class_names)} "
                       "classes")
    num_classes = len(class_names)
    weights = bootstrap_weights(len(labels), resamples=resamples, seed=seed)
    scorers = {"accuracy": lambda probs, w: accuracy(labels, probs.argmax(1), w),
               "macro_f1": lambda probs, w: macro_f1(labels, probs.argmax(1), num_classes, w),
               "balanced_accuracy": lambda probs, w: balanced_accuracy(
                   labels, probs.argmax(1), num_classes, w)}
    if focus_class in class_names:
        index = list(class_names).index(focus_class)
        scorers["ap"] = lambda probs, w: average_precision(labels == index, probs[:, index], w)
    result = {"n": len(labels), "seeds": shape[0], "resamples": resamples, "seed": seed,
              "confidence": confidence, "class": focus_class if "ap" in scorers else None}
    for name, score in scorers.items():
        a = np.array([score(p, None) for p in probs_a])
        b = np.array([score(p, None) for p in probs_b])
        per_seed = a - b
        mean, half = mean_ci(per_seed, confidence)
        samples = np.mean([score(pa, weights) - score(pb, weights)
                           for pa, pb in zip(probs_a, probs_b)], axis=0)
        image_ci = percentile_interval(samples[~np.isnan(samples)], confidence)
        seed_ci = [mean - half, mean + half]
        both = [max(seed_ci[0], image_ci[0]), min(seed_ci[1], image_ci[1])]
        win = (seed_ci[0] > 0 and image_ci[0] > 0) or (seed_ci[1] < 0 and image_ci[1] < 0)
        result[name] = {"a": float(a.mean()), "b": float(b.mean()),
                        "per_seed": per_seed.tolist(), "difference": mean,
                        "seed_ci": seed_ci, "image_ci": image_ci,
                        "verdict": verdict(both) if win else NO_DIFFERENCE}
    return result
