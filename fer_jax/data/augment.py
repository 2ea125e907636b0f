"""Training-time augmentation in pure JAX, run inside the compiled train step.

Every example comes with its own key, so an example's augmentation depends
only on that key and its own pixels. The geometric ops (random crop from an image padded by
``max_shift``, optionally of a random side resized back to 48 px, horizontal flip, small
rotation) are folded into one coordinate map and one sampling pass: integer gather when there
is no rotation or resizing, bilinear otherwise. Photometric jitter (brightness, contrast) and
random erasing follow, and the result is clipped to [0, 1]. An op whose config field is off is
not traced at all, and the ops added later (scaled crops, erasing) draw from their own key, so
switching them on leaves the other draws as they were.

:func:`ten_crop_views` gives the matching test-time views (four corner crops and the centre
crop, resized to 48 px, and their mirror images).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from fer_jax.data.dataset import IMAGE_SIZE

PAD_MODES = ("edge", "reflect")
# Limits that keep every sampled pixel within one reflection of the image (see _fix_index).
MAX_SHIFT = 16
MAX_ROTATION_DEG = 45.0
MIN_CROP = 24  # smallest crop side (px) that is resized back to 48
# RandomErasing's rectangle (Zhong et al. 2017; torchvision's defaults): its area as a share of
# the image and its aspect ratio (height / width), each drawn log-uniformly for the ratio.
ERASE_AREA = (0.02, 0.33)
ERASE_RATIO = (0.3, 1 / 0.3)
TEN_CROP_SIDE = 42  # test-time crops: the middle of the training sides of the accel recipe

_CENTER = (IMAGE_SIZE - 1) / 2.0
# Output pixel coordinates relative to the image centre, [2 (y, x), 48, 48].
_GRID = (np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE] - _CENTER).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Augmentation strengths; hashable, so it can be a static jit argument.

    Attributes:
      max_shift: random crop offset in pixels, from the image padded by this much per side.
      flip: mirror left-right with probability 1/2.
      max_rotation_deg: rotation angle drawn uniformly from [-max, max] degrees.
      brightness: additive offset drawn uniformly from [-brightness, brightness].
      contrast: factor drawn uniformly from [1 - contrast, 1 + contrast], applied around
        each image's mean.
      pad_mode: how pixels outside the image are filled: "edge" repeats the border,
        "reflect" mirrors the image (as ``np.pad`` modes of the same names).
      min_crop, max_crop: crop side drawn uniformly from [min_crop, max_crop] px, anywhere
        in the image padded by ``max_shift``, resized back to 48 px (bilinear); 48 and 48:
        off (crops of 48 px, the plain shift).
      erase_prob: probability of RandomErasing: a rectangle (:data:`ERASE_AREA`,
        :data:`ERASE_RATIO`) set to the image's mean.
    """

    max_shift: int = 4
    flip: bool = True
    max_rotation_deg: float = 10.0
    brightness: float = 0.15
    contrast: float = 0.15
    pad_mode: str = "edge"
    min_crop: int = IMAGE_SIZE
    max_crop: int = IMAGE_SIZE
    erase_prob: float = 0.0

    def __post_init__(self):
        if not 0 <= self.max_shift <= MAX_SHIFT:
            raise ValueError(f"max_shift must be in [0, {MAX_SHIFT}], got {self.max_shift}")
        if not 0.0 <= self.max_rotation_deg <= MAX_ROTATION_DEG:
            raise ValueError(f"max_rotation_deg must be in [0, {MAX_ROTATION_DEG}], got "
                             f"{self.max_rotation_deg}")
        if not MIN_CROP <= self.min_crop <= self.max_crop <= IMAGE_SIZE:
            raise ValueError(f"crop sides must satisfy {MIN_CROP} <= min_crop <= max_crop <= "
                             f"{IMAGE_SIZE}, got {self.min_crop} and {self.max_crop}")
        for name in ("brightness", "contrast", "erase_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {self.pad_mode!r}")

    @property
    def enabled(self) -> bool:
        """False when every op is switched off (augment is then the identity)."""
        return bool(self.max_shift or self.flip or self.max_rotation_deg or self.brightness
                    or self.contrast or self.scaled_crop or self.erase_prob)

    @property
    def scaled_crop(self) -> bool:
        """True when crops of a random side are resized back to 48 px."""
        return self.min_crop < IMAGE_SIZE


NO_AUGMENT = AugmentConfig(max_shift=0, flip=False, max_rotation_deg=0.0, brightness=0.0,
                           contrast=0.0)


