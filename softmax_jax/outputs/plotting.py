"""Figures of a run, drawn with matplotlib's Figure alone: no pyplot, no
display, and nothing changed in the caller's matplotlib (its backend, its
rcParams), so the library draws its files from inside a notebook too."""

from __future__ import annotations

import functools
from typing import BinaryIO

import matplotlib
from matplotlib.figure import Figure
import matplotlib.ticker
import numpy as np

from softmax_jax import solvers


def _subplots(*args, figsize, dpi, **kwargs):
  """pyplot.subplots without pyplot: (a Figure, its axes)."""
  fig = Figure(figsize=figsize, dpi=dpi)
  return fig, fig.subplots(*args, **kwargs)


def _as_written(plot):
  """Titles and labels hold the user's class names, drawn as written: "$"
  in a name is no TeX to parse (or fail on)."""
  @functools.wraps(plot)
  def wrapper(*args, **kwargs):
    with matplotlib.rc_context({"text.parse_math": False}):
      return plot(*args, **kwargs)
  return wrapper


@_as_written
def plot_curves(history: list[dict], out: BinaryIO, title: str = "") -> None:
  """Train loss, train accuracy and test accuracy per epoch, as d2l's
  Animator."""
  epochs = [r["epoch"] for r in history]
  fig, ax = _subplots(figsize=(5, 3.5), dpi=120)
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


# Swept fields that can stand on a sweep figure's x-axis, with its label.
NUMERIC_FIELDS = {"lr": "learning rate",
                  "weight_decay": "weight decay (L2 strength)",
                  "huber_delta": "Huber delta", "init_scale": "init scale",
                  "batch_size": "batch size", "epochs": "epochs",
                  "phm_n": "PHM n"}


@_as_written
def plot_sweep(rows: list[dict], out: BinaryIO, swept: list[str]) -> None:
  """sweep_figure, as a PNG."""
  fig = sweep_figure(rows, swept)
  fig.savefig(out, format="png")


def sweep_x_field(rows: list[dict], swept: list[str]) -> str | None:
  """The field on a sweep figure's x-axis: of the numeric swept fields, the
  one with the most values (weight decay for a regularization path, lr for
  a learning-rate sweep; lr first on a tie); None if none is swept."""
  numeric = [f for f in NUMERIC_FIELDS if f in swept]
  if not numeric:
    return None
  return max(numeric, key=lambda f: (len({r[f] for r in rows}),
                                     -numeric.index(f)))


@_as_written
def sweep_figure(rows: list[dict], swept: list[str]):
  """Validation accuracy against the swept field (sweep_x_field), one line
  per value of the other swept fields; a solver's configuration, which does
  not read an x-axis of lr (or batch size, epochs, init scale), is a
  horizontal line. Rows of a sweep over seeds (seeds.by_config) draw each
  mean over the seeds with an error bar of their standard deviation. With
  no numeric field swept, one point per configuration."""
  fig, ax = _subplots(figsize=(5.5, 3.8), dpi=120)
  over_seeds = bool(rows) and "val_accuracy_mean" in rows[0]
  x_field = sweep_x_field(rows, swept)
  others = [f for f in swept if f not in ("seed", x_field)]
  shown = []  # (row, its label, mean, std)
  for r in rows:
    if over_seeds and r["val_accuracy_mean"] is not None:
      mean, std = r["val_accuracy_mean"], r["val_accuracy_std"] or 0.0
    elif not over_seeds and r["status"] == "ok":
      mean, std = r["val_accuracy"], 0.0
    else:
      continue
    label = ", ".join(f"{f}={_value_text(r[f])}" for f in others)
    shown.append((r, label, mean, std))
  errors = (lambda stds: stds) if over_seeds else (lambda stds: None)
  if x_field is None:  # e.g. a sweep over losses alone
    if shown:
      _, names, means, stds = zip(*shown, strict=True)
      ax.errorbar(range(len(names)), means, yerr=errors(stds), fmt="o",
                  capsize=3)
      ax.set_xticks(range(len(names)), names, rotation=30, ha="right",
                    fontsize=7)
    ax.set_xlabel("configuration")
  else:
    lines: dict[str, list[tuple[float, float, float]]] = {}
    flat = []  # (label, mean, std) of the solvers that do not read x
    for r, label, mean, std in shown:
      if r.get("optimizer") in solvers.REGISTRY and not solvers.reads(
          r["optimizer"], x_field):
        flat.append((f"{label or r['optimizer']} (reads no {x_field})", mean,
                     std))
      else:
        lines.setdefault(label, []).append((float(r[x_field]), mean, std))
    for label, points in lines.items():
      xs, means, stds = zip(*sorted(points), strict=True)
      ax.errorbar(xs, means, yerr=errors(stds), fmt="o-", capsize=3,
                  label=label or None)
    for k, (label, mean, std) in enumerate(flat, start=len(lines)):
      ax.axhline(mean, linestyle="--", color=f"C{k % 10}", label=label)
      if over_seeds and std:
        ax.axhspan(mean - std, mean + std, color=f"C{k % 10}", alpha=0.15)
    _number_axis(ax, sorted({float(r[x_field]) for r in rows}))
    ax.set_xlabel(NUMERIC_FIELDS[x_field])
  ax.set_ylabel("validation accuracy")
  ax.grid(True, alpha=0.3)
  if ax.get_legend_handles_labels()[1]:
    ax.legend(fontsize=7)
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
  fig.subplots_adjust(left=0.14, right=0.97, bottom=0.16 if x_field else 0.3,
                      top=0.9)
  return fig


