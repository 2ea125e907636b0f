"""Trained classifiers: :func:`load` (a flat run, a two-tier directory or an ensemble) gives the
one :class:`Classifier` every evaluation uses (probabilities with test-time augmentation,
penultimate features), over one batched prediction loop."""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fer_jax import checkpoint as checkpoint_lib
from fer_jax import classes, metrics, two_tier
from fer_jax.data import augment as augment_lib
from fer_jax.data.dataset import Split
from fer_jax.errors import FerCheckpointError
from fer_jax.runtime import progress_bar
from fer_jax.state import build_model, inference_variables, state_template

TTA_VIEWS = ((False, 0, 0), (True, 0, 0), (False, 2, 0), (False, -2, 0), (False, 0, 2),
             (False, 0, -2))
# Test-time augmentation modes: tta=True is "shifts" (TTA_VIEWS); "tencrop" is
# augment.ten_crop_views (corner and centre crops resized to 48 px, and their mirrors).
TTA_MODES = ("shifts", "tencrop")


def _shifted(x, dy: int, dx: int):
    """Shifts images ``[B, H, W, 1]`` by (dy, dx) pixels, repeating the border."""
    if not (dy or dx):
        return x
    h, w = x.shape[1:3]
    pad = max(abs(dy), abs(dx))
    padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    return padded[:, pad - dy:pad - dy + h, pad - dx:pad - dx + w]


def _tta_views(x, tta: bool | str) -> list:
    """The views of float images ``x`` that ``tta`` (False, True, or one of :data:`TTA_MODES`)
    averages over."""
    if tta == "tencrop":
        return augment_lib.ten_crop_views(x)
    if tta in (True, "shifts"):
        return [_shifted(x[:, :, ::-1] if flip else x, dy, dx) for flip, dy, dx in TTA_VIEWS]
    if tta is False:
        return [x]
    raise ValueError(f"unknown tta {tta!r}; expected True, False or one of {TTA_MODES}")


@functools.partial(jax.jit, static_argnames=("apply_fn", "tta"))
def _probabilities_batch(apply_fn, variables, images_uint8, tta: bool | str):
    probs = [jax.nn.softmax(apply_fn(variables, view, train=False).astype(jnp.float32))
             for view in _tta_views(augment_lib.to_float(images_uint8), tta)]
    return jnp.mean(jnp.stack(probs), axis=0)


@functools.partial(jax.jit, static_argnames=("apply_fn",))
def _features_batch(apply_fn, variables, images_uint8):
    """The input of the network's last Dense layer (its penultimate features)."""
    inputs = []

    def record_dense_inputs(next_fun, args, kwargs, context):
        if isinstance(context.module, nn.Dense) and context.method_name == "__call__":
            inputs.append(args[0])
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record_dense_inputs):
        apply_fn(variables, augment_lib.to_float(images_uint8), train=False)
    return inputs[-1].astype(jnp.float32)


def _in_batches(batch_fn: Callable[[np.ndarray], jax.Array], images: np.ndarray, *,
                batch_size: int, progress: str | None) -> np.ndarray:
    """``batch_fn`` over uint8 images ``[N, 48, 48]`` in batches, the last one padded (so one
    compilation); rows concatenated. ``progress``: a progress description, or None for none
    (:func:`fer_jax.runtime.progress_bar`: plain lines when stderr is not a terminal)."""
    out = []
    starts = range(0, len(images), batch_size)
    with progress_bar(len(starts), 0, progress or "", progress is not None, leave=False,
                      unit="batch") as bar:
        for start in starts:
            chunk = images[start:start + batch_size]
            padded = np.concatenate([chunk, np.zeros((batch_size - len(chunk),)
                                                     + chunk.shape[1:], np.uint8)])
            out.append(np.asarray(batch_fn(padded))[:len(chunk)])
            bar.update(1)
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def predict_probabilities(apply_fn, variables, images: np.ndarray, *, batch_size: int = 256,
                          tta: bool | str = False, progress: str | None = None) -> np.ndarray:
    """Class probabilities ``float32 [N, C]`` of uint8 images ``[N, 48, 48]``. ``tta``
    averages over views: True or "shifts": :data:`TTA_VIEWS` (identity, flip, four 2-pixel
    shifts); "tencrop": :func:`fer_jax.data.augment.ten_crop_views`."""
    return _in_batches(lambda batch: _probabilities_batch(apply_fn, variables, batch, tta),
                       images, batch_size=batch_size, progress=progress)


