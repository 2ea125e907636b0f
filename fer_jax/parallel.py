"""Data-parallel execution of pure training steps, shared by the classifier and the GAN.

Write a step once, as a pure function

    step(state, batch, rng, *consts) -> (state, metrics)

built for an ``axis_name`` (:attr:`Placement.step_axis`) that averages gradients, batch
statistics and metrics with :func:`reduce_mean` and draws per-example randomness with
:func:`example_keys`. :func:`compile_step` then runs it

* ``mode="jit"``: on one device, or on all devices data-parallel through a
  :class:`jax.sharding.Mesh`: ``state`` and ``consts`` replicated, every leaf of ``batch``
  sharded along its first (batch) axis. XLA partitions the program; a mean over the batch is
  already the global mean (``step_axis`` is None: :func:`reduce_mean` is the identity).
* ``mode="pmap"``: ``jax.pmap`` over the local devices: ``state`` and ``consts`` carry a leading
  device axis (see :meth:`Placement.replicate`), ``batch`` is split per device and
  :func:`reduce_mean` is a ``pmean`` across devices. Every device gets the same ``rng``;
  :func:`example_keys` gives each example the key of its global position, so a step computes
  the same update under ``jit`` and ``pmap`` with augmentation and dropout on.

In both modes ``rng`` is passed once (not replicated) and the returned ``metrics`` are
single-copy arrays, so a training loop is written identically for both modes::

    placement = make_placement("pmap")
    step = compile_step(my_step, placement)
    state = placement.replicate(state)
    state, metrics = step(state, placement.shard_batch(batch), rng)
    host_state = placement.unreplicate(state)   # for checkpointing

Multi-host: call :func:`maybe_initialize_distributed` first thing, give every process its
slice of each global batch with :func:`process_slice` / :func:`process_shard`; the same step
then runs on all devices of all processes (``jit``: a global mesh; ``pmap``: ``pmean`` spans
every process).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "batch"
MODES = ("jit", "pmap")

PyTree = Any
StepFn = Callable[..., tuple[PyTree, PyTree]]


def reduce_mean(x: PyTree, axis_name: str | None) -> PyTree:
    """The mean of ``x`` over the devices of ``axis_name`` (``lax.pmean``: under ``pmap``, pass
    :attr:`Placement.step_axis`); the identity for ``axis_name=None`` (``jit``: the batch is
    global, its mean is already the mean over all devices). An axis that no enclosing ``pmap``
    binds raises at trace time: a wrong name never skips the all-reduce silently."""
    return x if axis_name is None else jax.lax.pmean(x, axis_name)


def this_device_rows(make_global: Callable[[int], jax.Array], local_batch: int,
                     axis_name: str | None) -> jax.Array:
    """The rows of this device's part of a global-batch array: ``make_global(global_batch)``
    sliced at this device's offset under ``pmap`` (``axis_name``), the whole array under
    ``jit``. So per-example randomness drawn this way is the same however the batch is split."""
    if axis_name is None:
        return make_global(local_batch)
    devices = jax.lax.psum(1, axis_name)
    rows = make_global(local_batch * devices)
    return jax.lax.dynamic_slice_in_dim(rows, jax.lax.axis_index(axis_name) * local_batch,
                                        local_batch)


def example_keys(key: jax.Array, local_batch: int, axis_name: str | None) -> jax.Array:
    """One PRNG key per example of this device's part of the batch: row ``i`` of
    ``split(key, global batch)`` for global example ``i``, under ``jit`` and ``pmap`` alike."""
    return this_device_rows(lambda n: jax.random.split(key, n), local_batch, axis_name)


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where state, constants and batches live for one parallel mode.

    Attributes:
      mode: ``"jit"`` or ``"pmap"``.
      devices: ``jit``: every device of the mesh (all processes); ``pmap``: this process's
        devices, in pmap order.
      axis_name: the mesh / pmap axis the batch is split along.
    """

    mode: str
    devices: tuple
    axis_name: str = AXIS

    @property
    def step_axis(self) -> str | None:
        """The axis a step reduces over: the pmap axis, or None under ``jit`` (global batch)."""
        return self.axis_name if self.mode == "pmap" else None

    @property
    def num_devices(self) -> int:
        """Devices this process feeds (local ones under pmap, all of the mesh under jit)."""
        return len(self.devices)

    @property
    def num_local_devices(self) -> int:
        return sum(d.process_index == jax.process_index() for d in self.devices)

    @property
    def mesh(self) -> Mesh:
        return Mesh(np.asarray(self.devices), (self.axis_name,))

    def _stacked_sharding(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec(self.axis_name))

    def replicate(self, tree: PyTree) -> PyTree:
        """Copies host or device arrays to every device in this mode's replicated form
        (``jit``: fully replicated global arrays; ``pmap``: a leading device axis)."""
        if self.mode == "jit":
            sharding = NamedSharding(self.mesh, PartitionSpec())
            return jax.tree_util.tree_map(lambda x: jax.device_put(x, sharding), tree)
        sharding = self._stacked_sharding()
        stack = lambda x: jax.device_put(jnp.stack([jnp.asarray(x)] * self.num_devices), sharding)
        return jax.tree_util.tree_map(stack, tree)

    def unreplicate(self, tree: PyTree) -> PyTree:
        """One copy of replicated arrays (inverse of :meth:`replicate`), on one device."""
        if self.mode == "jit":
            return tree
        return jax.tree_util.tree_map(lambda x: x.addressable_shards[0].data[0], tree)

    def shard_batch(self, batch: PyTree) -> PyTree:
        """Places this process's part of a batch: split along axis 0 over the devices.

        ``batch`` leaves are host arrays ``[B_local, ...]`` with ``B_local`` divisible by the
        local device count. Under ``jit`` with several processes the result is the global
        batch assembled from every process's part (see :func:`process_shard`).
        """
        self._check_divisible(batch, self.num_local_devices)
        if self.mode == "jit":
            sharding = self._stacked_sharding()
            if jax.process_count() == 1:
                return jax.tree_util.tree_map(lambda x: jax.device_put(x, sharding), batch)
            return jax.tree_util.tree_map(
                lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)
        n = self.num_devices
        split = lambda x: jax.device_put(jnp.reshape(x, (n, -1) + tuple(x.shape[1:])),
                                         self._stacked_sharding())
        return jax.tree_util.tree_map(split, batch)

    @staticmethod
    def _check_divisible(batch: PyTree, n: int) -> None:
        for leaf in jax.tree_util.tree_leaves(batch):
            if leaf.shape[0] % n:
                raise ValueError(f"batch dimension {leaf.shape[0]} is not divisible by the "
                                 f"{n} local devices")


