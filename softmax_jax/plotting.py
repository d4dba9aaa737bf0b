"""Figures of a run, drawn with matplotlib (Agg: no display needed)."""

from __future__ import annotations

from typing import BinaryIO

import matplotlib
import numpy as np

matplotlib.use("Agg")  # before pyplot: no display needed
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

# Titles and labels hold the user's class names, drawn as written: "$" in a
# name is no TeX to parse (or fail on).
matplotlib.rcParams["text.parse_math"] = False


def plot_curves(history: list[dict], out: BinaryIO, title: str = "") -> None:
  """Train loss, train accuracy and test accuracy per epoch, as d2l's
  Animator."""
  epochs = [r["epoch"] for r in history]
  fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
  ax.plot(epochs, [r["train_loss"] for r in history], "-", label="train loss")
  ax.plot(epochs, [r["train_accuracy"] for r in history], "m--",
          label="train acc")
  tested = [r for r in history if "test_accuracy" in r]  # see --eval_every
  ax.plot([r["epoch"] for r in tested], [r["test_accuracy"] for r in tested],
          "g-.", label="test acc")
  ax.set_xlabel("epoch")
  ax.set_xlim(1, max(epochs[-1], 2))
  ax.grid(True, alpha=0.3)
  ax.legend()
  if title:
    ax.set_title(title, fontsize=9)
  fig.subplots_adjust(left=0.12, right=0.97, bottom=0.14, top=0.9)
  fig.savefig(out, format="png")
  plt.close(fig)


def plot_sweep(rows: list[dict], out: BinaryIO) -> None:
  """Validation accuracy against lr, one line per loss (mean over other
  axes). Rows of a sweep over seeds (seeds.by_config) draw each mean over
  the seeds with an error bar of their standard deviation."""
  fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
  over_seeds = bool(rows) and "val_accuracy_mean" in rows[0]
  by_loss: dict[str, dict[float, list[tuple[float, float]]]] = {}
  for r in rows:
    if over_seeds and r["val_accuracy_mean"] is not None:
      value = (r["val_accuracy_mean"], r["val_accuracy_std"] or 0.0)
    elif not over_seeds and r["status"] == "ok":
      value = (r["val_accuracy"], 0.0)
    else:
      continue
    by_loss.setdefault(r["loss"], {}).setdefault(r["lr"], []).append(value)
  for loss, by_lr in by_loss.items():
    lrs = sorted(by_lr)
    means, stds = ([float(np.mean([v[i] for v in by_lr[lr]])) for lr in lrs]
                   for i in (0, 1))
    if over_seeds:
      ax.errorbar(lrs, means, yerr=stds, fmt="o-", capsize=3, label=loss)
    else:
      ax.plot(lrs, means, "o-", label=loss)
  ax.set_xscale("log")
  ax.set_xlabel("learning rate")
  ax.set_ylabel("validation accuracy")
  ax.grid(True, alpha=0.3)
  ax.legend()
  if over_seeds:
    diverged = sum(r["num_diverged"] for r in rows)
    title = (f"{len(rows)} configurations x {rows[0]['num_seeds']} seeds "
             "(mean +- std)")
    left_out = "left out of the means"
  else:
    diverged = sum(r["status"] != "ok" for r in rows)
    title = f"{len(rows)} configurations"
    left_out = "not shown"
  ax.set_title(title + (f", {diverged} runs diverged or exploded "
                        f"({left_out})" if diverged else ""), fontsize=9)
  fig.subplots_adjust(left=0.14, right=0.97, bottom=0.14, top=0.9)
  fig.savefig(out, format="png")
  plt.close(fig)


def plot_reliability(panels, out: BinaryIO) -> None:
  """Accuracy against confidence per bin, with the diagonal of perfect
  calibration; one panel per ((count, confidence, accuracy), ece, label),
  e.g. before and after temperature scaling."""
  fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4.5),
                           dpi=120, squeeze=False)
  for ax, ((count_M, confidence_M, accuracy_M), ece, label) in zip(
      axes[0], panels, strict=True):
    _reliability_panel(ax, count_M, confidence_M, accuracy_M, ece, label)
  fig.subplots_adjust(left=0.14 / len(panels), right=0.98, bottom=0.12,
                      top=0.92, wspace=0.25)
  fig.savefig(out, format="png")
  plt.close(fig)


def _reliability_panel(ax, count_M, confidence_M, accuracy_M, ece: float,
                       label: str) -> None:
  num_bins = len(count_M)
  edges = [b / num_bins for b in range(num_bins)]
  filled = [c > 0 for c in count_M]
  ax.bar([e for e, f in zip(edges, filled, strict=True) if f],
         [a for a, f in zip(accuracy_M, filled, strict=True) if f],
         width=1 / num_bins,
         align="edge", edgecolor="black", color="tab:blue", label="accuracy")
  ax.bar([e for e, f in zip(edges, filled, strict=True) if f],
         [c - a for c, a, f
          in zip(confidence_M, accuracy_M, filled, strict=True) if f],
         bottom=[a for a, f in zip(accuracy_M, filled, strict=True) if f],
         width=1 / num_bins, align="edge", color="tab:red", alpha=0.3,
         label="gap to confidence")
  ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1)
  ax.set_xlabel("confidence (top-1 probability)")
  ax.set_ylabel("accuracy")
  ax.set_title(f"Reliability{', ' + label if label else ''}, ECE = "
               f"{ece:.4f} ({num_bins} bins)", fontsize=10)
  ax.legend(loc="upper left", fontsize=8)


