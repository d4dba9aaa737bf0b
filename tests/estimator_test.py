"""The scikit-learn estimators: parity with scikit-learn's
LogisticRegression on Fashion-MNIST (objective and predictions, two classes,
class and sample weights), cross-validation as one stack, and one model
format with the command line."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold

from softmax_jax import runner
from softmax_jax import SoftmaxRegression
from softmax_jax import SoftmaxRegressionCV


@pytest.fixture(scope="module")
def images(fashion_mnist):
  """1,000 training and all 10,000 test images of Fashion-MNIST, in [0,
  1] (benchmarks/estimator.py: 10,000 and 60,000)."""
  ds = fashion_mnist
  return (ds.x_train[:1000] / 255.0, ds.y_train[:1000],
          ds.x_test / 255.0, ds.y_test)


@pytest.fixture(scope="module")
def thumbnails(images):
  """The same images at 14 x 14 (every other pixel of each row and column):
  for the tests whose claim is about the rows (weights, folds, the
  intercept), a quarter of the work of each fit, ours and scikit-
  learn's."""
  return tuple(x.reshape(-1, 28, 28)[:, ::2, ::2].reshape(len(x), -1)
               if x.ndim == 2 else x for x in images)


def _objective(coef, intercept, X, y, C, sample_weight=None):
  """scikit-learn's objective: C sum_i s_i loss_i + ||W||^2 / 2 (binary
  coef [1, D]: logistic; else multinomial), in float64."""
  s = np.ones(len(y)) if sample_weight is None else sample_weight
  z = X @ coef.T + intercept
  if coef.shape[0] == 1:
    z = np.concatenate([np.zeros_like(z), z], axis=1)
  z = z - z.max(axis=1, keepdims=True)
  log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
  return -C * (s * log_p[np.arange(len(y)), y]).sum() + 0.5 * (coef**2).sum()


def _reference(ours, X, y, C, sample_weight=None, **kw):
  """scikit-learn's lbfgs to tol 1e-10, started from our coefficients (its
  warm_start). The objective is strictly convex: it stops at the optimum
  it would reach from zero (the same value to 1e-12 on the multinomial
  test's images), 5 x sooner, and an optimum of ours 1e-5 short of it
  fails _assert_parity. (lbfgs_test starts scikit-learn from zero.)"""
  theirs = LogisticRegression(C=C, tol=1e-10, max_iter=20000,
                              warm_start=True, **kw)
  theirs.coef_ = ours.coef_.astype(np.float64)
  theirs.intercept_ = ours.intercept_.astype(np.float64)
  return theirs.fit(X, y, sample_weight=sample_weight)


def _assert_parity(ours, theirs, X, y, X_test, C, sample_weight=None):
  """Our objective within 1e-5 of scikit-learn's tight fit, or below it;
  the predictions agree on >= 99.9 % of the test rows."""
  mine = _objective(ours.coef_, ours.intercept_, X, y, C, sample_weight)
  reference = _objective(theirs.coef_, theirs.intercept_, X, y, C,
                         sample_weight)
  assert mine <= reference * (1 + 1e-5), (mine, reference)
  agree = np.mean(ours.predict(X_test) == theirs.predict(X_test))
  assert agree >= 0.999, agree


@pytest.mark.slow
def test_the_optimum_of_scikit_learn_multinomial(images):
  X, y, X_test, _ = images
  ours = SoftmaxRegression(C=1 / 3).fit(X, y)
  assert ours.converged_ and ours.coef_.shape == (10, 784)
  _assert_parity(ours, _reference(ours, X, y, 1 / 3), X, y, X_test, 1 / 3)


@pytest.mark.slow
def test_two_classes_are_scikit_learns_binary_model_at_twice_c(images):
  """The symmetric two-class softmax at C is the logistic model at 2 C."""
  X, y, X_test, y_test = images
  pick, pick_test = np.isin(y, (0, 6)), np.isin(y_test, (0, 6))
  labels = np.where(y[pick] == 0, "T-shirt", "shirt")
  ours = SoftmaxRegression(C=0.1).fit(X[pick], labels)
  assert ours.coef_.shape == (1, 784) and list(ours.classes_) == [
      "T-shirt", "shirt"]
  theirs = _reference(ours, X[pick], labels, 0.2)
  _assert_parity(ours, theirs, X[pick], (labels == "shirt").astype(int),
                 X_test[pick_test], 0.2)
  assert ours.predict_proba(X_test[:5]).shape == (5, 2)


