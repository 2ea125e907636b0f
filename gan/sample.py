"""Sampling trained GANs: labelled synthetic faces from the EMA generator(s) of a workdir,
with batch-norm statistics recomputed for the EMA weights (standing statistics), written as
an .npz training set by :func:`synthesize`.

A workdir is either one run (a conditional GAN covering its ``config.classes``) or a folder
of per-class runs (the DCGAN baseline: ``<workdir>/<class name>/``). Either way
:func:`load_generators` gives one object that samples any class some run covers.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Sequence

import ml_collections
import numpy as np

from fer_jax import plots
from fer_jax.checkpoint import Checkpointer, has_checkpoint
from fer_jax.classes import EMOTION_INDEX, EMOTIONS
from fer_jax.data.dataset import Split
from fer_jax.errors import FerCheckpointError, FerError
from gan.train import Gan, build_gan, class_grid

GRID_COLUMNS = 10
EVALUATION_STREAM = 1  # SeedSequence entropy word of the evaluation samples


@dataclasses.dataclass(frozen=True)
class Run:
    """One trained GAN: its networks, EMA generator weights, the running batch statistics
    of training, and the classes it generates."""

    gan: Gan
    params: dict
    running_stats: dict
    classes: tuple[str, ...]
    workdir: pathlib.Path
    _standing: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def batch_stats(self, truncation: float) -> dict:
        """Standing statistics of the EMA weights for latents drawn at ``truncation``
        (computed once per truncation)."""
        if truncation not in self._standing:
            self._standing[truncation] = self.gan.standing_stats(
                self.params, self.running_stats, self.classes, truncation=truncation)
        return self._standing[truncation]


@dataclasses.dataclass(frozen=True)
class Generators:
    """The trained runs of a workdir, sampled by class."""

    workdir: pathlib.Path
    runs: tuple[Run, ...]

    @property
    def classes(self) -> tuple[str, ...]:
        """Classes some run can generate, in canonical order."""
        covered = {name for run in self.runs for name in run.classes}
        return tuple(name for name in EMOTIONS if name in covered)

    def run_for(self, name: str) -> Run:
        for run in self.runs:
            if name in run.classes:
                return run
        raise FerError(f"{self.workdir}: no trained generator for class {name!r}; this workdir "
                       f"generates {list(self.classes)}")

    def sample(self, per_class: dict[str, int], seed: int = 0, truncation: float = 0.0) -> Split:
        """``per_class[name]`` images of each class (canonical labels), classes in the order
        given; latents truncated at ``truncation`` when > 0 (``gan.train.latents``). Image i of
        class c depends only on ``(seed, c, i, truncation)``."""
        images, labels = [], []
        for name, count in per_class.items():
            run = self.run_for(name)
            label = EMOTION_INDEX[name]
            images.append(run.gan.sample(run.params, run.batch_stats(truncation),
                                         np.full(count, label),
                                         seed * len(EMOTIONS) + label, truncation=truncation))
            labels.append(np.full(count, label, np.int32))
        if not images:
            return Split.empty()
        return Split(np.concatenate(images), np.concatenate(labels))

    def with_shared_latents(self, labels, seed: int, truncation: float = 0.0) -> np.ndarray:
        """uint8 ``[N, 48, 48]``: image i of canonical ``labels[i]`` from latent i of ``seed``,
        the same latent whatever the label (unlike :meth:`sample`, whose latents depend on the
        class), so a label's effect on one face can be seen."""
        labels = np.asarray(labels, np.int32)
        images = np.zeros((len(labels), 48, 48), np.uint8)
        for label in np.unique(labels):
            run = self.run_for(EMOTIONS[label])
            chosen = labels == label
            images[chosen] = run.gan.sample(run.params, run.batch_stats(truncation), labels, seed,
                                            truncation=truncation)[chosen]
        return images

    def grid(self, classes: Sequence[str], columns: int, seed: int = 0,
             truncation: float = 0.0) -> np.ndarray:
        """uint8 ``[len(classes), columns, 48, 48]``: one row of samples per class."""
        rows = []
        for name in classes:
            run = self.run_for(name)
            rows.append(class_grid(run.gan, run.params, run.batch_stats(truncation), (name,),
                                   columns, seed, truncation))
        return np.concatenate(rows)


def _load_run(workdir: pathlib.Path) -> Run:
    with Checkpointer(workdir, best_metric=None) as checkpoints:
        _, saved = checkpoints.read_json()
        if not {"model", "cgan", "dcgan", "classes"} <= saved.keys():
            raise FerCheckpointError(f"{checkpoints.directory}: not a GAN checkpoint (no GAN "
                                     "config saved with it)")
        config = ml_collections.ConfigDict(saved)
        gan = build_gan(config)
        state = checkpoints.restore(gan.state_template()).state
    classes = tuple(config.classes)
    return Run(gan, state.ema_params, state.g_batch_stats, classes, workdir)


