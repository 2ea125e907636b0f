"""Checkpoints of a run: an orbax ``CheckpointManager`` under ``<workdir>/checkpoints``.

Every checkpoint step holds three items:

* ``state``: any pytree of arrays (params, batch statistics, optimizer state, step, RNG key
  data ...), saved through :func:`flax.serialization.to_state_dict` so flax structs and optax
  named tuples round-trip into the caller's structure;
* ``meta``: a JSON dict of small host-side values (data order: epoch and position, seed ...);
* ``config``: the run's configuration as JSON.

plus orbax's per-step ``metrics`` (e.g. ``{"val_accuracy": 0.71}``). The manager keeps the
latest ``max_to_keep`` steps and, in addition, the best step by ``best_metric``. Saves are
atomic (orbax writes to a temporary directory and renames it when complete), so a run killed
during a save leaves the previous checkpoints intact; call :meth:`Checkpointer.close` (or use
it as a context manager) before exiting so asynchronous saves finish.

A damaged step (metadata JSON that does not parse, array data that cannot be read) is set
aside as ``<step>.damaged-<what>`` (outside orbax's step naming, never deleted) and the newest
intact step is used instead, with one line on stderr saying which step was skipped and why
(the lines are also kept in :attr:`Checkpointer.skipped`). Metadata is checked when the
directory is opened, and so is the latest step's array data, so :meth:`~Checkpointer.steps`,
:meth:`~Checkpointer.latest_step` and :meth:`~Checkpointer.read_json` agree with what
:meth:`~Checkpointer.restore` restores; the array data of other steps (the best one) is checked
when restoring them. When no step is intact nothing is moved and
:class:`~fer_jax.errors.FerCheckpointError` says what to do.

Anything else wrong with a checkpoint — a state tree or array shapes that do not match the
model being restored — raises :class:`~fer_jax.errors.FerCheckpointError` naming the
checkpoint directory.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import sys
from typing import Any, Self

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization
from orbax.checkpoint import checkpoint_managers

from fer_jax.errors import FerCheckpointError

PyTree = Any
CHECKPOINT_DIR = "checkpoints"
DAMAGED = "damaged"
# The JSON files of a step (globs relative to its folder); the first two must exist.
METADATA_FILES = ("_CHECKPOINT_METADATA", "state/_METADATA", "state/_sharding",
                  "state/array_metadatas/*", "meta/metadata", "config/metadata", "metrics/metrics")


@dataclasses.dataclass(frozen=True)
class Restored:
    """One restored checkpoint: ``state`` in the caller's structure, ``meta``/``config`` JSON
    dicts and the ``metrics`` saved with it (None when there were none)."""

    step: int
    state: PyTree
    meta: dict
    config: dict
    metrics: dict | None


def _abstract(tree: PyTree) -> PyTree:
    """Shape/dtype(/sharding) placeholders: restored arrays take the target's placement."""
    def leaf(x):
        x = x if hasattr(x, "shape") else np.asarray(x)
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None))
    return jax.tree_util.tree_map(leaf, tree)


class _Damaged(Exception):
    """A step whose files cannot be read; ``what`` names the kind (``metadata``/``arrays``)."""

    def __init__(self, what: str, reason: str):
        super().__init__(reason)
        self.what = what


def _flat_shapes(tree: PyTree) -> dict[str, tuple]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(path): tuple(np.shape(leaf)) for path, leaf in flat}


