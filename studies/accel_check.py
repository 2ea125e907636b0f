"""The accelerator check: every accelerator path of the project in ONE prepared command.

An accelerator is lent now and then for a few minutes, so its check must not fail for a
packaging reason and must record whatever finished. :func:`prepare` (here) fills the git-ignored
carry folder with the FER-2013 zip and the wheels of the pure-Python packages the device lacks,
checks the size of what travels and gives the command. :func:`run_check` (there) runs the parts
of :data:`PARTS`, each in its own process with its own wall budget (:class:`Plan`): the
benchmark, the ``accel`` recipe to the end with TTA, an ensemble trained at once (the engine's
vmapped members), the two-tier model fine-tuned
from the flat one under ``jit`` and ``pmap``, a short GAN run. Training stops at a part's
deadline through the loop's SIGTERM checkpoint; the part then evaluates what it has, and a part
that overruns is terminated, then killed. ``$OUT`` receives ``results.json`` (rewritten after
every part), ``check.log`` and the figures. The :data:`DRY_RUN` plan runs the same path on the
synthetic faces with tiny models.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import pathlib
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence

import ml_collections
import numpy as np

from fer_jax import provenance
from fer_jax.errors import FerError

PARTS = ("benchmark", "accel", "ensemble", "two_tier", "gan")
RESULTS, LOG = "results.json", "check.log"
FIGURES = {"curves": "accel_curves.png", "confusion": "accel_confusion.png",
           "gan": "gan_samples.png"}
MAX_OUT_FILES = 8
TTA_MODES = (False, True, "tencrop")  # fer_jax.inference: none, the 6 shifted views, ten-crop
TERMINATE_GRACE_S = 20  # after a part's budget: SIGTERM, then SIGKILL this much later

# ----------------------------------------------------------------------------- the device
CARRY = ".carry"
DEVICE_TREE_LIMIT = 64 * 2**20    # bytes of working tree (tracked + untracked) and carry
COMMAND_LIMIT = 2000              # characters of one device command
DEVICE_TIMEOUT_S = 570            # the run's timeout_s: the plan's 8 minutes and a margin
SITE = "/tmp/site"                # where the wheels are installed there
# Pure-Python packages the device image lacks (its absl-py, PyYAML, numpy, packaging and
# protobuf cover their dependencies): ml_collections for the configs, tensorboardX for
# fer_jax.runtime.RunLog, which every training loop opens.
WHEELS = ("ml_collections==1.1.0", "tensorboardX==2.6.5")


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a check runs and how long each part may take.

    Attributes:
      name: "device" or "dry-run".
      budgets: wall seconds per part, its process's start included.
      reserves: seconds of a part's budget kept for evaluating after its training stops.
      bench_models, bench_batches, bench_steps: the benchmark's grid and timed steps.
      ensemble_size, ensemble_epochs: members and epochs of each.
      two_tier_epochs: epochs of each two-tier member fine-tuned from the flat model.
      gan_steps: the GAN's steps (on the device more than its budget allows: its deadline
        stops it; the dry run's few finish).
      classifier, gan: overrides (dotted keys) of every classifier config and the GAN config.
    """

    name: str
    budgets: Mapping[str, float]
    reserves: Mapping[str, float]
    bench_models: tuple[str, ...]
    bench_batches: tuple[int, ...]
    bench_steps: int
    ensemble_size: int
    ensemble_epochs: int
    two_tier_epochs: int
    gan_steps: int
    classifier: Mapping = dataclasses.field(default_factory=dict)
    gan: Mapping = dataclasses.field(default_factory=dict)

    @property
    def total_s(self) -> float:
        return float(sum(self.budgets.values()))


DEVICE = Plan(
    "device",
    budgets={"benchmark": 70, "accel": 150, "ensemble": 110, "two_tier": 90, "gan": 60},
    reserves={"accel": 30, "ensemble": 30, "two_tier": 20, "gan": 20},
    bench_models=("vgg_fer", "compact", "seed_cnn", "vgg13"), bench_batches=(256, 1024),
    bench_steps=20, ensemble_size=4, ensemble_epochs=12, two_tier_epochs=2, gan_steps=100_000,
    gan={"log_every": 50, "checkpoint_every": 0, "sample_every": 100_000})
