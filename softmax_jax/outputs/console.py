"""What a run shows in the terminal: a progress bar, a line per epoch, a
summary."""

from __future__ import annotations

import sys

import tqdm

from softmax_jax import solvers


class EpochLog:
  """Callable per epoch record: advances the bar and prints the epoch's line."""

  def __init__(self, epochs: int, enabled: bool = True):
    self._bar = tqdm.tqdm(total=epochs, unit="epoch", leave=False,
                          # None: off when not a tty
                          disable=None if enabled else True,
                          file=sys.stderr,
                          dynamic_ncols=True)
    self._enabled = enabled

  def __call__(self, record: dict) -> None:
    if self._enabled:
      self._bar.write(format_epoch(record))
    self._bar.update(1)

  def write(self, line: str) -> None:
    """A line on stderr (a warning), above the bar."""
    self._bar.write(line, file=sys.stderr)

  def close(self) -> None:
    self._bar.close()


def format_epoch(r: dict) -> str:
  """An epoch's line; the test accuracy where the epoch was evaluated."""
  test = f"  test acc {r['test_accuracy']:.4f}" if "test_accuracy" in r else ""
  return (f"epoch {r['epoch']:3d}  train loss {r['train_loss']:.4f}  "
          f"train acc {r['train_accuracy']:.4f}{test}")


def format_evaluation(summary: dict) -> str:
  """Test calibration and accuracy per class, with the confusion matrix for
  a few classes; for many, the weakest classes and the most confused pairs;
  then temperature scaling's effect (--calibrate)."""
  text = _format_scores(summary)
  if "calibration" not in summary:
    return text
  c = summary["calibration"]
  return (f"{text}\ntemperature scaling: T = {c['temperature']:.4g} (fit on "
          f"validation): test ECE {c['test_ece_before']:.4f} -> "
          f"{c['test_ece_after']:.4f}, test NLL {c['test_nll_before']:.4f} "
          f"-> {c['test_nll_after']:.4f}")


def _format_scores(summary: dict) -> str:
  top5 = (f"   top-5 accuracy {summary['test_top5_accuracy']:.4f}"
          if "test_top5_accuracy" in summary else "")

  per_class = summary["per_class_accuracy"]
  if "confusion_matrix" not in summary:
    return "\n".join([
        f"test ECE {summary['ece']:.4f} (15 bins){top5}   the weakest of "
        f"{len(per_class)} classes:",
        *[f"  {w['class']}  {w['accuracy']:.4f} ({w['count']} examples)"
          for w in summary["weakest_classes"]],
        "the most confused pairs (true -> predicted: examples):",
        *([f"  {m['true']} -> {m['predicted']}: {m['count']}"
           for m in summary["most_confused"]] or ["  (none: no test example "
                                                  "was misclassified)"]),
        "(every class in summary.json, the confusion matrix in confusion.npy)"])
  width = max(len(n) for n in per_class)
  lines = [f"test ECE {summary['ece']:.4f} (15 bins){top5}   "
           "accuracy per class:"]
  lines += [f"  {name:>{width}s}  {format_accuracy(acc)}"
            for name, acc in per_class.items()]
  cells = [[str(v) for v in row] for row in summary["confusion_matrix"]]
  cell = max(len(v) for row in cells for v in row)
  lines.append("confusion matrix (rows: true, columns: predicted, in the "
               "order above):")
  lines += ["  " + " ".join(v.rjust(cell) for v in row) for row in cells]
  return "\n".join(lines)


def format_accuracy(accuracy: float | None) -> str:
  """An accuracy to 4 places, or n/a where it is undefined (no examples)."""
  return "n/a" if accuracy is None else f"{accuracy:.4f}"


def format_summary(summary: dict, workdir) -> str:
  c = summary["config"]
  # (a minibatch run may track its objective, and report no more)
  if solvers.full_batch(c["optimizer"]):
    strength = ("weight decay" if c.get("penalty", "l2") == "l2"
                else f"{c['penalty']} lambda")
    how = (f"{c['optimizer']} {strength} {c['weight_decay']:g} | "
           f"{summary['iterations']} iterations, gradient norm "
           f"{summary['grad_norm']:.2e} ("
           f"{'converged' if summary['converged'] else 'NOT converged'}: "
           f"--tol={c['tol']:g}) | objective {summary['objective']:.6g}")
    rate = (f"{1e3 * summary['train_seconds'] / summary['iterations']:.1f} "
            "ms/iteration" if summary["iterations"] else "closed form")
  else:
    how = (f"{c['optimizer']} lr {c['lr']:g} | batch {c['batch_size']} | "
           f"{c['epochs']} epochs")
    rate = f"{1e3 * summary['train_seconds'] / c['epochs']:.0f} ms/epoch"
  if "nonzero" in summary:
    how += (f" | {int(summary['nonzero']):,} nonzero weights, "
            f"{int(summary['features_used']):,} features used")
  return "\n".join([
      f"{summary['dataset']} | loss {c['loss']} | {how} | "
      f"{summary['num_params']:,} params",
      f"test accuracy {summary['test_accuracy']:.4f}   test nll "
      f"{summary['test_nll']:.4f}   train loss {summary['train_loss']:.4f}",
      f"train {summary['train_seconds']:.2f} s ({rate})   compile "
      f"{summary['compile_seconds']:.2f} s   on {summary['num_devices']} "
      f"{summary['backend']} device(s)",
      *[f"warning: {w}" for w in summary.get("warnings", [])],
      f"outputs in {workdir}",
  ])


