"""Full-batch L-BFGS: the optimum of the penalized objective, as scikit-learn's."""

import jax
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from conftest import synthetic_dataset
from softmax_jax import data
from softmax_jax import train
from softmax_jax.config import Config
from softmax_jax.errors import UserError

WEIGHT_DECAYS = (1e-1, 1e-2, 1e-3)


@pytest.fixture(scope="module")
def dataset():
  return synthetic_dataset(n_train=3000, n_test=500, num_features=64,
                           num_classes=7, noise=60.0)


@pytest.fixture(scope="module")
def path(dataset):
  """The three weight decays solved as one vmapped path."""
  configs = [Config(optimizer="lbfgs", weight_decay=wd, tol=1e-6)
             for wd in WEIGHT_DECAYS]
  return train.train_configs(configs, dataset).runs


def _objective(x, y, w, b, weight_decay):
  """mean cross-entropy + (weight_decay / 2) ||W||^2, in float64."""
  o = x @ w + b
  o = o - o.max(axis=1, keepdims=True)
  log_p = o - np.log(np.exp(o).sum(axis=1, keepdims=True))
  return -log_p[np.arange(len(y)), y].mean() + 0.5 * weight_decay * (w**2).sum()


@pytest.mark.parametrize("index", range(len(WEIGHT_DECAYS)))
def test_the_optimum_is_scikit_learns(dataset, path, index):
  """C = 1 / (weight_decay N), multinomial lbfgs at a tight tol: the same
  objective (1e-5 relative), predictions (>= 99.9%) and weights (1e-3)."""
  wd = WEIGHT_DECAYS[index]
  x = data.to_features(dataset.x_train).astype(np.float64)
  y = dataset.y_train
  sk = LogisticRegression(C=1 / (wd * len(x)), tol=1e-10, max_iter=10_000)
  sk.fit(x, y)
  run = path[index]
  w, b = (run.params[k].astype(np.float64) for k in ("w", "b"))
  ours, theirs = (_objective(x, y, w, b, wd),
                  _objective(x, y, sk.coef_.T, sk.intercept_, wd))
  assert abs(ours - theirs) <= 1e-5 * theirs
  assert run.history[-1]["objective"] == pytest.approx(ours, rel=1e-5)
  assert np.mean((x @ w + b).argmax(1) == sk.predict(x)) >= 0.999
  np.testing.assert_allclose(w, sk.coef_.T, rtol=0,
                             atol=1e-3 * np.abs(sk.coef_).max())
  assert np.linalg.norm(w - sk.coef_.T) <= 1e-3 * np.linalg.norm(sk.coef_)


