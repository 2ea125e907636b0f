"""How close generated faces come to real ones, and whether they copy them (numpy, pure functions).

* KID (Binkowski et al. 2018): the unbiased MMD² between two feature sets under the cubic
  polynomial kernel ``k(x, y) = (x·y / d + 1)^3``, averaged over random subsets; unbiased at any
  sample size, so small classes (disgust: ~55 val faces) are not penalised as FID's are.
* Precision and recall (Kynkäänniemi et al. 2019): the share of generated samples inside the
  real manifold (the union of balls reaching each real sample's k-th nearest real neighbour)
  and of real samples inside the generated one.
* Memorization: nearest-neighbour distances of generated faces to train beside those of
  unseen real (val) faces to train, and the closest pairs (to look at as a grid).
* Label sensitivity: one latent, every label: the share of faces an independent classifier
  assigns to the label asked for.
* The discriminator's per-class overfitting signal (ADA's r_v per class), and
  :func:`gan_eval_json`, which writes all of them with :mod:`gan.metrics`' results.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from fer_jax import run_guard
from fer_jax.classes import EMOTION_INDEX, EMOTIONS
from fer_jax.errors import FerError
from fer_jax.stats import CONFIDENCE, bootstrap_weights, percentile_interval

CHUNK = 512  # query rows per distance block
QUANTILES = (0.01, 0.05, 0.25, 0.5)
GAN_EVAL = "gan_eval.json"


def _vectors(samples) -> np.ndarray:
    """float64 ``[N, D]``: each sample (a feature vector or an image) flattened."""
    samples = np.asarray(samples)
    return samples.reshape(len(samples), -1).astype(np.float64)


def _distance_blocks(queries: np.ndarray, references: np.ndarray):
    """Yields ``(start, Euclidean distances [rows, len(references)])`` for blocks of
    :data:`CHUNK` query rows."""
    reference_norms = np.sum(references**2, axis=1)
    for start in range(0, len(queries), CHUNK):
        block = queries[start:start + CHUNK]
        squared = np.sum(block**2, axis=1)[:, None] + reference_norms - 2.0 * block @ references.T
        yield start, np.sqrt(np.clip(squared, 0.0, None))


# ----------------------------------------------------------------------------- KID
def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² of equally many samples ``x``, ``y`` ``[m, d]`` under the cubic
    polynomial kernel (the diagonals of k(x, x) and k(y, y) left out)."""
    m, d = x.shape

    def kernel(a, b):
        return (a @ b.T / d + 1.0) ** 3

    k_xx, k_yy = kernel(x, x), kernel(y, y)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * kernel(x, y).mean())


def kid(features_a, features_b, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0,
        confidence: float = CONFIDENCE) -> dict:
    """Kernel Inception Distance of two feature sets ``[N, D]``, ``[M, D]``: the unbiased MMD²
    of ``subsets`` pairs of random subsets (without replacement) of ``min(subset_size, N, M)``
    samples each.

    ``{"kid": mean, "std", "ci": [lo, hi], "subsets", "subset_size"}``; ``ci`` is the central
    ``confidence`` interval of the subset estimates: the spread of a KID from that many samples,
    conservative for their mean (and of width 0 when the subsets are the whole sets). A whole
    set of n against itself gives 2 (mean k(x_i, x_j≠i) - mean k(x_i, x_i)) / n (a point meets
    its own copy only across the sets): O(1/n), not exactly 0.
    """
    a, b = _vectors(features_a), _vectors(features_b)
    size = min(subset_size, len(a), len(b))
    if size < 2 or subsets < 1:
        raise FerError(f"KID needs 2+ samples per set and 1+ subsets (got {len(a)} and "
                       f"{len(b)} samples, subset_size {subset_size}, {subsets} subsets)")
    rng = np.random.default_rng(seed)
    estimates = np.array([_mmd2_unbiased(a[rng.choice(len(a), size, replace=False)],
                                         b[rng.choice(len(b), size, replace=False)])
                          for _ in range(subsets)])
    return {"kid": float(estimates.mean()),
            "std": float(estimates.std(ddof=1)) if subsets > 1 else 0.0,
            "ci": percentile_interval(estimates, confidence), "subsets": subsets,
            "subset_size": size}


# ----------------------------------------------------------------------------- precision/recall
def _kth_neighbour_distances(points: np.ndarray, k: int) -> np.ndarray:
    """``[N]``: each point's distance to its k-th nearest other point."""
    if len(points) <= k:
        raise FerError(f"k-NN radii need more than k={k} samples, got {len(points)}")
    radii = np.empty(len(points))
    for start, distances in _distance_blocks(points, points):
        radii[start:start + len(distances)] = np.partition(distances, k, axis=1)[:, k]
    return radii


