"""GAN training: state, pure discriminator/generator steps, and its run on the shared loop.

One iteration is one discriminator step then one generator step, compiled together under the
same :mod:`fer_jax.parallel` wrappers (``jit`` | ``pmap``) and run by the same
:mod:`fer_jax.loop` as the classifier. The whole training split sits on the device(s) as a
read-only constant; each batch is a set of indices (a class drawn uniformly or with
probability ~ sqrt(count), ``config.class_sampling``, then an image of that class, so rare
disgust is seen often) and one PRNG key per example, all a pure function of
``(seed, step)``. So a run killed and restarted from its last checkpoint ends bit-identical
to an uninterrupted run, and ``jit`` and ``pmap`` see the same examples and noise.

Divergence guard (the loop's): a NaN/Inf rolls the run back to the last checkpoint (only
finite states are ever saved), multiplies both learning rates by ``config.rollback_lr_factor``
and logs a ``rollback`` event.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import struct

from fer_jax import loop, parallel, plots, run_guard
from fer_jax.checkpoint import Checkpointer, has_checkpoint
from fer_jax.classes import EMOTION_INDEX
from fer_jax.data import load_from_config
from fer_jax.data.augment import to_float
from fer_jax.data.dataset import FerData, Split
from fer_jax.errors import FerCheckpointError, FerError
from gan import losses, models, quality
from gan.input_pipeline import BalancedBatches

PyTree = Any


@struct.dataclass
class GANState:
    """Everything a GAN run needs to continue exactly where it stopped.

    ``d_batch_stats`` holds the discriminator's spectral-norm power-iteration vectors (empty for
    the DCGAN baseline); ``ema_params`` is the exponential moving average of ``g_params`` used
    for sampling; ``augment_p`` is the DiffAugment probability (adapted when ADA is on).
    """

    step: jax.Array
    g_params: PyTree
    g_batch_stats: PyTree
    g_opt_state: optax.OptState
    ema_params: PyTree
    d_params: PyTree
    d_batch_stats: PyTree
    d_opt_state: optax.OptState
    augment_p: jax.Array


def adam(learning_rate: float, betas) -> optax.GradientTransformation:
    """Adam whose learning rate lives in the optimizer state (so a rollback can lower it)."""
    return optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate, b1=betas[0],
                                                b2=betas[1])


def learning_rates(state: GANState) -> dict[str, float]:
    """Current ``{"g_lr", "d_lr"}`` of a (host) state."""
    return {"g_lr": float(state.g_opt_state.hyperparams["learning_rate"]),
            "d_lr": float(state.d_opt_state.hyperparams["learning_rate"])}


def with_learning_rates(state: GANState, *, g_lr: float, d_lr: float) -> GANState:
    """``state`` with the generator and discriminator learning rates replaced."""
    def replaced(opt_state, learning_rate):
        return opt_state._replace(hyperparams={**opt_state.hyperparams,
                                               "learning_rate": jnp.float32(learning_rate)})
    return state.replace(g_opt_state=replaced(state.g_opt_state, g_lr),
                         d_opt_state=replaced(state.d_opt_state, d_lr))


def latents(keys, latent_dim: int, truncation: float = 0.0):
    """One standard-normal latent per example key: ``[B, latent_dim]``. ``truncation`` > 0
    draws from the normal truncated to ``[-truncation, truncation]`` (BigGAN's truncation
    trick: fewer, more typical faces of each class)."""
    if truncation > 0:
        return jax.vmap(lambda key: jax.random.truncated_normal(
            key, -truncation, truncation, (latent_dim,)))(keys)
    return jax.vmap(lambda key: jax.random.normal(key, (latent_dim,)))(keys)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _generate_uint8(generator: nn.Module, latent_dim: int, truncation: float, params,
                    batch_stats, keys, labels):
    """uint8 images ``[B, 48, 48]`` from ``generator`` in inference mode (with the given batch
    statistics). Jitted per generator architecture, so equal networks share the compilation."""
    images = generator.apply({"params": params, "batch_stats": batch_stats},
                             latents(keys, latent_dim, truncation), labels, train=False)[..., 0]
    return jnp.clip(jnp.round((images + 1.0) * 127.5), 0, 255).astype(jnp.uint8)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _batch_statistics(generator: nn.Module, latent_dim: int, truncation: float, params,
                      batch_stats, keys, labels):
    """The batch-norm statistics of one train-mode pass of ``generator`` over one batch of
    latents drawn as sampling draws them (``truncation``).

    From zero running averages, one update leaves (1 - momentum) x the batch statistics;
    dividing by that factor gives them exactly.
    """
    zeros = jax.tree_util.tree_map(jnp.zeros_like, batch_stats)
    _, updated = generator.apply({"params": params, "batch_stats": zeros},
                                 latents(keys, latent_dim, truncation), labels, train=True,
                                 mutable=["batch_stats"])
    return jax.tree_util.tree_map(lambda x: x / (1.0 - models.BN_MOMENTUM),
                                  updated["batch_stats"])


@functools.partial(jax.jit, static_argnums=0)
def _discriminator_logits(discriminator: nn.Module, params, batch_stats, images, labels):
    """``discriminator``'s logits ``[B]`` of uint8 images ``[B, 48, 48]`` in inference mode,
    without augmentation."""
    logits = discriminator.apply({"params": params, "batch_stats": batch_stats},
                                 to_float(images) * 2.0 - 1.0, labels, train=False)
    return logits.reshape(-1)


def ema_decay_at(step, decay: float, warmup_steps: int):
    """The generator EMA's decay at ``step``: 0 during the warm-up (the average follows the
    weights), then the configured ``decay`` exactly."""
    return jnp.where(step < warmup_steps, 0.0, decay)


CONV_IMPLS = ("onednn", "xla")


@dataclasses.dataclass(frozen=True)
class GanHparams:
    """Hyperparameters of one GAN (``config.cgan`` / ``config.dcgan``), typed and hashable.

    See ``experiments/configs/gan_base.py`` (``gan_hparams``) for what each field means.
    """

    g_channels: tuple[int, ...]
    d_channels: tuple[int, ...]
    embed_dim: int
    conditioning: str
    latent_dim: int
    loss: str
    r1_gamma: float
    aux_weight: float
    g_aux_scale: float
    g_lr: float
    d_lr: float
    betas: tuple[float, float]
    ema_decay: float
    ema_warmup_steps: int
    augment_policy: tuple[str, ...]
    augment_p: float
    ada_target: float
    ada_speed: float
    ada_min_p: float
    ada_max_p: float
    conv_impl: str

    def __post_init__(self):
        losses.check_policy(self.augment_policy)
        losses.loss_pair(self.loss)
        if self.conv_impl not in CONV_IMPLS:
            raise ValueError(f"unknown conv_impl {self.conv_impl!r}; expected one of "
                             f"{CONV_IMPLS}")

    @classmethod
    def from_config(cls, config) -> GanHparams:
        """From a ``ConfigDict``/dict (sequences become tuples: saved JSON configs and configs
        written as code give equal hyperparameters). A key added to the schema after a config
        was saved takes its :data:`fer_jax.run_guard.ADDED_KEYS` value (the old behaviour)."""
        values = {key: tuple(value) if isinstance(value, (list, tuple)) else value
                  for key, value in dict(config).items()}
        fields = {field.name for field in dataclasses.fields(cls)}
        values |= {key: run_guard.ADDED_KEYS[key] for key in fields - set(values)
                   if key in run_guard.ADDED_KEYS}
        if set(values) != fields:
            raise FerError(f"GAN hyperparameters: unknown {sorted(set(values) - fields)}, "
                           f"missing {sorted(fields - set(values))}")
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class Gan:
    """The static parts of a GAN (networks, losses, optimizers, augmentation) and its pure steps.

    Equal settings make equal (and equally hashed) instances, so jitted methods compile once
    per setting, not once per instance.

    Attributes:
      model: "cgan" (conditional, projection D) or "dcgan" (unconditional baseline).
      hparams: widths, latent size, loss, learning rates, augmentation, EMA.
      axis_name: the pmap axis (None under jit): batch norm and reductions span it.
    """

    model: str
    hparams: GanHparams
    axis_name: str | None = None

    @functools.cached_property
    def networks(self) -> tuple[nn.Module, nn.Module]:
        """(generator, discriminator)."""
        return models.build(self.model, self.hparams, self.axis_name)

    @property
    def generator(self) -> nn.Module:
        return self.networks[0]

    @property
    def discriminator(self) -> nn.Module:
        return self.networks[1]

    @functools.cached_property
    def sampler(self) -> nn.Module:
        """The generator without a pmap axis: sampling runs outside pmap."""
        return models.build(self.model, self.hparams)[0]

    @functools.cached_property
    def loss_fns(self) -> tuple:
        """(discriminator loss, generator loss) of ``hparams.loss``."""
        return losses.loss_pair(self.hparams.loss)

    @functools.cached_property
    def optimizers(self) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
        """(generator, discriminator) Adam optimizers."""
        return (adam(self.hparams.g_lr, self.hparams.betas),
                adam(self.hparams.d_lr, self.hparams.betas))

    # ----------------------------------------------------------------------------- init
    def init_state(self, seed: int) -> GANState:
        """A fresh state, as host (numpy) arrays. Initialisation draws from an "rbg" key: as
        good for initial weights and several times cheaper to compile on CPU than threefry."""
        return jax.device_get(self._init(jax.random.key(seed, impl="rbg")))

    def state_template(self) -> GANState:
        """Zeros shaped like a state (host arrays): a restore target that needs no compiling."""
        shapes = jax.eval_shape(self._init, jax.random.key(0, impl="rbg"))
        return jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), shapes)

    @functools.partial(jax.jit, static_argnums=0)
    def _init(self, key) -> GANState:
        g_key, d_key = jax.random.split(key)
        labels = jnp.zeros((2,), jnp.int32)
        g_vars = self.generator.init(g_key, jnp.zeros((2, self.hparams.latent_dim)), labels,
                                     train=False)
        d_vars = self.discriminator.init(d_key, jnp.zeros((2, 48, 48, 1)), labels, train=False)
        g_params, d_params = g_vars["params"], d_vars["params"]
        return GANState(
            step=jnp.zeros((), jnp.int32),
            g_params=g_params, g_batch_stats=g_vars.get("batch_stats", {}),
            g_opt_state=self.optimizers[0].init(g_params), ema_params=g_params,
            d_params=d_params, d_batch_stats=d_vars.get("batch_stats", {}),
            d_opt_state=self.optimizers[1].init(d_params),
            augment_p=jnp.asarray(self.hparams.augment_p, jnp.float32))

    # ----------------------------------------------------------------------------- pieces
    def sample(self, params, batch_stats, labels, seed: int, batch_size: int = 256,
               truncation: float = 0.0) -> np.ndarray:
        """uint8 ``[N, 48, 48]`` images of canonical ``labels`` (inference mode with
        ``batch_stats``; latents truncated at ``truncation`` when > 0, see :func:`latents`).
        Image i depends only on ``(seed, i, labels[i], truncation)``."""
        labels = np.asarray(labels, np.int32)
        keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.PRNGKey(seed),
                                                       jnp.arange(len(labels)))
        generate = functools.partial(_generate_uint8, self.sampler, self.hparams.latent_dim,
                                     float(truncation), params, batch_stats)
        return _padded_batches(generate, (keys, labels), batch_size, empty=(0, 48, 48),
                               dtype=np.uint8)

    def discriminator_logits(self, state: GANState, images, labels,
                             batch_size: int = 256) -> np.ndarray:
        """float32 ``[N]``: the discriminator's logits of uint8 ``images`` ``[N, 48, 48]`` of
        canonical ``labels`` (inference mode, no augmentation)."""
        logits = functools.partial(_discriminator_logits, self.discriminator, state.d_params,
                                   state.d_batch_stats)
        return _padded_batches(logits, (np.asarray(images), np.asarray(labels, np.int32)),
                               batch_size, empty=(0,), dtype=np.float32)

    def standing_stats(self, params, batch_stats, classes, *, truncation: float = 0.0,
                       batch_size: int = 256, num_batches: int = 16, seed: int = 0):
        """Batch-norm statistics that fit the generator weights ``params`` (the EMA weights,
        whose activations differ from those of the trained weights that the running
        statistics followed), from the distribution samples are drawn from: the mean of the
        statistics of ``num_batches`` train-mode passes over ``batch_size`` class-balanced
        latents of ``classes`` at ``truncation`` (BigGAN's standing statistics)."""
        rng = np.random.default_rng(seed)
        pool = np.array([EMOTION_INDEX[name] for name in classes], np.int32)
        batches = [_batch_statistics(self.sampler, self.hparams.latent_dim, float(truncation),
                                     params, batch_stats,
                                     rng.integers(0, 2**32, (batch_size, 2), dtype=np.uint32),
                                     rng.choice(pool, batch_size))
                   for _ in range(num_batches)]
        return jax.tree_util.tree_map(lambda *xs: jnp.mean(jnp.stack(xs), axis=0), *batches)

    def _generate_train(self, params, batch_stats, z, labels):
        return self.generator.apply({"params": params, "batch_stats": batch_stats}, z, labels,
                                    train=True, mutable=["batch_stats"])

    def _augment(self, keys, images, p):
        return losses.diff_augment(keys, images, self.hparams.augment_policy, p)

    @property
    def _class_logits_kwargs(self) -> dict:
        """Discriminator call arguments that return the auxiliary class logits too."""
        return {"with_class_logits": True} if self.hparams.aux_weight > 0 else {}

    def _split_outputs(self, outputs, labels, num_labelled: int):
        """(adversarial logits, the auxiliary cross-entropy of the first ``num_labelled`` rows
        against ``labels``; 0 without the auxiliary classifier) of a discriminator call."""
        if self.hparams.aux_weight <= 0:
            return outputs, jnp.zeros(())
        logits, class_logits = outputs
        aux = optax.softmax_cross_entropy_with_integer_labels(class_logits[:num_labelled],
                                                              labels).mean()
        return logits, aux

    def _reduce(self, tree):
        return parallel.reduce_mean(tree, self.axis_name)

    # ----------------------------------------------------------------------------- steps
    def d_step(self, state: GANState, real, labels, keys) -> tuple[GANState, dict]:
        """One discriminator update on ``real`` images ([-1, 1]) of ``labels`` against fresh
        fakes of the same labels. ``keys``: ``[B, 3]`` keys (latent, real and fake
        augmentation) per example."""
        hparams = self.hparams
        fake, _ = self._generate_train(state.g_params, state.g_batch_stats,
                                       latents(keys[:, 0], self.hparams.latent_dim), labels)
        real = self._augment(keys[:, 1], real, state.augment_p)
        fake = self._augment(keys[:, 2], jax.lax.stop_gradient(fake), state.augment_p)
        batch = real.shape[0]

        def loss_fn(d_params):
            outputs, updated = self.discriminator.apply(
                {"params": d_params, "batch_stats": state.d_batch_stats},
                jnp.concatenate([real, fake]), jnp.concatenate([labels, labels]), train=True,
                mutable=["batch_stats"], **self._class_logits_kwargs)
            logits, aux = self._split_outputs(outputs, labels, batch)
            real_logits, fake_logits = logits[:batch], logits[batch:]
            loss = self.loss_fns[0](real_logits, fake_logits) + hparams.aux_weight * aux
            r1 = jnp.zeros(())
            if hparams.r1_gamma > 0:
                variables = {"params": d_params, **updated}
                r1 = losses.r1_penalty(
                    lambda x: self.discriminator.apply(variables, x, labels, train=False), real)
                loss = loss + 0.5 * hparams.r1_gamma * r1
            return loss, (updated.get("batch_stats", {}), real_logits, fake_logits, r1, aux)

        (loss, (d_batch_stats, real_logits, fake_logits, r1, aux)), grads = jax.value_and_grad(
            loss_fn, has_aux=True)(state.d_params)
        grads = self._reduce(grads)
        updates, d_opt_state = self.optimizers[1].update(grads, state.d_opt_state, state.d_params)
        overfit = self._reduce(jnp.mean(jnp.sign(real_logits)))  # ADA's r_t
        augment_p = state.augment_p
        if hparams.ada_target > 0:
            augment_p = jnp.clip(
                augment_p + hparams.ada_speed * jnp.sign(overfit - hparams.ada_target),
                hparams.ada_min_p, hparams.ada_max_p)
        state = state.replace(d_params=optax.apply_updates(state.d_params, updates),
                              d_batch_stats=d_batch_stats, d_opt_state=d_opt_state,
                              augment_p=augment_p)
        metrics = {"d_loss": loss, "d_real": jnp.mean(real_logits),
                   "d_fake": jnp.mean(fake_logits), "r1": r1, "ada_rt": overfit,
                   "augment_p": augment_p}
        if hparams.aux_weight > 0:
            metrics["d_aux"] = aux
        return state, self._reduce(metrics)

    def g_step(self, state: GANState, labels, keys) -> tuple[GANState, dict]:
        """One generator update through the (fixed) discriminator, then the EMA update.
        ``keys``: ``[B, 2]`` keys (latent, augmentation) per example."""
        z = latents(keys[:, 0], self.hparams.latent_dim)

        def loss_fn(g_params):
            fake, updated = self._generate_train(g_params, state.g_batch_stats, z, labels)
            fake = self._augment(keys[:, 1], fake, state.augment_p)
            outputs = self.discriminator.apply(
                {"params": state.d_params, "batch_stats": state.d_batch_stats}, fake, labels,
                train=False, **self._class_logits_kwargs)
            logits, aux = self._split_outputs(outputs, labels, len(labels))
            loss = self.loss_fns[1](logits) + (
                self.hparams.aux_weight * self.hparams.g_aux_scale * aux)
            return loss, (updated.get("batch_stats", {}), aux)

        (loss, (g_batch_stats, aux)), grads = jax.value_and_grad(
            loss_fn, has_aux=True)(state.g_params)
        grads = self._reduce(grads)
        updates, g_opt_state = self.optimizers[0].update(grads, state.g_opt_state, state.g_params)
        g_params = optax.apply_updates(state.g_params, updates)
        decay = ema_decay_at(state.step, self.hparams.ema_decay, self.hparams.ema_warmup_steps)
        ema_params = jax.tree_util.tree_map(lambda e, p: decay * e + (1.0 - decay) * p,
                                            state.ema_params, g_params)
        state = state.replace(g_params=g_params, g_batch_stats=g_batch_stats,
                              g_opt_state=g_opt_state, ema_params=ema_params)
        metrics = {"g_loss": loss}
        if self.hparams.aux_weight > 0:
            metrics["g_aux"] = aux
        return state, self._reduce(metrics)

    def train_step(self, state: GANState, batch: dict, rng, images) -> tuple[GANState, dict]:
        """One iteration (D step, G step) on a batch from
        :class:`gan.input_pipeline.BalancedBatches`.

        ``images``: the class-sorted training images (uint8 ``[N, 48, 48]``, device constant).
        ``rng`` is unused: all randomness is per example, in ``batch["key"]``, so the result
        does not depend on how the batch is split over devices.
        """
        del rng
        real = to_float(images[batch["image_index"]]) * 2.0 - 1.0
        keys = jax.vmap(functools.partial(jax.random.split, num=5))(batch["key"])
        state, d_metrics = self.d_step(state, real, batch["label"], keys[:, :3])
        state, g_metrics = self.g_step(state, batch["label"], keys[:, 3:])
        return state.replace(step=state.step + 1), {**d_metrics, **g_metrics}


def _padded_batches(fn, arrays, batch_size: int, *, empty: tuple[int, ...],
                    dtype) -> np.ndarray:
    """``fn(*batch)`` over ``batch_size`` rows of ``arrays`` at a time, each batch padded to
    ``batch_size`` rows (one shape: one compilation), results concatenated (``empty`` shaped
    when there are no rows)."""
    total = len(arrays[0])
    chunks = []
    for start in range(0, total, batch_size):
        rows = min(batch_size, total - start)
        padded = [np.pad(np.asarray(a[start:start + rows]),
                         [(0, batch_size - rows)] + [(0, 0)] * (np.ndim(a) - 1)) for a in arrays]
        chunks.append(np.asarray(fn(*padded))[:rows])
    return np.concatenate(chunks) if chunks else np.zeros(empty, dtype)


def class_grid(gan: Gan, params, batch_stats, classes, per_class: int, seed: int,
               truncation: float = 0.0) -> np.ndarray:
    """uint8 ``[len(classes), per_class, 48, 48]`` generator samples, one row per class."""
    labels = np.repeat([EMOTION_INDEX[name] for name in classes], per_class)
    images = gan.sample(params, batch_stats, labels, seed, truncation=truncation)
    return images.reshape(len(classes), per_class, *images.shape[1:])


# --------------------------------------------------------------------------------- the run
GRID_SEED = 1234  # fixed latents for the sample grids, so grids of successive steps compare
MONITOR_SEED = 4321  # fixed latents for the fakes of the overfitting monitor
# Config keys that may change when a run resumes: presentation, and what experiments.train_gan
# (not the fit) reads.
PRESENTATION_KEYS = ("log_every", "checkpoint_every", "sample_every", "grid_columns",
                     "keep_checkpoints", "overfit_every", "overfit_per_class", "baseline", "eval")
# ... and num_steps: constant learning rates and batches drawn per step make a longer run the
# continuation of a shorter one (a finished run resumes with a larger --config.num_steps).
RESUMABLE_KEYS = PRESENTATION_KEYS + ("num_steps",)


def build_gan(config: ml_collections.ConfigDict, axis_name: str | None = None) -> Gan:
    """The :class:`Gan` of a GAN config: ``config.model`` ("cgan" | "dcgan") picks
    ``config.cgan`` or ``config.dcgan`` as hyperparameters."""
    return Gan(config.model, GanHparams.from_config(config[config.model]), axis_name)


def monitor_faces(split: Split, classes, per_class: int, seed: int) -> Split:
    """Up to ``per_class`` faces of each of ``classes`` from ``split``, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(split.labels == EMOTION_INDEX[name]))[:per_class]
              for name in classes]
    return split.take(np.concatenate(chosen))


def overfitting_monitor(gan: Gan, train_faces: Split, heldout_faces: Split, seed: int):
    """A :class:`fer_jax.loop.Periodic` ``run``: the discriminator's per-class overfitting
    (:func:`gan.quality.d_gap_per_class`) on ``heldout_faces``, ``train_faces`` and as many
    fakes of the current generator (seeded ``seed``, labels of ``train_faces``), as the record
    ``{"d_overfit": {class: ...}, "d_overfit/<class>": overfit}`` (scalars for TensorBoard)."""
    labels = train_faces.labels

    def run(step: int, state: GANState, _) -> dict:
        fakes = gan.sample(state.g_params, state.g_batch_stats, labels, seed)
        report = quality.d_gap_per_class(
            gan.discriminator_logits(state, heldout_faces.images, heldout_faces.labels),
            heldout_faces.labels, gan.discriminator_logits(state, train_faces.images, labels),
            labels, gan.discriminator_logits(state, fakes, labels), labels)
        return {"d_overfit": report,
                **{f"d_overfit/{name}": values["overfit"] for name, values in report.items()
                   if values["overfit"] is not None}}
    return run


def fit(config: ml_collections.ConfigDict, workdir, split: Split, *,
        source: str = "training data", heldout: Split | None = None) -> dict:
    """Trains one GAN on ``split`` in ``workdir`` on :func:`fer_jax.loop.run` (resuming from
    its latest checkpoint; a NaN/Inf rolls back with both learning rates lowered).

    Batches draw classes of ``config.classes`` as ``config.class_sampling`` says.
    SIGTERM/SIGINT checkpoint and return early (``summary["interrupted"]``). Writes
    ``metrics.jsonl``, TensorBoard events and ``samples/step_XXXXXX.png``; with ``heldout``
    faces (never trained on) and ``config.overfit_every`` > 0, also the discriminator's
    per-class overfitting every ``config.overfit_every`` steps (:func:`overfitting_monitor` on
    ``config.overfit_per_class`` faces per class). Returns a summary: steps, rollbacks,
    learning rates, the last logged losses, iterations per second.
    """
    workdir = pathlib.Path(workdir)
    placement = parallel.make_placement(config.parallel)
    gan = build_gan(config, placement.step_axis)
    batches = BalancedBatches.from_split(split, config.classes, config.batch_size, config.seed,
                                         source, class_sampling=config.class_sampling)

    def sample_grid(step: int, state: GANState, _) -> None:
        save_grid(gan, state, config, workdir / "samples" / f"step_{step:06d}.png")

    periodic = [loop.Periodic(config.sample_every, sample_grid)]
    if heldout is not None and config.overfit_every > 0:
        heldout_faces, train_faces = (
            monitor_faces(faces, config.classes, config.overfit_per_class, config.seed)
            for faces in (heldout, split))
        if len(heldout_faces):
            periodic.append(loop.Periodic(config.overfit_every, overfitting_monitor(
                gan, train_faces, heldout_faces, MONITOR_SEED)))

    task = loop.Task(
        name=f"{config.model} {workdir.name}", config=json.loads(config.to_json_best_effort()),
        seed=config.seed, num_steps=config.num_steps, batch_size=config.batch_size,
        init_state=lambda: initial_state(gan, config), state_template=gan.state_template,
        step=parallel.compile_step(gan.train_step, placement, num_consts=1),
        consts=(placement.replicate(batches.images),), batch=batches.batch,
        periodic=tuple(periodic),
        describe=lambda step, state: learning_rates(state), guard_ignores=RESUMABLE_KEYS,
        first_step=lambda state: int(state.step))
    result = loop.run(task, workdir, placement, loop.Schedule(
        log_every=config.log_every, checkpoint_every=config.checkpoint_every,
        keep_checkpoints=config.keep_checkpoints, max_rollbacks=config.max_rollbacks,
        rollback_lr_factor=config.rollback_lr_factor, progress=config.progress))
    summary = {key: value for key, value in result.items()
               if key not in ("state", "step", "best_step", "images_per_sec")}
    rate = result["images_per_sec"]
    return {"workdir": str(workdir), "steps": result["step"], **summary,
            **learning_rates(result["state"]),
            "it_per_s": rate / config.batch_size if rate else None}


def initial_state(gan: Gan, config: ml_collections.ConfigDict) -> GANState:
    """A run's first state: fresh from ``config.seed``, or, with ``config.init_from`` (a
    cgan workdir), that run's latest state (weights, EMA, optimizer moments, augmentation
    probability, step: training continues from its step to ``config.num_steps``) with the
    optimizers' hyperparameters (learning rates, betas) of ``config``. Raises
    FerCheckpointError when ``init_from`` has no checkpoint or another architecture."""
    fresh = gan.init_state(config.seed)
    if not config.init_from:
        return fresh
    if not has_checkpoint(config.init_from):
        raise FerCheckpointError(f"{config.init_from}: init_from has no GAN checkpoint")
    with Checkpointer(config.init_from, best_metric=None) as checkpoints:
        state = checkpoints.restore(gan.state_template()).state
    return state.replace(
        g_opt_state=state.g_opt_state._replace(hyperparams=fresh.g_opt_state.hyperparams),
        d_opt_state=state.d_opt_state._replace(hyperparams=fresh.d_opt_state.hyperparams))


def save_grid(gan: Gan, state: GANState, config: ml_collections.ConfigDict, path) -> None:
    """PNG of ``config.grid_columns`` EMA samples per class of ``config.classes`` (fixed
    latents, so grids of successive steps compare)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    batch_stats = gan.standing_stats(state.ema_params, state.g_batch_stats, config.classes)
    plots.save_image_grid_png(class_grid(gan, state.ema_params, batch_stats, config.classes,
                                         config.grid_columns, GRID_SEED),
                              path, row_names=list(config.classes),
                              title=f"{config.model} step {int(state.step)}")


