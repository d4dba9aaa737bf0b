"""The closed form of ridge regression on the one-hot code
(--optimizer=exact)."""

import dataclasses

import jax
import numpy as np
import pytest

from conftest import synthetic_dataset
from softmax_jax import runner
from softmax_jax import train
from softmax_jax.config import Config
from softmax_jax.data import datasets
from softmax_jax.errors import UserError
from softmax_jax.solvers import ridge

WEIGHT_DECAYS = (1e-1, 1e-2, 1e-3)
RIDGE = {"loss": "l2", "loss_input": "logits"}


def _direct(x, y, k, wd):
  """The normal equations of the objective, solved outright (float64)."""
  n, d = x.shape
  a = np.hstack([x, np.ones((n, 1))])
  penalty = n * wd * np.eye(d + 1)
  penalty[d, d] = 0  # b is not penalized
  wb = np.linalg.solve(a.T @ a + penalty, a.T @ np.eye(k)[y])
  return wb[:d], wb[d]


@pytest.mark.parametrize("n, d", [(300, 20), (40, 60)])  # primal, dual
def test_the_path_solves_the_normal_equations(n, d):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(n, d)).astype(np.float32)
  y = rng.integers(0, 5, n)
  for wd, solved in zip(WEIGHT_DECAYS,
                        ridge.solve_path(x, y, 5, WEIGHT_DECAYS), strict=True):
    w, b = _direct(x.astype(np.float64), y, 5, wd)
    np.testing.assert_allclose(solved["w"], w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(solved["b"], b, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.gpu_smoke
def test_the_closed_form_equals_lbfgs_on_the_same_objective():
  dataset = synthetic_dataset(n_train=3000, n_test=500, num_features=64,
                              num_classes=7, noise=60.0)
  exact = train.train_configs(
      [Config(optimizer="exact", weight_decay=wd, **RIDGE)
       for wd in WEIGHT_DECAYS], dataset).runs
  lbfgs = train.train_configs(
      [Config(optimizer="lbfgs", weight_decay=wd, tol=1e-6, **RIDGE)
       for wd in WEIGHT_DECAYS], dataset).runs
  for a, b in zip(exact, lbfgs, strict=True):
    ea, eb = a.history[-1], b.history[-1]
    assert ea["grad_norm"] < 1e-6  # the solution is stationary (KKT)
    assert ea["objective"] <= eb["objective"] * (1 + 1e-6)
    assert ea["objective"] == pytest.approx(eb["objective"], rel=1e-6)
    for p, q in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params),
                    strict=True):
      assert np.linalg.norm(p - q) <= 1e-3 * np.linalg.norm(p)


@pytest.mark.slow
@pytest.mark.gpu_smoke
def test_an_exact_sweep_end_to_end(tmp_path):
  """A path through runner: every output, the best strength chosen by
  validation accuracy, results.csv with the solution's columns."""
  dataset = synthetic_dataset(n_train=600, n_test=200, num_features=16,
                              num_classes=4)
  path = tmp_path / "data.npz"
  np.savez(path, x_train=dataset.x_train, y_train=dataset.y_train,
           x_test=dataset.x_test, y_test=dataset.y_test)
  configs = [Config(dataset=f"npz:{path}", optimizer="exact", weight_decay=wd,
                    **RIDGE) for wd in WEIGHT_DECAYS]
  summary = runner.run(configs, tmp_path / "run", verbose=False, figures=False)
  assert summary["converged"] and summary["iterations"] == 0
  assert summary["test_accuracy"] > 0.9
  header = (tmp_path / "run" / "results.csv").read_text().splitlines()[0]
  for column in ("objective", "grad_norm", "converged"):
    assert column in header


@pytest.mark.parametrize("overrides, message", [
    ({"loss": "xent"}, "--loss=l2 --loss_input=logits"),
    ({**RIDGE, "weight_decay": 0.0}, "weight_decay > 0"),
    ({**RIDGE, "weight_decay": 1e-3, "hidden": "8"}, "linear model"),
])
def test_what_the_closed_form_cannot_solve_is_refused(overrides, message):
  with pytest.raises(UserError, match=message):
    Config(optimizer="exact", **overrides).validate()


def test_full_batch_solvers_need_no_minibatch_and_report_their_check():
  """Fewer rows than the default batch size (256) are no problem for a
  solver without minibatches; the closed form is "converged" only where its
  float32 gradient check is below tol."""
  small = synthetic_dataset(n_train=200, n_test=50, num_features=8,
                            num_classes=3)
  with pytest.raises(UserError, match="larger than the training set"):
    train.check([Config()], small)
  for optimizer in ("lbfgs", "exact"):
    train.check([Config(optimizer=optimizer, weight_decay=1e-2, **(
        RIDGE if optimizer == "exact" else {}))], small)
  loose, tight = (train.train_configs([Config(
      optimizer="exact", weight_decay=1e-2, tol=tol, **RIDGE)], small).runs[0]
      .history[-1] for tol in (1e-3, 1e-30))
  assert loose["converged"] and loose["grad_norm"] < 1e-3
  assert not tight["converged"] and tight["grad_norm"] > 1e-30


@pytest.mark.parametrize("optimizer, penalty", [("lbfgs", "l2"),
                                               ("owlqn", "l1")])
def test_features_too_large_for_float32_are_refused_by_lbfgs(optimizer,
                                                            penalty):
  ds = synthetic_dataset(n_train=300, n_test=50, num_features=4,
                         num_classes=3)
  huge = dataclasses.replace(ds, x_train=ds.x_train.astype(np.float32) * 1e20)
  with pytest.raises(UserError, match="too large for float32 arithmetic"):
    train.train_configs([Config(optimizer=optimizer, penalty=penalty,
                                weight_decay=1e-2)], huge)


def test_the_variances_are_the_covariances_diagonal():
  x = np.random.default_rng(0).normal(3.0, 2.0, (1000, 7)).astype(np.float32)
  mean, cov = datasets.feature_covariance(x)
  mean_too, variances = datasets.feature_covariance(x, diagonal=True)
  np.testing.assert_array_equal(mean, mean_too)
  np.testing.assert_allclose(variances, np.diag(cov), rtol=1e-12)
  np.testing.assert_allclose(cov, np.cov(x.T, bias=True), rtol=1e-10)
