"""Data-parallel execution of pure training steps, shared by the classifier and the GAN.

Write a step once, as a pure function

    step(state, batch, rng, *consts) -> (state, metrics)

that averages gradients, batch statistics and metrics with :func:`reduce_mean` over
``axis_name`` (default :data:`AXIS`). :func:`compile_step` then runs it

* ``mode="jit"``: on one device, or on all devices data-parallel through a
  :class:`jax.sharding.Mesh`: ``state`` and ``consts`` replicated, every leaf of ``batch``
  sharded along its first (batch) axis. XLA partitions the program; a mean over the batch is
  already the global mean, so :func:`reduce_mean` is a no-op here.
* ``mode="pmap"``: ``jax.pmap`` over the local devices: ``state`` and ``consts`` carry a leading
  device axis (see :meth:`Placement.replicate`), ``batch`` is split per device and
  :func:`reduce_mean` is a ``pmean`` across devices. Each device gets its own ``rng``
  (``fold_in(rng, device_index)``) so dropout/augmentation masks differ between devices.

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


def reduce_mean(x: PyTree, axis_name: str = AXIS) -> PyTree:
    """``lax.pmean(x, axis_name)`` inside ``pmap``; the identity where ``axis_name`` is unbound
    (``jit`` mode: the batch is global, its mean is already the mean over all devices)."""
    try:
        return jax.lax.pmean(x, axis_name)
    except NameError:  # Raised at trace time when no enclosing pmap binds `axis_name`.
        return x


def axis_bound(axis_name: str = AXIS) -> bool:
    """True while tracing under a ``pmap`` that binds ``axis_name`` (e.g. to pick a synced
    BatchNorm); False under plain ``jit``."""
    try:
        jax.lax.axis_index(axis_name)
    except NameError:
        return False
    return True


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


def compile_step(step_fn: StepFn, placement: Placement, *, num_consts: int = 0,
                 donate_state: bool = True) -> Callable[..., tuple[PyTree, PyTree]]:
    """Compiles ``step_fn(state, batch, rng, *consts) -> (state, metrics)`` for ``placement``.

    Args:
      step_fn: pure step; cross-device means go through :func:`reduce_mean` over
        ``placement.axis_name``.
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

    axis = placement.axis_name

    def per_device(state, batch, rng, *consts):
        rng = jax.random.fold_in(rng, jax.lax.axis_index(axis))
        return step_fn(state, batch, rng, *consts)

    mapped = jax.pmap(per_device, axis_name=axis, devices=placement.devices,
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