def _share_inside(queries: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> float:
    """The share of ``queries`` within ``radii`` of at least one of ``centres``."""
    inside = [np.any(distances <= radii, axis=1)
              for _, distances in _distance_blocks(queries, centres)]
    return float(np.concatenate(inside).mean())


def precision_recall(real, fake, *, k: int = 3) -> dict:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of samples ``fake`` against
    ``real`` (features ``[N, D]``): ``{"precision": share of fake inside the real manifold,
    "recall": share of real inside the fake manifold}``; a manifold is the union of balls
    around its samples reaching each one's ``k``-th nearest neighbour."""
    real, fake = _vectors(real), _vectors(fake)
    return {"precision": _share_inside(fake, real, _kth_neighbour_distances(real, k)),
            "recall": _share_inside(real, fake, _kth_neighbour_distances(fake, k))}


# ----------------------------------------------------------------------------- memorization
def _nearest(queries: np.ndarray, references: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(distances [N], indices [N])`` of each query's nearest reference; each distance is
    recomputed directly (so an exact copy is at distance 0)."""
    indices = np.concatenate([np.argmin(distances, axis=1)
                              for _, distances in _distance_blocks(queries, references)])
    return np.linalg.norm(queries - references[indices], axis=1), indices


def _quantiles(values: np.ndarray) -> dict[str, float]:
    return {f"q{round(q * 100):02d}": float(np.quantile(values, q)) for q in QUANTILES}


def memorization(generated, train, val, *, pairs: int = 8, copy_quantile: float = 0.01) -> dict:
    """Nearest-neighbour (Euclidean) distances of ``generated`` samples to ``train`` beside those
    of unseen real ``val`` samples to ``train`` (images or features, ``[N, ...]``).

    ``{"generated_to_train", "val_to_train": quantiles, "ratio": median generated / median val
    distance (< 1: closer to train than new real faces are), "copy_threshold": the
    ``copy_quantile`` of the val distances, "near_copies" and "near_copy_share": generated
    samples at most that close, "closest": the ``pairs`` closest [{"generated", "train",
    "distance"}]}`` (indices into the given arrays; see :func:`closest_pairs_grid`).
    """
    generated, train, val = _vectors(generated), _vectors(train), _vectors(val)
    generated_distances, train_indices = _nearest(generated, train)
    val_distances, _ = _nearest(val, train)
    threshold = float(np.quantile(val_distances, copy_quantile))
    near_copies = int(np.sum(generated_distances <= threshold))
    median_val = float(np.median(val_distances))
    return {
        "generated_to_train": _quantiles(generated_distances),
        "val_to_train": _quantiles(val_distances),
        "ratio": float(np.median(generated_distances)) / median_val if median_val else None,
        "copy_threshold": threshold, "near_copies": near_copies,
        "near_copy_share": near_copies / len(generated),
        "closest": [{"generated": int(i), "train": int(train_indices[i]),
                     "distance": float(generated_distances[i])}
                    for i in np.argsort(generated_distances, kind="stable")[:pairs]],
    }


def closest_pairs_grid(generated_images, train_images, closest: Sequence[dict]) -> np.ndarray:
    """uint8 ``[2, len(closest), H, W]``: the generated faces of :func:`memorization`'s
    ``closest`` pairs above their nearest training faces (for
    :func:`fer_jax.plots.save_image_grid_png`)."""
    return np.stack([np.asarray(generated_images)[[pair["generated"] for pair in closest]],
                     np.asarray(train_images)[[pair["train"] for pair in closest]]])


# ----------------------------------------------------------------------------- conditioning
def label_sensitivity(classify: Callable[[np.ndarray], np.ndarray],
                      generate: Callable[[np.ndarray, int], np.ndarray], classes: Sequence[str],
                      *, latents_per_class: int, seed: int) -> dict:
    """Does the label steer the face? ``generate(labels, seed)`` makes one face per canonical
    label whose latent depends only on ``(seed, position)`` (e.g. ``Gan.sample`` with fixed
    weights), so each of ``latents_per_class`` latents is drawn once with every label of
    ``classes``; ``classify(images)`` gives canonical labels (an independent classifier).

    ``{"per_class": {class: share judged as asked}, "overall": their mean, "every_label":
    share of latents whose faces are judged as asked for every label, "per_class_ci",
    "overall_ci": 95% percentile bootstrap intervals over latents (a latent's faces under the
    different labels are not independent, so latents are the resampled unit), "latents",
    "seed"}``.
    """
    asked = np.array([EMOTION_INDEX[name] for name in classes])
    judged = np.stack([np.asarray(classify(generate(np.full(latents_per_class, label, np.int32),
                                                    seed)))
                       for label in asked])
    hits = judged == asked[:, None]
    resampled = bootstrap_weights(latents_per_class, seed=seed) @ hits.T / latents_per_class
    return {"per_class": {name: float(row.mean()) for name, row in zip(classes, hits)},
            "overall": float(hits.mean()), "every_label": float(hits.all(axis=0).mean()),
            "per_class_ci": {name: percentile_interval(column)
                             for name, column in zip(classes, resampled.T)},
            "overall_ci": percentile_interval(resampled.mean(axis=1)),
            "latents": latents_per_class, "seed": seed}


# ----------------------------------------------------------------------------- D overfitting
def d_gap_per_class(heldout_logits, heldout_labels, train_logits, train_labels, fake_logits,
                    fake_labels) -> dict[str, dict]:
    """The discriminator's overfitting per class, from its logits (inference mode, no
    augmentation) on held-out real faces, training faces and generated faces, each with its
    canonical labels.

    ``{class: {"train", "heldout", "fake": mean logits, "gap": train - heldout, "overfit":
    gap / (train - fake)}}`` for every class present in all three; ``overfit`` (ADA's r_v) is 0
    when D scores unseen real faces as it scores training faces and 1 when it scores them as
    fakes (None when train and fake means coincide).
    """
    sets = [(np.asarray(logits, np.float64).reshape(-1), np.asarray(labels).reshape(-1))
            for logits, labels in ((train_logits, train_labels),
                                   (heldout_logits, heldout_labels), (fake_logits, fake_labels))]
    present = set.intersection(*(set(labels.tolist()) for _, labels in sets))
    report = {}
    for label in sorted(present):
        train, heldout, fake = (float(logits[labels == label].mean()) for logits, labels in sets)
        separation = train - fake
        report[EMOTIONS[label]] = {
            "train": train, "heldout": heldout, "fake": fake, "gap": train - heldout,
            "overfit": (train - heldout) / separation if separation else None}
    return report


# ----------------------------------------------------------------------------- gan_eval.json
class Faces(NamedTuple):
    """Faces of one class of one source: uint8 images ``[N, 48, 48]`` and their features
    ``[N, D]`` (of an independent classifier)."""

    images: np.ndarray
    features: np.ndarray

    @classmethod
    def concatenate(cls, faces: Sequence[Faces]) -> Faces:
        """The faces of ``faces`` one after another."""
        return cls(*(np.concatenate(parts) for parts in zip(*faces)))


def _set_quality(generated: Faces, val: Faces, train: Faces, *, kid_subsets: int,
                 kid_subset_size: int, k: int, seed: int) -> dict:
    """KID against val (and train against val: the floor) with subsets of at most half the
    smaller set (so the interval has a spread), precision/recall against val (None when a set
    has no more than ``k`` samples: no k-th neighbour), memorization in pixels."""
    def kid_of(a: Faces, b: Faces) -> dict:
        size = max(2, min(kid_subset_size, len(a.features) // 2, len(b.features) // 2))
        return kid(a.features, b.features, subsets=kid_subsets, subset_size=size, seed=seed)

    enough = min(len(val.features), len(generated.features)) > k
    return {"kid": kid_of(generated, val), "kid_floor": kid_of(train, val),
            **(precision_recall(val.features, generated.features, k=k) if enough
               else {"precision": None, "recall": None}),
            "memorization": memorization(generated.images, train.images, val.images)}


def quality_report(generated: dict[str, Faces], val: dict[str, Faces], train: dict[str, Faces],
                   *, kid_subsets: int = 100, kid_subset_size: int = 1000, k: int = 3,
                   seed: int = 0) -> dict:
    """``{"per_class": {class: metrics}, "overall": metrics of the classes pooled}`` for the
    classes of ``generated`` (each also in ``val`` and ``train``); metrics: ``kid`` (against
    val), ``kid_floor`` (train against val: real vs real), ``precision`` and ``recall`` (against
    val), ``memorization`` (pixels; overall indices count through the classes' images
    concatenated in ``generated``'s order)."""
    settings = {"kid_subsets": kid_subsets, "kid_subset_size": kid_subset_size, "k": k,
                "seed": seed}
    names = list(generated)
    return {"per_class": {c: _set_quality(generated[c], val[c], train[c], **settings)
                          for c in names},
            "overall": _set_quality(*(Faces.concatenate([source[c] for c in names])
                                      for source in (generated, val, train)), **settings)}


def gan_eval_json(workdir, quality: dict, sensitivity: dict, *, fer_metrics: dict | None = None,
                  cas: dict | None = None) -> dict:
    """Writes and returns ``<workdir>/gan_eval.json``: per class and overall, the
    :func:`quality_report` metrics, ``label_sensitivity`` (:func:`label_sensitivity`), when
    given FER-FID and recognizability (``fer_metrics``: a
    :func:`gan.metrics.evaluate_generators` report) and ``cas`` (``cas``:
    :func:`gan.metrics.classification_accuracy_score`; overall its accuracy, beside
    ``cas_macro_f1``, per class its recall, each also as ``cas_real_reference``: the same
    trained on real faces; None when not given)."""
    fer_metrics = fer_metrics or {"per_class": {}, "overall": {}}
    cas = cas or {}
    reference = cas.get("real_reference", {})
    per_class = {name: {**values, **fer_metrics["per_class"].get(name, {}),
                        "label_sensitivity": sensitivity["per_class"].get(name),
                        "label_sensitivity_ci": sensitivity["per_class_ci"].get(name),
                        "cas": cas.get("cas_recall", {}).get(name),
                        "cas_real_reference": reference.get("cas_recall", {}).get(name)}
                 for name, values in quality["per_class"].items()}
    overall = {**quality["overall"], **fer_metrics["overall"],
               "label_sensitivity": sensitivity["overall"],
               "label_sensitivity_ci": sensitivity["overall_ci"],
               "label_sensitivity_every_label": sensitivity["every_label"],
               "cas": cas.get("cas"), "cas_macro_f1": cas.get("cas_macro_f1"),
               "cas_real_reference": reference.get("cas"),
               "cas_real_reference_macro_f1": reference.get("cas_macro_f1")}
    provenance = {key: value for key, value in fer_metrics.items()
                  if key not in ("per_class", "overall")}
    report = {**provenance, "label_sensitivity_setup": {key: sensitivity[key]
                                                         for key in ("latents", "seed")},
              "per_class": per_class, "overall": overall}
    path = pathlib.Path(workdir) / GAN_EVAL
    path.parent.mkdir(parents=True, exist_ok=True)
    run_guard.write_json(path, report)
    return report


# ----------------------------------------------------------------------------- summaries
def kid_ratios(report: dict) -> dict[str, float | None]:
    """Per class of a :func:`gan_eval_json` report: its KID over its real-vs-real KID floor
    (None where the floor is not positive: no ratio to read)."""
    return {name: values["kid"]["kid"] / values["kid_floor"]["kid"]
            if values["kid_floor"]["kid"] > 0 else None
            for name, values in report["per_class"].items()}


def summary_row(report: dict, *, kid_ratio: float) -> dict:
    """The headline numbers of a :func:`gan_eval_json` report: truncation, what val was
    (``data``), CAS with its real reference, label sensitivity with its interval,
    recognizability, precision / recall, FER-FID with its floor, KID with its interval, the
    classes whose KID is more than ``kid_ratio`` times their floor (worst first), and
    memorisation."""
    overall = report["overall"]
    ratios = kid_ratios(report)
    outside = sorted(((ratio, name) for name, ratio in ratios.items()
                      if ratio is None or ratio > kid_ratio),
                     key=lambda pair: -np.inf if pair[0] is None else -pair[0])
    return {"data": report.get("data"), "truncation": report.get("truncation"),
            "cas": overall.get("cas"), "cas_real_reference": overall.get("cas_real_reference"),
            "label_sensitivity": overall["label_sensitivity"],
            "label_sensitivity_ci": overall.get("label_sensitivity_ci"),
            "recognizability": overall.get("recognizability"),
            "precision": overall["precision"], "recall": overall["recall"],
            "fid": overall.get("fid"), "fid_floor": overall.get("fid_floor"),
            "kid": overall["kid"]["kid"], "kid_ci": overall["kid"]["ci"],
            "classes": len(ratios), "outside_kid_ratio": [name for _, name in outside],
            "kid_ratios": ratios,
            "memorization_ratio": overall["memorization"]["ratio"],
            "near_copies": overall["memorization"]["near_copies"]}


def read_gan_eval(path) -> dict:
    """The report of a ``gan_eval.json`` file or of a run directory holding one; FerError
    naming the file when it is missing or not such a report."""
    path = pathlib.Path(path)
    path = path / GAN_EVAL if path.is_dir() else path
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise FerError(f"{path}: no such file (a gan_eval.json or a GAN run directory)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise FerError(f"{path}: not JSON ({error})") from None
    if not isinstance(report, dict) or not {"per_class", "overall"} <= report.keys():
        raise FerError(f"{path}: not a gan_eval.json report (no per_class and overall)")
    return report
