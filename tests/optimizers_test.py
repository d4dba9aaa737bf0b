"""The optimizers: registry names, traced learning rate, weight decay on W only."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from softmax_jax import optimizers


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
