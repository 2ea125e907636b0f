"""Inference of trained classifiers: probabilities (with test-time augmentation), loading a
trained run, and the :class:`Predictor` every evaluation uses."""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm import tqdm

from fer_jax import checkpoint, classes, metrics
from fer_jax.data import augment as augment_lib
from fer_jax.data.dataset import Split
from fer_jax.errors import FerCheckpointError
from fer_jax.state import TrainState, build_model, create_train_state

TTA_VIEWS = ((False, 0, 0), (True, 0, 0), (False, 2, 0), (False, -2, 0), (False, 0, 2),
             (False, 0, -2))


def _shifted(x, dy: int, dx: int):
    """Shifts images ``[B, H, W, 1]`` by (dy, dx) pixels, repeating the border."""
    if not (dy or dx):
        return x
    h, w = x.shape[1:3]
    pad = max(abs(dy), abs(dx))
    padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    return padded[:, pad - dy:pad - dy + h, pad - dx:pad - dx + w]


@functools.partial(jax.jit, static_argnames=("apply_fn", "tta"))
def _predict_batch(apply_fn, variables, images_uint8, tta: bool):
    x = augment_lib.to_float(images_uint8)
    if not tta:
        return jax.nn.softmax(apply_fn(variables, x, train=False).astype(jnp.float32))
    probs = [jax.nn.softmax(apply_fn(variables, _shifted(x[:, :, ::-1] if flip else x, dy, dx),
                                     train=False).astype(jnp.float32))
             for flip, dy, dx in TTA_VIEWS]
    return jnp.mean(jnp.stack(probs), axis=0)


def predict_probabilities(apply_fn, variables, images: np.ndarray, *, batch_size: int = 256,
                          tta: bool = False, progress: str | None = None) -> np.ndarray:
    """Class probabilities ``float32 [N, C]`` for uint8 images ``[N, 48, 48]``, in batches (the
    last one padded, so one compilation). ``tta`` averages over :data:`TTA_VIEWS` (identity,
    flip, four 2-pixel shifts). ``progress``: a tqdm description, or None for no bar."""
    n = len(images)
    out = []
    for start in tqdm(range(0, n, batch_size), desc=progress, disable=progress is None,
                      leave=False):
        chunk = images[start:start + batch_size]
        padded = np.concatenate([chunk, np.zeros((batch_size - len(chunk),) + chunk.shape[1:],
                                                 np.uint8)])
        out.append(np.asarray(_predict_batch(apply_fn, variables, padded, tta))[:len(chunk)])
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def predict_logits(state_or_variables, images: np.ndarray, *, model=None,
                   batch_size: int = 256) -> np.ndarray:
    """Log-probabilities ``[N, C]`` (logits up to a constant) of uint8 images ``[N, 48, 48]``,
    from a :class:`TrainState` or from ``variables`` plus ``model``."""
    if isinstance(state_or_variables, TrainState):
        apply_fn = state_or_variables.apply_fn
        variables = {"params": state_or_variables.params,
                     "batch_stats": state_or_variables.batch_stats}
    else:
        apply_fn, variables = model.apply, state_or_variables
    probs = predict_probabilities(apply_fn, variables, images, batch_size=batch_size)
    return np.log(np.maximum(probs, 1e-30))


def evaluate_split(apply_fn, variables, split: Split, class_names, *, batch_size: int,
                   tta: bool = False, progress: str | None = None) -> tuple[dict, float]:
    """(classification report, mean cross-entropy) of ``split`` (labels already encoded)."""
    probs = predict_probabilities(apply_fn, variables, split.images, batch_size=batch_size,
                                  tta=tta, progress=progress)
    loss = float(-np.mean(np.log(np.maximum(probs[np.arange(len(split)), split.labels], 1e-30))))
    confusion = metrics.confusion_matrix(split.labels, metrics.top1_predictions(probs),
                                         len(class_names))
    return metrics.classification_report(confusion, class_names), loss


# ----------------------------------------------------------------------------- loading
def load_trained(workdir: str | pathlib.Path, *, best: bool = True):
    """``(model, variables, config)`` of a trained run: the best-by-val checkpoint when
    ``best`` (falling back to the latest when none has a val metric), else the latest."""
    workdir = pathlib.Path(workdir)
    if not checkpoint.has_checkpoint(workdir):
        raise FerCheckpointError(f"{workdir / checkpoint.CHECKPOINT_DIR}: no checkpoint found "
                                 "(train first, or check --workdir)")
    with checkpoint.Checkpointer(workdir) as ckpt:
        step = ckpt.best_step() if best else None
        meta, saved = ckpt.read_json(step)
        if "model" not in saved:
            raise FerCheckpointError(f"{ckpt.directory}: checkpoint has no classifier config")
        config = ml_collections.ConfigDict(saved)
        steps_per_epoch = int(meta.get("steps_per_epoch", 1))
        target = jax.eval_shape(lambda: create_train_state(config, 0, steps_per_epoch))
        target = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), target)
        restored = ckpt.restore({"state": target}, step)
    state = restored.state["state"]
    model = build_model(config)
    return model, {"params": state.params, "batch_stats": state.batch_stats}, config


@dataclasses.dataclass(frozen=True)
class Predictor:
    """Images -> probabilities over ``class_names`` (the classes of ``grouping``)."""

    predict: Callable[..., np.ndarray]
    class_names: tuple[str, ...]
    grouping: classes.Grouping
    description: str

    def __call__(self, images: np.ndarray, *, tta: bool = False,
                 progress: str | None = None) -> np.ndarray:
        return self.predict(images, tta=tta, progress=progress)


def load_predictor(workdir: str | pathlib.Path, *, best: bool = True,
                   batch_size: int = 256) -> Predictor:
    """A :class:`Predictor` for the classifier trained in ``workdir`` (see :func:`load_trained`);
    the one entry point evaluation uses, so other predictors (e.g. two-tier) can plug in."""
    model, variables, config = load_trained(workdir, best=best)
    grouping = classes.grouping(config.grouping)

    def predict(images, *, tta=False, progress=None):
        return predict_probabilities(model.apply, variables, images, batch_size=batch_size,
                                     tta=tta, progress=progress)

    return Predictor(predict, grouping.class_names, grouping,
                     f"{config.model} ({grouping.name}) from {workdir}")