DRY_RUN = Plan(
    "dry-run",
    # tiny runs that finish long before these: the budgets only stop a wedged part, and leave
    # room for a CPU shared with other work (a test run's parallel workers)
    budgets={"benchmark": 300, "accel": 300, "ensemble": 300, "two_tier": 400, "gan": 300},
    reserves={"accel": 60, "ensemble": 60, "two_tier": 60, "gan": 100},
    bench_models=("compact",), bench_batches=(16, 32), bench_steps=2, ensemble_size=2,
    ensemble_epochs=1, two_tier_epochs=1, gan_steps=30,
    classifier={"model": "compact", "model_kwargs": {"width": 4, "multipliers": (2, 4, 8),
                                                     "dense": 32},
                "dtype": "float32", "batch_size": 32, "eval_batch_size": 128, "num_epochs": 2,
                "ema_warmup_steps": 4, "log_every_steps": 5, "progress": False,
                "data.synthetic_sizes": {"num_train": 480, "num_val": 160, "num_test": 32}},
    gan={"cgan.g_channels": (32, 16, 8, 8), "cgan.d_channels": (8, 8, 16, 32),
         "cgan.embed_dim": 8, "cgan.latent_dim": 20, "batch_size": 16, "log_every": 5,
         "checkpoint_every": 0, "sample_every": 100_000, "grid_columns": 4, "progress": False})
PLANS = {plan.name: plan for plan in (DEVICE, DRY_RUN)}


# ----------------------------------------------------------------------------- prepare (here)
def default_data_path(repo_root: pathlib.Path) -> pathlib.Path:
    """``$FER_JAX_DATA``, else the shared zip beside the checkout."""
    return pathlib.Path(os.environ.get("FER_JAX_DATA")
                        or repo_root.parent / "shared/data/fer2013/fer2013_images.zip")


def prepare(repo_root: str | os.PathLike, data: str | os.PathLike, *,
            wheels: Sequence[str] = WHEELS) -> dict:
    """Fills ``<repo_root>/.carry`` (git-ignored) with a copy of the ``data`` zip and the
    ``wheels`` (``NAME==VERSION``, pure Python; downloaded unless already there), checks that
    the wheels install offline and that what travels fits :data:`DEVICE_TREE_LIMIT`.

    Returns ``{"tree_bytes", "carry_bytes", "total_bytes", "limit_bytes", "carry",
    "command", "timeout_s", "wheels"}``. Raises FerError when the zip is missing, a download
    or the offline install fails, or the total is over the limit.
    """
    repo_root, data = pathlib.Path(repo_root), pathlib.Path(data)
    if not data.is_file():
        raise FerError(f"{data}: no FER-2013 zip there (pass --data PATH or set FER_JAX_DATA)")
    carry = repo_root / CARRY
    wheel_dir = carry / "wheels"
    wheel_dir.mkdir(parents=True, exist_ok=True)
    copy = carry / data.name
    if not (copy.is_file() and copy.stat().st_size == data.stat().st_size
            and copy.stat().st_mtime == data.stat().st_mtime):
        copy.unlink(missing_ok=True)  # copy2 keeps the source's mode: it may be read-only
        shutil.copy2(data, copy)
    for stale in carry.iterdir():
        if stale.is_file() and stale != copy:
            stale.unlink()  # an older zip would travel too
    for spec in wheels:
        if not _wheel_file(wheel_dir, spec):
            _pip(["download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
                  "--implementation", "py", "--abi", "none", "--platform", "any",
                  "-d", str(wheel_dir), spec], f"downloading {spec}")
    kept = {_wheel_file(wheel_dir, spec) for spec in wheels}
    for extra in set(wheel_dir.iterdir()) - kept:
        extra.unlink()  # two versions of a package stop the install there
    if wheels:
        _check_offline_install(wheel_dir, [spec.split("==")[0] for spec in wheels])
    tree = tree_bytes(repo_root)
    carried = sum(p.stat().st_size for p in carry.rglob("*") if p.is_file())
    command = device_command(copy.relative_to(repo_root), bool(wheels))
    result = {"tree_bytes": tree, "carry_bytes": carried, "total_bytes": tree + carried,
              "limit_bytes": DEVICE_TREE_LIMIT, "carry": [CARRY], "command": command,
              "timeout_s": DEVICE_TIMEOUT_S, "wheels": sorted(p.name for p in wheel_dir.iterdir())}
    if result["total_bytes"] > DEVICE_TREE_LIMIT:
        raise FerError(f"{_mib(tree)} of working tree + {_mib(carried)} in {CARRY} = "
                       f"{_mib(tree + carried)}, over the device's {_mib(DEVICE_TREE_LIMIT)}")
    if len(command) > COMMAND_LIMIT:
        raise FerError(f"the device command has {len(command)} characters, over "
                       f"{COMMAND_LIMIT}")
    return result


