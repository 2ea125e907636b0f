"""On-disk cache of parsed data: one compressed ``.npz`` per source and reading options.

The key is a SHA-256 over :data:`FORMAT_VERSION`, the options that change the result (strict,
resize, val_fraction, seed) and the source's identity. A source's identity is its resolved path
plus its size and modification time in nanoseconds (for a directory: of every file under it),
not its content: replacing or touching a file invalidates its entry; rewriting it in place with
the same size and mtime would not. The synthetic default is keyed by its sizes, its seed and the
SHA-256 of ``synthetic.py``, so editing the generator invalidates its entries.

Entries are written atomically (temporary file + rename). An unreadable entry is reported with
a warning, rebuilt from the source and overwritten; a failed write only warns.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Callable

import numpy as np

from fer_jax.data.dataset import SPLITS, FerData, SkippedRecord, Split

# Bump when a reader's output for the same source and options changes.
FORMAT_VERSION = 2


def default_dir() -> pathlib.Path:
    """``$FER_JAX_CACHE`` or ``~/.cache/fer_jax``."""
    return pathlib.Path(os.environ.get("FER_JAX_CACHE") or "~/.cache/fer_jax").expanduser()


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a (small) file's content."""
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def fingerprint(path: pathlib.Path) -> dict:
    """Identity of a file or directory: resolved path, sizes and mtimes (not content)."""
    path = path.resolve()
    if path.is_file():
        stat = path.stat()
        return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    files = []
    for folder, _, names in os.walk(path):
        for name in names:
            stat = os.stat(os.path.join(folder, name))
            files.append((os.path.relpath(os.path.join(folder, name), path), stat.st_size,
                          stat.st_mtime_ns))
    return {"path": str(path), "files": sorted(files)}


def entry_path(identity: dict, cache_dir: str | os.PathLike | None, label: str) -> pathlib.Path:
    """Cache file for ``identity``: ``<cache_dir>/<label>-<hash>.npz``."""
    key = json.dumps({"format": FORMAT_VERSION, **identity}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    directory = default_dir() if cache_dir is None else pathlib.Path(cache_dir).expanduser()
    return directory / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', label)}-{digest}.npz"


def cached(build: Callable[[], FerData], identity: dict,
           cache_dir: str | os.PathLike | bool | None, *, label: str) -> FerData:
    """The cached FerData for ``identity``, or ``build()`` stored under it.

    ``cache_dir``: a directory, None (or True) for :func:`default_dir`, False to bypass.
    """
    if cache_dir is False:
        return build()
    file = entry_path(identity, None if cache_dir is True else cache_dir, label)
    data = read(file)
    if data is None:
        data = build()
        write(file, data)
    return data


def read(file: pathlib.Path) -> FerData | None:
    """The FerData stored in ``file``; None when it is missing or unreadable (with a warning)."""
    if not file.is_file():
        return None
    try:
        with np.load(file, allow_pickle=False) as arrays:
            meta = json.loads(str(arrays["meta"]))
            splits = {name: Split(arrays[f"{name}_images"], arrays[f"{name}_labels"])
                      for name in SPLITS}
        return FerData(splits, source=meta["source"], synthetic=meta["synthetic"],
                       skipped=tuple(SkippedRecord(*record) for record in meta["skipped"]))
    except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile,
            zlib.error) as error:
        warnings.warn(f"ignoring unreadable cache file {file} ({type(error).__name__}: {error}); "
                      "re-reading the source", stacklevel=3)
        return None


def write(file: pathlib.Path, data: FerData) -> None:
    """Stores ``data`` in ``file`` atomically; a failure only warns (the cache is optional)."""
    arrays = {"meta": np.array(json.dumps({
        "source": data.source, "synthetic": data.synthetic,
        "skipped": [[r.path, r.record, r.reason] for r in data.skipped]}))}
    for name in SPLITS:
        split = data.splits.get(name, Split.empty())
        arrays[f"{name}_images"], arrays[f"{name}_labels"] = split.images, split.labels
    temporary = None
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.",
                                                 suffix=".tmp")
        with os.fdopen(descriptor, "wb") as stream:
            np.savez_compressed(stream, **arrays)
        os.replace(temporary, file)
        temporary = None
    except OSError as error:
        warnings.warn(f"could not write cache file {file} ({error})", stacklevel=3)
    finally:
        if temporary is not None and os.path.exists(temporary):
            os.unlink(temporary)