def evaluate_split(apply_fn, variables, split: Split, class_names, *, batch_size: int,
                   tta: bool | str = False, progress: str | None = None) -> tuple[dict, float]:
    """(classification report, mean cross-entropy) of ``split`` (labels already encoded)."""
    probs = predict_probabilities(apply_fn, variables, split.images, batch_size=batch_size,
                                  tta=tta, progress=progress)
    return report_and_loss(probs, split.labels, class_names)


def report_and_loss(probs: np.ndarray, labels: np.ndarray, class_names) -> tuple[dict, float]:
    """(classification report, mean cross-entropy) of probabilities ``[N, C]`` of encoded
    ``labels``."""
    loss = float(-np.mean(np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-30))))
    confusion = metrics.confusion_matrix(labels, metrics.top1_predictions(probs),
                                         len(class_names))
    return metrics.classification_report(confusion, class_names), loss


# ----------------------------------------------------------------------------- classifiers
CHECKPOINTS: tuple[str, ...] = ("latest", "best")
# An ensemble run's manifest: {"members": [member run directories, relative]}.
ENSEMBLE_MANIFEST = "ensemble.json"


@dataclasses.dataclass(frozen=True)
class Classifier:
    """A trained classifier: uint8 faces ``[N, 48, 48]`` -> probabilities over ``grouping``.

    Flat: one network (``model``, ``variables``, its ``config`` and checkpoint ``step``).
    Two-tier: ``members`` (``tier1``, ``negative``, ``positive``: flat classifiers of the
    setting's member groupings) combined by :func:`fer_jax.two_tier.route` with ``routing``.
    Ensemble: ``ensemble`` (flat classifiers of one grouping) whose probabilities average.
    Load either kind with :func:`load`.
    """

    grouping: classes.Grouping
    description: str
    model: nn.Module | None = None
    variables: dict | None = None
    config: ml_collections.ConfigDict | None = None
    step: int | None = None
    members: dict[str, Classifier] | None = None
    routing: str | None = None
    ensemble: tuple[Classifier, ...] | None = None
    batch_size: int = 256

    def __post_init__(self):
        if self.members is None:
            return
        for name, grouping in two_tier.member_groupings(self.grouping.name).items():
            member = self.members[name]
            if member.grouping.name != grouping.name:
                raise FerCheckpointError(
                    f"{member.description}: member {name!r} predicts grouping "
                    f"{member.grouping.name!r}; the {self.grouping.name} setting needs "
                    f"{grouping.name!r}")

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.grouping.class_names

    @property
    def steps(self) -> dict[str, int]:
        """The checkpoint step of each network: ``{"flat": s}`` or ``{member: s}``."""
        if self.ensemble is not None:
            return {f"member{k}": member.step for k, member in enumerate(self.ensemble)}
        if self.members is None:
            return {"flat": self.step}
        return {name: member.step for name, member in self.members.items()}

    def probabilities(self, images: np.ndarray, *, tta: bool | str = False,
                      progress: str | None = None) -> np.ndarray:
        """float32 ``[N, C]`` over :attr:`class_names`; ``tta`` averages over views (see
        :func:`predict_probabilities`); ``progress``: a progress-bar description, or None."""
        if self.ensemble is not None:
            return np.mean([member.probabilities(images, tta=tta, progress=progress)
                            for member in self.ensemble], axis=0)
        if self.members is None:
            return predict_probabilities(self.model.apply, self.variables, images,
                                         batch_size=self.batch_size, tta=tta, progress=progress)
        return self.route(self.member_probabilities(images, tta=tta, progress=progress))

    def member_probabilities(self, images: np.ndarray, *, tta: bool | str = False,
                             progress: str | None = None) -> dict[str, np.ndarray]:
        """Two-tier: ``{member: probabilities over its grouping}``."""
        return {name: member.probabilities(images, tta=tta,
                                           progress=progress and f"{progress} [{name}]")
                for name, member in self.members.items()}

    def route(self, member_probs: dict[str, np.ndarray], routing: str | None = None):
        """Two-tier: member probabilities -> probabilities over the setting's classes
        (``routing`` defaults to the model's)."""
        return two_tier.route(*(member_probs[name] for name in two_tier.MEMBERS),
                              setting=self.grouping.name, routing=routing or self.routing)

    def features(self, images: np.ndarray) -> np.ndarray:
        """float32 ``[N, D]``: the penultimate features (input of the last Dense layer); of a
        two-tier model or an ensemble, its members' features side by side."""
        if self.ensemble is not None:
            return np.concatenate([member.features(images) for member in self.ensemble], axis=1)
        if self.members is None:
            return _in_batches(lambda batch: _features_batch(self.model.apply, self.variables,
                                                             batch),
                               images, batch_size=self.batch_size, progress=None)
        return np.concatenate([member.features(images) for member in self.members.values()],
                              axis=1)

    def with_routing(self, routing: str) -> Classifier:
        """This two-tier model with another routing."""
        return dataclasses.replace(
            self, routing=routing,
            description=self.description.replace(f"({self.routing} routing)",
                                                 f"({routing} routing)"))


