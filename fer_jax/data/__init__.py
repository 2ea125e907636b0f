"""FER-2013 data layer: one in-memory form (uint8 [N,48,48] images, canonical int32 labels)
for every source, plus the embedded synthetic default."""

from fer_jax.data.dataset import IMAGE_SIZE, SPLITS, FerData, SkippedRecord, Split

__all__ = ["IMAGE_SIZE", "SPLITS", "FerData", "SkippedRecord", "Split", "load", "load_from_config"]


def load(source=None, **kwargs) -> FerData:
    """Loads FER-2013 from ``source`` (CSV, image folder, .zip, TFDS dir) or, when ``source`` is
    None, the embedded synthetic default. See :func:`fer_jax.data.readers.load`."""
    from fer_jax.data import readers

    return readers.load(source, **kwargs)


def load_from_config(data_config) -> FerData:
    """The data a config section names (the ``config.data`` of every experiment config):
    ``source`` (None: the synthetic faces), ``val_fraction``, ``split_seed``,
    ``synthetic_sizes``, ``strict`` (False: skip bad records, listed in ``FerData.skipped``)
    and ``resize`` (True: images of another size are resized to 48x48)."""
    sizes = data_config.get("synthetic_sizes")
    return load(data_config.get("source"), val_fraction=data_config.get("val_fraction", 0.1),
                seed=data_config.get("split_seed", 0),
                synthetic_sizes=dict(sizes) if sizes else None,
                strict=data_config.get("strict", True), resize=data_config.get("resize", False))
