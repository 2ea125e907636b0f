"""Readers for every FER-2013 layout, each producing one :class:`FerData`.

:func:`load` dispatches on what ``source`` is:

* a CSV (``fer2013.csv``, ``icml_face_data.csv``, Kaggle ``train.csv``; plain or gzip) with the
  columns ``emotion``, ``pixels`` and optionally ``Usage``, found by header name. Usage
  ``Training``/``PublicTest``/``PrivateTest`` -> train/val/test; without a Usage column every row
  is train and val is carved from it.
* the Kaggle image-folder layout ``train/<class>/<image>`` and ``test/<class>/<image>``, as a
  directory or a ``.zip`` read in place (the layout at its top or under one top folder). Class
  folders map to canonical labels by name (case-insensitive). File names ``Training_*``,
  ``PublicTest_*``, ``PrivateTest_*`` give the split (train/val/test); a file without such a
  prefix goes to its folder's split, and when no file names carry a usage, val is carved from
  train. Hidden files and ``__MACOSX/`` entries are archive junk and ignored, and so are loose
  files at the layout's top (README, LICENSE).
* a directory prepared by the TFDS builder (:mod:`fer_jax.data.tfds_fer2013`): its ``data_dir``
  or the ``fer2013/<version>`` directory in it.
* any other directory holding one of the above (e.g. a TFDS manual dir): ``fer2013.csv``,
  ``icml_face_data.csv``, ``train.csv`` (each also ``.gz``) in that order, else its one ``.zip``.

Bad records raise :class:`FerDataError` naming the file and the record (CSV: ``line N``, 1-based
with the header as line 1; images: the archive member or the path under the folder). With
``strict=False`` they are skipped instead and listed in :attr:`FerData.skipped`.
"""

from __future__ import annotations

import gzip
import io
import os
import pathlib
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterable

import numpy as np
import tqdm
from PIL import Image, UnidentifiedImageError

from fer_jax.classes import EMOTION_INDEX, EMOTIONS, NUM_EMOTIONS
from fer_jax.data import cache, synthetic
from fer_jax.data.dataset import IMAGE_SIZE, SPLITS, FerData, SkippedRecord, Split
from fer_jax.errors import FerDataError, FerError

NUM_PIXELS = IMAGE_SIZE * IMAGE_SIZE
USAGE_SPLITS: dict[str, str] = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
CSV_NAMES: tuple[str, ...] = ("fer2013.csv", "fer2013.csv.gz", "icml_face_data.csv",
                              "icml_face_data.csv.gz", "train.csv", "train.csv.gz")
LAYOUT_FOLDERS: tuple[str, ...] = ("train", "test")
TFDS_NAME = "fer2013"
_EMOTION_CODES = {str(label): label for label in range(NUM_EMOTIONS)}
_LAYOUT_HELP = "expected train/<class>/<image> or test/<class>/<image>"


