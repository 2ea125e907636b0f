"""Training and inference throughput of the classifiers on this machine.

For every (model, parallel mode, device count) a fresh subprocess (XLA_FLAGS forcing that many
host devices is set before JAX starts) measures, per batch size: compile time, training and
inference images/s, FLOPs per image (XLA cost analysis of the compiled programs) and peak
memory (max RSS; device memory_stats where the backend has them). The parent also measures
float32 GEMM GFLOP/s, so each throughput is also given as a fraction of that practical peak.
Training is a full Adam step (cross-entropy, on-device augmentation) on random data. Writes
JSON and a markdown table.

``--against torch`` also trains the same networks (same layers and parameter count, batch,
Adam and cross-entropy; no augmentation) in PyTorch, eager and ``torch.compile`` (the model;
the optimizer step stays eager), each in its own subprocess, and prints fer-jax / torch.compile
ratios (``pip install -e '.[bench]'``; skipped with a note when torch is missing).
``--xla-conv`` also measures fer-jax with XLA's own convolutions (``layer_impl="fast"``: as
before :mod:`fer_jax.onednn_conv`), ``--before`` as it was before issue #14
(``layer_impl="flax"``, no :func:`fer_jax.runtime.configure` flags). ``--json OUT`` writes one row per (model, batch,
framework): ``{"model", "batch", "framework", "train_images_per_sec", "infer_images_per_sec"}``
(fer-jax rows also give ``mode``, ``devices`` and the XLA flags ``configure()`` set; every
row also gives images per second of the process's CPU time, ``*_images_per_cpu_sec``, which
other load on a shared machine disturbs less: compare those with one thread per framework).

``--profile`` also traces each fer-jax training step (jax.profiler) and splits its time by
XLA operation kind: convolutions (oneDNN's custom calls, or XLA's) against the rest, and the
ceiling that the convolution time alone sets on the ratio to torch.compile (its step time over
fer-jax's convolution time: the ratio if everything else took no time).

``--layers`` instead times every convolution of each model on its own (this process, one
batch size at a time): forward, input gradient and weight gradient in milliseconds, in fer-jax
(oneDNN's kernels, :mod:`fer_jax.onednn_conv`; ``fer-jax-xla-conv``: XLA's) and, with ``--against torch``, in PyTorch (``conv2d``, ``grad.conv2d_input``,
``grad.conv2d_weight``): where a training step's convolution time goes.

    python -m experiments.benchmark [--models seed_cnn vgg13 compact] [--batches 64 256]
        [--modes jit pmap] [--devices 1 2] [--steps 5] [--out checkpoints/benchmark]
        [--against torch] [--xla-conv] [--before] [--dtype bfloat16] [--json OUT] [--layers]
        [--profile]
"""

from __future__ import annotations

import argparse
import collections
import functools
import gzip
import importlib.util
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

from experiments.cli import run_main

# Model widths as trained (configs); the benchmark measures the real thing.
MODEL_KWARGS = {"compact": {"width": 16, "multipliers": (2, 6, 16), "dense": 256}}
FRAMEWORKS = ("fer-jax", "fer-jax-xla-conv", "fer-jax-before", "torch-eager", "torch-compile")
# fer-jax's variants: its default layers, those before oneDNN convolutions (XLA's own, the
# fast BatchNorm and max-pool), and those before issue #14 (flax's layers, XLA's flags).
LAYER_IMPLS = {"fer-jax-xla-conv": "fast", "fer-jax-before": "flax"}
NUM_CLASSES = 7


