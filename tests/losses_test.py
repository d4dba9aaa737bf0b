"""Softmax, log-softmax and the losses: hand-checked values, gradients,
consistency."""

import jax
import jax.numpy as jnp
from jax.test_util import check_grads
import numpy as np
import optax
import pytest

from softmax_jax import losses

EXTREME_LOGITS = jnp.array([
    [1e4, -1e4, 0.0],
    [-1e4, -1e4, -1e4],
    [1e4, 1e4, 1e4],
    [3.0, 1.0, 0.2],
], jnp.float32)


def test_log_softmax_is_finite_and_exact_at_extreme_logits():
  log_p = losses.log_softmax(EXTREME_LOGITS)
  assert jnp.all(jnp.isfinite(log_p))
  np.testing.assert_allclose(log_p, jax.nn.log_softmax(EXTREME_LOGITS),
                             rtol=1e-6, atol=1e-6)
  # Hand-computed: one logit 2e4 above the rest takes all the mass.
  np.testing.assert_allclose(log_p[0], [0.0, -2e4, -1e4], rtol=1e-6)
  np.testing.assert_allclose(log_p[1], np.full(3, -np.log(3.0)), rtol=1e-6)


def test_cross_entropy_is_exact_where_the_logits_spread_overflows():
  """o = [3e38, -3e38]: the other class's log p is -inf in float32, but the
  label's is exact (0 for class 0, -inf for class 1), never NaN."""
  logits = jnp.array([[3e38, -3e38], [3e38, -3e38]], jnp.float32)
  loss = losses.cross_entropy(logits, jnp.array([0, 1]))
  assert loss.tolist() == [0.0, float("inf")]


def test_naive_formula_overflows_where_ours_does_not():
  naive = jnp.log(jnp.exp(EXTREME_LOGITS) /
                  jnp.sum(jnp.exp(EXTREME_LOGITS), -1, keepdims=True))
  # the test would catch a naive version
  assert not jnp.all(jnp.isfinite(naive))


