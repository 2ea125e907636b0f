"""How good are generated faces, measured with a classifier trained on real FER-2013.

* FER-FID: Fréchet distance between the Gaussians fitted to real **validation** images and to
  generated images in the classifier's penultimate features (Heusel et al. 2017, with a FER
  classifier in place of Inception), per class and overall, printed beside the real-vs-real
  floor (training images of a class against validation images of the same class): a GAN
  cannot be expected to beat it. The reference is val, not train: the GAN never saw it.
* Recognizability: the share of generated images of class c that the classifier assigns to c,
  beside the classifier's recall on real validation images of c.
* CAS (classification accuracy score, Ravuri & Vinyals 2019): validation accuracy of a
  classifier trained on generated images only, beside its real-data reference: the same
  classifier, budget and class counts trained on real training images (what the protocol
  reaches with perfect generated faces).
"""

from __future__ import annotations

import json
import pathlib
from typing import NamedTuple

import ml_collections
import numpy as np

from fer_jax import classes
from fer_jax.classes import EMOTION_INDEX, EMOTIONS
from fer_jax.data.dataset import FerData, Split
from fer_jax.errors import FerError
from fer_jax.inference import Classifier
from fer_jax.runtime import progress_bar
from fer_jax.train import train_and_evaluate
from gan.quality import Faces
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
class FaceSets(NamedTuple):
    """Per class: the faces (images, features of the classifier) of the real train and val
    splits and of the generated samples, and the classifier's predicted grouping index of each
    val and generated face."""

    train: dict[str, Faces]
    val: dict[str, Faces]
    generated: dict[str, Faces]
    val_predicted: dict[str, np.ndarray]
    generated_predicted: dict[str, np.ndarray]


def evaluated_classes(generators: Generators, data: FerData, classifier: Classifier) -> list[str]:
    """The classes ``generators`` make that ``classifier`` knows and ``data``'s val split holds
    2+ images of; FerError when there are none."""
    val_counts = data.split("val").counts()
    names = [c for c in generators.classes
             if classifier.grouping.covers([EMOTION_INDEX[c]])[0] and val_counts[c] > 1]
    if not names:
        raise FerError(f"{generators.workdir}: none of its classes {list(generators.classes)} is "
                       f"both known to {classifier.description} and in the val split of "
                       f"{data.source}")
    return names


def _faces_by_class(classifier: Classifier, split: Split, names: list[str], *,
                    predict: bool) -> tuple[dict[str, Faces], dict[str, np.ndarray]]:
    """``({class: Faces}, {class: predicted grouping indices})`` of ``split``'s images of
    ``names``; the predictions only when ``predict`` (else ``{}``)."""
    wanted = np.isin(split.labels, [EMOTION_INDEX[c] for c in names])
    images, labels = split.images[wanted], split.labels[wanted]
    features = classifier.features(images)
    members = {c: labels == EMOTION_INDEX[c] for c in names}
    faces = {c: Faces(images[member], features[member]) for c, member in members.items()}
    if not predict:
        return faces, {}
    predicted = classifier.probabilities(images).argmax(-1)
    return faces, {c: predicted[member] for c, member in members.items()}


def face_sets(generators: Generators, data: FerData, classifier: Classifier, names: list[str],
              *, samples_per_class: int, seed: int, truncation: float) -> FaceSets:
    """The :class:`FaceSets` of ``names``: ``max(n_val, samples_per_class)`` generated faces
    per class (``generators.sample`` with ``seed`` and ``truncation``)."""
    val_counts = data.split("val").counts()
    with progress_bar(4, 0, "GAN faces (sample, train, val, generated)") as bar:
        fake = generators.sample({c: max(val_counts[c], samples_per_class) for c in names},
                                 seed, truncation)
        bar.update()
        embedded = []
        for split, predict in ((data.split("train"), False), (data.split("val"), True),
                               (fake, True)):
            embedded.append(_faces_by_class(classifier, split, names, predict=predict))
            bar.update()
    (train, _), (val, val_predicted), (generated, generated_predicted) = embedded
    return FaceSets(train, val, generated, val_predicted, generated_predicted)


