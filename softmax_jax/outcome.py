"""A run's outcome, concluded once: each configuration's result row, the best
configuration, calibration, the final test analysis and the summary.

Everything a run shows (summary.json, results.csv, results_by_config.csv,
report.md, the terminal) and `train.train_and_evaluate` read the same
Outcome; the modules that write it compute nothing of their own.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import platform

import jax

from softmax_jax import calibration
from softmax_jax import config as config_lib
from softmax_jax import model
from softmax_jax import results
from softmax_jax import seeds
from softmax_jax import solvers
from softmax_jax import sweep
from softmax_jax.data import datasets
from softmax_jax.data import feed as feed_lib
from softmax_jax.errors import UserError
from softmax_jax.outputs import report


class NoUsableModel(UserError):
  """Every configuration diverged or exploded; `rows` hold their results."""

  def __init__(self, message: str, rows: list[dict]):
    super().__init__(message)
    self.rows = rows


@dataclasses.dataclass
class Outcome:
  """What a run concluded."""
  configs: list[config_lib.Config]
  result: results.SweepResult
  swept: list[str]  # the fields a sweep varies ([] for a single run)
  rows: list[dict]  # a sweep's result row per configuration (results.csv)
  aggregated: list[dict] | None  # over seeds (results_by_config.csv)
  best_index: int  # the single run, or the sweep's best configuration
  calibrations: list | None  # calibration.calibrate's, with --calibrate
  analysis: report.Analysis  # of the best model, on the test split
  summary: dict  # summary.json

  @property
  def single(self) -> bool:
    return len(self.configs) == 1

  @property
  def best(self) -> results.RunResult:
    return self.result.runs[self.best_index]


def conclude(configs: list[config_lib.Config], dataset: datasets.Dataset,
             result: results.SweepResult, *, final: bool,
             trained: dict | None = None) -> Outcome:
  """The outcome of trained (final) or restored runs.

  A single run reports its own model; a sweep its best by validation
  accuracy (over seeds, by their mean). `final`: the last records hold
  training's own test scores of the final models; else (an evaluation)
  they are recomputed. `trained`, the training run's summary, gives the
  facts that an evaluation does not recompute (times, date, devices).
  Raises NoUsableModel when no configuration has a usable model.
  """
  single = len(configs) == 1
  swept = [] if single else sweep.swept_fields(configs)
  calibrations = (calibration.calibrate([r.params for r in result.runs],
                                        dataset)
                  if configs[0].calibrate else None)
  rows = [] if single else [_result_row(i, r, swept, calibrations)
                            for i, r in enumerate(result.runs)]
  best_index, aggregated, chosen = _choose(
      result, rows, swept, None if dataset.x_val is None else len(
          dataset.x_val))
  best = result.runs[best_index]
  last = best.history[-1]
  scores = ({k[len("test_"):]: v for k, v in last.items()
             if k.startswith("test_")}
            if final and "test_accuracy" in last else None)
  calibrated = calibrations[best_index] if calibrations else None
  analysis = report.analyze(best.params, dataset.x_test, dataset.y_test,
                            dataset.class_names, scores, calibrated)
  summary = {
      **analysis.summary(),
      "train_loss": last["train_loss"],
      "train_accuracy": last["train_accuracy"],
      "train_seconds": result.train_seconds,
      "compile_seconds": result.compile_seconds,
      **solution(last),
      "epochs_run": len(best.history),
      "num_params": model.num_params(best.params),
      "num_train": len(dataset.x_train),
      "num_test": len(dataset.x_test),
      "dataset": configs[0].dataset,
      "inputs": inputs(dataset),
      "streamed": feed_lib.streams(
          dataset.x_train, feed_lib.budget_bytes(configs[0].device_memory_gb)),
      "class_names": list(dataset.class_names),
      **_provenance(),
  }
  if dataset.x_val is not None:
    summary.update(val_accuracy=last["val_accuracy"], val_nll=last["val_nll"],
                   num_val=len(dataset.x_val))
  if single:
    summary["config"] = config_lib.to_dict(configs[0])
    summary["warnings"] = [r["warning"] for r in best.history if "warning" in r]
  else:
    summary.update(_sweep_summary(result, rows, swept, best_index, chosen,
                                  summary["test_accuracy"]))
  if trained:
    # (the best too: the rule that chose it may have changed since)
    recomputed = {*analysis.summary(), "class_names", "num_test", "best"}
    summary.update({k: v for k, v in trained.items() if k not in recomputed})
  if calibrated:  # (also recomputed by --mode=eval, after the update above)
    summary["calibration"] = calibrated
  return Outcome(configs=list(configs), result=result, swept=swept, rows=rows,
                 aggregated=aggregated, best_index=best_index,
                 calibrations=calibrations, analysis=analysis,
                 summary=summary)


def _sweep_summary(result, rows, swept, best_index, chosen,
                   test_accuracy) -> dict:
  """What summary.json says of a sweep beside its best model's scores."""
  best = result.runs[best_index]
  epochs = sum(len(r.history) for r in result.runs)
  best_summary = {"config_id": best_index,
                  "config": config_lib.to_dict(best.config),
                  "val_accuracy": best.history[-1]["val_accuracy"],
                  "test_accuracy": test_accuracy}
  if chosen:  # several seeds: the best configuration's mean and std
    best_summary.update(
        {"num_seeds": chosen["num_seeds"], "seeds": chosen["seeds"],
         "num_diverged": chosen["num_diverged"],
         **{k: v for k, v in chosen.items()
            if k.endswith(("_mean", "_std"))}},
        val_accuracy=chosen["val_accuracy_mean"],
        test_accuracy=chosen["test_accuracy_mean"])
  return {
      "best": best_summary,
      "num_configs": len(rows),
      "num_groups": result.num_groups,
      "num_diverged": sum(r["status"] == results.DIVERGED for r in rows),
      "num_exploded": sum(r["status"] == results.EXPLODED for r in rows),
      "model_epochs_per_second": (epochs / result.train_seconds
                                  if result.train_seconds else None),
      "swept": swept,
  }


