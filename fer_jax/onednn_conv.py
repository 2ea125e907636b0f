"""2-D convolutions on oneDNN's CPU kernels, forward and backward, as XLA FFI custom calls.

XLA:CPU's own convolution kernels (Eigen) run the input and weight gradients of this
project's networks 1.1-3x slower than oneDNN's (docs/benchmark_cpu.md, "Where the rest of the
gap is"), and none of XLA's library flags routes convolutions to oneDNN. Here the three
convolutions of a layer (forward, input gradient, weight gradient) are custom calls into
oneDNN (``native/onednn_conv.cc``, in XLA's NHWC / HWIO layouts, no copies of activations),
tied together by a ``jax.custom_vjp``. :func:`conv_general_dilated` has the signature of
``lax.conv_general_dilated``, so ``nn.Conv(conv_general_dilated=...)`` uses it; it takes
the oneDNN path for float32 or bfloat16 NHWC/HWIO convolutions without dilation or groups on the CPU
backend and calls ``lax.conv_general_dilated`` for everything else (accelerators included;
a machine without the oneDNN headers or ``g++`` too, with a warning).

The library is compiled on first use (about 5 s; ``g++``, jaxlib's FFI headers and the
``onednn-cpu-gomp`` / ``onednn-devel-cpu-gomp`` wheels, core dependencies on Linux x86-64)
into ``<$FER_JAX_CACHE or ~/.cache/fer_jax>/build``, once per source, jaxlib and environment.
oneDNN runs its own OpenMP threads: ``OMP_NUM_THREADS`` (default: all cores) split among the
local devices (:func:`threads_per_device`), so forced host devices share the cores.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fer_jax.data import cache
from fer_jax.errors import FerError

SOURCE = pathlib.Path(__file__).parent / "native" / "onednn_conv.cc"
TARGETS = {"forward": "FerConvForward", "input_gradient": "FerConvInputGradient",
           "kernel_gradient": "FerConvKernelGradient"}
_NHWC = ("NHWC", "HWIO", "NHWC")


def _missing() -> str | None:
    """What this machine lacks to build the library, or None."""
    header = pathlib.Path(sys.prefix) / "include" / "oneapi" / "dnnl" / "dnnl.hpp"
    if not header.exists():
        return (f"oneDNN headers ({header}; `pip install -e .` installs onednn-devel-cpu-gomp "
                f"on Linux x86-64)")
    return None if shutil.which("g++") else "a C++ compiler (g++)"


@functools.cache
def available() -> bool:
    """Whether the library can be built here; warns once (XLA's convolutions instead) if not."""
    missing = _missing()
    if missing:
        warnings.warn(f"fer_jax.onednn_conv: missing {missing}: convolutions run on XLA's kernels "
                      f"(slower on CPU)", stacklevel=2)
    return missing is None


def _compile_command(output: pathlib.Path) -> list[str]:
    missing = _missing()
    if missing:
        raise FerError(f"building {SOURCE.name} needs {missing}; or set layer_impl='fast'")
    include, lib = pathlib.Path(sys.prefix) / "include", pathlib.Path(sys.prefix) / "lib"
    return ["g++", "-O2", "-std=c++17", "-shared", "-fPIC", "-fopenmp", "-w", str(SOURCE),
            f"-I{jax.ffi.include_dir()}", f"-I{include}", f"-L{lib}", "-ldnnl",
            f"-Wl,-rpath,{lib}", "-o", str(output)]


def library_path() -> pathlib.Path:
    """The compiled library, built now if this source, compile command (headers, flags) and
    jaxlib have none yet."""
    import jaxlib

    command = " ".join(_compile_command(pathlib.Path("library.so")))
    digest = hashlib.sha256(SOURCE.read_bytes() + command.encode()
                            + jaxlib.__version__.encode()).hexdigest()[:16]
    path = cache.default_dir() / "build" / f"onednn_conv-{digest}.so"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:  # atomic: racing builds agree
        partial = pathlib.Path(tmp) / path.name
        try:
            subprocess.run(_compile_command(partial), check=True, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError) as error:
            detail = getattr(error, "stderr", "") or str(error)
            raise FerError(f"building {SOURCE.name} failed (set layer_impl='fast' to use "
                           f"XLA's convolutions): {detail.strip()[-2000:]}") from None
        os.replace(partial, path)
    return path


@functools.cache
def register() -> None:
    """Loads the library and registers its custom calls with XLA (once per process)."""
    library = ctypes.cdll.LoadLibrary(str(library_path()))
    for symbol in TARGETS.values():
        jax.ffi.register_ffi_target(symbol, jax.ffi.pycapsule(getattr(library, symbol)),
                                    platform="cpu")


def _call(target: str, shape, a, b, strides, pads):
    (top, bottom), (left, right) = pads
    attributes = {"stride_h": strides[0], "stride_w": strides[1], "pad_top": top,
                  "pad_left": left, "pad_bottom": bottom, "pad_right": right,
                  "threads": threads_per_device()}
    call = jax.ffi.ffi_call(TARGETS[target], jax.ShapeDtypeStruct(shape, a.dtype),
                            vmap_method="sequential")
    return call(a, b, **{name: np.int64(value) for name, value in attributes.items()})


def threads_per_device() -> int:
    """oneDNN's threads per call: ``$OMP_NUM_THREADS`` (default: the cores) split among the
    local CPU devices, which may run their convolutions at once (forced host devices)."""
    total = int((os.environ.get("OMP_NUM_THREADS") or "").split(",")[0] or os.cpu_count() or 1)
    return max(1, total // jax.local_device_count())


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(x, kernel, strides, pads):
    n, h, w, _ = x.shape
    kh, kw, _, features = kernel.shape
    out = ((h + sum(pads[0]) - kh) // strides[0] + 1, (w + sum(pads[1]) - kw) // strides[1] + 1)
    return _call("forward", (n, *out, features), x, kernel, strides, pads)


def _conv_fwd(x, kernel, strides, pads):
    return _conv(x, kernel, strides, pads), (x, kernel)


def _conv_bwd(strides, pads, residuals, dy):
    x, kernel = residuals
    return (_call("input_gradient", x.shape, dy, kernel, strides, pads),
            _call("kernel_gradient", kernel.shape, x, dy, strides, pads))


_conv.defvjp(_conv_fwd, _conv_bwd)


def _onednn_pads(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                 dimension_numbers, feature_group_count, batch_group_count,
                 preferred_element_type):
    """The ``((top, bottom), (left, right))`` padding of a convolution that takes the oneDNN
    path (see the module docstring), or None for one that does not."""
    if not (jax.default_backend() == "cpu" and lhs.ndim == 4
            and lhs.dtype == rhs.dtype and lhs.dtype in (jnp.float32, jnp.bfloat16)
            and preferred_element_type in (None, lhs.dtype)
            and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
            == lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
            and all(d == 1 for d in tuple(lhs_dilation or ()) + tuple(rhs_dilation or ()))
            and feature_group_count == 1 and batch_group_count == 1 and available()):
        return None
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
    pads = tuple((int(low), int(high)) for low, high in padding)
    return pads if min(min(pair) for pair in pads) >= 0 else None


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None, preferred_element_type=None):
    """``lax.conv_general_dilated`` on oneDNN's kernels where the module docstring says so,
    else XLA's (the same call)."""
    pads = _onednn_pads(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                        dimension_numbers, feature_group_count, batch_group_count,
                        preferred_element_type)
    if pads is None:
        return lax.conv_general_dilated(
            lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
            feature_group_count, batch_group_count, precision, preferred_element_type)
    register()
    return _conv(lhs, rhs, tuple(int(s) for s in window_strides), pads)


def conv_layer(impl: str, *args, **kwargs) -> nn.Conv:
    """``nn.Conv(*args, **kwargs)`` on oneDNN's convolutions (:func:`conv_general_dilated`)
    for ``impl == "onednn"``, on XLA's for any other ``impl``."""
    if impl == "onednn":
        kwargs["conv_general_dilated"] = conv_general_dilated
    return nn.Conv(*args, **kwargs)
