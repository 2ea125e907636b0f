"""GAN networks for 48x48 grayscale faces (Flax Linen, NHWC, explicit ``train`` flag).

* :class:`Generator` / :class:`Discriminator`: the class-conditional pair. The generator maps a
  latent ``z`` and a class label to an image through residual upsampling blocks
  (6 -> 12 -> 24 -> 48) with conditional batch norm, conditioned either by per-class tables or
  BigGAN-style (shared class embedding + hierarchical latent, see :data:`CONDITIONINGS`); the
  discriminator is a spectrally normalised residual network with projection conditioning
  (Miyato & Koyama, 2018).
* :class:`DCGANGenerator` / :class:`DCGANDiscriminator`: the unconditional baseline (one model
  per class, Radford et al. 2016 style, no spectral norm).

Every network is called as ``G(z, labels, train=...)`` -> images in [-1, 1] ``[B,48,48,1]`` and
``D(images, labels, train=...)`` -> logits ``[B]``, so one training step serves both pairs; the
unconditional baseline ignores ``labels``. Batch-norm statistics live in ``batch_stats``; the
discriminator's spectral-norm power-iteration vectors live in its ``batch_stats`` too and are
updated only when ``train=True``. ``axis_name`` makes batch norm average over devices under pmap.
``conv_impl`` picks the convolutions: ``"onednn"`` (oneDNN's kernels on the CPU backend,
:mod:`fer_jax.onednn_conv`) or ``"xla"``; the DCGAN generator's transposed convolutions are
XLA's either way.
Layers that feed a batch norm have no bias (the norm removes it; its gradient would be noise).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from fer_jax.classes import NUM_EMOTIONS
from fer_jax.onednn_conv import conv_layer

BASE_SIZE = 6  # spatial size the generators start from: 6 -> 12 -> 24 -> 48
BN_MOMENTUM = 0.9
# How the cgan generator is conditioned on the label: "embedding" concatenates a class embedding
# to z and uses per-class batch-norm tables; "hierarchical" (BigGAN) splits z into one chunk for
# the input, one per generator block and one for the final norm, each joined with one shared
# class embedding and projected linearly to the scale and shift of its batch norms.
CONDITIONINGS = ("embedding", "hierarchical")


def _upsample(x):
    return x.repeat(2, axis=1).repeat(2, axis=2)


def _downsample(x):
    return nn.avg_pool(x, (2, 2), (2, 2))


def _modulated_batch_norm(x, scale, shift, *, train: bool, axis_name: str | None):
    """Batch norm without its own affine, then ``x * scale + shift`` with per-example
    ``[B, C]`` scale and shift. Called inside a compact module (the norm is its submodule)."""
    x = nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, use_scale=False,
                     use_bias=False, axis_name=axis_name)(x)
    return x * scale[:, None, None, :] + shift[:, None, None, :]


class ConditionalBatchNorm(nn.Module):
    """Conditional batch norm with per-class scale and shift tables (starting at 1 and 0);
    conditioned on ``labels [B]``."""

    num_classes: int
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x, labels, *, train: bool):
        features = x.shape[-1]
        scale = nn.Embed(self.num_classes, features, embedding_init=nn.initializers.ones,
                         name="scale")(labels)
        shift = nn.Embed(self.num_classes, features, embedding_init=nn.initializers.zeros,
                         name="shift")(labels)
        return _modulated_batch_norm(x, scale, shift, train=train, axis_name=self.axis_name)


class ProjectedBatchNorm(nn.Module):
    """Conditional batch norm whose scale ``1 + W_scale c`` and shift ``W_shift c`` are linear
    in a conditioning vector ``c [B, D]`` (BigGAN: latent chunk + shared class embedding).
    Zero-initialised projections make it a plain batch norm at init."""

    axis_name: str | None = None

    @nn.compact
    def __call__(self, x, condition, *, train: bool):
        project = functools.partial(nn.Dense, x.shape[-1], use_bias=False,
                                    kernel_init=nn.initializers.zeros)
        scale = 1.0 + project(name="scale")(condition)
        shift = project(name="shift")(condition)
        return _modulated_batch_norm(x, scale, shift, train=train, axis_name=self.axis_name)


class GeneratorBlock(nn.Module):
    """Residual block that doubles the resolution: (CBN, ReLU, up, conv) x2 + up-conv shortcut.

    Attributes:
      norm: makes a conditional batch norm called as ``norm()(x, condition, train=...)``.
    """

    features: int
    norm: Callable[[], nn.Module]
    conv_impl: str = "xla"

    @nn.compact
    def __call__(self, x, condition, *, train: bool):
        conv = functools.partial(conv_layer, self.conv_impl, self.features, use_bias=False)
        h = nn.relu(self.norm()(x, condition, train=train))
        h = conv((3, 3))(_upsample(h))
        h = nn.relu(self.norm()(h, condition, train=train))
        h = conv((3, 3))(h)
        return h + conv((1, 1))(_upsample(x))


def split_latent(z, num_chunks: int) -> list:
    """``z [B, L]`` split into ``num_chunks`` equal chunks along the latent axis."""
    latent_dim = z.shape[-1]
    if latent_dim % num_chunks:
        raise ValueError(f"hierarchical conditioning splits latent_dim={latent_dim} into "
                         f"{num_chunks} equal chunks (input, one per generator block, final "
                         f"norm); use a multiple of {num_chunks}")
    return jnp.split(z, num_chunks, axis=-1)


class Generator(nn.Module):
    """Class-conditional generator: ``(z [B,L], labels [B]) -> images [B,48,48,1]`` in [-1, 1].

    Attributes:
      channels: feature widths at 6, 12, 24 and 48 pixels.
      embed_dim: size of the class embedding.
      conditioning: how the label enters (see :data:`CONDITIONINGS`).
    """

    num_classes: int = NUM_EMOTIONS
    channels: Sequence[int] = (256, 128, 64, 32)
    embed_dim: int = 32
    conditioning: str = "embedding"
    axis_name: str | None = None
    conv_impl: str = "xla"

    @nn.compact
    def __call__(self, z, labels, *, train: bool):
        embedding = nn.Embed(self.num_classes, self.embed_dim)(labels)
        num_norms = len(self.channels)  # one per upsampling block, and the final norm
        if self.conditioning == "embedding":
            norm = functools.partial(ConditionalBatchNorm, self.num_classes, self.axis_name)
            h, conditions = jnp.concatenate([z, embedding], axis=-1), [labels] * num_norms
        elif self.conditioning == "hierarchical":
            norm = functools.partial(ProjectedBatchNorm, self.axis_name)
            chunks = split_latent(z, num_norms + 1)
            h, *conditions = (jnp.concatenate([chunk, embedding], axis=-1) for chunk in chunks)
        else:
            raise ValueError(f"unknown generator conditioning {self.conditioning!r}; expected "
                             f"one of {CONDITIONINGS}")
        h = nn.Dense(BASE_SIZE * BASE_SIZE * self.channels[0], use_bias=False)(h)
        h = h.reshape(z.shape[0], BASE_SIZE, BASE_SIZE, self.channels[0])
        for features, condition in zip(self.channels[1:], conditions[:-1], strict=True):
            h = GeneratorBlock(features, norm, self.conv_impl)(h, condition, train=train)
        h = nn.relu(norm()(h, conditions[-1], train=train))
        return jnp.tanh(conv_layer(self.conv_impl, 1, (3, 3))(h))


class DiscriminatorBlock(nn.Module):
    """Spectrally normalised residual block, optionally halving the resolution."""

    features: int
    downsample: bool = True
    preactivate: bool = True
    conv_impl: str = "xla"

    @nn.compact
    def __call__(self, x, *, train: bool):
        def sn_conv(kernel):
            return nn.SpectralNorm(conv_layer(self.conv_impl, self.features, kernel))

        h = nn.relu(x) if self.preactivate else x
        h = sn_conv((3, 3))(h, update_stats=train)
        h = sn_conv((3, 3))(nn.relu(h), update_stats=train)
        shortcut = x
        if self.downsample:
            h = _downsample(h)
            shortcut = _downsample(shortcut)
        if self.downsample or x.shape[-1] != self.features:
            shortcut = sn_conv((1, 1))(shortcut, update_stats=train)
        return h + shortcut


class Discriminator(nn.Module):
    """Projection discriminator: ``(images [B,48,48,1], labels [B]) -> logits [B]``.

    ``logit = psi(h) + <embed(label), h>`` with ``h`` the globally sum-pooled features. With
    ``auxiliary_classifier`` it also has an AC-GAN head (Odena et al. 2017): class logits
    ``[B, num_classes]`` from a spectrally normalised linear map of ``h``, returned as
    ``(logits, class_logits)`` when called with ``with_class_logits=True``.

    Attributes:
      channels: feature widths after each block; all but the last halve the resolution
        (48 -> 24 -> 12 -> 6 for four widths).
      auxiliary_classifier: add the class head.
    """

    num_classes: int = NUM_EMOTIONS
    channels: Sequence[int] = (32, 64, 128, 256)
    auxiliary_classifier: bool = False
    conv_impl: str = "xla"

    @nn.compact
    def __call__(self, images, labels, *, train: bool, with_class_logits: bool = False):
        if with_class_logits and not self.auxiliary_classifier:
            raise ValueError("class logits need a discriminator with auxiliary_classifier=True")
        h = images
        last = len(self.channels) - 1
        for i, features in enumerate(self.channels):
            h = DiscriminatorBlock(features, downsample=i < last, preactivate=i > 0,
                                   conv_impl=self.conv_impl)(h, train=train)
        h = jnp.sum(nn.relu(h), axis=(1, 2))
        logits = nn.SpectralNorm(nn.Dense(1))(h, update_stats=train)[:, 0]
        embedding = nn.SpectralNorm(nn.Embed(self.num_classes, h.shape[-1]))(
            labels, update_stats=train)
        logits = logits + jnp.sum(embedding * h, axis=-1)
        # The head runs only when asked for (or to create its parameters at init).
        if self.auxiliary_classifier and (with_class_logits or self.is_initializing()):
            class_logits = nn.SpectralNorm(nn.Dense(self.num_classes, name="classifier"))(
                h, update_stats=train)
            if with_class_logits:
                return logits, class_logits
        return logits


class DCGANGenerator(nn.Module):
    """Unconditional DCGAN generator (baseline, one per class); ``labels`` are ignored.

    Attributes:
      channels: feature widths at 6, 12 and 24 pixels; the last transposed conv makes 48x48x1.
    """

    channels: Sequence[int] = (256, 128, 64)
    axis_name: str | None = None

    @nn.compact
    def __call__(self, z, labels, *, train: bool):
        del labels  # unconditional: one generator is trained per class
        norm = functools.partial(nn.BatchNorm, use_running_average=not train,
                                 momentum=BN_MOMENTUM, axis_name=self.axis_name)
        h = nn.Dense(BASE_SIZE * BASE_SIZE * self.channels[0], use_bias=False)(z)
        h = nn.relu(norm()(h.reshape(z.shape[0], BASE_SIZE, BASE_SIZE, self.channels[0])))
        for features in self.channels[1:]:
            h = nn.ConvTranspose(features, (4, 4), strides=(2, 2), use_bias=False)(h)
            h = nn.relu(norm()(h))
        return jnp.tanh(nn.ConvTranspose(1, (4, 4), strides=(2, 2))(h))


class DCGANDiscriminator(nn.Module):
    """Unconditional DCGAN discriminator: strided convs with leaky ReLU, then a linear logit."""

    channels: Sequence[int] = (64, 128, 256)
    conv_impl: str = "xla"

    @nn.compact
    def __call__(self, images, labels, *, train: bool):
        del labels, train  # unconditional, and no train-dependent layers
        h = images
        for features in self.channels:
            h = nn.leaky_relu(conv_layer(self.conv_impl, features, (4, 4), strides=(2, 2))(h),
                              0.2)
        return nn.Dense(1)(h.reshape(h.shape[0], -1))[:, 0]


def build(model: str, hparams, axis_name: str | None = None) -> tuple[nn.Module, nn.Module]:
    """The (generator, discriminator) pair of ``model`` ("cgan" or "dcgan"), with widths
    ``hparams.g_channels`` / ``hparams.d_channels`` (and ``hparams.embed_dim``,
    ``hparams.conditioning`` and an auxiliary classifier when ``hparams.aux_weight`` > 0 for
    cgan; the unconditional dcgan refuses "hierarchical" and the auxiliary classifier) and the
    convolutions of ``hparams.conv_impl``."""
    if model == "cgan":
        return (Generator(channels=tuple(hparams.g_channels), embed_dim=hparams.embed_dim,
                          conditioning=hparams.conditioning, axis_name=axis_name,
                          conv_impl=hparams.conv_impl),
                Discriminator(channels=tuple(hparams.d_channels),
                              auxiliary_classifier=hparams.aux_weight > 0,
                              conv_impl=hparams.conv_impl))
    if model == "dcgan":
        if hparams.conditioning != "embedding":
            raise ValueError(f"dcgan is unconditional (one model per class): conditioning "
                             f"{hparams.conditioning!r} does not apply; keep 'embedding'")
        if hparams.aux_weight > 0:
            raise ValueError(f"dcgan is unconditional (one model per class): aux_weight "
                             f"{hparams.aux_weight} does not apply; keep 0")
        return (DCGANGenerator(channels=tuple(hparams.g_channels), axis_name=axis_name),
                DCGANDiscriminator(channels=tuple(hparams.d_channels),
                                   conv_impl=hparams.conv_impl))
    raise ValueError(f"unknown GAN model {model!r}; expected 'cgan' or 'dcgan'")
