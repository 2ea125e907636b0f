"""GAN objectives and differentiable augmentation, pure JAX (jit/pmap-able).

Losses take discriminator logits ``[B]``. :func:`diff_augment` (Zhao et al. 2020, applied with
probability ``p`` per example and op as in ADA, Karras et al. 2020) is applied to real and to
generated batches with independent keys, so both see identically distributed augmentations and
gradients reach the generator through it. Images are float ``[B,48,48,1]`` in [-1, 1], each
with its own PRNG key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp


def d_hinge(real_logits, fake_logits):
    """Discriminator hinge loss: E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]."""
    return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))


def g_hinge(fake_logits):
    """Generator hinge loss: -E[D(G(z))]."""
    return -jnp.mean(fake_logits)


def d_nonsaturating(real_logits, fake_logits):
    """Discriminator logistic loss: E[softplus(-D(x))] + E[softplus(D(G(z)))]."""
    return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def g_nonsaturating(fake_logits):
    """Non-saturating generator loss: E[softplus(-D(G(z)))]."""
    return jnp.mean(jax.nn.softplus(-fake_logits))


# Name -> (discriminator loss, generator loss).
LOSSES: dict[str, tuple[Callable, Callable]] = {
    "hinge": (d_hinge, g_hinge),
    "nonsaturating": (d_nonsaturating, g_nonsaturating),
}


def loss_pair(name: str) -> tuple[Callable, Callable]:
    """The (D loss, G loss) functions of a loss name, with a clear error for unknown names."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown GAN loss {name!r}; known: {sorted(LOSSES)}") from None


def r1_penalty(logits_fn: Callable, real_images):
    """R1 (Mescheder et al. 2018): mean over the batch of ||grad_x D(x)||^2 at real images.

    ``logits_fn(images) -> [B]``; the caller scales the result by gamma / 2.
    """
    grads = jax.grad(lambda x: jnp.sum(logits_fn(x)))(real_images)
    return jnp.mean(jnp.sum(jnp.square(grads), axis=(1, 2, 3)))


def _translation(key, image, ratio=0.125):
    """Integer shift by up to ``ratio`` of the size along each axis; uncovered pixels become 0."""
    height, width, _ = image.shape
    limit = jnp.array([int(height * ratio + 0.5), int(width * ratio + 0.5)])
    dy, dx = jax.random.randint(key, (2,), -limit, limit + 1)
    rows = jnp.arange(height)[:, None] - dy
    cols = jnp.arange(width)[None, :] - dx
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    shifted = image[jnp.clip(rows, 0, height - 1), jnp.clip(cols, 0, width - 1)]
    return jnp.where(inside[..., None], shifted, 0.0)


def _cutout(key, image, ratio=0.5):
    """Zeroes a square of side ``ratio`` * size around a random centre (clipped at the border)."""
    height, width, _ = image.shape
    cy, cx = jax.random.randint(key, (2,), 0, jnp.array([height, width]))
    rows = jnp.abs(jnp.arange(height)[:, None] - cy) <= int(height * ratio + 0.5) // 2
    cols = jnp.abs(jnp.arange(width)[None, :] - cx) <= int(width * ratio + 0.5) // 2
    return jnp.where((rows & cols)[..., None], 0.0, image)


def _brightness(key, image):
    """Adds an offset drawn from U(-0.5, 0.5) (DiffAugment's brightness)."""
    return image + jax.random.uniform(key, minval=-0.5, maxval=0.5)


AUGMENTATIONS: dict[str, Callable] = {
    "translation": _translation,
    "cutout": _cutout,
    "brightness": _brightness,
}


def check_policy(policy: Sequence[str]) -> tuple[str, ...]:
    """Validates an augmentation policy (op names) and returns it as a tuple."""
    unknown = sorted(set(policy) - set(AUGMENTATIONS))
    if unknown:
        raise ValueError(f"unknown DiffAugment ops {unknown}; known: {sorted(AUGMENTATIONS)}")
    return tuple(policy)


def diff_augment(keys, images, policy: Sequence[str], p):
    """Applies each op of ``policy`` to each image independently with probability ``p``.

    ``keys``: one PRNG key per image (``[B, 2]``), so an image's augmentation does not depend
    on how the batch is split over devices. Differentiable in ``images``; ``p`` may be a traced
    scalar (adaptive augmentation).
    """
    if not policy:
        return images

    def augment_one(key, image):
        for name, op_key in zip(policy, jax.random.split(key, len(policy)), strict=True):
            apply_key, op_key = jax.random.split(op_key)
            image = jnp.where(jax.random.uniform(apply_key) < p,
                              AUGMENTATIONS[name](op_key, image), image)
        return image

    return jax.vmap(augment_one)(keys, images)
