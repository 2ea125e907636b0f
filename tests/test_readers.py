"""Readers (CSV, image folders, zips), val carving, bad input, caching; real FER-2013 counts."""

import gzip
import os
import pathlib
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from experiments.configs import smoke
from fer_jax.classes import EMOTIONS
from fer_jax.data import cache, load_from_config, readers, synthetic
from fer_jax.data.dataset import SPLITS, Split
from fer_jax.errors import FerDataError

USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
REAL_TRAIN = {"angry": 3995, "disgust": 436, "fear": 4097, "happy": 7215, "sad": 4830,
              "surprise": 3171, "neutral": 4965}
REAL_VAL = {"angry": 467, "disgust": 56, "fear": 496, "happy": 895, "sad": 653, "surprise": 415,
            "neutral": 607}


def random_split(n: int, seed: int) -> Split:
    """``n`` random images, every class present (labels cycle through 0..6, shuffled)."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(EMOTIONS)).astype(np.int32)
    return Split(rng.integers(0, 256, (n, 48, 48), dtype=np.uint8), labels)


@pytest.fixture(scope="module")
def splits():
    return {"train": random_split(28, 1), "val": random_split(14, 2), "test": random_split(14, 3)}


def csv_text(splits, header="emotion,pixels,Usage", sep=",", quote_pixels=False) -> str:
    """A FER-2013 CSV of ``splits`` with the columns in ``header``'s order."""
    names = [name.strip().lower() for name in header.split(",")]
    lines = [header]
    for split, data in splits.items():
        for image, label in zip(data.images, data.labels):
            pixels = " ".join(map(str, image.ravel()))
            values = {"emotion": str(label), "usage": USAGE[split],
                      "pixels": f'"{pixels}"' if quote_pixels else pixels}
            lines.append(sep.join(values[name] for name in names))
    return "\n".join(lines) + "\n"


def pixels(value=7) -> str:
    return " ".join([str(value)] * 2304)


def write_layout(root: pathlib.Path, splits, *, prefixes=True, ext="png", case=str.lower):
    """The Kaggle image-folder layout of ``splits`` under ``root``; returns the file paths."""
    paths = []
    for split, data in splits.items():
        folder = "train" if split == "train" else "test"
        for index, (image, label) in enumerate(zip(data.images, data.labels)):
            name = f"{USAGE[split]}_{index:04d}" if prefixes else f"{split}{index:04d}"
            path = root / folder / case(EMOTIONS[label]) / f"{name}.{ext}"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path)
            paths.append(path)
    return paths


def zip_folder(root: pathlib.Path, archive: pathlib.Path, top: str = "") -> pathlib.Path:
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                z.write(path, top + path.relative_to(root).as_posix())
    return archive


def records(split: Split) -> list:
    """Order-free content of a split: sorted (label, image bytes) pairs."""
    return sorted(zip(split.labels.tolist(), (image.tobytes() for image in split.images)))


def assert_same(a: Split, b: Split):
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)


def load(source, **kwargs):
    return readers.load(source, cache_dir=False, **kwargs)


# --- CSV ------------------------------------------------------------------------------------

def test_csv_reads_every_split_in_file_order(tmp_path, splits):
    path = tmp_path / "fer2013.csv"
    path.write_text(csv_text(splits))
    data = load(path)
    for name in SPLITS:
        assert_same(data.splits[name], splits[name])
    assert data.source == str(path) and data.skipped == () and not data.synthetic


@pytest.mark.parametrize("header,sep,quote", [
    ("emotion, Usage, pixels", ", ", False),   # icml_face_data.csv: spaces around names
    ("Usage,pixels,emotion", ",", True),       # another order, quoted pixel strings
])
def test_csv_header_variants(tmp_path, splits, header, sep, quote):
    path = tmp_path / "icml_face_data.csv"
    path.write_text(csv_text(splits, header, sep, quote))
    data = load(path)
    for name in SPLITS:
        assert_same(data.splits[name], splits[name])


def test_csv_gz_equals_plain(tmp_path, splits):
    path = tmp_path / "fer2013.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write(csv_text(splits))
    data = load(path)
    for name in SPLITS:
        assert_same(data.splits[name], splits[name])


