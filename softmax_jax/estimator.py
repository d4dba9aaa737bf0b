"""softmax_jax from a notebook: scikit-learn estimators over the same solvers.

  clf = SoftmaxRegression(C=0.3).fit(X_train, y_train)   # the exact optimum
  clf.predict_proba(X_test); clf.score(X_test, y_test)
  cv = SoftmaxRegressionCV(Cs=10, cv=5).fit(X, y)  # folds x Cs: one stack
  cv.C_, cv.scores_

C has scikit-learn's meaning: the objective C sum_i s_i loss_i + ||W||^2 / 2
(s_i the sample weights times the class weights; the bias unpenalized) is
the command line's weighted mean loss + (weight_decay / 2) ||W||^2 with
weight_decay = 1 / (C sum_i s_i), 1 / (C N) without weights; the same
for penalty="l1" and "elasticnet" (||W||_1, and rho ||W||_1 + (1 - rho) / 2
||W||^2, --penalty and --l1_ratio). A fit is
train.train_configs on a Dataset of the arrays, as a run of launch.py is:
no workdir, no files, no printing. Two classes are the symmetric softmax
model, reported in scikit-learn's binary layout (one row: class 1's weights
minus class 0's); its optimum at C is LogisticRegression's at 2 C (l2), at
C (l1), and for the elastic net at rho LogisticRegression's at C' = 2 C /
(1 + rho) with l1_ratio 2 rho / (1 + rho) (the penalty of the symmetric
columns +-v/2 is rho |v| + (1 - rho) v^2 / 4).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
import warnings

import numpy as np
from scipy import special
from sklearn.base import BaseEstimator
from sklearn.base import ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score
from sklearn.metrics import log_loss
from sklearn.model_selection import check_cv
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight
from sklearn.utils.validation import check_is_fitted
from sklearn.utils.validation import validate_data

from softmax_jax import results
from softmax_jax import train
from softmax_jax.config import Config
from softmax_jax.data import datasets
from softmax_jax.errors import UserError
from softmax_jax.outputs import workdir as workdir_lib

SCORINGS = ("accuracy", "neg_log_loss")
PENALTIES = ("l2", "l1", "elasticnet")
# Small fits are compile-bound (~3 s to compile, ~0.3 s to solve on 150 x 4):
# below this many rows x features, the full-batch solvers see the arrays
# padded to the next power of two in rows (weight 0), at least 512, and in
# features (zero columns, whose weights stay 0), at least 8, so that fits
# of nearby shapes (the folds of a grid search, subsets in a notebook, the
# tiny data sets of scikit-learn's estimator checks) share one compiled
# program. The objective, and so the optimum, is the same. (512 rows cost
# nothing measurable in a solve, and cut the checks' compiled L-BFGS
# programs from 23 to 10, 46 s to 28 s; at least 16 or 32 features would
# cut them to 6, but made iris's first fit 0.3 s slower to compile, 1.6 s
# to 1.9 s: 2026-12-05.)
PAD_BELOW = 2**20
FULL_BATCH = ("lbfgs", "exact")


class _Softmax(ClassifierMixin, BaseEstimator):
  """What both estimators share: validation, fitting a strength,
  prediction, the model's layout, saving and loading (their constructors
  store the arguments)."""

  class_weight: object
  fit_intercept: bool
  l1_ratio: float | None
  max_iter: int
  penalty: str
  solver: str
  tol: float

  def decision_function(self, X):
    """The logits [N, K] ([N] for two classes: class 1's minus class 0's)."""
    check_is_fitted(self)
    X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
    scores = X @ self.coef_.T + self.intercept_
    return scores[:, 0] if len(self.classes_) == 2 else scores

  def predict_log_proba(self, X):
    scores = self.decision_function(X)
    if scores.ndim == 1:
      scores = np.stack([np.zeros_like(scores), scores], axis=1)
    return special.log_softmax(scores, axis=1)

  def predict_proba(self, X):
    """The class probabilities [N, K], columns in the order of classes_."""
    return np.exp(self.predict_log_proba(X))

  def predict(self, X):
    scores = self.decision_function(X)
    index = (scores > 0).astype(int) if scores.ndim == 1 else np.argmax(
        scores, axis=1)
    return self.classes_[index]

  def save(self, path) -> None:
    """Writes the model as params.npz in the folder `path`: the format of a
    run's workdir, so that `launch.py --mode=predict --workdir=PATH` reads
    it."""
    check_is_fitted(self)
    w, b = self._softmax_params()
    Path(path).mkdir(parents=True, exist_ok=True)
    numeric = self.classes_.dtype.kind in "biuf"  # (else text: the names)
    workdir_lib.save_params(
        Path(path), {"b": b.astype(np.float32), "w": w.astype(np.float32)},
        {"class_names": [str(c) for c in self.classes_],
         "classes": self.classes_ if numeric else None})

  @classmethod
  def load(cls, path):
    """The model in a folder's params.npz (a run's workdir, or save's), as
    a fitted estimator whose classes are the class names (an estimator's
    numeric or boolean labels as they were), taking the inputs
    as the run's data held them (uint8 pixels 0-255 as they are: the
    scaling, --standardize and a --calibrate temperature are folded into
    coef_ and intercept_)."""
    stored = workdir_lib.read_model(Path(path))
    if stored is None:
      raise ValueError(f"{path} holds no readable params.npz of a model")
    arrays, facts = stored
    if set(arrays) != {"w", "b"}:
      raise ValueError(f"{path} holds a model with hidden or PHM layers "
                       f"({', '.join(sorted(arrays))}); an estimator holds "
                       "the linear one")
    # What the run did to its inputs before the model, folded into it: the
    # logits of (x scale - mean) / std, over the temperature.
    w, b = arrays["w"].astype(np.float64), arrays["b"].astype(np.float64)
    scale = 1 / 255 if facts.get("pixels") == "0-255" else 1.0
    mean = facts.get("feature_mean")
    std = facts.get("feature_std")
    mean = np.zeros(len(w)) if mean is None else mean.astype(np.float64)
    std = np.ones(len(w)) if std is None else std.astype(np.float64)
    b = b - (mean / std) @ w
    w = w * (scale / std)[:, None]
    t = facts.get("temperature") or 1.0
    model = cls()
    model.classes_ = (facts["classes"] if "classes" in facts
                      else np.array(facts["class_names"]))
    model.n_features_in_ = len(w)
    model._set_model(w / t, b / t)  # pylint: disable=protected-access
    return model

  def _softmax_params(self):
    """The softmax model's (w [D, K], b [K]) (two classes: symmetric)."""
    if len(self.classes_) == 2:
      w, b = self.coef_[0] / 2, self.intercept_[0] / 2
      return np.stack([-w, w], axis=1), np.array([-b, b])
    return self.coef_.T, self.intercept_

  def _set_model(self, w_DxK, b_K) -> None:
    w_DxK, b_K = np.asarray(w_DxK, np.float64), np.asarray(b_K, np.float64)
    if len(self.classes_) == 2:  # scikit-learn's binary layout
      self.coef_ = (w_DxK[:, 1] - w_DxK[:, 0])[None]
      self.intercept_ = np.array([b_K[1] - b_K[0]])
    else:
      self.coef_, self.intercept_ = w_DxK.T, b_K

  def _validated(self, X, y, sample_weight):
    """X, the labels as class indices, the examples' weights (sample times
    class weights) and their sample weights alone (1 where none), checked
    as scikit-learn checks them; sets classes_ and n_features_in_
    (feature_names_in_ for a DataFrame)."""
    X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
    check_classification_targets(y)
    self.classes_, y = np.unique(y, return_inverse=True)
    if len(self.classes_) < 2:
      raise ValueError(
          "This solver needs samples of at least 2 classes in the data, but "
          f"the data contains only one class: {self.classes_[0]!r}")
    if self.penalty not in PENALTIES:
      raise ValueError(f"penalty={self.penalty!r}; choose one of "
                       f"{', '.join(PENALTIES)}")
    weights = sample_weight = _check_sample_weight(
        sample_weight, X, dtype=np.float64, ensure_non_negative=True)
    if isinstance(self.class_weight, str) and self.class_weight == "balanced":
      # The classes counted in the sample weights, as scikit-learn (1.7 on)
      # counts them; a class of no weight weighs nothing (the command
      # line's --class_weight=balanced, the same function).
      weights = weights * datasets.balanced_class_weights(
          y, len(self.classes_), weights)[y]
    elif self.class_weight is not None:
      weights = weights * compute_class_weight(
          self.class_weight, classes=self.classes_, y=self.classes_[y])[y]
    if not weights.sum() > 0:
      raise ValueError("the sample weights sum to 0: at least one example "
                       "must weigh something")
    return X, y.astype(np.int32), weights, sample_weight

  def _config(self, weight_decay: float, fold: int = -1,
              max_iter: int | None = None) -> Config:
    """The Config of a fit at weight_decay (of the rows not in `fold`), in
    at most max_iter iterations (self.max_iter when None)."""
    try:
      # lbfgs with an L1 part: its orthant-wise form.
      sparse = self.penalty != "l2" and self.solver == "lbfgs"
      return Config(
          dataset="npz:arrays", optimizer="owlqn" if sparse else self.solver,
          loss=self.loss, penalty=self.penalty,
          l1_ratio=0.5 if self.l1_ratio is None else self.l1_ratio,
          loss_input="logits" if self.solver == "exact" else "probs",
          weight_decay=weight_decay, tol=self.tol,
          max_iters=self.max_iter if max_iter is None else max_iter,
          lr=self.lr, batch_size=self.batch_size, epochs=self.epochs,
          schedule=self.schedule, fold=fold,
          # (the minibatch solvers' objective, recorded at the end)
          track_objective=self.solver not in FULL_BATCH,
          fit_intercept=bool(self.fit_intercept),
          seed=0 if self.random_state is None else int(self.random_state),
          eval_every=2**30).validate()
    except UserError as e:
      raise ValueError(str(e)) from None

  def _fit_c(self, c: float, dataset: datasets.Dataset, total: float,
             init=None) -> dict:
    """Fits all the data at strength c (total: the weights' sum), from the
    softmax params `init` (w [D, K], b [K]) where given; returns the run's
    last record."""
    run = _fit_stack([self._config(1.0 / (c * total))], dataset,
                     self.n_features_in_, init)[0]
    self._set_model(run.params["w"], run.params["b"])
    return run.history[-1]

  def _report(self, records: list[dict], max_iter: int | None = None,
              knob: str = "max_iter") -> None:
    """converged_ (every fit of records reached tol: False for the
    minibatch solvers, which have no such test), the objective and
    gradient norm of the last, or a ConvergenceWarning naming the budget
    they stopped at (`knob` = max_iter, self.max_iter when None)."""
    last = records[-1]
    certified = all("converged" in r for r in records)
    self.converged_ = certified and all(bool(r["converged"]) for r in records)
    self.objective_ = float(last.get("objective", np.nan))
    self.grad_norm_ = float(last.get("grad_norm", np.nan))
    if not certified:
      warnings.warn(
          f"solver={self.solver!r} ran epochs={self.epochs} with no test "
          "of convergence: its model is not certified to be the optimum "
          "(objective_ is its objective); solver='lbfgs' solves to tol",
          ConvergenceWarning, stacklevel=3)
    elif not self.converged_:
      warnings.warn(
          f"{self.solver} stopped at {knob}="
          f"{self.max_iter if max_iter is None else max_iter} with the "
          f"gradient norm above tol={self.tol}: not at the optimum; raise "
          f"{knob}", ConvergenceWarning, stacklevel=3)


