"""The CLIP linear-probe protocol: softmax_jax's wall time beside
scikit-learn's, the latter extrapolated from a measured subset.

  .venv/bin/pip install -r requirements-bench.txt
  .venv/bin/python benchmarks/clip_probe.py      # ~30 minutes on 2 cores

The protocol is experiments/clip_probe.py's: the real Fashion-MNIST,
standardized pixels, 10,000 of the 60,000 training images held out for
validation, 96 weight decays 1e-6 .. 1e6, L-BFGS to tol 1e-5 or 1,000
iterations, the best strength by validation accuracy refit on all 60,000.
softmax_jax runs it whole (`runner.run(..., refit=True)`, what
`launch.py --config=experiments/clip_probe.py --refit` does: the outputs,
figures and report included), timed from the call to its return.

scikit-learn (LogisticRegression, lbfgs, C = 1 / (weight_decay N), the
same tol and cap) would take hours for the 96 fits, so it runs a measured
subset: the path in its warm-started order (strongest penalty first, each
fit started from the previous solution, as LogisticRegressionCV does), cut
into --blocks equal segments; in each segment the first fit only warms up
(untimed, started cold), the next --fits_per_block are timed, and their mean
stands for every fit of the segment. The refit at softmax_jax's chosen
strength is measured whole. The timed fits are each segment's strongest
penalties, the cheaper end of it where the penalties are weak, so the
estimate leans low, in scikit-learn's favour; the per-segment numbers are in
the report. Writes a markdown report to --out.
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path
import platform
import sys
import tempfile
import time
import warnings

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from softmax_jax import config as config_lib
from softmax_jax import runner
from softmax_jax import sweep
from softmax_jax.data import datasets as data_lib

EXPERIMENT = ROOT / "experiments" / "clip_probe.py"


def ours() -> tuple[float, dict]:
  base, file_sweep = config_lib.load_experiment(str(EXPERIMENT))
  configs = sweep.build(base, file_sweep, {})
  with tempfile.TemporaryDirectory() as workdir:
    start = time.perf_counter()
    summary = runner.run(configs, Path(workdir) / "run", refit=True,
                         verbose=False)
    seconds = time.perf_counter() - start
  print(f"softmax_jax: {seconds:.1f} s", flush=True)
  return seconds, summary


def _model(tol, max_iters):
  from sklearn.linear_model import LogisticRegression  # pylint: disable=import-outside-toplevel
  return LogisticRegression(tol=tol, max_iter=max_iters, warm_start=True)


def _fit(model, x, y, weight_decay) -> tuple[float, int]:
  model.set_params(C=1.0 / (weight_decay * len(x)))
  start = time.perf_counter()
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # ConvergenceWarning: iterations shown
    model.fit(x, y)
  return time.perf_counter() - start, int(model.n_iter_[0])


def sklearn_subset(x, y, weight_decays, blocks, fits_per_block, tol,
                   max_iters) -> list[dict]:
  """Per segment of the strongest-first path: its strengths and the timed
  fits (seconds, iterations)."""
  path = sorted(weight_decays, reverse=True)
  segments = []
  for part in np.array_split(np.asarray(path), blocks):
    segment = [float(wd) for wd in part]
    model = _model(tol, max_iters)
    _fit(model, x, y, segment[0])  # the warm-up: a cold start, untimed
    fits = [_fit(model, x, y, wd) for wd in segment[1:1 + fits_per_block]]
    segments.append({"from": segment[0], "to": segment[-1],
                     "strengths": len(segment), "fits": fits})
    print(f"scikit-learn segment {segment[0]:.3g} .. {segment[-1]:.3g}: "
          + ", ".join(f"{s:.1f} s ({i} it)" for s, i in fits), flush=True)
  return segments


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default=str(ROOT / "benchmarks" /
                                           "clip_probe.md"))
  parser.add_argument("--blocks", type=int, default=6)
  parser.add_argument("--fits_per_block", type=int, default=3)
  args = parser.parse_args()

  base, file_sweep = config_lib.load_experiment(str(EXPERIMENT))
  weight_decays = [c.weight_decay for c in sweep.build(base, file_sweep, {})]
  ours_seconds, summary = ours()
  chosen = summary["best"]["config"]["weight_decay"]

  full = data_lib.load(base.dataset)
  assert base.val_fraction is not None  # the protocol holds out validation
  split = data_lib.standardize(data_lib.hold_out_validation(
      full, base.val_fraction))
  assert split.x_val is not None  # hold_out_validation sets it
  x = split.x_train.astype(np.float64)
  segments = sklearn_subset(x, split.y_train, weight_decays, args.blocks,
                            args.fits_per_block, base.tol, base.max_iters)
  path_estimate = sum(s["strengths"] * np.mean([t for t, _ in s["fits"]])
                      for s in segments)
  refit_data = data_lib.standardize(full)
  refit_seconds, refit_iterations = _fit(
      _model(base.tol, base.max_iters), refit_data.x_train.astype(np.float64),
      refit_data.y_train, chosen)
  print(f"scikit-learn refit: {refit_seconds:.1f} s", flush=True)
  sklearn_estimate = path_estimate + refit_seconds
  measured = (sum(t for s in segments for t, _ in s["fits"])
              + refit_seconds)

  lines = [
      "# The CLIP linear-probe protocol: softmax_jax beside scikit-learn",
      "",
      f"Measured {datetime.date.today()} on {platform.machine()} "
      f"({platform.processor() or 'CPU'}), Python "
      f"{platform.python_version()}, by `.venv/bin/python "
      f"benchmarks/clip_probe.py {' '.join(sys.argv[1:])}`: "
      "experiments/clip_probe.py's protocol on the real Fashion-MNIST "
      f"({len(x):,} training and {len(split.x_val):,} validation images, "
      f"standardized), {len(weight_decays)} weight decays "
      f"{min(weight_decays):.0e} .. {max(weight_decays):.0e}, tol "
      f"{base.tol:g}, at most {base.max_iters} iterations, the best refit on "
      f"all {len(full.x_train):,} (see the script's docstring).",
      "",
      "| | seconds | |",
      "|---|---|---|",
      f"| softmax_jax, the whole protocol | {ours_seconds:.1f} | measured: "
      f"chose weight decay {chosen:g}, val acc "
      f"{summary['best']['val_accuracy']:.4f}, refit test acc "
      f"{summary['refit']['test_accuracy']:.4f} |",
      f"| scikit-learn, the whole protocol | {sklearn_estimate:.0f} | "
      f"**estimate**: {measured:.0f} s measured ({args.fits_per_block} "
      f"warm-started fits in each of {args.blocks} segments, and the refit) |",
      "",
      "softmax_jax runs the protocol about "
      f"**{sklearn_estimate / ours_seconds:.1f} x** "
      "as fast as scikit-learn's warm-started path would (an estimate: "
      "scikit-learn's side is extrapolated).",
      "",
      "| scikit-learn segment (strongest first) | strengths | timed fits: "
      "seconds (iterations) | segment estimate, s |",
      "|---|---|---|---|"]
  for s in segments:
    mean = np.mean([t for t, _ in s["fits"]])
    lines.append(f"| {s['from']:.3g} .. {s['to']:.3g} | {s['strengths']} | "
                 + ", ".join(f"{t:.1f} ({i})" for t, i in s["fits"])
                 + f" | {s['strengths'] * mean:.0f} |")
  lines.append(f"| refit at {chosen:g} (cold start) | 1 | "
               f"{refit_seconds:.1f} ({refit_iterations}) | "
               f"{refit_seconds:.0f} |")
  text = "\n".join(lines) + "\n"
  Path(args.out).write_text(text)
  print(text)


if __name__ == "__main__":
  main()
