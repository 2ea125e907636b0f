"""Training and evaluation of the classifiers (modelled on Flax examples/imagenet/train.py).

The whole training pool lives on the device(s) as uint8; each compiled step gathers its batch
by index, augments it and updates the model, so only a few scalars come back to the host.
One pure step (:func:`make_train_step`) runs under ``jit`` or ``pmap``
(:mod:`fer_jax.parallel`, ``config.parallel``). Runs resume exactly: the step's RNG is
``fold_in(PRNGKey(seed), step)``, epoch ``e`` draws its order with seed ``seed + e``, and
checkpoints hold everything else (parameters, batch statistics, optimizer state, step).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import traverse_util
from tqdm import tqdm

from fer_jax import checkpoint, classes, metrics, parallel
from fer_jax.data import augment as augment_lib
from fer_jax.data import sampling
from fer_jax.data.dataset import FerData, Split
from fer_jax.errors import FerCheckpointError, FerError
from fer_jax.inference import evaluate_split, load_trained
from fer_jax.runtime import RunLog, StopSignal
from fer_jax.state import TrainState, create_train_state, learning_rate_schedule


def initialize_from(state: TrainState, config: ml_collections.ConfigDict,
                    directory: str | pathlib.Path) -> tuple[TrainState, list[str]]:
    """Warm start (fine-tuning): copies from the latest checkpoint of the classifier trained in
    ``directory`` every parameter and BatchNorm statistic whose path and shape match ``state``;
    the rest (the classification head when the number of classes differs) keeps its fresh
    initialisation. The optimizer state and step stay fresh.

    Returns ``(state, fresh)``, ``fresh`` naming the arrays that were not copied. Raises
    FerCheckpointError when ``directory`` has no checkpoint or trained another architecture.
    """
    _, trained, saved = load_trained(directory, best=False)
    _check_same(_json_config(saved), config, ("model", "model_kwargs"), where=directory,
                what="init_from checkpoint has", remedy="warm starts need the same architecture")
    fresh: list[str] = []

    def merge(collection: str, current):
        source = traverse_util.flatten_dict(trained[collection], sep="/")
        merged = {}
        for path, value in traverse_util.flatten_dict(current, sep="/").items():
            if path in source and source[path].shape == value.shape:
                merged[path] = jnp.asarray(source[path], value.dtype)
            else:
                merged[path] = value
                fresh.append(f"{collection}/{path}")
        return traverse_util.unflatten_dict(merged, sep="/")

    state = state.replace(params=merge("params", state.params),
                          batch_stats=merge("batch_stats", state.batch_stats))
    return state, fresh


# ----------------------------------------------------------------------------- steps
def make_train_step(*, num_classes: int, augment_config: augment_lib.AugmentConfig,
                    label_smoothing: float = 0.0,
                    axis_name: str = parallel.AXIS) -> Callable:
    """The pure training step ``(state, batch, rng, images, labels) -> (state, metrics)``.

    ``images`` uint8 ``[N, 48, 48]`` and ``labels`` int32 ``[N]`` are the device-resident
    training pool; ``batch = {"indices": int32 [B]}`` selects this step's examples. The batch
    is augmented in-graph (key ``fold_in(rng, 0)``; dropout uses ``fold_in(rng, 1)``).
    Gradients, batch statistics and metrics are averaged with :func:`parallel.reduce_mean`.
    """
    def train_step(state: TrainState, batch, rng, images, labels):
        x = augment_lib.to_float(images[batch["indices"]])
        x = augment_lib.augment(jax.random.fold_in(rng, 0), x, augment_config)
        y = labels[batch["indices"]]
        targets = optax.smooth_labels(jax.nn.one_hot(y, num_classes), label_smoothing)

        def loss_fn(params):
            logits, updates = state.apply_fn(
                {"params": params, "batch_stats": state.batch_stats}, x, train=True,
                rngs={"dropout": jax.random.fold_in(rng, 1)}, mutable=["batch_stats"])
            loss = optax.softmax_cross_entropy(logits, targets).mean()
            return loss, (logits, updates["batch_stats"])

        (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params)
        grads = parallel.reduce_mean(grads, axis_name)
        batch_stats = parallel.reduce_mean(batch_stats, axis_name)
        step_metrics = parallel.reduce_mean(
            {"loss": loss, "accuracy": jnp.mean(jnp.argmax(logits, -1) == y)}, axis_name)
        updates, opt_state = state.tx.update(grads, state.opt_state, state.params,
                                             value=step_metrics["loss"])
        state = state.replace(step=state.step + 1,
                              params=optax.apply_updates(state.params, updates),
                              opt_state=opt_state, batch_stats=batch_stats)
        return state, step_metrics

    return train_step


# Test-time augmentation views: (flip, dy, dx).
# ----------------------------------------------------------------------------- data
@dataclasses.dataclass(frozen=True)
class PreparedData:
    """Training pool and evaluation splits of one grouping (labels encoded for it)."""

    real_train: Split
    synthetic: Split | None
    pool_labels: np.ndarray  # encoded labels of the training pool; -1 = not in the grouping
    pool_images: np.ndarray
    eval_splits: dict[str, Split]  # encoded labels, rows outside the grouping dropped
    source: str
    synthetic_data: bool


def encode_split(split: Split, grouping: classes.Grouping) -> Split:
    """Rows of ``split`` covered by ``grouping``, labels encoded for it."""
    keep = grouping.covers(split.labels)
    return Split(split.images[keep], grouping.encode(split.labels[keep]).astype(np.int32))


def prepare_data(config: ml_collections.ConfigDict, data: FerData | None) -> PreparedData:
    """Loads ``config.data.source`` (None: synthetic) unless ``data`` is given, encodes labels
    for ``config.grouping`` and adds the optional synthetic (GAN) images."""
    if data is None:
        from fer_jax.data import load_from_config

        data = load_from_config(config.data)
    grouping = classes.grouping(config.grouping)
    synthetic = None
    if config.data.get("synthetic_npz"):
        synthetic = sampling.load_synthetic_npz(config.data.synthetic_npz)
    mix = sampling.build_training_mix(data.split("train"), synthetic, oversample=False,
                                      classes=grouping, seed=0)
    eval_splits = {name: encode_split(data.splits[name], grouping)
                   for name in ("val", "test") if data.has(name)}
    if "val" not in eval_splits or len(eval_splits["val"]) == 0:
        raise FerError(f"{data.source}: no validation images for grouping {grouping.name!r}")
    return PreparedData(real_train=data.split("train"), synthetic=synthetic,
                        pool_labels=grouping.encode(mix.pool.labels).astype(np.int32),
                        pool_images=mix.pool.images, eval_splits=eval_splits,
                        source=data.source, synthetic_data=data.synthetic)


def epoch_indices(config: ml_collections.ConfigDict, prepared: PreparedData,
                  epoch: int) -> np.ndarray:
    """Pool indices of ``epoch`` in order: :func:`sampling.build_training_mix` seeded with
    ``seed + epoch`` (class-balanced with ``config.data.oversample``, synthetic top-up)."""
    mix = sampling.build_training_mix(
        prepared.real_train, prepared.synthetic, oversample=config.data.get("oversample", False),
        target_per_class=config.data.get("target_per_class"),
        max_synthetic_share=config.data.get("max_synthetic_share", 0.5),
        classes=classes.grouping(config.grouping), seed=config.seed + epoch)
    return mix.indices


def steps_per_epoch_of(config, prepared: PreparedData) -> int:
    n = len(epoch_indices(config, prepared, 0))
    if n < config.batch_size:
        raise FerError(f"{prepared.source}: {n} training images per epoch, fewer than one batch "
                       f"of {config.batch_size}")
    return n // config.batch_size


# ----------------------------------------------------------------------------- evaluation
def _json_config(config: ml_collections.ConfigDict) -> dict:
    return json.loads(config.to_json())


def _restore_target(state: TrainState, placement: parallel.Placement) -> dict:
    return {"state": placement.unreplicate(state)}


def _rng_for_step(seed: int, step: int) -> jax.Array:
    return jax.random.fold_in(jax.random.PRNGKey(seed), step)


def _current_lr(state: TrainState, schedule, step: int) -> float:
    """The schedule's learning rate times the reduce-on-plateau scale (if any)."""
    is_plateau = lambda s: isinstance(s, optax.contrib.ReduceLROnPlateauState)
    plateau = [s for s in jax.tree_util.tree_leaves(state.opt_state, is_leaf=is_plateau)
               if is_plateau(s)]
    scale = float(np.asarray(plateau[0].scale).reshape(-1)[0]) if plateau else 1.0
    return float(schedule(step)) * scale