def fer_scores(sets: FaceSets, classifier: Classifier, *, seed: int = 0) -> dict:
    """FER-FID against **val** and recognizability of :class:`FaceSets`, per class and overall
    (see :func:`evaluate_generators`); ``seed`` draws the training faces of the floor."""
    rng = np.random.default_rng(seed)
    per_class, floor_train = {}, {}
    for c, val in sets.val.items():
        target = classifier.grouping.encode([EMOTION_INDEX[c]])[0]
        n = len(val.features)
        train = sets.train[c].features
        floor_train[c] = train[rng.choice(len(train), min(n, len(train)), replace=False)]
        per_class[c] = {
            "fid": features_fid(sets.generated[c].features[:n], val.features),
            "fid_floor": features_fid(floor_train[c], val.features),
            "recognizability": float(np.mean(sets.generated_predicted[c] == target)),
            "real_recall": float(np.mean(sets.val_predicted[c] == target)),
            "n_val": n, "n_generated": len(sets.generated[c].features),
        }
    val_pool = np.concatenate([val.features for val in sets.val.values()])
    overall = {
        "fid": features_fid(np.concatenate([sets.generated[c].features[:len(val.features)]
                                            for c, val in sets.val.items()]), val_pool),
        "fid_floor": features_fid(np.concatenate(list(floor_train.values())), val_pool),
        "recognizability": float(np.mean([v["recognizability"] for v in per_class.values()])),
        "real_recall": float(np.mean([v["real_recall"] for v in per_class.values()])),
    }
    return {"per_class": per_class, "overall": overall}


def evaluate_generators(generators: Generators, data: FerData, classifier: Classifier, *,
                        samples_per_class: int, seed: int = 0, truncation: float = 0.0,
                        sets: FaceSets | None = None) -> dict:
    """FER-FID and recognizability of every class ``generators`` make (and ``classifier``
    knows), beside the real-vs-real floor and the classifier's recall on real val images.

    FER-FID is measured against the **val** split (unseen by the GAN; FID against train would
    reward copying it). Per class c with ``n`` validation images: FID(generated, val) uses
    ``n`` generated images and the floor FID(train, val) ``n`` training images drawn with
    ``seed``, so both share the estimator's small-sample bias. Recognizability uses
    ``max(n, samples_per_class)`` generated images. "overall" pools the classes (each pool then
    has the val class mix) and averages the shares. ``truncation`` > 0 samples truncated
    latents (``gan.train.latents``). ``sets``: the :func:`face_sets` of these arguments when
    already computed.
    """
    if sets is None:
        sets = face_sets(generators, data, classifier,
                         evaluated_classes(generators, data, classifier),
                         samples_per_class=samples_per_class, seed=seed, truncation=truncation)
    return {"classifier": classifier.description, "data": data.source,
            "synthetic_data": data.synthetic, "seed": seed, "truncation": truncation,
            "fid_reference": "val", **fer_scores(sets, classifier, seed=seed)}


def judge(classifier: Classifier, generated: Split) -> np.ndarray:
    """``[N]``: the index (in ``classifier.grouping``) of the class ``classifier`` assigns to
    each generated image; one pass, for :func:`judged_shares` and :func:`recognized` alike."""
    return classifier.probabilities(generated.images, progress="judge").argmax(-1)


