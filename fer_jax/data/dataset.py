"""The one in-memory form of FER-2013 that every reader produces."""

from __future__ import annotations

import dataclasses

import numpy as np

from fer_jax.classes import EMOTIONS
from fer_jax.errors import FerDataError

SPLITS: tuple[str, ...] = ("train", "val", "test")
IMAGE_SIZE = 48


@dataclasses.dataclass(frozen=True)
class Split:
    """Images ``uint8 [N, 48, 48]`` and canonical labels ``int32 [N]`` of one split."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self):
        if self.images.dtype != np.uint8 or self.images.ndim != 3 or \
                self.images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"images must be uint8 [N,48,48], got {self.images.dtype} "
                             f"{self.images.shape}")
        if self.labels.dtype != np.int32 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must be int32 [N={self.images.shape[0]}], got "
                             f"{self.labels.dtype} {self.labels.shape}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @classmethod
    def empty(cls) -> Split:
        return cls(np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8), np.zeros((0,), np.int32))

    def take(self, indices: np.ndarray) -> Split:
        """The sub-split at ``indices`` (copies)."""
        return Split(self.images[indices], self.labels[indices])

    def counts(self) -> dict[str, int]:
        """Images per class name, in canonical order."""
        per_class = np.bincount(self.labels, minlength=len(EMOTIONS))
        return {name: int(n) for name, n in zip(EMOTIONS, per_class)}


@dataclasses.dataclass(frozen=True)
class SkippedRecord:
    """A record that ``strict=False`` skipped: where it was and why."""

    path: str
    record: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path} [{self.record}]: {self.reason}"


@dataclasses.dataclass(frozen=True)
class FerData:
    """All splits of one source, plus what was skipped while reading it.

    Attributes:
      splits: ``{"train"|"val"|"test": Split}``; a split the source lacks is empty.
      source: human-readable description of where the data came from.
      synthetic: True for the embedded procedural faces (reports must say so).
      skipped: records skipped under ``strict=False``.
    """

    splits: dict[str, Split]
    source: str
    synthetic: bool = False
    skipped: tuple[SkippedRecord, ...] = ()

    def split(self, name: str) -> Split:
        """Returns a non-empty split, or raises :class:`FerDataError` naming the source."""
        if name not in SPLITS:
            raise FerDataError(f"unknown split {name!r}; expected one of {SPLITS}",
                               path=self.source)
        split = self.splits.get(name)
        if split is None or len(split) == 0:
            raise FerDataError(f"split {name!r} was asked for but has no images", path=self.source)
        return split

    def has(self, name: str) -> bool:
        return name in self.splits and len(self.splits[name]) > 0

    def skipped_records(self) -> list[str]:
        """The skipped records as JSON-ready lines ``"<file> [<record>]: <reason>"`` (for the
        run's report)."""
        return [str(record) for record in self.skipped]

    def counts(self) -> dict[str, dict[str, int]]:
        """``{split: {class_name: count}}`` for every split (empty ones included)."""
        return {name: self.splits.get(name, Split.empty()).counts() for name in SPLITS}
