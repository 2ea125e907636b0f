"""Runs named stages (pipeline stages, ablation cells) once each, guarded by fingerprints.

A stage is a function returning JSON outputs, and the config section it reads itself. When it
finishes, ``<directory>/<name>/outputs.json`` keeps its outputs and ``run_config.json``
(:mod:`fer_jax.run_guard`) its fingerprint: its section plus the fingerprints of the stages
whose outputs it read through :meth:`Stages.outputs`, recorded as it reads them, so no stage
lists its dependencies by hand. A rerun skips a finished stage whose fingerprint still holds
and refuses one whose inputs changed, naming the changed keys (``upstream.<stage>`` when an
upstream stage changed); with ``recompute`` it runs such a stage again instead.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import time
from collections.abc import Callable

import jax
import ml_collections

from fer_jax import run_guard
from fer_jax.errors import FerError

OUTPUTS = "outputs.json"


class Stages:
    """The finished stages of one directory and the stage running now."""

    def __init__(self, directory: str | pathlib.Path, *, recompute: bool = False):
        self.directory = pathlib.Path(directory)
        self.recompute = recompute
        self._reads: dict[str, str] | None = None  # upstream -> fingerprint, while one runs

    def record(self, name: str) -> dict | None:
        """``{"outputs", "seconds", "reads"}`` of a finished stage, or None."""
        path = self.directory / name / OUTPUTS
        return json.loads(path.read_text()) if path.is_file() else None

    def outputs(self, name: str) -> dict:
        """The outputs of finished stage ``name``; read by a running stage, it becomes one of
        that stage's inputs."""
        record = self.record(name)
        if record is None:
            raise FerError(f"{self.directory}: stage {name!r} has not finished")
        if self._reads is not None:
            self._reads[name] = run_guard.recorded(self.directory / name)["hash"]
        return record["outputs"]

    def _inputs(self, section: Callable[[], dict], reads: list[str]) -> dict:
        """The fingerprinted inputs: ``section()`` (a dict of config values; its own reads of
        other stages count) and the fingerprints of ``reads`` and of the stages it read."""
        for name in reads:
            self.outputs(name)
        own = run_guard.to_json(ml_collections.ConfigDict(section()))
        return {**own, "upstream": dict(sorted(self._reads.items()))}

    def run(self, name: str, body: Callable[[], dict], section: Callable[[], dict], *,
            label: str, clear: pathlib.Path | None = None) -> tuple[dict, float | None]:
        """Runs stage ``name`` unless it finished with the same inputs: ``(outputs, seconds
        it took now, or None when skipped)``. ``section()``: the config values ``body`` reads
        itself. ``clear``: a folder of the stage's outputs, removed before a recomputation.
        ``label`` prefixes the progress lines."""
        stage_dir = self.directory / name
        self._reads = {}
        try:
            record = self.record(name)
            if record is not None:
                inputs = self._inputs(section, record["reads"])
                changed = run_guard.differences(stage_dir, inputs)
                if not changed:
                    print(f"{label}: skipped (finished earlier)", flush=True)
                    return record["outputs"], None
                if not self.recompute:
                    run_guard.check(stage_dir, inputs, what=f"stage {name!r}",
                                    remedy="use another --workdir, the original config, or "
                                           "--recompute to redo it and what depends on it")
                print(f"{label}: recomputing (changed: {', '.join(changed[:6])})", flush=True)
                shutil.rmtree(stage_dir)
                if clear is not None and clear.exists():
                    shutil.rmtree(clear)
            print(f"{label}: running", flush=True)
            start = time.perf_counter()
            self._reads = {}
            outputs = body()
            seconds = time.perf_counter() - start
            jax.clear_caches()  # a stage's programs are its own; XLA executables hold memory maps
            inputs = self._inputs(section, [])
            run_guard.record(stage_dir, inputs)
            run_guard.write_json(stage_dir / OUTPUTS, {"outputs": outputs, "seconds": seconds,
                                                       "reads": sorted(self._reads)})
            print(f"{label}: done in {seconds:.1f}s", flush=True)
            return outputs, seconds
        finally:
            self._reads = None