def _mib(size: int) -> str:
    return f"{size / 2**20:.2f} MiB"


def _wheel_file(directory: pathlib.Path, spec: str) -> pathlib.Path | None:
    """The wheel of ``NAME==VERSION`` in ``directory`` (names compared as pip normalizes them)."""
    name, version = spec.split("==")
    wanted = (re.sub(r"[-_.]+", "_", name).lower(), version)
    for path in sorted(directory.glob("*.whl")):
        parts = path.name.split("-")
        if (re.sub(r"[-_.]+", "_", parts[0]).lower(), parts[1]) == wanted:
            return path
    return None


def _pip(args: list[str], what: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", *args], check=False,
                          capture_output=True, text=True)
    if done.returncode:
        raise FerError(f"{what} failed (pip exit {done.returncode}): "
                       f"{done.stderr.strip().splitlines()[-1:]}")


def _check_offline_install(wheel_dir: pathlib.Path, modules: list[str]) -> None:
    """Installs the wheels as the device will (no index, no dependencies) into a temporary
    folder and imports each package from there."""
    with tempfile.TemporaryDirectory() as target:
        _pip(["install", "-q", "--no-index", "--no-deps", "--no-compile", "--target", target,
              *map(str, sorted(wheel_dir.glob("*.whl")))], "installing the wheels offline")
        imports = "; ".join(f"import {name}; assert {name}.__file__.startswith({target!r})"
                            for name in modules)
        code = f"import sys; sys.path.insert(0, {target!r}); {imports}"
        done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                              text=True)
        if done.returncode:
            raise FerError(f"the offline-installed wheels do not import: "
                           f"{done.stderr.strip().splitlines()[-1:]}")


def tree_bytes(repo_root: pathlib.Path) -> int:
    """Bytes of the files that travel with the working tree: tracked and untracked files that
    git does not ignore."""
    listed = subprocess.run(["git", "-C", str(repo_root), "ls-files", "-z", "--cached",
                             "--others", "--exclude-standard"], capture_output=True, check=True)
    paths = {repo_root / name for name in listed.stdout.decode().split("\0") if name}
    return sum(p.stat().st_size for p in paths if p.is_file())


def device_command(zip_path: pathlib.PurePath, wheels: bool) -> str:
    """The device's command line: install the wheels, then the check on the carried zip
    (``FER_JAX_CPU_DEFAULTS=0``: no XLA:CPU flags, which that jaxlib may not know)."""
    install = (f"python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir "
               f"--upgrade --target {SITE} {CARRY}/wheels/*.whl && export PYTHONPATH={SITE} && "
               if wheels else "")
    return (f"{install}export PYTHONUNBUFFERED=1 FER_JAX_CPU_DEFAULTS=0 && python3 -m "
            f"experiments.accel_check --data {shlex.quote(str(zip_path))} --out \"$OUT\"")


# ----------------------------------------------------------------------------- run (there)
def run_check(plan: Plan, part_command: Sequence[str], *, data: str | None,
              out: pathlib.Path, workdir: pathlib.Path,
              parts: Sequence[str] = PARTS) -> dict:
    """Runs ``parts`` of ``plan`` in order, each as ``part_command --part NAME ...`` in its own
    process under its budget; rewrites ``out/results.json`` after each. Returns the results:
    ``plan``, ``planned_s``, ``data``, ``git``, ``versions``, ``started``, ``wall_s`` and
    ``parts`` (per part: ``status`` done | stopped | failed, ``returncode``, ``budget_s``,
    ``wall_s`` and what the part recorded)."""
    out.mkdir(parents=True, exist_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "FER_JAX_CACHE": str(workdir / "data_cache"),
           "JAX_COMPILATION_CACHE_DIR": str(workdir / "jax_cache"), "PYTHONUNBUFFERED": "1"}
    results = {"plan": plan.name, "planned_s": plan.total_s, "data": data or "synthetic",
               "git": provenance.git_state(), "versions": provenance.versions(),
               "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
               "parts": {}}
    start = time.perf_counter()
    with open(out / LOG, "a") as log:
        for index, name in enumerate(parts, 1):
            log.write(f"\n===== part {name} (budget {plan.budgets[name]} s) =====\n")
            log.flush()
            command = [*part_command, "--part", name, "--plan", plan.name, "--workdir",
                       str(workdir), "--out", str(out)] + (["--data", data] if data else [])
            results["parts"][name] = record = _run_part(name, plan.budgets[name], command,
                                                        workdir, log, env)
            results["wall_s"] = time.perf_counter() - start
            _write_json(out / RESULTS, results)
            print(f"[{index}/{len(parts)}] {name}: {record['status']} in "
                  f"{record['wall_s']:.0f} s (budget {record['budget_s']} s)", flush=True)
    return results