class Checkpointer:
    """Saves and restores the checkpoints of one run directory.

    Args:
      workdir: the run directory; checkpoints go to ``<workdir>/checkpoints``.
      max_to_keep: how many of the most recent steps to keep.
      best_metric: metrics key ranking checkpoints; the best one is kept beyond
        ``max_to_keep``. Saves without this metric never count as best. None: no ranking
        (only the latest ``max_to_keep`` steps are kept).
      best_mode: ``"max"`` (accuracy) or ``"min"`` (loss).
      async_save: write in a background thread (arrays are copied to host first, so the
        caller may update/donate its state right after :meth:`save` returns).
    """

    def __init__(self, workdir: str | pathlib.Path, *, max_to_keep: int = 2,
                 best_metric: str | None = "val_accuracy", best_mode: str = "max",
                 async_save: bool = True):
        if best_mode not in ("max", "min"):
            raise ValueError(f"best_mode must be 'max' or 'min', got {best_mode!r}")
        self.directory = pathlib.Path(workdir).absolute() / CHECKPOINT_DIR
        self.best_metric = best_metric
        self.best_mode = best_mode
        self.skipped: list[str] = []
        self._set_aside_damaged_metadata()
        policies = [checkpoint_managers.LatestN(n=max_to_keep)]
        if best_metric is not None:
            policies.append(checkpoint_managers.BestN(get_metric_fn=self._score, n=1,
                                                      keep_checkpoints_without_metrics=False))
        options = ocp.CheckpointManagerOptions(
            preservation_policy=checkpoint_managers.AnyPreservationPolicy(policies),
            best_fn=self._score if best_metric is not None else None, best_mode="max",
            create=True,
            cleanup_tmp_directories=True,
            enable_async_checkpointing=async_save)
        try:
            self._manager = ocp.CheckpointManager(
                self.directory, options=options,
                item_handlers={"state": ocp.StandardCheckpointHandler(),
                               "meta": ocp.JsonCheckpointHandler(),
                               "config": ocp.JsonCheckpointHandler()})
        except Exception as e:  # orbax raises many types on a bad directory
            raise FerCheckpointError(f"{self.directory}: cannot open checkpoint directory: "
                                     f"{type(e).__name__}: {e}") from e
        self._set_aside_damaged_latest()

    def _score(self, metrics: dict) -> float:
        value = float(metrics.get(self.best_metric, np.nan))
        if np.isnan(value):
            return -np.inf
        return value if self.best_mode == "max" else -value

    # ----------------------------------------------------------------------------- queries
    def steps(self) -> list[int]:
        """Steps with a complete checkpoint, ascending."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def best_step(self) -> int | None:
        """The step with the best ``best_metric`` among kept checkpoints (None if none has it)."""
        return next(iter(self._ranked()), None)

    def _ranked(self) -> list[int]:
        """Steps with ``best_metric``, best first (ties: the later step first)."""
        scored = [(self._score(m), step) for step in self.steps()
                  if (m := self._manager.metrics(step)) and self.best_metric in m]
        return [step for _, step in sorted(scored, reverse=True)]

    # ----------------------------------------------------------------------------- save
    def save(self, step: int, state: PyTree, *, meta: dict | None = None,
             config: dict | None = None, metrics: dict | None = None,
             force: bool = True) -> bool:
        """Saves ``state`` (a pytree; flax structs fine), JSON ``meta`` and ``config``, and
        ``metrics`` at ``step``. Returns whether a save started (False if ``step`` exists)."""
        if step in self._manager.all_steps():
            return False
        state_dict = serialization.to_state_dict(state)
        args = ocp.args.Composite(state=ocp.args.StandardSave(state_dict),
                                  meta=ocp.args.JsonSave(dict(meta or {})),
                                  config=ocp.args.JsonSave(dict(config or {})))
        metrics = {k: float(v) for k, v in (metrics or {}).items()}
        # A ranked manager gets a dict even when empty (a mid-epoch save): it never ranks best,
        # and orbax does not warn "did not provide metrics" on every such save.
        return self._manager.save(step, args=args, force=force,
                                  metrics=metrics if metrics or self.best_metric else None)

    # ----------------------------------------------------------------------------- restore
    def restore(self, target: PyTree, step: int | None = None, *, best: bool = False) -> Restored:
        """Restores into the structure, shapes and placement of ``target``.

        Restores ``step`` if given, else the best step when ``best``, else the latest step.
        When that step is damaged it is set aside and the next one is restored: the next best
        when ``best``, else the next older. Raises FerCheckpointError when there is no such
        checkpoint, none of them is intact, or it does not fit ``target``.
        """
        target_dict = serialization.to_state_dict(target)
        damaged = {}
        for candidate in self._candidates(step, best):
            try:
                restored = self._restore_step(candidate, target_dict)
            except _Damaged as error:
                damaged[candidate] = error
                continue
            self._set_aside(damaged, [candidate])
            return Restored(step=candidate,
                            state=serialization.from_state_dict(target, restored["state"]),
                            meta=dict(restored["meta"] or {}),
                            config=dict(restored["config"] or {}),
                            metrics=self._manager.metrics(candidate))
        raise self._none_intact(damaged)

    def _candidates(self, step: int | None, best: bool) -> list[int]:
        """The steps to try in order: the one asked for, then its fallbacks."""
        first = self._pick_step(step, best)
        if step is None and best:
            return self._ranked()
        return [s for s in reversed(self.steps()) if s <= first]

    def _restore_step(self, step: int, target_dict: PyTree) -> dict:
        self._check_compatible(step, target_dict, self.directory / str(step))
        try:
            return self._manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(_abstract(target_dict)),
                meta=ocp.args.JsonRestore(), config=ocp.args.JsonRestore()))
        except Exception as e:  # orbax/tensorstore errors are many and deep
            raise _Damaged("arrays", f"unreadable: {type(e).__name__}: {_first_line(e)}") from e

    def read_json(self, step: int | None = None, *, best: bool = False) -> tuple[dict, dict]:
        """``(meta, config)`` of a checkpoint without touching its arrays."""
        step = self._pick_step(step, best)
        path = self.directory / str(step)
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(
                meta=ocp.args.JsonRestore(), config=ocp.args.JsonRestore()))
        except Exception as e:
            raise FerCheckpointError(f"{path}: cannot read checkpoint metadata: "
                                     f"{type(e).__name__}: {_first_line(e)}") from e
        return dict(restored["meta"] or {}), dict(restored["config"] or {})

    def _pick_step(self, step: int | None, best: bool) -> int:
        if step is None:
            step = self.best_step() if best else self.latest_step()
        if step is None:
            what = f"with metric {self.best_metric!r}" if best else "at all"
            raise FerCheckpointError(f"{self.directory}: no checkpoint {what}")
        if step not in self._manager.all_steps():
            raise FerCheckpointError(f"{self.directory}: no checkpoint at step {step}; "
                                     f"have {self.steps()}")
        return step

    def _saved_tree(self, step: int) -> PyTree:
        """The saved state's tree of array metadata (shape, dtype); _Damaged when unreadable."""
        try:
            saved = self._manager.item_metadata(step)["state"]
        except Exception as e:
            raise _Damaged("arrays", f"unreadable array metadata: {type(e).__name__}: "
                                     f"{_first_line(e)}") from e
        if saved is None:
            raise _Damaged("arrays", "no readable 'state' item")
        return saved

    def _check_compatible(self, step: int, target_dict: PyTree, path: pathlib.Path) -> None:
        """Compares the saved tree's leaf paths and shapes with the target's."""
        saved_shapes = _flat_shapes(self._saved_tree(step))
        target_shapes = _flat_shapes(target_dict)
        missing = sorted(set(target_shapes) - set(saved_shapes))
        extra = sorted(set(saved_shapes) - set(target_shapes))
        if missing or extra:
            raise FerCheckpointError(
                f"{path}: checkpoint does not match the model/optimizer being restored: "
                f"missing {_preview(missing)}, unexpected {_preview(extra)}")
        wrong = [f"{k}: saved {saved_shapes[k]}, expected {target_shapes[k]}"
                 for k in sorted(target_shapes) if saved_shapes[k] != target_shapes[k]]
        if wrong:
            raise FerCheckpointError(f"{path}: checkpoint shapes do not match the model being "
                                     f"restored: {_preview(wrong)}")

    # ----------------------------------------------------------------------------- damage
    def _set_aside_damaged_metadata(self) -> None:
        """Sets aside the steps whose metadata does not parse (before orbax reads it)."""
        folders = _step_folders(self.directory)
        damaged = {}
        for step, folder in folders.items():
            try:
                _check_metadata(folder)
            except _Damaged as error:
                damaged[step] = error
        self._set_aside(damaged, [step for step in folders if step not in damaged])

    def _set_aside_damaged_latest(self) -> None:
        """Sets aside the newest steps whose arrays do not read back, down to an intact one."""
        damaged = {}
        for step in reversed(self.steps()):
            try:
                self._read_arrays(step)
                break
            except _Damaged as error:
                damaged[step] = error
        self._set_aside(damaged, [step for step in self.steps() if step not in damaged])

    def _read_arrays(self, step: int) -> None:
        """Reads the step's arrays into host memory (as saved, whatever the model); _Damaged
        when they do not read back."""
        template = jax.tree_util.tree_map(lambda m: np.zeros(m.shape, m.dtype),
                                          self._saved_tree(step))
        try:
            self._manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(template)))
        except Exception as e:  # orbax/tensorstore errors are many and deep
            raise _Damaged("arrays", f"unreadable: {type(e).__name__}: {_first_line(e)}") from e

    def _set_aside(self, damaged: dict[int, _Damaged], intact: list[int]) -> None:
        """Renames each damaged step folder to ``<step>.damaged-<what>`` and says so, or
        raises when no step is ``intact``."""
        if not damaged:
            return
        if not intact:
            raise self._none_intact(damaged)
        for step, error in damaged.items():
            folder = self.directory / str(step)
            aside = _free_name(folder.with_name(f"{step}.{DAMAGED}-{error.what}"))
            try:
                os.rename(folder, aside)
            except FileNotFoundError:  # another process set it aside first
                pass
            except OSError as e:
                raise FerCheckpointError(f"{folder}: checkpoint is damaged ({error}) and cannot "
                                         f"be set aside ({e.strerror}); move it away by hand"
                                         ) from None
            line = (f"warning: skipped damaged checkpoint step {step} ({error}); kept aside as "
                    f"{aside}; using step {max(intact)}")
            print(line, file=sys.stderr, flush=True)
            self.skipped.append(line)
        if hasattr(self, "_manager"):
            self._manager.reload()

    def _none_intact(self, damaged: dict[int, _Damaged]) -> FerCheckpointError:
        reasons = "; ".join(f"{self.directory / str(step)}: {error}"
                            for step, error in sorted(damaged.items(), reverse=True))
        return FerCheckpointError(
            f"no intact checkpoint: {reasons}. Nothing was moved: restore these folders from "
            f"a backup, or delete {self.directory} (or use another workdir) to start over")

    # ----------------------------------------------------------------------------- lifecycle
    def wait(self) -> None:
        """Blocks until pending asynchronous saves are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves and releases the manager."""
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def has_checkpoint(workdir: str | pathlib.Path) -> bool:
    """True when ``workdir`` holds at least one complete checkpoint (cheap, no orbax)."""
    directory = pathlib.Path(workdir) / CHECKPOINT_DIR
    return directory.is_dir() and any(p.name.isdigit() and (p / "_CHECKPOINT_METADATA").exists()
                                      for p in directory.iterdir())


