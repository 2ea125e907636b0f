import numpy as np
import pytest
from PIL import Image

from fer_jax import metrics, plots


def _assert_png(path):
    assert path.stat().st_size > 1000
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) > 100


def test_every_plot_writes_a_png(tmp_path):
    confusion = np.array([[5, 1, 0], [2, 3, 1], [0, 0, 4]])
    report = metrics.classification_report(confusion, ["angry", "happy", "sad"])
    other = metrics.classification_report(np.eye(2, dtype=int) * 3, ["angry", "neutral"])

    plots.save_confusion_png(confusion, report["classes"], tmp_path / "a" / "confusion.png",
                             title="test")
    history = [{"step": s, "train_loss": 1.0 / s, "train_accuracy": 0.1 * s} for s in (1, 2, 3)]
    history.append({"step": 3, "val_loss": 0.5, "val_accuracy": 0.3})
    plots.save_curves_png(history, tmp_path / "b" / "curves.png", ["loss", "accuracy"])
    images = np.random.default_rng(0).integers(0, 256, (3, 5, 48, 48), dtype=np.uint8)
    plots.save_image_grid_png(images, tmp_path / "c" / "grid.png",
                              row_names=["angry", "happy", "sad"])
    plots.save_recall_bars_png({"run": report, "other": other}, tmp_path / "d" / "recall.png",
                               reference={"angry": 0.6, "happy": 0.9})
    for name in ("a/confusion.png", "b/curves.png", "c/grid.png", "d/recall.png"):
        _assert_png(tmp_path / name)


def test_plot_input_errors(tmp_path):
    with pytest.raises(ValueError, match="no series for 'f1'"):
        plots.save_curves_png([{"step": 1, "train_loss": 1.0}], tmp_path / "x.png", ["f1"])
    with pytest.raises(ValueError, match="2 row names for 3 rows"):
        plots.save_image_grid_png(np.zeros((3, 2, 48, 48), np.uint8), tmp_path / "y.png",
                                  row_names=["a", "b"])
    assert not list(tmp_path.iterdir())