def gemm_gflops(size: int = 1024, repeats: int = 10) -> float:
    """float32 matrix-multiply GFLOP/s of the default JAX device (best of ``repeats``)."""
    import jax
    import jax.numpy as jnp

    a = jnp.ones((size, size), jnp.float32)
    matmul = jax.jit(lambda x, y: x @ y)
    matmul(a, a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


def _flops(compiled, model_name: str, batch: int, training: bool) -> float | None:
    """XLA's cost analysis of ``compiled``, plus :func:`conv_flops` where the program calls
    oneDNN's convolutions (custom calls, which the analysis counts as 0)."""
    from fer_jax import onednn_conv

    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else None
    if not analysis or "flops" not in analysis:
        return None
    flops = float(analysis["flops"])
    if onednn_conv.TARGETS["forward"] in compiled.as_text():
        flops += conv_flops(model_name, batch)[training]
    return flops


def _timed(fn, steps: int) -> tuple[float, float]:
    """Seconds per call of ``fn`` (which blocks on its result), after one warm-up call: wall
    clock, and this process's CPU time (less sensitive to other load on a shared machine)."""
    fn()
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps, (time.process_time() - start_cpu) / steps


def op_breakdown(run, steps: int) -> dict[str, float]:
    """Milliseconds per call of ``run`` (which blocks on its result) spent in each kind of XLA
    operation, largest first: a jax.profiler trace of ``steps`` calls, kinds being HLO op names
    without their numbering (``ffi_call``: the oneDNN convolutions; ``dot``, ``*_fusion``)."""
    import jax

    with tempfile.TemporaryDirectory() as directory:
        jax.profiler.start_trace(directory)
        for _ in range(steps):
            run()
        jax.profiler.stop_trace()
        (path,) = pathlib.Path(directory).rglob("*.trace.json.gz")
        events = json.loads(gzip.decompress(path.read_bytes()))["traceEvents"]
    totals: collections.Counter = collections.Counter()
    for event in events:
        op = (event.get("args") or {}).get("hlo_op")
        if event.get("ph") == "X" and op:
            totals[op.rstrip("0123456789").rstrip(".")] += event["dur"] / 1e3 / steps
    return dict(totals.most_common())


def is_convolution(kind: str) -> bool:
    """Whether an :func:`op_breakdown` kind is a convolution (oneDNN's or XLA's)."""
    return kind == "ffi_call" or kind.startswith(("conv_general", "convolution"))


def _throughput(batch: int, train: tuple[float, float], infer: tuple[float, float]) -> dict:
    return {"train_images_per_s": batch / train[0], "infer_images_per_s": batch / infer[0],
            "train_images_per_cpu_s": batch / train[1],
            "infer_images_per_cpu_s": batch / infer[1]}


def measure(model_name: str, mode: str, batch: int, steps: int,
            framework: str = "fer-jax", dtype: str = "float32", profile: bool = False) -> dict:
    """One worker measurement of a fer-jax ``framework`` computing in ``dtype`` (parameters
    stay float32; runs inside the subprocess); with ``profile`` also the training step's
    :func:`op_breakdown` (``step_ms_by_op``)."""
    import jax
    import ml_collections
    import numpy as np

    from experiments.configs import classifier_base, smoke
    from fer_jax import parallel, runtime, train
    from fer_jax import state as state_lib
    from fer_jax.data import augment

    config = smoke.get_config()
    config.model = model_name
    config.model_kwargs = MODEL_KWARGS.get(model_name, {})
    config.optimizer, config.schedule, config.weight_decay = "adam", "constant", 0.0
    config.learning_rate = 1e-3
    config.dtype = dtype
    config.layer_impl = LAYER_IMPLS.get(framework, classifier_base.get_config().layer_impl)
    placement = parallel.make_placement(mode)
    bn_axis = parallel.AXIS if mode == "pmap" else None
    state = state_lib.create_train_state(config, 0, 100, bn_axis_name=bn_axis)
    rng = np.random.default_rng(0)
    pool = rng.integers(0, 256, (max(1024, batch), 48, 48), dtype=np.uint8)
    labels = rng.integers(0, 7, len(pool)).astype(np.int32)
    make_step = functools.partial(train.make_train_step, num_classes=NUM_CLASSES,
                                  augment_config=augment.AugmentConfig(), label_smoothing=0.0)
    step_fn = parallel.compile_step(make_step(axis_name=placement.step_axis), placement,
                                    num_consts=2, donate_state=False)
    state = placement.replicate(state)
    consts = placement.replicate(pool), placement.replicate(labels)
    batch_arrays = placement.shard_batch({"indices": np.arange(batch, dtype=np.int32)})
    key = jax.random.PRNGKey(1)

    start = time.perf_counter()
    jax.block_until_ready(step_fn(state, batch_arrays, key, *consts))
    compile_train = time.perf_counter() - start
    def train_step():
        jax.block_until_ready(step_fn(state, batch_arrays, key, *consts))

    train_s = _timed(train_step, steps)
    by_op = {"step_ms_by_op": op_breakdown(train_step, steps)} if profile else {}

    model = state_lib.build_model(ml_collections.ConfigDict(config))
    host = placement.unreplicate(state)
    variables = {"params": host.params, "batch_stats": host.batch_stats}
    images = augment.to_float(pool[:batch])
    forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
    start = time.perf_counter()
    compiled_forward = forward.lower(variables, images).compile()
    compile_infer = time.perf_counter() - start
    infer_s = _timed(lambda: compiled_forward(variables, images).block_until_ready(), steps)

    train_flops = None
    if mode == "jit" and placement.num_devices == 1:
        lowered = jax.jit(make_step(axis_name=None)).lower(
            host, {"indices": np.arange(batch, dtype=np.int32)}, key, pool, labels)
        train_flops = _flops(lowered.compile(), model_name, batch, training=True)
    infer_flops = _flops(compiled_forward, model_name, batch, training=False)
    memory = jax.devices()[0].memory_stats() or {}
    return {
        "model": model_name, "framework": framework, "layer_impl": config.layer_impl,
        "xla_flags": runtime.configure()["XLA_FLAGS"],
        "mode": mode, "devices": placement.num_devices, "batch": batch, "dtype": dtype,
        "params": int(sum(x.size for x in jax.tree_util.tree_leaves(host.params))),
        "compile_train_s": compile_train, "compile_infer_s": compile_infer,
        **_throughput(batch, train_s, infer_s),
        "train_mflop_per_image": train_flops / batch / 1e6 if train_flops else None,
        "infer_mflop_per_image": infer_flops / batch / 1e6 if infer_flops else None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "device_peak_mb": memory.get("peak_bytes_in_use", 0) / 2 ** 20 or None,
        **by_op,
    }


def torch_model(name: str):
    """fer_jax.models' ``name`` (at :data:`MODEL_KWARGS` widths) as a PyTorch ``Sequential``:
    the same layers and parameter count (flattening order differs: NCHW)."""
    from torch import nn

    def conv_bn(cin, cout, padding):
        return [nn.Conv2d(cin, cout, 3, padding=padding, bias=False), nn.BatchNorm2d(cout),
                nn.ReLU()]

    def dense_bn(fin, fout, dropout):
        return [nn.Linear(fin, fout, bias=False), nn.BatchNorm1d(fout), nn.ReLU(),
                nn.Dropout(dropout)]

    layers, channels = [], 1
    if name == "seed_cnn":
        w = 32
        for stage in ((w, 2 * w), (4 * w, 4 * w), (8 * w, 8 * w)):
            for features in stage:
                layers += conv_bn(channels, features, 0)
                channels = features
            layers += [nn.MaxPool2d(2), nn.Dropout(0.25)]
        layers += [nn.Flatten(), *dense_bn(2 * 2 * 8 * w, 8 * w, 0.5), nn.Linear(8 * w, NUM_CLASSES)]
    elif name == "compact":
        kwargs = MODEL_KWARGS["compact"]
        w = kwargs["width"]
        layers += [*conv_bn(1, w, 1), nn.MaxPool2d(2)]
        channels = w
        for multiplier in kwargs["multipliers"]:
            layers += [*conv_bn(channels, w * multiplier, 1),
                       *conv_bn(w * multiplier, w * multiplier, 1), nn.MaxPool2d(2)]
            channels = w * multiplier
        layers += [nn.Flatten(), *dense_bn(3 * 3 * channels, kwargs["dense"], 0.3),
                   nn.Linear(kwargs["dense"], NUM_CLASSES)]
    elif name == "vgg13":
        for multiplier in (1, 2, 4, 8, 8):
            for _ in range(2):
                layers += conv_bn(channels, 64 * multiplier, 1)
                channels = 64 * multiplier
            layers.append(nn.MaxPool2d(2))
        layers += [nn.Flatten(), nn.Linear(512, 512), nn.ReLU(), nn.Dropout(0.5),
                   nn.Linear(512, NUM_CLASSES)]
    else:
        raise ValueError(f"no PyTorch version of {name!r}")
    return nn.Sequential(*layers)
def measure_torch(model_name: str, batch: int, steps: int, compiled: bool) -> dict:
    """PyTorch training (Adam, cross-entropy) and inference images/s (runs in a subprocess)."""
    import torch

    torch.manual_seed(0)
    model = torch_model(model_name)
    run = torch.compile(model) if compiled else model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images, labels = torch.rand(batch, 1, 48, 48), torch.randint(0, NUM_CLASSES, (batch,))

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(run(images), labels).backward()
        optimizer.step()

    def infer():
        with torch.no_grad():
            run(images)

    model.train()
    train_step()  # compiles; _timed warms up once more
    train_s = _timed(train_step, steps)
    model.eval()
    infer()
    infer_s = _timed(infer, steps)
    return {"model": model_name, "framework": "torch-compile" if compiled else "torch-eager",
            "batch": batch, "params": sum(p.numel() for p in model.parameters()),
            "torch_threads": torch.get_num_threads(),
            **_throughput(batch, train_s, infer_s)}


def conv_layers(model_name: str, batch: int) -> list[dict]:
    """The convolutions of ``model_name`` (at :data:`MODEL_KWARGS` widths) applied to a
    ``batch`` of images, in order: ``{"input": [B,H,W,C], "kernel": [kh,kw,C,F], "padding":
    [(lo, hi), (lo, hi)]}``, read from the model's jaxpr (stride 1, NHWC / HWIO)."""
    import jax
    import numpy as np
    from jax.extend import core as jax_core

    from fer_jax import models

    model = models.create_model(model_name, NUM_CLASSES, layer_impl="fast",  # XLA's convs
                                **MODEL_KWARGS.get(model_name, {}))
    images = np.zeros((batch, 48, 48, 1), np.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), images)
    jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, images)

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "conv_general_dilated":
                lhs, rhs = (v.aval.shape for v in eqn.invars)
                if tuple(eqn.params["window_strides"]) != (1, 1):
                    raise ValueError(f"{model_name}: --layers times stride-1 convolutions; "
                                     f"one on {list(lhs)} has strides "
                                     f"{eqn.params['window_strides']}")
                yield {"input": list(lhs), "kernel": list(rhs),
                       "padding": [list(p) for p in eqn.params["padding"]]}
            for sub in jax_core.jaxprs_in_params(eqn.params):
                yield from walk(sub)

    return list(walk(jaxpr.jaxpr))