def augment_config_from(config: Mapping | AugmentConfig | None) -> AugmentConfig:
    """An :class:`AugmentConfig` from a dict or ``ml_collections.ConfigDict`` of its fields
    (missing fields keep their defaults); None means no augmentation."""
    if config is None:
        return NO_AUGMENT
    if isinstance(config, AugmentConfig):
        return config
    values = dict(config.items())
    known = {field.name for field in dataclasses.fields(AugmentConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown augmentation settings {unknown}; known: {sorted(known)}")
    return AugmentConfig(**values)


def to_float(images):
    """uint8 images ``[..., 48, 48]`` or ``[..., 48, 48, 1]`` -> float32 ``[..., 48, 48, 1]``
    in [0, 1]. NumPy in, NumPy out; JAX in, JAX out."""
    xp = np if isinstance(images, np.ndarray) else jnp
    if images.dtype != np.uint8:
        raise ValueError(f"to_float expects uint8 images, got {images.dtype}")
    if tuple(images.shape[-2:]) == (IMAGE_SIZE, IMAGE_SIZE):
        images = images[..., None]
    elif tuple(images.shape[-3:]) != (IMAGE_SIZE, IMAGE_SIZE, 1):
        raise ValueError(f"to_float expects images [..., 48, 48] or [..., 48, 48, 1], got "
                         f"{tuple(images.shape)}")
    return images.astype(xp.float32) / xp.float32(255.0)


def augment(keys: jax.Array, images: jax.Array, config: AugmentConfig) -> jax.Array:
    """Augments float32 images ``[B, 48, 48, 1]`` in [0, 1], image ``i`` with ``keys[i]`` (one
    PRNG key per example, e.g. :func:`fer_jax.parallel.example_keys`); pure and jit-able
    (``config`` must be static). Returns the same shape and dtype, clipped to [0, 1]."""
    if images.ndim != 4 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 1):
        raise ValueError(f"augment expects images [B, 48, 48, 1], got {images.shape}")
    if not config.enabled:
        return images
    return jax.vmap(lambda k, image: _augment_one(k, image[..., 0], config)[..., None])(
        keys, images)


def _augment_one(key: jax.Array, image: jax.Array, config: AugmentConfig) -> jax.Array:
    """Augments one image ``[48, 48]``; all random draws come from one uniform vector."""
    u_shift_y, u_shift_x, u_flip, u_angle, u_brightness, u_contrast = jax.random.uniform(key, (6,))
    u_side, *u_erase = jax.random.uniform(jax.random.fold_in(key, 1), (6,))
    # Contrast pivots on the input's mean: as good a centre as the warped image's, and it
    # keeps the gather out of a reduction fusion (which XLA:CPU makes ~5x slower).
    mean = image.mean() if config.contrast or config.erase_prob else None
    if config.max_shift or config.max_rotation_deg or config.scaled_crop:
        u_shift = jnp.stack([u_shift_y, u_shift_x])
        scale = 1.0
        if config.scaled_crop:  # the crop's centre may go as far as its side allows
            side = config.min_crop + u_side * (config.max_crop - config.min_crop)
            shift = (2 * u_shift - 1) * ((IMAGE_SIZE - side) / 2 + config.max_shift)
            scale = side / IMAGE_SIZE
        else:
            span = 2 * config.max_shift + 1
            shift = jnp.floor(u_shift * span) - config.max_shift
        angle = jnp.deg2rad((2 * u_angle - 1) * config.max_rotation_deg)
        flip = (u_flip < 0.5) if config.flip else jnp.bool_(False)
        image = _warp(image, shift, angle, flip, scale=scale,
                      bilinear=bool(config.max_rotation_deg or config.scaled_crop),
                      pad_mode=config.pad_mode)
    elif config.flip:
        image = jnp.where(u_flip < 0.5, image[:, ::-1], image)

    if config.contrast:
        image = (image - mean) * (1 + (2 * u_contrast - 1) * config.contrast) + mean
    if config.brightness:
        image = image + (2 * u_brightness - 1) * config.brightness
    if config.erase_prob:
        image = jnp.where(_erase_mask(*u_erase, config.erase_prob), mean, image)
    return jnp.clip(image, 0.0, 1.0)


def _erase_mask(u_apply, u_area, u_ratio, u_y, u_x, prob: float):
    """Boolean ``[48, 48]``: RandomErasing's rectangle, applied with probability ``prob``."""
    area = (ERASE_AREA[0] + u_area * (ERASE_AREA[1] - ERASE_AREA[0])) * IMAGE_SIZE ** 2
    log_low, log_high = np.log(ERASE_RATIO[0]), np.log(ERASE_RATIO[1])
    ratio = jnp.exp(log_low + u_ratio * (log_high - log_low))
    height = jnp.minimum(jnp.round(jnp.sqrt(area * ratio)), IMAGE_SIZE)
    width = jnp.minimum(jnp.round(jnp.sqrt(area / ratio)), IMAGE_SIZE)
    top = jnp.floor(u_y * (IMAGE_SIZE - height + 1))
    left = jnp.floor(u_x * (IMAGE_SIZE - width + 1))
    rows = jnp.arange(IMAGE_SIZE)[:, None]
    cols = jnp.arange(IMAGE_SIZE)[None, :]
    inside = (rows >= top) & (rows < top + height) & (cols >= left) & (cols < left + width)
    return inside & (u_apply < prob)


def ten_crop_views(images: jax.Array, side: int = TEN_CROP_SIDE) -> list[jax.Array]:
    """Ten test-time views of float images ``[B, 48, 48, 1]``: the four corner crops and the
    centre crop of ``side`` px, each resized back to 48 px (bilinear), then their mirror images
    (the ten-crop evaluation of Krizhevsky et al. 2012, as Khaireddin & Chen 2021 use it)."""
    if not MIN_CROP <= side <= IMAGE_SIZE:
        raise ValueError(f"ten-crop side must be in [{MIN_CROP}, {IMAGE_SIZE}], got {side}")
    far, middle = IMAGE_SIZE - side, (IMAGE_SIZE - side) // 2
    crops = [images[:, top:top + side, left:left + side]
             for top, left in ((0, 0), (0, far), (far, 0), (far, far), (middle, middle))]
    shape = (images.shape[0], IMAGE_SIZE, IMAGE_SIZE, images.shape[3])
    resized = [jax.image.resize(crop, shape, "bilinear") for crop in crops]
    return resized + [view[:, :, ::-1] for view in resized]


def _warp(image, shift, angle, flip, *, bilinear: bool, pad_mode: str, scale=1.0):
    """Samples ``image`` at the output grid scaled by ``scale`` (a crop of side 48 * scale
    resized to 48), rotated by ``angle``, mirrored when ``flip``, then offset by ``shift`` (the
    crop offset); outside pixels follow ``pad_mode``."""
    y, x = _GRID * scale
    if bilinear:
        cos, sin = jnp.cos(angle), jnp.sin(angle)
        y, x = cos * y - sin * x, sin * y + cos * x
    x = jnp.where(flip, -x, x)
    y = y + shift[0] + _CENTER
    x = x + shift[1] + _CENTER
    flat = image.reshape(-1)  # 1-D gathers are faster than 2-D ones on CPU
    if not bilinear:  # integer coordinates: one gather, exact pixels
        return flat[_fix_index(y.astype(jnp.int32), pad_mode) * IMAGE_SIZE
                    + _fix_index(x.astype(jnp.int32), pad_mode)]
    y0, x0 = jnp.floor(y), jnp.floor(x)
    wy, wx = y - y0, x - x0
    y0, x0 = y0.astype(jnp.int32), x0.astype(jnp.int32)
    row0, row1 = (_fix_index(y0, pad_mode) * IMAGE_SIZE,
                  _fix_index(y0 + 1, pad_mode) * IMAGE_SIZE)
    col0, col1 = _fix_index(x0, pad_mode), _fix_index(x0 + 1, pad_mode)
    top = flat[row0 + col0] * (1 - wx) + flat[row0 + col1] * wx
    bottom = flat[row1 + col0] * (1 - wx) + flat[row1 + col1] * wx
    return top * (1 - wy) + bottom * wy


def _fix_index(index, pad_mode: str):
    """Maps integer pixel indices outside [0, 47] back inside, as ``np.pad(mode=pad_mode)``.

    Reflect is exact for indices in [-94, 94]; within MAX_SHIFT and MAX_ROTATION_DEG they stay
    in [-26, 74] (23.5 +- (23.5 * sqrt(2) + 16), plus one for the bilinear neighbour; crops of
    a smaller side reach less far)."""
    last = IMAGE_SIZE - 1
    if pad_mode == "reflect":  # fold at 0 and at 47; cheaper than a modulo on CPU
        index = last - jnp.abs(last - jnp.abs(index))
    return jnp.clip(index, 0, last)