@pytest.mark.slow
def test_balanced_class_weights_on_an_imbalanced_subset(thumbnails):
  X, y, X_test, _ = thumbnails
  keep = (y >= 3) | (np.arange(len(y)) % 10 == 0)  # classes 0-2 at 10 %
  ours = SoftmaxRegression(C=0.5, class_weight="balanced").fit(X[keep],
                                                              y[keep])
  theirs = _reference(ours, X[keep], y[keep], 0.5,
                      class_weight="balanced")
  counts = np.bincount(y[keep])
  weights = (len(y[keep]) / (10 * counts))[y[keep]]
  _assert_parity(ours, theirs, X[keep], y[keep], X_test, 0.5, weights)
  plain = SoftmaxRegression(C=0.5).fit(X[keep], y[keep])
  rare = np.isin(y[keep], (0, 1, 2))
  assert ours.predict(X[keep][rare]).tolist().count(0) > plain.predict(
      X[keep][rare]).tolist().count(0)


@pytest.mark.slow
def test_sample_weights_as_scikit_learn_weighs_them(thumbnails):
  X, y, X_test, _ = thumbnails
  weights = np.random.default_rng(0).uniform(0, 3, len(y))
  ours = SoftmaxRegression(C=0.3).fit(X, y, sample_weight=weights)
  theirs = _reference(ours, X, y, 0.3, sample_weight=weights)
  _assert_parity(ours, theirs, X, y, X_test, 0.3, weights)


@pytest.mark.slow
def test_integer_weights_are_repeated_rows(images):
  """Weights 0, 1, 2, 3 give the optimum of the rows repeated that often:
  the same objective (1e-6) and the same predictions."""
  X, y, X_test, _ = images
  X, y = X[:600], y[:600]
  counts = np.arange(len(y)) % 4
  weighted = SoftmaxRegression(C=1.0).fit(X, y, sample_weight=counts)
  repeated = SoftmaxRegression(C=1.0).fit(np.repeat(X, counts, axis=0),
                                          np.repeat(y, counts))
  value = [_objective(m.coef_, m.intercept_, X, y, 1.0, counts)
           for m in (weighted, repeated)]
  assert value[0] == pytest.approx(value[1], rel=1e-6)
  assert np.mean(weighted.predict(X_test) == repeated.predict(X_test)) > 0.999


@pytest.mark.slow
def test_cross_validation_is_one_stack_of_separate_fits(thumbnails,
                                                        monkeypatch):
  """Each (fold, C) of the one stack scores as its own fit on the fold's
  training rows (in as many iterations at most), its pass over those rows
  alone; C_ is the best mean, refit on all rows."""
  import warnings  # pylint: disable=g-import-not-at-top

  from softmax_jax.solvers import objective  # pylint: disable=g-import-not-at-top
  X, y, _, _ = thumbnails
  X, y = X[:600], y[:600]
  cs = [0.01, 0.1, 1.0]
  splitter = StratifiedKFold(3)
  split, fold_groups = [], objective.fold_groups
  monkeypatch.setattr(objective, "fold_groups", lambda *a: split.append(
      fold_groups(*a)) or split[-1])
  cv = SoftmaxRegressionCV(Cs=cs, cv=splitter).fit(X, y)
  assert split[0] is not None and len(split[0]) == 3  # (a pass per fold)
  assert cv.scores_.shape == (3, 3) and cv.n_iter_.shape == (3, 3)
  for f, (train, test) in enumerate(splitter.split(X, y)):
    for j, c in enumerate(cs):
      with warnings.catch_warnings():  # (stopped at fold_max_iter, as it)
        warnings.simplefilter("ignore")
        alone = SoftmaxRegression(C=c, max_iter=cv.fold_max_iter).fit(
            X[train], y[train])
      assert cv.scores_[f, j] == pytest.approx(alone.score(X[test], y[test]),
                                               abs=2 / len(test))
  assert cs[int(np.argmax(cv.scores_.mean(axis=0)))] == cv.C_
  # The refit (from the folds' mean model) is the optimum at C_, to tol.
  refit = SoftmaxRegression(C=cv.C_).fit(X, y)
  assert cv.converged_ and cv.grad_norm_ < cv.tol
  assert _objective(cv.coef_, cv.intercept_, X, y, cv.C_) == pytest.approx(
      _objective(refit.coef_, refit.intercept_, X, y, cv.C_), rel=1e-6)
  np.testing.assert_allclose(cv.coef_, refit.coef_, atol=1e-3)