def test_csv_with_only_private_test_rows(tmp_path, splits):
    path = tmp_path / "fer2013.csv"
    path.write_text(csv_text({"test": splits["test"]}))
    data = load(path)
    assert_same(data.split("test"), splits["test"])
    assert not data.has("train") and not data.has("val")
    with pytest.raises(FerDataError, match=r"split 'train' was asked for but has no images"):
        data.split("train")


def test_kaggle_train_csv_without_usage_carves_stratified_seeded_val(tmp_path):
    everything = random_split(700, 4)
    path = tmp_path / "train.csv"
    path.write_text(csv_text({"train": everything}, header="emotion,pixels"))
    data = load(path, val_fraction=0.2, seed=3)
    train, val = data.split("train"), data.split("val")
    assert not data.has("test") and "val carved from train" in data.source
    assert sorted(records(train) + records(val)) == records(everything)
    assert val.counts() == {name: 20 for name in EMOTIONS}  # 100 per class -> 20% each
    assert_same(load(path, val_fraction=0.2, seed=3).split("val"), val)
    assert records(load(path, val_fraction=0.2, seed=4).split("val")) != records(val)
    # Both parts keep the file's order.
    order = {image.tobytes(): i for i, image in enumerate(everything.images)}
    for part in (train, val):
        positions = [order[image.tobytes()] for image in part.images]
        assert positions == sorted(positions)


BAD_ROWS = [
    (f"0,{pixels()} 7,Training", "expected 2304 pixel values, got 2305"),
    (f"0,{' '.join(['7'] * 2303)},Training", "expected 2304 pixel values, got 2303"),
    (f"0,1.5 {' '.join(['7'] * 2303)},Training", "non-integer pixel value '1.5' (pixel 1)"),
    (f"0,{' '.join(['7'] * 2303)} x,Training", "non-integer pixel value 'x' (pixel 2304)"),
    (f"0,7 256 {' '.join(['7'] * 2302)},Training", "pixel value 256 out of range 0..255"),
    (f"0,-1 {' '.join(['7'] * 2303)},Training", "pixel value -1 out of range 0..255"),
    (f"7,{pixels()},Training", "unknown emotion index '7'"),
    (f"happy,{pixels()},Training", "unknown emotion index 'happy'"),
    (f"0,{pixels()},Validation", "unknown Usage 'Validation'"),
    (f"0,{pixels()},Training,extra", "expected 3 comma-separated fields, got 4"),
]


@pytest.mark.parametrize("row,reason", BAD_ROWS)
def test_csv_bad_row_names_file_and_line(tmp_path, row, reason):
    path = tmp_path / "fer2013.csv"
    path.write_text(f"emotion,pixels,Usage\n0,{pixels()},Training\n{row}\n")
    with pytest.raises(FerDataError) as raised:
        load(path)
    assert str(raised.value).startswith(f"{path} [line 3]: {reason}")


def test_csv_missing_column_names_header_line(tmp_path):
    path = tmp_path / "fer2013.csv"
    path.write_text("emotion,Usage\n0,Training\n")
    with pytest.raises(FerDataError, match=r"\[line 1\]: missing required column\(s\) \['pixels'\]"
                       ) as raised:
        load(path)
    assert str(path) in str(raised.value)


@pytest.mark.parametrize("text", ["", "\n", "  \r\n"])
def test_empty_csv_says_empty_file(tmp_path, text):
    path = tmp_path / "fer2013.csv"
    path.write_text(text)
    with pytest.raises(FerDataError, match=r"\[line 1\]: empty file \(expected a header line"):
        load(path)


def test_csv_corrupt_gzip_names_file(tmp_path, splits):
    path = tmp_path / "fer2013.csv.gz"
    path.write_bytes(gzip.compress(csv_text(splits).encode())[:5000])  # truncated
    with pytest.raises(FerDataError, match=r"fer2013.csv.gz \[line \d+\]: unreadable file"):
        load(path)


