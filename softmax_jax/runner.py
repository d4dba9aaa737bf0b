"""One run from config to workdir: load data, train, write every output."""

from __future__ import annotations

import datetime
import platform
from pathlib import Path

import jax

from softmax_jax import config as config_lib
from softmax_jax import console
from softmax_jax import data
from softmax_jax import train
from softmax_jax import workdir as workdir_lib


def run(config: config_lib.Config, workdir: str | Path | None = None, *,
        overwrite: bool = False, verbose: bool = True) -> dict:
  """Trains `config`, writes metrics, summary, params and curves; returns the summary."""
  config.validate()
  dataset = data.load(config.dataset, config.data_dir or None)
  workdir = workdir_lib.prepare(
      workdir or workdir_lib.default_workdir(tag=config.loss), overwrite)
  if verbose:
    print(f"{config.dataset}: {len(dataset.x_train):,} train / "
          f"{len(dataset.x_test):,} test examples, {dataset.num_features} "
          f"features, {dataset.num_classes} classes; training on "
          f"{jax.device_count()} {jax.default_backend()} device(s)", flush=True)

  epoch_log = console.EpochLog(config.epochs, enabled=verbose)
  history = []

  def on_epoch(record):
    history.append(record)
    workdir_lib.append_metrics(workdir, record)
    epoch_log(record)

  try:
    result = train.train_and_evaluate(config, dataset, on_epoch=on_epoch)
  finally:
    epoch_log.close()
    if history:  # also after a divergence: the curves show where it went
      workdir_lib.save_curves(workdir, history, _title(config))

  summary = {
      **result.summary,
      "dataset": config.dataset,
      "config": config_lib.to_dict(config),
      "date": datetime.datetime.now().isoformat(timespec="seconds"),
      "jax_version": jax.__version__,
      "machine": platform.platform(),
  }
  workdir_lib.save_params(workdir, result.params)
  workdir_lib.write_summary(workdir, summary)
  if verbose:
    print(console.format_summary(summary, workdir), flush=True)
  return summary


def _title(config: config_lib.Config) -> str:
  return (f"{config.dataset}, loss {config.loss}, {config.optimizer} "
          f"lr {config.lr:g}, batch {config.batch_size}")
