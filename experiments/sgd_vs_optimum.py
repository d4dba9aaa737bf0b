"""d2l's training curves seen from convex optimization: SGD's and Adam's
suboptimality f(w_t) - f* per epoch, with f* from L-BFGS.

  .venv/bin/python experiments/sgd_vs_optimum.py     # ~5 minutes on 2 cores
  .venv/bin/python experiments/sgd_vs_optimum.py --weight_decay=1e-4 --epochs=30

On the real Fashion-MNIST (pixels / 255, all 60,000 training images, d2l's
batch of 256), with the objective f(w) = mean cross-entropy + (weight_decay
/ 2) ||W||^2 (strictly convex: one optimum w*): L-BFGS (--optimizer=lbfgs)
solves for f* = f(w*) to a gradient norm below 1e-6 (at most 3,000
iterations); then SGD at several learning rates and Adam at several more
train --epochs epochs each, all of a kind as one vmapped stack, recording
f(w_t) on the whole training set at the end of every epoch
(--track_objective). The figure shows f(w_t) - f* on a log scale; the
table beside it gives each run's gap after the first and the last epoch
and how many L-BFGS iterations reach the same objective. Writes --out (a
.png) and the table as .md beside it.
"""

from __future__ import annotations

from pathlib import Path
import sys

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from absl import app  # pylint: disable=wrong-import-position
from absl import flags  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from softmax_jax import train  # pylint: disable=wrong-import-position
from softmax_jax.config import Config  # pylint: disable=wrong-import-position
from softmax_jax.data import datasets as data_lib  # pylint: disable=wrong-import-position

flags.DEFINE_float("weight_decay", 1e-3, "The L2 strength of the objective.")
flags.DEFINE_integer("epochs", 20, "Epochs of each minibatch run.")
flags.DEFINE_list("sgd_lrs", ["0.03", "0.1", "0.3"], "SGD's learning rates.")
flags.DEFINE_list("adam_lrs", ["0.001", "0.003", "0.01"],
                  "Adam's learning rates.")
flags.DEFINE_string("out", str(ROOT / "experiments" / "figures" /
                                "sgd_vs_optimum.png"),
                    "The figure (the table goes beside it, as .md).")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel

  dataset = data_lib.load("fashion_mnist")
  wd = FLAGS.weight_decay
  optimum = train.train_configs(
      [Config(optimizer="lbfgs", weight_decay=wd, tol=1e-6, max_iters=3000)],
      dataset).runs[0]
  solver = optimum.history  # a record every 10 iterations
  f_star = solver[-1]["objective"]
  print(f"f* = {f_star:.8f} after {solver[-1]['iterations']} L-BFGS "
        f"iterations (gradient norm {solver[-1]['grad_norm']:.1e})", flush=True)

  runs = []
  for optimizer, lrs in (("sgd", FLAGS.sgd_lrs), ("adam", FLAGS.adam_lrs)):
    configs = [Config(optimizer=optimizer, lr=float(lr), weight_decay=wd,
                      epochs=FLAGS.epochs, track_objective=True) for lr in lrs]
    runs += train.train_configs(configs, dataset).runs

  fig, ax = plt.subplots(figsize=(7, 4.5))
  rows = ["| optimizer | lr | f(w) - f* after 1 epoch | after the last | "
          "L-BFGS iterations to the same f |", "|---|---|---|---|---|"]
  for run in runs:
    gaps = np.array([r["objective"] - f_star for r in run.history])
    epochs = [r["epoch"] for r in run.history]
    ax.semilogy(epochs, np.maximum(gaps, 1e-9),
                ls="-" if run.config.optimizer == "sgd" else "--",
                label=f"{run.config.optimizer} lr {run.config.lr:g}")
    matched = next((r["iterations"] for r in solver
                    if r["objective"] <= run.history[-1]["objective"]), None)
    rows.append(f"| {run.config.optimizer} | {run.config.lr:g} | {gaps[0]:.2e} "
                f"| {gaps[-1]:.2e} | {matched if matched else '-'} |")
  ax.set_xlabel("epoch")
  ax.set_ylabel("f(w) - f*  (training objective above the optimum)")
  ax.set_title(f"Fashion-MNIST, cross-entropy + {wd:g}/2 ||W||², f* = "
               f"{f_star:.5f} (L-BFGS)")
  ax.legend(fontsize=8)
  ax.grid(True, which="both", alpha=0.3)
  out = Path(FLAGS.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  fig.tight_layout()
  fig.savefig(out, dpi=120)
  table = "\n".join(rows) + "\n"
  out.with_suffix(".md").write_text(
      f"f* = {f_star:.8f} (L-BFGS, {solver[-1]['iterations']} iterations, "
      f"gradient norm {solver[-1]['grad_norm']:.1e}); weight decay {wd:g}, "
      f"{FLAGS.epochs} epochs of batch 256\n\n" + table)
  print(table)
  print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
  app.run(main)