def test_csv_strict_false_skips_and_reports(tmp_path):
    path = tmp_path / "fer2013.csv"
    path.write_text(f"emotion,pixels,Usage\n3,{pixels(1)},Training\n9,{pixels()},Training\n"
                    f"4,{pixels(2)},PrivateTest\n\n1,{pixels()} 3,PublicTest\n")
    data = load(path, strict=False)
    assert data.split("train").labels.tolist() == [3]
    assert data.split("test").labels.tolist() == [4] and not data.has("val")
    assert [(r.path, r.record) for r in data.skipped] == [(str(path), "line 3"),
                                                          (str(path), "line 6")]
    assert "unknown emotion index '9'" in data.skipped[0].reason
    assert "got 2305" in data.skipped[1].reason
    assert data.skipped_records()[0] == (f"{path} [line 3]: unknown emotion index '9' "
                                         "(expected 0..6)")


# --- image folders and zips -------------------------------------------------------------------

def test_folder_splits_by_file_name_prefix(tmp_path, splits):
    write_layout(tmp_path / "fer", splits)
    data = load(tmp_path / "fer")
    for name in SPLITS:
        assert records(data.splits[name]) == records(splits[name])
    assert data.source == str(tmp_path / "fer")


def test_zip_equals_folder_at_top_and_under_one_top_folder(tmp_path, splits):
    write_layout(tmp_path / "fer", splits)
    folder = load(tmp_path / "fer")
    for top in ("", "fer2013/"):
        archive = zip_folder(tmp_path / "fer", tmp_path / f"fer_{top[:-1] or 'flat'}.zip", top)
        data = load(archive)
        for name in SPLITS:
            assert_same(data.splits[name], folder.splits[name])
    # The extracted form with a top folder reads the same too.
    (tmp_path / "outer").mkdir()
    (tmp_path / "fer").rename(tmp_path / "outer" / "fer2013")
    for name in SPLITS:
        assert_same(load(tmp_path / "outer").splits[name], folder.splits[name])


def test_folder_png_and_jpg_and_case_insensitive_classes(tmp_path, splits):
    pngs = {name: splits[name].take(np.arange(7)) for name in ("train", "val")}
    jpgs = {name: splits[name].take(np.arange(7, 14)) for name in ("train", "val")}
    write_layout(tmp_path / "fer", pngs, case=str.upper)  # TRAIN/HAPPY/...png
    jpg_paths = write_layout(tmp_path / "fer", jpgs, ext="jpg", case=str.capitalize)
    # JPEG is lossy: the expected pixels are the decoded files, not the originals.
    decoded = np.stack([np.asarray(Image.open(path)) for path in jpg_paths])
    data = load(tmp_path / "fer")
    for name, offset in (("train", 0), ("val", 7)):
        expected = Split(np.concatenate([pngs[name].images, decoded[offset:offset + 7]]),
                         np.concatenate([pngs[name].labels, jpgs[name].labels]))
        assert records(data.split(name)) == records(expected)


def test_folder_without_usage_names_carves_val_and_keeps_test(tmp_path):
    train, test = random_split(70, 5), random_split(14, 6)
    write_layout(tmp_path / "fer", {"train": train, "test": test}, prefixes=False)
    data = load(tmp_path / "fer", val_fraction=0.1, seed=0)
    assert records(data.split("test")) == records(test)
    assert data.split("val").counts() == {name: 1 for name in EMOTIONS}
    assert sorted(records(data.split("train")) + records(data.split("val"))) == records(train)


def test_image_modes_and_resize(tmp_path):
    folder = tmp_path / "fer" / "train" / "happy"
    folder.mkdir(parents=True)
    Image.new("RGB", (48, 48), (90, 90, 90)).save(folder / "Training_rgb.png")
    Image.new("L", (64, 64), 77).save(folder / "Training_big.png")
    Image.new("RGB", (64, 64), (30, 30, 30)).save(folder / "Training_big_rgb.png")
    with pytest.raises(FerDataError, match=r"\[train/happy/Training_big.png\]: image is 64x64, "
                                           r"expected 48x48 \(data.resize=True") as raised:
        load(tmp_path / "fer")
    assert str(tmp_path / "fer") in str(raised.value)
    data = load(tmp_path / "fer", resize=True)
    train = data.split("train")
    assert train.labels.tolist() == [3, 3, 3]
    np.testing.assert_array_equal(train.images[0], np.full((48, 48), 77, np.uint8))  # resized
    np.testing.assert_array_equal(train.images[1], np.full((48, 48), 30, np.uint8))  # both
    np.testing.assert_array_equal(train.images[2], np.full((48, 48), 90, np.uint8))  # RGB -> L


