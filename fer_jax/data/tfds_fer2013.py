"""TFDS builder ``fer2013``: FER-2013 from a manual download, prepared without TensorFlow.

Importing this module registers the builder (TFDS names a ``GeneratorBasedBuilder`` subclass
by its class name in snake_case: ``Fer2013`` -> ``"fer2013"``; tensorflow-datasets 4.9.10 ships
no dataset of that name, so nothing collides — should a later release add one, importing this
module fails with TFDS' "Dataset with name fer2013 already registered", and the fix is to set
``name`` on the class to another name). Records are written as ``array_record`` (the default
here) and read back with ``as_data_source()``, which needs neither TensorFlow nor
``tf.data``::

    import tensorflow_datasets as tfds
    import fer_jax.data.tfds_fer2013  # noqa: F401  (registers "fer2013")

    builder = tfds.builder("fer2013", data_dir="~/tensorflow_datasets")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir="~/fer2013_manual"))
    train = builder.as_data_source(split="train")   # train[i] -> {"image", "label"}

Examples are those of :func:`fer_jax.data.readers.load` on the manual dir, in the same order
(shuffling is disabled), with ``val`` named ``validation``; only non-empty splits are written.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds

from fer_jax.classes import EMOTIONS
from fer_jax.data import readers
from fer_jax.data.dataset import IMAGE_SIZE, Split

TFDS_SPLIT_NAMES = {"train": "train", "val": "validation", "test": "test"}


class Fer2013(tfds.core.GeneratorBasedBuilder):
    """FER-2013: 48x48 grayscale faces, 7 expressions (canonical ICML 2013 label order)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {
        "1.0.0": "Initial release: array_record, splits from the source's Usage."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Put ONE FER-2013 source in the manual dir (a directory of its own):
  * fer2013.csv / icml_face_data.csv / Kaggle train.csv (plain or .gz), or
  * the Kaggle image-folder zip (train/<class>/*, test/<class>/*), or that folder extracted.
Usage Training/PublicTest/PrivateTest (CSV column or file-name prefix) gives
train/validation/test; sources without it get validation carved from train (10% per class).
"""

    def __init__(self, *, file_format: str | None = "array_record", **kwargs):
        super().__init__(file_format=file_format, **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="FER-2013 facial expressions (ICML 2013 representation-learning "
                        "challenge), read by fer_jax.data.readers.",
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(shape=(IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.uint8),
                "label": tfds.features.ClassLabel(names=EMOTIONS),
            }),
            supervised_keys=("image", "label"),
            homepage="https://www.kaggle.com/c/challenges-in-representation-learning-facial-"
                     "expression-recognition-challenge",
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        data = readers.load(str(dl_manager.manual_dir), cache_dir=False)
        return {TFDS_SPLIT_NAMES[name]: self._generate_examples(split)
                for name, split in data.splits.items() if len(split)}

    def _generate_examples(self, split: Split):
        for index, (image, label) in enumerate(zip(split.images, split.labels)):
            yield index, {"image": image[..., None], "label": int(label)}
