"""The classifier's training: its step, data order and evaluation on :mod:`fer_jax.loop`.

The whole training pool lives on the device(s) as uint8; each compiled step gathers its batch
by index, augments it (one key per example, :func:`fer_jax.parallel.example_keys`) and
updates the model, so only a few scalars come back to the host. The same step runs under
``jit`` or ``pmap`` (``config.parallel``) with the same result. Runs resume exactly: the step
key is ``fold_in(PRNGKey(seed), step)``, the data order of an epoch is drawn from the stream
``(seed, epoch)``, and checkpoints hold everything else.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import traverse_util

from fer_jax import checkpoint, classes, loop, metrics, parallel, plots, run_guard
from fer_jax.data import augment as augment_lib
from fer_jax.data import sampling
from fer_jax.data.dataset import FerData, Split
from fer_jax.data.duplicates import copies_of
from fer_jax.errors import FerCheckpointError, FerError
from fer_jax.inference import ENSEMBLE_MANIFEST, load, predict_probabilities, report_and_loss
from fer_jax.runtime import read_history
from fer_jax.state import (
    TrainState,
    create_train_state,
    fresh_ema,
    inference_variables,
    learning_rate_schedule,
    plateau_scale,
    state_template,
    update_ema,
)


def initialize_from(state: TrainState, config: ml_collections.ConfigDict,
                    directory: str | pathlib.Path) -> tuple[TrainState, list[str]]:
    """Warm start (fine-tuning): copies from the latest checkpoint of the classifier trained in
    ``directory`` every parameter and BatchNorm statistic whose path and shape match ``state``;
    the rest (the classification head when the number of classes differs) keeps its fresh
    initialisation. The optimizer state and step stay fresh.

    Returns ``(state, fresh)``, ``fresh`` naming the arrays that were not copied. Raises
    FerCheckpointError when ``directory`` has no checkpoint or trained another architecture.
    """
    classifier = load(directory)
    trained, saved = classifier.variables, classifier.config
    current = json.loads(config.to_json_best_effort())
    for key in ("model", "model_kwargs"):
        if saved.to_dict().get(key) != current.get(key):
            raise FerCheckpointError(f"{directory}: init_from checkpoint has {key}="
                                     f"{saved.to_dict().get(key)!r} but the config has "
                                     f"{current.get(key)!r}; warm starts need the same "
                                     "architecture")
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
    if state.ema is not None:  # the average starts from the warm-started weights
        state = state.replace(ema=fresh_ema({"params": state.params,
                                             "batch_stats": state.batch_stats}))
    return state, fresh


# ----------------------------------------------------------------------------- steps
@functools.lru_cache(maxsize=16)
def make_train_step(*, num_classes: int, augment_config: augment_lib.AugmentConfig,
                    label_smoothing: float, axis_name: str | None, ema_decay: float = 0.0,
                    ema_warmup_steps: int = 0,
                    logit_shift: tuple[float, ...] | None = None) -> Callable:
    """The pure training step ``(state, batch, rng, images, labels) -> (state, metrics)``.

    ``images`` uint8 ``[N, 48, 48]`` and ``labels`` int32 ``[N]`` are the device-resident
    training pool; ``batch = {"indices": int32 [B]}`` selects this step's examples. Example
    ``i`` of the global batch is augmented with row ``i`` of ``split(fold_in(rng, 0), B)`` and
    its dropout mask is its row of the global mask (key ``fold_in(rng, 1)``), so the result
    does not depend on how the batch is split. Gradients, batch statistics and metrics are
    averaged over ``axis_name`` (:attr:`fer_jax.parallel.Placement.step_axis`). With
    ``ema_decay`` > 0 the state's weight EMA follows (:func:`fer_jax.state.update_ema`).
    ``logit_shift`` (``tau * log prior`` per class, :func:`logit_shift_of`) is added to the
    logits inside the loss only: the logit-adjusted loss of Menon et al. (2021).
    Cached: equal arguments give the same function (and so one compilation).
    """
    def train_step(state: TrainState, batch, rng, images, labels):
        x = augment_lib.to_float(images[batch["indices"]])
        keys = parallel.example_keys(jax.random.fold_in(rng, 0), x.shape[0], axis_name)
        x = augment_lib.augment(keys, x, augment_config)
        y = labels[batch["indices"]]
        targets = optax.smooth_labels(jax.nn.one_hot(y, num_classes), label_smoothing)

        def loss_fn(params):
            logits, updates = state.apply_fn(
                {"params": params, "batch_stats": state.batch_stats}, x, train=True,
                rngs={"dropout": jax.random.fold_in(rng, 1)}, mutable=["batch_stats"])
            shifted = logits if logit_shift is None else logits + jnp.asarray(logit_shift)
            loss = optax.softmax_cross_entropy(shifted, targets).mean()
            return loss, (logits, updates["batch_stats"])

        (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params)
        grads = parallel.reduce_mean(grads, axis_name)
        batch_stats = parallel.reduce_mean(batch_stats, axis_name)
        step_metrics = parallel.reduce_mean(
            {"loss": loss, "accuracy": jnp.mean(jnp.argmax(logits, -1) == y)}, axis_name)
        updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
        state = state.replace(step=state.step + 1,
                              params=optax.apply_updates(state.params, updates),
                              opt_state=opt_state, batch_stats=batch_stats)
        if ema_decay > 0:
            state = update_ema(state, ema_decay, ema_warmup_steps)
        return state, step_metrics

    return train_step


# ----------------------------------------------------------------------------- data
@dataclasses.dataclass(frozen=True)
class PreparedData:
    """Training pool and evaluation splits of one grouping (labels encoded for it)."""

    real_train: Split
    synthetic: Split | None
    pool_labels: np.ndarray  # encoded labels of the training pool; -1 = not in the grouping
    pool_images: np.ndarray
    val: Split  # encoded labels, rows outside the grouping dropped
    val_copies: np.ndarray  # bool per val row: an exact copy of a training image
    source: str
    synthetic_data: bool
    skipped_records: tuple[str, ...] = ()  # bad records left out (data.strict=False)


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
    if config.data.synthetic_npz:
        synthetic = sampling.load_synthetic_npz(config.data.synthetic_npz)
    mix = sampling.build_training_mix(data.split("train"), synthetic, oversample=False,
                                      classes=grouping, seed=0)
    val = encode_split(data.split("val"), grouping) if data.has("val") else None
    if val is None or len(val) == 0:
        raise FerError(f"{data.source}: no validation images for grouping {grouping.name!r}")
    return PreparedData(real_train=data.split("train"), synthetic=synthetic,
                        pool_labels=grouping.encode(mix.pool.labels).astype(np.int32),
                        pool_images=mix.pool.images, val=val,
                        val_copies=copies_of(val, data.split("train")),
                        source=data.source, synthetic_data=data.synthetic,
                        skipped_records=tuple(data.skipped_records()))


def epoch_indices(config: ml_collections.ConfigDict, prepared: PreparedData,
                  epoch: int) -> np.ndarray:
    """Pool indices of ``epoch`` in order: :func:`sampling.build_training_mix` seeded with
    the pair ``(seed, epoch)`` (independent streams: epoch e+1 of seed s is not epoch e of
    seed s+1), class-balanced with ``config.data.oversample``, synthetic top-up."""
    mix = sampling.build_training_mix(
        prepared.real_train, prepared.synthetic, oversample=config.data.oversample,
        target_per_class=config.data.target_per_class,
        max_synthetic_share=config.data.max_synthetic_share,
        classes=classes.grouping(config.grouping), seed=(config.seed, epoch),
        synthetic_balance=config.data.synthetic_balance)
    return mix.indices


def logit_shift_of(config, prepared: PreparedData) -> tuple[float, ...] | None:
    """``config.logit_adjustment_tau * log prior`` of the classes as training sees them (the
    epoch mix, oversampling and synthetic faces included) for ``config.loss ==
    "logit_adjusted"``; None for plain cross-entropy."""
    if config.loss == "cross_entropy":
        return None
    if config.loss != "logit_adjusted":
        raise FerError(f"unknown loss {config.loss!r}; expected cross_entropy or logit_adjusted")
    labels = prepared.pool_labels[epoch_indices(config, prepared, 0)]
    counts = np.bincount(labels[labels >= 0],
                         minlength=classes.grouping(config.grouping).num_classes)
    prior = np.maximum(counts, 1) / max(counts.sum(), 1)
    return tuple(float(x) for x in config.logit_adjustment_tau * np.log(prior))


def steps_per_epoch_of(config, prepared: PreparedData) -> int:
    n = len(epoch_indices(config, prepared, 0))
    if n < config.batch_size:
        raise FerError(f"{prepared.source}: {n} training images per epoch, fewer than one batch "
                       f"of {config.batch_size}")
    return n // config.batch_size



def _current_lr(state: TrainState, schedule, step: int) -> float:
    """The schedule's learning rate times the rollback and plateau scales."""
    scales = loop.injected_hyperparameters(state.opt_state)
    return float(schedule(step)) * scales["learning_rate_scale"] * scales["plateau_scale"]


