"""GAN input pipeline: the data a config names, and class-weighted batches drawn from it.

Batches are indices into the class-sorted training images (which the training loop keeps on
the device), class labels and one PRNG key per example: a pure function of ``(seed, step)``.
Classes are drawn uniformly (a face of a class of n images is seen ∝ 1/n: in FER-2013 a disgust
face ~16x as often as a happy one) or ∝ √n (a face ∝ 1/√n: ~4x; disgust makes ~5% of the draws
instead of 14%, its share of the faces being 1.5%).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fer_jax.classes import EMOTION_INDEX
from fer_jax.data.dataset import Split
from fer_jax.errors import FerDataError, FerError

CLASS_SAMPLINGS = ("uniform", "sqrt")


def class_probabilities(counts, class_sampling: str) -> np.ndarray:
    """float64 probabilities of drawing each class of ``counts`` (images per class):
    ``"uniform"`` equal, ``"sqrt"`` ∝ √count. FerError for another ``class_sampling``."""
    counts = np.asarray(counts, np.float64)
    if class_sampling not in CLASS_SAMPLINGS:
        raise FerError(f"unknown class_sampling {class_sampling!r}; expected one of "
                       f"{CLASS_SAMPLINGS}")
    weights = np.ones_like(counts) if class_sampling == "uniform" else np.sqrt(counts)
    return weights / weights.sum()


@dataclasses.dataclass(frozen=True)
class BalancedBatches:
    """Class-weighted batches of one split, as indices into its class-sorted images.

    Each example draws a class of ``classes`` with ``probabilities`` (see
    :func:`class_probabilities`), then an image of that class; batch ``step`` is a pure
    function of ``(seed, step)``.
    """

    images: np.ndarray       # uint8 [N, 48, 48], sorted by label
    offsets: np.ndarray      # int64 [7]: first index of each canonical class
    counts: np.ndarray       # int64 [7]: images per canonical class
    classes: np.ndarray      # int32: canonical labels drawn from
    probabilities: np.ndarray  # float64: the chance of drawing each of ``classes``
    batch_size: int
    seed: int

    @classmethod
    def from_split(cls, split: Split, classes, batch_size: int, seed: int,
                   source: str = "training data",
                   class_sampling: str = "uniform") -> BalancedBatches:
        order = np.argsort(split.labels, kind="stable")
        counts = np.bincount(split.labels, minlength=len(EMOTION_INDEX))
        missing = [name for name in classes if counts[EMOTION_INDEX[name]] == 0]
        if missing:
            raise FerDataError(f"no training images of class(es) {missing} to train a GAN on",
                               path=source)
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        labels = np.array([EMOTION_INDEX[name] for name in classes], np.int32)
        return cls(split.images[order], offsets, counts, labels,
                   class_probabilities(counts[labels], class_sampling), batch_size, seed)

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """``{"image_index": int32 [B], "label": int32 [B], "key": uint32 [B, 2]}``."""
        rng = np.random.default_rng((self.seed, step))
        uniform = np.all(self.probabilities == self.probabilities[0])
        # uniform: drawn without p, as before classes could be weighted (the same batches)
        labels = rng.choice(self.classes, self.batch_size,
                            p=None if uniform else self.probabilities)
        within = np.floor(rng.random(self.batch_size) * self.counts[labels]).astype(np.int64)
        return {"image_index": (self.offsets[labels] + within).astype(np.int32),
                "label": labels.astype(np.int32),
                "key": rng.integers(0, 2**32, (self.batch_size, 2), dtype=np.uint32)}