def load(source: str | os.PathLike | None = None, *, strict: bool = True, resize: bool = False,
         cache_dir: str | os.PathLike | bool | None = None, val_fraction: float = 0.1,
         seed: int = 0, synthetic_sizes: dict[str, int] | None = None) -> FerData:
    """Loads FER-2013 from ``source``, or the synthetic default when ``source`` is None.

    Args:
      source: CSV (plain/.gz), image-folder directory, .zip, TFDS-prepared directory, or a
        directory holding one of those; None for :func:`fer_jax.data.synthetic.generate`.
      strict: raise on the first bad record (default) or skip bad records and list them in
        ``FerData.skipped``.
      resize: resize images that are not 48x48 instead of rejecting them.
      cache_dir: where parsed arrays are cached (see :mod:`fer_jax.data.cache`); None for the
        default ($FER_JAX_CACHE or ~/.cache/fer_jax), False to disable caching.
      val_fraction: share of each class moved from train to val when the source has no
        validation split of its own (stratified, seeded by ``seed``).
      seed: seed of that carving and of the synthetic default.
      synthetic_sizes: keyword arguments ``num_train``/``num_val``/``num_test`` for the
        synthetic default.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise FerError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if source is None:
        sizes = dict(synthetic_sizes or {})
        identity = {"synthetic": sizes, "seed": seed,
                    "generator": cache.file_digest(synthetic.__file__)}
        return cache.cached(lambda: synthetic.generate(**sizes, seed=seed), identity, cache_dir,
                            label="synthetic")
    kind, path = resolve(source)
    options = {"strict": strict, "resize": resize, "val_fraction": val_fraction, "seed": seed}
    identity = {"kind": kind, "source": cache.fingerprint(path), **options}
    return cache.cached(lambda: READERS[kind](path, **options), identity, cache_dir,
                        label=path.name)


def resolve(source: str | os.PathLike) -> tuple[str, pathlib.Path]:
    """``(kind, path)`` of the source to read: kind is one of :data:`READERS`' keys."""
    path = pathlib.Path(source).expanduser()
    if not path.exists():
        raise FerDataError("no such file or directory", path=str(path))
    if path.is_file():
        name = path.name.lower()
        if name.endswith((".csv", ".csv.gz")):
            return "csv", path
        if name.endswith(".zip"):
            return "zip", path
        raise FerDataError("unsupported file type: expected a FER-2013 .csv / .csv.gz or a .zip "
                           "of the image-folder layout", path=str(path))
    if _tfds_version_dir(path) is not None:
        return "tfds", path
    if _holds_layout(path):
        return "folder", path
    for name in CSV_NAMES:
        if (path / name).is_file():
            return "csv", path / name
    zips = sorted(p for p in path.glob("*.zip") if p.is_file())
    if len(zips) == 1:
        return "zip", zips[0]
    found = f"; found several .zip files: {[z.name for z in zips]}" if zips else ""
    raise FerDataError("directory holds no FER-2013 source: expected train/ and test/ class "
                       f"folders, one of {list(CSV_NAMES)}, one .zip, or a TFDS-prepared "
                       f"{TFDS_NAME} directory{found}", path=str(path))


