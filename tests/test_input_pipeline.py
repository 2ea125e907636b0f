"""gan.input_pipeline: class probabilities (uniform, ∝ √count) and batches pure in (seed, step)."""

import numpy as np
import pytest

from fer_jax.classes import EMOTION_INDEX
from fer_jax.data.dataset import Split
from fer_jax.errors import FerError
from gan.input_pipeline import BalancedBatches, class_probabilities

COUNTS = {"angry": 900, "disgust": 100, "happy": 1600}  # √: 30, 10, 40 -> 0.375, 0.125, 0.5


def _split(counts=COUNTS) -> Split:
    labels = np.concatenate([np.full(n, EMOTION_INDEX[name], np.int32)
                             for name, n in counts.items()])
    order = np.random.default_rng(0).permutation(len(labels))
    images = (np.arange(len(labels)) % 256).astype(np.uint8)[:, None, None] * np.ones(
        (1, 48, 48), np.uint8)
    return Split(images[order], labels[order])


def test_class_probabilities():
    assert class_probabilities([900, 100, 1600], "uniform") == pytest.approx([1 / 3] * 3)
    assert class_probabilities([900, 100, 1600], "sqrt") == pytest.approx([0.375, 0.125, 0.5])
    with pytest.raises(FerError, match="class_sampling"):
        class_probabilities([1, 2], "linear")


@pytest.mark.parametrize("class_sampling, expected", [
    ("uniform", [1 / 3, 1 / 3, 1 / 3]), ("sqrt", [0.375, 0.125, 0.5])])
def test_classes_are_drawn_with_their_probabilities(class_sampling, expected):
    batches = BalancedBatches.from_split(_split(), tuple(COUNTS), 2000, seed=1,
                                         class_sampling=class_sampling)
    labels = np.concatenate([batches.batch(step)["label"] for step in range(10)])
    shares = [np.mean(labels == EMOTION_INDEX[name]) for name in COUNTS]
    standard_errors = np.sqrt(np.multiply(expected, 1 - np.asarray(expected)) / len(labels))
    assert np.all(np.abs(np.subtract(shares, expected)) < 4 * standard_errors), shares


@pytest.mark.parametrize("class_sampling", ["uniform", "sqrt"])
def test_batches_are_pure_in_seed_and_step_and_index_their_class(class_sampling):
    split = _split()

    def batches(seed):
        return BalancedBatches.from_split(split, tuple(COUNTS), 64, seed,
                                          class_sampling=class_sampling)

    first, again = batches(3).batch(7), batches(3).batch(7)
    for key in first:
        assert np.array_equal(first[key], again[key])
    assert not np.array_equal(first["key"], batches(3).batch(8)["key"])
    assert not np.array_equal(first["key"], batches(4).batch(7)["key"])
    sorted_labels = np.sort(split.labels, kind="stable")
    assert np.array_equal(sorted_labels[first["image_index"]], first["label"])


def test_uniform_sampling_keeps_the_batches_drawn_before_classes_could_be_weighted():
    batches = BalancedBatches.from_split(_split(), tuple(COUNTS), 32, seed=5)
    rng = np.random.default_rng((5, 2))
    assert np.array_equal(batches.batch(2)["label"], rng.choice(batches.classes, 32))


def test_sqrt_sampling_of_equal_classes_is_uniform():
    equal = {"angry": 50, "disgust": 50}
    uniform, sqrt = (BalancedBatches.from_split(_split(equal), tuple(equal), 32, seed=0,
                                                class_sampling=name).batch(0)
                     for name in ("uniform", "sqrt"))
    for key in uniform:
        assert np.array_equal(uniform[key], sqrt[key])


def test_unknown_class_sampling_fails_before_training():
    with pytest.raises(FerError, match="class_sampling"):
        BalancedBatches.from_split(_split(), tuple(COUNTS), 8, 0, class_sampling="linear")
