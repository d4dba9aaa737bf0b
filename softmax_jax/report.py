"""What a trained model learned: its final test evaluation, figures and report.md."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np

from softmax_jax import console
from softmax_jax import data as data_lib
from softmax_jax import losses
from softmax_jax import metrics
from softmax_jax import model
from softmax_jax import plotting
from softmax_jax import workdir as workdir_lib

from softmax_jax.workdir import CONFUSION, PREDICTIONS, RELIABILITY, REPORT, WEIGHTS


@dataclasses.dataclass
class Analysis:
  probs_NxK: np.ndarray
  labels_N: np.ndarray
  confusion_KxK: np.ndarray  # [true, predicted]
  bins: tuple[np.ndarray, np.ndarray, np.ndarray]  # count, confidence, accuracy
  class_names: tuple[str, ...]
  scores: dict[str, float]  # train.evaluate's accuracy, nll, ece

  def summary(self) -> dict:
    """The metrics that go into summary.json and the terminal."""
    per_class = np.asarray(metrics.per_class_accuracy(self.confusion_KxK))
    present = ~np.isnan(per_class)  # a class without test examples: undefined
    return {
        "test_accuracy": self.scores["accuracy"],
        "test_nll": self.scores["nll"],
        "ece": self.scores["ece"],
        # The mean of the classes' accuracies, over the classes in the test set.
        "balanced_accuracy": (float(per_class[present].mean()) if present.any()
                              else None),
        "per_class_accuracy": {name: float(a) if ok else None for name, a, ok
                               in zip(self.class_names, per_class, present)},
        "confusion_matrix": self.confusion_KxK.tolist(),
    }


@jax.jit
def _evaluate(params, x_NxD, y_N):
  from softmax_jax import train  # pylint: disable=g-import-not-at-top
  probs = losses.softmax(model.logits(params, data_lib.to_features(x_NxD)))
  return probs, train.evaluate(params, x_NxD, y_N)


def analyze(params: model.Params, x_NxD, y_N, class_names) -> Analysis:
  """Evaluates params on (x, y): probabilities, scores, confusion, calibration."""
  probs, scores = jax.device_get(_evaluate(params, x_NxD, y_N))
  y_N = np.asarray(y_N)
  k = probs.shape[-1]
  return Analysis(
      probs_NxK=probs, labels_N=y_N,
      scores={name: float(v) for name, v in scores.items()},
      confusion_KxK=np.asarray(metrics.confusion_matrix(
          np.argmax(probs, -1), y_N, k)),
      bins=tuple(np.asarray(b) for b in metrics.confidence_bins(probs, y_N)),
      class_names=tuple(class_names))


def write_figures(workdir: Path, analysis: Analysis, params: model.Params,
                  x_test_NxD: np.ndarray, image_shape) -> list[str]:
  """Reliability, confusion and, for images, predictions and weights PNGs."""
  a = analysis
  figures = {
      RELIABILITY: lambda f: plotting.plot_reliability(*a.bins, a.scores["ece"], f),
      CONFUSION: lambda f: plotting.plot_confusion(a.confusion_KxK,
                                                   a.class_names, f),
  }
  if image_shape:  # (H, W, C): pictures of the inputs and the weights
    shape = image_shape[:2] if image_shape[-1] == 1 else image_shape
    figures[PREDICTIONS] = lambda f: plotting.plot_predictions(
        x_test_NxD, a.labels_N, a.probs_NxK, a.class_names, shape, f)
    if "hidden" not in params:  # the templates of a linear classifier
      figures[WEIGHTS] = lambda f: plotting.plot_weights(
          np.asarray(model.output_weight(params)), a.class_names, shape, f)
  for name, draw in figures.items():
    workdir_lib.write_file(workdir / name, draw)
  return list(figures)


def _seconds(seconds: float | None) -> str:
  return "n/a" if seconds is None else f"{seconds:.2f}"


def write_markdown(workdir: Path, title: str, summary: dict,
                   figures: list[str], ranking: str = "") -> None:
  """report.md: the summary table and the figures, for any markdown viewer."""
  rows = [("test accuracy", f"{summary['test_accuracy']:.4f}"),
          ("test NLL", f"{summary['test_nll']:.4f}"),
          ("ECE (15 bins)", f"{summary['ece']:.4f}")]
  for key, label in (("val_accuracy", "validation accuracy"),
                     ("train_loss", "final train loss")):
    if key in summary:
      rows.append((label, f"{summary[key]:.4f}"))
  rows += [("parameters", f"{summary['num_params']:,}"),
           ("train seconds (compiled, no compile)",
            _seconds(summary["train_seconds"])),
           ("compile seconds", _seconds(summary["compile_seconds"])),
           ("devices", f"{summary['num_devices']} {summary['backend']}"),
           ("date", summary["date"])]
  lines = [f"# {title}", ""]
  if summary.get("warnings"):
    lines += ["## Warnings", "", *[f"- {w}" for w in summary["warnings"]], ""]
  lines += ["| metric | value |", "|---|---|",
            *[f"| {k} | {v} |" for k, v in rows], ""]
  if ranking:
    lines += ["## Sweep ranking (by validation accuracy)", "", "```", ranking,
              "```", ""]
  lines += ["## Accuracy per class", "", "| class | accuracy |", "|---|---|",
            *[f"| {name} | {console.format_accuracy(acc)} |"
              for name, acc in summary["per_class_accuracy"].items()], ""]
  lines += ["## Figures", ""]
  for name in figures:
    lines += [f"![{Path(name).stem}]({name})", ""]
  workdir_lib.write_file(workdir / REPORT,
                         lambda f: f.write("\n".join(lines).encode()))
