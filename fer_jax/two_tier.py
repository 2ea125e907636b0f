"""Two-tier expression model: a positive/negative classifier routes to one classifier per group.

Tier 1 decides between the negative group (angry, fear, sad, plus disgust in the 7-class
setting) and the positive group (happy, surprise, neutral); tier 2 has one model per group.
The routing functions are pure numpy on probabilities and return probabilities over the
setting's classes (``SEVEN`` or ``SIX`` order), so a two-tier model is evaluated exactly like a
flat one.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import ml_collections
import numpy as np

from fer_jax import inference, train
from fer_jax.classes import SEVEN, SIX, TWO_TIER, Grouping
from fer_jax.data.dataset import FerData
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


def _columns(setting: str) -> list[np.ndarray]:
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
    columns = _columns(setting)
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


# ----------------------------------------------------------------------------- training
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


def train_two_tier(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
                   data: FerData | None = None) -> dict:
    """Trains the three members with :func:`fer_jax.train.train_and_evaluate`, each in
    ``<workdir>/<member>`` (resuming from its checkpoints), then writes the manifest that makes
    ``workdir`` one loadable two-tier checkpoint.

    ``config``: ``setting`` ("seven" | "six"), ``routing`` ("soft" | "hard") and one engine
    config per member (``tier1``, ``negative``, ``positive``). Returns ``{member: summary}``
    plus ``"interrupted"`` (the signal number when a member was stopped; no manifest then).
    """
    workdir = pathlib.Path(workdir)
    summaries: dict = {"interrupted": None}
    for member, grouping in member_groupings(config.setting).items():
        print(f"two-tier ({config.setting}): training {member} [{grouping.name}]", flush=True)
        summary = train.train_and_evaluate(member_config(config, member), workdir / member, data)
        summaries[member] = summary
        if summary.get("interrupted") is not None:
            summaries["interrupted"] = summary["interrupted"]
            return summaries
    write_manifest(workdir, config.setting, config.routing)
    return summaries


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


# ----------------------------------------------------------------------------- prediction
@dataclasses.dataclass(frozen=True)
class TwoTierModel:
    """Three trained members of one setting, combined by :func:`route`.

    Raises FerCheckpointError when a member predicts another grouping than the setting needs.
    """

    setting: str
    routing: str
    tier1: inference.Predictor      # over ("negative", "positive")
    negative: inference.Predictor   # over the negative group's classes
    positive: inference.Predictor   # over the positive group's classes
    source: str = "memory"      # where it was loaded from, for descriptions

    def __post_init__(self):
        if self.routing not in ROUTINGS:
            raise ValueError(f"unknown routing {self.routing!r}; expected one of {ROUTINGS}")
        for name, grouping in member_groupings(self.setting).items():
            predictor = self.member(name)
            if predictor.grouping.name != grouping.name:
                raise FerCheckpointError(
                    f"{predictor.description}: member {name!r} predicts grouping "
                    f"{predictor.grouping.name!r}; the {self.setting} setting needs "
                    f"{grouping.name!r}")

    @property
    def grouping(self) -> Grouping:
        return setting_grouping(self.setting)

    def member(self, name: str):
        return getattr(self, name)

    def predict(self, images: np.ndarray, *, tta: bool = False, progress: str | None = None,
                routing: str | None = None) -> np.ndarray:
        """float32 ``[N, C]`` over the setting's classes (``routing`` defaults to the model's)."""
        probs = [self.member(name)(images, tta=tta,
                                   progress=progress and f"{progress} [{name}]")
                 for name in MEMBERS]
        return route(*probs, setting=self.setting, routing=routing or self.routing)

    def as_predictor(self, routing: str | None = None) -> inference.Predictor:
        """This model as a :class:`fer_jax.inference.Predictor` (``routing`` defaults to the
        model's)."""
        routing = routing or self.routing

        def predict(images, *, tta=False, progress=None):
            return self.predict(images, tta=tta, progress=progress, routing=routing)

        return inference.Predictor(predict, self.grouping.class_names, self.grouping,
                               f"two-tier {self.setting} ({routing} routing) from {self.source}")


def load_two_tier(directory: str | pathlib.Path, *, best: bool = True,
                  batch_size: int = 256) -> TwoTierModel:
    """Loads the two-tier checkpoint ``directory`` (manifest + member workdirs).

    Raises FerCheckpointError when the manifest is missing or malformed, or a member's
    checkpoint is missing or trained on another grouping than the manifest names.
    """
    directory = pathlib.Path(directory)
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text())
        setting, routing = manifest["setting"], manifest["routing"]
        members = {name: manifest["members"][name]["workdir"] for name in MEMBERS}
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
    predictors = {name: inference.load_predictor(directory / subdir, best=best, batch_size=batch_size)
                  for name, subdir in members.items()}
    return TwoTierModel(setting, routing, **predictors, source=str(directory))


def load_predictor(directory: str | pathlib.Path, *, best: bool = True, batch_size: int = 256,
                   routing: str | None = None) -> inference.Predictor:
    """The two-tier checkpoint ``directory`` as a :class:`fer_jax.inference.Predictor` over the
    setting's classes, so evaluation treats it like a flat classifier."""
    return load_two_tier(directory, best=best, batch_size=batch_size).as_predictor(routing)


def load_classifier(directory: str | pathlib.Path, *, best: bool = True, batch_size: int = 256,
                    routing: str | None = None) -> inference.Predictor:
    """A trained classifier as a :class:`fer_jax.inference.Predictor`, whichever kind ``directory``
    holds: a two-tier checkpoint (manifest; ``routing`` overrides its routing) or a flat run."""
    if is_two_tier(directory):
        return load_predictor(directory, best=best, batch_size=batch_size, routing=routing)
    if routing is not None:
        raise FerCheckpointError(f"{directory}: --routing applies to two-tier models; this is a "
                                 "flat classifier run")
    return inference.load_predictor(directory, best=best, batch_size=batch_size)