def layer_flops(layer: dict) -> int:
    """Forward FLOPs of one :func:`conv_layers` convolution, counted as XLA's cost analysis
    does: 2 per multiply-add of a kernel tap inside the image (taps on padding excluded)."""

    def taps(size: int, kernel: int, low: int, high: int) -> int:
        """Kernel taps inside the input, summed over the output positions of one axis."""
        return sum(min(kernel, size + low - out) - max(0, low - out)
                   for out in range(size + low + high - kernel + 1))

    (n, h, w, _), (kh, kw, cin, cout) = layer["input"], layer["kernel"]
    (top, bottom), (left, right) = layer["padding"]
    return 2 * n * taps(h, kh, top, bottom) * taps(w, kw, left, right) * cin * cout


@functools.lru_cache
def conv_flops(model_name: str, batch: int) -> tuple[int, int]:
    """FLOPs of ``model_name``'s convolutions on a ``batch`` (:func:`layer_flops`): forward,
    and a training step's (forward, weight gradient, and input gradient except the first
    layer's)."""
    forward = [layer_flops(layer) for layer in conv_layers(model_name, batch)]
    return sum(forward), 3 * sum(forward) - forward[0]


def _layer_name(layer: dict) -> str:
    _, h, w, c = layer["input"]
    return f"{h}x{w}x{c}->{layer['kernel'][-1]}"


