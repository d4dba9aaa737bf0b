"""An L1 path beside scikit-learn's saga, in one run: softmax_jax's OWL-QN
solving every strength as one stack against saga solving the same
strengths one after another, warm-started (warm_start=True), strong to weak.

  .venv/bin/python benchmarks/sparse.py            # an hour or more, 2 cores
  .venv/bin/python benchmarks/sparse.py --quick    # 2,000 images, ~7 min
  .venv/bin/python benchmarks/sparse.py --parity   # and the parity table

The real Fashion-MNIST (pixels / 255), the first --n_train images; the
objective mean cross-entropy + lambda ||W||_1 (scikit-learn's C sum_i
loss_i + ||W||_1 at C = 1 / (lambda N), over C N), at --strengths strengths
log-spaced from 0.5 to 0.01 lambda_max. Ours: --optimizer=owlqn to a KKT
violation of 1e-5 (its default tol; at most 3,000 iterations). saga: the
path at each tolerance of --saga_tols in turn, until it is at or below our
objective at every strength (within 1e-7 relative): the time "to the same
objective". Each objective recomputed here in float64. Writes markdown to
--out.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
from pathlib import Path
import platform
import sys
import time
import warnings

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from softmax_jax import train  # pylint: disable=wrong-import-position
from softmax_jax.config import Config  # pylint: disable=wrong-import-position
from softmax_jax.data import datasets  # pylint: disable=wrong-import-position
from softmax_jax.solvers import objective as objective_lib  # pylint: disable=wrong-import-position


def objective(w_dk, b_k, x, y, lam, rho=1.0) -> float:
  """mean cross-entropy + lam (rho ||W||_1 + (1 - rho) / 2 ||W||^2), in
  float64."""
  w_dk, b_k = np.asarray(w_dk, np.float64), np.asarray(b_k, np.float64)
  z = x @ w_dk + b_k
  z = z - z.max(axis=1, keepdims=True)
  log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
  penalty = rho * np.abs(w_dk).sum() + (1 - rho) / 2 * (w_dk ** 2).sum()
  return float(-log_p[np.arange(len(y)), y].mean() + lam * penalty)


def saga_fit(x, y, lam, rho, epochs, start=None):
  """scikit-learn's saga at C = 1 / (lam N) and l1_ratio rho, tol 1e-8, at
  most epochs passes; from start (W [D, K], b) when given, else from zero:
  (W, b, passes made, seconds)."""
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  model = LogisticRegression(C=1.0 / (lam * len(y)), l1_ratio=rho,
                             solver="saga", tol=1e-8, max_iter=epochs,
                             warm_start=start is not None)
  if start is not None:
    model.coef_, model.intercept_ = start[0].T.copy(), start[1].copy()
  begin = time.perf_counter()
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    model.fit(x, y)
  return (model.coef_.T.copy(), model.intercept_.copy(),
          int(np.max(model.n_iter_)), time.perf_counter() - begin)


def parity(dataset, x, y, args) -> list[str]:
  """l1 and elastic net (rho 0.5) at three strengths: ours (one stack per
  penalty, to its KKT tol) against saga at tol 1e-8 from zero, and saga
  started from our solution (an independent check of optimality: how much
  further can saga go down from where we stopped?)."""
  lines = ["", "## Parity at three strengths", "",
           f"Each fit alone: ours to a KKT violation below tol 1e-5 (at most "
           f"3,000 iterations); scikit-learn's `LogisticRegression(solver="
           f"\"saga\", l1_ratio=rho, tol=1e-8, max_iter={args.saga_epochs})`"
           f" from zero, and the same saga started from our solution "
           f"(max_iter={args.saga_polish}). Relative differences are (ours - "
           f"theirs) / theirs: negative is ours lower.", "",
           "| penalty | lambda / lambda_max | our objective | KKT | "
           "converged | saga from zero: epochs, s | ours - saga (rel.) | "
           "saga from ours: epochs | ours - saga (rel.) |",
           "|---|---|---|---|---|---|---|---|---|"]
  for penalty, rho in (("l1", 1.0), ("elasticnet", 0.5)):
    base = Config(optimizer="owlqn", penalty=penalty, l1_ratio=rho,
                  max_iters=3000, eval_every=2**30)
    lam_max = objective_lib.lambda_max(dataset, base)
    lams = lam_max * np.array([0.3, 0.1, 0.03])
    result = train.train_configs(
        [dataclasses.replace(base, weight_decay=float(lam)) for lam in lams],
        dataset)
    for lam, r in zip(lams, result.runs, strict=True):
      w, b = np.asarray(r.params["w"]), np.asarray(r.params["b"])
      ours = objective(w, b, x, y, lam, rho)
      last = r.history[-1]
      w0, b0, n0, s0 = saga_fit(x, y, lam, rho, args.saga_epochs)
      cold = objective(w0, b0, x, y, lam, rho)
      w1, b1, n1, _ = saga_fit(x, y, lam, rho, args.saga_polish, (w, b))
      polished = objective(w1, b1, x, y, lam, rho)
      lines.append(
          f"| {penalty} | {lam / lam_max:g} | {ours:.8f} | "
          f"{last['grad_norm']:.1e} | {'yes' if last['converged'] else 'no'} | "
          f"{n0}, {s0:.0f} | {ours / cold - 1:+.1e} | {n1} | "
          f"{ours / polished - 1:+.1e} |")
      print(lines[-1], flush=True)
  return lines


def saga_path(x, y, lams, tol):
  """saga along the strengths (strong to weak), each from the last: the
  solutions (W [D, K], b) and the seconds of the whole path."""
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  model = LogisticRegression(l1_ratio=1.0, solver="saga", tol=tol,
                             max_iter=100_000, warm_start=True)
  solutions, start = [], time.perf_counter()
  for lam in lams:
    model.set_params(C=1.0 / (lam * len(y)))
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      model.fit(x, y)
    solutions.append((model.coef_.T.copy(), model.intercept_.copy()))
  return solutions, time.perf_counter() - start


def _command_flags() -> str:
  """The command line's flags, but --out: how to take this report again."""
  return "".join(f" {a}" for a in sys.argv[1:] if not a.startswith("--out"))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--n_train", type=int, default=10_000)
  parser.add_argument("--strengths", type=int, default=8)
  parser.add_argument("--saga_tols", default="1e-3,1e-4,1e-5,1e-6")
  parser.add_argument("--parity", action="store_true",
                      help="also the parity table: l1 and elastic net at "
                      "three strengths against saga at tol 1e-8")
  parser.add_argument("--saga_epochs", type=int, default=300,
                      help="the parity table's saga from zero: its max_iter")
  parser.add_argument("--saga_polish", type=int, default=100,
                      help="the parity table's saga from our solution: its "
                      "max_iter")
  parser.add_argument("--quick", action="store_true",
                      help="2,000 images, 4 strengths, saga tols 1e-3,1e-4")
  parser.add_argument("--out", default=str(ROOT / "benchmarks" / "sparse.md"))
  args = parser.parse_args()
  if args.quick:
    args.n_train, args.strengths, args.saga_tols = 2000, 4, "1e-3,1e-4"
  full = datasets.load("fashion_mnist")
  n = args.n_train
  dataset = dataclasses.replace(full, x_train=full.x_train[:n],
                                y_train=full.y_train[:n],
                                x_test=full.x_test[:0], y_test=full.y_test[:0])
  x, y = full.x_train[:n] / 255.0, full.y_train[:n]
  base = Config(optimizer="owlqn", penalty="l1", max_iters=3000,
                eval_every=2**30)
  lam_max = objective_lib.lambda_max(dataset, base)
  lams = lam_max * np.logspace(np.log10(0.5), -2, args.strengths)

  start = time.perf_counter()
  result = train.train_configs(
      [dataclasses.replace(base, weight_decay=float(lam)) for lam in lams],
      dataset)
  ours_s = time.perf_counter() - start
  ours = [objective(r.params["w"].astype(np.float64),
                    r.params["b"].astype(np.float64), x, y, lam)
          for r, lam in zip(result.runs, lams, strict=True)]
  last = [r.history[-1] for r in result.runs]

  lines = [f"# An L1 path beside scikit-learn's saga "
           f"({datetime.date.today()})", "",
           f"`python benchmarks/sparse.py{_command_flags()}` "
           f"on {platform.machine()}; {n:,} Fashion-MNIST images (pixels / "
           f"255), {args.strengths} strengths from 0.5 to 0.01 lambda_max "
           f"(lambda_max = {lam_max:.5g}).", "",
           f"softmax_jax (OWL-QN, one stack, tol 1e-5, max_iters 3000): "
           f"**{ours_s:.1f} s** "
           "(compilation included).", "",
           "| lambda / lambda_max | our objective | KKT violation | "
           "iterations | nonzero weights | pixels used |",
           "|---|---|---|---|---|---|"]
  for lam, value, r in zip(lams, ours, last, strict=True):
    lines.append(f"| {lam / lam_max:.4g} | {value:.7f} | "
                 f"{r['grad_norm']:.1e} | {int(r['iterations'])} | "
                 f"{int(r['nonzero'])} | {int(r['features_used'])} |")
  lines += ["", "| saga path | seconds | worst objective above ours "
            "(relative) | at or below ours everywhere |", "|---|---|---|---|"]
  reached = None
  for tol in (float(t) for t in args.saga_tols.split(",")):
    solutions, seconds = saga_path(x, y, lams, tol)
    theirs = [objective(w, b, x, y, lam)
              for (w, b), lam in zip(solutions, lams, strict=True)]
    worst = max(t / o - 1 for t, o in zip(theirs, ours, strict=True))
    ok = worst <= 1e-7
    lines.append(f"| tol {tol:g} | {seconds:.1f} | {worst:.2e} | "
                 f"{'yes' if ok else 'no'} |")
    print(lines[-1], flush=True)
    if ok:
      reached = seconds
      break
  lines.append("")
  if reached is not None:
    lines.append(f"To the same objective at every strength: saga {reached:.1f}"
                 f" s, ours {ours_s:.1f} s: **{reached / ours_s:.1f} x**.")
  else:
    lines.append(f"saga did not reach our objective at every strength at its "
                 f"tightest tolerance; its last path took {seconds:.1f} s "
                 f"({seconds / ours_s:.1f} x ours) and still stopped above.")
  Path(args.out).write_text("\n".join(lines) + "\n")
  if args.parity:
    lines += parity(dataset, x, y, args)
    Path(args.out).write_text("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
