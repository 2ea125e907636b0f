"""Two-tier expression model: a positive/negative classifier routes to one classifier per group.

Tier 1 decides between the negative group (angry, fear, sad, plus disgust in the 7-class
setting) and the positive group (happy, surprise, neutral); tier 2 has one model per group.
The routing functions are pure numpy on probabilities and return probabilities over the
setting's classes (``SEVEN`` or ``SIX`` order), so a two-tier model is evaluated exactly like a
flat one; its checkpoint is a directory whose manifest names the member runs
(:func:`fer_jax.inference.load` reads either kind).
"""

from __future__ import annotations

import json
import pathlib

import ml_collections
import numpy as np

from fer_jax.classes import SEVEN, SIX, TWO_TIER, Grouping
from fer_jax.errors import FerCheckpointError

SETTINGS: dict[str, Grouping] = {"seven": SEVEN, "six": SIX}
ROUTINGS: tuple[str, ...] = ("soft", "hard")
# Tier-2 member names, in tier-1 class order (TIER1_* class_names are ("negative", "positive")).
GROUPS: tuple[str, ...] = ("negative", "positive")
MEMBERS: tuple[str, ...] = ("tier1", *GROUPS)


def setting_grouping(setting: str) -> Grouping:
    """The flat grouping of a setting: ``"seven"`` -> SEVEN, ``"six"`` -> SIX."""
    try:
        return SETTINGS[setting]
    except KeyError:
        raise ValueError(f"unknown setting {setting!r}; known: {sorted(SETTINGS)}") from None


def class_columns(setting: str) -> list[np.ndarray]:
    """For each tier-2 group, the setting-class columns of that group's classes (in order)."""
    flat = setting_grouping(setting)
    _, *tier2 = TWO_TIER[setting]
    return [flat.encode(group.decode(np.arange(group.num_classes))) for group in tier2]


def route(tier1_probs: np.ndarray, negative_probs: np.ndarray, positive_probs: np.ndarray, *,
          setting: str, routing: str = "soft") -> np.ndarray:
    """Combines tier-1 and tier-2 probabilities into probabilities over the setting's classes.

    Args:
      tier1_probs: float [N, 2], columns (negative, positive).
      negative_probs: float [N, G_neg], the negative model's classes in its grouping's order.
      positive_probs: float [N, G_pos], the positive model's classes in its grouping's order.
      setting: ``"seven"`` or ``"six"``.
      routing: ``"soft"``: p(c) = p(group) * p(c | group), summed over nothing else since the
        groups are disjoint. ``"hard"``: the argmax group gets all the mass, spread as its tier-2
        model says, so the argmax is "best group first, then best class within it".

    Returns:
      float32 [N, C] over ``setting_grouping(setting).class_names``; rows sum to 1.
    """
    if routing not in ROUTINGS:
        raise ValueError(f"unknown routing {routing!r}; expected one of {ROUTINGS}")
    tier1_probs = np.asarray(tier1_probs, np.float32)
    tier2_probs = [np.asarray(negative_probs, np.float32), np.asarray(positive_probs, np.float32)]
    columns = class_columns(setting)
    n = tier1_probs.shape[0]
    if tier1_probs.shape != (n, len(GROUPS)):
        raise ValueError(f"tier-1 probabilities must be [N, 2], got {tier1_probs.shape}")
    for name, probs, cols in zip(GROUPS, tier2_probs, columns):
        if probs.shape != (n, len(cols)):
            raise ValueError(f"{name} probabilities must be [{n}, {len(cols)}] in the {setting} "
                             f"setting, got {probs.shape}")
    if routing == "hard":
        tier1_probs = np.eye(len(GROUPS), dtype=np.float32)[tier1_probs.argmax(axis=1)]
    combined = np.zeros((n, setting_grouping(setting).num_classes), np.float32)
    for group_index, (probs, cols) in enumerate(zip(tier2_probs, columns)):
        combined[:, cols] = tier1_probs[:, group_index:group_index + 1] * probs
    return combined


def restrict(probs: np.ndarray, source: Grouping, target: Grouping) -> np.ndarray:
    """Probabilities over ``source`` classes -> over ``target`` classes (a subset), renormalised.

    Used to read a 7-class model in the seed's 6-class setting (disgust dropped).
    """
    cols = source.encode(target.decode(np.arange(target.num_classes)))
    if (cols < 0).any():
        raise ValueError(f"{target.name} has classes that {source.name} lacks")
    kept = np.asarray(probs, np.float32)[:, cols]
    return kept / np.maximum(kept.sum(axis=1, keepdims=True), 1e-12)


# ----------------------------------------------------------------------------- checkpoint
MANIFEST = "two_tier.json"


def member_groupings(setting: str) -> dict[str, Grouping]:
    """``{"tier1", "negative", "positive"}`` -> the grouping each member is trained on."""
    setting_grouping(setting)
    return dict(zip(MEMBERS, TWO_TIER[setting]))


def member_config(config: ml_collections.ConfigDict, member: str) -> ml_collections.ConfigDict:
    """The engine config of one member: ``config[member]`` with ``grouping`` set for
    ``config.setting`` (e.g. ``tier2_negative_seven``)."""
    section = config[member].copy_and_resolve_references()
    section.grouping = member_groupings(config.setting)[member].name
    return section


def write_manifest(directory: str | pathlib.Path, setting: str, routing: str = "soft",
                   member_dirs: dict[str, str | pathlib.Path] | None = None) -> None:
    """Writes ``<directory>/two_tier.json`` naming the setting, routing and member folders:
    ``member_dirs[member]`` (relative to ``directory``, or absolute), by default the
    subfolders ``tier1``, ``negative`` and ``positive``."""
    if routing not in ROUTINGS:
        raise ValueError(f"unknown routing {routing!r}; expected one of {ROUTINGS}")
    groupings = member_groupings(setting)
    member_dirs = member_dirs or {member: member for member in MEMBERS}
    manifest = {"kind": "two_tier", "setting": setting, "routing": routing,
                "members": {member: {"workdir": str(member_dirs[member]),
                                     "grouping": grouping.name}
                            for member, grouping in groupings.items()}}
    (pathlib.Path(directory) / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")


def is_two_tier(directory: str | pathlib.Path) -> bool:
    """True when ``directory`` holds a two-tier manifest."""
    return (pathlib.Path(directory) / MANIFEST).is_file()


def read_manifest(directory: str | pathlib.Path) -> tuple[str, str, dict[str, pathlib.Path]]:
    """``(setting, routing, {member: workdir})`` of the two-tier checkpoint ``directory``.

    Raises FerCheckpointError when the manifest is missing or malformed.
    """
    directory = pathlib.Path(directory)
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text())
        setting, routing = manifest["setting"], manifest["routing"]
        members = {name: directory / manifest["members"][name]["workdir"] for name in MEMBERS}
        member_groupings(setting)
    except FileNotFoundError:
        raise FerCheckpointError(f"{path}: no two-tier manifest (train the two-tier model "
                                 "first, or check the directory)") from None
    except (ValueError, KeyError, TypeError) as error:
        raise FerCheckpointError(f"{path}: malformed two-tier manifest: "
                                 f"{type(error).__name__}: {error}") from None
    if routing not in ROUTINGS:
        raise FerCheckpointError(f"{path}: unknown routing {routing!r}; expected one of "
                                 f"{ROUTINGS}")
    return setting, routing, members
