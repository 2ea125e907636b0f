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

Anything wrong with a checkpoint — unreadable files, a state tree or array shapes that do
not match the model being restored — raises :class:`~fer_jax.errors.FerCheckpointError`
naming the checkpoint directory.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Self

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization
from orbax.checkpoint import checkpoint_managers

from fer_jax.errors import FerCheckpointError

PyTree = Any
CHECKPOINT_DIR = "checkpoints"


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
        scored = [(self._score(m), step) for step in self.steps()
                  if (m := self._manager.metrics(step)) and self.best_metric in m]
        return max(scored)[1] if scored else None

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
        Raises FerCheckpointError when there is no such checkpoint or it does not fit
        ``target``.
        """
        step = self._pick_step(step, best)
        path = self.directory / str(step)
        target_dict = serialization.to_state_dict(target)
        self._check_compatible(step, target_dict, path)
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(_abstract(target_dict)),
                meta=ocp.args.JsonRestore(), config=ocp.args.JsonRestore()))
            state = serialization.from_state_dict(target, restored["state"])
        except Exception as e:  # orbax/tensorstore errors are many and deep
            raise FerCheckpointError(f"{path}: checkpoint is unreadable or incompatible: "
                                     f"{type(e).__name__}: {_first_line(e)}") from e
        return Restored(step=step, state=state, meta=dict(restored["meta"] or {}),
                        config=dict(restored["config"] or {}),
                        metrics=self._manager.metrics(step))

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

    def _check_compatible(self, step: int, target_dict: PyTree, path: pathlib.Path) -> None:
        """Compares the saved tree's leaf paths and shapes with the target's."""
        try:
            saved = self._manager.item_metadata(step)["state"]
        except Exception as e:
            raise FerCheckpointError(f"{path}: cannot read checkpoint metadata: "
                                     f"{type(e).__name__}: {_first_line(e)}") from e
        if saved is None:
            raise FerCheckpointError(f"{path}: checkpoint has no readable 'state' item")
        saved_shapes = _flat_shapes(saved)
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


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [""])[0][:300]


def _preview(items: list[str], limit: int = 4) -> str:
    if not items:
        return "none"
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more


__all__ = ["CHECKPOINT_DIR", "Checkpointer", "Restored", "has_checkpoint"]
