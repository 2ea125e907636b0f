"""Training and inference throughput of the classifiers on this machine.

For every (model, parallel mode, device count) a fresh subprocess (XLA_FLAGS forcing that many
host devices is set before JAX starts) measures, per batch size: compile time, training and
inference images/s, FLOPs per image (XLA cost analysis of the compiled programs) and peak
memory (max RSS; device memory_stats where the backend has them). The parent also measures
float32 GEMM GFLOP/s, so each throughput is also given as a fraction of that practical peak.
Writes JSON and a markdown table.

    python -m experiments.benchmark [--models seed_cnn vgg13 compact] [--batches 64 256]
        [--modes jit pmap] [--devices 1 2] [--steps 5] [--out checkpoints/benchmark]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import time

from experiments.cli import run_main

# Model widths as trained (configs); the benchmark measures the real thing.
MODEL_KWARGS = {"compact": {"width": 16, "multipliers": (2, 6, 16), "dense": 256}}


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


def _flops(compiled) -> float | None:
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else None
    return float(analysis["flops"]) if analysis and "flops" in analysis else None


def _timed(fn, steps: int) -> float:
    """Seconds per call of ``fn`` (which blocks on its result), after one warm-up call."""
    fn()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def measure(model_name: str, mode: str, batch: int, steps: int) -> dict:
    """One worker measurement (runs inside the subprocess)."""
    import jax
    import ml_collections
    import numpy as np

    from experiments.configs import smoke
    from fer_jax import parallel, train
    from fer_jax import state as state_lib
    from fer_jax.data import augment

    config = smoke.get_config()
    config.model = model_name
    config.model_kwargs = MODEL_KWARGS.get(model_name, {})
    config.optimizer, config.schedule = "sgd", "constant"
    placement = parallel.make_placement(mode)
    bn_axis = parallel.AXIS if mode == "pmap" else None
    state = state_lib.create_train_state(config, 0, 100, bn_axis_name=bn_axis)
    rng = np.random.default_rng(0)
    pool = rng.integers(0, 256, (max(1024, batch), 48, 48), dtype=np.uint8)
    labels = rng.integers(0, 7, len(pool)).astype(np.int32)
    step_fn = parallel.compile_step(
        train.make_train_step(num_classes=7, augment_config=augment.AugmentConfig()),
        placement, num_consts=2, donate_state=False)
    state = placement.replicate(state)
    consts = placement.replicate(pool), placement.replicate(labels)
    batch_arrays = placement.shard_batch({"indices": np.arange(batch, dtype=np.int32)})
    key = jax.random.PRNGKey(1)

    start = time.perf_counter()
    jax.block_until_ready(step_fn(state, batch_arrays, key, *consts))
    compile_train = time.perf_counter() - start
    train_s = _timed(lambda: jax.block_until_ready(step_fn(state, batch_arrays, key, *consts)),
                     steps)

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
        lowered = jax.jit(train.make_train_step(
            num_classes=7, augment_config=augment.AugmentConfig())).lower(
                host, {"indices": np.arange(batch, dtype=np.int32)}, key, pool, labels)
        train_flops = _flops(lowered.compile())
    infer_flops = _flops(compiled_forward)
    memory = jax.devices()[0].memory_stats() or {}
    return {
        "model": model_name, "mode": mode, "devices": placement.num_devices, "batch": batch,
        "params": int(sum(x.size for x in jax.tree_util.tree_leaves(host.params))),
        "compile_train_s": compile_train, "compile_infer_s": compile_infer,
        "train_images_per_s": batch / train_s, "infer_images_per_s": batch / infer_s,
        "train_mflop_per_image": train_flops / batch / 1e6 if train_flops else None,
        "infer_mflop_per_image": infer_flops / batch / 1e6 if infer_flops else None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "device_peak_mb": memory.get("peak_bytes_in_use", 0) / 2 ** 20 or None,
    }


def worker(args) -> int:
    for batch in args.batches:
        print("RESULT " + json.dumps(measure(args.models[0], args.modes[0], batch, args.steps)),
              flush=True)
    return 0


def run_worker(model: str, mode: str, devices: int, args) -> list[dict]:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    command = [sys.executable, "-m", "experiments.benchmark", "--worker", "--models", model,
               "--modes", mode, "--steps", str(args.steps), "--batches",
               *map(str, args.batches)]
    done = subprocess.run(command, check=False, env=env, capture_output=True, text=True)
    results = [json.loads(line[len("RESULT "):]) for line in done.stdout.splitlines()
               if line.startswith("RESULT ")]
    if done.returncode or not results:
        print(f"  {model} {mode} x{devices} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
    return results


def markdown_table(results: list[dict], gemm: float) -> str:
    # Train FLOPs/image come from the 1-device jit program of the same model and batch.
    flops = {(r["model"], r["batch"]): r["train_mflop_per_image"] for r in results
             if r["train_mflop_per_image"]}
    lines = [f"float32 GEMM (1024^3, jit): {gemm:.1f} GFLOP/s\n",
             ("| model | params | mode | devices | batch | train img/s | infer img/s | "
              "train MFLOP/img | infer MFLOP/img | train GFLOP/s | % of GEMM | "
              "compile train/infer s | peak RSS MB |"),
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        mflop = flops.get((r["model"], r["batch"]))
        achieved = r["train_images_per_s"] * mflop / 1e3 if mflop else None
        infer = f"{r['infer_mflop_per_image']:.0f}" if r["infer_mflop_per_image"] else "-"
        lines.append(
            f"| {r['model']} | {r['params'] / 1e6:.2f}M | {r['mode']} | {r['devices']} | "
            f"{r['batch']} | {r['train_images_per_s']:.0f} | {r['infer_images_per_s']:.0f} | "
            f"{f'{mflop:.0f}' if mflop else '-'} | {infer} | "
            f"{f'{achieved:.1f}' if achieved else '-'} | "
            f"{f'{100 * achieved / gemm:.0f}%' if achieved else '-'} | "
            f"{r['compile_train_s']:.1f} / {r['compile_infer_s']:.1f} | {r['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


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
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)

    gemm = gemm_gflops()
    print(f"float32 GEMM: {gemm:.1f} GFLOP/s", flush=True)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results = []
    for model in args.models:
        for mode in args.modes:
            for devices in args.devices:
                print(f"measuring {model} {mode} on {devices} device(s) ...", flush=True)
                results.extend(run_worker(model, mode, devices, args))
                # Written after every worker, so an interrupted run keeps what it measured.
                out.with_suffix(".json").write_text(json.dumps(
                    {"gemm_gflops": gemm, "cpu_count": os.cpu_count(), "results": results},
                    indent=1))
                out.with_suffix(".md").write_text(markdown_table(results, gemm) + "\n")
    print(markdown_table(results, gemm))
    return 0 if results else 1


if __name__ == "__main__":
    run_main(main)