def load(workdir: str | pathlib.Path, checkpoint: str = "latest", *,
         routing: str | None = None, batch_size: int = 256) -> Classifier:
    """The classifier trained in ``workdir``: a flat run (its ``checkpoint``: ``"latest"``, or
    ``"best"`` by val accuracy, falling back to the latest when none has one) or a two-tier
    directory (manifest; each member's ``checkpoint``; ``routing`` overrides its own).

    Raises FerCheckpointError when there is no trained classifier, a member predicts another
    grouping than the setting needs, or ``routing`` is given for a flat run.
    """
    workdir = pathlib.Path(workdir)
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"unknown checkpoint {checkpoint!r}; expected one of {CHECKPOINTS}")
    if two_tier.is_two_tier(workdir):
        setting, own_routing, member_dirs = two_tier.read_manifest(workdir)
        routing = routing or own_routing
        members = {name: load(path, checkpoint, batch_size=batch_size)
                   for name, path in member_dirs.items()}
        return Classifier(two_tier.setting_grouping(setting),
                          f"two-tier {setting} ({routing} routing) from {workdir}, {checkpoint} "
                          "checkpoints", members=members, routing=routing, batch_size=batch_size)
    if routing is not None:
        raise FerCheckpointError(f"{workdir}: routing applies to two-tier models; this is a "
                                 "flat classifier run")
    if (workdir / ENSEMBLE_MANIFEST).is_file():
        paths = json.loads((workdir / ENSEMBLE_MANIFEST).read_text())["members"]
        ensemble = tuple(load(workdir / path, "latest", batch_size=batch_size) for path in paths)
        return Classifier(ensemble[0].grouping, f"ensemble of {len(ensemble)} "
                          f"{ensemble[0].config.model} members from {workdir}",
                          ensemble=ensemble, batch_size=batch_size)
    if not checkpoint_lib.has_checkpoint(workdir):
        raise FerCheckpointError(f"{workdir / checkpoint_lib.CHECKPOINT_DIR}: no checkpoint "
                                 "found (train first, or check --workdir)")
    with checkpoint_lib.Checkpointer(workdir) as ckpt:
        step = ckpt.best_step() if checkpoint == "best" else None
        meta, saved = ckpt.read_json(step)
        if "model" not in saved:
            raise FerCheckpointError(f"{ckpt.directory}: checkpoint has no classifier config")
        config = ml_collections.ConfigDict(saved)
        steps_per_epoch = int(meta.get("steps_per_epoch", 1))
        restored = ckpt.restore(state_template(config, steps_per_epoch), step)
    state = restored.state
    grouping = classes.grouping(config.grouping)
    return Classifier(grouping, f"{config.model} ({grouping.name}) from {workdir}, "
                                f"{checkpoint} checkpoint (step {restored.step})",
                      model=build_model(config),
                      variables=inference_variables(state),
                      config=config, step=restored.step, batch_size=batch_size)
