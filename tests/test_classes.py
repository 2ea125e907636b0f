import numpy as np
import pytest

from fer_jax import classes
from fer_jax.classes import (
    EMOTION_INDEX,
    EMOTIONS,
    SEVEN,
    SIX,
    TIER1_SEVEN,
    TIER1_SIX,
    TIER2_NEGATIVE_SEVEN,
    TIER2_NEGATIVE_SIX,
    TIER2_POSITIVE,
    TWO_TIER,
)

ALL = np.arange(7, dtype=np.int32)


def _names(grouping, index):
    return {EMOTIONS[c] for c in grouping.members[index]}


def test_canonical_order():
    assert EMOTIONS == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    assert all(EMOTION_INDEX[name] == i for i, name in enumerate(EMOTIONS))


@pytest.mark.parametrize("grouping", [SEVEN, SIX, TIER2_POSITIVE, TIER2_NEGATIVE_SEVEN,
                                      TIER2_NEGATIVE_SIX])
def test_encode_decode_round_trip(grouping):
    covered = ALL[grouping.covers(ALL)]
    assert covered.tolist() == list(grouping.canonical_labels)
    encoded = grouping.encode(covered)
    assert sorted(encoded.tolist()) == list(range(grouping.num_classes))
    np.testing.assert_array_equal(grouping.decode(encoded), covered)
    assert [EMOTIONS[c] for c in grouping.decode(np.arange(grouping.num_classes))] == \
        list(grouping.class_names)


def test_six_drops_disgust():
    assert SIX.num_classes == 6 and "disgust" not in SIX.class_names
    encoded = SIX.encode(ALL)
    assert encoded[EMOTION_INDEX["disgust"]] == -1
    assert sorted(encoded[encoded >= 0].tolist()) == list(range(6))
    assert SEVEN.encode(ALL).tolist() == list(range(7))


@pytest.mark.parametrize("tier1, negative", [
    (TIER1_SEVEN, {"angry", "disgust", "fear", "sad"}),
    (TIER1_SIX, {"angry", "fear", "sad"}),
])
def test_tier1_membership(tier1, negative):
    assert tier1.class_names == ("negative", "positive")
    assert _names(tier1, 0) == negative
    assert _names(tier1, 1) == {"happy", "surprise", "neutral"}
    encoded = tier1.encode(ALL)
    for name, index in EMOTION_INDEX.items():
        expected = 0 if name in negative else 1 if name in _names(tier1, 1) else -1
        assert encoded[index] == expected, name


@pytest.mark.parametrize("grouping", [TIER1_SEVEN, TIER1_SIX])
def test_decode_raises_for_merged_groupings(grouping):
    with pytest.raises(ValueError, match="merges classes"):
        grouping.decode(np.array([0, 1]))


@pytest.mark.parametrize("setting, expected", [("seven", set(EMOTIONS)),
                                               ("six", set(EMOTIONS) - {"disgust"})])
def test_two_tier_settings_cover_each_class_once(setting, expected):
    tier1, negative, positive = TWO_TIER[setting]
    tier2_names = list(negative.class_names) + list(positive.class_names)
    assert sorted(tier2_names) == sorted(expected)  # each class in exactly one tier-2 grouping
    assert set(negative.class_names) == _names(tier1, 0)
    assert set(positive.class_names) == _names(tier1, 1)
    assert TWO_TIER[setting][2] is TIER2_POSITIVE


def test_grouping_lookup_by_name():
    assert classes.grouping("six") is SIX
    with pytest.raises(ValueError, match="unknown grouping 'eight'"):
        classes.grouping("eight")