def load_generators(workdir) -> Generators:
    """The latest checkpoint of the run in ``workdir``, or of each per-class run in
    ``workdir/<class name>``."""
    workdir = pathlib.Path(workdir)
    if has_checkpoint(workdir):
        run_dirs = [workdir]
    else:
        run_dirs = [workdir / name for name in EMOTIONS if has_checkpoint(workdir / name)]
    if not run_dirs:
        raise FerCheckpointError(f"{workdir}: no GAN checkpoint here or in its subfolders "
                                 "(train with python -m experiments.train_gan first)")
    return Generators(workdir, tuple(_load_run(run_dir) for run_dir in run_dirs))


def sample_images(source, per_class: dict[str, int], seed: int = 0,
                  truncation: float = 0.0) -> Split:
    """Samples ``per_class`` images from a workdir path or a loaded :class:`Generators`."""
    generators = source if isinstance(source, Generators) else load_generators(source)
    return generators.sample(per_class, seed, truncation)


def evaluation_seed(seed: int) -> int:
    """The seed of a generator's evaluation samples, drawn from a stream of its own: for any
    synthesis ``seed`` below 2**28 (image i of class c then comes from key ``7 seed + c``),
    the evaluation keys (``7 e + c``, ``e`` in [2**28, 2**29)) never meet a synthesis key, so
    no classifier is scored on the faces it trained on."""
    draw = int(np.random.SeedSequence([seed, EVALUATION_STREAM]).generate_state(1)[0])
    return (1 << 28) | (draw >> 4)


def write_npz(synthetic: Split, out) -> None:
    """``synthetic`` as the .npz :func:`fer_jax.data.sampling.load_synthetic_npz` reads
    (``images`` uint8 [N, 48, 48], canonical int32 ``labels``)."""
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, images=synthetic.images, labels=synthetic.labels)
    print(f"wrote {len(synthetic)} images to {out}: "
          + ", ".join(f"{name} {count}" for name, count in synthetic.counts().items() if count))


def write_grid(generators: Generators, names: Sequence[str], path, *, seed: int = 0,
               truncation: float = 0.0, row_names: Sequence[str] | None = None,
               title: str = "") -> None:
    """A PNG with one row of :data:`GRID_COLUMNS` samples per class of ``names``."""
    plots.save_image_grid_png(generators.grid(names, GRID_COLUMNS, seed, truncation), path,
                              row_names=list(row_names or names),
                              title=title or f"samples of {generators.workdir}")
    print(f"wrote sample grid {path}")


def synthesize(workdir, per_class: dict[str, int], out, *, seed: int = 0,
               truncation: float = 0.0, grid=None) -> Split:
    """Samples ``per_class`` images from the GAN(s) of ``workdir`` into the .npz ``out``
    (:func:`write_npz`); ``grid``: also a PNG with one row of samples per class. FerError when
    every count is 0."""
    if not any(per_class.values()):
        raise FerError(f"nothing to synthesize: every count is 0 ({per_class})")
    generators = load_generators(workdir)
    synthetic = generators.sample(per_class, seed, truncation)
    write_npz(synthetic, out)
    if grid:
        write_grid(generators, [name for name, count in per_class.items() if count], grid,
                   seed=seed, truncation=truncation)
    return synthetic


def parse_per_class(text: str) -> dict[str, int]:
    """``"disgust=4000,fear=1000"`` -> ``{"disgust": 4000, "fear": 1000}``; FerError on unknown
    classes, non-integer or negative counts, or repeated classes."""
    counts: dict[str, int] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = entry.partition("=")
        name = name.strip().lower()
        if not sep:
            raise FerError(f"--per-class entry {entry!r} is not CLASS=COUNT")
        if name not in EMOTION_INDEX:
            raise FerError(f"--per-class: unknown class {name!r}; classes are {list(EMOTIONS)}")
        try:
            count = int(value)
        except ValueError:
            raise FerError(f"--per-class: count {value.strip()!r} of {name!r} is not an "
                           "integer") from None
        if count < 0:
            raise FerError(f"--per-class: count of {name!r} must be >= 0, got {count}")
        if name in counts:
            raise FerError(f"--per-class: class {name!r} given twice")
        counts[name] = count
    if not counts:
        raise FerError("--per-class is empty; expected e.g. disgust=4000,fear=1000")
    return counts