def make_placement(mode: str = "jit", devices=None, axis_name: str = AXIS) -> Placement:
    """A :class:`Placement` for ``mode`` over ``devices`` (default: all devices for ``jit``,
    this process's devices for ``pmap``)."""
    if mode not in MODES:
        raise ValueError(f"unknown parallel mode {mode!r}; expected one of {MODES}")
    if devices is None:
        devices = jax.devices() if mode == "jit" else jax.local_devices()
    return Placement(mode, tuple(devices), axis_name)


@functools.lru_cache(maxsize=16)
def compile_step(step_fn: StepFn, placement: Placement, *, num_consts: int = 0,
                 donate_state: bool = True) -> Callable[..., tuple[PyTree, PyTree]]:
    """Compiles ``step_fn(state, batch, rng, *consts) -> (state, metrics)`` for ``placement``.

    Args:
      step_fn: pure step built for ``placement.step_axis`` (see the module docstring).
        Compilations are cached: equal ``(step_fn, placement)`` compile once per process.
      placement: from :func:`make_placement`.
      num_consts: how many read-only arguments follow ``rng`` (e.g. a device-resident
        training set); pass them in :meth:`Placement.replicate` form.
      donate_state: let XLA reuse the input state's buffers (the old state is invalid after).

    Returns:
      ``step(state, batch, rng, *consts) -> (state, metrics)`` taking ``state``/``consts`` as
      replicated by ``placement``, ``batch`` from :meth:`Placement.shard_batch`, a single
      ``rng`` key, and returning the new (replicated) state and single-copy ``metrics``.
    """
    donate = (0,) if donate_state else ()
    if placement.mode == "jit":
        replicated = NamedSharding(placement.mesh, PartitionSpec())
        batch_sharding = NamedSharding(placement.mesh, PartitionSpec(placement.axis_name))
        return jax.jit(step_fn, donate_argnums=donate,
                       in_shardings=(replicated, batch_sharding, replicated)
                       + (replicated,) * num_consts,
                       out_shardings=(replicated, replicated))

    mapped = jax.pmap(step_fn, axis_name=placement.axis_name, devices=placement.devices,
                      in_axes=(0, 0, None) + (0,) * num_consts, donate_argnums=donate)

    def step(state, batch, rng, *consts):
        state, metrics = mapped(state, batch, rng, *consts)
        return state, jax.tree_util.tree_map(lambda x: x[0], metrics)

    return step