def test_load_from_config_honours_strict_and_resize(tmp_path):
    folder = tmp_path / "fer" / "train" / "happy"
    folder.mkdir(parents=True)
    Image.new("L", (48, 48), 9).save(folder / "Training_ok.png")
    Image.new("RGB", (64, 64), (30, 30, 30)).save(folder / "Training_big.png")
    (folder / "Training_broken.png").write_bytes(b"not an image")
    config = smoke.get_config().data
    config.update(source=str(tmp_path / "fer"), val_fraction=0.0)
    with pytest.raises(FerDataError, match=r"Training_big.png\]: image is 64x64"):
        load_from_config(config)
    config.strict = False
    data = load_from_config(config)
    assert len(data.split("train")) == 1 and [r.record for r in data.skipped] == [
        "train/happy/Training_big.png", "train/happy/Training_broken.png"]
    config.resize = True
    assert len(load_from_config(config).split("train")) == 2


BAD_MEMBERS = [
    ("train/contempt/Training_1.png", "unknown class folder 'contempt'"),
    ("validation/happy/PublicTest_1.png", "unexpected folder 'validation'"),
    ("train/happy/extra/Training_1.png", "unexpected nesting"),
    ("train/happy/PublicTest_1.png", "file name says PublicTest but the file is in train/"),
    ("test/happy/Training_1.png", "file name says Training but the file is in test/"),
    ("train/happy/Training_broken.png",
     "unreadable image: train/happy/Training_broken.png is not an image file"),
]


@pytest.mark.parametrize("container", ["folder", "zip"])
@pytest.mark.parametrize("member,reason", BAD_MEMBERS)
def test_bad_image_member_names_container_and_member(tmp_path, container, member, reason):
    root = tmp_path / "fer"
    good = root / "train" / "sad" / "Training_0.png"
    good.parent.mkdir(parents=True)
    Image.new("L", (48, 48), 5).save(good)
    bad = root / member
    bad.parent.mkdir(parents=True, exist_ok=True)
    if "broken" in member:
        bad.write_bytes(b"not an image at all")
    else:
        Image.new("L", (48, 48), 9).save(bad)
    source = root if container == "folder" else zip_folder(root, tmp_path / "fer.zip")
    with pytest.raises(FerDataError) as raised:
        load(source)
    assert str(raised.value).startswith(f"{source} [{member}]: {reason}")
    data = load(source, strict=False)
    assert data.split("train").labels.tolist() == [4]
    assert [(r.path, r.record) for r in data.skipped] == [(str(source), member)]
    assert data.skipped[0].reason.startswith(reason)


def test_unreadable_sources(tmp_path):
    with pytest.raises(FerDataError, match="no such file or directory") as raised:
        load(tmp_path / "missing.csv")
    assert str(tmp_path / "missing.csv") in str(raised.value)
    (tmp_path / "fake.zip").write_bytes(b"PK but not really")
    with pytest.raises(FerDataError, match=r"fake.zip: not a readable zip archive"):
        load(tmp_path / "fake.zip")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(FerDataError, match=r"notes.txt: unsupported file type"):
        load(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FerDataError, match=r"empty: directory holds no FER-2013 source"):
        load(tmp_path / "empty")
    zip_folder(tmp_path / "empty", tmp_path / "other.zip")
    with pytest.raises(FerDataError, match=r"other.zip: no train/ or test/ folder"):
        load(tmp_path / "other.zip")


def test_directory_holding_one_source(tmp_path, splits):
    (tmp_path / "fer2013.csv").write_text(csv_text(splits))
    (tmp_path / "notes.txt").write_text("downloaded from Kaggle")
    assert_same(load(tmp_path).split("val"), splits["val"])


def test_synthetic_default():
    data = load(None, synthetic_sizes={"num_train": 28, "num_val": 14, "num_test": 0}, seed=2)
    assert data.synthetic and [len(data.splits[n]) for n in SPLITS] == [28, 14, 0]
    assert_same(data.split("train"), synthetic.generate(28, 14, 0, seed=2).split("train"))


# --- cache ----------------------------------------------------------------------------------

