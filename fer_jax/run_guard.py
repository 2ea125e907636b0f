"""Is this output still valid for this config? One fingerprint per run, stage or cell.

Whatever produces outputs from a config section (a classifier run, a GAN run, a pipeline
stage, an ablation cell) stores :func:`fingerprint` of the resolved section it depends on
(data source included) in ``<directory>/run_config.json`` and calls :func:`check` on entry:
a first run records it, a rerun with the same section passes, and a changed section is refused
with the changed keys named (or, where the caller says so, reported for recomputation).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from typing import Any

from fer_jax.errors import FerError

FILE_NAME = "run_config.json"


def to_json(section: Any) -> Any:
    """A config section (``ConfigDict``, dict, list, scalars) as plain, resolved JSON values."""
    if hasattr(section, "to_json_best_effort"):
        return json.loads(section.to_json_best_effort())
    return json.loads(json.dumps(section, default=str))


# Keys that choose kernels, not results: the implementations they pick share variables and
# agree within float32 rounding (tests/test_models.py, tests/test_gan.py), so a run may resume,
# and a stage's outputs stay valid, under another choice. Reports still record them.
KERNEL_KEYS = frozenset({"layer_impl", "conv_impl"})


def _without_kernel_keys(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _without_kernel_keys(v) for k, v in tree.items() if k not in KERNEL_KEYS}
    return tree


def config_hash(section: Any) -> str:
    """SHA-256 (hex, first 16 digits) of the canonical JSON of ``section`` without its
    :data:`KERNEL_KEYS`."""
    text = json.dumps(_without_kernel_keys(to_json(section)), sort_keys=True,
                      separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# Keys added to config schemas after runs were recorded, each with the value that reproduces
# the behaviour from before it existed: a record without the key matches that value (and
# None), so finished runs stay valid when the code grows an option they did not use.
ADDED_KEYS: dict[str, Any] = {
    "synthetic_balance": "gap",   # classifier data: synthetic faces fill minority gaps
    "ada_min_p": 0.0,             # GAN hyperparameters: no floor under ADA's probability
    "conditioning": "embedding",  # GAN hyperparameters: label embedding + per-class CBN tables
    "aux_weight": 0.0,            # GAN hyperparameters: no auxiliary classifier
    "g_aux_scale": 1.0,           # GAN hyperparameters: G's AC term weighs aux_weight too
    "conv_impl": "xla",           # GAN hyperparameters: XLA's convolutions
    "min_crop": 48,               # classifier augmentation: no scaled crops
    "max_crop": 48,
    "erase_prob": 0.0,            # classifier augmentation: no random erasing
    "val_without_train_copies": False,  # studies and GAN evaluation: all of val, copies too
}


def changed_keys(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two JSON trees differ (e.g. ``["flat.num_epochs"]``), ignoring
    :data:`KERNEL_KEYS`; a key the saved tree lacks counts as its :data:`ADDED_KEYS` value
    (None for any other key)."""
    if isinstance(saved, dict) and isinstance(current, dict):
        return [key for k in sorted((set(saved) | set(current)) - KERNEL_KEYS)
                for key in changed_keys(saved.get(k, ADDED_KEYS.get(k)), current.get(k),
                                        f"{prefix}{k}.")]
    return [] if saved == current else [prefix.rstrip(".") or "(everything)"]


def write_json(path: pathlib.Path, value: Any) -> None:
    """Writes JSON atomically (temporary file + rename): a killed run never leaves half a file."""
    path = pathlib.Path(path)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value, indent=1, default=_to_builtin) + "\n")
    os.replace(temporary, path)


def _to_builtin(value):
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def recorded(directory: str | os.PathLike) -> dict | None:
    """``{"hash", "config"}`` recorded in ``directory``, or None."""
    path = pathlib.Path(directory) / FILE_NAME
    return json.loads(path.read_text()) if path.is_file() else None


def record(directory: str | os.PathLike, section: Any) -> None:
    """Records ``section``'s fingerprint in ``directory`` (created if needed)."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / FILE_NAME, {"hash": config_hash(section), "config": to_json(section)})


def differences(directory: str | os.PathLike, section: Any,
                ignore: tuple[str, ...] = ()) -> list[str]:
    """Changed keys between the section recorded in ``directory`` and ``section`` (empty when
    nothing is recorded or nothing changed; a key added since with the value None, e.g. a new
    schema key left unset, or with its :data:`ADDED_KEYS` value changes nothing). Top-level
    keys in ``ignore`` are left out of both, whether or not the record has them."""
    saved = recorded(directory)
    current = _without(to_json(section), ignore)
    if saved is None or saved["hash"] == config_hash(current):
        return []
    return changed_keys(_without(saved["config"], ignore), current)


def _without(tree: dict, keys: tuple[str, ...]) -> dict:
    return {k: v for k, v in tree.items() if k not in keys}


def check(directory: str | os.PathLike, section: Any, *, ignore: tuple[str, ...] = (),
          what: str = "run", remedy: str = "use another --workdir or the original config") -> None:
    """Records ``section`` (less its top-level keys in ``ignore``) in ``directory`` on a first
    run; refuses (FerError naming the changed keys) when ``directory`` holds outputs of a
    different section. ``ignore``: keys that may change between reruns."""
    changed = differences(directory, section, ignore)
    if changed:
        more = f" (+{len(changed) - 6} more)" if len(changed) > 6 else ""
        raise FerError(f"{directory}: this {what} was made with another config (changed: "
                       f"{', '.join(changed[:6])}{more}); {remedy}")
    if recorded(directory) is None:
        record(directory, _without(to_json(section), ignore))