def best_index(result: results.SweepResult, num_val: int | None) -> int:
  """The only run, or the sweep's best (see conclude; num_val: the
  validation rows); NoUsableModel if there is none."""
  configs = [r.config for r in result.runs]
  swept = [] if len(configs) == 1 else sweep.swept_fields(configs)
  rows = [] if not swept else [_result_row(i, r, swept)
                               for i, r in enumerate(result.runs)]
  return _choose(result, rows, swept, num_val)[0]


def _choose(result: results.SweepResult, rows: list[dict], swept: list[str],
            num_val: int | None):
  """(the best run's index, the configurations aggregated over seeds, the
  best of them): the only run; a sweep's best by final validation accuracy;
  with several seeds, the first finished run of the configuration with the
  best mean validation accuracy (seeds.py; num_val: the validation rows),
  the aggregates otherwise None.
  NoUsableModel if the choice has no usable model (a diverged run; an
  exploded one trains on, with a warning)."""
  if not rows:
    if result.runs[0].status == results.DIVERGED:
      raise NoUsableModel("this run has no usable model: "
                          f"{results.diverged_error(result.runs[0])}", rows)
    return 0, None, None
  aggregated = chosen = None
  if seeds.swept(swept):
    aggregated = seeds.by_config(rows, swept, num_val)  # (configs' order)
    chosen = min(aggregated, key=seeds.rank_key)
    best = chosen["config_id"]
  else:
    best = min(rows, key=rank_key)["config_id"]
  if rows[best]["status"] != results.OK:
    raise NoUsableModel(f"all {len(rows)} configurations diverged or "
                        "exploded; try smaller learning rates", rows)
  return best, aggregated, chosen


def _result_row(i: int, run: results.RunResult, swept: list[str],
                calibrations: list | None = None) -> dict:
  """results.csv's row of run i; with --calibrate, `calibrations` (every
  run's calibration.calibrate result, None where it diverged) adds its
  temperature and calibrated ECE."""
  last = run.history[-1]
  c = calibrations[i] if calibrations else None
  return {"config_id": i,
          **{f: getattr(run.config, f) for f in swept},
          "loss": run.config.loss, "lr": run.config.lr,
          "weight_decay": run.config.weight_decay,
          "optimizer": run.config.optimizer,
          "val_accuracy": last["val_accuracy"],
          "test_accuracy": last["test_accuracy"],
          **({"test_top5_accuracy": last["test_top5_accuracy"]}
             if "test_top5_accuracy" in last else {}),
          "test_nll": last["test_nll"],
          "ece": last["test_ece"],
          "final_train_loss": last["train_loss"],
          **solution(last),
          "epochs_run": len(run.history),
          "status": run.status,
          **({"temperature": c["temperature"] if c else None,
              "ece_calibrated": c["test_ece_after"] if c else None}
             if calibrations else {})}


def solution(last: dict) -> dict:
  """What a solver reports of its solution (its SOLUTION_KEYS)."""
  return {k: last[k] for k in solvers.SOLUTION_KEYS if k in last}


def rank_key(row: dict):
  """Best first: finished runs by validation accuracy, then the diverged
  and exploded. Ties in validation accuracy go to the stronger weight decay
  (the simpler model; scikit-learn's LogisticRegressionCV picks the smallest
  C among equal scores), then to the first configuration."""
  ok = row["status"] == results.OK and math.isfinite(row["val_accuracy"])
  return (not ok, -row["val_accuracy"] if ok else 0.0,
          -row["weight_decay"], row["config_id"])


def inputs(dataset: datasets.Dataset) -> str:
  """What the model's inputs are, as the pixel rule decided."""
  kind = {None: "as given", "0-255": "pixels 0-255 scaled to [0, 1]",
          "0-1": "pixels in [0, 1]"}[dataset.pixels]
  return kind + (", standardized" if dataset.feature_mean is not None else "")


def _provenance() -> dict:
  return {"date": datetime.datetime.now().isoformat(timespec="seconds"),
          "jax_version": jax.__version__, "machine": platform.platform(),
          "backend": jax.default_backend(), "num_devices": jax.device_count(),
          "num_processes": jax.process_count()}
