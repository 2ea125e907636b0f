"""Classifiers for 48x48 grayscale faces (Flax Linen, NHWC).

Every model maps ``float [B, 48, 48, 1]`` (pixels in [0, 1]) to logits ``float32
[B, num_classes]``, takes ``train: bool`` (BatchNorm statistics and dropout), computes in
``dtype`` (e.g. ``jnp.bfloat16``) while keeping float32 parameters, and synchronises
BatchNorm statistics over ``bn_axis_name`` when given (needed under ``pmap`` so a step on
several devices equals a step on the whole batch). Models are built by name through
:func:`create_model`; :data:`MODELS` lists them.

* ``seed_cnn``: the seed project's Keras network (VALID 3x3 convs 32-64 | 128-128 | 256-256,
  max-pool + dropout .25 after each pair, dense 256 + dropout .5).
* ``vgg13`` / ``vgg16``: VGG with BatchNorm, five 3x3 stages (64-128-256-512-512) on 48x48
  (after five 2x2 pools: 1x1x512), then a small head (dense 512).
* ``vgg_fer``: the VGG variant of Khaireddin & Chen (2021, "Facial Emotion Recognition:
  State of the Art Performance on FER2013"): four stages of two 3x3 convs (64-128-256-512)
  with BatchNorm + ReLU and 2x2 max-pool, then FC 4096-4096 with dropout.
* ``compact``: a narrow VGG-style network for CPU budgets (one conv at 48x48, then two convs
  per stage at 24/12/6 px, wide only at low resolution, a small dense head); see its docstring.

``hierarchy`` (a two-tier setting, ``"seven"`` or ``"six"``; None: a plain dense head) swaps the
final dense layer for :class:`HierarchicalHead`: tier-1 and tier-2 heads on one shared backbone,
trained jointly by plain cross-entropy on its log-probabilities.

``layer_impl`` picks the layers' implementations: ``"onednn"`` (``"fast"``'s BatchNorm and
max-pool, and convolutions on oneDNN's kernels on the CPU backend, :mod:`fer_jax.onednn_conv`;
XLA's elsewhere), ``"fast"`` (BatchNorm and 2x2 max-pool of :mod:`fer_jax.conv`, the same
values with gradients XLA:CPU runs faster: seed_cnn training step 1.45x; XLA's convolutions)
or ``"flax"`` (``nn.BatchNorm``, ``nn.max_pool``, XLA's convolutions). All have the same
variables.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fer_jax import conv as conv_lib
from fer_jax import onednn_conv, parallel, two_tier
from fer_jax.errors import FerError

Dtype = Any
LAYER_IMPLS = ("onednn", "fast", "flax")
HEADS = ("two_tier",)  # config ``head`` values besides None (one dense softmax)


def batch_norm(layer_impl: str, **kwargs) -> nn.Module:
    """BatchNorm over the last axis (momentum 0.9, epsilon 1e-5) of ``layer_impl``."""
    if layer_impl not in LAYER_IMPLS:
        raise ValueError(f"unknown layer_impl {layer_impl!r}; expected one of {LAYER_IMPLS}")
    norm = nn.BatchNorm if layer_impl == "flax" else conv_lib.BatchNorm
    return norm(momentum=0.9, epsilon=1e-5, **kwargs)


def max_pool(x, layer_impl: str):
    """2x2 max-pool, stride 2, VALID."""
    return nn.max_pool(x, (2, 2), (2, 2)) if layer_impl == "flax" else conv_lib.max_pool(x)


class Dropout(nn.Dropout):
    """``nn.Dropout`` (same name, so the same parameter paths and keys) whose mask does not
    depend on how the batch is split over devices: each example's mask is its row of the
    global batch's mask (:func:`fer_jax.parallel.this_device_rows` over ``axis_name``)."""

    axis_name: str | None = None

    @nn.compact
    def __call__(self, inputs, deterministic: bool | None = None, rng=None):
        deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
        if deterministic or self.rate == 0.0:
            return inputs
        keep_prob = 1.0 - self.rate
        key = self.make_rng(self.rng_collection) if rng is None else rng
        keep = parallel.this_device_rows(
            lambda n: jax.random.bernoulli(key, keep_prob, (n,) + inputs.shape[1:]),
            inputs.shape[0], self.axis_name)
        return jnp.where(keep, inputs / keep_prob, jnp.zeros_like(inputs))