def _run_part(name: str, budget: float, command: list[str], workdir: pathlib.Path, log,
              env: dict) -> dict:
    """One part's process: SIGTERM at its budget, SIGKILL :data:`TERMINATE_GRACE_S` later."""
    record_path = _part_record(workdir, name)
    record_path.unlink(missing_ok=True)
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    overran = False
    try:
        returncode = process.wait(timeout=budget)
    except subprocess.TimeoutExpired:
        overran = True
        process.terminate()
        try:
            returncode = process.wait(timeout=TERMINATE_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            returncode = process.wait()
    recorded = json.loads(record_path.read_text()) if record_path.is_file() else {}
    finished = returncode == 0 and recorded.get("finished", False)
    status = "done" if finished else "stopped" if overran else "failed"
    return {"status": status, "returncode": returncode, "budget_s": budget,
            "wall_s": time.perf_counter() - start, **recorded}


def _part_record(workdir: pathlib.Path, name: str) -> pathlib.Path:
    return workdir / "parts" / f"{name}.json"


def _write_json(path: pathlib.Path, value) -> None:
    """Writes ``value`` as JSON atomically (a reader never sees half a file)."""
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(value, indent=1, default=_plain))
    partial.replace(path)


def _plain(value):
    """JSON form of NumPy scalars and arrays."""
    return value.tolist() if isinstance(value, (np.ndarray, np.generic)) else str(value)


class BudgetSpent(FerError):
    """SIGTERM outside a training loop: the part's budget is spent."""


