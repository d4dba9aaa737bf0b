"""A regularization path solved exactly: softmax_jax's L-BFGS beside
scikit-learn's warm-started path, in one run.

  .venv/bin/pip install -r requirements-bench.txt
  .venv/bin/python benchmarks/lbfgs_path.py          # ~30-40 minutes on 2 cores
  .venv/bin/python benchmarks/lbfgs_path.py --max_iters=5000 \
      --sklearn_tol=1e-6                              # ~1 hour: every objective
  .venv/bin/python benchmarks/lbfgs_path.py --skip_sklearn   # ours only

The real Fashion-MNIST (pixels / 255; the sweep's fixed validation split
held out, as `launch.py` does for a sweep), 16 weight decays log-spaced from
1e-6 to 1e-2, the objective mean cross-entropy + (weight_decay / 2) ||W||^2.
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
LogisticRegressionCV do). Writes a markdown report to --out.
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
  args = parser.parse_args()
  sklearn_tol = args.tol if args.sklearn_tol is None else args.sklearn_tol

  dataset = data_lib.hold_out_validation(data_lib.load("fashion_mnist"),
                                         sweep.DEFAULT_VAL_FRACTION)
  weight_decays = np.logspace(-6, -2, args.strengths)
  x = data_lib.to_features(dataset.x_train).astype(np.float64)
  x_val = data_lib.to_features(dataset.x_val).astype(np.float64)
  y, y_val = dataset.y_train, dataset.y_val

  contenders = {"softmax_jax": ours(dataset, weight_decays, args.tol,
                                    args.max_iters)}
  if not args.skip_sklearn:
    contenders["scikit-learn"] = sklearn_path(x, y, weight_decays,
                                              sklearn_tol, args.max_iters)
  for _, rows in contenders.values():
    for wd, row in zip(weight_decays, rows, strict=True):
      row["objective"] = objective(x, y, row["w"], row["b"], wd)
      row["val_accuracy"] = accuracy(x_val, y_val, row["w"], row["b"])

  names = list(contenders)
  chosen = {name: _strongest_best(rows) for name, (_, rows) in
            contenders.items()}
  lines = [
      "# A regularization path solved exactly: softmax_jax beside scikit-learn",
      "",
      f"Measured {datetime.date.today()} on {platform.machine()} "
      f"({platform.processor() or 'CPU'}), Python {platform.python_version()}, "
      f"by `.venv/bin/python benchmarks/lbfgs_path.py {' '.join(sys.argv[1:])}"
      f"`: the real Fashion-MNIST ({len(x):,} training and {len(x_val):,} "
      f"validation images, pixels / 255), {len(weight_decays)} weight decays "
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
  lines += ["", "| weight decay | " + " | ".join(
      f"{n} iterations | {n} objective | {n} val acc" for n in names)
            + (" | objective difference (relative) |" if len(names) == 2
               else ""),
            "|---|" + "---|---|---|" * len(names)
            + ("---|" if len(names) == 2 else "")]
  for i, wd in enumerate(weight_decays):
    cells = []
    for n in names:
      r = contenders[n][1][i]
      mark = "" if r["converged"] else " (max)"
      pick = " **chosen**" if chosen[n] == i else ""
      cells.append(f"{r['iterations']}{mark} | {r['objective']:.8f} | "
                   f"{r['val_accuracy']:.4f}{pick}")
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