def judged_shares(classifier: Classifier, generated: Split,
                  predicted: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """``{generated class: {class of classifier: share}}``: how ``classifier`` labels the
    generated images of each class (rows sum to 1). ``predicted``: :func:`judge`'s output when
    already computed."""
    predicted = judge(classifier, generated) if predicted is None else predicted
    names = classifier.grouping.class_names
    return {name: {judged: float(np.mean(predicted[generated.labels == EMOTION_INDEX[name]]
                                         == index)) for index, judged in enumerate(names)}
            for name, count in generated.counts().items() if count}


def recognized(classifier: Classifier, generated: Split,
               predicted: np.ndarray | None = None) -> np.ndarray:
    """Boolean ``[N]``: ``classifier`` assigns each generated image to the class it was
    generated as (a per-face filter; classes outside its grouping are never recognized).
    ``predicted``: :func:`judge`'s output when already computed."""
    predicted = judge(classifier, generated) if predicted is None else predicted
    return classifier.grouping.encode(generated.labels) == predicted


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
    only, and its real-data reference: the same trained (in ``workdir/real_reference``) on
    ``samples_per_class`` real training images of each class (drawn with replacement where a
    class has fewer). ``{"cas", "cas_macro_f1", "cas_recall": {class: its val recall},
    "real_reference": {"cas", "cas_macro_f1", "cas_recall"}, "workdir", "interrupted"}``; only
    ``interrupted`` (the signal) and ``workdir`` when SIGTERM/SIGINT stopped a training."""
    grouping = classes.grouping(classifier_config.grouping)
    needed = [EMOTIONS[label] for label in grouping.canonical_labels]
    missing = [name for name in needed if name not in generators.classes]
    if missing:
        raise FerError(f"{generators.workdir}: CAS for grouping {grouping.name!r} needs "
                       f"generators for {missing}")
    generated = generators.sample({name: samples_per_class for name in needed}, seed)
    real = balanced_real_sample(data.split("train"), needed, samples_per_class, seed)
    runs = {"generated": (generated, f"GAN samples of {generators.workdir}", workdir),
            "real_reference": (real, f"{samples_per_class} real training faces per class",
                               pathlib.Path(workdir) / "real_reference")}
    scores = {}
    for name, (train, source, run_dir) in runs.items():
        scores[name] = _val_scores(classifier_config, train, source, data, run_dir)
        if "interrupted" in scores[name]:  # stop at once: the rerun resumes here
            return {**scores[name], "workdir": str(workdir)}
    return {**scores["generated"], "real_reference": scores["real_reference"],
            "workdir": str(workdir), "interrupted": None}


def _val_scores(classifier_config: ml_collections.ConfigDict, train: Split, source: str,
                data: FerData, workdir) -> dict:
    """``classifier_config`` trained (resumable, in ``workdir``) on ``train`` and scored on
    ``data``'s val split: ``{"cas", "cas_macro_f1", "cas_recall": {class: its recall}}``, or
    ``{"interrupted": signal}`` when SIGTERM/SIGINT stopped the training."""
    split_data = FerData({"train": train, "val": data.split("val")},
                         source=f"{source} (val: {data.source})", synthetic=data.synthetic)
    summary = train_and_evaluate(classifier_config, workdir, data=split_data)
    if summary["interrupted"]:
        return {"interrupted": summary["interrupted"]}
    val_report = json.loads((pathlib.Path(workdir) / "report.json").read_text())["reports"]["val"]
    return {"cas": summary["val_accuracy"], "cas_macro_f1": summary["val_macro_f1"],
            "cas_recall": {name: values["recall"]
                           for name, values in val_report["per_class"].items()}}


def balanced_real_sample(train: Split, class_names, per_class: int, seed: int) -> Split:
    """``per_class`` images of each of ``class_names`` from ``train`` (seeded; with
    replacement only for a class with fewer images), in class order."""
    rng = np.random.default_rng(seed)
    indices = []
    for name in class_names:
        rows = np.flatnonzero(train.labels == EMOTION_INDEX[name])
        if not len(rows):
            raise FerError(f"CAS real-data reference: no training images of {name!r}")
        indices.append(rng.choice(rows, per_class, replace=len(rows) < per_class))
    indices = np.concatenate(indices)
    return Split(train.images[indices], train.labels[indices])


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
