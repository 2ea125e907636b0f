"""fer_jax.models: output shapes, parameter counts, train/eval behaviour, dtypes."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fer_jax import models

TINY = {
    "seed_cnn": {"width": 4},
    "vgg13": {"width": 4, "head": (16,)},
    "vgg16": {"width": 4, "head": (16,)},
    "vgg_fer": {"width": 4, "head": (16, 16)},
    "compact": {"width": 4, "dense": 16},
}


def _params(model):
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 48, 48, 1))))
    return shapes, sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(shapes["params"]))


def seed_cnn_param_count(w: int, num_classes: int) -> int:
    """By hand: bias-free 3x3 convs 1>w>2w | >4w>4w | >8w>8w, each with BatchNorm (scale+bias);
    VALID convs and 2x2 pools take 48 -> 46 -> 44 -> 22 -> 20 -> 18 -> 9 -> 7 -> 5 -> 2, so the
    flattened features are 2*2*8w; dense 8w (no bias) + BatchNorm; dense num_classes + bias."""
    channels = [1, w, 2 * w, 4 * w, 4 * w, 8 * w, 8 * w]
    convs = sum(9 * cin * cout + 2 * cout for cin, cout in itertools.pairwise(channels))
    dense = (2 * 2 * 8 * w) * 8 * w + 2 * 8 * w
    return convs + dense + 8 * w * num_classes + num_classes


def test_registry_covers_the_required_models():
    assert set(models.MODELS) == set(TINY)
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        models.create_model("resnet", 7)


@pytest.mark.parametrize("name", sorted(TINY))
def test_output_shape_and_float32_logits(name):
    model = models.create_model(name, 6, **TINY[name])
    x = jnp.asarray(np.random.default_rng(0).random((3, 48, 48, 1)), jnp.float32)
    variables = jax.jit(model.init)(jax.random.key(0, impl="rbg"), x)
    assert set(variables) == {"params", "batch_stats"}
    logits = jax.jit(model.apply)(variables, x)
    assert logits.shape == (3, 6) and logits.dtype == jnp.float32
    assert np.all(np.isfinite(logits))


def test_seed_cnn_parameter_count_by_hand():
    for width, classes in ((32, 7), (4, 6)):
        _, count = _params(models.create_model("seed_cnn", classes, width=width))
        assert count == seed_cnn_param_count(width, classes)
    assert seed_cnn_param_count(32, 7) == 1_390_823


def test_full_size_parameter_counts():
    """vgg_fer: 4 stages (64..512) on 48x48 -> 3x3x512 -> 4096 -> 4096 -> 7."""
    counts = {name: _params(models.create_model(name, 7))[1] for name in models.MODELS}
    convs = [1, 64, 64, 128, 128, 256, 256, 512, 512]
    vgg_fer = (sum(9 * a * b + 2 * b for a, b in itertools.pairwise(convs))
               + (3 * 3 * 512 + 1) * 4096 + (4096 + 1) * 4096 + (4096 + 1) * 7)
    assert counts["vgg_fer"] == vgg_fer
    assert counts["vgg16"] > counts["vgg13"] > 9_000_000
    assert counts["compact"] < 2_000_000 < counts["vgg13"]


def test_dropout_only_in_training_and_batch_stats_update():
    model = models.create_model("seed_cnn", 7, width=4)
    x = jnp.asarray(np.random.default_rng(1).random((8, 48, 48, 1)), jnp.float32)
    variables = jax.jit(model.init)(jax.random.key(0, impl="rbg"), x)
    evaluate = jax.jit(model.apply)
    np.testing.assert_array_equal(evaluate(variables, x), evaluate(variables, x))
    train = jax.jit(lambda v, key: model.apply(v, x, train=True, rngs={"dropout": key},
                                               mutable=["batch_stats"]))
    train_out = [train(variables, jax.random.key(i, impl="rbg")) for i in (1, 2)]
    assert not np.allclose(train_out[0][0], train_out[1][0])
    before = jax.tree_util.tree_leaves(variables["batch_stats"])
    after = jax.tree_util.tree_leaves(train_out[0][1]["batch_stats"])
    assert any(not np.allclose(a, b) for a, b in zip(before, after))


def test_bfloat16_compute_keeps_float32_params():
    model = models.create_model("compact", 7, dtype=jnp.bfloat16, **TINY["compact"])
    x = jnp.ones((2, 48, 48, 1))
    variables = jax.jit(model.init)(jax.random.key(0, impl="rbg"), x)
    assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(variables["params"]))
    assert jax.jit(model.apply)(variables, x).dtype == jnp.float32


def test_create_model_from_json_config_lists_is_hashable():
    """Configs restored from JSON hold lists; the module must still be a valid jit static arg."""
    from fer_jax.models import create_model

    model = create_model("compact", 7, width=8, multipliers=[2, 4, 8], dense=64)
    assert model.multipliers == (2, 4, 8)
    hash(model)


@pytest.mark.slow
def test_layer_impls_agree():
    """The layers of every layer_impl (oneDNN convolutions, the fast layers of fer_jax.conv,
    flax's): same variables, outputs and gradients."""
    x = jnp.asarray(np.random.default_rng(2).random((4, 48, 48, 1)), jnp.float32)
    results = []
    for impl in models.LAYER_IMPLS:
        model = models.create_model("seed_cnn", 7, width=4, layer_impl=impl)
        variables = model.init(jax.random.key(0), x)

        def loss(params, model=model, variables=variables):
            logits, updates = model.apply({**variables, "params": params}, x, train=True,
                                          rngs={"dropout": jax.random.key(1)},
                                          mutable=["batch_stats"])
            return jnp.mean(logits ** 2), (logits, updates["batch_stats"])

        results.append(jax.grad(loss, has_aux=True)(variables["params"]))
    flax_ = results[models.LAYER_IMPLS.index("flax")]
    # BatchNorm's per-channel sums run over 4 * 48 * 48 = 9216 values in another order (a dot
    # against a tree of adds), and so do the convolutions' (oneDNN's kernels): float32
    # rounding of up to ~n * 2^-24 = 5e-4 of the summed magnitudes, which reaches the
    # gradients; 1e-3 of each leaf's scale.
    for other in results:
        assert jax.tree_util.tree_structure(other) == jax.tree_util.tree_structure(flax_)
        for a, b in zip(jax.tree_util.tree_leaves(other), jax.tree_util.tree_leaves(flax_)):
            scale = float(jnp.max(jnp.abs(b))) or 1.0
            np.testing.assert_allclose(a / scale, b / scale, atol=1e-3)
    with pytest.raises(ValueError, match="unknown layer_impl"):
        models.create_model("compact", 7, layer_impl="eigen").init(jax.random.key(0), x)