class SoftmaxRegression(_Softmax):
  """Softmax regression (multinomial logistic regression), solved by
  softmax_jax; L-BFGS to a gradient norm of `tol` by default (the optimum,
  where scikit-learn's defaults stop short).

  Parameters: C (the inverse strength of the penalty, scikit-learn's),
  penalty ("l2", "l1" or "elasticnet": C sum_i s_i loss_i + rho ||W||_1 +
  (1 - rho) / 2 ||W||^2, rho = l1_ratio, 0.5 when None), solver (lbfgs:
  for l1 and elasticnet its orthant-wise form OWL-QN, exact to tol; exact:
  ridge on the one-hot code in closed form, loss="l2" with the l2 penalty
  only; sgd, momentum, adam: a proximal step for the L1 part), loss
  (xent, l2, l1, huber), tol (the gradient norm of the objective as a
  weighted mean), max_iter, fit_intercept (False: the model o = xW, b = 0),
  class_weight (None, "balanced" or {label: weight}), warm_start (True: a
  fit starts from the previous fit's coef_ and intercept_, as
  LogisticRegression's does: a path by hand, or more epochs), random_state
  (the minibatch solvers' seed), lr, batch_size, epochs, schedule (the
  minibatch solvers').
  """

  def __init__(self, C=1.0, *, penalty="l2", l1_ratio=None, solver="lbfgs",
               loss="xent", tol=1e-5, max_iter=1000, fit_intercept=True,
               class_weight=None, warm_start=False, random_state=None,
               lr=0.1, batch_size=256, epochs=10, schedule="constant"):
    self.C = C
    self.penalty = penalty
    self.l1_ratio = l1_ratio
    self.solver = solver
    self.loss = loss
    self.tol = tol
    self.max_iter = max_iter
    self.fit_intercept = fit_intercept
    self.class_weight = class_weight
    self.warm_start = warm_start
    self.random_state = random_state
    self.lr = lr
    self.batch_size = batch_size
    self.epochs = epochs
    self.schedule = schedule

  def fit(self, X, y, sample_weight=None):
    """Fits the model to X [N, D] and labels y [N] (any labels, at least two
    classes), with optional per-example weights [N]; returns self."""
    previous = (self.classes_, self._softmax_params()) if (
        self.warm_start and hasattr(self, "coef_")) else None
    X, y, weights, _ = self._validated(X, y, sample_weight)
    _check_c(self.C)
    if previous is not None:
      classes, (w, _) = previous
      if not (np.array_equal(classes, self.classes_)
              and len(w) == self.n_features_in_):
        raise ValueError(
            f"warm_start=True starts from the previous fit's model, of "
            f"{len(w)} features and classes {list(classes)}, but X has "
            f"{self.n_features_in_} features and y classes "
            f"{list(self.classes_)}; set warm_start=False")
    last = self._fit_c(self.C, _dataset(X, y, weights, self.classes_,
                                        self.solver), weights.sum(),
                       previous and previous[1])
    self.n_iter_ = np.array([int(last.get("iterations", last["epoch"]))])
    self._report([last])
    return self


