import numpy as np
import pytest

from fer_jax.classes import EMOTIONS, SIX, grouping
from fer_jax.data.dataset import Split
from fer_jax.data.sampling import (
    build_training_mix,
    load_synthetic_npz,
    mean_class_count,
    oversample_indices,
)
from fer_jax.errors import FerDataError

# Canonical class -> count: angry 10, disgust 2, fear 6, happy 20, sad 0, surprise 5, neutral 8.
COUNTS = [10, 2, 6, 20, 0, 5, 8]


def _labels(counts=COUNTS):
    return np.repeat(np.arange(len(counts)), counts).astype(np.int32)


def _split(counts, fill=0):
    labels = _labels(counts)
    images = np.full((labels.size, 48, 48), fill, np.uint8)
    images[:, 0, 0] = np.arange(labels.size) % 256  # tell images apart
    return Split(images, labels)


def test_oversample_balances_to_majority_and_keeps_originals():
    labels = _labels()
    indices = oversample_indices(labels, seed=0)
    assert indices.dtype == np.int64 and indices.ndim == 1
    counts = np.bincount(labels[indices], minlength=7)
    assert counts.tolist() == [20, 20, 20, 20, 0, 20, 20]
    assert set(indices.tolist()) == set(range(labels.size))  # every original drawn
    assert not np.array_equal(indices, np.sort(indices))  # shuffled


def test_oversample_target_below_count_subsamples_without_replacement():
    labels = _labels()
    indices = oversample_indices(labels, seed=0, target_per_class=7)
    counts = np.bincount(labels[indices], minlength=7)
    assert counts.tolist() == [7, 7, 7, 7, 0, 7, 7]
    happy = indices[labels[indices] == 3]
    assert len(set(happy.tolist())) == 7  # no repeats when subsampling
    fear = indices[labels[indices] == 2]
    assert set(fear.tolist()) == set(np.flatnonzero(labels == 2).tolist())


def test_oversample_is_deterministic_in_seed():
    labels = _labels()
    np.testing.assert_array_equal(oversample_indices(labels, seed=3),
                                  oversample_indices(labels, seed=3))
    assert not np.array_equal(oversample_indices(labels, seed=3),
                              oversample_indices(labels, seed=4))


def test_oversample_classes_filter():
    labels = _labels()
    by_name = oversample_indices(labels, seed=0, classes=["angry", "fear"])
    assert set(labels[by_name].tolist()) == {0, 2}
    assert np.bincount(labels[by_name], minlength=7)[[0, 2]].tolist() == [10, 10]
    six = oversample_indices(labels, seed=0, classes=SIX)
    assert 1 not in set(labels[six].tolist())
    with pytest.raises(ValueError, match="unknown class name"):
        oversample_indices(labels, seed=0, classes=["grumpy"])
    with pytest.raises(ValueError, match="target_per_class"):
        oversample_indices(labels, seed=0, target_per_class=0)


def test_training_mix_fills_with_capped_synthetic_then_real():
    real = _split(COUNTS)
    synthetic = _split([0, 30, 1, 30, 4, 30, 30], fill=200)
    mix = build_training_mix(real, synthetic, max_synthetic_share=0.25, seed=0,
                             classes=range(7))
    assert len(mix.pool) == len(real) + len(synthetic)
    assert mix.is_synthetic.tolist() == [False] * len(real) + [True] * len(synthetic)
    np.testing.assert_array_equal(mix.pool.images[:len(real)], real.images)
    np.testing.assert_array_equal(mix.pool.images[len(real):], synthetic.images)
    summary = mix.summary()
    assert list(summary) == list(EMOTIONS)
    assert "sad" not in build_training_mix(real, synthetic).summary()  # default: real classes
    # target 20, cap floor(0.25 * 20) = 5 synthetic per class, never more than the gap or
    # than what exists; sad has no real images, so no synthetic may be drawn for it.
    expected_synthetic = {"angry": 0, "disgust": 5, "fear": 1, "happy": 0, "sad": 0,
                          "surprise": 5, "neutral": 5}
    for name, count in zip(EMOTIONS, COUNTS):
        row = summary[name]
        assert row["real"] == count
        assert row["sampled_synthetic"] == expected_synthetic[name], name
        assert row["sampled"] == (20 if count else 0), name
        assert row["synthetic"] == len(synthetic.labels[synthetic.labels == EMOTIONS.index(name)])
    # Originals are all kept; synthetic draws are distinct.
    real_drawn = mix.indices[~mix.is_synthetic[mix.indices]]
    assert set(real_drawn.tolist()) == set(range(len(real)))
    synthetic_drawn = mix.indices[mix.is_synthetic[mix.indices]]
    assert len(set(synthetic_drawn.tolist())) == synthetic_drawn.size


def test_training_mix_share_cap_holds_per_class():
    real = _split(COUNTS)
    synthetic = _split([50] * 7)
    for share in (0.0, 0.1, 0.5, 0.9, 1.0):
        for oversample in (True, False):
            summary = build_training_mix(real, synthetic, oversample=oversample,
                                         max_synthetic_share=share).summary()
            for name, row in summary.items():
                if row["sampled"]:
                    assert row["sampled_synthetic"] <= share * row["sampled"] + 1e-9, (
                        share, oversample, name)


