"""Run bookkeeping shared by every training loop: the metrics log and the stop signal."""

from __future__ import annotations

import json
import pathlib
import signal

import jax


class RunLog:
    """metrics.jsonl (records with "step") and TensorBoard scalars, on process 0 only."""

    def __init__(self, workdir: pathlib.Path, resume_step: int):
        self.path = workdir / "metrics.jsonl"
        self.active = jax.process_index() == 0
        self.writer = None
        if not self.active:
            return
        # Records written after the checkpoint we resume from are replayed: drop them.
        kept = [line for line in self._lines() if json.loads(line)["step"] <= resume_step]
        self.path.write_text("".join(line + "\n" for line in kept))
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(str(workdir / "tensorboard"))

    def _lines(self) -> list[str]:
        if not self.path.exists():
            return []
        return [line for line in self.path.read_text().splitlines() if line.strip()]

    def write(self, record: dict) -> None:
        if not self.active:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        for key, value in record.items():
            if key not in ("step", "epoch") and isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, record["step"])
        self.writer.flush()

    def history(self) -> list[dict]:
        return [json.loads(line) for line in self._lines()]

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


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
