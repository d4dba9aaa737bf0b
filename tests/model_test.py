"""The linear layer: shapes, initialization, parameter count."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

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


@pytest.mark.slow
def test_hidden_layers_shapes_and_count():
  params = model.init_params(jax.random.key(0), 784, 10, hidden=(256, 128))
  assert [layer["w"].shape for layer in params["hidden"]] == [(784, 256),
                                                              (256, 128)]
  assert params["w"].shape == (128, 10)
  assert model.num_params(params) == ((784 * 256 + 256) + (256 * 128 + 128)
                                      + (128 * 10 + 10))
  assert model.logits(params, jnp.ones((5, 784))).shape == (5, 10)


@pytest.mark.slow
def test_phm_count_is_n_cubed_plus_dq_over_n():
  for d, q, n in ((784, 10, 2), (784, 10, 1), (250, 10, 5), (12, 6, 3)):
    params = model.init_params(jax.random.key(0), d, q, phm_n=n)
    assert model.num_params(params) == n**3 + d * q // n + q
    assert model.logits(params, jnp.ones((3, d))).shape == (3, q)
    assert model.output_weight(params).shape == (d, q)


def test_phm_weight_is_a_sum_of_kronecker_products():
  a = jax.random.normal(jax.random.key(1), (3, 3, 3))
  s = jax.random.normal(jax.random.key(2), (3, 4, 2))
  expected = sum(np.kron(np.asarray(a[i]), np.asarray(s[i])) for i in range(3))
  np.testing.assert_allclose(model.phm_weight(a, s), expected, rtol=1e-5,
                             atol=1e-6)


def test_phm_with_n_1_equals_a_dense_layer():
  params = model.init_params(jax.random.key(3), 20, 4, phm_n=1)
  dense = {"w": params["a"][0, 0, 0] * params["s"][0], "b": params["b"] + 0.5}
  params = {**params, "b": params["b"] + 0.5}
  x = jax.random.normal(jax.random.key(4), (6, 20))
  np.testing.assert_allclose(model.logits(params, x), model.logits(dense, x),
                             rtol=1e-6)
  # And its initial weights have the dense layer's scale.
  w = model.output_weight(model.init_params(jax.random.key(5), 784, 10,
                                            phm_n=2))
  assert 0.005 < float(jnp.std(w)) < 0.02


def test_phm_sizes_that_do_not_fit_are_explained():
  assert model.check_phm(2, (), 784, 10) is None
  message = model.check_phm(3, (), 784, 10)
  assert "--phm_n=3 must divide" in message and "possible: 1, 2" in message
  assert model.check_phm(5, (250,), 784, 10) is None


def test_bfloat16_compute_rounds_the_inputs_and_sums_in_float32():
  from softmax_jax import model as model_lib  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  params = {"w": jnp.asarray(rng.normal(0, 1, (64, 5)), jnp.float32),
            "b": jnp.asarray(rng.normal(0, 1, 5), jnp.float32)}
  x = jnp.asarray(rng.normal(0, 1, (8, 64)), jnp.float32)
  full = model_lib.logits(params, x)
  half = model_lib.logits(params, x, "bfloat16")
  assert half.dtype == jnp.float32
  rounded = (np.asarray(x.astype(jnp.bfloat16), np.float64)
             @ np.asarray(params["w"].astype(jnp.bfloat16), np.float64)
             + np.asarray(params["b"], np.float64))
  np.testing.assert_allclose(half, rounded, rtol=1e-5, atol=1e-5)
  assert not np.allclose(half, full, rtol=1e-6, atol=1e-6)  # it did round
  np.testing.assert_allclose(half, full, rtol=0.05, atol=0.1)


@pytest.mark.slow
def test_the_parameter_gradients_are_x_transpose_p_minus_y():
  """Through o = xW + b: dL/dW = x^T (P - Y) / B, dL/db = mean(P - Y), the
  textbook's gradients of the mean cross-entropy."""
  from softmax_jax import losses  # pylint: disable=g-import-not-at-top
  kx, kp, ky = jax.random.split(jax.random.key(4), 3)
  x = jax.random.uniform(kx, (32, 6))
  params = model.init_params(kp, 6, 4, init_scale=1.0)
  y = jax.random.randint(ky, (32,), 0, 4)
  grads = jax.grad(lambda p: jnp.mean(
      losses.cross_entropy(model.logits(p, x), y)))(params)
  residual = (jax.nn.softmax(x @ params["w"] + params["b"])
              - jax.nn.one_hot(y, 4))
  np.testing.assert_allclose(grads["w"], x.T @ residual / 32, rtol=1e-5,
                             atol=1e-7)
  np.testing.assert_allclose(grads["b"], residual.mean(0), rtol=1e-5,
                             atol=1e-7)
