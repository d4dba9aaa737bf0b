"""What a trained model learned: its final test evaluation, figures and
report.md."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import cast

import jax
import numpy as np

from softmax_jax import evaluation
from softmax_jax import metrics
from softmax_jax import model
from softmax_jax import seeds
from softmax_jax.outputs import console
from softmax_jax.outputs import workdir as workdir_lib
from softmax_jax.outputs.workdir import CONFUSION
from softmax_jax.outputs.workdir import CONFUSION_MATRIX
from softmax_jax.outputs.workdir import PREDICTIONS
from softmax_jax.outputs.workdir import RELIABILITY
from softmax_jax.outputs.workdir import REPORT
from softmax_jax.outputs.workdir import WEIGHTS

# Up to this many classes, the terminal and report.md show every class and
# the confusion matrix in full; beyond, the weakest classes and the most
# confused pairs (the full matrix is in confusion.npy either way).
FULL_TABLE_CLASSES = 20
SHOWN = 10  # weakest classes and most confused pairs listed


@dataclasses.dataclass
class Analysis:
  predicted_N: np.ndarray  # int32: each example's top-1 class
  confidence_N: np.ndarray  # float32: its probability
  labels_N: np.ndarray
  confusion_KxK: np.ndarray  # [true, predicted]
  bins: tuple[np.ndarray, np.ndarray, np.ndarray]  # count, confidence, accuracy
  class_names: tuple[str, ...]
  scores: dict[str, float]  # evaluation.evaluate's accuracy, nll, ece, ...
  # With --calibrate: calibration.calibrate's result, and the reliability
  # bins of the predictions at its temperature.
  calibration: dict[str, float] | None = None
  calibrated_bins: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

  def summary(self) -> dict:
    """The metrics that go into summary.json and the terminal."""
    per_class = np.asarray(metrics.per_class_accuracy(self.confusion_KxK))
    present = ~np.isnan(per_class)  # a class without test examples: undefined
    names = self.class_names
    weakest = sorted(np.flatnonzero(present), key=lambda k: (per_class[k], k))
    rows, cols, counts = (a[:SHOWN] for a in
                          _pairs_by_confusion(self.confusion_KxK))
    summary = {
        "test_accuracy": self.scores["accuracy"],
        "test_nll": self.scores["nll"],
        "ece": self.scores["ece"],
        **({"test_top5_accuracy": self.scores["top5_accuracy"]}
           if "top5_accuracy" in self.scores else {}),
        # The mean of the classes' accuracies, over the classes in the test set.
        "balanced_accuracy": (float(per_class[present].mean()) if present.any()
                              else None),
        "per_class_accuracy": {name: float(a) if ok else None for name, a, ok
                               in zip(names, per_class, present, strict=True)},
        "weakest_classes": [
            {"class": names[k], "accuracy": float(per_class[k]),
             "count": int(self.confusion_KxK[k].sum())}
            for k in weakest[:SHOWN]],
        "most_confused": [
            {"true": names[i], "predicted": names[j], "count": int(n)}
            for i, j, n in zip(rows, cols, counts, strict=True)],
    }
    if len(names) <= FULL_TABLE_CLASSES:
      summary["confusion_matrix"] = self.confusion_KxK.tolist()
    return summary


def analyze(params: model.Params, x_NxD, y_N, class_names,
            scores: dict[str, float] | None = None,
            calibration: dict[str, float] | None = None) -> Analysis:
  """Evaluates params on (x, y) in chunks: each example's top-1 class, the
  confusion matrix, calibration bins and, unless given (as training's last
  evaluation measured them), the scores of evaluation.evaluate; with a
  `calibration` (calibration.calibrate's), the bins at its temperature."""
  if scores is None:
    scores, chunks = jax.device_get(_evaluate_and_predict(params, x_NxD, y_N))
  else:
    chunks = jax.device_get(_predict(params, x_NxD))
  valid = chunks[2]
  predicted = evaluation.rows(chunks[0], valid).astype(np.int64)
  confidence = evaluation.rows(chunks[1], valid)
  y_N = np.asarray(y_N).astype(np.int64)
  calibrated_bins = None
  if calibration is not None:
    classes, probs, valid = jax.device_get(
        _predict(params, x_NxD, temperature=calibration["temperature"]))
    calibrated_bins = _bins(evaluation.rows(probs, valid),
                            evaluation.rows(classes, valid) == y_N)
  return Analysis(
      calibration=calibration, calibrated_bins=calibrated_bins,
      predicted_N=predicted, confidence_N=confidence, labels_N=y_N,
      confusion_KxK=np.asarray(metrics.confusion_matrix(
          predicted, y_N, len(class_names))).astype(np.int64),
      bins=_bins(confidence, predicted == y_N),
      class_names=tuple(class_names),
      scores={name: float(v) for name, v in scores.items()})


def _bins(confidence_N, correct_N) -> tuple[np.ndarray, np.ndarray,
                                            np.ndarray]:
  """Reliability bins: count, mean confidence, accuracy."""
  return cast(tuple[np.ndarray, np.ndarray, np.ndarray],
              tuple(np.asarray(b) for b in _binned(confidence_N, correct_N)))


# Each one compiled program (or one read of the compilation cache), not an
# eager operation at a time: a run's analysis took 0.54 s on a tiny data set
# that way, most of it compiling single operations. (metrics' functions are
# jitted where they are defined.)
_binned = jax.jit(lambda confidence_N, correct_N: metrics.bins_from_sums(
    *metrics.binned_sums(confidence_N, correct_N)))
_predict = jax.jit(evaluation.predict, static_argnames="chunk")


@jax.jit
def _evaluate_and_predict(params, x_NxD, y_N):
  return (evaluation.evaluate(params, x_NxD, y_N),
          evaluation.predict(params, x_NxD))


def _pairs_by_confusion(confusion_KxK: np.ndarray):
  """(true, predicted, count) of every confused pair of classes (off the
  diagonal, count > 0), the most confused first, ties in class order. Only
  the nonzero cells are sorted: at most one per test example, where K x K
  cells are a million at K = 1,000."""
  off_diagonal = confusion_KxK.copy()
  np.fill_diagonal(off_diagonal, 0)
  cells = np.flatnonzero(off_diagonal)  # row-major: class order
  counts = off_diagonal.ravel()[cells]
  order = np.argsort(-counts, kind="stable")
  rows, cols = np.unravel_index(cells[order], off_diagonal.shape)
  return rows, cols, counts[order]


def write_figures(workdir: Path, analysis: Analysis, params: model.Params,
                  x_test_NxD: np.ndarray, image_shape) -> list[str]:
  """confusion.npy, and reliability, confusion and, for gray or RGB images,
  predictions and weights PNGs; the confusion figure shows at most
  FULL_TABLE_CLASSES classes (beyond that many, those of the most confused
  pairs). The names of the figures drawn."""
  a = analysis
  workdir_lib.write_file(workdir / CONFUSION_MATRIX,
                         lambda f: np.save(f, a.confusion_KxK))
  shown = _most_confused_classes(a.confusion_KxK, FULL_TABLE_CLASSES)
  figures = {
      RELIABILITY: lambda f: workdir_lib.plotting().plot_reliability(
          [(a.bins, a.scores["ece"], "T = 1" if a.calibration else "")] + (
              [(a.calibrated_bins, a.calibration["test_ece_after"],
                f"T = {a.calibration['temperature']:.3g}")]
              if a.calibration and a.calibrated_bins else []), f),
      CONFUSION: lambda f: workdir_lib.plotting().plot_confusion(
          a.confusion_KxK[np.ix_(shown, shown)],
          [a.class_names[k] for k in shown], f,
          of=len(a.class_names)),
  }
  # (H, W) or (H, W, C): pictures of the inputs and the weights, if gray
  # or RGB
  channels = image_shape[2] if image_shape and len(image_shape) == 3 else 1
  if image_shape and channels in (1, 3):
    shape = image_shape[:2] if channels == 1 else image_shape
    figures[PREDICTIONS] = lambda f: workdir_lib.plotting().plot_predictions(
        x_test_NxD, a.labels_N, a.predicted_N, a.confidence_N, a.class_names,
        shape, f)
    if "hidden" not in params:  # the templates of a linear classifier
      figures[WEIGHTS] = lambda f: workdir_lib.plotting().plot_weights(
          np.asarray(model.output_weight(params)), a.class_names, shape, f)
  return [name for name, draw in figures.items()
          if workdir_lib.write_figure(workdir / name, draw)]


def _most_confused_classes(confusion_KxK: np.ndarray, most: int) -> list[int]:
  """All classes if there are at most `most`; else those of the most confused
  pairs, in class order, until there are `most`."""
  if len(confusion_KxK) <= most:
    return list(range(len(confusion_KxK)))
  chosen = []
  rows, cols, _ = _pairs_by_confusion(confusion_KxK)
  # The classes of the confused pairs, then (too few confusions) the others.
  for c in [*np.stack([rows, cols], 1).ravel(), *range(len(confusion_KxK))]:
    if int(c) not in chosen:
      chosen.append(int(c))
    if len(chosen) >= most:
      break
  return sorted(chosen)


def _seconds(seconds: float | None) -> str:
  return "n/a" if seconds is None else f"{seconds:.2f}"


def _solution_rows(summary: dict) -> list[tuple[str, str]]:
  """What a solver reported of its solution (outcome: its SOLUTION_KEYS):
  the objective, its certificate, and a sparse model's sparsity."""
  rows = []
  if "objective" in summary:
    rows.append(("training objective", f"{summary['objective']:.8g}"))
  if "grad_norm" in summary:
    below = "below" if summary["converged"] else "NOT below"
    rows.append(("certificate: gradient norm (KKT violation)",
                 f"{summary['grad_norm']:.2e} ({below} --tol, "
                 f"{summary['iterations']} iterations)"))
  if "nonzero" in summary:
    rows += [("nonzero weights", f"{int(summary['nonzero']):,}"),
             ("input features used", f"{int(summary['features_used']):,}")]
  if "lambda_max" in summary:
    rows.append(("lambda_max (W = 0 at and above)",
                 f"{summary['lambda_max']:.6g}"))
  return rows


def write_markdown(workdir: Path, title: str, summary: dict,
                   figures: list[str], ranking: str = "") -> None:
  """report.md: the summary table and the figures, for any markdown viewer."""
  rows = [("test accuracy", f"{summary['test_accuracy']:.4f}"),
          *([("test top-5 accuracy", f"{summary['test_top5_accuracy']:.4f}")]
            if "test_top5_accuracy" in summary else []),
          ("test NLL", f"{summary['test_nll']:.4f}"),
          ("ECE (15 bins)", f"{summary['ece']:.4f}")]
  if "calibration" in summary:  # --calibrate
    c = summary["calibration"]
    rows += [("temperature T (fit on validation)", f"{c['temperature']:.4f}"),
             ("test NLL, calibrated",
              f"{c['test_nll_after']:.4f} (from {c['test_nll_before']:.4f})"),
             ("ECE, calibrated",
              f"{c['test_ece_after']:.4f} (from {c['test_ece_before']:.4f})"),
             ("validation NLL, calibrated",
              f"{c['val_nll_after']:.4f} (from {c['val_nll_before']:.4f})")]
  for key, label in (("val_accuracy", "validation accuracy"),
                     ("train_loss", "final train loss")):
    if key in summary:
      rows.append((label, f"{summary[key]:.4f}"))
  rows += _solution_rows(summary)
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
    over_seeds = seeds.swept(summary.get("swept") or [])
    lines += ["## Sweep ranking (by validation accuracy"
              + ("; over seeds, its mean" if over_seeds else "") + ")", "",
              "```", ranking, "```", ""]
  per_class = summary["per_class_accuracy"]
  if len(per_class) <= FULL_TABLE_CLASSES:
    lines += ["## Accuracy per class", "", "| class | accuracy |", "|---|---|",
              *[f"| {name} | {console.format_accuracy(acc)} |"
                for name, acc in per_class.items()], ""]
  else:
    lines += [f"## The {len(summary['weakest_classes'])} weakest of "
              f"{len(per_class)} classes", "",
              "| class | accuracy | test examples |", "|---|---|---|",
              *[f"| {w['class']} | {w['accuracy']:.4f} | {w['count']} |"
                for w in summary["weakest_classes"]], "",
              "## The most confused pairs", "",
              "| true | predicted as | examples |", "|---|---|---|",
              *([f"| {m['true']} | {m['predicted']} | {m['count']} |"
                 for m in summary["most_confused"]]
                or ["| (none: no test example was misclassified) | | |"]), "",
              f"Every class's accuracy is in summary.json; the full confusion "
              f"matrix in {CONFUSION_MATRIX}.", ""]
  lines += ["## Figures", ""]
  for name in figures:
    lines += [f"![{Path(name).stem}]({name})", ""]
  workdir_lib.write_file(workdir / REPORT,
                         lambda f: f.write("\n".join(lines).encode()))
