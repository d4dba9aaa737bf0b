"""The optimizers: registry names, traced learning rate, weight decay on W
only."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from softmax_jax.solvers import optimizers


def _params():
  return {"w": jnp.ones((3, 2)), "b": jnp.ones((2,))}


def test_sgd_step_is_minus_lr_times_gradient():
  tx = optimizers.make_optimizer("sgd", 0.5)
  params = _params()
  grads = {"w": jnp.full((3, 2), 2.0), "b": jnp.full((2,), -4.0)}
  updates, _ = tx.update(grads, tx.init(params), params)
  new = optax.apply_updates(params, updates)
  np.testing.assert_allclose(new["w"], 0.0)  # 1 - 0.5 * 2
  np.testing.assert_allclose(new["b"], 3.0)  # 1 + 0.5 * 4


def test_weight_decay_shrinks_w_but_not_b():
  tx = optimizers.make_optimizer("sgd", 0.1, weight_decay=0.5)
  params = _params()
  zero = {"w": jnp.zeros((3, 2)), "b": jnp.zeros((2,))}
  updates, _ = tx.update(zero, tx.init(params), params)
  new = optax.apply_updates(params, updates)
  np.testing.assert_allclose(new["w"], 1 - 0.1 * 0.5)
  np.testing.assert_allclose(new["b"], 1.0)


def test_learning_rate_is_state_not_constant():
  tx = optimizers.make_optimizer("adam", 0.01, weight_decay=0.001)
  state = tx.init(_params())
  assert float(state.hyperparams["learning_rate"]) == pytest.approx(0.01)
  assert float(state.hyperparams["weight_decay"]) == pytest.approx(0.001)


@pytest.mark.parametrize("name", list(optimizers.OPTIMIZERS))
def test_every_optimizer_descends_a_quadratic(name):
  tx = optimizers.make_optimizer(name, 0.05)
  params = _params()
  state = tx.init(params)
  for _ in range(50):
    grads = params  # gradient of |params|^2 / 2
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  assert float(jnp.abs(params["w"]).max()) < 0.5


@pytest.mark.parametrize("schedule", list(optimizers.SCHEDULES))
def test_schedule_scales_each_sgd_step(schedule):
  """With gradient 1, step t moves w by exactly lr * factor(t)."""
  total, lr = 20, 0.5
  tx = optimizers.make_optimizer("sgd", lr, schedule=schedule,
                                 total_steps=total)
  params = {"w": jnp.zeros(()), "b": jnp.zeros(())}
  state = tx.init(params)
  steps = []
  for _ in range(total):
    updates, state = tx.update({"w": jnp.ones(()), "b": jnp.ones(())}, state,
                               params)
    steps.append(-float(updates["w"]) / lr)
  t = np.arange(total)
  expected = {
      "constant": np.ones(total),
      "cosine": 0.5 * (1 + np.cos(np.pi * t / total)),
      "warmup_cosine": np.where(
          t < 1, t / 1, 0.5 * (1 + np.cos(np.pi * (t - 1) / (total - 1)))),
  }[schedule]
  np.testing.assert_allclose(steps, expected, rtol=1e-5, atol=1e-6)
  if schedule != "constant":
    assert steps[-1] < 0.05  # decayed to (nearly) zero by the end


@pytest.mark.parametrize("schedule", list(optimizers.SCHEDULES))
def test_a_run_of_one_step_takes_a_full_step(schedule):
  tx = optimizers.make_optimizer("sgd", 0.5, schedule=schedule, total_steps=1)
  params = {"w": jnp.zeros(()), "b": jnp.zeros(())}
  updates, _ = tx.update({"w": jnp.ones(()), "b": jnp.ones(())},
                         tx.init(params), params)
  assert float(updates["w"]) == pytest.approx(-0.5)
