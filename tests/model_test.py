"""The linear layer: shapes, initialization, parameter count."""

import jax
import jax.numpy as jnp
import numpy as np

from softmax_jax import model


def test_init_follows_d2l():
  params = model.init_params(jax.random.key(0), 784, 10)
  assert params["w"].shape == (784, 10) and params["b"].shape == (10,)
  assert jnp.all(params["b"] == 0)
  assert abs(float(jnp.std(params["w"])) - 0.01) < 0.0005  # 7,840 draws
  assert abs(float(jnp.mean(params["w"]))) < 0.0005
  assert model.num_params(params) == 7850


def test_same_key_same_params_other_key_other_params():
  a = model.init_params(jax.random.key(1), 5, 3)
  b = model.init_params(jax.random.key(1), 5, 3)
  c = model.init_params(jax.random.key(2), 5, 3)
  np.testing.assert_array_equal(a["w"], b["w"])
  assert not np.array_equal(a["w"], c["w"])


def test_logits_are_xw_plus_b():
  params = {"w": jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]),
            "b": jnp.array([0.5, -1.0])}
  x = jnp.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
  np.testing.assert_allclose(model.logits(params, x),
                             [[6.5, 7.0], [3.5, 3.0]])
  assert model.logits(params, jnp.zeros((7, 3))).shape == (7, 2)