def test_fold_fits_stop_at_fold_max_iter_and_the_refit_is_exact(thumbnails):
  """Each (fold, C) fit takes at most fold_max_iter iterations (its score's
  budget; fold_converged_ says which reached tol) while the refit, the
  model returned, solves to tol without a warning; without a refit the
  model is the folds' own, and a warning names the budget. None: every
  fold fit to its optimum."""
  import warnings  # pylint: disable=g-import-not-at-top

  from sklearn.exceptions import ConvergenceWarning  # pylint: disable=g-import-not-at-top
  X, y, _, _ = thumbnails
  X, y = X[:600], y[:600]
  cs = [0.01, 100.0]
  with warnings.catch_warnings():
    warnings.simplefilter("error", ConvergenceWarning)
    cv = SoftmaxRegressionCV(Cs=cs, cv=3, fold_max_iter=5).fit(X, y)
  assert (cv.n_iter_ <= 5).all() and not cv.fold_converged_[:, 1].any()
  assert cv.converged_ and cv.grad_norm_ < cv.tol
  alone = SoftmaxRegression(C=cv.C_).fit(X, y)
  assert _objective(cv.coef_, cv.intercept_, X, y, cv.C_) == pytest.approx(
      _objective(alone.coef_, alone.intercept_, X, y, cv.C_), rel=1e-6)
  with pytest.warns(ConvergenceWarning, match="fold_max_iter=5"):
    SoftmaxRegressionCV(Cs=[100.0], cv=3, fold_max_iter=5,
                        refit=False).fit(X, y)
  exact = SoftmaxRegressionCV(Cs=cs, cv=3, fold_max_iter=None).fit(X, y)
  assert exact.fold_converged_.all() and (exact.n_iter_[:, 1] > 5).all()
  with pytest.warns(ConvergenceWarning, match="fold fits stopped at max_iter"):
    SoftmaxRegressionCV(Cs=cs, cv=3, fold_max_iter=None, max_iter=5).fit(X, y)
  for bad in (0, 2.5, True, "100"):
    with pytest.raises(ValueError, match="fold_max_iter"):
      SoftmaxRegressionCV(Cs=cs, cv=3, fold_max_iter=bad).fit(X, y)


@pytest.mark.slow
def test_cross_validation_chooses_scikit_learns_c():
  """On scikit-learn's 8 x 8 digits (1,797 images): the same C or its
  neighbour on the grid, and test accuracy within 0.01."""
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  X, y = load_digits(return_X_y=True)
  X = X / 16
  X, y, X_test, y_test = X[:1200], y[:1200], X[1200:], y[1200:]
  cs = np.logspace(-3, 2, 6)
  ours = SoftmaxRegressionCV(Cs=cs, cv=3).fit(X, y)
  theirs = LogisticRegressionCV(Cs=cs, cv=3, tol=1e-8, max_iter=5000,
                                l1_ratios=(0.0,), scoring="accuracy",
                                use_legacy_attributes=False).fit(X, y)
  assert abs(list(cs).index(ours.C_) - list(cs).index(theirs.C_)) <= 1
  assert abs(ours.score(X_test, y_test) - theirs.score(X_test, y_test)) < 0.01


def test_a_splitter_whose_folds_overlap_is_refused(images):
  from sklearn.model_selection import ShuffleSplit  # pylint: disable=g-import-not-at-top
  X, y, _, _ = images
  with pytest.raises(ValueError, match="partition the rows"):
    SoftmaxRegressionCV(Cs=2, cv=ShuffleSplit(3, random_state=0)).fit(
        X[:300], y[:300])


def test_the_closed_form_weighs_as_repeated_rows(images):
  """Ridge on the one-hot code with integer weights: the solution of the
  rows repeated, to float32 rounding."""
  X, y, _, _ = images
  X, y = X[:400], y[:400]
  counts = np.arange(len(y)) % 3
  weighted = SoftmaxRegression(C=0.1, solver="exact", loss="l2").fit(
      X, y, sample_weight=counts)
  repeated = SoftmaxRegression(C=0.1, solver="exact", loss="l2").fit(
      np.repeat(X, counts, axis=0), np.repeat(y, counts))
  np.testing.assert_allclose(weighted.coef_, repeated.coef_, atol=1e-5)
  np.testing.assert_allclose(weighted.intercept_, repeated.intercept_,
                             atol=1e-5)


