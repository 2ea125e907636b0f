"""Where a number came from: the reproducibility block every report carries, and the test-once
ledger.

:func:`reproducibility` gives ``{commit, dirty, versions, device, data: {source, sha256},
config_hash, seeds, wall_seconds, date}``. Each evaluation on the test split appends that block,
the checkpoint step(s) and the metrics to ``<workdir>/test_ledger.jsonl``
(:func:`append_test_record`); scoring the same checkpoint on the same test data a second time
prints a ``warning:`` line, since a test split read twice has started to select models.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import importlib.metadata
import json
import os
import pathlib
import subprocess
import sys
from collections.abc import Iterable
from typing import Any

import numpy as np

from fer_jax import run_guard
from fer_jax.data import FerData
from fer_jax.data.cache import fingerprint

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")
LEDGER = "test_ledger.jsonl"
LEDGER_KEYS = ("date", "commit", "dirty", "data", "config_hash", "versions", "device",
               "checkpoint_step", "metrics")


# ----------------------------------------------------------------------------- code
def _git(*args: str) -> str | None:
    """Output of ``git args`` in the repository root, or None outside git (or without git)."""
    try:
        done = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True,
                              text=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def git_state() -> dict:
    """``{"commit", "dirty"}``: HEAD and whether tracked files differ from it (both None
    outside a git checkout)."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def versions() -> dict:
    """``{package: version}`` of :data:`PACKAGES` (None for one not installed)."""
    def version(name):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {name: version(name) for name in PACKAGES}


def device() -> dict:
    """``{"backend", "kind", "count"}`` of jax's default backend."""
    import jax

    return {"backend": jax.default_backend(), "kind": jax.devices()[0].device_kind,
            "count": jax.device_count()}


# ----------------------------------------------------------------------------- data
def data_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's content, or of a folder's files (sorted relative paths and their
    digests); cached by path, sizes and mtimes, so asking again is cheap."""
    identity = fingerprint(pathlib.Path(path))
    return _sha256_of(json.dumps(identity, sort_keys=True))


@functools.lru_cache(maxsize=64)
def _sha256_of(identity_json: str) -> str:
    identity = json.loads(identity_json)
    root = pathlib.Path(identity["path"])
    if "files" not in identity:
        return _file_sha256(root)
    digest = hashlib.sha256()
    for relative, _, _ in identity["files"]:
        digest.update(f"{relative}\0{_file_sha256(root / relative)}\n".encode())
    return digest.hexdigest()


def _file_sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def arrays_sha256(data: FerData) -> str:
    """SHA-256 of every split's images and labels (for data without a file: the synthetic
    default)."""
    digest = hashlib.sha256()
    for name in sorted(data.splits):
        split = data.splits[name]
        for array in (split.images, split.labels):
            digest.update(f"{name}{array.dtype}{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def data_block(path: str | os.PathLike | None, data: FerData) -> dict:
    """``{"source", "sha256"}`` of ``data`` read from ``path`` (the file or folder's SHA-256;
    of the arrays when ``path`` is None, the synthetic default)."""
    sha256 = arrays_sha256(data) if path is None else data_sha256(path)
    return {"source": data.source, "synthetic": data.synthetic, "sha256": sha256}


# ----------------------------------------------------------------------------- the block
def reproducibility(*, data: dict, config: Any = None, seeds: Iterable[int] = (),
                    wall_seconds: float | None = None) -> dict:
    """The reproducibility block: git commit and dirty flag, package versions, device,
    ``data`` (:func:`data_block`), ``config_hash`` (:func:`fer_jax.run_guard.config_hash` of
    ``config``; None without one), ``seeds``, ``wall_seconds``, date (UTC, ISO 8601)."""
    return {**git_state(), "versions": versions(), "device": device(), "data": data,
            "config_hash": None if config is None else run_guard.config_hash(config),
            "seeds": [int(seed) for seed in seeds], "wall_seconds": wall_seconds,
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}


def classifier_config(classifier) -> Any:
    """The config of a :class:`fer_jax.inference.Classifier` as JSON: its own (flat) or
    ``{member: config}`` (two-tier)."""
    if classifier.members is None:
        return run_guard.to_json(classifier.config)
    return {name: run_guard.to_json(member.config) for name, member in classifier.members.items()}


def classifier_seeds(classifier) -> list[int]:
    """The training seed of each network of a :class:`fer_jax.inference.Classifier`."""
    networks = [classifier] if classifier.members is None else classifier.members.values()
    return [int(network.config.seed) for network in networks]


def classifier_reproducibility(classifier, *, data: dict,
                               wall_seconds: float | None = None) -> dict:
    """The :func:`reproducibility` block of an evaluation of ``classifier`` on ``data``
    (:func:`data_block`): its config and seeds."""
    return reproducibility(data=data, config=classifier_config(classifier),
                           seeds=classifier_seeds(classifier), wall_seconds=wall_seconds)


def ledger_record(classifier, *, data: dict, metrics: dict,
                  wall_seconds: float | None = None) -> dict:
    """The ledger record of one test evaluation of ``classifier``: its reproducibility block,
    ``checkpoint_step`` (:attr:`~fer_jax.inference.Classifier.steps`) and ``metrics``."""
    block = classifier_reproducibility(classifier, data=data, wall_seconds=wall_seconds)
    return {**block, "checkpoint_step": classifier.steps, "metrics": metrics}


# ----------------------------------------------------------------------------- ledger
def read_ledger(workdir: str | os.PathLike) -> list[dict]:
    """The records of ``<workdir>/test_ledger.jsonl``, oldest first (empty when none)."""
    path = pathlib.Path(workdir) / LEDGER
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_test_record(workdir: str | os.PathLike, record: dict) -> str | None:
    """Appends ``record`` (plain JSON: a :func:`reproducibility` block plus ``checkpoint_step``
    and ``metrics``) to ``<workdir>/test_ledger.jsonl``. When the ledger already holds a test
    evaluation of the same checkpoint step(s) on the same data (SHA-256), prints a
    ``warning:`` line on stderr and returns it; else returns None."""
    missing = [key for key in LEDGER_KEYS if key not in record]
    if missing:
        raise ValueError(f"test ledger record lacks {missing}")
    earlier = [r for r in read_ledger(workdir)
               if r["checkpoint_step"] == record["checkpoint_step"]
               and r["data"]["sha256"] == record["data"]["sha256"]]
    path = pathlib.Path(workdir) / LEDGER
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
    if not earlier:
        return None
    warning = (f"warning: {workdir}: checkpoint {record['checkpoint_step']} was already "
               f"evaluated on this test data {len(earlier)} time(s), first on "
               f"{earlier[0]['date']} (see {path}); a test split read again is no longer held "
               "out")
    print(warning, file=sys.stderr)
    return warning
