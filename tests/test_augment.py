import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.ndimage import map_coordinates

from fer_jax.data import augment
from fer_jax.data.augment import NO_AUGMENT, AugmentConfig

FLIP_ONLY = AugmentConfig(max_shift=0, flip=True, max_rotation_deg=0.0, brightness=0.0,
                          contrast=0.0)
SHIFT_ONLY = AugmentConfig(max_shift=3, flip=False, max_rotation_deg=0.0, brightness=0.0,
                           contrast=0.0)


@pytest.fixture(scope="module")
def batch(tiny_data):
    return jnp.asarray(augment.to_float(tiny_data.split("train").images[:16]))


def _split_and_augment(key, images, config):
    return augment.augment(jax.random.split(key, images.shape[0]), images, config)


@functools.cache
def _jitted(config):
    return jax.jit(functools.partial(_split_and_augment, config=config))


def test_to_float_numpy_and_jax():
    images = np.array([[[0, 255] * 24] * 48], np.uint8)
    as_numpy = augment.to_float(images)
    assert isinstance(as_numpy, np.ndarray)
    assert as_numpy.dtype == np.float32 and as_numpy.shape == (1, 48, 48, 1)
    assert as_numpy.min() == 0.0 and as_numpy.max() == 1.0
    as_jax = augment.to_float(jnp.asarray(images))
    assert isinstance(as_jax, jax.Array)
    np.testing.assert_array_equal(np.asarray(as_jax), as_numpy)
    assert augment.to_float(images[..., None]).shape == (1, 48, 48, 1)
    with pytest.raises(ValueError, match="uint8"):
        augment.to_float(images.astype(np.float32))
    with pytest.raises(ValueError, match=r"\[\.\.\., 48, 48\]"):
        augment.to_float(np.zeros((2, 32, 32), np.uint8))


@pytest.mark.parametrize("config", [AugmentConfig(), AugmentConfig(pad_mode="reflect"),
                                    AugmentConfig(max_rotation_deg=0.0), FLIP_ONLY])
def test_shape_dtype_range(batch, config):
    out = _jitted(config)(jax.random.key(0), batch)
    assert out.shape == batch.shape and out.dtype == jnp.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_same_key_same_output_different_key_differs(batch):
    run = _jitted(AugmentConfig())
    first = run(jax.random.key(1), batch)
    np.testing.assert_array_equal(np.asarray(first), np.asarray(run(jax.random.key(1), batch)))
    eager = _split_and_augment(jax.random.key(1), batch, AugmentConfig())  # same draws, unfused
    np.testing.assert_allclose(np.asarray(first), np.asarray(eager), atol=1e-5)
    other = run(jax.random.key(2), batch)
    assert not np.allclose(np.asarray(first), np.asarray(other))


def test_examples_are_augmented_independently(batch):
    run = _jitted(AugmentConfig())
    key = jax.random.key(3)
    out = np.asarray(run(key, batch))
    # Changing one example leaves the others' outputs untouched ...
    changed = np.asarray(run(key, batch.at[0].set(1.0 - batch[0])))
    np.testing.assert_array_equal(changed[1:], out[1:])
    # ... and copies of one image get different transforms.
    copies = np.asarray(run(key, jnp.repeat(batch[:1], 8, axis=0)))
    assert len({copy.tobytes() for copy in copies}) == 8


def test_identity_when_everything_disabled(batch):
    assert not NO_AUGMENT.enabled
    out = _jitted(NO_AUGMENT)(jax.random.key(0), batch)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(batch))


def test_flip_only_mirrors_exactly(batch):
    out = np.asarray(_jitted(FLIP_ONLY)(jax.random.key(4), batch))
    original = np.asarray(batch)
    mirrored = [np.array_equal(o, x[:, ::-1]) for o, x in zip(out, original)]
    kept = [np.array_equal(o, x) for o, x in zip(out, original)]
    assert all(m or k for m, k in zip(mirrored, kept))
    assert any(mirrored) and any(kept)