# ----------------------------------------------------------------------------- the run
# Config keys that may change when a run resumes (they change nothing it computes).
PRESENTATION_KEYS = ("progress", "log_every_steps", "eval_batch_size", "checkpoint_every_steps",
                     "keep_checkpoints")


def member_configs(config: ml_collections.ConfigDict) -> list[ml_collections.ConfigDict]:
    """The runs of ``config``: itself, or its ``ensemble_size`` members (seeds ``seed``,
    ``seed + 1``, ...), each the config of an equal stand-alone run."""
    if config.ensemble_size == 1:
        return [config]
    members = []
    for k in range(config.ensemble_size):
        member = config.copy_and_resolve_references()
        member.seed, member.ensemble_size = config.seed + k, 1
        members.append(member)
    return members


def _stacked(trees: list):
    """One pytree with a leading member axis (a single tree stays as it is)."""
    if len(trees) == 1:
        return trees[0]
    # The first tree's structure: members' static fields (optimizer objects) are equal, not
    # identical.
    leaves = zip(*(jax.tree_util.tree_leaves(tree) for tree in trees), strict=True)
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(trees[0]),
                                        [np.stack([np.asarray(x) for x in xs]) for xs in leaves])


def _members_of(state, count: int) -> list:
    """The member states of a (stacked) state."""
    if count == 1:
        return [state]
    return [jax.tree_util.tree_map(lambda x, k=k: x[k], state) for k in range(count)]


