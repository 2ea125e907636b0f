"""experiments.gan_table and gan.quality's summaries on a hand-made gan_eval.json."""

import json

import pytest

from experiments import cli, gan_table
from fer_jax.errors import FerError
from gan import quality


def kid(value: float) -> dict:
    return {"kid": value, "ci": [value / 2, value * 2]}


def hand_made_report() -> dict:
    """Three classes: a at 3x its floor (within), b at 5x (outside), c with a floor of 0."""
    per_class = {name: {"kid": kid(value), "kid_floor": kid(floor)}
                 for name, value, floor in (("a", 0.006, 0.002), ("b", 0.01, 0.002),
                                            ("c", 0.004, 0.0))}
    return {"data": "fer.zip (val without its 12 exact copies of train faces)",
            "truncation": 2.0, "per_class": per_class,
            "overall": {"kid": kid(0.008), "label_sensitivity": 0.75,
                        "label_sensitivity_ci": [0.74, 0.76], "recognizability": 0.7,
                        "precision": 0.8, "recall": 0.5, "fid": 1.5, "fid_floor": 0.5,
                        "cas": 0.52, "cas_real_reference": 0.57,
                        "memorization": {"ratio": 1.01, "near_copies": 0}}}


def test_kid_ratios_and_the_summary_row():
    report = hand_made_report()
    assert quality.kid_ratios(report) == pytest.approx({"a": 3.0, "b": 5.0, "c": None})
    row = quality.summary_row(report, kid_ratio=3.0)
    assert row["outside_kid_ratio"] == ["c", "b"]       # no floor first, then the worst ratio
    assert quality.summary_row(report, kid_ratio=6.0)["outside_kid_ratio"] == ["c"]
    assert (row["label_sensitivity"], row["kid"], row["classes"]) == (0.75, 0.008, 3)


def test_the_table_prints_a_row_per_report_and_writes_them(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / quality.GAN_EVAL).write_text(json.dumps(hand_made_report()))
    out = tmp_path / "rows.json"
    assert gan_table.main([str(run), str(run / quality.GAN_EVAL), "--markdown",
                           "--json", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and lines[0].startswith("| run | val | trunc |")
    assert lines[2] == ("| run | without 12 train copies | 2 | 52.0 (57.0) | 75.0 [74.0, 76.0] | "
                        "70.0 | 0.80 / 0.50 | 1.50 (0.50) | 0.0080 [0.0040, 0.0160] | "
                        "1 of 3 within 3x (c (no floor), b 5.0x) | 1.01; 0 |")
    assert lines[3] == lines[2]                    # the run's gan_eval.json: the run's row
    assert gan_table.row_name("docs/gan_cpu_54k_eval.json") == "gan_cpu_54k_eval"
    assert set(json.loads(out.read_text())) == {str(run), str(run / quality.GAN_EVAL)}
    assert gan_table.val_name("fer.zip") == "all" and gan_table.val_name(None) == "all"


@pytest.mark.parametrize("content, message", [
    (None, "no such file"), ("{", "not JSON"), ('{"overall": {}}', "not a gan_eval.json report")])
def test_a_bad_report_is_named_and_exits_2(tmp_path, capsys, content, message):
    path = tmp_path / "gan_eval.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(FerError, match=message):
        quality.read_gan_eval(path)
    with pytest.raises(SystemExit) as stopped:
        cli.run_main(lambda: gan_table.main([str(path)]))
    assert stopped.value.code == 2
    assert capsys.readouterr().err.startswith(f"error: {path}: {message}")