class SweepProgress:
  """A progress bar over all model-epochs of a sweep."""

  def __init__(self, total: int, enabled: bool = True):
    self._bar = tqdm.tqdm(total=total, unit="model-epoch", leave=False,
                          disable=None if enabled else True, file=sys.stderr,
                          dynamic_ncols=True)

  def __call__(self, record: dict) -> None:
    del record
    self._bar.update(1)

  def close(self) -> None:
    self._bar.close()


def format_ranking(ranked: list[dict], swept: list[str], top: int = 20) -> str:
  """The sweep's configurations, best validation accuracy first."""
  header = ["rank", "id", *swept, "val acc", "test acc", "train loss", "status"]
  lines = []
  for rank, r in enumerate(ranked[:top], 1):
    lines.append([str(rank), str(r["config_id"]),
                  *[f"{r[f]:g}" if isinstance(r[f], float) else str(r[f])
                    for f in swept],
                  f"{r['val_accuracy']:.4f}", f"{r['test_accuracy']:.4f}",
                  f"{r['final_train_loss']:.4g}", r["status"]])
  more = (f"... {len(ranked) - top} more in results.csv"
          if len(ranked) > top else "")
  return _table(header, lines, more)


def format_seed_ranking(aggregated: list[dict], swept: list[str],
                        top: int = 20) -> str:
  """A sweep over seeds: its configurations, best mean validation accuracy
  first, with the standard deviations over the seeds."""
  fields = [f for f in swept if f != "seed"]

  header = ["rank", *fields, "seeds", "val acc", "test acc", "diverged"]
  lines = [[str(rank), *[f"{r[f]:g}" if isinstance(r[f], float) else str(r[f])
                         for f in fields],
            str(r["num_seeds"]),
            spread(r["val_accuracy_mean"], r["val_accuracy_std"]),
            spread(r["test_accuracy_mean"], r["test_accuracy_std"]),
            str(r["num_diverged"])]
           for rank, r in enumerate(aggregated[:top], 1)]
  more = (f"... {len(aggregated) - top} more in results_by_config.csv"
          if len(aggregated) > top else "")
  return _table(header, lines, more)


def spread(mean: float | None, std: float | None) -> str:
  """mean +- std over seeds ("n/a": none finished; no std: one did)."""
  if mean is None:
    return "n/a"
  return f"{mean:.4f}" + (f" +- {std:.4f}" if std is not None else "")


def _table(header: list[str], lines: list[list[str]], more: str) -> str:
  widths = [max(len(row[k]) for row in [header, *lines])
            for k in range(len(header))]

  def fmt(row):
    return "  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True))

  return "\n".join([fmt(header), *map(fmt, lines), *([more] if more else [])])


def format_sweep_summary(summary: dict, workdir) -> str:
  best = summary["best"]
  if "num_seeds" in best:  # mean +- std over the best configuration's seeds
    fields = [f for f in summary["swept"] if f != "seed"]
    swept = ", ".join(f"{f}={best['config'][f]}" for f in fields)
    chosen = (
        f"best by mean validation accuracy over {best['num_seeds']} seeds: "
        f"{swept}: val acc "
        f"{spread(best['val_accuracy_mean'], best['val_accuracy_std'])}, "
        f"test acc "
        f"{spread(best['test_accuracy_mean'], best['test_accuracy_std'])}")
  else:
    swept = ", ".join(f"{f}={best['config'][f]}" for f in summary["swept"])
    chosen = (f"best by validation accuracy: {swept} (id {best['config_id']})"
              f": val acc {best['val_accuracy']:.4f}, test acc "
              f"{best['test_accuracy']:.4f}")
  return "\n".join([
      chosen,
      f"{summary['num_configs']} configurations ({summary['num_diverged']} "
      f"diverged, {summary.get('num_exploded', 0)} exploded) in "
      f"{summary['num_groups']} compiled group(s): train "
      f"{summary['train_seconds']:.2f} s"
      + ("" if solvers.full_batch(best["config"]["optimizer"]) else
         f" ({summary['model_epochs_per_second']:.0f} model-epochs/s)")
      + f", compile {summary['compile_seconds']:.2f} s",
      f"outputs in {workdir}",
  ])
