"""fer_jax.stages: stages run once, skip when unchanged, refuse or recompute a changed section
or upstream stage (reads recorded automatically); and the one signal-stop exit code."""

import pytest

from experiments.cli import run_main
from fer_jax.errors import FerError, Interrupted
from fer_jax.stages import Stages


class Counting:
    """Two stages: ``a`` with section ``{"a": a}``; ``b`` reads ``a``'s outputs."""

    def __init__(self, directory, **kwargs):
        self.stages = Stages(directory, **kwargs)
        self.calls = []

    def run(self, a=1, b=10):
        def body_a():
            self.calls.append("a")
            return {"value": a}

        def body_b():
            self.calls.append("b")
            return {"value": self.stages.outputs("a")["value"] + b}

        self.stages.run("a", body_a, lambda: {"a": a}, label="a")
        return self.stages.run("b", body_b, lambda: {"b": b}, label="b")[0]


def test_stages_run_once_and_record_what_they_read(tmp_path, capsys):
    first = Counting(tmp_path)
    assert first.run() == {"value": 11} and first.calls == ["a", "b"]
    again = Counting(tmp_path)
    assert again.run() == {"value": 11} and again.calls == []
    assert capsys.readouterr().out.count("skipped (finished earlier)") == 2
    assert again.stages.record("b")["reads"] == ["a"]


def test_a_changed_section_or_upstream_is_refused_by_name(tmp_path):
    Counting(tmp_path).run()
    with pytest.raises(FerError, match=r"stage 'b' was made with another config \(changed: b\)"):
        Counting(tmp_path).run(b=20)
    with pytest.raises(FerError, match=r"stage 'a' .*\(changed: a\)"):
        Counting(tmp_path).run(a=2)


def test_recompute_redoes_a_changed_stage_and_what_read_it(tmp_path, capsys):
    Counting(tmp_path).run()
    again = Counting(tmp_path, recompute=True)
    assert again.run(a=2) == {"value": 12} and again.calls == ["a", "b"]
    assert "b: recomputing (changed: upstream.a)" in capsys.readouterr().out
    # A stage whose marker is gone (killed before it finished) reruns; its readers stay valid
    # when it ends with the same inputs.
    (tmp_path / "a" / "outputs.json").unlink()
    third = Counting(tmp_path)
    assert third.run(a=2) == {"value": 12} and third.calls == ["a"]


def test_a_stop_on_a_signal_exits_with_128_plus_the_signal(capsys):
    def stopped():
        raise Interrupted("stage 'flat'", 15)

    with pytest.raises(SystemExit) as exit_info:
        run_main(stopped)
    assert exit_info.value.code == 143
    assert capsys.readouterr().err.startswith("interrupted: stage 'flat' stopped by signal 15")


def test_the_logit_adjusted_variant_trains_with_the_adjusted_loss(tmp_path):
    from experiments.configs import ablation_default
    from studies.ablation import Ablation

    config = ablation_default.get_config()
    config.variants = ("none", "logit_adjusted")
    study = Ablation(config, tmp_path)
    adjusted = study.run_config("seven", "logit_adjusted", seed=0)
    plain = study.run_config("seven", "none", seed=0)
    assert (adjusted.loss, plain.loss) == ("logit_adjusted", "cross_entropy")
    assert not adjusted.data.oversample and not adjusted.data.gan_mixing
