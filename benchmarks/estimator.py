"""The estimators beside scikit-learn's, in one run: SoftmaxRegression
against LogisticRegression (lbfgs) to the same objective, SoftmaxRegressionCV
against LogisticRegressionCV, and a notebook's first and second fit.

  .venv/bin/python benchmarks/estimator.py            # ~12 minutes, 2 cores
  .venv/bin/python benchmarks/estimator.py --quick    # small sizes, ~2 min

The real Fashion-MNIST (pixels / 255). (1) One fit on --n_train images at
C = --c: ours with its defaults (L-BFGS to a gradient norm of 1e-5), and
scikit-learn's with its defaults (tol 1e-4, max_iter 100) and with its
tolerance tightened until its objective is as low as ours (the time "to
the same objective"); each objective recomputed here in float64 as
scikit-learn's C sum_i loss_i + ||W||^2 / 2. (2) Cross-validation: Cs=10,
cv=5 (stratified) on --cv_n images, both with their defaults (and ours with
every fold fit to tol: fold_max_iter=None), each refit on all of them at
its chosen C, scored on the 10,000 test images. (3) Iris
(150 x 4): our first fit in this process, compilation included, and a
second fit of the same shapes. Writes markdown to --out.
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path
import platform
import sys
import time
import warnings

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from softmax_jax import SoftmaxRegression  # pylint: disable=wrong-import-position
from softmax_jax import SoftmaxRegressionCV  # pylint: disable=wrong-import-position
from softmax_jax.data import datasets  # pylint: disable=wrong-import-position


def objective(model, X, y, C) -> float:
  """scikit-learn's C sum_i loss_i + ||W||^2 / 2, in float64."""
  z = X @ model.coef_.T + model.intercept_
  z -= z.max(axis=1, keepdims=True)
  log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
  return float(-C * log_p[np.arange(len(y)), y].sum()
               + 0.5 * np.sum(model.coef_**2))


def timed(fn):
  start = time.perf_counter()
  out = fn()
  return out, time.perf_counter() - start


def one_fit(X, y, c, lines):
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  ours, ours_s = timed(lambda: SoftmaxRegression(C=c).fit(X, y))
  best = objective(ours, X, y, c)
  lines += [f"### One fit: {len(y):,} images, C = {c:g}", "",
            "| fit | seconds | objective | above ours | iterations |",
            "|---|---|---|---|---|",
            f"| softmax_jax (defaults: tol 1e-5) | {ours_s:.1f} | {best:.6f} "
            f"| 0 | {ours.n_iter_[0]} |"]
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    default, default_s = timed(lambda: LogisticRegression(C=c).fit(X, y))
  lines.append(f"| scikit-learn (defaults: tol 1e-4, max_iter 100) | "
               f"{default_s:.1f} | {objective(default, X, y, c):.6f} | "
               f"{objective(default, X, y, c) / best - 1:.2e} | "
               f"{default.n_iter_[0]} |")
  same = None
  for tol in (1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10):
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      fit, seconds = timed(lambda tol=tol: LogisticRegression(
          C=c, tol=tol, max_iter=100_000).fit(X, y))
    value = objective(fit, X, y, c)
    lines.append(f"| scikit-learn tol {tol:g} | {seconds:.1f} | {value:.6f} "
                 f"| {value / best - 1:.2e} | {fit.n_iter_[0]} |")
    if value <= best * (1 + 1e-7):
      same = (tol, seconds, fit)
      break
  if same:
    agree = np.mean(same[2].predict(X) == ours.predict(X))
    lines += ["", f"To the same objective (within 1e-7): scikit-learn "
              f"(tol {same[0]:g}) {same[1]:.1f} s, ours {ours_s:.1f} s: "
              f"**{same[1] / ours_s:.1f} x**; predictions on the training "
              f"images agree on {agree:.2%}."]
  else:
    lines += ["", "scikit-learn did not reach our objective at tol 1e-10."]
  lines.append("")


