"""experiments.benchmark: its measurement path with tiny step counts (no timing assertions),
and the PyTorch networks it compares against (skipped when torch is not installed)."""

import importlib.util
import json

import jax
import numpy as np
import pytest

from experiments import benchmark
from fer_jax import models

HAS_TORCH = importlib.util.find_spec("torch") is not None


@pytest.mark.skipif(not HAS_TORCH, reason="torch not installed (pip install -e '.[bench]')")
@pytest.mark.parametrize("name", ["seed_cnn", "compact", "vgg13"])
def test_torch_networks_have_the_fer_jax_parameter_count(name):
    model = models.create_model(name, benchmark.NUM_CLASSES, **benchmark.MODEL_KWARGS.get(name, {}))
    shapes = jax.eval_shape(model.init, jax.random.key(0), np.zeros((1, 48, 48, 1), np.float32))
    count = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(shapes["params"]))
    assert sum(p.numel() for p in benchmark.torch_model(name).parameters()) == count


@pytest.mark.slow
def test_measurements_rows_and_tables():
    results = [benchmark.measure("compact", "jit", 4, steps=1),
               benchmark.measure("compact", "jit", 4, steps=1, framework="fer-jax-xla-conv")]
    assert [r["layer_impl"] for r in results] == ["onednn", "fast"]
    # FLOPs per image agree whether the convolutions are XLA's or oneDNN's custom calls
    # (which XLA's cost analysis does not count; conv_flops adds them, counted as XLA does).
    assert results[0]["infer_mflop_per_image"] == pytest.approx(
        results[1]["infer_mflop_per_image"], rel=1e-6)
    if HAS_TORCH:
        results.append(benchmark.measure_torch("compact", 4, steps=1, compiled=False))
    rows = benchmark.json_rows(results)
    assert [row["framework"] for row in rows] == [
        "fer-jax", "fer-jax-xla-conv", "torch-eager"][:len(rows)]
    for row in rows:
        assert row["model"] == "compact" and row["batch"] == 4
        assert row["train_images_per_sec"] > 0 and row["infer_images_per_sec"] > 0
    assert "| compact | fer-jax |" in benchmark.markdown_table(results, gemm=100.0)
    assert "| compact | 4 | fer-jax | jit x" in benchmark.comparison_table(results)


def test_profile_splits_a_step_into_convolutions_and_the_rest():
    row = benchmark.measure("compact", "jit", 4, steps=1, profile=True)
    by_op = row["step_ms_by_op"]
    assert by_op["ffi_call"] > 0              # the oneDNN convolutions, traced
    assert all(ms > 0 for ms in by_op.values()) and list(by_op.values()) == sorted(
        by_op.values(), reverse=True)
    assert benchmark.json_rows([row])[0]["step_ms_by_op"] == by_op
    # Closed form: 10 ms of convolutions, 5 of the rest; torch.compile steps 4 images at
    # 100 img/s = 40 ms, so removing everything but the convolutions would give at most 4x.
    rows = [{"model": "m", "batch": 4, "framework": "fer-jax",
             "step_ms_by_op": {"ffi_call": 6.0, "conv_general_dilated": 4.0, "dot": 5.0}},
            {"model": "m", "batch": 4, "framework": "torch-compile", "train_images_per_s": 100.0}]
    assert "| m | 4 | fer-jax | 15.0 | 10.0 | 5.0 | 67% | 4.00x | dot 5.0 |" in (
        benchmark.profile_table(rows))


def test_conv_layers_are_read_from_the_model_in_order():
    layers = benchmark.conv_layers("seed_cnn", 2)
    # The seed project's Keras network: VALID 3x3 convs 32-64 | 128-128 | 256-256, pooled
    # after each pair.
    assert [(layer["input"], layer["kernel"][-1]) for layer in layers] == [
        ([2, 48, 48, 1], 32), ([2, 46, 46, 32], 64), ([2, 22, 22, 64], 128),
        ([2, 20, 20, 128], 128), ([2, 9, 9, 128], 256), ([2, 7, 7, 256], 256)]
    assert all(layer["padding"] == [[0, 0], [0, 0]] for layer in layers)
    assert [layer["padding"] for layer in benchmark.conv_layers("compact", 2)] == [
        [[1, 1], [1, 1]]] * 7


def test_conv_flops_closed_form():
    # 2 images, 3 x 3 x 1 -> 16, 2 FLOPs per multiply-add. VALID on 48 x 48: 46 outputs x 3
    # taps per axis; SAME: 48 outputs x 3 taps less the 2 on the padding = 142 per axis.
    valid = {"input": [2, 48, 48, 1], "kernel": [3, 3, 1, 16], "padding": [[0, 0], [0, 0]]}
    same = {**valid, "padding": [[1, 1], [1, 1]]}
    assert benchmark.layer_flops(valid) == 2 * 2 * (46 * 3) ** 2 * 16
    assert benchmark.layer_flops(same) == 2 * 2 * 142 ** 2 * 16
    layers = benchmark.conv_layers("seed_cnn", 2)
    forward, training = benchmark.conv_flops("seed_cnn", 2)
    assert forward == sum(map(benchmark.layer_flops, layers))
    assert training == 3 * forward - benchmark.layer_flops(layers[0])  # no first-layer dx


def test_layer_timings_rows_and_table(tmp_path):
    out = tmp_path / "layers"
    argv = ["--layers", "--models", "compact", "--batches", "2", "--steps", "1", "--out", str(out)]
    assert benchmark.main(argv + (["--against", "torch"] if HAS_TORCH else [])) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["layers"]
    per_framework = 3 if HAS_TORCH else 2  # oneDNN's kernels, XLA's [, PyTorch's]
    assert len(rows) == 7 * per_framework
    assert [r["framework"] for r in rows[:2]] == ["fer-jax", "fer-jax-xla-conv"]
    first, later = rows[0], rows[per_framework]
    assert first["layer"] == "48x48x1->16" and first["input_grad_ms"] is None
    assert later["layer"] == "24x24x16->32" and later["input_grad_ms"] > 0
    assert all(r["forward_ms"] > 0 and r["weight_grad_ms"] > 0 for r in rows)
    table = out.with_suffix(".md").read_text()
    assert "| compact | 2 | 48x48x1->16 | fer-jax |" in table
    assert "| compact | 2 | 48x48x1->16 | fer-jax-xla-conv |" in table
    assert table.count("| compact | 2 | all |") == per_framework