@pytest.mark.parametrize("pad_mode", ["edge", "reflect"])
def test_shift_is_a_crop_of_the_padded_image(batch, pad_mode):
    config = AugmentConfig(**{**SHIFT_ONLY.__dict__, "pad_mode": pad_mode})
    out = np.asarray(_jitted(config)(jax.random.key(5), batch))[..., 0]
    m = config.max_shift
    offsets = set()
    for image, result in zip(np.asarray(batch)[..., 0], out):
        padded = np.pad(image, m, mode=pad_mode)
        matches = [(dy, dx) for dy in range(2 * m + 1) for dx in range(2 * m + 1)
                   if np.array_equal(padded[dy:dy + 48, dx:dx + 48], result)]
        assert matches, "output is not a 48x48 crop of the padded image"
        offsets.add(matches[0])
    assert len(offsets) > 3  # offsets actually vary


@pytest.mark.parametrize("pad_mode, scipy_mode", [("edge", "nearest"), ("reflect", "mirror")])
@pytest.mark.parametrize("shift_y, shift_x, degrees", [
    (2.0, -3.0, 8.0), (augment.MAX_SHIFT, -augment.MAX_SHIFT, augment.MAX_ROTATION_DEG)])
def test_rotation_sampler_matches_map_coordinates(pad_mode, scipy_mode, shift_y, shift_x,
                                                  degrees):
    image = jnp.asarray(np.random.default_rng(0).random((48, 48), np.float32))
    shift, angle = jnp.array([shift_y, shift_x]), jnp.deg2rad(degrees)
    ours = augment._warp(image, shift, angle, jnp.bool_(True), bilinear=True, pad_mode=pad_mode)
    y, x = augment._GRID
    cos, sin = np.cos(angle), np.sin(angle)
    source = [cos * y - sin * x + shift_y + 23.5, -(sin * y + cos * x) + shift_x + 23.5]
    reference = map_coordinates(image, source, order=1, mode=scipy_mode)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(reference), atol=1e-5)


def test_photometric_jitter_preserves_structure(batch):
    config = AugmentConfig(max_shift=0, flip=False, max_rotation_deg=0.0, brightness=0.1,
                           contrast=0.1)
    out = np.asarray(_jitted(config)(jax.random.key(6), batch))
    original = np.asarray(batch)
    for o, x in zip(out, original):
        inside = (o > 0) & (o < 1)  # unclipped pixels are an affine map of the input
        slope, offset = np.polyfit(x[inside], o[inside], 1)
        np.testing.assert_allclose(o[inside], slope * x[inside] + offset, atol=1e-5)
        assert 0.9 - 1e-5 <= slope <= 1.1 + 1e-5
    assert np.abs(out - original).max() > 0.01


def test_config_validation_and_from_mapping():
    with pytest.raises(ValueError, match="max_shift"):
        AugmentConfig(max_shift=-1)
    with pytest.raises(ValueError, match="max_rotation_deg"):
        AugmentConfig(max_rotation_deg=augment.MAX_ROTATION_DEG + 1)
    with pytest.raises(ValueError, match="pad_mode"):
        AugmentConfig(pad_mode="wrap")
    assert hash(AugmentConfig()) == hash(AugmentConfig())
    assert augment.augment_config_from({"max_shift": 2, "flip": False}) == AugmentConfig(
        max_shift=2, flip=False)
    assert augment.augment_config_from(None) == NO_AUGMENT
    with pytest.raises(ValueError, match="unknown augmentation settings"):
        augment.augment_config_from({"shift": 2})


def test_config_from_config_dict():
    import ml_collections

    config = ml_collections.ConfigDict({"max_rotation_deg": 5.0, "pad_mode": "reflect"})
    assert augment.augment_config_from(config) == AugmentConfig(max_rotation_deg=5.0,
                                                                pad_mode="reflect")


# ----------------------------------------------------------------------------- literature recipe
CROP_ONLY = AugmentConfig(max_shift=0, flip=False, max_rotation_deg=0.0, brightness=0.0,
                          contrast=0.0, min_crop=40, max_crop=44)
ERASE_ONLY = AugmentConfig(max_shift=0, flip=False, max_rotation_deg=0.0, brightness=0.0,
                           contrast=0.0, erase_prob=1.0)


@pytest.mark.parametrize("config", [
    CROP_ONLY, ERASE_ONLY,
    AugmentConfig(max_shift=4, min_crop=40, max_crop=44, erase_prob=0.5, pad_mode="reflect")])
def test_recipe_ops_shape_dtype_range(batch, config):
    assert config.enabled
    out = _jitted(config)(jax.random.key(7), batch)
    assert out.shape == batch.shape and out.dtype == jnp.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert not np.allclose(np.asarray(out), np.asarray(batch))


