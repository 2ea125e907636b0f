"""fer_jax.onednn_conv: oneDNN's convolutions against lax.conv_general_dilated (values and
both gradients), where it falls back to XLA, and a failed build's error."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from fer_jax import onednn_conv
from fer_jax.errors import FerError

NHWC = ("NHWC", "HWIO", "NHWC")


def _value_and_grads(conv, x, kernel, strides, padding):
    def loss(x, kernel):  # a nonlinear read-out, so every output element's gradient differs
        return jnp.sum(jnp.sin(conv(x, kernel, strides, padding, dimension_numbers=NHWC)))

    return jax.jit(jax.value_and_grad(loss, (0, 1)))(x, kernel)


@pytest.mark.parametrize("x_shape, kernel_shape, strides, padding", [
    ((2, 9, 9, 3), (3, 3, 3, 5), (1, 1), "SAME"),
    ((2, 8, 8, 1), (3, 3, 1, 4), (1, 1), "VALID"),         # the image layer: one channel
    ((2, 9, 9, 3), (3, 3, 3, 5), (2, 2), "SAME"),          # strided, odd size
    ((2, 10, 10, 3), (4, 4, 3, 5), (2, 2), "SAME"),        # even kernel: asymmetric padding
    ((3, 10, 7, 2), (4, 3, 2, 6), (2, 1), ((1, 2), (0, 1))),
])
def test_matches_lax_values_and_gradients(x_shape, kernel_shape, strides, padding):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal(x_shape), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal(kernel_shape), jnp.float32)
    expected = _value_and_grads(lax.conv_general_dilated, x, kernel, strides, padding)
    got = _value_and_grads(onednn_conv.conv_general_dilated, x, kernel, strides, padding)
    hlo = jax.jit(jax.grad(lambda x, k: onednn_conv.conv_general_dilated(
        x, k, strides, padding, dimension_numbers=NHWC).sum(), (0, 1))).lower(x, kernel).as_text()
    assert "FerConvInputGradient" in hlo and "FerConvKernelGradient" in hlo
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected)):
        scale = float(jnp.max(jnp.abs(b)))
        np.testing.assert_allclose(a / scale, b / scale, atol=1e-5)


def test_vmap_runs_each_element():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((3, 2, 6, 6, 2)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((3, 3, 2, 4)), jnp.float32)

    def conv(fn):
        return jax.vmap(lambda x: fn(x, kernel, (1, 1), "SAME", dimension_numbers=NHWC))(x)

    np.testing.assert_allclose(conv(onednn_conv.conv_general_dilated),
                               conv(lax.conv_general_dilated), rtol=1e-5, atol=1e-5)


def test_bfloat16_matches_lax_within_bfloat16_rounding():
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal((2, 9, 9, 8)), jnp.bfloat16)
    kernel = jnp.asarray(rng.standard_normal((3, 3, 8, 16)), jnp.bfloat16)
    got = _value_and_grads(onednn_conv.conv_general_dilated, x, kernel, (1, 1), "SAME")
    expected = _value_and_grads(lax.conv_general_dilated, x.astype(jnp.float32),
                                kernel.astype(jnp.float32), (1, 1), "SAME")
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected)):
        assert a.dtype == jnp.bfloat16
        scale = float(jnp.max(jnp.abs(b)))
        # bfloat16 keeps 8 significant bits: 2^-8 = 0.4% per rounding, a few roundings deep
        np.testing.assert_allclose(np.float32(a) / scale, b / scale, atol=3e-2)


@pytest.mark.parametrize("case", ["float16", "dilation", "groups", "NCHW", "negative pad"])
def test_other_convolutions_fall_back_to_xla(case):
    x = jnp.ones((1, 6, 6, 4), jnp.float16 if case == "float16" else jnp.float32)
    kernel = jnp.ones((3, 3, 2 if case == "groups" else 4, 4), x.dtype)
    kwargs = {"window_strides": (1, 1), "padding": "SAME", "dimension_numbers": NHWC}
    if case == "dilation":
        kwargs["rhs_dilation"] = (2, 2)
    elif case == "groups":
        kwargs["feature_group_count"] = 2
    elif case == "NCHW":
        x, kwargs["dimension_numbers"] = x.transpose(0, 3, 1, 2), ("NCHW", "HWIO", "NCHW")
    elif case == "negative pad":
        kwargs["padding"] = ((-1, 1), (0, 0))
    hlo = jax.jit(lambda x, k: onednn_conv.conv_general_dilated(x, k, **kwargs)).lower(
        x, kernel).as_text()
    assert "FerConv" not in hlo and "convolution" in hlo
    np.testing.assert_array_equal(onednn_conv.conv_general_dilated(x, kernel, **kwargs),
                                  lax.conv_general_dilated(x, kernel, **kwargs))


def test_failed_build_is_a_clear_error(tmp_path, monkeypatch):
    broken = tmp_path / "broken.cc"
    broken.write_text("this is not C++\n")
    monkeypatch.setattr(onednn_conv, "SOURCE", broken)
    monkeypatch.setenv("FER_JAX_CACHE", str(tmp_path / "cache"))
    with pytest.raises(FerError, match="building broken.cc failed.*layer_impl='fast'"):
        onednn_conv.library_path()
    assert not list((tmp_path / "cache" / "build").glob("*.so"))


def test_library_is_built_once(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_JAX_CACHE", str(tmp_path))
    path = onednn_conv.library_path()
    built = path.stat().st_mtime_ns
    assert onednn_conv.library_path() == path and path.stat().st_mtime_ns == built


def test_without_onednn_convolutions_fall_back_with_a_warning(monkeypatch):
    monkeypatch.setattr(onednn_conv.shutil, "which", lambda name: None)
    onednn_conv.available.cache_clear()
    try:
        x, kernel = jnp.ones((1, 5, 5, 2)), jnp.ones((3, 3, 2, 3))
        with pytest.warns(UserWarning, match="missing a C\\+\\+ compiler"):
            hlo = jax.jit(lambda x, k: onednn_conv.conv_general_dilated(
                x, k, (1, 1), "SAME", dimension_numbers=NHWC)).lower(x, kernel).as_text()
        assert "FerConv" not in hlo and "convolution" in hlo
        with pytest.raises(FerError, match="needs a C\\+\\+ compiler"):
            onednn_conv._compile_command(onednn_conv.SOURCE)
    finally:
        onednn_conv.available.cache_clear()


def test_devices_share_the_threads(monkeypatch):
    assert jax.local_device_count() == 2  # conftest forces two host devices
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    assert onednn_conv.threads_per_device() == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "1,1")
    assert onednn_conv.threads_per_device() == 1
