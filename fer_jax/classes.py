"""Class names and groupings, defined once.

Canonical labels follow the ICML 2013 CSV: 0 angry, 1 disgust, 2 fear, 3 happy, 4 sad,
5 surprise, 6 neutral. A :class:`Grouping` maps canonical labels to the indices of one
classification problem (7-class, the seed's 6-class setting without disgust, the tier-1
positive/negative split, the tier-2 subsets) and back.
"""

from __future__ import annotations

import dataclasses

import numpy as np

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_EMOTIONS = len(EMOTIONS)
EMOTION_INDEX: dict[str, int] = {name: i for i, name in enumerate(EMOTIONS)}

POSITIVE: tuple[str, ...] = ("happy", "surprise", "neutral")
NEGATIVE_6: tuple[str, ...] = ("angry", "fear", "sad")
NEGATIVE_7: tuple[str, ...] = ("angry", "disgust", "fear", "sad")


@dataclasses.dataclass(frozen=True)
class Grouping:
    """A classification problem over canonical labels.

    Attributes:
      name: identifier, e.g. ``"seven"`` or ``"tier1_six"``.
      class_names: names of this problem's classes, in index order.
      members: for each class of this problem, the canonical labels it contains.
    """

    name: str
    class_names: tuple[str, ...]
    members: tuple[tuple[int, ...], ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def canonical_labels(self) -> tuple[int, ...]:
        """All canonical labels this grouping covers, sorted."""
        return tuple(sorted(c for group in self.members for c in group))

    def lookup_table(self) -> np.ndarray:
        """int32 [7]: grouping index of each canonical label, -1 where not covered."""
        table = np.full(NUM_EMOTIONS, -1, np.int32)
        for index, group in enumerate(self.members):
            table[list(group)] = index
        return table

    def encode(self, canonical: np.ndarray) -> np.ndarray:
        """Canonical labels -> grouping indices (-1 for labels outside the grouping)."""
        return self.lookup_table()[np.asarray(canonical, np.int32)]

    def covers(self, canonical: np.ndarray) -> np.ndarray:
        """Boolean mask of the canonical labels that belong to this grouping."""
        return self.encode(canonical) >= 0

    def decode(self, indices: np.ndarray) -> np.ndarray:
        """Grouping indices -> canonical labels; only for groupings of single-label classes."""
        if any(len(group) != 1 for group in self.members):
            raise ValueError(f"grouping {self.name!r} merges classes; its indices have no single "
                             "canonical label")
        table = np.array([group[0] for group in self.members], np.int32)
        return table[np.asarray(indices, np.int32)]


def _singletons(name: str, class_names: tuple[str, ...]) -> Grouping:
    return Grouping(name, class_names, tuple((EMOTION_INDEX[c],) for c in class_names))


def _binary(name: str, negative: tuple[str, ...]) -> Grouping:
    return Grouping(name, ("negative", "positive"),
                    (tuple(EMOTION_INDEX[c] for c in negative),
                     tuple(EMOTION_INDEX[c] for c in POSITIVE)))


SEVEN = _singletons("seven", EMOTIONS)
SIX = _singletons("six", tuple(c for c in EMOTIONS if c != "disgust"))
TIER1_SEVEN = _binary("tier1_seven", NEGATIVE_7)
TIER1_SIX = _binary("tier1_six", NEGATIVE_6)
TIER2_POSITIVE = _singletons("tier2_positive", POSITIVE)
TIER2_NEGATIVE_SEVEN = _singletons("tier2_negative_seven", NEGATIVE_7)
TIER2_NEGATIVE_SIX = _singletons("tier2_negative_six", NEGATIVE_6)

GROUPINGS: dict[str, Grouping] = {g.name: g for g in (
    SEVEN, SIX, TIER1_SEVEN, TIER1_SIX, TIER2_POSITIVE, TIER2_NEGATIVE_SEVEN, TIER2_NEGATIVE_SIX)}

# Setting name ("seven" keeps disgust, "six" drops it as the seed did) -> its three groupings.
TWO_TIER: dict[str, tuple[Grouping, Grouping, Grouping]] = {
    "seven": (TIER1_SEVEN, TIER2_NEGATIVE_SEVEN, TIER2_POSITIVE),
    "six": (TIER1_SIX, TIER2_NEGATIVE_SIX, TIER2_POSITIVE),
}


def grouping(name: str) -> Grouping:
    """Looks a grouping up by name, with a clear error for unknown names."""
    try:
        return GROUPINGS[name]
    except KeyError:
        raise ValueError(f"unknown grouping {name!r}; known: {sorted(GROUPINGS)}") from None