@pytest.mark.slow
def test_cross_validation_with_a_minibatch_solver(images):
  """Folds x Cs of SGD are one stack too, each configuration's steps on
  the rows outside its fold (scored on its fold: far from chance at the
  weak penalty, chosen)."""
  X, y, _, _ = images
  cv = SoftmaxRegressionCV(Cs=[0.01, 1.0], cv=2, solver="sgd", lr=0.5,
                           epochs=5, batch_size=50).fit(X[:600], y[:600])
  assert cv.scores_.shape == (2, 2) and (cv.scores_[:, 1] > 0.6).all()
  assert cv.C_ == 1.0 and cv.score(X[600:], y[600:]) > 0.6


@pytest.mark.slow
def test_one_model_format_with_the_command_line(images, tmp_path):
  """An estimator saved as params.npz predicts through --mode=predict as
  itself; the model loads back as the same estimator."""
  X, y, X_test, _ = images
  names = np.array(["t-shirt", "trouser", "pullover", "dress", "coat",
                    "sandal", "shirt", "sneaker", "bag", "boot"])
  fitted = SoftmaxRegression(C=0.3).fit(X[:800], names[y[:800]])
  fitted.save(tmp_path / "model")
  np.save(tmp_path / "rows.npy", X_test[:20].astype(np.float32))
  ranked = runner.predict(tmp_path / "model", [str(tmp_path / "rows.npy")],
                          top=1)
  assert [r[1][0][0] for r in ranked] == list(fitted.predict(X_test[:20]))
  probs = fitted.predict_proba(X_test[:20]).max(axis=1)
  np.testing.assert_allclose([r[1][0][1] for r in ranked], probs, rtol=1e-4)
  loaded = SoftmaxRegression.load(tmp_path / "model")
  np.testing.assert_allclose(loaded.predict_proba(X_test[:20]),
                             fitted.predict_proba(X_test[:20]), atol=1e-6)


@pytest.mark.slow
def test_a_run_of_launch_py_loads_as_an_estimator(tmp_path):
  """A run trained with --standardize and --calibrate on uint8 pixels:
  its model, folded into coef_ and intercept_, predicts as --mode=predict
  does on the stored pixels."""
  rng = np.random.default_rng(0)
  centers = rng.integers(0, 256, (3, 12))
  y = rng.integers(0, 3, 400)
  x = np.clip(centers[y] + rng.normal(0, 40, (400, 12)), 0, 255).astype(
      np.uint8).reshape(400, 3, 4)
  folder = tmp_path / "data"
  folder.mkdir()
  for split, rows in (("train", slice(0, 300)), ("test", slice(300, 400))):
    np.save(folder / f"x_{split}.npy", x[rows])
    np.save(folder / f"y_{split}.npy", y[rows])
  from softmax_jax.config import Config  # pylint: disable=g-import-not-at-top
  runner.run(Config(dataset=f"npy:{folder}", optimizer="lbfgs",
                    weight_decay=1e-3, standardize=True, calibrate=True,
                    val_fraction=0.2), tmp_path / "run", verbose=False,
             figures=False)
  loaded = SoftmaxRegression.load(tmp_path / "run")
  np.save(tmp_path / "rows.npy", x[300:])
  ranked = runner.predict(tmp_path / "run", [str(tmp_path / "rows.npy")],
                          top=1)
  flat = x[300:].reshape(100, -1).astype(np.float64)
  assert [r[1][0][0] for r in ranked] == list(loaded.predict(flat))
  np.testing.assert_allclose([r[1][0][1] for r in ranked],
                             loaded.predict_proba(flat).max(axis=1),
                             rtol=1e-4)


@pytest.mark.slow
@pytest.mark.gpu_smoke
def test_small_fits_of_nearby_sizes_share_one_program(monkeypatch):
  """Padded to powers of two (rows of weight 0, zero columns): 100 and 120
  rows of 5 features are one compiled program, with the optimum each would
  have unpadded; 750 rows are another program."""
  from sklearn.datasets import load_iris  # pylint: disable=g-import-not-at-top

  from softmax_jax import compilation  # pylint: disable=g-import-not-at-top
  from softmax_jax import estimator  # pylint: disable=g-import-not-at-top
  X, y = load_iris(return_X_y=True)
  order = np.random.default_rng(0).permutation(len(y))
  X = np.concatenate([X, X[:, :1] ** 2], axis=1)[order]  # 5 features
  y = y[order]
  monkeypatch.setattr(compilation, "_programs", type(compilation._programs)())
  first = SoftmaxRegression(C=0.5).fit(X[:100], y[:100])
  programs = len(compilation._programs)
  second = SoftmaxRegression(C=0.5).fit(X[:120], y[:120])
  assert len(compilation._programs) == programs
  assert first.coef_.shape == second.coef_.shape == (3, 5)
  SoftmaxRegression(C=0.5).fit(np.tile(X, (5, 1)), np.tile(y, 5))
  assert len(compilation._programs) > programs
  monkeypatch.setattr(estimator, "PAD_BELOW", 0)
  unpadded = SoftmaxRegression(C=0.5).fit(X[:120], y[:120])
  assert _objective(second.coef_, second.intercept_, X[:120], y[:120],
                    0.5) == pytest.approx(
                        _objective(unpadded.coef_, unpadded.intercept_,
                                   X[:120], y[:120], 0.5), rel=1e-6)
  np.testing.assert_allclose(second.predict_proba(X), unpadded.predict_proba(X),
                             atol=1e-4)


