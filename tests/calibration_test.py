"""Temperature scaling: the fitted T, its guarantees, its effect."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from softmax_jax import calibration
from softmax_jax import evaluation
from softmax_jax import losses
from softmax_jax.data import datasets


def _linear(seed, d=8, k=5, scale=1.0):
  rng = np.random.default_rng(seed)
  return {"w": (scale * rng.normal(size=(d, k))).astype(np.float32),
          "b": rng.normal(size=k).astype(np.float32)}


def _sampled(params, n, temperature, seed):
  """Features, and labels drawn from softmax(logits / temperature)."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, params["w"].shape[0])).astype(np.float32)
  o = (x @ params["w"] + params["b"]) / temperature
  p = np.exp(o - o.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  y = (rng.random((n, 1)) > np.cumsum(p, 1)).sum(1).astype(np.int32)
  return x, np.minimum(y, p.shape[1] - 1)


def _dataset(params, temperature, n=20_000, seed=0):
  x, y = _sampled(params, n, temperature, seed)
  x_test, y_test = _sampled(params, n // 4, temperature, seed + 1)
  return datasets.Dataset(name="t", x_train=x[:10], y_train=y[:10],
                          x_test=x_test, y_test=y_test,
                          class_names=tuple("abcde"), x_val=x, y_val=y)


def _nll(params, x, y, t):
  return float(evaluation.evaluate(params, x, y, temperature=t)["nll"])


@pytest.mark.parametrize("true_t", [0.4, 1.0, 3.0])
def test_recovers_the_temperature_that_generated_the_labels(true_t):
  params = _linear(0, scale=2.0)
  (fit,) = calibration.calibrate([params], _dataset(params, true_t))
  assert fit is not None
  assert fit["temperature"] == pytest.approx(true_t, rel=0.05)
  assert fit["val_nll_after"] <= fit["val_nll_before"]
  if true_t != 1.0:  # a model off by a temperature gets better on test too
    assert fit["test_nll_after"] < fit["test_nll_before"]
    assert fit["test_ece_after"] < fit["test_ece_before"]


@pytest.mark.slow
def test_the_fit_is_the_minimum_of_the_validation_nll():
  """No temperature on a fine grid does better (beyond float32 noise)."""
  params = _linear(1, scale=3.0)
  d = _dataset(params, 1.7, n=4_000)
  t, before, after = (float(v) for v in calibration.fit_temperature(
      params, d.x_val, d.y_val))
  # One program for the whole grid (each float temperature compiles one).
  grid = jax.vmap(lambda g: evaluation.evaluate(
      params, d.x_val, d.y_val, temperature=g)["nll"])(
          np.geomspace(0.5, 5, 200).astype(np.float32))
  assert after <= float(grid.min()) + 1e-6
  assert before == pytest.approx(_nll(params, d.x_val, d.y_val, 1.0), rel=1e-6)
  assert after == pytest.approx(_nll(params, d.x_val, d.y_val, t), rel=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("seed,scale", [(0, 0.0), (1, 0.01), (2, 1.0),
                                        (3, 30.0), (4, 300.0)])
def test_never_worse_than_t_1_always_positive_accuracy_unchanged(seed, scale):
  """Random models against labels unrelated to them, and a constant model
  (scale 0)."""
  rng = np.random.default_rng(seed)
  params = _linear(seed, scale=scale)
  x = rng.normal(size=(500, 8)).astype(np.float32)
  y = rng.integers(0, 5, 500).astype(np.int32)
  t, before, after = (float(v) for v in calibration.fit_temperature(
      params, x, y, chunk=128))
  assert t > 0 and np.isfinite(t)
  assert after <= before
  assert before == pytest.approx(_nll(params, x, y, 1.0), rel=1e-6)
  plain = evaluation.evaluate(params, x, y)
  scaled = evaluation.evaluate(params, x, y, temperature=t)
  assert float(scaled["accuracy"]) == float(plain["accuracy"])
  o = x @ params["w"] + params["b"]
  assert np.array_equal(np.argmax(losses.softmax(jnp.asarray(o) / t), -1),
                        np.argmax(o, -1))


@pytest.mark.gpu_smoke
def test_a_stack_fits_each_model_as_alone_and_skips_diverged_ones():
  params = [_linear(0, scale=2.0), _linear(2, scale=0.5), _linear(3)]
  params[2]["w"][0, 0] = np.nan
  d = _dataset(params[0], 2.0, n=3_000)
  fits = calibration.calibrate(params, d)
  assert fits[2] is None
  for p, fit in zip(params[:2], fits[:2], strict=True):
    (alone,) = calibration.calibrate([p], d)
    ece = {k for k in fit if "ece" in k}
    assert {k: fit[k] for k in fit.keys() - ece} == pytest.approx(
        {k: alone[k] for k in alone.keys() - ece}, rel=1e-5)
    # A confidence within an ulp of a bin's edge (this data has one, 1.3e-7
    # from 11/15) may fall on either side, stacked or alone: one example
    # moves ECE by at most 2 / N.
    for k in ece:
      assert fit[k] == pytest.approx(alone[k], abs=2 / len(d.x_test))