class SoftmaxRegressionCV(_Softmax):
  """SoftmaxRegression with C chosen by cross-validation: every (fold, C)
  pair is one configuration of one stack, trained together in one compiled
  program (L-BFGS warm-starting along each fold's path), then refit on all
  the data at the best C (refit=True), as LogisticRegressionCV does.

  Cs: a number of strengths (np.logspace(-4, 4, Cs)) or a list; cv: a
  number of stratified folds, or a splitter whose test folds partition the
  rows (KFold, StratifiedKFold, GroupKFold); scoring: accuracy or
  neg_log_loss, each fold's rows weighted by their sample weights; refit
  False: as scikit-learn's, the model the mean of each fold's model at its
  own best C, and C_ the mean of those Cs. tol: where every fit stops (the
  refit, the returned model, is the optimum at C_ to tol, as
  SoftmaxRegression's); max_iter: the refit's iterations at most;
  fold_max_iter (100, LogisticRegressionCV's max_iter) the iterations of
  each (fold, C) fit at most, which scores its C: to tol where it gets
  there (on 10,000 Fashion-MNIST images, C up to 0.006), else where it
  stopped (the weakest strengths, which take up to 1,000 iterations to
  their optimum, 5 x the time of the whole cross-validation, and score
  far below the best); None: max_iter, every fold fit to its optimum (a
  ConvergenceWarning where one stops at max_iter short of tol).
  Learned: C_, Cs_, scores_ [folds, Cs], n_iter_ and fold_converged_
  [folds, Cs] (each fold fit's iterations, and whether it reached tol),
  and the model.
  """

  def __init__(self, Cs=10, *, cv=5, scoring="accuracy", refit=True,
               penalty="l2", l1_ratio=None, solver="lbfgs", loss="xent",
               tol=1e-5, max_iter=1000, fold_max_iter=100,
               fit_intercept=True, class_weight=None, random_state=None,
               lr=0.1, batch_size=256, epochs=10, schedule="constant"):
    self.Cs = Cs
    self.cv = cv
    self.scoring = scoring
    self.refit = refit
    self.penalty = penalty
    self.l1_ratio = l1_ratio
    self.solver = solver
    self.loss = loss
    self.tol = tol
    self.max_iter = max_iter
    self.fold_max_iter = fold_max_iter
    self.fit_intercept = fit_intercept
    self.class_weight = class_weight
    self.random_state = random_state
    self.lr = lr
    self.batch_size = batch_size
    self.epochs = epochs
    self.schedule = schedule

  def fit(self, X, y, sample_weight=None, groups=None):
    """Scores every (fold, C), keeps the best C (C_), and refits there."""
    X, y, weights, sample_weight = self._validated(X, y, sample_weight)
    if isinstance(self.class_weight, dict):  # (LogisticRegressionCV's check)
      unknown = set(self.class_weight) - set(self.classes_.tolist())
      if unknown:
        raise ValueError(f"class_weight has labels that are not in y: "
                         f"{sorted(unknown, key=str)}; its keys must be "
                         "class labels")
    if self.scoring not in SCORINGS:
      raise ValueError(f"scoring={self.scoring!r}; choose one of "
                       f"{', '.join(SCORINGS)}")
    self.Cs_ = (np.logspace(-4, 4, self.Cs) if np.ndim(self.Cs) == 0
                else np.asarray(self.Cs, np.float64))
    for c in self.Cs_:
      _check_c(c)
    folds = _folds(check_cv(self.cv, y, classifier=True), X, y, groups)
    num_folds, num_cs = int(folds.max()) + 1, len(self.Cs_)
    # The rows in order of their folds, so that a full-batch fold fit's pass
    # is over its own rows (objective.fold_groups); scored below in X's
    # order. (The minibatch solvers' batches are drawn from X's.)
    order = (np.argsort(folds, kind="stable") if self.solver in FULL_BATCH
             else np.arange(len(y)))
    dataset = _dataset(X[order], y[order], weights[order], self.classes_,
                       self.solver)
    budget = self._fold_budget()
    # Each fold's strengths for its own training rows' weight.
    configs = [self._config(1.0 / (c * weights[folds != f].sum()), fold=f,
                            max_iter=budget)
               for f in range(num_folds) for c in self.Cs_]
    padded = np.zeros(len(dataset.y_train), np.int32)  # (rows of weight 0)
    padded[:len(folds)] = folds[order]
    runs = _fit_stack(configs, dataclasses.replace(dataset, folds=padded),
                      self.n_features_in_, failed_ok=True)
    # Each fold's rows weigh in its score by their sample weights, as
    # scikit-learn's scorer takes them (not the class weights).
    self.scores_ = np.array(
        [_score(self.scoring, run.params, X[folds == i // num_cs],
                y[folds == i // num_cs], sample_weight[folds == i // num_cs],
                len(self.classes_)) if run.status == results.OK
         else -np.inf  # (a loss gone far up: no model to choose)
         for i, run in enumerate(runs)]).reshape(num_folds, num_cs)
    failed = sorted({float(self.Cs_[i % num_cs])
                     for i, r in enumerate(runs) if r.status != results.OK})
    if failed:
      warnings.warn(f"the fits at C = {failed} exploded or diverged in some "
                    "fold (scored -inf); try a smaller lr",
                    ConvergenceWarning, stacklevel=2)
    self.n_iter_ = np.array([int(r.history[-1].get("iterations", 0))
                             for r in runs]).reshape(num_folds, num_cs)
    self.fold_converged_ = np.array(
        [bool(r.history[-1].get("converged", False))
         for r in runs]).reshape(num_folds, num_cs)
    certified = all("converged" in r.history[-1] for r in runs)
    if (self.fold_max_iter is None and certified
        and not self.fold_converged_.all()):  # (asked for: every one to tol)
      warnings.warn(
          f"{int((~self.fold_converged_).sum())} of "
          f"{self.fold_converged_.size} fold fits stopped at max_iter="
          f"{self.max_iter} with the gradient norm above tol={self.tol}: "
          "their scores are not their optima's; raise max_iter",
          ConvergenceWarning, stacklevel=2)
    if self.refit:  # the best mean score's C, fit on all the data: the model
      best = int(np.argmax(self.scores_.mean(axis=0)))
      self.C_ = float(self.Cs_[best])
      # L-BFGS starts from the mean of the folds' models at C_, as
      # LogisticRegressionCV's refit does: the same optimum, in fewer
      # iterations (10,000 Fashion-MNIST images: 98 instead of 124). (A
      # minibatch fit from there would not be the fit at C_ from its seed.)
      at_best = [runs[f * num_cs + best] for f in range(num_folds)]
      init = (tuple(np.mean([r.params[k] for r in at_best], axis=0)
                    for k in ("w", "b"))
              if self.solver == "lbfgs"
              and all(r.status == results.OK for r in at_best) else None)
      self._report([self._fit_c(self.C_, dataset, weights.sum(), init)])
    else:  # scikit-learn's: each fold's model at its own best C, averaged;
      # C_ the mean of those Cs
      best = np.argmax(self.scores_, axis=1)
      picked = [runs[f * num_cs + best[f]] for f in range(num_folds)]
      _refuse_failed(picked)
      chosen = [r.params for r in picked]
      self.C_ = float(np.mean(self.Cs_[best]))
      self._set_model(np.mean([p["w"] for p in chosen], axis=0),
                      np.mean([p["b"] for p in chosen], axis=0))
      self._report([r.history[-1] for r in picked], budget,
                   "max_iter" if self.fold_max_iter is None
                   else "fold_max_iter")
    return self

  def _fold_budget(self) -> int:
    """The iterations of each (fold, C) fit at most: fold_max_iter, or
    max_iter where it is None."""
    if self.fold_max_iter is None:
      return self.max_iter
    if (isinstance(self.fold_max_iter, (bool, np.bool_))
        or not isinstance(self.fold_max_iter, (int, np.integer))
        or self.fold_max_iter < 1):
      raise ValueError(f"fold_max_iter must be an integer >= 1 or None, got "
                       f"{self.fold_max_iter!r}")
    return int(self.fold_max_iter)


def _check_c(c) -> None:
  try:
    ok = bool(np.isfinite(float(c)) and float(c) > 0)
  except (TypeError, ValueError):
    ok = False
  if not ok:
    raise ValueError(f"C must be a finite number > 0, got {c!r}")


def _dataset(X, y, weights, classes, solver) -> datasets.Dataset:
  """The arrays as a Dataset with no test split (the loop scores none),
  padded for a small full-batch fit (PAD_BELOW)."""
  x = np.ascontiguousarray(X, np.float32)
  w = np.asarray(weights, np.float32)
  n, d = x.shape
  if solver in FULL_BATCH and n * d < PAD_BELOW:
    rows, features = _power_of_two(n, 512), _power_of_two(d, 8)
    x = np.pad(x, ((0, rows - n), (0, features - d)))
    y, w = np.pad(y, (0, rows - n)), np.pad(w, (0, rows - n))
  return datasets.Dataset(
      name="arrays", x_train=x, y_train=y, x_test=x[:0], y_test=y[:0],
      class_names=tuple(str(c) for c in classes), w_train=w)


def _power_of_two(n: int, lowest: int) -> int:
  return max(lowest, 1 << (n - 1).bit_length())


def _fit_stack(configs: list[Config], dataset: datasets.Dataset,
               num_features: int, init=None,
               failed_ok: bool = False) -> list[results.RunResult]:
  """The trained runs of configs (one compiled stack where they differ only
  in values), their weights for the first num_features features (the rest
  padding), or a ValueError in scikit-learn's manner; each starts from the
  softmax params `init` (w [num_features, K], b [K]) where given. A run
  whose loss exploded or diverged is a ValueError, or with failed_ok
  returned as it is (its status says)."""
  init_params = None
  if init is not None:
    w, b = init
    padded = np.zeros((dataset.x_train.shape[1], len(b)), np.float32)
    padded[:num_features] = w
    init_params = [{"b": np.asarray(b, np.float32), "w": padded}] * len(
        configs)
  try:
    result = train.train_configs(configs, dataset, init_params=init_params)
  except UserError as e:
    raise ValueError(str(e)) from None
  if not failed_ok:
    _refuse_failed(result.runs)
  return [dataclasses.replace(r, params={**r.params,
                                         "w": r.params["w"][:num_features]})
          for r in result.runs]


def _refuse_failed(runs: list[results.RunResult]) -> None:
  """A ValueError for the first run whose loss diverged or exploded: a
  model of a loss gone far up is no model to return."""
  for run in runs:
    if run.status == results.DIVERGED:
      raise ValueError(str(results.diverged_error(run)).replace("--lr", "lr"))
    if run.status == results.EXPLODED:
      warning = next(r["warning"] for r in run.history if "warning" in r)
      raise ValueError(warning.replace("--lr", "lr"))


def _folds(splitter, X, y, groups) -> np.ndarray:
  """Each row's test fold under the splitter, or a ValueError where its
  test folds do not partition the rows."""
  folds = np.full(len(y), -1, np.int32)
  for f, (_, test) in enumerate(splitter.split(X, y, groups)):
    if (folds[test] >= 0).any():
      raise ValueError("cv's test folds overlap; give a splitter whose test "
                       "folds partition the rows (KFold, StratifiedKFold, "
                       "GroupKFold) or a number of folds")
    folds[test] = f
  if (folds < 0).any():
    raise ValueError("cv's test folds leave rows out; give a splitter whose "
                     "test folds partition the rows (KFold, StratifiedKFold, "
                     "GroupKFold) or a number of folds")
  return folds


def _score(scoring: str, params, X, y, sample_weight,
           num_classes: int) -> float:
  """A fold's score of a model, its rows weighted: accuracy or negative
  log-loss."""
  logits = X @ params["w"] + params["b"]
  if scoring == "accuracy":
    return float(accuracy_score(y, np.argmax(logits, axis=1),
                                sample_weight=sample_weight))
  return -float(log_loss(y, special.softmax(logits, axis=1),
                         sample_weight=sample_weight,
                         labels=np.arange(num_classes)))