def _events(fit) -> list[tuple[str, str | None]]:
  """jax.monitoring's duration events while fit() ran: (event, function)."""
  import jax  # pylint: disable=g-import-not-at-top
  events = []

  def listener(event, duration, **kwargs):
    del duration
    events.append((event, kwargs.get("fun_name")))

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    fit()
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  return events


def _compilations(events) -> list[str]:
  """The programs XLA compiled or read from the compilation cache."""
  return [e for e, _ in events if e.endswith(
      ("backend_compile_duration", "cache_retrieval_time_sec"))]


def _traces(events) -> list[str | None]:
  """The functions JAX traced."""
  return [f for e, f in events if e.endswith("jaxpr_trace_duration")]


def test_a_second_fit_of_the_same_shapes_compiles_nothing():
  """A notebook's next fit, and next cross-validation, of other data of the
  same shapes: no program compiled by XLA or read from the compilation
  cache (a CV of 3 x 3 configurations compiled 11 small programs before,
  0.4 s on iris)."""
  from sklearn.datasets import load_iris  # pylint: disable=g-import-not-at-top
  X, y = load_iris(return_X_y=True)
  SoftmaxRegression(C=0.5).fit(X, y)
  SoftmaxRegressionCV(Cs=3, cv=3).fit(X, y)

  def again():
    SoftmaxRegression(C=2.0).fit(X[::-1] + 0.5, y[::-1])
    SoftmaxRegressionCV(Cs=3, cv=3).fit(X[::-1] + 0.5, y[::-1])

  assert not (compiled := _compilations(_events(again))), compiled


def test_a_fit_of_the_same_signature_traces_nothing_and_finds_its_optimum(
    monkeypatch):
  """compilation.family: a fit of other data at another C, of the same
  shapes, runs the first fit's L-BFGS programs without tracing them, and
  finds the optimum a fresh solver finds, bit for bit (whose own lowering
  is the same program: compile_once hits); a compiled-in field
  (fit_intercept) has programs of its own."""
  from sklearn.datasets import load_iris  # pylint: disable=g-import-not-at-top

  from softmax_jax import compilation  # pylint: disable=g-import-not-at-top
  X, y = load_iris(return_X_y=True)
  for cache in ("_programs", "_families"):  # (not what earlier tests left)
    monkeypatch.setattr(compilation, cache,
                        type(getattr(compilation, cache))())
  SoftmaxRegression(C=0.5).fit(X, y)
  again = SoftmaxRegression(C=2.0)
  traced = _traces(_events(lambda: again.fit(X[::-1] + 0.5, y[::-1])))
  assert not {"advance", "_start"} & set(traced), traced
  monkeypatch.setattr(compilation, "_families", type(compilation._families)())
  fresh = SoftmaxRegression(C=2.0)
  events = _events(lambda: fresh.fit(X[::-1] + 0.5, y[::-1]))
  assert {"advance", "_start"} <= set(traced := _traces(events)), traced
  assert not (compiled := _compilations(events)), compiled
  np.testing.assert_array_equal(again.coef_, fresh.coef_)
  np.testing.assert_array_equal(again.intercept_, fresh.intercept_)
  assert again.n_iter_ == fresh.n_iter_
  assert "advance" in _traces(_events(lambda: SoftmaxRegression(
      C=2.0, fit_intercept=False).fit(X, y)))


@pytest.mark.slow
def test_a_sparse_fit_of_other_data_compiles_nothing():
  """OWL-QN's facts of the data (the features' mean, lambda_max) are
  arguments of its programs: a second L1 fit of other rows of the same
  shapes runs the first fit's programs."""
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  X, y = load_digits(return_X_y=True)
  X = X / 16
  first = SoftmaxRegression(C=0.5, penalty="l1").fit(X[:600], y[:600])
  second = SoftmaxRegression(C=0.5, penalty="l1")
  assert not (compiled := _compilations(_events(
      lambda: second.fit(X[600:1200], y[600:1200])))), compiled
  assert first.converged_ and second.converged_
  assert not np.allclose(first.coef_, second.coef_)