def measure_layers(model_name: str, batch: int, steps: int, against_torch: bool) -> list[dict]:
    """Milliseconds per call of each convolution of ``model_name``: forward, input gradient
    (None for the image layer, which a training step does not differentiate) and weight
    gradient; fer-jax rows, then PyTorch's (one per layer) when ``against_torch``."""
    import jax
    import numpy as np
    from jax import lax

    from fer_jax import onednn_conv

    implementations = {"fer-jax": onednn_conv.conv_general_dilated,
                       "fer-jax-xla-conv": lax.conv_general_dilated}
    rows = []
    layers = conv_layers(model_name, batch)
    rng = np.random.default_rng(0)
    for index, layer in enumerate(layers):
        x = rng.standard_normal(layer["input"], np.float32)
        kernel = rng.standard_normal(layer["kernel"], np.float32)
        g = None
        for framework, conv_general_dilated in implementations.items():
            def conv(x, kernel, padding=layer["padding"], fn=conv_general_dilated):
                return fn(x, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))

            if g is None:
                g = rng.standard_normal(jax.eval_shape(conv, x, kernel).shape, np.float32)
            # The gradients take both operands (XLA drops the one a gradient does not read).
            input_grad = jax.jit(lambda g, x, k, conv=conv: jax.vjp(
                lambda x: conv(x, k), x)[1](g)[0])
            weight_grad = jax.jit(lambda g, x, k, conv=conv: jax.vjp(
                lambda k: conv(x, k), k)[1](g)[0])
            timings = {"forward": (jax.jit(conv), x, kernel),
                       "weight_grad": (weight_grad, g, x, kernel)}
            if index:
                timings["input_grad"] = (input_grad, g, x, kernel)
            rows.append({"model": model_name, "batch": batch, "layer": _layer_name(layer),
                         "framework": framework, "input_grad_ms": None,
                         **{f"{name}_ms": 1e3 * _timed(lambda f=f, a=a: jax.block_until_ready(
                             f(*a)), steps)[0] for name, (f, *a) in timings.items()}})
        if against_torch:
            rows.append(_torch_layer_row(rows[-1], layer, x, kernel, g, steps, index > 0))
    return rows


