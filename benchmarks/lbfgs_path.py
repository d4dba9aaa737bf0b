"""A regularization path solved exactly: softmax_jax's L-BFGS beside
scikit-learn's warm-started path, in one run.

  .venv/bin/pip install -r requirements-bench.txt
  .venv/bin/python benchmarks/lbfgs_path.py          # ~30-40 minutes on 2 cores
  .venv/bin/python benchmarks/lbfgs_path.py --max_iters=5000 \
      --sklearn_tol=1e-6                              # ~1 hour: every objective
  .venv/bin/python benchmarks/lbfgs_path.py --skip_sklearn   # ours only
  .venv/bin/python benchmarks/lbfgs_path.py --standardize \
      --dataset=npy:runs/data/fashion_mnist_efficientnet_lite0 \
      --figure=experiments/figures/pretrained_path.png   # pretrained features

The real Fashion-MNIST (pixels / 255; the sweep's fixed validation split
held out, as `launch.py` does for a sweep), or any --dataset (with
--standardize: each feature standardized by the training rows' statistics),
16 weight decays log-spaced from 1e-6 to 1e-2 (--wd_range), the objective
mean cross-entropy + (weight_decay / 2) ||W||^2.
softmax_jax solves the whole path as one stack (train.train_configs, the
code behind `launch.py --optimizer=lbfgs --weight_decay=<list>`), timed from
the call to its return: compilation, the rounds and each round's
evaluation included. scikit-learn's LogisticRegression (lbfgs,
C = 1 / (weight_decay N)) solves the strengths one after the other from the
strongest penalty to the weakest, each started from the previous solution
(warm_start, as LogisticRegressionCV does along its path). Both stop at the
same --tol (ours on the gradient's 2-norm, scikit-learn's on its largest
entry, a looser test) or after --max_iters iterations. At the same tol
scikit-learn stops up to ~6e-5 (relative) above the optimum where ours is
within 1e-5, so --sklearn_tol tightens its test alone, for a comparison at
equal accuracy. Every objective is recomputed here in float64 from the
returned weights; each selects the strength with the best validation
accuracy, a tie going to the stronger penalty (as launch.py and
LogisticRegressionCV do), and is scored on the test set; scikit-learn's
cold fit at the chosen strength alone (what a user who knew the strength
would run) is timed too. Writes a markdown report to --out and, with
--figure, validation and test accuracy against the strength.
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

from softmax_jax import sweep  # pylint: disable=wrong-import-position
from softmax_jax import train  # pylint: disable=wrong-import-position
from softmax_jax.config import Config  # pylint: disable=wrong-import-position
from softmax_jax.data import datasets as data_lib  # pylint: disable=wrong-import-position


def objective(x, y, w, b, weight_decay) -> float:
  """mean cross-entropy + (weight_decay / 2) ||W||^2, in float64."""
  o = x @ w + b
  o -= o.max(axis=1, keepdims=True)
  log_p = o - np.log(np.exp(o).sum(axis=1, keepdims=True))
  return float(-log_p[np.arange(len(y)), y].mean()
               + 0.5 * weight_decay * np.sum(w**2))


def accuracy(x, y, w, b) -> float:
  return float(np.mean((x @ w + b).argmax(axis=1) == y))


def ours(dataset, weight_decays, tol, max_iters) -> tuple[float, list[dict]]:
  configs = [Config(optimizer="lbfgs", weight_decay=float(wd), tol=tol,
                    max_iters=max_iters) for wd in weight_decays]
  start = time.perf_counter()
  result = train.train_configs(configs, dataset)
  seconds = time.perf_counter() - start
  rows = []
  for run in result.runs:
    last = run.history[-1]
    rows.append({"w": run.params["w"].astype(np.float64),
                 "b": run.params["b"].astype(np.float64),
                 "iterations": last["iterations"],
                 "evaluations": last["evaluations"],
                 "converged": last["converged"]})
  print(f"softmax_jax: {seconds:.1f} s", flush=True)
  return seconds, rows


def sklearn_path(x, y, weight_decays, tol,
                 max_iters) -> tuple[float, list[dict]]:
  from sklearn.linear_model import LogisticRegression  # pylint: disable=import-outside-toplevel
  model = LogisticRegression(tol=tol, max_iter=max_iters, warm_start=True)
  rows = {}
  start = time.perf_counter()
  for wd in sorted(weight_decays, reverse=True):  # strongest first
    model.set_params(C=1.0 / (wd * len(x)))
    t = time.perf_counter()
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")  # ConvergenceWarning: reported below
      model.fit(x, y)
    rows[wd] = {"w": model.coef_.T.copy(), "b": model.intercept_.copy(),
                "iterations": int(model.n_iter_[0]),
                "converged": int(model.n_iter_[0]) < max_iters,
                "seconds": time.perf_counter() - t}
    print(f"scikit-learn weight decay {wd:.3g}: {rows[wd]['iterations']} "
          f"iterations, {rows[wd]['seconds']:.1f} s", flush=True)
  return time.perf_counter() - start, [rows[wd] for wd in weight_decays]


def _features(dataset, split) -> np.ndarray:
  """A split's features in float64 (standardized already with
  --standardize)."""
  return data_lib.to_features(getattr(dataset, f"x_{split}")).astype(
      np.float64)


def _describe(args) -> str:
  if args.dataset == "fashion_mnist":
    what = "the real Fashion-MNIST"
  else:
    what = f"--dataset={args.dataset}"
  return what + (", standardized" if args.standardize else
                 (" (pixels / 255)" if args.dataset == "fashion_mnist" else ""))


def _figure(path, weight_decays, contenders, dataset_name) -> None:
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  from matplotlib import ticker  # pylint: disable=import-outside-toplevel
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  fig, ax = plt.subplots(figsize=(6, 4))
  styles = {"softmax_jax": "-", "scikit-learn": ":"}
  for name, (_, rows) in contenders.items():
    for split, marker in (("val", "o"), ("test", "s")):
      ax.semilogx(weight_decays, [r[f"{split}_accuracy"] for r in rows],
                  styles[name], marker=marker, markersize=3,
                  label=f"{name}, {split}")
  ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
  ax.set_xlabel("weight decay (L2 strength)")
  ax.set_ylabel("accuracy")
  ax.set_title(f"L-BFGS path on {dataset_name}", fontsize=9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  print(f"wrote {path}")


def _cross_validation(dataset, weight_decays, args) -> dict:
  """SoftmaxRegressionCV over the path's strengths on train + validation."""
  from softmax_jax import SoftmaxRegressionCV  # pylint: disable=import-outside-toplevel
  x = np.concatenate([_features(dataset, "train"), _features(dataset, "val")])
  y = np.concatenate([dataset.y_train, dataset.y_val])
  rows = len(y) * (args.cv - 1) / args.cv  # a fold's training rows
  cs = [1.0 / (wd * rows) for wd in weight_decays]
  start = time.perf_counter()
  model = SoftmaxRegressionCV(Cs=cs, cv=args.cv, tol=args.tol,
                              max_iter=args.max_iters).fit(x, y)
  seconds = time.perf_counter() - start
  print(f"SoftmaxRegressionCV: {seconds:.1f} s", flush=True)
  return {"seconds": seconds, "rows": len(y),
          "weight_decay": 1.0 / (model.C_ * rows),
          "test_accuracy": model.score(_features(dataset, "test"),
                                       dataset.y_test)}