@pytest.mark.slow
@pytest.mark.parametrize("penalty, solver", [("l2", "lbfgs"),
                                             ("l1", "lbfgs")])
def test_a_warm_start_from_the_optimum_stays_there(images, penalty, solver):
  """warm_start=True starts where the previous fit ended: refitting the same
  data takes next to no iterations and keeps the optimum; a path by hand
  (C = 0.25, then 0.3) reaches the cold fit's optimum at 0.3, in fewer
  iterations. (From C = 0.1, 3 x away, the iterations saved are within
  the spread that float32 rounding gives a trajectory: 63 against 70, or
  70 against 68 with the gradient summed in another order.)"""
  X, y, _, _ = images
  X, y = X[:400], y[:400]
  kw = {"penalty": penalty, "solver": solver}
  cold = SoftmaxRegression(C=0.3, **kw).fit(X, y)
  warm = SoftmaxRegression(C=0.25, warm_start=True, **kw).fit(X, y)
  first = warm.coef_.copy()
  warm.set_params(C=0.25).fit(X, y)  # from its own optimum
  assert warm.n_iter_[0] <= 2, warm.n_iter_
  np.testing.assert_allclose(warm.coef_, first, atol=2e-4)
  warm.set_params(C=0.3).fit(X, y)  # the next strength of a path
  assert warm.converged_ and warm.n_iter_[0] < cold.n_iter_[0]

  def objective(m):  # C sum_i loss_i + the penalty
    smooth = _objective(m.coef_, m.intercept_, X, y, 0.3)
    if penalty == "l2":
      return smooth
    return smooth - 0.5 * (m.coef_**2).sum() + np.abs(m.coef_).sum()
  assert objective(warm) == pytest.approx(objective(cold), rel=1e-5)


@pytest.mark.slow
def test_a_warm_started_minibatch_fit_goes_on_from_the_last(images):
  """With sgd, a warm start is more epochs: 2 + 2 epochs end where no cold
  2-epoch fit does, nearer the optimum; without warm_start the second fit
  repeats the first."""
  X, y, _, _ = images
  kw = {"C": 1.0, "solver": "sgd", "epochs": 2, "lr": 0.5,
        "random_state": 0}
  cold = SoftmaxRegression(**kw).fit(X, y)
  again = SoftmaxRegression(**kw).fit(X, y).fit(X, y)
  np.testing.assert_array_equal(again.coef_, cold.coef_)
  warm = SoftmaxRegression(warm_start=True, **kw).fit(X, y).fit(X, y)
  assert not np.allclose(warm.coef_, cold.coef_)
  optimum = SoftmaxRegression(C=1.0).fit(X, y)

  def gap(m):
    return (_objective(m.coef_, m.intercept_, X, y, 1.0)
            - _objective(optimum.coef_, optimum.intercept_, X, y, 1.0))
  assert 0 <= gap(warm) < gap(cold)


def test_a_warm_start_on_other_shapes_is_refused(images):
  X, y, _, _ = images
  X, y = X[:400], y[:400]  # (the shape of the tests above: one program)
  clf = SoftmaxRegression(warm_start=True).fit(X, y)
  with pytest.raises(ValueError, match="warm_start=True starts from"):
    clf.fit(X[:, :100], y)
  with pytest.raises(ValueError, match="warm_start=True starts from"):
    clf.fit(X, np.where(y == 9, 0, y))


@pytest.mark.slow
def test_without_an_intercept_the_optimum_of_scikit_learn(thumbnails):
  """fit_intercept=False: b exactly 0, and LogisticRegression(fit_intercept=
  False)'s optimum (the model o = xW on pixels, whose mean is far from 0:
  the preconditioner whitens their second moment instead)."""
  X, y, X_test, _ = thumbnails
  ours = SoftmaxRegression(C=1 / 3, fit_intercept=False).fit(X, y)
  assert ours.converged_ and np.all(ours.intercept_ == 0)
  theirs = _reference(ours, X, y, 1 / 3, fit_intercept=False)
  _assert_parity(ours, theirs, X, y, X_test, 1 / 3)


