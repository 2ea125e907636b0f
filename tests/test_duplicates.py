"""fer_jax.data.duplicates on hand-made splits: exact copies found, counted and left out."""

import numpy as np
import pytest

from fer_jax.classes import EMOTION_INDEX, EMOTIONS
from fer_jax.data import FerData, Split
from fer_jax.data.duplicates import (
    copies_of,
    duplicate_report,
    format_duplicate_report,
    with_unseen_val,
)


def faces(*values: int) -> np.ndarray:
    """One flat 48x48 face per value (equal values: identical faces)."""
    return np.stack([np.full((48, 48), v, np.uint8) for v in values])


def split(values, labels) -> Split:
    return Split(faces(*values), np.asarray([EMOTION_INDEX[name] for name in labels], np.int32))


@pytest.fixture
def data():
    """train: faces 1, 1, 2, 2, 3 (face 2 labelled twice differently); val: 1 (angry like
    train), 2 (surprise, train says disgust/fear), 9 (new); test: 3 and 1, never read."""
    return FerData({
        "train": split([1, 1, 2, 2, 3], ["angry", "angry", "disgust", "fear", "happy"]),
        "val": split([1, 2, 9], ["angry", "surprise", "sad"]),
        "test": split([3, 1], ["happy", "angry"]),
    }, source="hand-made")


def test_copies_of_marks_exactly_the_repeated_images(data):
    np.testing.assert_array_equal(copies_of(data.split("val"), data.split("train")),
                                  [True, True, False])
    one_pixel_off = faces(1)
    one_pixel_off[0, 0, 0] = 0
    assert not copies_of(Split(one_pixel_off, np.zeros(1, np.int32)), data.split("train")).any()


def test_with_unseen_val_leaves_out_the_copies_and_says_so(data):
    unseen, left_out = with_unseen_val(data)
    np.testing.assert_array_equal(unseen.split("val").images, faces(9))
    assert unseen.split("val").labels.tolist() == [EMOTION_INDEX["sad"]]
    assert left_out == {name: int(name in ("angry", "surprise")) for name in EMOTIONS}
    assert unseen.source == "hand-made (val without its 2 exact copies of train faces)"
    assert unseen.split("train") is data.split("train")
    assert unseen.split("test") is data.split("test")


def test_with_unseen_val_without_copies_is_the_same_data(data):
    fresh = FerData({"train": data.split("train"), "val": split([7, 8], ["sad", "sad"])},
                    source="fresh")
    same, left_out = with_unseen_val(fresh)
    assert same is fresh and sum(left_out.values()) == 0


def test_duplicate_report_counts_groups_copies_and_label_conflicts(data):
    report = duplicate_report(data)
    assert report["within_train"] == {"groups": 2, "images": 4, "label_differs": 1}
    val = report["val_in_train"]
    assert val["total"] == 2 and val["label_differs"] == 1  # surprise vs disgust/fear
    assert val["per_class"] == {name: int(name in ("angry", "surprise")) for name in EMOTIONS}
    assert val["val_per_class"]["sad"] == 1 and sum(val["val_per_class"].values()) == 3
    assert "test" not in str(report)
    assert format_duplicate_report(report).splitlines() == [
        "exact copies within train: 4 images in 2 groups (1 groups with differing labels)",
        ("val images that are exact copies of train images: 2 of 3 (1 labelled differently): "
         "angry 1/1, surprise 1/1")]


def test_duplicate_report_of_a_source_without_val(data):
    report = duplicate_report(FerData({"train": data.split("train")}, source="train only"))
    assert set(report) == {"within_train"}
    assert format_duplicate_report(report).count("\n") == 0
