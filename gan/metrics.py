"""How good are generated faces, measured with a classifier trained on real FER-2013.

* FER-FID: Fréchet distance between the Gaussians fitted to real and to generated images in
  the classifier's penultimate features (Heusel et al. 2017, with a FER classifier in place of
  Inception), per class and overall, printed beside the real-vs-real floor (training images of
  a class against validation images of the same class): a GAN cannot be expected to beat it.
* Recognizability: the share of generated images of class c that the classifier assigns to c,
  beside the classifier's recall on real validation images of c.
* CAS (classification accuracy score, Ravuri & Vinyals 2019): validation accuracy of a
  classifier trained on generated images only.
"""

from __future__ import annotations

import ml_collections
import numpy as np

from fer_jax import classes
from fer_jax.classes import EMOTION_INDEX, EMOTIONS
from fer_jax.data.dataset import FerData, Split
from fer_jax.errors import FerError
from fer_jax.inference import Classifier
from fer_jax.runtime import progress_bar
from fer_jax.train import train_and_evaluate
from gan.sample import Generators


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[D]`` and covariance ``[D, D]`` (float64) of features ``[N, D]``, N >= 2."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"need features [N>=2, D], got {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """``||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))`` for Gaussians N(mu1, S1), N(mu2, S2).

    ``tr (S1 S2)^(1/2)`` is computed as ``tr (S1^(1/2) S2 S1^(1/2))^(1/2)``: the same
    eigenvalues, but of a symmetric PSD matrix, so two ``eigh`` calls replace ``sqrtm``.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1 = np.atleast_2d(sigma1).astype(np.float64)
    sigma2 = np.atleast_2d(sigma2).astype(np.float64)
    root1 = _psd_sqrt(sigma1)
    inner = root1 @ sigma2 @ root1
    cross = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0.0, None)))
    distance = np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * cross
    return float(max(distance, 0.0))


def features_fid(features_a, features_b) -> float:
    """Fréchet distance between two feature sets ``[N, D]``."""
    return frechet_distance(*feature_statistics(features_a), *feature_statistics(features_b))


# ----------------------------------------------------------------------------- evaluation
def _features_by_class(classifier: Classifier, split: Split, names: list[str], *,
                       predict: bool) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """``{class: (features [n, D], predicted grouping index [n] or None)}`` of ``split``'s
    images of ``names``; the predictions only when ``predict``."""
    wanted = np.isin(split.labels, [EMOTION_INDEX[c] for c in names])
    images, labels = split.images[wanted], split.labels[wanted]
    features = classifier.features(images)
    predicted = classifier.probabilities(images).argmax(-1) if predict else None
    return {c: (features[labels == EMOTION_INDEX[c]],
                None if predicted is None else predicted[labels == EMOTION_INDEX[c]])
            for c in names}


def evaluate_generators(generators: Generators, data: FerData, classifier: Classifier, *,
                        samples_per_class: int, seed: int = 0, truncation: float = 0.0) -> dict:
    """FER-FID and recognizability of every class ``generators`` make (and ``classifier``
    knows), beside the real-vs-real floor and the classifier's recall on real val images.

    Per class c with ``n`` validation images: FID(generated, train) uses ``n`` generated
    images, so it shares the estimator's small-sample bias with the floor FID(val, train).
    Recognizability uses ``max(n, samples_per_class)`` generated images. "overall" pools the
    classes (the generated pool then has the val class mix) and averages the shares.
    ``truncation`` > 0 samples truncated latents (``gan.train.latents``).
    """
    train, val = data.split("train"), data.split("val")
    val_counts = val.counts()
    names = [c for c in generators.classes
             if classifier.grouping.covers([EMOTION_INDEX[c]])[0] and val_counts[c] > 1]
    if not names:
        raise FerError(f"{generators.workdir}: none of its classes {list(generators.classes)} is "
                       f"both known to {classifier.description} and in the val split of "
                       f"{data.source}")
    with progress_bar(4, 0, "GAN metrics (sample, train, val, generated)") as bar:
        fake = generators.sample({c: max(val_counts[c], samples_per_class) for c in names},
                                 seed, truncation)
        bar.update()
        features = []
        for split, predict in ((train, False), (val, True), (fake, True)):
            features.append(_features_by_class(classifier, split, names, predict=predict))
            bar.update()
    real_train, real_val, generated = features
    per_class = {}
    for c in names:
        target = classifier.grouping.encode([EMOTION_INDEX[c]])[0]
        n = val_counts[c]
        per_class[c] = {
            "fid": features_fid(generated[c][0][:n], real_train[c][0]),
            "fid_floor": features_fid(real_val[c][0], real_train[c][0]),
            "recognizability": float(np.mean(generated[c][1] == target)),
            "real_recall": float(np.mean(real_val[c][1] == target)),
            "n_val": n, "n_generated": len(generated[c][1]),
        }
    train_pool = np.concatenate([real_train[c][0] for c in names])
    overall = {
        "fid": features_fid(np.concatenate([generated[c][0][:val_counts[c]] for c in names]),
                            train_pool),
        "fid_floor": features_fid(np.concatenate([real_val[c][0] for c in names]), train_pool),
        "recognizability": float(np.mean([v["recognizability"] for v in per_class.values()])),
        "real_recall": float(np.mean([v["real_recall"] for v in per_class.values()])),
    }
    return {"classifier": classifier.description, "data": data.source,
            "synthetic_data": data.synthetic, "seed": seed, "truncation": truncation,
            "per_class": per_class, "overall": overall}


def judged_shares(classifier: Classifier, generated: Split) -> dict[str, dict[str, float]]:
    """``{generated class: {class of classifier: share}}``: how ``classifier`` labels the
    generated images of each class (rows sum to 1)."""
    predicted = classifier.probabilities(generated.images, progress="judge").argmax(-1)
    names = classifier.grouping.class_names
    return {name: {judged: float(np.mean(predicted[generated.labels == EMOTION_INDEX[name]]
                                         == index)) for index, judged in enumerate(names)}
            for name, count in generated.counts().items() if count}


def recognizability_gate(shares: dict[str, dict[str, float]], threshold: float) -> dict:
    """Per generated class c of :func:`judged_shares`: ``recognizability`` (share of its
    images judged c), ``precision`` (of the images judged c, the share generated as c, each
    generated class weighted equally: 1/K when the judge cannot tell K classes apart) and
    ``kept``: both at least ``threshold``."""
    gate = {}
    for name, row in shares.items():
        judged_as = sum(other.get(name, 0.0) for other in shares.values())
        recognizability = row.get(name, 0.0)
        precision = recognizability / judged_as if judged_as else 0.0
        gate[name] = {"recognizability": recognizability, "precision": precision,
                      "kept": recognizability >= threshold and precision >= threshold}
    return gate


def classification_accuracy_score(generators: Generators, data: FerData,
                                  classifier_config: ml_collections.ConfigDict, workdir, *,
                                  samples_per_class: int, seed: int = 0) -> dict:
    """CAS: accuracy on ``data``'s real val split of ``classifier_config`` trained (in
    ``workdir``, resumable) on ``samples_per_class`` generated images of each of its classes
    only. ``{"cas", "cas_macro_f1", "workdir", "interrupted"}``; only ``interrupted`` (the
    signal) and ``workdir`` when SIGTERM/SIGINT stopped the training."""
    grouping = classes.grouping(classifier_config.grouping)
    needed = [EMOTIONS[label] for label in grouping.canonical_labels]
    missing = [name for name in needed if name not in generators.classes]
    if missing:
        raise FerError(f"{generators.workdir}: CAS for grouping {grouping.name!r} needs "
                       f"generators for {missing}")
    generated = generators.sample({name: samples_per_class for name in needed}, seed)
    splits = {"train": generated, "val": data.split("val")}
    fake_data = FerData(splits, source=f"GAN samples of {generators.workdir} (val: {data.source})",
                        synthetic=data.synthetic)
    summary = train_and_evaluate(classifier_config, workdir, data=fake_data)
    if summary["interrupted"]:
        return {"interrupted": summary["interrupted"], "workdir": str(workdir)}
    return {"cas": summary["val_accuracy"], "cas_macro_f1": summary["val_macro_f1"],
            "workdir": str(workdir), "interrupted": None}


def format_comparison(reports: dict[str, dict]) -> str:
    """Table of :func:`evaluate_generators` reports (``{model name: report}``), one row per
    model and class: FER-FID beside the real-vs-real floor, recognizability beside the
    classifier's recall on real val images."""
    header = (f"{'model':<16}{'class':<10}{'FER-FID':>9}{'floor':>9}{'recognized':>12}"
              f"{'real recall':>13}")
    lines = [header, "-" * len(header)]
    for name, report in reports.items():
        for row, values in [*report["per_class"].items(), ("overall", report["overall"])]:
            lines.append(f"{name:<16}{row:<10}{values['fid']:>9.2f}{values['fid_floor']:>9.2f}"
                         f"{values['recognizability']:>12.1%}{values['real_recall']:>13.1%}")
    return "\n".join(lines)