def train_gan(config: ml_collections.ConfigDict, workdir, data: FerData | None = None) -> dict:
    """Trains ``config.model`` on the training split of ``data`` (default: ``config.data``).

    ``"cgan"``: one conditional GAN over ``config.classes`` in ``workdir``. ``"dcgan"``: the
    baseline, one unconditional DCGAN per class of ``config.classes`` in ``workdir/<class>``
    (on that class's images only). The val split is the held-out set of the discriminator's
    overfitting monitor (see :func:`fit`). Runs resume from their latest checkpoints. Returns
    ``{"model", "data", "synthetic_data", "runs": {run name: fit summary}}``.
    """
    if config.init_from and config.model != "cgan":
        raise FerError(f"init_from ({config.init_from}) continues one cgan run; "
                       f"model {config.model!r} trains one run per class")
    workdir = pathlib.Path(workdir)
    data = load_from_config(config.data) if data is None else data
    split, heldout = data.split("train"), data.split("val")
    if config.model == "cgan":
        runs = {"cgan": fit(config, workdir, split, source=data.source, heldout=heldout)}
    else:
        runs = {}
        for name in config.classes:
            single = config.copy_and_resolve_references()
            single.classes = (name,)
            members = np.flatnonzero(split.labels == EMOTION_INDEX[name])
            runs[name] = fit(single, workdir / name, split.take(members), source=data.source,
                             heldout=heldout)
            if runs[name]["interrupted"]:
                break
    return {"model": config.model, "data": data.source, "synthetic_data": data.synthetic,
            "runs": runs}
