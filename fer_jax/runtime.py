"""Run bookkeeping shared by every training loop: metrics log, stop signal, progress."""

from __future__ import annotations

import json
import pathlib
import signal
import sys
import time
from typing import Self

import jax
import tqdm


class RunLog:
    """metrics.jsonl (records with "step") and TensorBoard scalars, on process 0 only."""

    def __init__(self, workdir: pathlib.Path, resume_step: int):
        self.path = workdir / "metrics.jsonl"
        self.active = jax.process_index() == 0
        self.writer = None
        if not self.active:
            return
        # Records written after the checkpoint we resume from are replayed: drop them.
        kept = [record for record in read_history(workdir) if record["step"] <= resume_step]
        self.path.write_text("".join(json.dumps(record) + "\n" for record in kept))
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(str(workdir / "tensorboard"))

    def write(self, record: dict) -> None:
        if not self.active:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        for key, value in record.items():
            if key not in ("step", "epoch") and isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, record["step"])
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_history(workdir: str | pathlib.Path) -> list[dict]:
    """The records of ``<workdir>/metrics.jsonl`` (empty when there is none)."""
    path = pathlib.Path(workdir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class StopSignal:
    """Records SIGTERM/SIGINT instead of dying, so the loop can checkpoint and stop."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received: int | None = None
        self._previous = {}

    def __enter__(self):
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.received = signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class PlainProgress:
    """A progress report for logs (stderr not a terminal): one plain line at most every
    ``interval`` seconds (and at the end) instead of tqdm's carriage-return redraws; None:
    silent."""

    def __init__(self, total: int, initial: int, desc: str, interval: float | None = 30.0):
        self.total, self.n, self.desc, self.interval = total, initial, desc, interval
        self.postfix: dict = {}
        self._last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.interval is None:
            return
        if time.monotonic() - self._last >= self.interval or self.n == self.total:
            self._last = time.monotonic()
            fields = " ".join(f"{k}={v}" for k, v in self.postfix.items())
            print(f"{self.desc}: {self.n}/{self.total} {fields}".rstrip(), file=sys.stderr,
                  flush=True)

    def set_postfix(self, values: dict) -> None:
        self.postfix = dict(values)

    def reset(self, n: int) -> None:
        self.n = n

    def write(self, line: str) -> None:
        print(line, flush=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        pass


class TqdmProgress(tqdm.tqdm):
    """tqdm with the few methods the loops use (``reset(n)`` keeps the total)."""

    def reset(self, n: int) -> None:
        super().reset(self.total)
        self.update(n)

    def set_postfix(self, values: dict) -> None:
        super().set_postfix(values, refresh=False)

    def write(self, line: str) -> None:
        tqdm.tqdm.write(line)


def progress_bar(total: int, initial: int, desc: str, enabled: bool = True, *,
                 leave: bool = True, unit: str = "step"):
    """A tqdm bar on a terminal (``leave=False``: cleared when done), plain periodic lines
    otherwise (e.g. stderr in a file), or a silent counter when not ``enabled``."""
    if not enabled:
        return PlainProgress(total, initial, desc, interval=None)
    if sys.stderr.isatty():
        return TqdmProgress(total=total, initial=initial, desc=desc, unit=unit,
                            dynamic_ncols=True, leave=leave)
    return PlainProgress(total, initial, desc)


# ----------------------------------------------------------------------------- XLA:CPU defaults
# Convolutions on XLA's own (Eigen) kernels, dots on YNNPACK: jaxlib 0.10.2 sends convolutions to
# YNNPACK by default, which runs this project's forward and weight-gradient convolutions 2-4x
# slower (docs/benchmark_cpu.md).
CPU_XLA_FLAGS = {"--xla_cpu_experimental_ynn_fusion_type": "individual_dot"}
CPU_DEFAULTS_ENV = "FER_JAX_CPU_DEFAULTS"  # "0": configure() sets nothing
_configured: dict | None = None


def configure() -> dict:
    """Adds :data:`CPU_XLA_FLAGS` to ``XLA_FLAGS`` before JAX initialises its backends.

    A flag the user already set in ``XLA_FLAGS`` is kept as set. Nothing is set when
    ``JAX_PLATFORMS`` excludes the CPU, when ``FER_JAX_CPU_DEFAULTS=0``, or when a backend is
    already initialised (too late: XLA reads the flags then). Called by every entry point
    (``experiments/__init__.py``); later calls return the first call's record.

    Returns: ``{"set": {flag: value}, "XLA_FLAGS": ..., "user_XLA_FLAGS": as found,
    "skipped": reason or None}``, for reports.
    """
    global _configured
    if _configured is not None:
        return _configured
    import os

    from jax._src import xla_bridge

    flags = user_flags = os.environ.get("XLA_FLAGS", "")
    platforms = os.environ.get("JAX_PLATFORMS", "")
    skipped = None
    if os.environ.get(CPU_DEFAULTS_ENV) == "0":
        skipped = f"{CPU_DEFAULTS_ENV}=0"
    elif platforms and "cpu" not in platforms.split(","):
        skipped = f"JAX_PLATFORMS={platforms}"
    elif xla_bridge.backends_are_initialized():
        skipped = "JAX backends already initialised"
    added = {} if skipped else {
        name: value for name, value in CPU_XLA_FLAGS.items()
        if f"{name.lstrip('-')}=" not in flags}
    if added:
        flags = " ".join([flags, *(f"{name}={value}" for name, value in added.items())]).strip()
        os.environ["XLA_FLAGS"] = flags
    _configured = {"set": added, "XLA_FLAGS": flags, "user_XLA_FLAGS": user_flags,
                   "skipped": skipped}
    return _configured
