"""fer_jax.loop on a toy task: rollback on NaN, exact resume, the run guard, divergence."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fer_jax import loop, parallel
from fer_jax.checkpoint import Checkpointer
from fer_jax.errors import FerError

OPTIMIZER = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)


def toy_task(num_steps=6, poison_at=-1, poison_above_lr=0.075, config=None, batch=None):
    """Fits w to the step number; the loss is NaN at step ``poison_at`` while the learning
    rate is above ``poison_above_lr`` (so a rollback with a lower rate gets past it)."""
    placement = parallel.make_placement("jit")

    def init_state():
        w = jnp.zeros(2)
        return {"w": w, "opt_state": OPTIMIZER.init(w), "step": jnp.zeros((), jnp.int32)}

    def step(state, batch, rng, scale):
        noise = jax.random.normal(rng, (2,)) * 1e-3

        def loss_fn(w):
            loss = scale * jnp.mean((w + noise - batch["x"]) ** 2)
            poisoned = (state["step"] == poison_at) & (
                state["opt_state"].hyperparams["learning_rate"] > poison_above_lr)
            return jnp.where(poisoned, jnp.nan, loss)

        loss, grads = jax.value_and_grad(loss_fn)(state["w"])
        updates, opt_state = OPTIMIZER.update(grads, state["opt_state"])
        return ({"w": optax.apply_updates(state["w"], updates), "opt_state": opt_state,
                 "step": state["step"] + 1}, {"loss": loss})

    task = loop.Task(
        name="toy", config=config or {"learning_rate": 0.1, "log_every": 1}, seed=0,
        num_steps=num_steps, batch_size=4, init_state=init_state, state_template=init_state,
        step=parallel.compile_step(step, placement, num_consts=1),
        consts=(placement.replicate(np.float32(1.0)),),
        batch=batch or (lambda step: {"x": np.full((4, 2), float(step), np.float32)}),
        guard_ignores=("log_every",))
    return task, placement


SCHEDULE = loop.Schedule(log_every=1, checkpoint_every=2, keep_checkpoints=10, progress=False)


def run_toy(workdir, **task_options) -> dict:
    task, placement = toy_task(**task_options)
    return loop.run(task, workdir, placement, SCHEDULE)


def records(workdir):
    """metrics.jsonl without the timing fields."""
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "images_per_sec"} for line in lines]


def test_nan_rolls_back_lowers_the_learning_rate_and_saves_only_finite_states(tmp_path):
    summary = run_toy(tmp_path, poison_at=3)
    assert summary["step"] == 6 and summary["rollbacks"] == 1
    assert loop.injected_hyperparameters(summary["state"]) == {"learning_rate": pytest.approx(0.05)}
    events = [r for r in records(tmp_path) if r.get("event") == "rollback"]
    assert len(events) == 1 and events[0]["step"] == 2 and events[0]["bad_step"] == 4
    task, _ = toy_task()
    with Checkpointer(tmp_path) as checkpoints:
        assert checkpoints.steps() == [0, 2, 4, 6]
        for step in checkpoints.steps():
            assert loop.is_finite(checkpoints.restore(task.state_template(), step).state)


def test_endless_divergence_stops_after_the_allowed_rollbacks(tmp_path):
    with pytest.raises(loop.DivergedError, match="after 3 rollbacks"):
        run_toy(tmp_path, poison_at=1, poison_above_lr=0.0)


class Killed(Exception):
    """Stands in for the process dying."""


def test_a_killed_and_resumed_run_equals_the_uninterrupted_one(tmp_path):
    reference = run_toy(tmp_path / "reference")

    def dying(step):
        if step == 5:  # after the checkpoint at 4, before the one at 6
            raise Killed
        return {"x": np.full((4, 2), float(step), np.float32)}

    with pytest.raises(Killed):
        run_toy(tmp_path / "resumed", batch=dying)
    resumed = run_toy(tmp_path / "resumed")
    np.testing.assert_array_equal(resumed["state"]["w"], reference["state"]["w"])
    assert records(tmp_path / "resumed") == records(tmp_path / "reference")


def test_the_run_guard_refuses_a_changed_config_but_not_presentation_keys(tmp_path):
    run_toy(tmp_path)
    run_toy(tmp_path, config={"learning_rate": 0.1, "log_every": 5})
    with pytest.raises(FerError, match=r"changed: learning_rate\)"):
        run_toy(tmp_path, config={"learning_rate": 0.2, "log_every": 1})
