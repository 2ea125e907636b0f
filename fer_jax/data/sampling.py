"""Class-balanced sampling of the training set, optionally topped up with GAN images.

Everything here returns index arrays into one image pool; images are never copied per
epoch. Sampling is seeded and deterministic.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from collections.abc import Iterable

import numpy as np

from fer_jax.classes import EMOTION_INDEX, EMOTIONS, NUM_EMOTIONS, Grouping
from fer_jax.data.dataset import IMAGE_SIZE, Split
from fer_jax.errors import FerDataError

ClassesArg = Grouping | Iterable[int | str] | None


@dataclasses.dataclass(frozen=True)
class TrainingMix:
    """Real and synthetic training images in one pool, and what to draw from it per epoch.

    Attributes:
      pool: real images followed by synthetic ones (concatenated once).
      indices: int64 indices into ``pool``, one epoch's sample, shuffled.
      is_synthetic: bool ``[len(pool)]``, True for the synthetic part of the pool.
      classes: the canonical labels sampled, ascending.
    """

    pool: Split
    indices: np.ndarray
    is_synthetic: np.ndarray
    classes: tuple[int, ...]

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def summary(self) -> dict[str, dict[str, int]]:
        """``{class_name: {"real", "synthetic", "sampled", "sampled_synthetic"}}``: images
        available per source, and per-epoch draws in total and from the synthetic part."""
        labels = self.pool.labels
        sampled_labels = labels[self.indices]
        sampled_synthetic = self.is_synthetic[self.indices]
        return {EMOTIONS[c]: {
            "real": int(np.sum((labels == c) & ~self.is_synthetic)),
            "synthetic": int(np.sum((labels == c) & self.is_synthetic)),
            "sampled": int(np.sum(sampled_labels == c)),
            "sampled_synthetic": int(np.sum((sampled_labels == c) & sampled_synthetic)),
        } for c in self.classes}


def oversample_indices(labels: np.ndarray, *, seed: int, target_per_class: int | None = None,
                       classes: ClassesArg = None) -> np.ndarray:
    """Shuffled int64 indices into ``labels`` with ``target_per_class`` draws per class.

    A class with at most ``target`` examples keeps all of them plus extras drawn with
    replacement; a larger class is subsampled without replacement. ``target`` defaults to the
    largest count among ``classes`` (canonical labels or names, or a Grouping; default: the
    classes present). Labels outside ``classes`` are never drawn; a requested class with no
    examples contributes nothing.
    """
    labels = _check_labels(labels, "labels")
    kept = _resolve_classes(classes, labels)
    per_class = [np.flatnonzero(labels == c) for c in kept]
    target = _resolve_target(target_per_class, [len(idx) for idx in per_class])
    rng = np.random.default_rng(seed)
    drawn = [_draw(rng, idx, target) for idx in per_class]
    return _shuffled(rng, drawn)


def mean_class_count(labels: np.ndarray, classes: ClassesArg = None) -> int:
    """Average count per class among ``classes``, by the same class rules as
    :func:`oversample_indices` (canonical labels, also inside a Grouping that merges them): as
    ``target_per_class`` it gives balanced epochs as long as the data they draw from."""
    labels = _check_labels(labels, "labels")
    kept = _resolve_classes(classes, labels)
    return max(1, round(int(np.isin(labels, kept).sum()) / len(kept)))


SYNTHETIC_BALANCES = ("gap", "equal")


def build_training_mix(real: Split, synthetic: Split | None = None, *, oversample: bool = True,
                       target_per_class: int | None = None, max_synthetic_share: float = 0.5,
                       classes: ClassesArg = None, seed: int | tuple[int, ...] = 0,
                       synthetic_balance: str = "gap") -> TrainingMix:
    """Pools real and synthetic images and draws one epoch's class-balanced sample.

    Per class, with ``target`` defaulting to the largest real class count among ``classes``:
    synthetic images are capped so they are at most ``max_synthetic_share`` of that class's
    draws, and with ``synthetic_balance``

    * ``"gap"``: they fill the gap between the real count and ``target`` (minority classes
      only: a class at the target gets none);
    * ``"equal"``: every class with synthetic images gets the same number of them, the
      smallest class's capped count (no class is "the GAN-looking one").

    Then, with ``oversample``, real images are drawn (:func:`oversample_indices` rules) up to
    ``target``. Without ``oversample`` a class gets all its real images plus the synthetic ones.
    """
    if synthetic_balance not in SYNTHETIC_BALANCES:
        raise ValueError(f"synthetic_balance must be one of {SYNTHETIC_BALANCES}, got "
                         f"{synthetic_balance!r}")
    if not isinstance(real, Split):
        raise TypeError(f"real must be a Split, got {type(real).__name__}")
    if len(real) == 0:
        raise ValueError("the real training split is empty")
    if synthetic is not None and not isinstance(synthetic, Split):
        raise TypeError(f"synthetic must be a Split (uint8 [N,48,48] images, int32 labels) or "
                         f"None, got {type(synthetic).__name__}")
    if not 0.0 <= max_synthetic_share <= 1.0:
        raise ValueError(f"max_synthetic_share must be in [0, 1], got {max_synthetic_share}")
    synthetic = synthetic if synthetic is not None else Split.empty()
    real_labels = _check_labels(real.labels, "real labels")
    synthetic_labels = _check_labels(synthetic.labels, "synthetic labels")

    pool = Split(np.concatenate([real.images, synthetic.images]),
                 np.concatenate([real.labels, synthetic.labels]))
    is_synthetic = np.arange(len(pool)) >= len(real)
    kept = _resolve_classes(classes, real_labels)
    real_per_class = [np.flatnonzero(real_labels == c) for c in kept]
    synthetic_per_class = [np.flatnonzero(synthetic_labels == c) + len(real) for c in kept]
    target = _resolve_target(target_per_class, [len(idx) for idx in real_per_class])

    def synthetic_count(real_idx, synthetic_idx) -> int:
        num_real = len(real_idx)
        if oversample and num_real:
            cap = int(np.floor(max_synthetic_share * target + 1e-9))
        elif max_synthetic_share >= 1.0:
            cap = len(synthetic_idx)
        else:  # num_synthetic <= share * (num_real + num_synthetic)
            cap = int(np.floor(max_synthetic_share * num_real / (1.0 - max_synthetic_share)
                               + 1e-9))
        gap = max(target - num_real, 0) if synthetic_balance == "gap" else len(synthetic_idx)
        return min(len(synthetic_idx), gap, cap)

    counts = [synthetic_count(r, s) for r, s in zip(real_per_class, synthetic_per_class)]
    if synthetic_balance == "equal":  # over the classes with real and synthetic faces
        both = [len(r) > 0 and len(s) > 0 for r, s in zip(real_per_class, synthetic_per_class)]
        equal = min((n for n, b in zip(counts, both) if b), default=0)
        counts = [equal if b else 0 for b in both]

    rng = np.random.default_rng(seed)
    drawn = []
    for real_idx, synthetic_idx, num_synthetic in zip(real_per_class, synthetic_per_class, counts):
        drawn.append(rng.choice(synthetic_idx, num_synthetic, replace=False))
        drawn.append(_draw(rng, real_idx, target - num_synthetic) if oversample else real_idx)
    return TrainingMix(pool=pool, indices=_shuffled(rng, drawn), is_synthetic=is_synthetic,
                       classes=kept)


def load_synthetic_npz(path: str | os.PathLike) -> Split:
    """Reads GAN samples saved as ``.npz`` with ``images`` uint8 ``[N, 48, 48]`` (a trailing
    channel of 1 is accepted) and integer ``labels`` ``[N]`` in 0..6 (canonical).

    Raises:
      FerDataError naming the file when it is missing, unreadable or malformed.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FerDataError("no such file", path=path)
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise FerDataError("not an .npz archive (holds a single array)", path=path)
        with archive:
            missing = sorted({"images", "labels"} - set(archive.files))
            if missing:
                raise FerDataError(f"missing arrays {missing}; found {sorted(archive.files)}",
                                   path=path)
            images, labels = archive["images"], archive["labels"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise FerDataError(f"not a readable .npz archive ({error})", path=path) from None

    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.dtype != np.uint8 or images.ndim != 3 or \
            images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise FerDataError(f"images must be uint8 [N,48,48], got {images.dtype} "
                           f"{list(images.shape)}", path=path, record="images")
    if not np.issubdtype(labels.dtype, np.integer) or labels.shape != (images.shape[0],):
        raise FerDataError(f"labels must be integers [N={images.shape[0]}], got {labels.dtype} "
                           f"{list(labels.shape)}", path=path, record="labels")
    bad = np.flatnonzero((labels < 0) | (labels >= NUM_EMOTIONS))
    if bad.size:
        raise FerDataError(f"label {int(labels[bad[0]])} at index {int(bad[0])} is outside "
                           f"0..{NUM_EMOTIONS - 1} ({bad.size} such labels)", path=path,
                           record="labels")
    return Split(images, labels.astype(np.int32))


def _check_labels(labels, what: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not (labels.size == 0 or np.issubdtype(labels.dtype, np.integer)):
        raise ValueError(f"{what} must be a 1-D integer array, got {labels.dtype} "
                         f"{list(labels.shape)}")
    bad = np.flatnonzero((labels < 0) | (labels >= NUM_EMOTIONS))
    if bad.size:
        raise FerDataError(f"{what}: label {int(labels[bad[0]])} at index {int(bad[0])} is "
                           f"outside 0..{NUM_EMOTIONS - 1}")
    return labels


def _resolve_classes(classes: ClassesArg, labels: np.ndarray) -> tuple[int, ...]:
    """Canonical labels to sample, ascending: all present ones by default."""
    if classes is None:
        return tuple(int(c) for c in np.unique(labels))
    if isinstance(classes, Grouping):
        return classes.canonical_labels
    resolved = set()
    for c in classes:
        if isinstance(c, str):
            if c not in EMOTION_INDEX:
                raise ValueError(f"unknown class name {c!r}; known: {list(EMOTIONS)}")
            resolved.add(EMOTION_INDEX[c])
        elif isinstance(c, (int, np.integer)) and 0 <= c < NUM_EMOTIONS:
            resolved.add(int(c))
        else:
            raise ValueError(f"classes must be canonical labels 0..{NUM_EMOTIONS - 1} or class "
                             f"names, got {c!r}")
    if not resolved:
        raise ValueError("classes is empty")
    return tuple(sorted(resolved))


def _resolve_target(target_per_class: int | None, counts: list[int]) -> int:
    if target_per_class is None:
        return max(counts, default=0)
    if int(target_per_class) != target_per_class or target_per_class < 1:
        raise ValueError(f"target_per_class must be a positive integer, got {target_per_class}")
    return int(target_per_class)


def _draw(rng: np.random.Generator, indices: np.ndarray, count: int) -> np.ndarray:
    """``count`` of ``indices``: all of them plus extras with replacement when there are at
    most ``count``, else a subset without replacement. Nothing when ``indices`` is empty."""
    if len(indices) == 0:
        return indices
    if len(indices) >= count:
        return rng.choice(indices, count, replace=False)
    return np.concatenate([indices, rng.choice(indices, count - len(indices), replace=True)])


def _shuffled(rng: np.random.Generator, parts: list[np.ndarray]) -> np.ndarray:
    return rng.permutation(np.concatenate([np.zeros(0, np.int64), *parts]).astype(np.int64))


def nested_class_subsets(labels: np.ndarray, label: int, sizes: Iterable[int], *,
                         seed: int) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Nested seeded subsets of one class, every other class kept whole.

    Returns ``(order, subsets)``: ``order``, the indices of class ``label`` in one seeded
    permutation (the draw); ``subsets[k]``, the sorted indices into ``labels`` of every image
    not of ``label`` plus the first ``k`` of ``order`` (so a smaller subset lies inside every
    larger one).
    """
    labels = _check_labels(labels, "labels")
    members = np.flatnonzero(labels == label)
    sizes = sorted({int(k) for k in sizes})
    if not sizes or sizes[0] < 0 or sizes[-1] > len(members):
        raise FerDataError(f"subset sizes {sizes} of class {EMOTIONS[label]!r} must lie in "
                           f"0..{len(members)} (its images)")
    order = np.random.default_rng(seed).permutation(members)
    others = np.flatnonzero(labels != label)
    return order, {k: np.sort(np.concatenate([others, order[:k]])) for k in sizes}
