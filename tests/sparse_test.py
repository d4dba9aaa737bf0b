"""Sparse probes: L1 and elastic-net penalties, OWL-QN's exact solutions and
their certificate, lambda_max, and the minibatch solvers' proximal step."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from conftest import synthetic_dataset
from conftest import write_cache
from softmax_jax import runner
from softmax_jax import SoftmaxRegression
from softmax_jax import sweep
from softmax_jax import train
from softmax_jax.config import Config
from softmax_jax.data import datasets
from softmax_jax.errors import UserError
from softmax_jax.outputs import workdir as workdir_lib
from softmax_jax.solvers import lbfgs
from softmax_jax.solvers import objective
from softmax_jax.solvers import optimizers


@pytest.fixture(scope="module")
def dataset():
  return synthetic_dataset(n_train=1200, n_test=300, num_features=36,
                           num_classes=5, noise=70.0)


@pytest.fixture(scope="module")
def digits():
  """scikit-learn's 8 x 8 digits in [0, 1] (1,797 x 64, 10 classes)."""
  x, y = load_digits(return_X_y=True)
  return x / 16, y


def _fit(configs, dataset):
  return [r.history[-1] for r in train.train_configs(configs, dataset).runs]


def _owlqn(weight_decay, **kw):
  return Config(optimizer="owlqn", penalty=kw.pop("penalty", "l1"),
                weight_decay=weight_decay, **kw).validate()


def test_the_proximal_operator_on_hand_made_cases():
  w = jnp.array([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0])
  np.testing.assert_array_equal(optimizers.soft_threshold(w, 1.0),
                                [-2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0])
  np.testing.assert_array_equal(optimizers.soft_threshold(w, 0.0), w)


def test_the_pseudo_gradient_is_the_smallest_subgradient():
  """Away from 0 the gradient of the side theta is on; at 0, the side along
  which the objective descends, or 0 where |g| <= l1 (the optimality
  condition of that entry)."""
  theta = jnp.array([[1.0, -1.0, 0.0, 0.0, 0.0, 0.0]])
  grad = jnp.array([[0.5, 0.5, 0.5, -2.0, 2.0, 0.3]])
  l1 = jnp.full((1, 6), 1.0)
  np.testing.assert_allclose(lbfgs.pseudo_gradient(theta, grad, l1),
                             [[1.5, -0.5, 0.0, -1.0, 1.0, 0.0]])
  np.testing.assert_array_equal(lbfgs.pseudo_gradient(theta, grad, None),
                                grad)


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["xent", "l2"])
def test_lambda_max_is_where_the_weights_leave_zero(dataset, loss):
  lam = objective.lambda_max(dataset, Config(penalty="l1", loss=loss))
  above, below = _fit([_owlqn(1.02 * lam, loss=loss),
                       _owlqn(0.9 * lam, loss=loss)], dataset)
  assert above["nonzero"] == 0 and above["converged"]
  assert below["nonzero"] > 0 and below["converged"]
  assert above["lambda_max"] == pytest.approx(lam, rel=1e-6)
  # The elastic net's is 1 / rho as large; l2 has none.
  assert objective.lambda_max(
      dataset, Config(penalty="elasticnet", l1_ratio=0.25, loss=loss)
  ) == pytest.approx(4 * lam)
  assert objective.lambda_max(dataset, Config()) == np.inf


@pytest.mark.slow
@pytest.mark.gpu_smoke
def test_a_path_equals_each_strength_solved_alone(dataset):
  strengths = (3e-2, 1e-2, 3e-3)
  path = _fit([_owlqn(s) for s in strengths], dataset)
  for s, solved in zip(strengths, path, strict=True):
    alone, = _fit([_owlqn(s)], dataset)
    assert solved["converged"] and alone["converged"]
    assert solved["objective"] == pytest.approx(alone["objective"], rel=1e-5)
    assert abs(solved["nonzero"] - alone["nonzero"]) <= 2
  # Weaker penalties keep more weights.
  assert path[0]["nonzero"] < path[1]["nonzero"] < path[2]["nonzero"]