@dataclasses.dataclass
class Part:
    """One part running in its own process: its configs, its record and its deadline."""

    name: str
    plan: Plan
    configs: Mapping[str, ml_collections.ConfigDict]
    workdir: pathlib.Path
    out: pathlib.Path
    started: float = dataclasses.field(default_factory=time.monotonic)
    values: dict = dataclasses.field(default_factory=dict)

    def record(self, **values) -> None:
        """Adds ``values`` to the part's record (written at once: a stopped part keeps them)."""
        self.values.update(values)
        path = _part_record(self.workdir, self.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_json(path, self.values)

    def seconds_left(self) -> float:
        """Seconds of the budget left, less the part's evaluation reserve."""
        return (self.started + self.plan.budgets[self.name]
                - self.plan.reserves.get(self.name, 0.0) - time.monotonic())

    @contextlib.contextmanager
    def stop_training_after(self, seconds: float):
        """Sends this process SIGTERM after ``seconds`` unless the block ends first: the
        training loop checkpoints and returns ``interrupted``. In the block, a SIGTERM outside
        the loop is ignored (the loop's own handler takes it inside)."""
        timer = threading.Timer(max(seconds, 0.0), os.kill, (os.getpid(), signal.SIGTERM))
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
            signal.signal(signal.SIGTERM, previous)

    def data(self):
        from fer_jax.data import load_from_config

        return load_from_config(self.configs["classifier"].data)


def run_part(name: str, plan: Plan, configs: Mapping[str, ml_collections.ConfigDict], *,
             data: str | None, workdir: pathlib.Path, out: pathlib.Path) -> None:
    """Runs part ``name`` in this process. ``configs``: ``classifier`` (the accel recipe),
    ``two_tier`` (a pipeline's two-tier section) and ``gan``; the plan's overrides and
    ``data`` are applied here."""
    if name not in PARTS:
        raise FerError(f"unknown part {name!r}; parts: {', '.join(PARTS)}")

    def on_sigterm(signum, frame):
        raise BudgetSpent(f"part {name}: budget of {plan.budgets[name]} s spent")

    signal.signal(signal.SIGTERM, on_sigterm)
    part = Part(name, plan, _with_plan(plan, configs, data), workdir, out)
    part.record(device=provenance.device(), finished=False)
    PART_RUNNERS[name](part)
    part.record(finished=True, seconds=time.monotonic() - part.started)


def _with_plan(plan: Plan, configs, data: str | None) -> dict[str, ml_collections.ConfigDict]:
    """Copies of ``configs`` with ``plan``'s overrides and the data source."""
    classifier_overrides = {**plan.classifier, "data.source": data}
    resolved = {name: config.copy_and_resolve_references() for name, config in configs.items()}
    resolved["classifier"].update_from_flattened_dict(classifier_overrides)
    for member in ("tier1", "negative", "positive"):
        resolved["two_tier"][member].update_from_flattened_dict(classifier_overrides)
    resolved["gan"].update_from_flattened_dict({**plan.gan, "data.source": data,
                                                "num_steps": plan.gan_steps})
    return resolved


# ----------------------------------------------------------------------------- the parts
def benchmark(part: Part) -> None:
    """Training images/s, compile seconds, FLOPs and memory of each model and batch size
    (one ``jit`` device, the recipe's dtype and augmentation, random images)."""
    rows = []
    for model in part.plan.bench_models:
        for batch in part.plan.bench_batches:
            config = part.configs["classifier"].copy_and_resolve_references()
            if model != config.model:
                config.model, config.model_kwargs = model, {}
            rows.append(_train_step_speed(config, batch, part.plan.bench_steps))
            part.record(rows=rows)


def _train_step_speed(config: ml_collections.ConfigDict, batch: int, steps: int) -> dict:
    import jax

    from fer_jax import parallel, train
    from fer_jax import state as state_lib
    from fer_jax.data import augment

    placement = parallel.make_placement("jit")
    rng = np.random.default_rng(0)
    pool = rng.integers(0, 256, (max(batch, 1024), 48, 48), dtype=np.uint8)
    labels = rng.integers(0, 7, len(pool)).astype(np.int32)
    step = parallel.compile_step(
        train.make_train_step(num_classes=7, augment_config=augment.augment_config_from(
            config.augment), label_smoothing=config.label_smoothing,
            axis_name=placement.step_axis),
        placement, num_consts=2, donate_state=False)
    host = state_lib.create_train_state(config, config.seed, 100)
    args = (placement.replicate(host),
            placement.shard_batch({"indices": np.arange(batch, dtype=np.int32)}),
            jax.random.PRNGKey(0), placement.replicate(pool), placement.replicate(labels))
    start = time.perf_counter()
    compiled = step.lower(*args).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(*args))
    start = time.perf_counter()
    for _ in range(steps):
        jax.block_until_ready(compiled(*args))
    step_s = (time.perf_counter() - start) / steps
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost["flops"]) if cost and "flops" in cost else None
    memory = compiled.memory_analysis()
    stats = jax.devices()[0].memory_stats() or {}
    return {"model": config.model, "batch": batch, "dtype": config.dtype,
            "params": int(sum(x.size for x in jax.tree_util.tree_leaves(host.params))),
            "compile_s": compile_s, "step_ms": step_s * 1e3,
            "train_images_per_s": batch / step_s,
            "train_gflop_per_image": flops / batch / 1e9 if flops else None,
            "tflop_per_s": flops / step_s / 1e12 if flops else None,
            "temp_mb": getattr(memory, "temp_size_in_bytes", 0) / 2**20 or None,
            "argument_mb": getattr(memory, "argument_size_in_bytes", 0) / 2**20 or None,
            "device_peak_mb": stats.get("peak_bytes_in_use", 0) / 2**20 or None}


def accel(part: Part) -> None:
    """The recipe to the end (or its deadline), val after every epoch; then the final model
    without and with TTA, its curves and confusion matrix."""
    from fer_jax import classes, plots, train
    from fer_jax.runtime import read_history

    config, data = part.configs["classifier"], part.data()
    workdir = part.workdir / "accel"
    with part.stop_training_after(part.seconds_left()):
        summary = train.train_and_evaluate(config, workdir, data)
    history = [r for r in read_history(workdir) if "val_accuracy" in r]
    part.record(training=_training_record(summary), epochs=[
        {key: r[key] for key in ("epoch", "train_loss", "val_loss", "val_accuracy")}
        for r in history])
    if history:
        plots.save_curves_png(history, part.out / FIGURES["curves"], keys=("loss", "accuracy"),
                              title=f"{config.model} ({part.plan.name})")
    evaluation = _evaluate(workdir, data, config.grouping)
    part.record(evaluation=evaluation)
    grouping = classes.grouping(config.grouping)
    plots.save_confusion_png(evaluation["tencrop"]["confusion"], grouping.class_names,
                             part.out / FIGURES["confusion"],
                             title=f"{config.model} val, ten-crop TTA: "
                                   f"{evaluation['tencrop']['accuracy']:.1%}")


