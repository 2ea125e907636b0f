"""Shared fixtures. Two host CPU devices are forced for the whole session (before jax is
imported anywhere) so jit-vs-pmap parity and multi-device code are tested on this machine."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

import pathlib

import pytest

from fer_jax.data import synthetic

REAL_ZIP = pathlib.Path(__file__).resolve().parents[1].parent / "shared/data/fer2013/fer2013_images.zip"


@pytest.fixture(scope="session")
def tiny_data():
    """A small synthetic dataset (train 420, val 140, test 140), shared by the whole session."""
    return synthetic.generate(num_train=420, num_val=140, num_test=140, seed=0)


@pytest.fixture(scope="session")
def real_zip():
    """Path of the shared FER-2013 zip; skips the test when it is absent."""
    if not REAL_ZIP.exists():
        pytest.skip(f"real FER-2013 not present at {REAL_ZIP}")
    return REAL_ZIP


USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}


def write_fer2013_csv(path: pathlib.Path, splits) -> pathlib.Path:
    """Writes ``{split name: Split}`` as an ICML-2013 fer2013.csv (emotion, pixels, Usage)."""
    with open(path, "w") as f:
        f.write("emotion,pixels,Usage\n")
        f.writelines(f"{label},{' '.join(map(str, image.ravel()))},{USAGE[name]}\n"
                     for name, split in splits.items()
                     for image, label in zip(split.images, split.labels))
    return path


@pytest.fixture(scope="session")
def tiny_csv(tiny_data, tmp_path_factory):
    """``tiny_data`` written as an ICML-2013 fer2013.csv (Training / PublicTest / PrivateTest),
    for the command-line entry points' ``--data``."""
    return write_fer2013_csv(tmp_path_factory.mktemp("csv") / "fer2013.csv",
                             {name: tiny_data.split(name) for name in USAGE})