def _torch_layer_row(jax_row: dict, layer: dict, x, kernel, g, steps: int,
                     with_input_grad: bool) -> dict:
    import torch

    x, g = (torch.from_numpy(a).permute(0, 3, 1, 2).contiguous() for a in (x, g))
    kernel = torch.from_numpy(kernel).permute(3, 2, 0, 1).contiguous()
    (top, bottom), (left, right) = layer["padding"]
    if top != bottom or left != right:
        raise ValueError(f"PyTorch conv2d pads symmetrically; {_layer_name(layer)} is padded "
                         f"{layer['padding']}")
    padding = (top, left)
    calls = {"forward": lambda: torch.nn.functional.conv2d(x, kernel, padding=padding),
             "weight_grad": lambda: torch.nn.grad.conv2d_weight(x, kernel.shape, g,
                                                                padding=padding)}
    if with_input_grad:
        calls["input_grad"] = lambda: torch.nn.grad.conv2d_input(x.shape, kernel, g,
                                                                 padding=padding)
    with torch.no_grad():
        times = {f"{name}_ms": 1e3 * _timed(call, steps)[0] for name, call in calls.items()}
    return {**jax_row, "framework": f"torch-eager ({torch.get_num_threads()} threads)",
            "input_grad_ms": None, **times}