def split_off_validation(train: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Moves ``round(fraction * n_c)`` random images of each class ``c`` from train to val.

    Stratified and deterministic in ``seed``; both parts keep the original order.
    """
    rng = np.random.default_rng(seed)
    chosen = []
    for label in range(NUM_EMOTIONS):
        members = np.flatnonzero(train.labels == label)
        chosen.append(rng.permutation(members)[:round(fraction * len(members))])
    in_val = np.zeros(len(train), bool)
    in_val[np.concatenate(chosen)] = True
    return train.take(np.flatnonzero(~in_val)), train.take(np.flatnonzero(in_val))


class _Collector:
    """Gathers good records per split and either raises on bad ones or records them."""

    def __init__(self, path: pathlib.Path, strict: bool):
        self.path = str(path)
        self.strict = strict
        self.images: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
        self.labels: dict[str, list[int]] = {name: [] for name in SPLITS}
        self.skipped: list[SkippedRecord] = []

    def add(self, split: str, image: np.ndarray, label: int) -> None:
        self.images[split].append(image)
        self.labels[split].append(label)

    def bad(self, record: str, reason: str) -> None:
        if self.strict:
            raise FerDataError(reason, path=self.path, record=record)
        self.skipped.append(SkippedRecord(self.path, record, reason))

    def result(self, *, carve_val: bool, val_fraction: float, seed: int) -> FerData:
        splits = {name: Split(np.stack(self.images[name]) if self.images[name]
                              else Split.empty().images,
                              np.asarray(self.labels[name], np.int32))
                  for name in SPLITS}
        source = self.path
        if carve_val and val_fraction > 0 and len(splits["train"]):
            splits["train"], splits["val"] = split_off_validation(splits["train"], val_fraction,
                                                                  seed)
            source += f" (val carved from train: {val_fraction:.0%} per class, seed {seed})"
        return FerData(splits, source=source, skipped=tuple(self.skipped))


# --- CSV ------------------------------------------------------------------------------------

def read_csv(path: pathlib.Path, *, strict: bool = True, resize: bool = False,
             val_fraction: float = 0.1, seed: int = 0) -> FerData:
    """Reads a FER-2013 CSV (see module docstring). ``resize`` is unused: rows are pixels."""
    del resize
    collector = _Collector(path, strict)
    number = 1
    try:
        with _open_text(path) as lines:
            names = _csv_header(path, next(lines, ""))
            columns = {name: index for index, name in enumerate(names)}
            rows = tqdm.tqdm(lines, desc=f"reading {path.name}", unit=" rows", disable=None,
                             leave=False)
            for number, line in enumerate(rows, start=2):
                if line.strip():
                    _read_csv_row(collector, f"line {number}", line, columns, len(names))
    except (OSError, EOFError) as error:  # unreadable, corrupt or truncated gzip
        raise FerDataError(f"unreadable file ({error})", path=str(path),
                           record=f"line {number}") from None
    return collector.result(carve_val="usage" not in columns, val_fraction=val_fraction,
                            seed=seed)


def _open_text(path: pathlib.Path):
    with open(path, "rb") as f:
        compressed = f.read(2) == b"\x1f\x8b"
    opener = gzip.open if compressed else open
    return opener(path, "rt", encoding="utf-8-sig", errors="replace", newline="")


def _csv_header(path: pathlib.Path, header: str) -> list[str]:
    """Lower-cased column names; checks the required ones are there."""
    if not header.strip():
        raise FerDataError("empty file (expected a header line with emotion, pixels and "
                           "optionally Usage)", path=str(path), record="line 1")
    names = [name.strip().strip('"').strip().lower() for name in header.split(",")]
    missing = [name for name in ("emotion", "pixels") if name not in names]
    if missing:
        raise FerDataError(f"missing required column(s) {missing}; the header has "
                           f"{[n for n in names if n]} (expected emotion, pixels and optionally "
                           "Usage)", path=str(path), record="line 1")
    return names


def _read_csv_row(collector: _Collector, record: str, line: str, columns: dict[str, int],
                  num_fields: int) -> None:
    fields = [field.strip().strip('"') for field in line.rstrip("\r\n").split(",")]
    if len(fields) != num_fields:
        return collector.bad(record, f"expected {num_fields} comma-separated fields, got "
                                     f"{len(fields)}")
    emotion = fields[columns["emotion"]]
    if emotion not in _EMOTION_CODES:
        return collector.bad(record, f"unknown emotion index {emotion!r} (expected 0..6)")
    split = "train"
    if "usage" in columns:
        usage = fields[columns["usage"]]
        if usage not in USAGE_SPLITS:
            return collector.bad(record, f"unknown Usage {usage!r} (expected one of "
                                         f"{list(USAGE_SPLITS)})")
        split = USAGE_SPLITS[usage]
    try:
        image = parse_pixels(fields[columns["pixels"]])
    except ValueError as error:
        return collector.bad(record, str(error))
    collector.add(split, image, _EMOTION_CODES[emotion])


def parse_pixels(text: str) -> np.ndarray:
    """Space-separated 0..255 integers -> uint8 [48,48]; ValueError says what is wrong."""
    try:
        with warnings.catch_warnings():  # it warns on text it cannot parse: make that an error
            warnings.simplefilter("error", DeprecationWarning)
            values = np.fromstring(text, dtype=np.int64, sep=" ")
    except (ValueError, DeprecationWarning):
        values = None
    if values is None or values.size != NUM_PIXELS or values.min() < 0 or values.max() > 255:
        raise ValueError(_pixel_problem(text))
    return values.astype(np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE)


def _pixel_problem(text: str) -> str:
    tokens = text.split()
    for position, token in enumerate(tokens, start=1):
        try:
            value = int(token)
        except ValueError:
            return f"non-integer pixel value {token!r} (pixel {position})"
        if not 0 <= value <= 255:
            return f"pixel value {value} out of range 0..255 (pixel {position})"
    return f"expected {NUM_PIXELS} pixel values, got {len(tokens)}"


# --- image folders and zips -----------------------------------------------------------------

def read_folder(path: pathlib.Path, *, strict: bool = True, resize: bool = False,
                val_fraction: float = 0.1, seed: int = 0) -> FerData:
    """Reads the image-folder layout from a directory (see module docstring)."""
    def read_bytes(member: str) -> bytes:
        try:
            return (path / member).read_bytes()
        except OSError as error:
            raise ValueError(f"unreadable file ({error})") from None

    return _read_layout(path, _relative_files(path), read_bytes, strict=strict, resize=resize,
                        val_fraction=val_fraction, seed=seed)


def read_zip(path: pathlib.Path, *, strict: bool = True, resize: bool = False,
             val_fraction: float = 0.1, seed: int = 0) -> FerData:
    """Reads the image-folder layout from a .zip in place (see module docstring)."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise FerDataError(f"not a readable zip archive ({error})", path=str(path)) from None
    def read_bytes(member: str) -> bytes:
        try:
            return archive.read(member)
        except (zipfile.BadZipFile, zlib.error, OSError, NotImplementedError,
                RuntimeError) as error:  # corrupt, unsupported compression, encrypted
            raise ValueError(f"unreadable archive member ({error})") from None

    with archive:
        members = [info.filename for info in archive.infolist() if not info.is_dir()]
        return _read_layout(path, members, read_bytes, strict=strict, resize=resize,
                            val_fraction=val_fraction, seed=seed)


def _relative_files(root: pathlib.Path) -> list[str]:
    """Every file under ``root``, as a posix path relative to it."""
    def unreadable(error: OSError):
        raise FerDataError(f"unreadable directory ({error.strerror})", path=error.filename)

    return [pathlib.Path(folder, name).relative_to(root).as_posix()
            for folder, _, names in os.walk(root, onerror=unreadable) for name in names]


def _holds_layout(path: pathlib.Path) -> bool:
    """Whether train/ or test/ is in ``path`` or in its one (non-hidden) sub-directory."""
    def subdirs(folder):
        return [d for d in folder.iterdir() if d.is_dir() and not _is_junk(d.name)]

    children = subdirs(path)
    if len(children) == 1 and children[0].name.lower() not in LAYOUT_FOLDERS:
        children = subdirs(children[0])
    return any(child.name.lower() in LAYOUT_FOLDERS for child in children)


def _is_junk(member: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in member.split("/"))


def _layout_prefix(members: Iterable[str]) -> str | None:
    """``""`` when train/ or test/ is at the top, ``"<top>/"`` when under one top folder, or
    None when neither."""
    parts = [member.split("/") for member in members if not _is_junk(member)]
    tops = {p[0] for p in parts if len(p) > 1}
    if any(top.lower() in LAYOUT_FOLDERS for top in tops):
        return ""
    if len(tops) == 1 and any(len(p) > 2 and p[1].lower() in LAYOUT_FOLDERS for p in parts):
        return f"{tops.pop()}/"
    return None


def _read_layout(path: pathlib.Path, members: list[str], read_bytes: Callable[[str], bytes], *,
                 strict: bool, resize: bool, val_fraction: float, seed: int) -> FerData:
    prefix = _layout_prefix(members)
    if prefix is None:
        raise FerDataError(f"no train/ or test/ folder at the top or under one top folder "
                           f"({_LAYOUT_HELP})", path=str(path))
    collector = _Collector(path, strict)
    usage_in_names = False
    members = sorted(m for m in members if m.startswith(prefix) and not _is_junk(m))
    for member in tqdm.tqdm(members, desc=f"reading {path.name}", unit=" img", disable=None,
                            leave=False):
        parts = member[len(prefix):].split("/")
        if len(parts) == 1:
            continue  # a loose file at the layout's top (README, LICENSE), not an image record
        try:
            split, label = _place(parts)
            image = decode_image(read_bytes(member), resize=resize, name=member)
        except ValueError as error:
            collector.bad(member, str(error))
            continue
        usage_in_names |= parts[2].split("_", 1)[0] in USAGE_SPLITS
        collector.add(split, image, label)
    return collector.result(carve_val=not usage_in_names, val_fraction=val_fraction, seed=seed)


def _place(parts: list[str]) -> tuple[str, int]:
    """``(split, label)`` of a member ``<folder>/<class>/<file>`` given as its path parts;
    ValueError says what is wrong."""
    folder = parts[0].lower()
    if folder not in LAYOUT_FOLDERS:
        raise ValueError(f"unexpected folder {parts[0]!r} ({_LAYOUT_HELP})")
    if len(parts) != 3:
        raise ValueError(f"unexpected nesting ({_LAYOUT_HELP})")
    label = EMOTION_INDEX.get(parts[1].lower())
    if label is None:
        raise ValueError(f"unknown class folder {parts[1]!r} (expected one of {list(EMOTIONS)})")
    usage = parts[2].split("_", 1)[0]
    split = USAGE_SPLITS.get(usage, folder)
    if (split == "train") != (folder == "train"):
        raise ValueError(f"file name says {usage} but the file is in {parts[0]}/")
    return split, label


def decode_image(data: bytes, *, resize: bool = False, name: str = "image") -> np.ndarray:
    """Image file bytes -> uint8 [48,48] grayscale (other modes converted to L; other sizes
    resized with ``resize``); ValueError says what is wrong with the file ``name``."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except UnidentifiedImageError:
        raise ValueError(f"unreadable image: {name} is not an image file (format not "
                         f"recognised, {len(data)} bytes)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ValueError(f"unreadable image {name} ({error})") from None
    gray = image if image.mode == "L" else image.convert("L")
    if gray.size != (IMAGE_SIZE, IMAGE_SIZE):
        if not resize:
            raise ValueError(f"image is {gray.size[0]}x{gray.size[1]}, expected "
                             f"{IMAGE_SIZE}x{IMAGE_SIZE} (data.resize=True, e.g. --config.data.resize=True, "
                             "resizes it)")
        gray = gray.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(gray, np.uint8)


# --- TFDS-prepared directories ---------------------------------------------------------------

_TFDS_SPLITS = {"train": "train", "validation": "val", "test": "test"}


def _tfds_version_dir(path: pathlib.Path) -> pathlib.Path | None:
    """The prepared ``fer2013/<version>`` directory that ``path`` is or holds (newest version)."""
    if (path / "dataset_info.json").is_file():
        return path
    versions = [d for d in (path / TFDS_NAME).glob("*") if (d / "dataset_info.json").is_file()]
    if not versions:
        return None
    return max(versions, key=lambda d: tuple(int(x) if x.isdigit() else -1
                                             for x in d.name.split(".")))


def read_tfds(path: pathlib.Path, *, strict: bool = True, resize: bool = False,
              val_fraction: float = 0.1, seed: int = 0) -> FerData:
    """Reads a directory prepared by :mod:`fer_jax.data.tfds_fer2013` (array_record) as it was
    prepared: the options only matter when preparing, so they are unused here."""
    del strict, resize, val_fraction, seed
    import tensorflow_datasets as tfds

    version_dir = _tfds_version_dir(path)
    builder = tfds.builder_from_directory(str(version_dir))
    features = builder.info.features
    if (builder.info.name != TFDS_NAME or set(features) != {"image", "label"}
            or tuple(features["image"].shape) != (IMAGE_SIZE, IMAGE_SIZE, 1)
            or tuple(features["label"].names) != EMOTIONS):
        raise FerDataError(f"not a {TFDS_NAME} dataset prepared by fer_jax.data.tfds_fer2013 "
                           f"(name {builder.info.name!r}, features {list(features)})",
                           path=str(version_dir))
    splits = {name: Split.empty() for name in SPLITS}
    try:
        sources = builder.as_data_source()
        for tfds_split, name in _TFDS_SPLITS.items():
            if tfds_split in sources and len(sources[tfds_split]):
                examples = sources[tfds_split].__getitems__(range(len(sources[tfds_split])))
                splits[name] = Split(np.stack([ex["image"][..., 0] for ex in examples]),
                                     np.array([ex["label"] for ex in examples], np.int32))
    except (RuntimeError, OSError, ValueError) as error:  # missing or corrupt record files
        raise FerDataError(f"cannot read the prepared records ({error})",
                           path=str(version_dir)) from None
    return FerData(splits, source=str(version_dir))


READERS: dict[str, Callable[..., FerData]] = {
    "csv": read_csv, "folder": read_folder, "zip": read_zip, "tfds": read_tfds}