def test_the_closed_form_without_an_intercept_is_ridge(images):
  """Ridge on the one-hot code, b = 0: scikit-learn's Ridge(fit_intercept=
  False) at alpha = 1 / C (ours: C sum_i ||x_i W - y_i||^2 / 2 + ||W||^2 /
  2)."""
  from sklearn.linear_model import Ridge  # pylint: disable=g-import-not-at-top
  X, y, _, _ = images
  X, y = X[:400], y[:400]
  ours = SoftmaxRegression(C=0.1, solver="exact", loss="l2",
                           fit_intercept=False).fit(X, y)
  theirs = Ridge(alpha=10.0, fit_intercept=False).fit(X, np.eye(10)[y])
  assert np.all(ours.intercept_ == 0)
  np.testing.assert_allclose(ours.coef_, theirs.coef_, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_without_an_intercept_a_minibatch_fit_keeps_b_at_zero(images, solver):
  X, y, _, _ = images
  kw = {"solver": solver, "epochs": 2, "batch_size": 64, "lr": 0.01}
  ours = SoftmaxRegression(fit_intercept=False, **kw).fit(X, y)
  assert np.all(ours.intercept_ == 0) and np.any(ours.coef_ != 0)
  assert np.any(SoftmaxRegression(**kw).fit(X, y).intercept_ != 0)


def _blobs(n=120, seed=0):
  """Three overlapping classes in 4 standardized features: small, well
  conditioned fits, ours and scikit-learn's."""
  from sklearn.datasets import make_classification  # pylint: disable=g-import-not-at-top
  X, y = make_classification(n_samples=n, n_features=4, n_informative=4,
                             n_redundant=0, n_classes=3,
                             n_clusters_per_class=1, class_sep=0.8,
                             random_state=seed)
  return (X - X.mean(0)) / X.std(0), y


def test_balanced_class_weights_count_the_sample_weights():
  """class_weight="balanced" with sample weights: scikit-learn's n / (K n_k)
  of the weighted class sums (its optimum to 1e-5), not of the counts."""
  X, y = _blobs(150)
  keep = np.r_[np.flatnonzero(y == 0), np.flatnonzero(y == 1)[:20],
               np.flatnonzero(y == 2)[:35]]
  X, y = X[keep], y[keep]
  w = np.random.default_rng(1).uniform(0.2, 3.0, len(y)) * np.where(
      y == 1, 4.0, 1.0)
  ours = SoftmaxRegression(C=0.5, class_weight="balanced", tol=1e-7).fit(
      X, y, sample_weight=w)
  theirs = LogisticRegression(C=0.5, class_weight="balanced", tol=1e-10,
                              max_iter=10000).fit(X, y, sample_weight=w)
  np.testing.assert_allclose(ours.coef_, theirs.coef_, atol=1e-4)
  np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X),
                             atol=1e-5)


def test_cross_validation_scores_weigh_the_rows():
  """A fold's score weighs its rows by their sample weights (scikit-learn's
  scorer does): rows of weight 0 change neither the scores nor C_."""
  from sklearn.model_selection import PredefinedSplit  # pylint: disable=g-import-not-at-top
  X, y = _blobs(90, seed=2)
  rng = np.random.default_rng(2)
  folds = np.arange(len(y)) % 3
  noise = rng.normal(size=(60, 4))
  X_all, y_all = np.r_[X, noise], np.r_[y, rng.integers(0, 3, 60)]
  w_all = np.r_[np.ones(len(y)), np.zeros(60)]
  cs = [0.01, 0.1, 1.0, 10.0]
  for scoring in ("accuracy", "neg_log_loss"):
    alone = SoftmaxRegressionCV(Cs=cs, cv=PredefinedSplit(folds),
                                scoring=scoring, tol=1e-7).fit(X, y)
    padded = SoftmaxRegressionCV(
        Cs=cs, cv=PredefinedSplit(np.r_[folds, np.arange(60) % 3]),
        scoring=scoring, tol=1e-7).fit(X_all, y_all, sample_weight=w_all)
    np.testing.assert_allclose(padded.scores_, alone.scores_, atol=1e-4)
    assert padded.C_ == alone.C_


