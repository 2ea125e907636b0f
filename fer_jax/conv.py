"""Max-pooling and BatchNorm for NHWC conv nets, with gradients in the forms XLA:CPU runs fast.

Profiles of a seed_cnn training step (XLA:CPU, jaxlib 0.10.2) put ~40% of the time outside the
convolutions, in two places:

* ``nn.max_pool``'s gradient is a ``select-and-scatter`` (~120 ms for one 64x44x44x64 pool on
  one core). :func:`max_pool` reduces 2x2 blocks of a reshape and routes the output gradient to
  the block maxima with one elementwise select (~7-15 ms).
* BatchNorm's per-channel sums over batch and space (mean, mean of squares; in the backward
  pass the sums of ``g`` and ``g * x``) become slow ``reduce-window`` trees. :class:`BatchNorm`
  computes every such sum as a matrix-vector product with a ones vector (4x faster), forward
  and backward.

Both compute the same values as ``flax.linen`` (tests); :class:`BatchNorm` has the same
variables (``params``: scale, bias; ``batch_stats``: mean, var), so checkpoints are
interchangeable.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

Dtype = jax.typing.DTypeLike


def _blocks(x):
    """``x [B, H, W, C]`` as 2x2 blocks ``[B, H/2, 2, W/2, 2, C]`` (odd last rows/columns are
    dropped, as by a VALID 2x2 pool)."""
    b, h, w, c = x.shape
    return x[:, :h // 2 * 2, :w // 2 * 2].reshape(b, h // 2, 2, w // 2, 2, c)


@jax.custom_vjp
def max_pool(x):
    """2x2 max-pool, stride 2, VALID (``nn.max_pool(x, (2, 2), (2, 2))``)."""
    return _blocks(x).max(axis=(2, 4))


def _max_pool_fwd(x):
    y = max_pool(x)
    return y, (x, y)


def _max_pool_bwd(residuals, g):
    x, y = residuals
    b, h, w, c = x.shape
    # Every element equal to its block's maximum gets the gradient (ties, measure zero except
    # at zeros after a ReLU, whose gradient the ReLU discards anyway).
    routed = jnp.where(_blocks(x) == y[:, :, None, :, None], g[:, :, None, :, None], 0)
    routed = routed.reshape(b, h // 2 * 2, w // 2 * 2, c)
    return (jnp.pad(routed, ((0, 0), (0, h % 2), (0, w % 2), (0, 0))),)


max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def _rows(x):
    return x.reshape(-1, x.shape[-1])


def _channel_sum(x2d):
    """Column sums of ``[N, C]`` as a matrix-vector product, accumulated in float32."""
    return jnp.dot(jnp.ones(x2d.shape[0], x2d.dtype), x2d,
                   preferred_element_type=jnp.float32)


@jax.custom_vjp
def channel_moments(x):
    """Per-channel means of ``x`` and ``x**2`` over all axes but the last (float32)."""
    x2d = _rows(x).astype(jnp.float32)
    return _channel_sum(x2d) / x2d.shape[0], _channel_sum(x2d * x2d) / x2d.shape[0]


def _moments_fwd(x):
    return channel_moments(x), x


def _moments_bwd(x, grads):
    g_mean, g_mean2 = grads
    n = x.size // x.shape[-1]
    return (((g_mean + 2 * x.astype(jnp.float32) * g_mean2) / n).astype(x.dtype),)


channel_moments.defvjp(_moments_fwd, _moments_bwd)


@jax.custom_vjp
def scale_shift(x, a, b):
    """``x * a + b`` with per-channel ``a``, ``b`` (float32) in ``x``'s dtype."""
    return (x * a + b).astype(x.dtype)


def _scale_shift_fwd(x, a, b):
    return scale_shift(x, a, b), (x, a)


def _scale_shift_bwd(residuals, g):
    x, a = residuals
    g2d = _rows(g).astype(jnp.float32)
    return ((g * a).astype(x.dtype), _channel_sum(g2d * _rows(x).astype(jnp.float32)),
            _channel_sum(g2d))


scale_shift.defvjp(_scale_shift_fwd, _scale_shift_bwd)


class BatchNorm(nn.Module):
    """``nn.BatchNorm`` over the last axis (same variables, fast variance, float32 statistics)
    whose per-channel sums are matrix-vector products (see the module docstring)."""

    use_running_average: bool | None = None
    momentum: float = 0.99
    epsilon: float = 1e-5
    dtype: Dtype | None = None
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x, use_running_average: bool | None = None):
        use_running_average = nn.merge_param(
            "use_running_average", self.use_running_average, use_running_average)
        features = (x.shape[-1],)
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, features, jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, features, jnp.float32)
        scale = self.param("scale", nn.initializers.ones, features, jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, features, jnp.float32)
        if use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            mean, mean2 = channel_moments(x)
            if self.axis_name is not None and not self.is_initializing():
                mean, mean2 = lax.pmean((mean, mean2), self.axis_name)
            var = jnp.maximum(0.0, mean2 - mean * mean)
            if not self.is_initializing():
                ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
                ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
        a = scale * lax.rsqrt(var + self.epsilon)
        return scale_shift(x.astype(self.dtype or x.dtype), a, bias - mean * a)
