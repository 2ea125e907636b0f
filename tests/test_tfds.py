"""The TFDS builder "fer2013": prepared without TensorFlow, read back as data sources, same
examples as the readers."""

import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from fer_jax.classes import EMOTIONS
from fer_jax.data import readers, tfds_fer2013
from fer_jax.data.dataset import Split
from fer_jax.errors import FerDataError
from tests.conftest import USAGE, write_fer2013_csv

TFDS_SPLITS = {"train": "train", "val": "validation", "test": "test"}


@pytest.fixture(scope="module")
def small(tiny_data):
    """A few synthetic faces per split."""
    return {name: tiny_data.splits[name].take(np.arange(n))
            for name, n in (("train", 42), ("val", 14), ("test", 14))}


def prepare(manual_dir, data_dir):
    builder = tfds.builder("fer2013", data_dir=str(data_dir))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(manual_dir), try_download_gcs=False))
    return builder


def as_split(source) -> Split:
    examples = [source[i] for i in range(len(source))]
    return Split(np.stack([example["image"][..., 0] for example in examples]),
                 np.array([example["label"] for example in examples], np.int32))


def assert_same(a: Split, b: Split):
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_builder_is_registered_as_fer2013():
    assert tfds.builder_cls("fer2013") is tfds_fer2013.Fer2013
    info = tfds_fer2013.Fer2013(data_dir="/nonexistent").info
    assert info.features["image"].shape == (48, 48, 1)
    assert info.features["image"].np_dtype == np.uint8
    assert tuple(info.features["label"].names) == EMOTIONS
    assert info.file_format.value == "array_record"


def test_prepare_from_csv_matches_readers(tmp_path, small):
    manual = tmp_path / "manual"
    manual.mkdir()
    write_fer2013_csv(manual / "fer2013.csv", small)
    builder = prepare(manual, tmp_path / "data")
    expected = readers.load(manual / "fer2013.csv", cache_dir=False)
    sources = builder.as_data_source()
    assert set(sources) == {"train", "validation", "test"}
    for name, tfds_name in TFDS_SPLITS.items():
        assert_same(as_split(sources[tfds_name]), expected.splits[name])
        assert_same(expected.splits[name], small[name])
    # The same records through tfds.data_source and through the readers' TFDS dispatch.
    assert_same(as_split(tfds.data_source("fer2013", split="validation",
                                          data_dir=str(tmp_path / "data"))), small["val"])
    reread = readers.load(tmp_path / "data", cache_dir=False)
    for name in TFDS_SPLITS:
        assert_same(reread.splits[name], small[name])
    assert "tensorflow" not in sys.modules


def test_prepare_from_folder_writes_only_nonempty_splits(tmp_path, small):
    for name in ("train", "val"):
        folder = "train" if name == "train" else "test"
        for index, (image, label) in enumerate(zip(small[name].images, small[name].labels)):
            path = tmp_path / "manual" / folder / EMOTIONS[label] / f"{USAGE[name]}_{index}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path)
    builder = prepare(tmp_path / "manual", tmp_path / "data")
    sources = builder.as_data_source()
    assert set(sources) == {"train", "validation"}
    expected = readers.load(tmp_path / "manual", cache_dir=False)
    assert_same(as_split(sources["train"]), expected.split("train"))
    assert_same(as_split(sources["validation"]), expected.split("val"))
    assert not readers.load(tmp_path / "data", cache_dir=False).has("test")
    next((tmp_path / "data").rglob("fer2013-train.array_record*")).unlink()
    with pytest.raises(FerDataError, match=r"fer2013/1.0.0: cannot read the prepared records"):
        readers.load(tmp_path / "data", cache_dir=False)