def layers_table(rows: list[dict]) -> str:
    """``--layers`` rows as markdown, with per-model totals per framework."""
    lines = ["| model | batch | layer | framework | forward ms | input grad ms | weight grad ms |",
             "|---|---:|---|---|---:|---:|---:|"]
    totals: dict[tuple, list[float]] = {}
    for r in rows:
        values = [r["forward_ms"], r["input_grad_ms"], r["weight_grad_ms"]]
        key = (r["model"], r["batch"], r["framework"])
        totals[key] = [t + (v or 0) for t, v in zip(totals.get(key, [0, 0, 0]), values)]
        cells = " | ".join("-" if v is None else f"{v:.1f}" for v in values)
        lines.append(f"| {r['model']} | {r['batch']} | {r['layer']} | {r['framework']} | "
                     f"{cells} |")
    for (model, batch, framework), values in totals.items():
        cells = " | ".join(f"**{v:.1f}**" for v in values)
        lines.append(f"| {model} | {batch} | all | {framework} | {cells} |")
    return "\n".join(lines)


def worker(args) -> int:
    for batch in args.batches:
        if args.framework.startswith("torch"):
            result = measure_torch(args.models[0], batch, args.steps,
                                   args.framework == "torch-compile")
        else:
            result = measure(args.models[0], args.modes[0], batch, args.steps, args.framework,
                             args.dtype, args.profile)
        print("RESULT " + json.dumps(result), flush=True)
    return 0


def run_worker(model: str, framework: str, args, mode: str = "jit",
               devices: int = 1) -> list[dict]:
    """Measures in a fresh process, with the user's XLA flags plus one forcing ``devices`` host
    devices (the worker's :func:`fer_jax.runtime.configure` adds its own, except for
    ``fer-jax-before``)."""
    from fer_jax import runtime

    user_flags = runtime.configure()["user_XLA_FLAGS"]
    flags = f"{user_flags} --xla_force_host_platform_device_count={devices}"
    env = dict(os.environ, XLA_FLAGS=flags.strip())
    if framework == "fer-jax-before":
        env[runtime.CPU_DEFAULTS_ENV] = "0"
    command = [sys.executable, "-m", "experiments.benchmark", "--worker", "--models", model,
               "--framework", framework, "--modes", mode, "--steps", str(args.steps),
               "--dtype", args.dtype, *["--profile"] * args.profile,
               "--batches", *map(str, args.batches)]
    done = subprocess.run(command, check=False, env=env, capture_output=True, text=True)
    results = [json.loads(line[len("RESULT "):]) for line in done.stdout.splitlines()
               if line.startswith("RESULT ")]
    if done.returncode or not results:
        print(f"  {model} {framework} {mode} x{devices} failed:\n{done.stderr[-2000:]}",
              file=sys.stderr)
    return results