def ensemble(part: Part) -> None:
    """``ensemble_size`` members of the recipe (seeds seed, seed+1, ...) trained at once in
    the engine's vmapped step for ``ensemble_epochs``; their mean probabilities on val. The
    members are written (and so evaluated) only when the run ends before the deadline."""
    from fer_jax import train

    config, data = part.configs["classifier"], part.data()
    config.update(num_epochs=part.plan.ensemble_epochs, ensemble_size=part.plan.ensemble_size)
    workdir = part.workdir / "ensemble"
    with part.stop_training_after(part.seconds_left()):
        summary = train.train_and_evaluate(config, workdir, data)
    part.record(training=_training_record(summary), members=config.ensemble_size)
    if summary["interrupted"] is None:
        part.record(evaluation=_evaluate(workdir, data, config.grouping))


def two_tier(part: Part) -> None:
    """The two-tier members fine-tuned from the accel part's flat model, under ``jit`` and
    under ``pmap``, each evaluated without and with TTA."""
    from fer_jax.checkpoint import has_checkpoint
    from fer_jax.errors import Interrupted
    from studies import pipeline

    flat = part.workdir / "accel"
    if not has_checkpoint(flat):
        part.record(skipped="the accel part left no flat model to fine-tune")
        return
    data = part.data()
    modes = ("jit", "pmap")
    for index, mode in enumerate(modes):
        config = part.configs["two_tier"].copy_and_resolve_references()
        for member in ("tier1", "negative", "positive"):
            config[member] = pipeline.classifier_config(config[member], None)
            config[member].update(init_from=str(flat), parallel=mode,
                                  num_epochs=part.plan.two_tier_epochs)
        workdir = part.workdir / f"two_tier_{mode}"
        try:
            with part.stop_training_after(part.seconds_left() / (len(modes) - index)):
                summaries = pipeline.train_two_tier(config, workdir, data)
        except Interrupted as stopped:
            part.record(**{mode: {"interrupted": str(stopped)}})
            continue
        part.record(**{mode: {"training": {name: _training_record(summary)
                                           for name, summary in summaries.items()},
                              "evaluation": _evaluate(workdir, data, config.setting)}})


def gan(part: Part) -> None:
    """The accelerator GAN until its deadline; steps/s and a grid of EMA samples per class."""
    from fer_jax import plots
    from gan import sample
    from gan import train as gan_train

    config = part.configs["gan"]
    workdir = part.workdir / "gan"
    with part.stop_training_after(part.seconds_left()):
        summary = gan_train.train_gan(config, workdir, part.data())
    run = summary["runs"]["cgan"]
    part.record(training={key: run[key] for key in ("steps", "it_per_s", "interrupted",
                                                    "rollbacks")},
                batch_size=config.batch_size, dtype="float32")
    grid = sample.load_generators(workdir).grid(config.classes, config.grid_columns,
                                                seed=gan_train.GRID_SEED)
    plots.save_image_grid_png(grid, part.out / FIGURES["gan"], row_names=list(config.classes),
                              title=f"cgan step {run['steps']}")
    part.record(grid=FIGURES["gan"])


PART_RUNNERS: dict[str, Callable[[Part], None]] = {
    "benchmark": benchmark, "accel": accel, "ensemble": ensemble, "two_tier": two_tier,
    "gan": gan}


def _training_record(summary: dict) -> dict:
    """The engine summary's numbers (what a results table needs)."""
    keys = ("step", "steps_per_epoch", "interrupted", "train_images_per_sec", "val_accuracy",
            "best_val_accuracy", "rollbacks")
    return {key: summary.get(key) for key in keys}


def _evaluate(run: pathlib.Path, data, grouping_name: str) -> dict:
    """Val accuracy and macro-F1 of the classifier trained in ``run`` (flat, two-tier or
    ensemble) without TTA, with the 6 shifted views and with ten crops; the ten-crop entry
    keeps its confusion matrix; ``steps``: the checkpoint step of each network."""
    from fer_jax import classes, evaluation, inference
    from fer_jax.train import encode_split

    classifier = inference.load(run)
    grouping = classes.grouping(grouping_name)
    val = encode_split(data.split("val"), grouping)
    out = {}
    for tta in TTA_MODES:
        report = evaluation.report_of(val.labels, classifier.probabilities(val.images, tta=tta),
                                      grouping)
        name = {False: "none", True: "shifts"}.get(tta, tta)
        out[name] = {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"]}
    out["tencrop"]["confusion"] = report["confusion"]
    out["steps"] = classifier.steps
    return out