def test_without_refit_the_folds_best_models_averaged_as_scikit_learn():
  """refit=False: each fold's model at its own best C, averaged, and C_
  the mean of those Cs (LogisticRegressionCV's), here where the folds
  disagree on the best C."""
  X, y = _blobs(120, seed=3)
  cs = [0.01, 0.1, 1.0, 10.0]
  splitter = StratifiedKFold(4, shuffle=True, random_state=0)
  ours = SoftmaxRegressionCV(Cs=cs, cv=splitter, tol=1e-7,
                             refit=False).fit(X, y)
  theirs = LogisticRegressionCV(Cs=cs, cv=splitter, tol=1e-10,
                                max_iter=10000, refit=False,
                                l1_ratios=(0.0,), scoring="accuracy",
                                use_legacy_attributes=False).fit(X, y)
  assert len(set(np.argmax(ours.scores_, axis=1))) > 1  # (the case at hand)
  assert float(np.ravel(theirs.C_)[0]) == pytest.approx(ours.C_)
  np.testing.assert_allclose(ours.coef_, theirs.coef_, atol=1e-4)
  np.testing.assert_allclose(ours.intercept_, theirs.intercept_, atol=1e-4)


def test_cross_validation_refuses_class_weights_of_unknown_labels():
  X, y = _blobs(60)
  with pytest.raises(ValueError, match="not in y"):
    SoftmaxRegressionCV(Cs=2, cv=2,
                        class_weight={0: 1, 1: 1, 2: 2, 7: 5}).fit(X, y)


def test_a_minibatch_fit_is_not_called_converged_and_an_explosion_fails():
  """sgd has no test of convergence: converged_ False, a
  ConvergenceWarning, its objective recorded; a loss that explodes (or
  turns non-finite) is a ValueError, not a model."""
  from sklearn.exceptions import ConvergenceWarning  # pylint: disable=g-import-not-at-top
  X, y = _blobs(300)
  with pytest.warns(ConvergenceWarning, match="not certified"):
    fitted = SoftmaxRegression(solver="sgd", lr=0.1, epochs=3,
                               batch_size=50).fit(X, y)
  exact = SoftmaxRegression(tol=1e-7).fit(X, y)
  assert not fitted.converged_
  # (between the optimum and the objective at W = 0: log 3 + 0)
  assert exact.objective_ < fitted.objective_ < np.log(3)
  with pytest.raises(ValueError, match=r"exploded|diverged"):
    SoftmaxRegression(solver="sgd", lr=1000.0, epochs=5,
                      batch_size=50).fit(X, y)


@pytest.mark.parametrize("labels", [np.array([-5, 3, 100]),
                                    np.array([1.0, 2.0, 3.0]),
                                    np.array(["cat", "dog", "emu"])])
def test_saved_and_loaded_labels_keep_their_type(labels, tmp_path):
  X, y = _blobs(90)
  fitted = SoftmaxRegression().fit(X, labels[y])
  fitted.save(tmp_path / "model")
  loaded = SoftmaxRegression.load(tmp_path / "model")
  assert loaded.classes_.dtype == fitted.classes_.dtype
  assert list(loaded.predict(X)) == list(fitted.predict(X))
  assert loaded.score(X, labels[y]) == fitted.score(X, labels[y])


def test_a_cross_validation_survives_the_strengths_whose_fits_explode():
  """SGD at C = 1e-4 (weight decay ~ 1 / (1e-4 n)) explodes: that (fold, C)
  is scored -inf with a warning, never chosen, and the rest of the grid
  is fit and chosen from, as before."""
  from sklearn.exceptions import ConvergenceWarning  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  X = rng.normal(size=(300, 5))
  y = np.argmax(X @ rng.normal(size=(5, 3)), 1)
  with pytest.warns(ConvergenceWarning, match="exploded or diverged"):
    cv = SoftmaxRegressionCV(solver="sgd", cv=3).fit(X, y)
  assert np.isneginf(cv.scores_[:, 0]).all()
  assert np.isfinite(cv.scores_[:, -1]).all() and cv.C_ > 1e-4
  assert cv.score(X, y) > 0.8


def test_balanced_weights_of_a_class_of_no_weight_are_zero():
  """A class whose rows all weigh 0 weighs nothing (the command line's
  rule too), not inf times 0 = NaN."""
  X, y = _blobs(90)
  sw = np.where(y == 2, 0.0, 1.0)
  ours = SoftmaxRegression(class_weight="balanced").fit(X, y,
                                                        sample_weight=sw)
  # n / (K n_k) of the weighted counts, 0 for class 2
  weights = {k: sw.sum() / (3 * sw[y == k].sum()) for k in (0, 1)}
  alone = SoftmaxRegression(class_weight={**weights, 2: 0.0}).fit(
      X, y, sample_weight=sw)
  assert np.isfinite(ours.coef_).all()
  np.testing.assert_allclose(ours.coef_, alone.coef_, atol=1e-5)
