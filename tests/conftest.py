"""Shared fixtures. Two host CPU devices are forced for the whole session (before jax is
imported anywhere) so jit-vs-pmap parity and multi-device code are tested on this machine, and
the parsed-data cache ($FER_JAX_CACHE) is a temporary folder, never the user's ~/.cache/fer_jax.
Compiled programs go to a persistent compilation cache in a temporary folder for the session
(subprocesses inherit it): the suite's runs, stages and subprocesses compile the same small
models again and again (the dose study end to end: 262 -> 177 s on one core). Each pytest-xdist
worker (pyproject's ``-n auto``) makes its own folders: JAX's cache writes are not atomic.

Real-data tests read the FER-2013 zip named by $FER_JAX_DATA, else
``<checkout>/../shared/data/fer2013/fer2013_images.zip``, and skip (saying where they looked)
when it is absent."""

import os
import shutil
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ["FER_JAX_CACHE"] = tempfile.mkdtemp(prefix="fer_jax_test_cache-")
os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="fer_jax_xla_cache-")
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "-1"

import gc
import pathlib

import jax
import pytest

from fer_jax.data import synthetic

DEFAULT_REAL_ZIP = (pathlib.Path(__file__).resolve().parents[1].parent
                    / "shared/data/fer2013/fer2013_images.zip")
REAL_ZIP = pathlib.Path(os.environ.get("FER_JAX_DATA") or DEFAULT_REAL_ZIP)


def pytest_sessionfinish(session, exitstatus):
    for folder in ("FER_JAX_CACHE", "JAX_COMPILATION_CACHE_DIR"):
        shutil.rmtree(os.environ[folder], ignore_errors=True)


@pytest.fixture(scope="module", autouse=True)
def free_compiled_programs():
    """Drops each module's compiled programs after it: every XLA CPU executable holds memory
    maps, and the whole suite in one process passed the kernel's 65,530-map limit
    (vm.max_map_count) and crashed inside the compiler."""
    yield
    jax.clear_caches()
    gc.collect()


@pytest.fixture(scope="session")
def tiny_data():
    """A small synthetic dataset (train 420, val 140, test 140), shared by the whole session."""
    return synthetic.generate(num_train=420, num_val=140, num_test=140, seed=0)


@pytest.fixture(scope="session")
def real_zip():
    """Path of the FER-2013 zip ($FER_JAX_DATA or the shared one); skips the test when it is
    absent."""
    if not REAL_ZIP.is_file():
        where = ("$FER_JAX_DATA" if os.environ.get("FER_JAX_DATA")
                 else "default; set FER_JAX_DATA=PATH to point elsewhere")
        pytest.skip(f"real FER-2013 zip not found at {REAL_ZIP} ({where})")
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