class ConvBN(nn.Module):
    """Conv (no bias) -> BatchNorm -> optional ReLU."""

    features: int
    kernel: int = 3
    strides: int = 1
    padding: str = "SAME"
    relu: bool = True
    dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None
    layer_impl: str = "onednn"

    @nn.compact
    def __call__(self, x, train: bool):
        x = onednn_conv.conv_layer(self.layer_impl, self.features, (self.kernel, self.kernel),
                                   (self.strides, self.strides), padding=self.padding,
                                   use_bias=False, dtype=self.dtype)(x)
        x = batch_norm(self.layer_impl, use_running_average=not train, dtype=self.dtype,
                       axis_name=self.bn_axis_name)(x)
        return nn.relu(x) if self.relu else x


class DenseBN(nn.Module):
    """Dense (no bias) -> BatchNorm -> ReLU -> dropout."""

    features: int
    dropout: float
    dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None
    layer_impl: str = "onednn"

    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Dense(self.features, use_bias=False, dtype=self.dtype)(x)
        x = batch_norm(self.layer_impl, use_running_average=not train, dtype=self.dtype,
                       axis_name=self.bn_axis_name)(x)
        dropout = Dropout(self.dropout, deterministic=not train, axis_name=self.bn_axis_name)
        return dropout(nn.relu(x))


class HierarchicalHead(nn.Module):
    """Hierarchical softmax over a two-tier ``setting``'s classes: dense heads ``tier1`` (logits
    over :data:`fer_jax.two_tier.GROUPS`), ``negative`` and ``positive`` (logits over each
    group's classes) on the same features; returns float32 ``[B, C]`` log-probabilities
    ``log p(group) + log p(class | group)`` in the setting's class order.

    Its softmax is :func:`fer_jax.two_tier.route` (soft) of the three heads' softmaxes, and
    cross-entropy on it is CE(tier 1, true group) + CE(true group's head, class within it):
    the two tiers trained jointly by the engine's plain loss.
    """

    setting: str

    @nn.compact
    def __call__(self, x):
        columns = two_tier.class_columns(self.setting)
        tier1 = nn.Dense(len(two_tier.GROUPS), dtype=jnp.float32, name="tier1")(x)
        log_group = jax.nn.log_softmax(tier1.astype(jnp.float32))
        parts = [log_group[:, g:g + 1] + jax.nn.log_softmax(
                     nn.Dense(len(cols), dtype=jnp.float32, name=name)(x).astype(jnp.float32))
                 for g, (name, cols) in enumerate(zip(two_tier.GROUPS, columns))]
        # Concatenated in group order; column j of the output is the part holding class j.
        return jnp.concatenate(parts, axis=1)[:, np.argsort(np.concatenate(columns))]


def _classifier_output(x, num_classes: int, hierarchy: str | None):
    """Final layer, always float32: dense logits, or with a ``hierarchy`` setting the
    :class:`HierarchicalHead`'s log-probabilities."""
    if hierarchy is None:
        return nn.Dense(num_classes, dtype=jnp.float32)(x).astype(jnp.float32)
    return HierarchicalHead(hierarchy)(x)


def hierarchy_of(head: str | None, grouping: str) -> str | None:
    """The ``hierarchy`` model field of config ``head`` for ``grouping``: None for a plain
    head; the setting (``"seven"``/``"six"``) for ``"two_tier"``. Raises FerError for an
    unknown head or a two-tier head on a grouping that is not a two-tier setting."""
    if head is None:
        return None
    if head not in HEADS:
        raise FerError(f"unknown head {head!r}; expected None (flat) or one of {HEADS}")
    if grouping not in two_tier.SETTINGS:
        raise FerError(f"head={head!r} needs grouping 'seven' or 'six' (a two-tier setting), "
                       f"got {grouping!r}")
    return grouping


class SeedCNN(nn.Module):
    """The seed project's Keras CNN (VALID convs, BatchNorm after each conv and the dense)."""

    num_classes: int = 7
    width: int = 32
    dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None
    layer_impl: str = "onednn"
    hierarchy: str | None = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        conv = functools.partial(ConvBN, padding="VALID", dtype=self.dtype,
                                 bn_axis_name=self.bn_axis_name, layer_impl=self.layer_impl)
        x = x.astype(self.dtype)
        w = self.width
        for features in ((w, 2 * w), (4 * w, 4 * w), (8 * w, 8 * w)):
            for f in features:
                x = conv(f)(x, train)
            x = max_pool(x, self.layer_impl)
            x = Dropout(0.25, deterministic=not train, axis_name=self.bn_axis_name)(x)
        x = x.reshape((x.shape[0], -1))
        x = DenseBN(8 * w, 0.5, self.dtype, self.bn_axis_name, self.layer_impl)(x, train)
        return _classifier_output(x, self.num_classes, self.hierarchy)