def _vmapped(single_step: Callable) -> Callable:
    """The step of stacked members: each member runs ``single_step`` with its own key
    ``fold_in(PRNGKey(seed_k), step)`` and batch (the loop's key is unused), exactly as its
    stand-alone run would; the logged metrics are the members' means."""
    def ensemble_step(state, batch, rng, images, labels, seeds):
        del rng
        keys = jax.vmap(loop.step_key)(seeds, state.step)
        state, metrics = jax.vmap(single_step, in_axes=(0, 0, 0, None, None))(
            state, batch, keys, images, labels)
        return state, jax.tree_util.tree_map(jnp.mean, metrics)
    return ensemble_step


def initial_state(config, steps_per_epoch: int, bn_axis: str | None) -> TrainState:
    """A run's fresh state: drawn from ``config.seed``, warm-started from ``config.init_from``."""
    state = create_train_state(config, config.seed, steps_per_epoch, bn_axis_name=bn_axis)
    if config.init_from:
        state, fresh = initialize_from(state, config, config.init_from)
        print(f"initialized from {config.init_from} (latest checkpoint); fresh: "
              f"{', '.join(fresh) or 'nothing'}", flush=True)
    return state


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
                       data: FerData | None = None) -> dict:
    """Trains ``config`` in ``workdir`` on :func:`fer_jax.loop.run` (resuming from its latest
    checkpoint), evaluating on val after every epoch; returns a summary dict.

    With ``config.ensemble_size`` K > 1 it trains K members (seeds ``seed``..``seed+K-1``)
    at once, stacked, in one ``jax.vmap``-ed step on one device (``parallel="jit"``);
    evaluation averages their probabilities, and at the end each member is written as a
    stand-alone run under ``members/`` (``inference.load`` reads the workdir as the ensemble).

    Writes ``metrics.jsonl``, TensorBoard events, ``checkpoints/``, and at the end
    ``report.json``, ``confusion.png`` and ``curves.png`` (val only: nothing here reads the
    test split). On SIGTERM/SIGINT it checkpoints and returns early with
    ``summary["interrupted"]`` set to the signal number.
    """
    prepared = prepare_data(config, data)  # before the workdir exists: a data error leaves none
    steps_per_epoch = steps_per_epoch_of(config, prepared)
    members = member_configs(config)
    if len(members) > 1 and config.parallel != "jit":
        raise FerError(f"ensemble_size {config.ensemble_size} trains its members in one vmapped "
                       "step on one device: use parallel='jit'")
    placement = parallel.make_placement(config.parallel, jax.devices()[:1]
                                        if len(members) > 1 else None)
    feeding = placement.num_local_devices * jax.process_count()
    if config.batch_size % feeding:
        raise FerError(f"batch_size {config.batch_size} is not divisible by the {feeding} "
                       "devices it is split over")
    grouping = classes.grouping(config.grouping)
    bn_axis = placement.step_axis
    schedule = learning_rate_schedule(config, steps_per_epoch)
    orders = [_EpochOrder(member, prepared, steps_per_epoch) for member in members]

    def batch(step: int) -> dict:
        return _stacked([order.batch(step) for order in orders])

    def plateau(step: int, state, record: dict):
        """The learning rate after this epoch's val loss (reduce on plateau of val)."""
        losses = [r["val_loss"] for r in read_history(workdir) if "val_loss" in r]
        return loop.with_hyperparameter(state, "plateau_scale", plateau_scale(
            losses, factor=config.plateau_factor, patience=config.plateau_patience))

    def end_of_epoch(step: int, state, train_means: dict) -> dict:
        return _end_of_epoch(config, _members_of(state, len(members)), prepared, train_means,
                             step // steps_per_epoch)

    single_step = make_train_step(
        num_classes=grouping.num_classes,
        augment_config=augment_lib.augment_config_from(config.augment),
        label_smoothing=config.label_smoothing, axis_name=bn_axis,
        ema_decay=config.ema_decay, ema_warmup_steps=config.ema_warmup_steps,
        logit_shift=logit_shift_of(config, prepared))
    consts = (placement.replicate(prepared.pool_images),
              placement.replicate(prepared.pool_labels))
    if len(members) > 1:
        step = parallel.compile_step(_vmapped(single_step), placement, num_consts=3)
        consts += (placement.replicate(np.array([m.seed for m in members], np.int32)),)
    else:
        step = parallel.compile_step(single_step, placement, num_consts=2)
    task = loop.Task(
        name=f"{config.model} {pathlib.Path(workdir).name}",
        config=json.loads(config.to_json_best_effort()), seed=config.seed,
        num_steps=config.num_epochs * steps_per_epoch, batch_size=config.batch_size,
        init_state=lambda: _stacked([initial_state(m, steps_per_epoch, bn_axis)
                                     for m in members]),
        state_template=lambda: _stacked([state_template(m, steps_per_epoch, bn_axis_name=bn_axis)
                                         for m in members]),
        step=step, consts=consts, batch=batch,
        periodic=(loop.Periodic(steps_per_epoch, end_of_epoch, evaluates=True,
                                update=plateau if config.schedule == "plateau" else None),),
        describe=lambda step, state: {
            "epoch": step // steps_per_epoch + 1,
            "lr": _current_lr(_members_of(state, len(members))[0], schedule, step)},
        log_prefix="train_", best_metric="val_accuracy", guard_ignores=PRESENTATION_KEYS,
        meta={"steps_per_epoch": steps_per_epoch})
    result = loop.run(task, workdir, placement, loop.Schedule(
        log_every=config.log_every_steps, checkpoint_every=config.checkpoint_every_steps,
        keep_checkpoints=config.keep_checkpoints, max_rollbacks=config.max_rollbacks,
        rollback_lr_factor=config.rollback_lr_factor, progress=config.progress))
    summary = {"interrupted": result["interrupted"], "step": result["step"],
               "steps_per_epoch": steps_per_epoch, "rollbacks": result["rollbacks"],
               "train_images_per_sec": result["images_per_sec"],
               "best_step": result["best_step"], "data": prepared.source,
               "synthetic_data": prepared.synthetic_data}
    if summary["interrupted"] is None:
        states = _members_of(result["state"], len(members))
        if len(members) > 1:
            _write_members(pathlib.Path(workdir), members, states, steps_per_epoch)
        summary.update(_final_report(config, pathlib.Path(workdir), states, prepared,
                                     result["best_step"]))
    return summary


def _write_members(workdir: pathlib.Path, members, states, steps_per_epoch: int) -> None:
    """Each member of an ensemble as a stand-alone run ``members/seed<s>`` (loadable, and
    equal to the run its config would train) and the manifest naming them."""
    paths = []
    for member, state in zip(members, states, strict=True):
        directory = workdir / "members" / f"seed{member.seed}"
        section = json.loads(member.to_json_best_effort())
        run_guard.check(directory, section, ignore=PRESENTATION_KEYS)
        with checkpoint.Checkpointer(directory, best_metric=None) as ckpt:
            ckpt.save(int(state.step), state, meta={"steps_per_epoch": steps_per_epoch},
                      config=section)
        paths.append(str(directory.relative_to(workdir)))
    run_guard.write_json(workdir / ENSEMBLE_MANIFEST, {"members": paths})


class _EpochOrder:
    """The global batch of each step: the epoch's order (:func:`epoch_indices`) in batches."""

    def __init__(self, config, prepared: PreparedData, steps_per_epoch: int):
        self.config, self.prepared, self.steps_per_epoch = config, prepared, steps_per_epoch
        self.epoch, self.order = None, None

    def batch(self, step: int) -> dict:
        epoch, position = divmod(step, self.steps_per_epoch)
        if epoch != self.epoch:
            size = self.steps_per_epoch * self.config.batch_size
            self.order = epoch_indices(self.config, self.prepared, epoch)[:size].reshape(
                self.steps_per_epoch, self.config.batch_size).astype(np.int32)
            self.epoch = epoch
        return {"indices": self.order[position]}


def _val_probabilities(config, states: list[TrainState], val: Split) -> np.ndarray:
    """The members' mean probabilities on val (one member: its own)."""
    return np.mean([predict_probabilities(state.apply_fn, inference_variables(state),
                                          val.images, batch_size=config.eval_batch_size)
                    for state in states], axis=0)


def _val_report(config, states: list[TrainState], val: Split) -> tuple[dict, float]:
    """(report, loss) on val of the members' mean probabilities."""
    return report_and_loss(_val_probabilities(config, states, val), val.labels,
                           classes.grouping(config.grouping).class_names)


def _end_of_epoch(config, states: list[TrainState], prepared: PreparedData, train_means: dict,
                  epoch: int) -> dict:
    """Evaluates val after an epoch; prints and returns the epoch's record."""
    report, val_loss = _val_report(config, states, prepared.val)
    record = {"epoch": epoch, "train_loss": train_means.get("loss", float("nan")),
              "train_accuracy": train_means.get("accuracy", float("nan")),
              "val_loss": val_loss, "val_accuracy": report["accuracy"],
              "val_macro_f1": report["macro_f1"]}
    print(f"epoch {epoch}/{config.num_epochs}: train loss {record['train_loss']:.4f} "
          f"acc {record['train_accuracy']:.4f} | val loss {val_loss:.4f} "
          f"acc {report['accuracy']:.4f} macro-F1 {report['macro_f1']:.4f}", flush=True)
    return record


def _final_report(config, workdir: pathlib.Path, states: list[TrainState],
                  prepared: PreparedData, best_step: int | None) -> dict:
    """Evaluates the final model (or ensemble) on val, prints the table, writes report.json
    (also scored without val's exact copies of training images, where it has some),
    confusion.png and curves.png."""
    grouping = classes.grouping(config.grouping)
    probs = _val_probabilities(config, states, prepared.val)
    report, loss = report_and_loss(probs, prepared.val.labels, grouping.class_names)
    reports = {"val": report}
    unseen = ~prepared.val_copies
    if unseen.any() and not unseen.all():
        reports["val_without_train_copies"], _ = report_and_loss(
            probs[unseen], prepared.val.labels[unseen], grouping.class_names)
    state = states[0]
    history = [r for r in read_history(workdir) if "val_accuracy" in r]
    out = {"val_accuracy": report["accuracy"], "val_macro_f1": report["macro_f1"],
           "val_loss": loss,
           "best_val_accuracy": max((r["val_accuracy"] for r in history), default=None)}
    if jax.process_index() == 0:
        label = " (SYNTHETIC data)" if prepared.synthetic_data else ""
        print(f"\nfinal model, val split{label}, grouping {grouping.name}:")
        print(metrics.format_report_table(report))
        if unseen_report := reports.get("val_without_train_copies"):
            print(metrics.format_without_copies(int(prepared.val_copies.sum()), "val",
                                                unseen_report["accuracy"],
                                                unseen_report["macro_f1"]))
        print(f"best val accuracy {out['best_val_accuracy']:.4f} at step {best_step}")
        (workdir / "report.json").write_text(json.dumps(
            {"data": prepared.source, "synthetic": prepared.synthetic_data,
             "grouping": grouping.name, "step": int(state.step), "best_step": best_step,
             "skipped_records": list(prepared.skipped_records),
             "reports": reports}, indent=1))
        plots.save_confusion_png(report["confusion"], grouping.class_names,
                                 workdir / "confusion.png",
                                 title=f"{config.model} val{label}: {report['accuracy']:.1%}")
        if history:
            plots.save_curves_png(history, workdir / "curves.png", keys=("loss", "accuracy"),
                                  title=f"{config.model}{label}")
    return out
