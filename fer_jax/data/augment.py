"""Training-time augmentation in pure JAX, run inside the compiled train step.

Every example comes with its own key, so an example's augmentation depends
only on that key and its own pixels. The geometric ops (random crop from an image padded by
``max_shift``, horizontal flip, small rotation) are folded into one coordinate map and one
sampling pass: integer gather when there is no rotation, bilinear otherwise. Photometric
jitter (brightness, contrast) follows, and the result is clipped to [0, 1]. An op whose
config field is 0/False is not traced at all.
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
    """

    max_shift: int = 4
    flip: bool = True
    max_rotation_deg: float = 10.0
    brightness: float = 0.15
    contrast: float = 0.15
    pad_mode: str = "edge"

    def __post_init__(self):
        if not 0 <= self.max_shift <= MAX_SHIFT:
            raise ValueError(f"max_shift must be in [0, {MAX_SHIFT}], got {self.max_shift}")
        if not 0.0 <= self.max_rotation_deg <= MAX_ROTATION_DEG:
            raise ValueError(f"max_rotation_deg must be in [0, {MAX_ROTATION_DEG}], got "
                             f"{self.max_rotation_deg}")
        for name in ("brightness", "contrast"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {self.pad_mode!r}")

    @property
    def enabled(self) -> bool:
        """False when every op is switched off (augment is then the identity)."""
        return bool(self.max_shift or self.flip or self.max_rotation_deg or self.brightness
                    or self.contrast)


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
    # Contrast pivots on the input's mean: as good a centre as the warped image's, and it
    # keeps the gather out of a reduction fusion (which XLA:CPU makes ~5x slower).
    mean = image.mean() if config.contrast else None
    if config.max_shift or config.max_rotation_deg:
        span = 2 * config.max_shift + 1
        shift = jnp.floor(jnp.stack([u_shift_y, u_shift_x]) * span) - config.max_shift
        angle = jnp.deg2rad((2 * u_angle - 1) * config.max_rotation_deg)
        flip = (u_flip < 0.5) if config.flip else jnp.bool_(False)
        image = _warp(image, shift, angle, flip, bilinear=bool(config.max_rotation_deg),
                      pad_mode=config.pad_mode)
    elif config.flip:
        image = jnp.where(u_flip < 0.5, image[:, ::-1], image)

    if config.contrast:
        image = (image - mean) * (1 + (2 * u_contrast - 1) * config.contrast) + mean
    if config.brightness:
        image = image + (2 * u_brightness - 1) * config.brightness
    return jnp.clip(image, 0.0, 1.0)


def _warp(image, shift, angle, flip, *, bilinear: bool, pad_mode: str):
    """Samples ``image`` at the output grid rotated by ``angle``, mirrored when ``flip``, then
    offset by ``shift`` (the crop offset); outside pixels follow ``pad_mode``."""
    y, x = _GRID
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
    in [-26, 74] (23.5 +- (23.5 * sqrt(2) + 16), plus one for the bilinear neighbour)."""
    last = IMAGE_SIZE - 1
    if pad_mode == "reflect":  # fold at 0 and at 47; cheaper than a modulo on CPU
        index = last - jnp.abs(last - jnp.abs(index))
    return jnp.clip(index, 0, last)