def cross_validation(X, y, X_test, y_test, lines):
  from sklearn.linear_model import LogisticRegressionCV  # pylint: disable=g-import-not-at-top
  ours, ours_s = timed(lambda: SoftmaxRegressionCV(Cs=10, cv=5).fit(X, y))
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    exact, exact_s = timed(lambda: SoftmaxRegressionCV(
        Cs=10, cv=5, fold_max_iter=None).fit(X, y))
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    theirs, theirs_s = timed(lambda: LogisticRegressionCV(
        Cs=10, cv=5, l1_ratios=(0.0,), scoring="accuracy",
        use_legacy_attributes=False).fit(X, y))
  steps = abs(int(np.argmin(abs(ours.Cs_ - ours.C_)))
              - int(np.argmin(abs(ours.Cs_ - float(theirs.C_)))))
  lines += [f"### Cross-validation: Cs=10, cv=5 on {len(y):,} images", "",
            "| | seconds | C chosen | test accuracy (refit) |",
            "|---|---|---|---|",
            f"| SoftmaxRegressionCV (defaults: fold fits at most 100 "
            f"iterations, {ours.fold_converged_.sum()} of "
            f"{ours.fold_converged_.size} to tol) | {ours_s:.1f} | "
            f"{ours.C_:.3g} | {ours.score(X_test, y_test):.4f} |",
            f"| SoftmaxRegressionCV(fold_max_iter=None): every fold fit to "
            f"tol ({exact.fold_converged_.sum()} of "
            f"{exact.fold_converged_.size} within max_iter "
            f"{exact.max_iter}) | {exact_s:.1f} | {exact.C_:.3g} | "
            f"{exact.score(X_test, y_test):.4f} |",
            f"| LogisticRegressionCV | {theirs_s:.1f} | {theirs.C_:.3g} | "
            f"{theirs.score(X_test, y_test):.4f} |", "",
            f"**{theirs_s / ours_s:.1f} x** with the defaults "
            f"({theirs_s / exact_s:.1f} x every fold fit to tol); the chosen "
            f"Cs {steps} step(s) apart on the grid.", ""]


def tiny(lines):
  from sklearn.datasets import load_iris  # pylint: disable=g-import-not-at-top
  X, y = load_iris(return_X_y=True)
  _, first = timed(lambda: SoftmaxRegression().fit(X, y))
  _, second = timed(lambda: SoftmaxRegression().fit(X, y))
  lines += ["### A notebook's fits: iris (150 x 4)", "",
            f"First fit in the process (compilation included): {first:.2f} "
            f"s; a second fit of the same shapes: {second:.2f} s.", ""]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--n_train", type=int, default=60_000)
  parser.add_argument("--c", type=float, default=1 / 3)
  parser.add_argument("--cv_n", type=int, default=10_000)
  parser.add_argument("--quick", action="store_true",
                      help="2,000 images for the fit, 1,000 for the CV")
  parser.add_argument("--out", default=str(Path(__file__).with_suffix(".md")))
  args = parser.parse_args()
  if args.quick:
    args.n_train, args.cv_n = 2_000, 1_000
  ds = datasets.load("fashion_mnist")
  X, y = ds.x_train / 255.0, ds.y_train
  X_test, y_test = ds.x_test / 255.0, ds.y_test
  import jax  # pylint: disable=g-import-not-at-top
  import sklearn  # pylint: disable=g-import-not-at-top
  command = "python benchmarks/estimator.py" + (" --quick" if args.quick
                                                 else "")
  machine = platform.processor() or platform.machine()
  lines = [f"# The estimators beside scikit-learn ({datetime.date.today()})",
           "", f"`{command}` on {machine}, "
           f"{jax.device_count()} {jax.default_backend()} device(s), jax "
           f"{jax.__version__}, scikit-learn {sklearn.__version__}.", ""]
  tiny(lines)
  one_fit(X[:args.n_train], y[:args.n_train], args.c, lines)
  cross_validation(X[:args.cv_n], y[:args.cv_n], X_test, y_test, lines)
  Path(args.out).write_text("\n".join(lines))
  print("\n".join(lines))


if __name__ == "__main__":
  main()
