"""fer_jax.conv: max-pool and BatchNorm equal flax.linen's, values and gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fer_jax import conv


def _close(actual, expected, rtol=1e-5):
    """Equal within float32 rounding, relative to the largest magnitude of ``expected``."""
    expected = np.asarray(expected)
    scale = max(float(np.max(np.abs(expected))), 1e-30)
    np.testing.assert_allclose(np.asarray(actual) / scale, expected / scale, atol=rtol)


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (2, 5, 7, 4)])
def test_max_pool_value_and_gradient(shape):
    x = jax.random.normal(jax.random.key(0), shape)
    g = jax.random.normal(jax.random.key(1), (shape[0], shape[1] // 2, shape[2] // 2, shape[3]))
    reference = lambda x: nn.max_pool(x, (2, 2), (2, 2))
    np.testing.assert_array_equal(conv.max_pool(x), reference(x))
    np.testing.assert_array_equal(jax.vjp(conv.max_pool, x)[1](g)[0],
                                  jax.vjp(reference, x)[1](g)[0])


def _apply_both(x, train, **kwargs):
    """(outputs, updated batch_stats, gradients w.r.t. x and params) of both BatchNorms."""
    results = []
    for module in (conv.BatchNorm(**kwargs), nn.BatchNorm(**kwargs)):
        variables = module.init(jax.random.key(0), x, use_running_average=True)
        params = {"scale": variables["params"]["scale"] * 1.5,
                  "bias": variables["params"]["bias"] + 0.25}
        stats = {"mean": jnp.full(x.shape[-1:], 0.1), "var": jnp.full(x.shape[-1:], 2.0)}

        def loss(x, params, module=module, stats=stats):
            y, updates = module.apply({"params": params, "batch_stats": stats}, x,
                                      use_running_average=not train, mutable=["batch_stats"])
            weights = jnp.linspace(-1.0, 2.0, y.size).reshape(y.shape)
            return jnp.sum(jnp.sin(y.astype(jnp.float32)) * weights), (y, updates)

        grads, (y, updates) = jax.grad(loss, argnums=(0, 1), has_aux=True)(x, params)
        results.append((y, updates["batch_stats"], grads))
    return results


@pytest.mark.parametrize("train", [True, False])
def test_batch_norm_matches_flax(train):
    x = 3.0 + 2.0 * jax.random.normal(jax.random.key(2), (4, 6, 6, 5))
    (y, stats, grads), (y_ref, stats_ref, grads_ref) = _apply_both(x, train, momentum=0.9,
                                                                   epsilon=1e-5)
    assert y.dtype == y_ref.dtype == jnp.float32
    _close(y, y_ref)
    jax.tree_util.tree_map(_close, stats, stats_ref)
    jax.tree_util.tree_map(lambda a, b: _close(a, b, 1e-4), grads, grads_ref)


def test_batch_norm_bfloat16_and_dense_inputs():
    x = jax.random.normal(jax.random.key(3), (16, 8)).astype(jnp.bfloat16)
    (y, _, grads), (y_ref, _, grads_ref) = _apply_both(x, True, dtype=jnp.bfloat16)
    assert y.dtype == y_ref.dtype == jnp.bfloat16
    _close(y.astype(jnp.float32), y_ref.astype(jnp.float32), 2e-2)
    _close(grads[1]["scale"], grads_ref[1]["scale"], 2e-2)


def test_batch_norm_statistics_over_a_named_axis():
    """Under vmap with ``axis_name`` (as under pmap) the statistics are those of all shards."""
    x = jax.random.normal(jax.random.key(4), (2, 3, 4, 4, 2))
    outputs = []
    for module in (conv.BatchNorm(axis_name="devices"), nn.BatchNorm(axis_name="devices")):
        variables = module.init(jax.random.key(0), x[0], use_running_average=True)
        apply = lambda x, m=module, v=variables: m.apply(
            v, x, use_running_average=False, mutable=["batch_stats"])
        outputs.append(jax.vmap(apply, axis_name="devices")(x))
    jax.tree_util.tree_map(_close, outputs[0], outputs[1])
