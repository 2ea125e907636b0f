import json
import warnings

import numpy as np
import pytest

from fer_jax import metrics

# 3 classes, 8 examples. Rows true, columns predicted:
#   a: [2, 1, 0]   b: [1, 2, 0]   c: [0, 2, 0]
LABELS = [0, 0, 0, 1, 1, 1, 2, 2]
PREDICTIONS = [0, 0, 1, 0, 1, 1, 1, 1]


def test_confusion_matrix_rows_are_true_classes():
    confusion = metrics.confusion_matrix(np.array(LABELS), np.array(PREDICTIONS), 3)
    assert confusion.dtype == np.int64
    assert confusion.tolist() == [[2, 1, 0], [1, 2, 0], [0, 2, 0]]


def test_confusion_matrix_rejects_bad_input():
    with pytest.raises(ValueError, match="differ in size"):
        metrics.confusion_matrix([0, 1], [0], 2)
    with pytest.raises(ValueError, match=r"labels must lie in 0..1, found -1..1"):
        metrics.confusion_matrix([-1, 1], [0, 1], 2)
    with pytest.raises(ValueError, match="predictions must lie"):
        metrics.confusion_matrix([0, 1], [0, 2], 2)


def test_report_matches_hand_computation():
    confusion = metrics.confusion_matrix(LABELS, PREDICTIONS, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # class c never predicted: no division warnings
        report = metrics.classification_report(confusion, ["a", "b", "c"])
    assert report["accuracy"] == pytest.approx(4 / 8)
    a, b, c = (report["per_class"][name] for name in "abc")
    assert (a["precision"], a["recall"]) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert a["f1"] == pytest.approx(2 / 3)
    assert (b["precision"], b["recall"]) == (pytest.approx(2 / 5), pytest.approx(2 / 3))
    assert b["f1"] == pytest.approx(2 * (2 / 5) * (2 / 3) / (2 / 5 + 2 / 3))  # = 0.5
    assert (c["precision"], c["recall"], c["f1"]) == (0.0, 0.0, 0.0)
    assert [a["support"], b["support"], c["support"]] == [3, 3, 2]
    assert report["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 0.0) / 3)
    assert report["n"] == 8 and report["classes"] == ["a", "b", "c"]
    assert report["confusion"] == confusion.tolist()
    json.dumps(report)  # serialisable as-is


def test_zero_support_class_has_zero_recall_not_nan():
    confusion = np.array([[3, 1, 0], [0, 0, 0], [0, 1, 2]])  # class "b" never occurs
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = metrics.classification_report(confusion, ["a", "b", "c"])
    b = report["per_class"]["b"]
    assert (b["precision"], b["recall"], b["f1"], b["support"]) == (0.0, 0.0, 0.0, 0)
    assert report["macro_f1"] == pytest.approx((6 / 7 + 0 + 0.8) / 3)
    empty = metrics.classification_report(np.zeros((2, 2), np.int64), ["x", "y"])
    assert (empty["accuracy"], empty["macro_f1"], empty["n"]) == (0.0, 0.0, 0)


def test_report_rejects_mismatched_class_names():
    with pytest.raises(ValueError, match="does not match 2 class names"):
        metrics.classification_report(np.zeros((3, 3)), ["a", "b"])


def test_top1_predictions():
    logits = np.array([[0.1, 2.0, -1.0], [3.0, 0.0, 0.5]])
    assert metrics.top1_predictions(logits).tolist() == [1, 0]


def test_format_report_table():
    report = metrics.classification_report(metrics.confusion_matrix(LABELS, PREDICTIONS, 3),
                                           ["angry", "b", "c"])
    table = metrics.format_report_table(report)
    lines = table.splitlines()
    assert lines[0].split() == ["class", "precision", "recall", "f1", "support"]
    assert lines[1].split() == ["angry", "66.7%", "66.7%", "66.7%", "3"]
    assert lines[2].split() == ["b", "40.0%", "66.7%", "50.0%", "3"]
    assert lines[-2].split() == ["accuracy", "50.0%", "8"]
    assert lines[-1].split() == ["macro", "F1", "38.9%"]
    assert len({len(line.rstrip()) for line in lines[:-1]}) == 1  # aligned columns