def test_cache_hit_equals_and_does_not_reread(tmp_path, monkeypatch):
    path = tmp_path / "train.csv"
    path.write_text(csv_text({"train": random_split(70, 7)}, header="emotion,pixels")
                    + f"9,{pixels()}\n")
    first = readers.load(path, strict=False, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("the source was read again")

    monkeypatch.setitem(readers.READERS, "csv", fail)
    second = readers.load(path, strict=False, cache_dir=tmp_path / "cache")
    for name in SPLITS:
        assert_same(second.splits[name], first.splits[name])
    assert (second.source, second.skipped, second.synthetic) == \
        (first.source, first.skipped, False)
    assert [r.record for r in second.skipped] == ["line 72"]
    for changed in ({"seed": 1}, {"val_fraction": 0.2}, {"strict": True}, {"resize": True}):
        with pytest.raises(AssertionError, match="read again"):
            readers.load(path, cache_dir=tmp_path / "cache", **{"strict": False, **changed})


def test_cache_invalidated_by_source_change_and_recovers_from_corruption(tmp_path, splits):
    path = tmp_path / "fer2013.csv"
    path.write_text(csv_text(splits))
    cache_dir = tmp_path / "cache"
    readers.load(path, cache_dir=cache_dir)
    path.write_text(csv_text({"test": splits["test"]}))
    os.utime(path, ns=(1, 1))
    assert not readers.load(path, cache_dir=cache_dir).has("train")
    entry = cache.entry_path({"kind": "csv", "source": cache.fingerprint(path), "strict": True,
                              "resize": False, "val_fraction": 0.1, "seed": 0},
                             cache_dir, path.name)
    assert entry.is_file()
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    with pytest.warns(UserWarning, match="unreadable cache file"):
        data = readers.load(path, cache_dir=cache_dir)
    assert_same(data.split("test"), splits["test"])
    assert_same(cache.read(entry).split("test"), splits["test"])  # rewritten, readable
    assert not list(cache_dir.glob("*.tmp")) and not list(cache_dir.glob(".*.tmp"))


def test_cache_dir_default_env_and_disabled(tmp_path, splits, monkeypatch):
    path = tmp_path / "fer2013.csv"
    path.write_text(csv_text(splits))
    monkeypatch.setenv("FER_JAX_CACHE", str(tmp_path / "env_cache"))
    readers.load(path, cache_dir=False)
    assert not (tmp_path / "env_cache").exists()
    readers.load(path)
    assert len(list((tmp_path / "env_cache").glob("fer2013.csv-*.npz"))) == 1
    (tmp_path / "blocked").write_text("a file where the cache dir should be")
    with pytest.warns(UserWarning, match="could not write cache file"):
        data = readers.load(path, cache_dir=tmp_path / "blocked")
    assert_same(data.split("val"), splits["val"])


# --- real FER-2013 ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("real_cache")


@pytest.fixture(scope="module")
def real_data(real_zip, real_cache):
    return readers.load(real_zip, cache_dir=real_cache)


@pytest.mark.real_data
def test_real_zip_counts(real_data):
    counts = real_data.counts()
    assert counts["train"] == REAL_TRAIN and counts["val"] == REAL_VAL
    assert len(real_data.split("train")) == 28709 and len(real_data.split("val")) == 3589
    assert not real_data.has("test") and real_data.skipped == ()
    with pytest.raises(FerDataError, match="split 'test' was asked for but has no images"):
        real_data.split("test")


@pytest.mark.real_data
def test_real_zip_cached_load_is_fast_and_equal(real_zip, real_data, real_cache, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the zip was read again")

    monkeypatch.setitem(readers.READERS, "zip", fail)
    start = time.perf_counter()
    again = readers.load(real_zip, cache_dir=real_cache)
    assert time.perf_counter() - start < 2.0
    for name in SPLITS:
        assert_same(again.splits[name], real_data.splits[name])


@pytest.mark.real_data
def test_real_csv_written_from_zip_loads_identically(real_data, tmp_path):
    path = tmp_path / "fer2013.csv"
    words = [str(value) for value in range(256)]
    with open(path, "w") as f:
        f.write("emotion,pixels,Usage\n")
        for name in ("train", "val"):
            split = real_data.split(name)
            for image, label in zip(split.images, split.labels):
                text = " ".join(map(words.__getitem__, image.ravel().tolist()))
                f.write(f"{label},{text},{USAGE[name]}\n")
    data = load(path)
    for name in SPLITS:
        assert_same(data.splits[name], real_data.splits[name])