def plot_confusion(confusion_KxK, class_names, out: BinaryIO,
                   of: int | None = None) -> None:
  """Counts of true (rows) against predicted (columns) classes; `of`: the
  number of classes when these are the most confused few of them."""
  k = len(class_names)
  fig, ax = plt.subplots(figsize=(1.5 + 0.6 * k, 1.2 + 0.55 * k), dpi=120)
  ax.imshow(confusion_KxK, cmap="Blues")
  threshold = max(max(row) for row in confusion_KxK) / 2
  for i in range(k):  # empty cells stay blank: legible, and drawn faster
    for j in range(k):
      value = confusion_KxK[i][j]
      if value:
        ax.text(j, i, str(value), ha="center", va="center", fontsize=7,
                color="white" if value > threshold else "black")
  ax.set_xticks(range(k), class_names, rotation=45, ha="right", fontsize=8)
  ax.set_yticks(range(k), class_names, fontsize=8)
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  ax.set_title("Confusion matrix (test set)" if of in (None, k) else
               f"Confusion among the {k} most confused of {of} classes",
               fontsize=10)
  fig.subplots_adjust(left=0.2, right=0.98, bottom=0.2, top=0.94)
  fig.savefig(out, format="png")
  plt.close(fig)


def plot_predictions(x_NxD, labels_N, predicted_N, confidence_N, class_names,
                     image_shape, out: BinaryIO, rows: int = 3,
                     cols: int = 8) -> None:
  """Test images with true and predicted labels; the misclassified first, in
  red."""
  predicted = predicted_N
  wrong = np.flatnonzero(predicted != labels_N)[:rows * cols // 2].tolist()
  right = np.flatnonzero(predicted == labels_N)[:rows * cols].tolist()
  shown = (wrong + right)[:rows * cols]
  h, w = image_shape[:2]
  pad = h // 3
  fig, ax = plt.subplots(figsize=(1.6 * cols, 1.6 * rows * (h + pad) / (w + 2)
                                  + 0.3), dpi=100)
  ax.imshow(_mosaic([_unit_range(x_NxD[i].reshape(image_shape)) for i in shown],
                    rows, cols, pad), cmap="gray")
  for n, i in enumerate(shown):
    ok = predicted[i] == labels_N[i]
    ax.text((n % cols + 0.5) * (w + 2) - 1, (n // cols) * (h + pad) + pad - 0.5,
            f"true: {class_names[labels_N[i]]}\npred: "
            f"{class_names[predicted[i]]} ({confidence_N[i]:.2f})",
            ha="center", va="bottom", fontsize=7,
            color="black" if ok else "red")
  ax.axis("off")
  ax.set_title("Test predictions (misclassified first, in red)", fontsize=9)
  fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.93)
  fig.savefig(out, format="png")
  plt.close(fig)


def _mosaic(images, rows, cols, pad):
  """One array of images ([H, W] or [H, W, 3] in [0, 1]) on a grid; each cell
  has `pad` free pixels above it (for its caption) and 2 beside it."""
  h, w = images[0].shape[:2]
  channels = images[0].shape[2:]
  fill = 1.0 if channels else np.nan  # white between colour images
  grid = np.full((rows * (h + pad), cols * (w + 2), *channels), fill,
                 np.float32)
  for n, image in enumerate(images):
    r, c = divmod(n, cols)
    grid[r * (h + pad) + pad:r * (h + pad) + pad + h,
         c * (w + 2):c * (w + 2) + w] = image
  return grid


def _unit_range(image):
  """An image scaled to [0, 1] by its own minimum and maximum."""
  image = np.asarray(image, np.float32)
  low, high = image.min(), image.max()
  return (image - low) / (high - low) if high > low else np.zeros_like(image)


def plot_weights(w_DxK, class_names, image_shape, out: BinaryIO,
                 most: int = 20) -> None:
  """Each class's weights as an image: the templates of a linear classifier
  (of the first `most` classes)."""
  class_names = class_names[:most]
  k = len(class_names)
  cols = min(k, 5)
  rows = -(-k // cols)
  templates = [w_DxK[:, j].reshape(image_shape) for j in range(k)]
  # Each template scaled to [-1, 1] by its own largest weight (colour images
  # then to [0, 1], grey 0 meaning no evidence).
  templates = [t / (np.abs(t).max() or 1.0) for t in templates]
  if len(image_shape) == 3:
    templates = [(t + 1) / 2 for t in templates]
  h, w = image_shape[:2]
  pad = h // 5
  fig, ax = plt.subplots(figsize=(2 * cols, 2 * rows * (h + pad) / (w + 2)
                                  + 0.4), dpi=100)
  ax.imshow(_mosaic(templates, rows, cols, pad), cmap="RdBu_r", vmin=-1, vmax=1)
  for j, name in enumerate(class_names):
    ax.text((j % cols + 0.5) * (w + 2) - 1, (j // cols) * (h + pad) + pad - 0.5,
            name, ha="center", va="bottom", fontsize=8)
  ax.axis("off")
  shown = ("" if k == w_DxK.shape[1] else
           f", the first {k} of {w_DxK.shape[1]} classes")
  ax.set_title(f"Learned weights per class{shown} (red: evidence for, blue: "
               "against)", fontsize=9)
  fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.9)
  fig.savefig(out, format="png")
  plt.close(fig)
