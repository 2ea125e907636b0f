"""The one resumable training loop that the classifier and the GAN both run on.

A family (classifier, GAN) describes one run as a :class:`Task`: its fresh state, a compiled
pure step ``(state, batch, rng, *consts) -> (state, metrics)``, the global batch of each step
and the periodic work (evaluation, sample grids). :func:`run` does the rest, identically for
both: the run guard (a workdir made with another config is refused, keys named), resume from
the latest checkpoint, this process's shard of every batch, the per-step key
``fold_in(PRNGKey(seed), step)``, metric flushes to ``metrics.jsonl``/TensorBoard and the
progress bar, checkpoints (periodic, at each evaluation, at the end, on SIGTERM/SIGINT), and a
NaN/Inf guard: a non-finite loss or state rolls back to the latest checkpoint with every
learning rate times ``rollback_lr_factor`` (only finite states are saved).
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fer_jax import checkpoint, parallel, run_guard
from fer_jax.errors import FerError
from fer_jax.runtime import RunLog, StopSignal, progress_bar

PyTree = Any
# Hyperparameters a rollback scales, wherever an optax.inject_hyperparams state holds them.
LEARNING_RATE_NAMES = ("learning_rate", "learning_rate_scale")
# The states optax.inject_hyperparams makes (the stateful one for stateless hyperparameters too).
_INJECTED = tuple(getattr(optax, name) for name in ("InjectHyperparamsState",
                                                    "InjectStatefulHyperparamsState")
                  if hasattr(optax, name))


class DivergedError(FerError):
    """Training kept producing NaN/Inf after the allowed number of rollbacks."""


@dataclasses.dataclass(frozen=True)
class Periodic:
    """Work on the host state every ``every`` steps and after the last step.

    ``run(step, state, train_means) -> record | None``: ``train_means`` are the means of the
    step metrics since the previous evaluation; a returned record is logged. With ``evaluates``
    the record's values are the checkpoint's metrics (ranking the best checkpoint) and the
    training means restart after it. ``update(step, state, record) -> state``, when given,
    changes the state after the record is logged (e.g. a learning-rate decision).
    """

    every: int
    run: Callable[[int, PyTree, dict[str, float]], dict | None]
    evaluates: bool = False
    update: Callable[[int, PyTree, dict | None], PyTree] | None = None


@dataclasses.dataclass(frozen=True)
class Task:
    """One training run as the loop sees it.

    Attributes:
      name: progress-bar label.
      config: the run's resolved config (JSON); guarded and saved with every checkpoint.
      guard_ignores: top-level config keys that may change between resumes (presentation).
      seed: the per-step keys are ``fold_in(PRNGKey(seed), step)``.
      num_steps: steps of the whole run.
      batch_size: global examples per step (for images/s).
      init_state: the first host state (parameters, optimizer state ...).
      first_step: the step the first state starts at (0; another run's step when the first
        state continues that run's checkpoint).
      state_template: a host state of the right structure to restore into.
      step: the compiled step (:func:`fer_jax.parallel.compile_step`).
      consts: read-only step arguments, already replicated.
      batch: the global host batch (dict of arrays) of a step.
      periodic: evaluations, sample grids ...
      describe: extra fields for each log record from ``(step, host state)`` (learning
        rates, epoch ...).
      log_prefix: prefix of the step metrics' names in the log (e.g. ``"train_"``).
      best_metric: the evaluation record's key that ranks checkpoints (None: no ranking).
      meta: JSON values saved with every checkpoint (e.g. steps per epoch).
    """

    name: str
    config: dict
    seed: int
    num_steps: int
    batch_size: int
    init_state: Callable[[], PyTree]
    state_template: Callable[[], PyTree]
    step: Callable
    consts: tuple
    batch: Callable[[int], dict]
    periodic: tuple[Periodic, ...] = ()
    describe: Callable[[int, PyTree], dict] = lambda step, state: {}
    log_prefix: str = ""
    best_metric: str | None = None
    guard_ignores: tuple[str, ...] = ()
    first_step: Callable[[PyTree], int] = lambda state: 0
    meta: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Schedule:
    """When the loop logs, checkpoints and how it guards against divergence."""

    log_every: int
    checkpoint_every: int = 0        # 0: only at evaluations, the end and on a signal
    keep_checkpoints: int = 2
    max_rollbacks: int = 3
    rollback_lr_factor: float = 0.5
    progress: bool = True


def step_key(seed: int, step: int) -> jax.Array:
    """The key of one step: every random draw of the step derives from it."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), step)


def _map_hyperparameters(state: PyTree, change: Callable[[str, Any], Any]) -> PyTree:
    """``state`` with every injected hyperparameter ``value`` of ``name`` replaced by
    ``change(name, value)``."""
    is_injected = lambda node: isinstance(node, _INJECTED)

    def changed(node):
        if not is_injected(node):
            return node
        return node._replace(hyperparams={name: change(name, value)
                                          for name, value in node.hyperparams.items()})

    return jax.tree_util.tree_map(changed, state, is_leaf=is_injected)


def scale_learning_rates(state: PyTree, factor: float) -> PyTree:
    """``state`` (any pytree holding optax states) with every injected
    :data:`LEARNING_RATE_NAMES` hyperparameter times ``factor``."""
    return _map_hyperparameters(
        state, lambda name, value: value * factor if name in LEARNING_RATE_NAMES else value)


def with_hyperparameter(state: PyTree, name: str, value: float) -> PyTree:
    """``state`` with every injected hyperparameter ``name`` set to ``value``."""
    return _map_hyperparameters(
        state, lambda key, old: np.full(np.shape(old), value, np.asarray(old).dtype)
        if key == name else old)


def injected_hyperparameters(state: PyTree) -> dict[str, float]:
    """Every injected hyperparameter of the optax states in ``state`` (name -> value; the
    first of each name)."""
    is_injected = lambda node: isinstance(node, _INJECTED)
    found: dict[str, float] = {}
    for node in jax.tree_util.tree_leaves(state, is_leaf=is_injected):
        if is_injected(node):
            for name, value in node.hyperparams.items():
                found.setdefault(name, float(np.asarray(value).reshape(-1)[0]))
    return found


def is_finite(tree: PyTree) -> bool:
    """True when every floating-point leaf of ``tree`` is finite."""
    return bool(_all_finite(tree))


@jax.jit
def _all_finite(tree: PyTree):
    flags = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
             if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.all(jnp.stack(flags)) if flags else jnp.array(True)


class _Means:
    """Running sums of step metrics (host floats), for the means since an evaluation."""

    def __init__(self, saved: dict | None = None):
        saved = saved or {}
        self.sums: dict[str, float] = dict(saved.get("sums", {}))
        self.count = int(saved.get("count", 0))

    def add(self, values: list[dict]) -> None:
        for value in values:
            for key, x in value.items():
                self.sums[key] = self.sums.get(key, 0.0) + float(x)
        self.count += len(values)

    def means(self) -> dict[str, float]:
        return {key: total / max(self.count, 1) for key, total in self.sums.items()}

    def to_json(self) -> dict:
        return {"sums": self.sums, "count": self.count}


def run(task: Task, workdir: str | pathlib.Path, placement: parallel.Placement,
        schedule: Schedule) -> dict:
    """Trains ``task`` in ``workdir`` to ``task.num_steps``, resuming from its latest checkpoint.

    Returns a summary: ``step``, ``interrupted`` (the signal number, or None), ``rollbacks``,
    the last logged means, median ``images_per_sec``, ``best_step`` and the final host
    ``state``. Raises :class:`DivergedError` after ``schedule.max_rollbacks`` rollbacks.
    """
    workdir = pathlib.Path(workdir)
    run_guard.check(workdir, task.config, ignore=task.guard_ignores, what="run")
    with checkpoint.Checkpointer(workdir, max_to_keep=schedule.keep_checkpoints,
                                 best_metric=task.best_metric) as ckpt, \
            RunLog(workdir, ckpt.latest_step() or 0) as log, StopSignal() as stop:
        return _Loop(task, workdir, placement, schedule, ckpt, log, stop).run()


class _Loop:
    """The state of one :func:`run` (kept on an object, not in closures)."""

    def __init__(self, task, workdir, placement, schedule, ckpt, log, stop):
        self.task, self.workdir, self.placement = task, workdir, placement
        self.schedule, self.ckpt, self.log, self.stop = schedule, ckpt, log, stop
        self.pending: list = []
        self.rates: list[float] = []
        self.last_means: dict[str, float] = {}

    # ------------------------------------------------------------------------- checkpoints
    def _start(self) -> None:
        if self.ckpt.latest_step() is None:
            self.host = self.task.init_state()
            self.step, self.rollbacks, self.means = self.task.first_step(self.host), 0, _Means()
            self._save()
        else:
            self._restore()
            print(f"resuming from {self.ckpt.directory} at step {self.step}", flush=True)

    def _restore(self) -> None:
        restored = self.ckpt.restore(self.task.state_template())
        self.host, self.step = restored.state, restored.step
        self.rollbacks = int(restored.meta.get("rollbacks", 0))
        self.means = _Means(restored.meta.get("train_means"))

    def _save(self, metrics: dict | None = None) -> None:
        meta = {**self.task.meta, "rollbacks": self.rollbacks,
                "train_means": self.means.to_json(), "seed": self.task.seed}
        self.ckpt.save(self.step, self.host, meta=meta, config=self.task.config, metrics=metrics)

    def _roll_back(self, why: str) -> None:
        self.rollbacks += 1
        if self.rollbacks > self.schedule.max_rollbacks:
            raise DivergedError(f"{self.ckpt.directory}: {why} by step {self.step} after "
                                f"{self.schedule.max_rollbacks} rollbacks; lower the learning "
                                "rate")
        bad_step, rollbacks = self.step, self.rollbacks
        self.ckpt.wait()
        self._restore()
        self.rollbacks = rollbacks
        factor = self.schedule.rollback_lr_factor
        self.host = scale_learning_rates(self.host, factor)
        print(f"{self.ckpt.directory}: {why} by step {bad_step}; rolled back to step "
              f"{self.step} with learning rates x{factor}", flush=True)
        self.log.write({"step": self.step, "event": "rollback", "bad_step": bad_step,
                        "rollbacks": rollbacks})
        self.pending = []

    # ------------------------------------------------------------------------- the loop
    def run(self) -> dict:
        task, placement = self.task, self.placement
        self._start()
        state = placement.replicate(self.host)
        interrupted, tick, tick_step = None, None, self.step
        bar = progress_bar(task.num_steps, self.step, task.name, self.schedule.progress)
        with bar:
            while self.step < task.num_steps:
                batch = placement.shard_batch(parallel.process_shard(task.batch(self.step)))
                state, metrics = task.step(state, batch, step_key(task.seed, self.step),
                                           *task.consts)
                self.pending.append(metrics)
                self.step += 1
                bar.update(1)
                if tick is None:  # the first step compiles: time from after it
                    jax.block_until_ready(metrics)
                    tick, tick_step = time.perf_counter(), self.step
                stopping = self.stop.received is not None
                due = [p for p in task.periodic
                       if self.step % p.every == 0 or self.step == task.num_steps]
                save_due = (stopping or due or self.step == task.num_steps or (
                    self.schedule.checkpoint_every
                    and self.step % self.schedule.checkpoint_every == 0))
                if not (save_due or self.step % self.schedule.log_every == 0):
                    continue
                values = jax.device_get(self.pending)
                self.pending = []
                if not all(np.isfinite(v) for value in values for v in value.values()):
                    self._roll_back("NaN/Inf loss")
                    state, tick = placement.replicate(self.host), None
                    bar.reset(self.step)
                    continue
                self.means.add(values)
                if self.step > tick_step:
                    seconds = time.perf_counter() - tick
                    self.rates.append((self.step - tick_step) * task.batch_size / seconds)
                tick, tick_step = time.perf_counter(), self.step
                self.host = placement.unreplicate(state)
                self._log(values, bar)
                if save_due and not is_finite(self.host):
                    self._roll_back("NaN/Inf state")
                    state, tick = placement.replicate(self.host), None
                    bar.reset(self.step)
                    continue
                metrics_for_checkpoint, updated = self._periodic(due)
                if updated:
                    state = placement.replicate(self.host)
                if save_due:
                    self._save(metrics_for_checkpoint)
                if stopping:
                    interrupted = self.stop.received
                    bar.write(f"stopped by signal {interrupted} at step {self.step}; checkpoint "
                              f"saved in {self.ckpt.directory}; rerun the same command to resume")
                    break
        self.ckpt.wait()
        return {"step": self.step, "interrupted": interrupted, "rollbacks": self.rollbacks,
                "images_per_sec": float(np.median(self.rates)) if self.rates else None,
                "best_step": self.ckpt.best_step(), "state": self.host, **self.last_means}

    def _log(self, values: list[dict], bar) -> None:
        means = {f"{self.task.log_prefix}{key}": float(np.mean([v[key] for v in values]))
                 for key in values[0]}
        self.last_means = means
        record = {"step": self.step, **means, **self.task.describe(self.step, self.host)}
        if self.rates:
            record["images_per_sec"] = self.rates[-1]
        self.log.write(record)
        bar.set_postfix({key: f"{value:.3g}" for key, value in record.items()
                         if key != "step" and isinstance(value, float)})

    def _periodic(self, due: list[Periodic]) -> tuple[dict | None, bool]:
        """Runs the due periodic work; returns the evaluation's metrics (if one ran) and
        whether the work changed the state."""
        metrics, updated = None, False
        for work in due:
            record = work.run(self.step, self.host, self.means.means())
            if record is not None:
                self.log.write({"step": self.step, **record})
            if work.evaluates:
                metrics = {k: v for k, v in (record or {}).items() if isinstance(v, float)}
                self.means = _Means()
            if work.update is not None:
                self.host, updated = work.update(self.step, self.host, record), True
        return metrics, updated