def markdown_table(results: list[dict], gemm: float) -> str:
    # Train FLOPs/image come from the 1-device jit program of the same model and batch.
    flops = {(r["model"], r["batch"]): r["train_mflop_per_image"] for r in results
             if r.get("train_mflop_per_image")}
    lines = [f"float32 GEMM (1024^3, jit): {gemm:.1f} GFLOP/s\n",
             ("| model | framework | params | mode | devices | batch | train img/s | "
              "infer img/s | train MFLOP/img | infer MFLOP/img | train GFLOP/s | % of GEMM | "
              "compile train/infer s | peak RSS MB |"),
             "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        if not r["framework"].startswith("fer-jax"):
            continue
        mflop = flops.get((r["model"], r["batch"]))
        achieved = r["train_images_per_s"] * mflop / 1e3 if mflop else None
        infer = f"{r['infer_mflop_per_image']:.0f}" if r["infer_mflop_per_image"] else "-"
        lines.append(
            f"| {r['model']} | {r['framework']} | {r['params'] / 1e6:.2f}M | {r['mode']} | "
            f"{r['devices']} | {r['batch']} | {r['train_images_per_s']:.0f} | {r['infer_images_per_s']:.0f} | "
            f"{f'{mflop:.0f}' if mflop else '-'} | {infer} | "
            f"{f'{achieved:.1f}' if achieved else '-'} | "
            f"{f'{100 * achieved / gemm:.0f}%' if achieved else '-'} | "
            f"{r['compile_train_s']:.1f} / {r['compile_infer_s']:.1f} | {r['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def _torch_compile_rows(results: list[dict]) -> dict[tuple[str, int], dict]:
    """The torch.compile row of each (model, batch): what the ratios divide by."""
    return {(r["model"], r["batch"]): r for r in results if r["framework"] == "torch-compile"}


def comparison_table(results: list[dict]) -> str:
    """Every row's images/s and its ratio to torch.compile's for the same model and batch."""
    compiled = _torch_compile_rows(results)
    lines = [("| model | batch | framework | mode x devices | params | train img/s | "
              "infer img/s | train / torch.compile | infer / torch.compile | "
              "train img/CPU-s | train / torch.compile (CPU time) |"),
             "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(results, key=lambda r: (r["model"], r["batch"])):
        ref = compiled.get((r["model"], r["batch"]))
        ratios = [f"{r[k] / ref[k]:.2f}x" if ref else "-"
                  for k in ("train_images_per_s", "infer_images_per_s", "train_images_per_cpu_s")]
        placement = f"{r['mode']} x{r['devices']}" if "mode" in r else "-"
        lines.append(f"| {r['model']} | {r['batch']} | {r['framework']} | {placement} | "
                     f"{r['params']:,} | {r['train_images_per_s']:.0f} | "
                     f"{r['infer_images_per_s']:.0f} | {ratios[0]} | {ratios[1]} | "
                     f"{r['train_images_per_cpu_s']:.0f} | {ratios[2]} |")
    return "\n".join(lines)


def profile_table(results: list[dict]) -> str:
    """``--profile``: each traced fer-jax step split into convolutions and the rest, and the
    ceiling its convolution time sets on the ratio to torch.compile's step time."""
    compiled = _torch_compile_rows(results)
    lines = [("| model | batch | framework | traced step ms | convolutions ms | other ms | "
              "convolution share | ceiling vs torch.compile | largest other kinds (ms) |"),
             "|---|---:|---|---:|---:|---:|---:|---:|---|"]
    for r in results:
        if "step_ms_by_op" not in r:
            continue
        by_op = r["step_ms_by_op"]
        conv = sum(ms for kind, ms in by_op.items() if is_convolution(kind))
        total = sum(by_op.values())
        others = [(kind, ms) for kind, ms in by_op.items() if not is_convolution(kind)][:3]
        ref = compiled.get((r["model"], r["batch"]))
        ceiling = (f"{1e3 * ref['batch'] / ref['train_images_per_s'] / conv:.2f}x"
                   if ref and conv else "-")
        lines.append(f"| {r['model']} | {r['batch']} | {r['framework']} | {total:.1f} | "
                     f"{conv:.1f} | {total - conv:.1f} | {conv / total:.0%} | {ceiling} | "
                     + ", ".join(f"{kind} {ms:.1f}" for kind, ms in others) + " |")
    return "\n".join(lines)


def json_rows(results: list[dict]) -> list[dict]:
    """The ``--json`` rows (see the module docstring)."""
    keep = ("model", "batch", "framework", "mode", "devices", "dtype", "layer_impl", "xla_flags",
            "step_ms_by_op")
    return [{**{k: r[k] for k in keep if k in r},
             "train_images_per_sec": r["train_images_per_s"],
             "infer_images_per_sec": r["infer_images_per_s"],
             "train_images_per_cpu_sec": r["train_images_per_cpu_s"],
             "infer_images_per_cpu_sec": r["infer_images_per_cpu_s"]} for r in results]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.benchmark",
                                     description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["seed_cnn", "vgg13", "compact"],
                        help="model names to measure (fer_jax.models)")
    parser.add_argument("--batches", nargs="+", type=int, default=[64, 256],
                        help="global batch sizes to measure")
    parser.add_argument("--modes", nargs="+", choices=("jit", "pmap"), default=["jit", "pmap"],
                        help="how a step is spread over the devices")
    parser.add_argument("--devices", nargs="+", type=int, default=[1, 2],
                        help="device counts to measure (host CPU devices are forced)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    parser.add_argument("--out", default="checkpoints/benchmark",
                        help="writes OUT.json and OUT.md")
    parser.add_argument("--against", choices=("torch",),
                        help="also train the same networks in PyTorch (eager, torch.compile)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="fer-jax's compute dtype (config.dtype; PyTorch stays float32)")
    parser.add_argument("--xla-conv", action="store_true",
                        help="also measure fer-jax with XLA's convolutions (layer_impl 'fast')")
    parser.add_argument("--before", action="store_true",
                        help="also measure fer-jax as before issue #14 (flax layers, no flags)")
    parser.add_argument("--json", help="writes the per-framework rows to this file")
    parser.add_argument("--layers", action="store_true",
                        help="time each convolution's forward, input and weight gradient "
                             "instead of training steps")
    parser.add_argument("--profile", action="store_true",
                        help="also split each fer-jax training step's time by XLA operation "
                             "kind (convolutions vs the rest; jax.profiler)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--framework", choices=FRAMEWORKS, default="fer-jax",
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)

    from fer_jax import runtime

    print(f"XLA flags set by fer_jax.runtime.configure(): {runtime.configure()}", flush=True)
    if args.layers:
        return run_layers(args)
    gemm = gemm_gflops()
    print(f"float32 GEMM: {gemm:.1f} GFLOP/s", flush=True)
    variants = ["fer-jax"] + ["fer-jax-xla-conv"] * args.xla_conv + ["fer-jax-before"] * args.before
    runs = [(f, mode, devices) for f in variants for mode in args.modes for devices in args.devices]
    if args.against == "torch":
        if importlib.util.find_spec("torch") is None:
            print("torch is not installed (pip install -e '.[bench]'): PyTorch skipped",
                  flush=True)
        else:
            runs += [("torch-eager", "jit", 1), ("torch-compile", "jit", 1)]
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results = []
    for model in args.models:
        for framework, mode, devices in runs:
            print(f"measuring {model} {framework} {mode} on {devices} device(s) ...", flush=True)
            results.extend(run_worker(model, framework, args, mode, devices))
            # Written after every worker, so an interrupted run keeps what it measured.
            out.with_suffix(".json").write_text(json.dumps(
                {"gemm_gflops": gemm, "cpu_count": os.cpu_count(), "results": results},
                indent=1))
            out.with_suffix(".md").write_text(summary(results, gemm, args.profile) + "\n")
            if args.json:
                pathlib.Path(args.json).write_text(json.dumps(json_rows(results), indent=1))
    print(summary(results, gemm, args.profile))
    return 0 if results else 1


def summary(results: list[dict], gemm: float, profile: bool) -> str:
    tables = [markdown_table(results, gemm), comparison_table(results)]
    return "\n\n".join(tables + [profile_table(results)] * profile)

def run_layers(args) -> int:
    """``--layers``: per-convolution timings of every model and batch, in this process."""
    against_torch = args.against == "torch"
    if against_torch and importlib.util.find_spec("torch") is None:
        print("torch is not installed (pip install -e '.[bench]'): PyTorch skipped", flush=True)
        against_torch = False
    rows = [row for model in args.models for batch in args.batches
            for row in measure_layers(model, batch, args.steps, against_torch)]
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"cpu_count": os.cpu_count(),
                                                    "layers": rows}, indent=1))
    out.with_suffix(".md").write_text(layers_table(rows) + "\n")
    print(layers_table(rows))
    return 0


if __name__ == "__main__":
    run_main(main)
