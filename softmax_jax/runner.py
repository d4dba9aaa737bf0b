"""From configs to a workdir: load data, train, write every output.

One config is a single run (metrics per epoch, summary, params, curves). Several
are a sweep: trained together, chosen by validation accuracy, written as
results.csv, a ranked table, a plot and a summary of the best. In multi-host
runs every process trains, and only process 0 writes and prints.
"""

from __future__ import annotations

import datetime
import math
import platform
from pathlib import Path

import jax

from softmax_jax import config as config_lib
from softmax_jax import console
from softmax_jax import data
from softmax_jax import distributed
from softmax_jax import model
from softmax_jax import report
from softmax_jax import sweep
from softmax_jax import train
from softmax_jax import workdir as workdir_lib
from softmax_jax.errors import UserError


def run(configs: list[config_lib.Config] | config_lib.Config,
        workdir: str | Path | None = None, *, overwrite: bool = False,
        verbose: bool = True) -> dict:
  """Trains the config(s), writes the outputs and returns the summary."""
  if isinstance(configs, config_lib.Config):
    configs = [configs]
  for c in configs:
    c.validate()
  if len(configs) == 1:
    return _run_single(configs[0], workdir, overwrite, verbose)
  return _run_sweep(configs, workdir, overwrite, verbose)


def _prepare(configs, workdir, overwrite, tag, verbose):
  """The data set (with its validation split) and the workdir (process 0's)."""
  fractions = {c.val_fraction for c in configs}
  if len({(c.dataset, c.data_dir) for c in configs}) > 1 or len(fractions) > 1:
    raise UserError("dataset, data_dir and val_fraction cannot be swept")
  c = configs[0]
  dataset = data.load(c.dataset, c.data_dir or None)
  fraction = c.val_fraction
  if len(configs) > 1:
    if fraction is None:
      fraction = sweep.DEFAULT_VAL_FRACTION
    elif fraction == 0:
      raise UserError("a sweep chooses its best configuration on a validation "
                      "split: give --val_fraction > 0 (default 1/6)")
  if fraction:
    dataset = data.hold_out_validation(dataset, fraction)
  writer = distributed.is_main_process()
  if writer:
    workdir = workdir_lib.prepare(
        workdir or workdir_lib.default_workdir(tag=tag), overwrite)
  if verbose and writer:
    val = (f" ({len(dataset.x_val):,} held out for validation)"
           if dataset.x_val is not None else "")
    print(f"{c.dataset}: {len(dataset.x_train):,} train{val} / "
          f"{len(dataset.x_test):,} test examples, {dataset.num_features} "
          f"features, {dataset.num_classes} classes; "
          f"{distributed.describe()}", flush=True)
  return dataset, Path(workdir) if writer else None


def _provenance() -> dict:
  return {"date": datetime.datetime.now().isoformat(timespec="seconds"),
          "jax_version": jax.__version__, "machine": platform.platform(),
          "backend": jax.default_backend(), "num_devices": jax.device_count(),
          "num_processes": jax.process_count()}


def _run_single(config, workdir, overwrite, verbose) -> dict:
  dataset, workdir = _prepare([config], workdir, overwrite, config.loss, verbose)
  writer = workdir is not None
  epoch_log = console.EpochLog(config.epochs, enabled=verbose and writer)
  history = []

  def on_epoch(record):
    history.append(record)
    if writer:
      workdir_lib.append_metrics(workdir, record)
    epoch_log(record)

  try:
    result = train.train_and_evaluate(config, dataset, on_epoch=on_epoch)
  finally:
    epoch_log.close()
    if history and writer:  # also after a divergence: the curves show where
      workdir_lib.save_curves(workdir, history, _title(config))

  analysis = report.analyze(result.params, dataset.x_test, dataset.y_test,
                            dataset.class_names)
  summary = {**result.summary, **analysis.summary(), "dataset": config.dataset,
             "config": config_lib.to_dict(config), **_provenance()}
  if writer:
    workdir_lib.save_params(workdir, result.params)
    figures = report.write_figures(workdir, analysis, result.params,
                                   dataset.x_test)
    report.write_markdown(workdir, _title(config), summary,
                          [workdir_lib.CURVES, *figures])
    workdir_lib.write_summary(workdir, summary)
    if verbose:
      print(console.format_evaluation(summary), flush=True)
      print(console.format_summary(summary, workdir), flush=True)
  return summary