def _strongest_best(rows) -> int:
  """The index of the best validation accuracy, the last (the strongest
  penalty: weight decays ascend) among ties."""
  accuracies = [r["val_accuracy"] for r in rows]
  return max(i for i, a in enumerate(accuracies) if a == max(accuracies))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out",
                      default=str(ROOT / "benchmarks" / "lbfgs_path.md"))
  parser.add_argument("--strengths", type=int, default=16)
  parser.add_argument("--tol", type=float, default=1e-5)
  parser.add_argument("--sklearn_tol", type=float, default=None,
                      help="scikit-learn's tol (default: --tol)")
  parser.add_argument("--max_iters", type=int, default=1000)
  parser.add_argument("--skip_sklearn", action="store_true")
  parser.add_argument("--dataset", default="fashion_mnist")
  parser.add_argument("--standardize", action="store_true")
  parser.add_argument("--wd_range", default="-6,-2",
                      help="log10 of the weakest and strongest weight decay")
  parser.add_argument("--cv", type=int, default=0,
                      help="also SoftmaxRegressionCV(Cs=the path's "
                      "strengths, cv=CV) on training + validation rows, "
                      "scored on the test set")
  parser.add_argument("--figure", default=None,
                      help="a .png of validation and test accuracy against "
                      "the weight decay")
  args = parser.parse_args()
  sklearn_tol = args.tol if args.sklearn_tol is None else args.sklearn_tol

  dataset = data_lib.hold_out_validation(data_lib.load(args.dataset),
                                         sweep.DEFAULT_VAL_FRACTION)
  if args.standardize:
    dataset = data_lib.standardize(dataset)
  low, high = (float(v) for v in args.wd_range.split(","))
  weight_decays = np.logspace(low, high, args.strengths)
  x, x_val, x_test = (_features(dataset, s) for s in ("train", "val", "test"))
  y, y_val, y_test = dataset.y_train, dataset.y_val, dataset.y_test

  contenders = {"softmax_jax": ours(dataset, weight_decays, args.tol,
                                    args.max_iters)}
  if not args.skip_sklearn:
    contenders["scikit-learn"] = sklearn_path(x, y, weight_decays,
                                              sklearn_tol, args.max_iters)
  for _, rows in contenders.values():
    for wd, row in zip(weight_decays, rows, strict=True):
      row["objective"] = objective(x, y, row["w"], row["b"], wd)
      row["val_accuracy"] = accuracy(x_val, y_val, row["w"], row["b"])
      row["test_accuracy"] = accuracy(x_test, y_test, row["w"], row["b"])

  names = list(contenders)
  chosen = {name: _strongest_best(rows) for name, (_, rows) in
            contenders.items()}
  single = None
  if not args.skip_sklearn:
    single = sklearn_path(x, y, [weight_decays[chosen["scikit-learn"]]],
                          sklearn_tol, args.max_iters)
    single[1][0]["test_accuracy"] = accuracy(x_test, y_test, single[1][0]["w"],
                                             single[1][0]["b"])
  if args.figure:
    _figure(args.figure, weight_decays, contenders, args.dataset)
  cv = _cross_validation(dataset, weight_decays, args) if args.cv else None
  lines = [
      "# A regularization path solved exactly: softmax_jax beside scikit-learn",
      "",
      f"Measured {datetime.date.today()} on {platform.machine()} "
      f"({platform.processor() or 'CPU'}), Python {platform.python_version()}, "
      f"by `.venv/bin/python benchmarks/lbfgs_path.py {' '.join(sys.argv[1:])}"
      f"`: {_describe(args)} ({len(x):,} training, {len(x_val):,} "
      f"validation and {len(x_test):,} test examples, {x.shape[1]:,} "
      f"features), {len(weight_decays)} weight decays "
      f"{weight_decays[0]:.0e} .. {weight_decays[-1]:.0e}, tol {args.tol:g} "
      f"(the gradient's 2-norm; scikit-learn: {sklearn_tol:g} on its largest "
      f"entry), at most {args.max_iters} iterations (see the script's "
      "docstring).",
      "",
      "| | " + " | ".join(f"{n} seconds" for n in names) + " |",
      "|---|" + "---|" * len(names),
      "| the whole path | " + " | ".join(
          f"{contenders[n][0]:.1f}" for n in names) + " |"]
  if len(names) == 2:
    ratio = contenders["scikit-learn"][0] / contenders["softmax_jax"][0]
    lines += ["", f"softmax_jax solves the path **{ratio:.1f} x** as fast as "
              "scikit-learn's warm-started path."]
  if single is not None:
    fit = single[1][0]
    lines += ["", "scikit-learn's cold fit at its chosen strength alone: "
              f"{single[0]:.1f} s ({fit['iterations']} iterations), test "
              f"accuracy {fit['test_accuracy']:.4f}."]
  lines += ["", "Test accuracy at each one's chosen strength: " + ", ".join(
      f"{n} {contenders[n][1][chosen[n]]['test_accuracy']:.4f}"
      for n in names) + "."]
  if cv is not None:
    lines += ["", f"`SoftmaxRegressionCV(Cs=<the {len(weight_decays)} "
              f"strengths>, cv={args.cv})` on the {cv['rows']:,} training "
              f"and validation rows: {cv['seconds']:.1f} s (folds x Cs in "
              f"one stack, and the refit), chose weight decay "
              f"{cv['weight_decay']:.3g}, test accuracy "
              f"{cv['test_accuracy']:.4f}."]
  lines += ["", "| weight decay | " + " | ".join(
      f"{n} iterations | {n} objective | {n} val acc | {n} test acc"
      for n in names)
            + (" | objective difference (relative) |" if len(names) == 2
               else ""),
            "|---|" + "---|---|---|---|" * len(names)
            + ("---|" if len(names) == 2 else "")]
  for i, wd in enumerate(weight_decays):
    cells = []
    for n in names:
      r = contenders[n][1][i]
      mark = "" if r["converged"] else " (max)"
      pick = " **chosen**" if chosen[n] == i else ""
      cells.append(f"{r['iterations']}{mark} | {r['objective']:.8f} | "
                   f"{r['val_accuracy']:.4f}{pick} | "
                   f"{r['test_accuracy']:.4f}")
    diff = ""
    if len(names) == 2:
      a, b = (contenders[n][1][i]["objective"] for n in names)
      diff = f" | {(a - b) / b:+.1e}"
    lines.append(f"| {wd:.2e} | " + " | ".join(cells) + diff + " |")
  if len(names) == 2:
    same = chosen["softmax_jax"] == chosen["scikit-learn"]
    worst = max(abs(a["objective"] - b["objective"]) / b["objective"]
                for a, b in zip(*(contenders[n][1] for n in names),
                                strict=True))
    lines += ["", f"Largest relative objective difference: {worst:.1e}; "
              f"the same strength chosen: {'yes' if same else 'no'}. A "
              "negative difference: softmax_jax's objective is the lower."]
  text = "\n".join(lines) + "\n"
  Path(args.out).write_text(text)
  print(text)


if __name__ == "__main__":
  main()
