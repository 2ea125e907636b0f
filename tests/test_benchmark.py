"""experiments.benchmark: its measurement path with tiny step counts (no timing assertions),
and the PyTorch networks it compares against (skipped when torch is not installed)."""

import importlib.util

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


def test_measurements_rows_and_tables():
    results = [benchmark.measure("compact", "jit", 4, steps=1)]
    if HAS_TORCH:
        results.append(benchmark.measure_torch("compact", 4, steps=1, compiled=False))
    rows = benchmark.json_rows(results)
    assert [row["framework"] for row in rows] == ["fer-jax", "torch-eager"][:len(rows)]
    for row in rows:
        assert row["model"] == "compact" and row["batch"] == 4
        assert row["train_images_per_sec"] > 0 and row["infer_images_per_sec"] > 0
    assert "| compact | fer-jax |" in benchmark.markdown_table(results, gemm=100.0)
    assert "| compact | 4 | fer-jax | jit x" in benchmark.comparison_table(results)