def test_softmax_rows_sum_to_one_and_match_jax():
  logits = jnp.concatenate([
      EXTREME_LOGITS,
      20 * jax.random.normal(jax.random.key(0), (64, 3))])
  p = losses.softmax(logits)
  assert jnp.all(jnp.isfinite(p)) and jnp.all(p >= 0)
  np.testing.assert_allclose(jnp.sum(p, -1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(p, jax.nn.softmax(logits), rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(losses.softmax(jnp.array([[0.0, jnp.log(3.0)]])),
                             [[0.25, 0.75]], rtol=1e-6)


def _batch(key, b=8, k=5, scale=3.0):
  k1, k2 = jax.random.split(key)
  return (scale * jax.random.normal(k1, (b, k)),
          jax.random.randint(k2, (b,), 0, k))


@pytest.mark.parametrize("name", list(losses.LOSSES))
def test_every_loss_is_per_example(name):
  logits, labels = _batch(jax.random.key(1))
  out = losses.LOSSES[name](logits, labels)
  assert out.shape == (8,) and jnp.all(jnp.isfinite(out)) and jnp.all(out >= 0)


def test_cross_entropy_by_hand():
  logits = jnp.array([[2.0, 1.0, 0.1]])
  expected = -np.log(np.exp(2.0) / np.exp([2.0, 1.0, 0.1]).sum())
  np.testing.assert_allclose(losses.cross_entropy(logits, jnp.array([0])),
                             [expected], rtol=1e-6)
  # Extreme logits: the loss of a wrong, confident prediction is the gap.
  np.testing.assert_allclose(
      losses.cross_entropy(jnp.array([[1e4, -1e4]]), jnp.array([1])), [2e4],
      rtol=1e-6)


@pytest.mark.slow
def test_xent_gradient_is_p_minus_y_over_n():
  """The textbook derivation: d mean(-log p_y) / d o = (softmax(o) -
  onehot(y)) / N."""
  logits, labels = _batch(jax.random.key(2), b=16, k=10)
  grad = jax.grad(lambda o: jnp.mean(losses.cross_entropy(o, labels)))(logits)
  expected = (jax.nn.softmax(logits) - jax.nn.one_hot(labels, 10)) / 16
  np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("loss_input", losses.LOSS_INPUTS)
@pytest.mark.parametrize("name", list(losses.LOSSES))
def test_gradients_numerically(name, loss_input):
  logits, labels = _batch(jax.random.key(3), scale=1.0)
  # Keep L1 and Huber away from their kinks, where finite differences lie.
  def fn(o):
    return losses.LOSSES[name](o, labels, huber_delta=0.3,
                               loss_input=loss_input)

  check_grads(fn, (logits,), order=1, modes=["fwd", "rev"], eps=1e-3,
              atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("name", list(losses.LOSSES))
def test_jit_equals_no_jit(name):
  logits, labels = _batch(jax.random.key(4))
  fn = losses.LOSSES[name]
  np.testing.assert_allclose(jax.jit(fn)(logits, labels), fn(logits, labels),
                             rtol=1e-6)


@pytest.mark.slow
def test_integer_labels_agree_with_one_hot_formulations():
  logits, labels = _batch(jax.random.key(5), b=32, k=7)
  y = jax.nn.one_hot(labels, 7)
  np.testing.assert_allclose(losses.cross_entropy(logits, labels),
                             optax.softmax_cross_entropy(logits, y), rtol=1e-5)
  np.testing.assert_allclose(
      losses.cross_entropy(logits, labels),
      optax.softmax_cross_entropy_with_integer_labels(logits, labels),
      rtol=1e-5)
  p = jax.nn.softmax(logits)
  np.testing.assert_allclose(losses.squared_error(logits, labels),
                             jnp.sum(optax.l2_loss(p, y), -1), rtol=1e-5)
  np.testing.assert_allclose(losses.absolute_error(logits, labels),
                             jnp.sum(jnp.abs(p - y), -1), rtol=1e-5)
  np.testing.assert_allclose(
      losses.huber(logits, labels, huber_delta=0.2),
      jnp.sum(optax.huber_loss(p, y, delta=0.2), -1), rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(
      losses.huber(logits, labels, huber_delta=0.2, loss_input="logits"),
      jnp.sum(optax.huber_loss(logits, y, delta=0.2), -1), rtol=1e-5)
  np.testing.assert_allclose(
      losses.squared_error(logits, labels, loss_input="logits"),
      jnp.sum(optax.l2_loss(logits, y), -1), rtol=1e-5)


def test_regression_losses_by_hand():
  logits = jnp.array([[0.0, jnp.log(3.0)]])  # p = [0.25, 0.75]
  label = jnp.array([1])  # y = [0, 1]: residuals 0.25 and -0.25
  np.testing.assert_allclose(losses.squared_error(logits, label),
                             [0.5 * (0.0625 + 0.0625)], rtol=1e-6)
  np.testing.assert_allclose(losses.absolute_error(logits, label), [0.5],
                             rtol=1e-6)
  # delta 0.1 < 0.25: both residuals in the linear part, 0.1 * (0.25 - 0.05).
  np.testing.assert_allclose(losses.huber(logits, label, huber_delta=0.1),
                             [2 * 0.1 * (0.25 - 0.05)], rtol=1e-5)


@pytest.mark.slow
def test_huber_default_differs_from_l2_and_equals_it_for_delta_one():
  logits, labels = _batch(jax.random.key(6), b=64)
  l2 = losses.squared_error(logits, labels)
  assert losses.DEFAULT_HUBER_DELTA < 1
  assert not np.allclose(losses.huber(logits, labels), l2, rtol=1e-3)
  np.testing.assert_allclose(losses.huber(logits, labels, huber_delta=1.0), l2,
                             rtol=1e-6)  # |p - y| <= 1 always
  assert not np.allclose(  # gradients differ too, so training differs
      jax.grad(lambda o: losses.huber(o, labels).sum())(logits),
      jax.grad(lambda o: losses.squared_error(o, labels).sum())(logits),
      rtol=1e-3)


def test_two_class_softmax_regression_is_logistic_regression():
  """p(y=1) = softmax(o)_1 = sigmoid(o_1 - o_0); the losses agree too."""
  logits, labels = _batch(jax.random.key(7), b=32, k=2)
  z = logits[:, 1] - logits[:, 0]
  np.testing.assert_allclose(losses.softmax(logits)[:, 1], jax.nn.sigmoid(z),
                             rtol=1e-5)
  np.testing.assert_allclose(losses.cross_entropy(logits, labels),
                             optax.sigmoid_binary_cross_entropy(z, labels),
                             rtol=1e-5, atol=1e-6)


def test_bad_shapes_and_dtypes_are_refused():
  with pytest.raises(ValueError, match="expected logits"):
    losses.cross_entropy(jnp.zeros((4, 3)), jnp.zeros((5,), jnp.int32))
  with pytest.raises(TypeError, match="integers"):
    losses.squared_error(jnp.zeros((4, 3)), jnp.zeros((4,)))
  with pytest.raises(ValueError, match="loss_input"):
    losses.absolute_error(jnp.zeros((4, 3)), jnp.zeros((4,), jnp.int32),
                          loss_input="probabilities")
