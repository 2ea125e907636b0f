"""GAN building blocks: networks, spectral norm, losses, DiffAugment, Fréchet distance."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fer_jax.errors import FerError
from gan import losses, metrics, models
from gan.sample import parse_per_class

KEY = jax.random.PRNGKey(0)


def _initialised(module, *inputs):
    return module, module.init(KEY, *inputs, train=False)


@pytest.fixture(scope="module")
def generator():
    return _initialised(models.Generator(channels=(16, 8, 8, 8), embed_dim=4),
                        jnp.zeros((4, 8)), jnp.zeros(4, jnp.int32))


@pytest.fixture(scope="module")
def discriminator():
    return _initialised(models.Discriminator(channels=(8, 8, 16)),
                        jnp.zeros((4, 48, 48, 1)), jnp.zeros(4, jnp.int32))


@pytest.mark.parametrize("kind", ["conditional", "dcgan"])
def test_generators_make_48x48_images_in_tanh_range(kind, generator):
    module, variables = generator if kind == "conditional" else _initialised(
        models.DCGANGenerator(channels=(16, 8, 8)), jnp.zeros((4, 8)), jnp.zeros(4, jnp.int32))
    z = jax.random.normal(KEY, (4, 8))
    images, updated = jax.jit(functools.partial(module.apply, train=True, mutable=["batch_stats"]))(
        variables, z, jnp.arange(4))
    assert images.shape == (4, 48, 48, 1)
    assert float(jnp.max(jnp.abs(images))) <= 1.0
    assert set(updated) == {"batch_stats"}  # train mode updates the running statistics


def test_conditional_generator_output_depends_on_the_label(generator):
    module, variables = generator
    same_z = jnp.repeat(jax.random.normal(KEY, (1, 8)), 4, axis=0)
    images = jax.jit(functools.partial(module.apply, train=False))(
        variables, same_z, jnp.array([1, 1, 5, 5]))
    assert float(jnp.max(jnp.abs(images[0] - images[1]))) == 0.0
    assert float(jnp.mean(jnp.abs(images[0] - images[2]))) > 1e-4


def test_projection_discriminator_logits_depend_on_the_label(discriminator):
    module, variables = discriminator
    images = jax.random.uniform(KEY, (4, 48, 48, 1), minval=-1, maxval=1)
    apply = jax.jit(functools.partial(module.apply, train=False))
    a = apply(variables, images, jnp.array([0, 0, 3, 3]))
    b = apply(variables, images, jnp.array([1, 6, 2, 4]))
    assert a.shape == (4,)
    assert np.all(np.abs(np.asarray(a - b)) > 1e-6)


def test_spectral_norm_bounds_every_discriminator_layer_near_one(discriminator):
    module, variables = discriminator
    images = jax.random.normal(KEY, (4, 48, 48, 1))
    labels = jnp.arange(4)
    # Inflate the weights so that the bound is not trivially satisfied at init.
    params = jax.tree_util.tree_map(lambda w: 5.0 * w, variables["params"])
    stats = variables["batch_stats"]
    apply = jax.jit(functools.partial(module.apply, train=True, mutable=["batch_stats"]))
    for _ in range(30):  # power iterations accumulate in batch_stats across train calls
        _, updated = apply({"params": params, "batch_stats": stats}, images, labels)
        stats = updated["batch_stats"]
    flat_params = {jax.tree_util.keystr(k): v
                   for k, v in jax.tree_util.tree_flatten_with_path(params)[0]}
    flat_stats = {jax.tree_util.keystr(k): v
                  for k, v in jax.tree_util.tree_flatten_with_path(stats)[0]}
    sigmas = [k for k in flat_stats if k.endswith("/sigma']")]
    assert len(sigmas) >= 8  # every conv, the linear head and the class embedding
    for key in sigmas:
        # "['DiscriminatorBlock_0']['SpectralNorm_0']['Conv_0/kernel/sigma']" -> the param path
        module_path, name = key.rsplit("['", 1)
        layer, weight = name.split("/")[:2]
        parent = module_path.rsplit("['SpectralNorm", 1)[0]
        kernel = flat_params[f"{parent}['{layer}']['{weight}']"]
        matrix = np.asarray(kernel).reshape(-1, kernel.shape[-1]) / float(flat_stats[key])
        assert np.linalg.svd(matrix, compute_uv=False)[0] == pytest.approx(1.0, abs=0.02), key


def _flat(tree) -> dict:
    return {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


@pytest.fixture(scope="module")
def hierarchical_generator():
    """Hierarchical generator (4 widths: 5 latent chunks of 2) whose zero-initialised
    scale/shift projections are replaced by random ones, so every chunk reaches the image."""
    module, variables = _initialised(
        models.Generator(channels=(16, 8, 8, 8), embed_dim=4, conditioning="hierarchical"),
        jnp.zeros((4, 10)), jnp.zeros(4, jnp.int32))
    keys = iter(jax.random.split(KEY, 64))
    params = jax.tree_util.tree_map_with_path(
        lambda path, w: (0.5 * jax.random.normal(next(keys), w.shape)
                         if jax.tree_util.keystr(path).endswith(("['scale']['kernel']",
                                                                  "['shift']['kernel']"))
                         else w),
        variables["params"])
    return module, {**variables, "params": params}


def test_hierarchical_generator_is_steered_by_the_label_and_every_latent_chunk(
        hierarchical_generator):
    module, variables = hierarchical_generator
    apply = jax.jit(functools.partial(module.apply, train=False))
    z = jax.random.normal(KEY, (1, 10))
    images = apply(variables, jnp.repeat(z, 7, axis=0), jnp.arange(7))
    assert images.shape == (7, 48, 48, 1)
    assert float(jnp.max(jnp.abs(images))) <= 1.0
    for a in range(7):
        for b in range(a):
            assert float(jnp.mean(jnp.abs(images[a] - images[b]))) > 1e-4, (a, b)
    # Changing one chunk (input, block 1..3, final norm) alone changes the face of a label.
    chunk_changed = jnp.repeat(z, 5, axis=0).reshape(5, 5, 2).at[jnp.arange(5), jnp.arange(5)].add(
        1.0).reshape(5, 10)
    reference = apply(variables, z, jnp.array([2]))
    changed = apply(variables, chunk_changed, jnp.full(5, 2))
    for chunk in range(5):
        assert float(jnp.mean(jnp.abs(changed[chunk] - reference[0]))) > 1e-5, chunk


def test_hierarchical_generator_has_one_shared_class_embedding(hierarchical_generator):
    _, variables = hierarchical_generator
    paths = _flat(variables["params"])
    embeddings = [path for path in paths if path.endswith("['embedding']")]
    assert embeddings == ["['Embed_0']['embedding']"]  # no per-block per-class tables
    projections = [path for path in paths if path.endswith(("['scale']['kernel']",
                                                            "['shift']['kernel']"))]
    assert len(projections) == 2 * (2 * 3 + 1)  # scale + shift of 2 norms per block + final
    assert all(paths[path].shape[0] == 2 + 4 for path in projections)  # chunk + embedding


def test_conditional_batch_norms_start_as_a_plain_batch_norm():
    x = jax.random.normal(KEY, (6, 3, 3, 5)) * 2.0 + 1.0
    plain = nn.BatchNorm(use_running_average=False, use_scale=False, use_bias=False)
    expected, _ = plain.apply(plain.init(KEY, x), x, mutable=["batch_stats"])
    labels = jnp.arange(6) % 7
    condition = jax.random.normal(KEY, (6, 9))
    for norm, conditioned_on in ((models.ConditionalBatchNorm(7), labels),
                                 (models.ProjectedBatchNorm(), condition)):
        variables = norm.init(KEY, x, conditioned_on, train=True)
        out, _ = norm.apply(variables, x, conditioned_on, train=True, mutable=["batch_stats"])
        np.testing.assert_allclose(out, expected, atol=1e-6)


def test_bad_conditioning_or_latent_size_is_refused():
    from experiments.configs import gan_base

    with pytest.raises(ValueError, match=r"latent_dim=12 into 5 equal chunks"):
        models.Generator(channels=(8, 8, 8, 8), embed_dim=4, conditioning="hierarchical").init(
            KEY, jnp.zeros((2, 12)), jnp.zeros(2, jnp.int32), train=False)
    with pytest.raises(ValueError, match="unknown generator conditioning 'film'"):
        generator, _ = models.build("cgan", gan_base.gan_hparams(conditioning="film"))
        generator.init(KEY, jnp.zeros((2, 32)), jnp.zeros(2, jnp.int32), train=False)
    with pytest.raises(ValueError, match="dcgan is unconditional"):
        models.build("dcgan", gan_base.gan_hparams(conditioning="hierarchical"))


def test_an_auxiliary_classifier_adds_class_logits_and_leaves_the_adversarial_logit():
    from experiments.configs import gan_base

    images, labels = jnp.zeros((3, 48, 48, 1)), jnp.array([0, 1, 6], jnp.int32)
    plain = models.Discriminator(channels=(8, 8, 16))
    with_head = models.Discriminator(channels=(8, 8, 16), auxiliary_classifier=True)
    plain_vars = plain.init(KEY, images, labels, train=False)
    head_vars = with_head.init(KEY, images, labels, train=False)
    assert set(head_vars["params"]) - set(plain_vars["params"]) == {"classifier"}
    logits, class_logits = with_head.apply(head_vars, images, labels, train=False,
                                           with_class_logits=True)
    assert class_logits.shape == (3, 7)
    np.testing.assert_array_equal(logits, plain.apply(plain_vars, images, labels, train=False))
    np.testing.assert_array_equal(logits, with_head.apply(head_vars, images, labels, train=False))
    with pytest.raises(ValueError, match="auxiliary_classifier=True"):
        plain.apply(plain_vars, images, labels, train=False, with_class_logits=True)
    assert models.build("cgan", gan_base.gan_hparams(aux_weight=0.5))[1].auxiliary_classifier
    with pytest.raises(ValueError, match="aux_weight 0.5 does not apply"):
        models.build("dcgan", gan_base.gan_hparams(aux_weight=0.5))


def test_the_default_config_builds_the_per_class_table_generator():
    from experiments.configs import gan_base

    hparams = gan_base.gan_hparams()
    generator, _ = models.build("cgan", hparams)
    variables = generator.init(KEY, jnp.zeros((2, hparams.latent_dim)), jnp.zeros(2, jnp.int32),
                               train=False)
    paths = _flat(variables["params"])
    tables = [path for path in paths if path.endswith(("['scale']['embedding']",
                                                       "['shift']['embedding']"))]
    assert len(tables) == 2 * (2 * 3 + 1)  # per-class scale and shift of every norm
    assert all(paths[path].shape[0] == 7 for path in tables)
    assert not any(path.endswith("['kernel']") and "['scale']" in path for path in paths)
    dense_inputs = paths["['Dense_0']['kernel']"].shape[0]
    assert dense_inputs == hparams.latent_dim + hparams.embed_dim  # all of z at the input


def test_losses_have_their_textbook_values():
    real, fake = jnp.array([2.0, 0.5]), jnp.array([-2.0, 0.0])
    assert float(losses.d_hinge(real, fake)) == pytest.approx(0.25 + 0.5)
    assert float(losses.g_hinge(fake)) == pytest.approx(1.0)
    assert float(losses.d_nonsaturating(real, fake)) == pytest.approx(
        np.mean(np.log1p(np.exp(-np.array([2.0, 0.5])))) + np.mean(np.log1p(np.exp([-2.0, 0.0]))))
    assert float(losses.g_nonsaturating(jnp.zeros(3))) == pytest.approx(np.log(2.0))
    with pytest.raises(ValueError, match="unknown GAN loss"):
        losses.loss_pair("wasserstein")


def test_r1_penalty_is_the_squared_input_gradient():
    weights = jnp.arange(48 * 48, dtype=jnp.float32).reshape(1, 48, 48, 1) / 1000.0
    def linear(images):  # its input gradient is `weights` for every image
        return jnp.sum(images * weights, axis=(1, 2, 3))

    penalty = losses.r1_penalty(linear, jnp.zeros((3, 48, 48, 1)))
    assert float(penalty) == pytest.approx(float(jnp.sum(weights ** 2)), rel=1e-5)


def test_diff_augment_ops_probabilities_and_gradients():
    images = jnp.ones((64, 48, 48, 1))
    keys = jax.random.split(KEY, 64)
    never = losses.diff_augment(keys, images, ("translation", "cutout", "brightness"), 0.0)
    assert np.array_equal(np.asarray(never), np.asarray(images))
    cut = np.asarray(losses.diff_augment(keys, images, ("cutout",), 1.0))
    assert np.all((cut == 0).reshape(64, -1).any(axis=1))  # every image lost a square
    half = np.asarray(losses.diff_augment(keys, images, ("brightness",), 0.5))
    changed = np.abs(half - 1.0).reshape(64, -1).max(axis=1) > 0
    assert 16 < changed.sum() < 48
    shifted = np.asarray(losses.diff_augment(keys, images, ("translation",), 1.0))
    assert shifted.min() == 0.0 and shifted.max() == 1.0  # zero-filled borders
    # Same keys, same augmentation: real and fake batches see one distribution of ops.
    again = losses.diff_augment(keys, images, ("translation",), 1.0)
    assert np.array_equal(shifted, np.asarray(again))
    grad = jax.grad(lambda x: jnp.sum(losses.diff_augment(
        keys, x, ("translation", "cutout", "brightness"), 1.0)))(images)
    assert float(jnp.sum(grad)) > 0
    with pytest.raises(ValueError, match="unknown DiffAugment ops"):
        losses.check_policy(("color",))


def test_frechet_distance_matches_the_closed_form_for_2x2_covariances():
    # For 2x2 PSD M: tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)). Non-commuting covariances.
    mu1, mu2 = np.array([0.0, 1.0]), np.array([2.0, -1.0])
    sigma1 = np.array([[2.0, 0.3], [0.3, 0.5]])
    rotation = np.array([[np.cos(0.7), -np.sin(0.7)], [np.sin(0.7), np.cos(0.7)]])
    sigma2 = rotation @ np.diag([3.0, 0.2]) @ rotation.T
    product = sigma1 @ sigma2
    tr_sqrt = np.sqrt(np.trace(product) + 2 * np.sqrt(np.linalg.det(product)))
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_sqrt
    assert metrics.frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-10)

    # Estimated from samples of the two Gaussians, it converges to the same value.
    rng = np.random.default_rng(0)
    a = rng.multivariate_normal(mu1, sigma1, 50_000)
    b = rng.multivariate_normal(mu2, sigma2, 50_000)
    assert metrics.features_fid(a, b) == pytest.approx(expected, rel=0.03)
    assert metrics.features_fid(a, a) == pytest.approx(0.0, abs=1e-8)


def test_parse_per_class_accepts_counts_and_rejects_bad_entries():
    assert parse_per_class("disgust=4000, Fear=1000") == {"disgust": 4000, "fear": 1000}
    for text, message in [("disgust=4k", "not an integer"), ("joy=3", "unknown class 'joy'"),
                          ("disgust", "not CLASS=COUNT"), ("fear=-1", ">= 0"),
                          ("fear=1,fear=2", "given twice"), ("", "empty")]:
        with pytest.raises(FerError, match=message):
            parse_per_class(text)


def test_synthesize_refuses_to_write_nothing(tmp_path, capsys):
    from experiments import synthesize

    out = tmp_path / "empty.npz"
    with pytest.raises(SystemExit) as exit_info:
        synthesize.run_main(lambda: synthesize.main(
            ["--workdir", str(tmp_path), "--per-class", "disgust=0", "--out", str(out)]))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("error: nothing to synthesize")
    assert not out.exists()


def test_the_gate_keeps_classes_the_judge_recognizes_and_rejects_indistinct_ones():
    # Faces the judge tells apart: kept when both shares reach the threshold.
    distinct = {"disgust": {"disgust": 0.8, "fear": 0.2}, "fear": {"disgust": 0.1, "fear": 0.6,
                                                                  "sad": 0.3}}
    gate = metrics.recognizability_gate(distinct, 0.5)
    assert gate["disgust"]["kept"] and gate["fear"]["kept"]
    assert gate["disgust"]["precision"] == pytest.approx(0.8 / 0.9)
    assert not metrics.recognizability_gate(distinct, 0.7)["fear"]["kept"]
    # Rows nearly identical across classes: the judge calls them all "surprise"; surprise's
    # own faces are 100% "recognized", but its precision is 1/K, so nothing passes.
    blobs = {name: {"surprise": 1.0} for name in ("angry", "disgust", "fear", "surprise")}
    gate = metrics.recognizability_gate(blobs, 0.5)
    assert gate["surprise"]["recognizability"] == 1.0
    assert gate["surprise"]["precision"] == pytest.approx(0.25)
    assert not any(verdict["kept"] for verdict in gate.values())


def untrained_generators():
    """:class:`gan.sample.Generators` of a narrow cgan of every class with its initial weights."""
    import pathlib

    from experiments.configs import gan_base
    from gan.sample import Generators, Run
    from gan.train import build_gan

    config = gan_base.get_config()
    config.cgan.update({"g_channels": (8, 8, 8, 8), "d_channels": (8, 8, 8, 8)})
    gan = build_gan(config)
    state = gan.init_state(0)
    return Generators(pathlib.Path("untrained"), (Run(
        gan, state.ema_params, state.g_batch_stats, tuple(config.classes),
        pathlib.Path("untrained")),))


@pytest.mark.slow
def test_evaluation_samples_never_repeat_the_synthesized_training_images():
    from gan.sample import evaluation_seed

    generators = untrained_generators()
    per_class = {"disgust": 6, "fear": 6}
    for seed in (0, 5):
        assert evaluation_seed(seed) == evaluation_seed(seed) != seed
        trained_on = generators.sample(per_class, seed, truncation=0.5)
        scored = generators.sample(per_class, evaluation_seed(seed), truncation=0.5)
        assert np.array_equal(trained_on.labels, scored.labels)
        shared = (trained_on.images[:, None] == scored.images[None]).all(axis=(2, 3))
        assert not shared.any()
    # The streams stay apart for every synthesis seed below 2**28.
    assert {evaluation_seed(seed) >> 28 for seed in range(100)} == {1}


@pytest.mark.slow
def test_shared_latents_give_each_position_one_latent_whatever_the_label():
    generators = untrained_generators()
    mixed = generators.with_shared_latents([1, 3, 1, 3], seed=7)
    disgust = generators.with_shared_latents([1, 1, 1, 1], seed=7)
    happy = generators.with_shared_latents([3, 3, 3, 3], seed=7)
    np.testing.assert_array_equal(mixed[[0, 2]], disgust[[0, 2]])
    np.testing.assert_array_equal(mixed[[1, 3]], happy[[1, 3]])
    assert not np.array_equal(disgust, happy)  # the label changes the face
    assert not np.array_equal(disgust[0], disgust[1])  # positions have their own latents


@pytest.mark.slow
@pytest.mark.parametrize("model", ["cgan", "dcgan"])
def test_onednn_convolutions_give_the_xla_networks_values_and_gradients(model):
    """conv_impl "onednn" and "xla": the same variables, outputs and gradients of G and D."""
    from experiments.configs import gan_base
    from gan.train import GanHparams

    hparams = gan_base.gan_hparams(g_channels=(16, 8, 8, 8) if model == "cgan" else (16, 8, 8),
                                   d_channels=(8, 8, 16), latent_dim=8)
    z, labels = jax.random.normal(KEY, (4, 8)), jnp.array([0, 3, 5, 6])
    images = jax.random.uniform(jax.random.PRNGKey(1), (4, 48, 48, 1), minval=-1, maxval=1)
    results = []
    for impl in ("onednn", "xla"):
        generator, discriminator = models.build(
            model, GanHparams.from_config({**hparams, "conv_impl": impl}))
        g_vars = generator.init(KEY, z, labels, train=False)
        d_vars = discriminator.init(KEY, images, labels, train=False)

        def loss(g_params, d_params, g=generator, d=discriminator, gv=g_vars, dv=d_vars):
            fakes, _ = g.apply({**gv, "params": g_params}, z, labels, train=True,
                               mutable=["batch_stats"])
            logits, _ = d.apply({**dv, "params": d_params}, jnp.concatenate([fakes, images]),
                                jnp.concatenate([labels, labels]), train=True,
                                mutable=["batch_stats"])
            return jnp.sum(jnp.sin(logits))

        value_and_grads = jax.jit(jax.value_and_grad(loss, (0, 1)))
        hlo = value_and_grads.lower(g_vars["params"], d_vars["params"]).as_text()
        assert ("FerConvKernelGradient" in hlo) == (impl == "onednn")
        results.append(value_and_grads(g_vars["params"], d_vars["params"]))
    onednn, xla = results
    assert jax.tree_util.tree_structure(onednn) == jax.tree_util.tree_structure(xla)
    for a, b in zip(jax.tree_util.tree_leaves(onednn), jax.tree_util.tree_leaves(xla)):
        scale = float(jnp.max(jnp.abs(b))) or 1.0
        np.testing.assert_allclose(a / scale, b / scale, atol=1e-4)