def test_scaled_crop_side_is_within_the_configured_range():
    # A horizontal ramp: a crop of side s resized to 48 px has slope s / 48 of the input's.
    ramp = jnp.broadcast_to(jnp.arange(48, dtype=jnp.float32) / 47, (64, 48, 48))[..., None]
    out = np.asarray(_jitted(CROP_ONLY)(jax.random.key(8), ramp))[..., 0]
    slopes = (out[:, 24, 40] - out[:, 24, 8]) / 32 * 47 * 48  # crop side in pixels
    assert slopes.min() >= 40 - 1e-3 and slopes.max() <= 44 + 1e-3
    assert slopes.max() - slopes.min() > 2  # sides vary
    centres = out[:, 24, 24] * 47
    assert np.ptp(centres) > 2  # and so do positions


def test_erasing_fills_one_rectangle_with_the_mean(batch):
    out = np.asarray(_jitted(ERASE_ONLY)(jax.random.key(9), batch))[..., 0]
    for image, result in zip(np.asarray(batch)[..., 0], out):
        changed = ~np.isclose(image, result)
        rows, cols = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        np.testing.assert_allclose(result[box], image.mean(), atol=1e-5)
        area = result[box].size / 48 ** 2
        assert augment.ERASE_AREA[0] * 0.8 <= area <= augment.ERASE_AREA[1] * 1.2
    half = AugmentConfig(**{**ERASE_ONLY.__dict__, "erase_prob": 0.5})
    erased = [not np.allclose(o, x) for o, x in zip(
        np.asarray(_jitted(half)(jax.random.key(10), batch)), np.asarray(batch))]
    assert any(erased) and not all(erased)


def test_new_ops_leave_the_other_draws_unchanged(batch):
    base = AugmentConfig(contrast=0.0)  # contrast pivots on the mean: same with erasing
    erased = AugmentConfig(contrast=0.0, erase_prob=1.0)
    key = jax.random.key(11)
    plain, with_erasing = (np.asarray(_jitted(c)(key, batch)) for c in (base, erased))
    same = np.isclose(plain, with_erasing)
    assert same.mean() > 0.6  # everywhere outside the erased rectangles


def test_recipe_config_validation():
    with pytest.raises(ValueError, match="min_crop"):
        AugmentConfig(min_crop=44, max_crop=40)
    with pytest.raises(ValueError, match="min_crop"):
        AugmentConfig(min_crop=augment.MIN_CROP - 1)
    with pytest.raises(ValueError, match="erase_prob"):
        AugmentConfig(erase_prob=1.5)
    assert not AugmentConfig().scaled_crop and AugmentConfig().erase_prob == 0.0


def test_ten_crop_views(batch):
    views = augment.ten_crop_views(batch)
    assert len(views) == 10 and all(v.shape == batch.shape for v in views)
    top_left = jax.image.resize(batch[:, :42, :42], batch.shape, "bilinear")
    np.testing.assert_allclose(np.asarray(views[0]), np.asarray(top_left), atol=1e-6)
    for view, mirrored in zip(views[:5], views[5:]):
        np.testing.assert_array_equal(np.asarray(mirrored), np.asarray(view)[:, :, ::-1])
    whole = augment.ten_crop_views(batch, side=48)  # crops of the whole image: the identity
    np.testing.assert_allclose(np.asarray(whole[4]), np.asarray(batch), atol=1e-6)
    with pytest.raises(ValueError, match="ten-crop side"):
        augment.ten_crop_views(batch, side=50)


def _brightness_logits(variables, x, train):
    """A stand-in network: logits from each image's mean brightness."""
    return x.mean(axis=(1, 2, 3))[:, None] * jnp.arange(3.0)


def test_tencrop_tta_averages_the_ten_views(tiny_data):
    from fer_jax import inference

    images = tiny_data.split("val").images[:5]
    probs = inference.predict_probabilities(_brightness_logits, {}, images, batch_size=8,
                                            tta="tencrop")
    views = augment.ten_crop_views(augment.to_float(jnp.asarray(images)))
    expected = np.mean([jax.nn.softmax(_brightness_logits({}, v, False)) for v in views], 0)
    assert probs.shape == (5, 3)
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    with pytest.raises(ValueError, match="unknown tta"):
        inference.predict_probabilities(_brightness_logits, {}, images, tta="fivecrop")