def _value_text(value) -> str:
  return f"{value:g}" if isinstance(value, float) else str(value)


def _number_axis(ax, values: list[float]) -> None:
  """A log x-axis where the values span a factor of 20 or more (symlog if
  one is 0), else linear; its tick labels are plain numbers (0.001, not
  TeX: class names turned TeX parsing off), at the values themselves when
  there are at most 8."""
  positive = [v for v in values if v > 0]
  if positive and min(values) >= 0 and max(positive) / min(positive) >= 20:
    if min(values) == 0:
      ax.set_xscale("symlog", linthresh=min(positive))
    else:
      ax.set_xscale("log")
  if len(values) <= 8:
    ax.set_xticks(values)
  ax.xaxis.set_major_formatter(
      matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
  ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


@_as_written
def plot_reliability(panels, out: BinaryIO) -> None:
  """Accuracy against confidence per bin, with the diagonal of perfect
  calibration; one panel per ((count, confidence, accuracy), ece, label),
  e.g. before and after temperature scaling."""
  fig, axes = _subplots(1, len(panels), figsize=(4.5 * len(panels), 4.5),
                           dpi=120, squeeze=False)
  for ax, ((count_M, confidence_M, accuracy_M), ece, label) in zip(
      axes[0], panels, strict=True):
    _reliability_panel(ax, count_M, confidence_M, accuracy_M, ece, label)
  fig.subplots_adjust(left=0.14 / len(panels), right=0.96, bottom=0.12,
                      top=0.92, wspace=0.25)
  fig.savefig(out, format="png")


def _reliability_panel(ax, count_M, confidence_M, accuracy_M, ece: float,
                       label: str) -> None:
  """Accuracy bars, and the gap to each bin's confidence: filled red above
  the bar where the model is over-confident, hatched over the bar where it
  is under-confident (no filled area is painted twice, so every colour is
  one the legend names)."""
  num_bins = len(count_M)
  filled = [(b / num_bins, c, a) for b, (n, c, a) in enumerate(
      zip(count_M, confidence_M, accuracy_M, strict=True)) if n > 0]
  edges = [e for e, _, _ in filled]
  ax.bar(edges, [a for _, _, a in filled], width=1 / num_bins, align="edge",
         edgecolor="black", color="tab:blue", label="accuracy")
  over = [(e, c, a) for e, c, a in filled if c > a]
  under = [(e, c, a) for e, c, a in filled if a > c]
  ax.bar([e for e, _, _ in over], [c - a for _, c, a in over],
         bottom=[a for _, _, a in over], width=1 / num_bins, align="edge",
         color="tab:red", alpha=0.3,
         label="gap to confidence (over-confident)")
  ax.bar([e for e, _, _ in under], [a - c for _, c, a in under],
         bottom=[c for _, c, _ in under], width=1 / num_bins, align="edge",
         facecolor="none", edgecolor="black", hatch="//", linewidth=0,
         label="accuracy above confidence (under-confident)")
  ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1)
  ax.set_xlabel("confidence (top-1 probability)")
  ax.set_ylabel("accuracy")
  ax.set_title(f"Reliability{', ' + label if label else ''}, ECE = "
               f"{ece:.4f} ({num_bins} bins)", fontsize=10)
  ax.legend(loc="upper left", fontsize=8)


@_as_written
def plot_confusion(confusion_KxK, class_names, out: BinaryIO,
                   of: int | None = None) -> None:
  """Counts of true (rows) against predicted (columns) classes; `of`: the
  number of classes when these are the most confused few of them."""
  k = len(class_names)
  fig, ax = _subplots(figsize=(1.5 + 0.6 * k, 1.2 + 0.55 * k), dpi=120)
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


@_as_written
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
  fig, ax = _subplots(figsize=(1.6 * cols, 1.6 * rows * (h + pad) / (w + 2)
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


@_as_written
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
  fig, ax = _subplots(figsize=(2 * cols, 2 * rows * (h + pad) / (w + 2)
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