def process_slice(global_size: int, process_index: int | None = None,
                  process_count: int | None = None) -> slice:
    """The contiguous part ``[start, stop)`` of a global batch that one process feeds.

    ``process_index``/``process_count`` default to this process's (``jax.process_index()``,
    ``jax.process_count()``); pass them explicitly to test sharding without several hosts.
    """
    index = jax.process_index() if process_index is None else process_index
    count = jax.process_count() if process_count is None else process_count
    if not 0 <= index < count:
        raise ValueError(f"process index {index} outside [0, {count})")
    if global_size % count:
        raise ValueError(f"global batch size {global_size} is not divisible by the "
                         f"{count} processes")
    per_process = global_size // count
    return slice(index * per_process, (index + 1) * per_process)


def process_shard(global_batch: PyTree, process_index: int | None = None,
                  process_count: int | None = None) -> PyTree:
    """This process's part of every leaf of a global batch (leading axis), see
    :func:`process_slice`."""
    leaves = jax.tree_util.tree_leaves(global_batch)
    part = process_slice(leaves[0].shape[0], process_index, process_count)
    return jax.tree_util.tree_map(lambda x: x[part], global_batch)


def multi_process_requested(environ=None) -> bool:
    """True when the environment describes a multi-process JAX job: ``JAX_COORDINATOR_ADDRESS``
    (with ``JAX_NUM_PROCESSES``/``JAX_PROCESS_ID``), Open MPI, or a multi-task Slurm step."""
    environ = os.environ if environ is None else environ
    if "JAX_COORDINATOR_ADDRESS" in environ or "OMPI_MCA_orte_hnp_uri" in environ:
        return True
    return int(environ.get("SLURM_STEP_NUM_TASKS", environ.get("SLURM_NTASKS", "1"))) > 1


def maybe_initialize_distributed(environ=None) -> bool:
    """Calls ``jax.distributed.initialize()`` when :func:`multi_process_requested`; must run
    before any other JAX call. Returns whether it initialized.

    With ``JAX_COORDINATOR_ADDRESS=host:port``, set ``JAX_NUM_PROCESSES`` and
    ``JAX_PROCESS_ID`` on every process; Slurm and Open MPI are auto-detected by JAX.
    """
    environ = os.environ if environ is None else environ
    if not multi_process_requested(environ):
        return False
    kwargs = {}
    if "JAX_NUM_PROCESSES" in environ:
        kwargs["num_processes"] = int(environ["JAX_NUM_PROCESSES"])
    if "JAX_PROCESS_ID" in environ:
        kwargs["process_id"] = int(environ["JAX_PROCESS_ID"])
    jax.distributed.initialize(**kwargs)
    return True