def test_the_returned_gradient_is_below_tol(dataset, path):
  """KKT: where it says converged, the gradient of the objective, computed
  here again in float64 from the returned weights, is below tol (up to the
  float32 rounding of the solver's own evaluation)."""
  x = data.to_features(dataset.x_train).astype(np.float64)
  y = np.eye(dataset.num_classes)[dataset.y_train]
  for wd, run in zip(WEIGHT_DECAYS, path):
    last = run.history[-1]
    w, b = (run.params[k].astype(np.float64) for k in ("w", "b"))
    o = x @ w + b
    p = np.exp(o - o.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    grad = np.concatenate([(x.T @ (p - y) / len(x) + wd * w).ravel(),
                           ((p - y).mean(0)).ravel()])
    assert np.linalg.norm(grad) == pytest.approx(last["grad_norm"], rel=0.05,
                                                 abs=2e-6)
    assert last["converged"]
    assert np.linalg.norm(grad) < run.config.tol + 2e-6


def test_a_path_equals_each_strength_alone(dataset, path):
  for wd, run in zip(WEIGHT_DECAYS, path):
    alone = train.train_configs(
        [Config(optimizer="lbfgs", weight_decay=wd, tol=1e-6)], dataset).runs[0]
    # The same iterations up to float32 rounding (a vmapped pass sums in
    # another order), so the same optimum to the tolerance's precision.
    assert alone.history[-1]["converged"] and run.history[-1]["converged"]
    for p, q in zip(jax.tree.leaves(alone.params), jax.tree.leaves(run.params)):
      assert np.linalg.norm(p - q) <= 1e-3 * np.linalg.norm(q)


@pytest.mark.parametrize("loss", ["l2", "huber"])
def test_regression_losses_reach_a_stationary_point(dataset, loss):
  config = Config(optimizer="lbfgs", loss=loss, weight_decay=1e-3)
  last = train.train_configs([config], dataset).runs[0].history[-1]
  assert last["converged"] and last["grad_norm"] < config.tol
  assert last["test_accuracy"] > 0.8


def test_resume_after_a_stop_equals_an_uninterrupted_solve(dataset, tmp_path):
  """A path whose strong penalty converges within the first rounds, so that
  the rounds after the stop run on a smaller stack."""
  configs = [Config(optimizer="lbfgs", weight_decay=1.0, max_iters=80),
             Config(optimizer="lbfgs", weight_decay=1e-4, max_iters=80,
                    tol=1e-12)]  # (beyond float32: runs all 80)
  whole = train.train_configs(configs, dataset).runs
  assert whole[0].history[-1]["iterations"] <= 20 < 80 == whole[1].history[
      -1]["iterations"]
  asked = iter([False, False, True])  # stop after the third round
  with pytest.raises(train.StopRequested):
    train.train_configs(configs, dataset, checkpoint_dir=tmp_path,
                        checkpoint_every=0, should_stop=lambda: next(asked))
  resumed = train.train_configs(configs, dataset,
                                checkpoint_dir=tmp_path).runs
  for w, r in zip(whole, resumed):
    assert [h["iterations"] for h in r.history] == [
        h["iterations"] for h in w.history]
    assert r.history[-1]["objective"] == w.history[-1]["objective"]
    for p, q in zip(jax.tree.leaves(w.params), jax.tree.leaves(r.params)):
      np.testing.assert_array_equal(p, q)


def test_finished_strengths_stop_costing_passes(dataset):
  """A converged strength is no longer evaluated while the others go on:
  its evaluations stay where they were when it finished."""
  configs = [Config(optimizer="lbfgs", weight_decay=1.0, max_iters=60),
             Config(optimizer="lbfgs", weight_decay=1e-4, max_iters=60,
                    tol=1e-12)]
  strong, weak = (r.history for r in train.train_configs(configs, dataset).runs)
  done = next(i for i, h in enumerate(strong) if h["finished"])
  assert done < len(strong) - 1 and strong[-1]["converged"]
  assert {h["evaluations"] for h in strong[done:]} == {strong[done]["evaluations"]}
  assert weak[-1]["evaluations"] > weak[done]["evaluations"]


def test_l1_and_hidden_layers_are_refused():
  with pytest.raises(UserError, match="smooth"):
    Config(optimizer="lbfgs", loss="l1").validate()
  with pytest.raises(UserError, match="linear model"):
    Config(optimizer="lbfgs", hidden="16").validate()
  with pytest.raises(UserError, match="max_iters"):
    Config(optimizer="lbfgs", max_iters=0).validate()
  with pytest.raises(UserError, match="tol"):
    Config(optimizer="lbfgs", tol=0).validate()


def test_the_first_round_on_real_fashion_mnist_descends(fashion_mnist):
  """From W = 0 (ln 10) the first 10 iterations on the real data descend
  (a start compiled with constant zeros once gave NaN here)."""
  last = train.train_configs(
      [Config(optimizer="lbfgs", weight_decay=1e-3, max_iters=10)],
      fashion_mnist).runs[0].history[-1]
  assert np.isfinite(last["objective"]) and last["objective"] < np.log(10) / 2
  assert last["iterations"] == 10 and last["test_accuracy"] > 0.7