def _run_sweep(configs, workdir, overwrite, verbose) -> dict:
  dataset, workdir = _prepare(configs, workdir, overwrite, "sweep", verbose)
  writer = workdir is not None
  swept = sweep.swept_fields(configs)
  num_groups = len(sweep.groups(configs))
  if verbose and writer:
    print(f"sweep over {', '.join(swept)}: {len(configs)} configurations in "
          f"{num_groups} compiled group{'s' if num_groups > 1 else ''}",
          flush=True)
  bar = console.SweepProgress(sum(c.epochs for c in configs),
                              enabled=verbose and writer)

  def on_epoch(i, record):
    if writer:
      workdir_lib.append_metrics(workdir, {
          "config_id": i, **{f: getattr(configs[i], f) for f in swept}, **record})
    bar.update()

  try:
    result = train.train_configs(configs, dataset, on_epoch=on_epoch)
  finally:
    bar.close()

  rows = [_result_row(i, r, swept) for i, r in enumerate(result.runs)]
  ranked = sorted(rows, key=_rank_key)
  best = ranked[0]
  if best["status"] != train.OK:
    raise UserError(f"all {len(configs)} configurations diverged; try smaller "
                    "learning rates")
  best_run = result.runs[best["config_id"]]
  analysis = report.analyze(best_run.params, dataset.x_test, dataset.y_test,
                            dataset.class_names)
  summary = {
      "best": {"config_id": best["config_id"],
               "config": config_lib.to_dict(best_run.config),
               "val_accuracy": best["val_accuracy"],
               "test_accuracy": best["test_accuracy"]},
      **analysis.summary(),
      "val_accuracy": best["val_accuracy"],
      "train_seconds": result.train_seconds,
      "compile_seconds": result.compile_seconds,
      "num_configs": len(configs),
      "num_groups": result.num_groups,
      "num_diverged": sum(r["status"] != train.OK for r in rows),
      "model_epochs_per_second": (
          sum(len(r.history) for r in result.runs) / result.train_seconds),
      "swept": swept,
      "num_params": model.num_params(best_run.params),
      "num_train": int(len(dataset.x_train)),
      "num_val": int(len(dataset.x_val)),
      "num_test": int(len(dataset.x_test)),
      "dataset": configs[0].dataset,
      "class_names": list(dataset.class_names),
      **_provenance(),
  }
  if writer:
    ranking = console.format_ranking(ranked, swept)
    workdir_lib.write_results(workdir, rows, swept)
    workdir_lib.save_params(workdir, best_run.params)
    workdir_lib.save_sweep_plot(workdir, rows)
    figures = report.write_figures(workdir, analysis, best_run.params,
                                   dataset.x_test)
    report.write_markdown(
        workdir, f"Sweep of {len(configs)} configurations; the best: "
        f"{_title(best_run.config)}", summary,
        [workdir_lib.SWEEP_PLOT, *figures], ranking=ranking)
    workdir_lib.write_summary(workdir, summary)
    if verbose:
      print(ranking, flush=True)
      print(console.format_evaluation(summary), flush=True)
      print(console.format_sweep_summary(summary, workdir), flush=True)
  return summary


def _result_row(i: int, run: train.RunResult, swept: list[str]) -> dict:
  last = run.history[-1]
  return {"config_id": i,
          **{f: getattr(run.config, f) for f in swept},
          "loss": run.config.loss, "lr": run.config.lr,
          "val_accuracy": last["val_accuracy"],
          "test_accuracy": last["test_accuracy"],
          "test_nll": last["test_nll"],
          "ece": last["test_ece"],
          "final_train_loss": last["train_loss"],
          "epochs_run": len(run.history),
          "status": run.status}


def _rank_key(row: dict):
  """Best first: finished runs by validation accuracy, then the diverged."""
  ok = row["status"] == train.OK and math.isfinite(row["val_accuracy"])
  return (not ok, -row["val_accuracy"] if ok else 0.0, row["config_id"])


def _title(config: config_lib.Config) -> str:
  return (f"{config.dataset}, loss {config.loss}, {config.optimizer} "
          f"lr {config.lr:g}, batch {config.batch_size}")