class VGG(nn.Module):
    """VGG with BatchNorm: ``stages`` of (channel multiplier of ``width``, convs), each
    followed by a 2x2 max-pool, then dense layers ``head`` (ReLU + dropout) and the
    classifier."""

    stages: Sequence[tuple[int, int]]
    head: Sequence[int]
    num_classes: int = 7
    width: int = 64
    dropout: float = 0.5
    dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None
    layer_impl: str = "onednn"
    hierarchy: str | None = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.astype(self.dtype)
        for multiplier, convs in self.stages:
            for _ in range(convs):
                x = ConvBN(self.width * multiplier, dtype=self.dtype,
                           bn_axis_name=self.bn_axis_name, layer_impl=self.layer_impl)(x, train)
            x = max_pool(x, self.layer_impl)
        x = x.reshape((x.shape[0], -1))
        for features in self.head:
            x = nn.Dense(features, dtype=self.dtype)(x)
            x = Dropout(self.dropout, deterministic=not train,
                        axis_name=self.bn_axis_name)(nn.relu(x))
        return _classifier_output(x, self.num_classes, self.hierarchy)


class Compact(nn.Module):
    """A narrow VGG-style network sized for CPU training (designed for this project).

    48x48: ConvBN(w) --pool--> 24x24: 2 x ConvBN(m1 w) --pool--> 12x12: 2 x ConvBN(m2 w)
    --pool--> 6x6: 2 x ConvBN(m3 w) --pool--> 3x3 --> DenseBN(``dense``) + dropout
    --> classifier, with (m1, m2, m3) = ``multipliers``.

    Only one (1 -> w channel) conv runs at full resolution, the part XLA:CPU executes least
    efficiently (few channels, memory bound). Capacity is added where it is cheap and
    GEMM-friendly: wide channels at 12x12 and 6x6. Defaults (w=16, multipliers 2-6-16: 32, 96,
    256 channels): ~54M multiply-adds per image (seed CNN: ~143M), ~1.6M parameters.
    Residual blocks on a space-to-depth stem were tried first and learned far more slowly.
    """

    num_classes: int = 7
    width: int = 16
    multipliers: Sequence[int] = (2, 6, 16)
    dense: int = 256
    dropout: float = 0.3
    dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None
    layer_impl: str = "onednn"
    hierarchy: str | None = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        conv = functools.partial(ConvBN, dtype=self.dtype, bn_axis_name=self.bn_axis_name,
                                 layer_impl=self.layer_impl)
        x = conv(self.width)(x.astype(self.dtype), train)
        x = max_pool(x, self.layer_impl)
        for multiplier in self.multipliers:
            x = conv(self.width * multiplier)(x, train)
            x = conv(self.width * multiplier)(x, train)
            x = max_pool(x, self.layer_impl)
        x = x.reshape((x.shape[0], -1))
        x = DenseBN(self.dense, self.dropout, self.dtype, self.bn_axis_name,
                    self.layer_impl)(x, train)
        return _classifier_output(x, self.num_classes, self.hierarchy)


def _vgg(stages, head, dropout):
    return functools.partial(VGG, stages=stages, head=head, dropout=dropout)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "seed_cnn": SeedCNN,
    "vgg13": _vgg(((1, 2), (2, 2), (4, 2), (8, 2), (8, 2)), (512,), 0.5),
    "vgg16": _vgg(((1, 2), (2, 2), (4, 3), (8, 3), (8, 3)), (512,), 0.5),
    # Khaireddin & Chen's network (their code: dropout 0.2 on both 4096 layers).
    "vgg_fer": _vgg(((1, 2), (2, 2), (4, 2), (8, 2)), (4096, 4096), 0.2),
    "compact": Compact,
}


def create_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    """Builds the model registered as ``name`` (see :data:`MODELS`) with ``num_classes``
    outputs; ``kwargs`` set module fields (``dtype``, ``width``, ``dropout``, ``hierarchy``,
    ...). Lists (as configs restored from JSON give them) become tuples, so the module stays
    hashable for jit."""
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    try:
        factory = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}") from None
    hierarchy = kwargs.get("hierarchy")
    if hierarchy is not None and two_tier.setting_grouping(hierarchy).num_classes != num_classes:
        raise ValueError(f"a {hierarchy!r} hierarchical head has "
                         f"{two_tier.setting_grouping(hierarchy).num_classes} classes, not "
                         f"{num_classes}")
    return factory(num_classes=num_classes, **kwargs)