# ----------------------------------------------------------------------------- main loop
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
                       data: FerData | None = None) -> dict:
    """Trains ``config`` in ``workdir`` (resuming from its latest checkpoint), evaluating on
    val every epoch; returns a summary dict. See the module docstring for the guarantees.

    Writes ``metrics.jsonl``, TensorBoard events, ``checkpoints/``, and at the end
    ``report.json``, ``confusion.png`` and ``curves.png``. On SIGTERM/SIGINT it checkpoints and
    returns early with ``summary["interrupted"]`` set to the signal number.
    """
    from fer_jax import plots

    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    grouping = classes.grouping(config.grouping)
    prepared = prepare_data(config, data)
    steps_per_epoch = steps_per_epoch_of(config, prepared)

    placement = parallel.make_placement(config.parallel)
    feeding = placement.num_local_devices * jax.process_count()
    if config.batch_size % feeding:
        raise FerError(f"batch_size {config.batch_size} is not divisible by the {feeding} "
                       "devices it is split over")
    bn_axis = parallel.AXIS if config.parallel == "pmap" else None
    state = create_train_state(config, config.seed, steps_per_epoch, bn_axis_name=bn_axis)

    ckpt = checkpoint.Checkpointer(workdir, max_to_keep=config.get("keep_checkpoints", 2),
                                   best_metric="val_accuracy")
    start_step = 0
    if ckpt.latest_step() is None and config.get("init_from"):
        state, fresh = initialize_from(state, config, config.init_from)
        print(f"initialized from {config.init_from} (latest checkpoint); fresh: "
              f"{', '.join(fresh) or 'nothing'}", flush=True)
    elif ckpt.latest_step() is not None:
        _check_resume_config(ckpt.read_json()[1], config, ckpt.directory)
        restored = ckpt.restore(_restore_target(state, placement))
        state, start_step = restored.state["state"], restored.step
        print(f"resuming from {ckpt.directory} at step {start_step} "
              f"(epoch {start_step // steps_per_epoch}, position {start_step % steps_per_epoch})")
    state = placement.replicate(state)
    pool_images = placement.replicate(prepared.pool_images)
    pool_labels = placement.replicate(prepared.pool_labels)

    train_step = parallel.compile_step(
        make_train_step(num_classes=grouping.num_classes,
                        augment_config=augment_lib.augment_config_from(config.get("augment")),
                        label_smoothing=config.get("label_smoothing", 0.0)),
        placement, num_consts=2)
    schedule = learning_rate_schedule(config, steps_per_epoch)
    log = RunLog(workdir, start_step)
    config_json = _json_config(config)
    log_every = config.get("log_every_steps", 20)
    checkpoint_every = config.get("checkpoint_every_steps", 0)
    summary: dict = {"interrupted": None}
    images_per_sec = []
    # Running sums of this epoch's step metrics; checkpointed so a resumed epoch's means match.
    totals = {"loss": 0.0, "accuracy": 0.0, "steps": 0}
    if start_step % steps_per_epoch:
        totals.update(restored.meta.get("epoch_totals", totals))
    pending, tick = [], time.perf_counter()

    def flush():
        """Brings pending step metrics to the host: tqdm, metrics.jsonl, epoch totals."""
        nonlocal pending, tick
        if not pending:
            return
        values = jax.device_get(pending)
        rate = len(values) * config.batch_size / (time.perf_counter() - tick)
        for v in values:
            totals["loss"] += float(v["loss"])
            totals["accuracy"] += float(v["accuracy"])
            totals["steps"] += 1
        means = {k: float(np.mean([v[k] for v in values])) for k in values[0]}
        images_per_sec.append(rate)
        log.write({"step": step, "epoch": step // steps_per_epoch + 1,
                   "train_loss": means["loss"], "train_accuracy": means["accuracy"],
                   "lr": _current_lr(state, schedule, step), "images_per_sec": rate})
        bar.set_postfix(loss=f"{means['loss']:.3f}", acc=f"{means['accuracy']:.3f}",
                        img_s=f"{rate:.0f}")
        pending, tick = [], time.perf_counter()

    def save(epoch_metrics=None):
        flush()
        meta = {"epoch": step // steps_per_epoch, "position": step % steps_per_epoch,
                "steps_per_epoch": steps_per_epoch, "seed": config.seed,
                "epoch_totals": totals}
        ckpt.save(step, {"state": placement.unreplicate(state)}, meta=meta, config=config_json,
                  metrics=epoch_metrics)

    step = start_step
    with StopSignal() as stop:
        for epoch in range(start_step // steps_per_epoch, config.num_epochs):
            order = epoch_indices(config, prepared, epoch)[:steps_per_epoch * config.batch_size]
            order = order.reshape(steps_per_epoch, config.batch_size).astype(np.int32)
            first = step - epoch * steps_per_epoch
            bar = tqdm(total=steps_per_epoch, initial=first, desc=f"epoch {epoch + 1}/"
                       f"{config.num_epochs}", unit="step", leave=False,
                       disable=not config.get("progress", True))
            tick = time.perf_counter()
            for position in range(first, steps_per_epoch):
                batch = parallel.process_shard({"indices": order[position]})
                state, step_metrics = train_step(state, placement.shard_batch(batch),
                                                 _rng_for_step(config.seed, step), pool_images,
                                                 pool_labels)
                step += 1
                pending.append(step_metrics)
                bar.update(1)
                if position == steps_per_epoch - 1:
                    break  # The epoch's end: evaluate and checkpoint below.
                if len(pending) == log_every:
                    flush()
                if stop.received is not None:
                    break
                if checkpoint_every and step % checkpoint_every == 0:
                    save()
            flush()
            bar.close()
            if step % steps_per_epoch:  # Stopped mid-epoch by a signal.
                save()
            else:
                record = _end_of_epoch(config, placement, state, prepared, totals, epoch, step)
                log.write(record)
                save({"val_accuracy": record["val_accuracy"], "val_loss": record["val_loss"]})
                totals = {"loss": 0.0, "accuracy": 0.0, "steps": 0}
            if stop.received is not None:
                summary["interrupted"] = stop.received
                print(f"stopped by signal {stop.received} at step {step}; checkpoint saved in "
                      f"{ckpt.directory}; rerun the same command to resume", flush=True)
                break
    ckpt.wait()

    summary.update(step=step, steps_per_epoch=steps_per_epoch,
                   train_images_per_sec=float(np.median(images_per_sec)) if images_per_sec
                   else None, best_step=ckpt.best_step(), data=prepared.source,
                   synthetic_data=prepared.synthetic_data)
    if summary["interrupted"] is None:
        summary.update(_final_report(config, workdir, state, placement, prepared, log, ckpt,
                                     plots))
    ckpt.close()
    log.close()
    return summary


def _end_of_epoch(config, placement, state, prepared, totals, epoch, step) -> dict:
    """Evaluates val after an epoch; prints and returns the epoch's record."""
    grouping = classes.grouping(config.grouping)
    host = placement.unreplicate(state)
    report, val_loss = evaluate_split(
        host.apply_fn, {"params": host.params, "batch_stats": host.batch_stats},
        prepared.eval_splits["val"], grouping.class_names,
        batch_size=config.get("eval_batch_size", 256))
    steps = max(totals["steps"], 1)
    record = {"step": step, "epoch": epoch + 1, "train_loss": totals["loss"] / steps,
              "train_accuracy": totals["accuracy"] / steps, "val_loss": val_loss,
              "val_accuracy": report["accuracy"], "val_macro_f1": report["macro_f1"]}
    print(f"epoch {epoch + 1}/{config.num_epochs}: train loss {record['train_loss']:.4f} "
          f"acc {record['train_accuracy']:.4f} | val loss {val_loss:.4f} "
          f"acc {report['accuracy']:.4f} macro-F1 {report['macro_f1']:.4f}", flush=True)
    return record


def _final_report(config, workdir, state, placement, prepared, log, ckpt, plots) -> dict:
    """Evaluates the final model on val (and test when present), prints the table, writes
    report.json, confusion.png and curves.png."""
    grouping = classes.grouping(config.grouping)
    host = placement.unreplicate(state)
    variables = {"params": host.params, "batch_stats": host.batch_stats}
    out, reports = {}, {}
    for name, split in prepared.eval_splits.items():
        report, loss = evaluate_split(host.apply_fn, variables, split, grouping.class_names,
                                      batch_size=config.get("eval_batch_size", 256))
        reports[name] = report
        out[f"{name}_accuracy"], out[f"{name}_macro_f1"], out[f"{name}_loss"] = (
            report["accuracy"], report["macro_f1"], loss)
    history = [r for r in log.history() if "val_accuracy" in r]
    best_step = ckpt.best_step()
    out["best_val_accuracy"] = max((r["val_accuracy"] for r in history), default=None)
    if jax.process_index() == 0:
        label = " (SYNTHETIC data)" if prepared.synthetic_data else ""
        print(f"\nfinal model, val split{label}, grouping {grouping.name}:")
        print(metrics.format_report_table(reports["val"]))
        print(f"best val accuracy {out['best_val_accuracy']:.4f} at step {best_step}")
        (workdir / "report.json").write_text(json.dumps(
            {"data": prepared.source, "synthetic": prepared.synthetic_data,
             "grouping": grouping.name, "step": int(host.step), "best_step": best_step,
             "reports": reports}, indent=1))
        plots.save_confusion_png(reports["val"]["confusion"], grouping.class_names,
                                 workdir / "confusion.png",
                                 title=f"{config.model} val{label}: "
                                 f"{reports['val']['accuracy']:.1%}")
        if history:
            plots.save_curves_png(history, workdir / "curves.png", keys=("loss", "accuracy"),
                                  title=f"{config.model}{label}")
    return out


def _check_same(saved: dict, config: ml_collections.ConfigDict, keys, *, where, what: str,
                remedy: str) -> None:
    """Raises FerCheckpointError naming the first of ``keys`` whose value in the saved config
    JSON ``saved`` differs from ``config``'s (keys the saved config lacks are not compared)."""
    current = _json_config(config)
    for key in keys:
        if key in saved and saved[key] != current.get(key):
            raise FerCheckpointError(f"{where}: {what} {key}={saved[key]!r} but the config has "
                                     f"{current.get(key)!r}; {remedy}")


def _check_resume_config(saved: dict, config: ml_collections.ConfigDict, where) -> None:
    """Refuses to resume a run whose model, grouping or batch size differ."""
    _check_same(saved, config, ("model", "model_kwargs", "grouping", "batch_size", "seed"),
                where=where, what="checkpoint was written with",
                remedy="use another --workdir or the original config")
