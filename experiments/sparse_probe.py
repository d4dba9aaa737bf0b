"""Which pixels does a softmax classifier need? An L1 path on Fashion-MNIST:
test accuracy against the number of input features used.

  .venv/bin/python experiments/sparse_probe.py              # ~3 min, 2 cores
  .venv/bin/python experiments/sparse_probe.py --train_size=60000 --strengths=16
  .venv/bin/python experiments/sparse_probe.py --standardize \
      --dataset=npy:runs/data/fashion_mnist_efficientnet_lite0 \
      --out=experiments/figures/sparse_probe_pretrained.png  # embeddings

On the real Fashion-MNIST (pixels / 255; the first --train_size training
images, all 10,000 test images), the objective mean cross-entropy + lambda
||W||_1 (the bias unpenalized) at --strengths strengths from lambda_max
(the smallest at which W = 0: objective.lambda_max) down to --smallest
lambda_max, log-spaced, solved exactly by OWL-QN (--optimizer=owlqn
--penalty=l1) as one stack, warm-starting along the path, each to a KKT
violation below --tol (its certificate). The figure: test accuracy
against the pixels any class uses (left) and against lambda / lambda_max
(right), and the 10 class templates of the sparsest model above
--template_accuracy (W's columns as 28 x 28 images, zeros white). The
table (.md beside it) gives each strength's objective, certificate,
nonzero weights, pixels used and test accuracy. With --dataset (any data
set, e.g. the pretrained embeddings of experiments/pretrained_features.py)
the inputs are its features, standardized with --standardize by the
training rows' statistics; templates are drawn for images only.
"""

from __future__ import annotations

import dataclasses
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
from softmax_jax.solvers import objective  # pylint: disable=wrong-import-position

flags.DEFINE_string("dataset", "fashion_mnist", "The data set (a name, "
                    "npy:DIR, npz:PATH or csv:PATH).")
flags.DEFINE_boolean("standardize", False, "Standardize the features by the "
                     "training rows' statistics.")
flags.DEFINE_integer("train_size", 10000, "Training images (the first ones).")
flags.DEFINE_integer("strengths", 12, "Strengths on the path.")
flags.DEFINE_float("smallest", 3e-3, "The weakest strength, / lambda_max.")
flags.DEFINE_float("tol", 1e-5, "Each fit's KKT violation at most.")
flags.DEFINE_integer("max_iters", 3000, "OWL-QN iterations at most.")
flags.DEFINE_float("template_accuracy", 0.75, "The templates shown: the "
                   "sparsest model with at least this test accuracy.")
flags.DEFINE_string("out", str(ROOT / "experiments" / "figures" /
                                "sparse_probe.png"),
                    "The figure (the table goes beside it, as .md).")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel
  from matplotlib import ticker  # pylint: disable=import-outside-toplevel

  full = data_lib.load(FLAGS.dataset)
  n = min(FLAGS.train_size, len(full.y_train))
  dataset = dataclasses.replace(full, x_train=full.x_train[:n],
                                y_train=full.y_train[:n])
  if FLAGS.standardize:
    dataset = data_lib.standardize(dataset)
  images = dataset.image_shape is not None
  what = "pixels" if images else "features"
  fractions = np.logspace(0, np.log10(FLAGS.smallest), FLAGS.strengths)
  base = Config(optimizer="owlqn", penalty="l1", tol=FLAGS.tol,
                max_iters=FLAGS.max_iters, weight_decay_unit="lambda_max")
  configs, maxes = objective.in_absolute_units(
      [dataclasses.replace(base, weight_decay=float(f)) for f in fractions],
      dataset)
  assert maxes is not None  # (weight_decay_unit="lambda_max")
  lam_max = maxes[0]
  result = train.train_configs(configs, dataset)
  last = [run.history[-1] for run in result.runs]
  print(f"lambda_max = {lam_max:.6g} on {n} examples; "
        f"{result.train_seconds:.1f} s for the path", flush=True)

  rows = ["| lambda / lambda_max | objective | KKT violation | converged | "
          f"nonzero weights | {what} used | test accuracy |",
          "|---|---|---|---|---|---|---|"]
  for f, r in zip(fractions, last, strict=True):
    rows.append(f"| {f:.4g} | {r['objective']:.6f} | {r['grad_norm']:.1e} | "
                f"{bool(r['converged'])} | {int(r['nonzero'])} | "
                f"{int(r['features_used'])} | {r['test_accuracy']:.4f} |")
  used = np.array([r["features_used"] for r in last])
  accuracy = np.array([r["test_accuracy"] for r in last])

  fig = plt.figure(figsize=(12, 7 if images else 4))
  top, bottom = (fig.subfigures(2, 1, height_ratios=(1.1, 1)) if images
                 else (fig, None))
  left, right = top.subplots(1, 2, gridspec_kw={"width_ratios": (3, 2)})
  left.semilogx(np.maximum(used, 1), accuracy, "o-")
  left.set_xlabel(f"{what} used by any class (of {dataset.num_features:,})")
  left.set_ylabel("test accuracy")
  left.set_title(f"L1 path on {FLAGS.dataset} ({n:,} training examples)",
                 fontsize=9)
  right.semilogx(fractions, accuracy, "o-")
  right.invert_xaxis()
  right.set_xlabel("lambda / lambda_max")
  plain = ticker.FuncFormatter(lambda v, _: f"{v:g}")
  for ax in (left, right):
    ax.xaxis.set_major_formatter(plain)
    ax.grid(True, which="both", alpha=0.3)
  if images:
    _templates(bottom, result, accuracy, used, fractions, full.class_names,
               dataset.image_shape)
  out = Path(FLAGS.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(out, dpi=110)
  table = "\n".join(rows) + "\n"
  out.with_suffix(".md").write_text(
      f"lambda_max = {lam_max:.6g}; {FLAGS.dataset}"
      f"{' standardized' if FLAGS.standardize else ''}: {n:,} training, "
      f"{len(dataset.y_test):,} test examples; OWL-QN to a KKT violation "
      f"below {FLAGS.tol:g} (at most "
      f"{FLAGS.max_iters} iterations); the path in {result.train_seconds:.1f} "
      "s\n\n" + table)
  print(table)
  print(f"wrote {out} and {out.with_suffix('.md')}")


def _templates(panel, result, accuracy, used, fractions, class_names,
               image_shape) -> None:
  """W's columns as images for the sparsest model above
  --template_accuracy."""
  good = [i for i in range(len(accuracy))
          if accuracy[i] >= FLAGS.template_accuracy]
  pick = good[0] if good else len(accuracy) - 1
  w = result.runs[pick].params["w"]  # [D, K]
  scale = np.max(np.abs(w)) or 1.0
  for k, ax in enumerate(panel.subplots(2, (len(class_names) + 1) // 2)
                         .ravel()[:len(class_names)]):
    ax.imshow(w[:, k].reshape(image_shape[:2]), cmap="RdBu_r", vmin=-scale,
              vmax=scale)
    ax.set_title(class_names[k], fontsize=8)
    ax.axis("off")
  panel.suptitle(f"W's columns at lambda = {fractions[pick]:.3g} "
                 f"lambda_max: {int(used[pick])} pixels, test accuracy "
                 f"{accuracy[pick]:.3f} (red positive, blue negative, white "
                 "0)", fontsize=9)


if __name__ == "__main__":
  app.run(main)
