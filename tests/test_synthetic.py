import numpy as np
import pytest

from fer_jax.classes import EMOTION_INDEX
from fer_jax.data import synthetic


def test_generate_is_deterministic_and_well_formed():
    a = synthetic.generate(num_train=70, num_val=14, num_test=0, seed=3)
    b = synthetic.generate(num_train=70, num_val=14, num_test=0, seed=3)
    c = synthetic.generate(num_train=70, num_val=14, num_test=0, seed=4)
    assert a.synthetic and "synthetic" in a.source
    np.testing.assert_array_equal(a.splits["train"].images, b.splits["train"].images)
    np.testing.assert_array_equal(a.splits["train"].labels, b.splits["train"].labels)
    assert not np.array_equal(a.splits["train"].images, c.splits["train"].images)
    train = a.splits["train"]
    assert train.images.shape == (70, 48, 48) and train.images.dtype == np.uint8
    assert len(a.splits["val"]) == 14 and not a.has("test")
    # Train and val are different faces.
    assert not np.array_equal(a.splits["val"].images, train.images[:14])


def test_class_counts_follow_fer_imbalance():
    counts = synthetic.class_counts(2400)
    assert counts.sum() == 2400 and counts.min() >= 1
    assert np.argmin(counts) == EMOTION_INDEX["disgust"]
    assert np.argmax(counts) == EMOTION_INDEX["happy"]
    assert counts[EMOTION_INDEX["disgust"]] / 2400 < 0.02
    for total in (7, 8, 13, 28):
        small = synthetic.class_counts(total)
        assert small.sum() == total and small.min() >= 1
    with pytest.raises(ValueError, match="at least 7"):
        synthetic.class_counts(6)


def test_expressions_change_the_face_not_just_the_noise():
    """Same identity/pose stream, different expression -> different pixels around the mouth."""
    happy = synthetic.render_face(synthetic._TARGETS[EMOTION_INDEX["happy"]],
                                  np.random.default_rng(0)).astype(int)
    sad = synthetic.render_face(synthetic._TARGETS[EMOTION_INDEX["sad"]],
                                np.random.default_rng(0)).astype(int)
    assert np.abs(happy - sad).mean() > 1.0
