"""FER-2013 data layer: one in-memory form (uint8 [N,48,48] images, canonical int32 labels)
for every source, plus the embedded synthetic default."""

from fer_jax.data.dataset import IMAGE_SIZE, SPLITS, FerData, SkippedRecord, Split

__all__ = ["IMAGE_SIZE", "SPLITS", "FerData", "SkippedRecord", "Split", "load"]


def load(source=None, **kwargs) -> FerData:
    """Loads FER-2013 from ``source`` (CSV, image folder, .zip, TFDS dir) or, when ``source`` is
    None, the embedded synthetic default. See :func:`fer_jax.data.readers.load`."""
    from fer_jax.data import readers

    return readers.load(source, **kwargs)