def _step_folders(directory: pathlib.Path) -> dict[int, pathlib.Path]:
    """``{step: folder}`` of the finished step folders in ``directory``."""
    if not directory.is_dir():
        return {}
    return {int(p.name): p for p in directory.iterdir() if p.name.isdigit() and p.is_dir()}


def _check_metadata(folder: pathlib.Path) -> None:
    """Raises _Damaged unless every :data:`METADATA_FILES` file of the step parses as JSON."""
    for required in METADATA_FILES[:2]:
        if not (folder / required).is_file():
            raise _Damaged("metadata", f"{required} is missing")
    for pattern in METADATA_FILES:
        for file in folder.glob(pattern):
            try:
                json.loads(file.read_bytes())
            except (OSError, ValueError) as e:
                raise _Damaged("metadata", f"{file.relative_to(folder)} is unreadable: "
                                           f"{type(e).__name__}: {_first_line(e)}") from None


def _free_name(path: pathlib.Path) -> pathlib.Path:
    """``path``, or ``path-2``, ``path-3`` ... whichever does not exist yet."""
    candidate, number = path, 1
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.name}-{number}")
    return candidate


def _first_line(error: Exception) -> str:
    """The first line of ``error``'s message, without TensorStore's spec dump."""
    line = (str(error).strip().splitlines() or [""])[0]
    return line.split(" See full TensorStore details")[0][:300]


def _preview(items: list[str], limit: int = 4) -> str:
    if not items:
        return "none"
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more


__all__ = ["CHECKPOINT_DIR", "Checkpointer", "Restored", "has_checkpoint"]