@pytest.mark.gpu_smoke
def test_the_certificate_is_below_tol_at_convergence_and_above_it_early(
    dataset):
  early, done = _fit([_owlqn(3e-3, max_iters=3), _owlqn(3e-3)], dataset)
  assert not early["converged"] and early["grad_norm"] > 1e-5
  assert done["converged"] and done["grad_norm"] < 1e-5
  assert done["objective"] < early["objective"]
  assert 0 < done["features_used"] <= 36 and done["nonzero"] <= 36 * 5


def _model_kkt(w, b, x, y, l1):
  """The KKT violation of mean xent + l1 ||W||_1 at the model's (W, b),
  in float64: the norm of the smallest subgradient (b unpenalized)."""
  z = x @ w + b
  p = np.exp(z - z.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  r = (p - np.eye(w.shape[1])[y]) / len(y)
  g_w, g_b = x.T @ r, r.sum(0)
  at_zero = np.sign(g_w) * np.maximum(np.abs(g_w) - l1, 0)
  pseudo = np.where(w > 0, g_w + l1, np.where(w < 0, g_w - l1, at_zero))
  return float(np.sqrt(np.sum(pseudo**2) + np.sum(g_b**2)))


def test_the_certificate_is_the_models_kkt_violation_not_the_centred_ones():
  """OWL-QN solves in centred variables (b + mean W); its grad_norm, and
  the stop at tol, are the model's (W, b) KKT violation, which differs
  from the centred one's by mean x grad_b: features of mean 3 here (it
  read 9.1e-6 where the model's was 3.1e-5)."""
  rng = np.random.default_rng(0)
  y = rng.integers(0, 3, 400).astype(np.int32)
  x = (3 + rng.normal(size=(400, 20)) + 0.8 * np.eye(3, 20)[y]).astype(
      np.float32)
  ds = datasets.Dataset(name="shifted", x_train=x, y_train=y, x_test=x[:10],
                        y_test=y[:10], class_names=("a", "b", "c"))
  for fraction in (0.1, 0.01):
    config = _owlqn(fraction, weight_decay_unit="lambda_max", tol=1e-5)
    run = train.train_configs([config], ds).runs[0]
    last = run.history[-1]
    lam = fraction * objective.lambda_max(ds, config)
    kkt = _model_kkt(np.float64(run.params["w"]), np.float64(run.params["b"]),
                     np.float64(x), y, lam)
    assert last["converged"] and kkt < 1.05e-5, (last["grad_norm"], kkt)
    assert last["grad_norm"] == pytest.approx(kkt, rel=0.05, abs=3e-7)


@pytest.mark.slow
@pytest.mark.parametrize("penalty", ["l1", "elasticnet"])
def test_the_optimum_of_scikit_learns_saga(digits, penalty):
  """The estimator's objective within 1e-5 of saga's at tol 1e-8, or below
  it, the same weights zero, the same predictions."""
  x, y = digits
  c = 0.3
  ours = SoftmaxRegression(C=c, penalty=penalty, l1_ratio=0.5).fit(x, y)
  rho = 1.0 if penalty == "l1" else 0.5
  theirs = LogisticRegression(C=c, l1_ratio=rho, solver="saga", tol=1e-8,
                              max_iter=100000).fit(x, y)

  def value(m):
    z = x @ m.coef_.T + m.intercept_
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return (-c * log_p[np.arange(len(y)), y].sum()
            + rho * np.abs(m.coef_).sum()
            + (1 - rho) / 2 * (m.coef_**2).sum())

  assert ours.converged_ and ours.grad_norm_ < ours.tol
  assert value(ours) <= value(theirs) * (1 + 1e-5)
  assert np.mean((ours.coef_ == 0) == (theirs.coef_ == 0)) > 0.99
  assert np.mean(ours.predict(x) == theirs.predict(x)) >= 0.999


@pytest.mark.slow
def test_the_elastic_net_at_rho_0_is_the_l2_optimum(dataset):
  enet, = _fit([_owlqn(1e-2, penalty="elasticnet", l1_ratio=0.0)], dataset)
  l2, = _fit([Config(optimizer="lbfgs", weight_decay=1e-2)], dataset)
  assert enet["converged"] and l2["converged"]
  assert enet["objective"] == pytest.approx(l2["objective"], rel=1e-6)


@pytest.mark.slow
@pytest.mark.gpu_smoke
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_the_minibatch_proximal_step_gives_exact_zeros(dataset, optimizer):
  lr = 0.5 if optimizer == "sgd" else 0.01
  common = {"optimizer": optimizer, "lr": lr, "epochs": 5, "batch_size": 64,
            "weight_decay": 1e-2}
  runs = train.train_configs([Config(penalty="l1", **common),
                              Config(**common)], dataset).runs
  sparse, dense = (r.params["w"] for r in runs)
  assert (sparse == 0).sum() > 0.2 * sparse.size
  assert (dense == 0).sum() == 0
  assert runs[0].history[-1]["nonzero"] == (sparse != 0).sum()
  assert runs[0].history[-1]["test_accuracy"] > 0.5


def test_the_smooth_solvers_refuse_an_l1_penalty():
  with pytest.raises(UserError, match="use --optimizer=owlqn"):
    Config(optimizer="lbfgs", penalty="l1").validate()
  with pytest.raises(UserError, match="use --optimizer=owlqn"):
    Config(optimizer="exact", loss="l2", loss_input="logits",
           weight_decay=1.0, penalty="elasticnet").validate()
  with pytest.raises(UserError, match="--l1_ratio must be in"):
    Config(penalty="elasticnet", l1_ratio=1.5).validate()
  with pytest.raises(UserError, match="choose one of: l2, l1, elasticnet"):
    Config(penalty="lasso").validate()


def test_a_fold_has_its_own_lambda_max(dataset):
  """lambda_max of a configuration that leaves a fold out counts only the
  rows it trains on."""
  folds = np.arange(len(dataset.y_train)) % 2
  both = dataclasses.replace(dataset, folds=folds)
  half = dataclasses.replace(dataset, x_train=dataset.x_train[folds == 1],
                             y_train=dataset.y_train[folds == 1])
  assert objective.lambda_max(both, Config(penalty="l1", fold=0)) == (
      pytest.approx(objective.lambda_max(half, Config(penalty="l1")),
                    rel=1e-6))
  assert datasets.train_weights(both) is not None


@pytest.mark.slow
def test_a_sparse_path_reports_its_certificates_and_sparsity(tmp_path):
  """A run of the path writes each strength's certificate, sparsity and
  lambda_max to results.csv, and the best's to summary.json and
  report.md."""
  write_cache(tmp_path / "data", synthetic_dataset())
  base = Config(data_dir=str(tmp_path / "data"), optimizer="owlqn",
                penalty="l1", val_fraction=0.2)
  configs = sweep.expand(base, sweep.axis("weight_decay", [1.0, 1e-2, 1e-3]))
  summary = runner.run(configs, tmp_path / "run", verbose=False)
  rows = workdir_lib.read_results(tmp_path / "run")
  assert {"grad_norm", "converged", "nonzero", "features_used",
          "lambda_max"} <= set(rows[0])
  assert [r["converged"] for r in rows] == ["True"] * 3
  assert int(rows[0]["nonzero"]) == 0 < int(rows[2]["nonzero"])
  lam = float(rows[0]["lambda_max"])
  assert 1e-2 < lam < 1.0 and all(float(r["lambda_max"]) == lam
                                  for r in rows)
  assert summary["grad_norm"] < base.tol and summary["nonzero"] > 0
  report = (tmp_path / "run" / "report.md").read_text()
  assert "| certificate: gradient norm (KKT violation) |" in report
  assert f"| input features used | {summary['features_used']} |" in report


@pytest.mark.slow
def test_a_path_in_units_of_lambda_max(tmp_path):
  """--weight_decay_unit=lambda_max: each strength a fraction of the
  training rows' lambda_max (just above 1: W = 0); the results and the
  refit hold them as lambda, and the refit keeps the sweep's lambda (its
  own data's lambda_max is another)."""
  write_cache(tmp_path / "data", synthetic_dataset())
  base = Config(data_dir=str(tmp_path / "data"), optimizer="owlqn",
                penalty="elasticnet", l1_ratio=0.7, val_fraction=0.2,
                weight_decay_unit="lambda_max")
  configs = sweep.expand(base, sweep.axis("weight_decay", [1.01, 0.05]))
  runner.run(configs, tmp_path / "run", refit=True, verbose=False,
             figures=False)
  rows = workdir_lib.read_results(tmp_path / "run")
  lam = float(rows[0]["lambda_max"])
  recorded = workdir_lib.read_configs(tmp_path / "run")
  assert [c["weight_decay"] for c in recorded] == pytest.approx(
      [1.01 * lam, 0.05 * lam], rel=1e-6)
  assert {c["weight_decay_unit"] for c in recorded} == {"absolute"}
  assert int(rows[0]["nonzero"]) == 0 < int(rows[1]["nonzero"])
  refit = workdir_lib.read_configs(tmp_path / "run" / "refit")[0]
  assert refit["weight_decay"] == pytest.approx(0.05 * lam, rel=1e-6)
  with pytest.raises(UserError, match="lambda_max needs an L1 part"):
    Config(weight_decay_unit="lambda_max", weight_decay=0.5).validate()
  with pytest.raises(UserError, match="choose one of: absolute, lambda_max"):
    Config(weight_decay_unit="relative").validate()


@pytest.mark.slow
@pytest.mark.parametrize("penalty,rho", [("l1", 1.0), ("elasticnet", 0.5)])
def test_two_classes_are_scikit_learns_binary_model(penalty, rho):
  """The symmetric two-class softmax at C with an L1 part is the logistic
  model at C' = 2 C / (1 + rho), l1_ratio 2 rho / (1 + rho) (C at l1)."""
  from sklearn.datasets import load_breast_cancer  # pylint: disable=g-import-not-at-top
  x, y = load_breast_cancer(return_X_y=True)
  x = (x - x.mean(axis=0)) / x.std(axis=0)
  ours = SoftmaxRegression(C=0.1, penalty=penalty, l1_ratio=rho).fit(x, y)
  theirs = LogisticRegression(C=0.2 / (1 + rho), l1_ratio=2 * rho / (1 + rho),
                              solver="saga", tol=1e-10,
                              max_iter=100000).fit(x, y)
  assert ours.converged_ and ours.coef_.shape == (1, 30)
  np.testing.assert_array_equal(ours.coef_ == 0, theirs.coef_ == 0)
  np.testing.assert_allclose(ours.coef_, theirs.coef_, atol=2e-3)
  assert np.mean(ours.predict(x) == theirs.predict(x)) >= 0.998


@pytest.mark.slow
def test_without_an_intercept_lambda_max_is_where_the_weights_leave_zero(
    dataset):
  """b = 0: lambda_max from the gradient at W = 0, b = 0 (1/K - e_k), not
  at the best bias; W = 0 above it, nonzero below."""
  lam = objective.lambda_max(dataset, Config(penalty="l1",
                                             fit_intercept=False))
  assert lam != pytest.approx(
      objective.lambda_max(dataset, Config(penalty="l1")), rel=1e-3)
  above, below = _fit([_owlqn(1.02 * lam, fit_intercept=False),
                       _owlqn(0.9 * lam, fit_intercept=False)], dataset)
  assert above["nonzero"] == 0 and above["converged"]
  assert below["nonzero"] > 0 and below["converged"]


@pytest.mark.slow
def test_without_an_intercept_the_optimum_of_scikit_learns_saga(digits):
  """fit_intercept=False with an L1 penalty: b exactly 0, and the objective
  within 1e-5 of saga's (fit_intercept=False, tol 1e-8) or below it."""
  x, y = digits
  c = 0.3
  ours = SoftmaxRegression(C=c, penalty="l1", fit_intercept=False).fit(x, y)
  theirs = LogisticRegression(C=c, l1_ratio=1.0, solver="saga", tol=1e-8,
                              max_iter=100000, fit_intercept=False).fit(x, y)

  def value(m):
    z = x @ m.coef_.T
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -c * log_p[np.arange(len(y)), y].sum() + np.abs(m.coef_).sum()

  assert ours.converged_ and np.all(ours.intercept_ == 0)
  assert value(ours) <= value(theirs) * (1 + 1e-5), (value(ours),
                                                      value(theirs))
  assert np.mean(ours.predict(x) == theirs.predict(x)) >= 0.999