def test_training_mix_equal_balance_gives_every_class_the_same_synthetic_count():
    real = _split(COUNTS)  # target 20 (the majority), share 0.25: cap 5 per class
    synthetic = _split([0, 30, 3, 30, 4, 30, 30], fill=200)
    summary = build_training_mix(real, synthetic, max_synthetic_share=0.25, seed=0,
                                 classes=range(7), synthetic_balance="equal").summary()
    # fear has 3 synthetic faces, the fewest of the classes that have any (and are not sad,
    # which has no real faces): every class with synthetic faces gets 3, majority ones too.
    assert {n: r["sampled_synthetic"] for n, r in summary.items()} == {
        "angry": 0, "disgust": 3, "fear": 3, "happy": 3, "sad": 0, "surprise": 3, "neutral": 3}
    assert all(r["sampled"] == (20 if r["real"] else 0) for r in summary.values())
    # gap balance on the same inputs: nothing for the majority class (happy, 20 real)
    gap = build_training_mix(real, synthetic, max_synthetic_share=0.25, seed=0,
                             classes=range(7)).summary()
    assert gap["happy"]["sampled_synthetic"] == 0
    with pytest.raises(ValueError, match="synthetic_balance"):
        build_training_mix(real, synthetic, synthetic_balance="minority")


def test_training_mix_without_oversampling():
    real = _split(COUNTS)
    synthetic = _split([30] * 7)
    summary = build_training_mix(real, synthetic, oversample=False,
                                 max_synthetic_share=0.5).summary()
    # each class: all its real images + min(gap to 20, real count (share 0.5)) synthetic
    assert {n: (r["sampled"], r["sampled_synthetic"]) for n, r in summary.items()} == {
        "angry": (20, 10), "disgust": (4, 2), "fear": (12, 6), "happy": (20, 0),
        "surprise": (10, 5), "neutral": (16, 8)}
    plain = build_training_mix(real, oversample=False)
    assert np.sort(plain.indices).tolist() == list(range(len(real)))


def test_training_mix_indices_only_and_deterministic():
    real = _split(COUNTS)
    synthetic = _split([5] * 7)
    first = build_training_mix(real, synthetic, seed=1)
    assert first.indices.dtype == np.int64
    assert len(first.pool) == len(real) + len(synthetic)  # no per-sample copies
    np.testing.assert_array_equal(first.indices, build_training_mix(real, synthetic, seed=1).indices)
    assert not np.array_equal(first.indices, build_training_mix(real, synthetic, seed=2).indices)


def test_training_mix_classes_filter_drops_disgust():
    real = _split(COUNTS)
    mix = build_training_mix(real, _split([3] * 7), classes=SIX)
    assert "disgust" not in mix.summary()
    assert 1 not in set(mix.pool.labels[mix.indices].tolist())
    assert mix.classes == SIX.canonical_labels


def test_training_mix_validates_inputs():
    real = _split(COUNTS)
    with pytest.raises(ValueError, match="max_synthetic_share"):
        build_training_mix(real, max_synthetic_share=1.5)
    with pytest.raises(TypeError, match="synthetic must be a Split"):
        build_training_mix(real, np.zeros((3, 48, 48), np.uint8))
    with pytest.raises(ValueError, match="empty"):
        build_training_mix(Split.empty())
    bad = Split(real.images[:2], np.array([0, 9], np.int32))
    with pytest.raises(FerDataError, match="label 9 at index 1"):
        build_training_mix(real, bad)


def _save(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_load_synthetic_npz_round_trip(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 48, 48), dtype=np.uint8)
    labels = np.array([0, 1, 2, 3, 6], np.int32)
    split = load_synthetic_npz(_save(tmp_path / "gan.npz", images=images, labels=labels))
    np.testing.assert_array_equal(split.images, images)
    assert split.labels.dtype == np.int32 and split.labels.tolist() == labels.tolist()


@pytest.mark.parametrize("arrays, message", [
    ({"images": np.zeros((2, 48, 48), np.uint8)}, r"missing arrays \['labels'\]"),
    ({"images": np.zeros((2, 48, 48), np.float32), "labels": np.zeros(2, np.int32)},
     "images must be uint8"),
    ({"images": np.zeros((2, 32, 32), np.uint8), "labels": np.zeros(2, np.int32)},
     r"images must be uint8 \[N,48,48\], got uint8 \[2, 32, 32\]"),
    ({"images": np.zeros((2, 48, 48), np.uint8), "labels": np.zeros(2, np.float32)},
     "labels must be integers"),
    ({"images": np.zeros((2, 48, 48), np.uint8), "labels": np.zeros(3, np.int32)},
     "labels must be integers"),
    ({"images": np.zeros((2, 48, 48), np.uint8), "labels": np.array([0, 7], np.int32)},
     "label 7 at index 1 is outside 0..6"),
])
def test_load_synthetic_npz_rejects_bad_files(tmp_path, arrays, message):
    path = _save(tmp_path / "bad.npz", **arrays)
    with pytest.raises(FerDataError, match=message) as error:
        load_synthetic_npz(path)
    assert str(path) in str(error.value)


def test_load_synthetic_npz_unreadable(tmp_path):
    with pytest.raises(FerDataError, match="no such file"):
        load_synthetic_npz(tmp_path / "missing.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip at all")
    with pytest.raises(FerDataError, match="not a readable .npz") as error:
        load_synthetic_npz(garbage)
    assert str(garbage) in str(error.value)
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(FerDataError, match="not an .npz archive"):
        load_synthetic_npz(single)



def test_mean_class_count_averages_over_the_expressions_that_oversampling_balances():
    labels = np.repeat(np.arange(7), [10, 2, 9, 14, 6, 3, 7])  # canonical order
    assert mean_class_count(labels) == round(51 / 7)
    # tier1_six has 2 groups, but oversampling balances its 6 expressions (no disgust).
    tier1 = grouping("tier1_six")
    target = mean_class_count(labels, tier1)
    assert target == round(49 / 6)
    drawn = oversample_indices(labels, seed=0, target_per_class=target, classes=tier1)
    assert np.bincount(labels[drawn], minlength=7).tolist() == [target, 0] + [target] * 5
    assert abs(len(drawn) - 49) <= 6  # as long as the data it draws from, up to rounding
