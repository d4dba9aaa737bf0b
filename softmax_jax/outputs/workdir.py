"""What a run leaves in its workdir, and how a workdir is claimed or resumed.

Whole files are written atomically (a temporary file, then a rename), so a
killed run never leaves a half-written summary, params or figure behind.
`configs.json` records what the workdir was started with: the same command
again resumes from the checkpoints, another configuration is refused.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import fcntl
import importlib
import io
import json
import logging
import os
from pathlib import Path
import shutil
import socket
from types import ModuleType
from typing import Any, IO
import zipfile

import jax
import numpy as np

from softmax_jax import config as config_lib
from softmax_jax import solvers
from softmax_jax.errors import os_error_advice
from softmax_jax.errors import UserError
from softmax_jax.outputs import atomic_io

_log = logging.getLogger("softmax_jax")

LOCK = ".lock"  # held (flock) by the one process using the workdir
CONFIGS = "configs.json"  # the configuration(s) this workdir trains
DATA = "data.json"  # the data it trains on: shape, fingerprint (data.facts)
CHECKPOINTS = "checkpoints"  # orbax checkpoints, a folder per sweep group
METRICS = "metrics.jsonl"  # one record per epoch (and configuration)
SUMMARY = "summary.json"
PARAMS = "params.npz"  # the trained (for a sweep: the best) parameters
CURVES = "curves.png"  # a single run's training curves
RESULTS = "results.csv"  # a sweep: one row per configuration
# A sweep over seeds: one row per configuration (every swept field but the
# seed), mean and std over its seeds (see seeds.py).
RESULTS_BY_CONFIG = "results_by_config.csv"
# A sweep: validation accuracy against its swept field (plotting.sweep_figure)
SWEEP_PLOT = "sweep.png"
RELIABILITY = "reliability.png"
CONFUSION = "confusion.png"
CONFUSION_MATRIX = "confusion.npy"  # [true, predicted] counts, test set
PREDICTIONS = "predictions.png"
WEIGHTS = "weights.png"
REPORT = "report.md"  # the summary table and the figures
TENSORBOARD = "tensorboard"  # event files, a folder per configuration
REFIT = "refit"  # a sweep's best configuration retrained on all training data
OUTPUTS = (CONFIGS, DATA, CHECKPOINTS, METRICS, SUMMARY, PARAMS, CURVES,
           RESULTS, RESULTS_BY_CONFIG, SWEEP_PLOT, RELIABILITY, CONFUSION,
           CONFUSION_MATRIX, PREDICTIONS, WEIGHTS, REPORT, TENSORBOARD, REFIT)
# Checkpoints of a small model, figures and event files fit in a few MiB.
MIN_FREE_BYTES = 16 * 2**20
RESULT_COLUMNS = ("val_accuracy", "test_accuracy", "test_nll", "ece",
                  "final_train_loss", "epochs_run", "status")


def default_workdir(root: str | Path = "runs", tag: str = "") -> Path:
  """A new folder under root, named by the time (and tag), created here so
  that two runs started in the same second never share it."""
  stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
  Path(root).mkdir(parents=True, exist_ok=True)
  for suffix in range(1, 10_000):
    path = Path(root) / "-".join(
        filter(None, [stamp, tag, str(suffix) if suffix > 1 else ""]))
    try:
      path.mkdir()
      return path
    except FileExistsError:
      continue
  raise UserError(f"cannot find a free folder name under {root}")


@contextlib.contextmanager
def lock(workdir: str | Path, purpose: str, create: bool = True):
  """Holds workdir for one process: another that asks while it is held is
  refused at once, in one line naming the holder (pid and host).

  An OS lock (flock) on workdir/.lock: the kernel releases it when its
  process ends, however it ends, so a killed run never blocks the next. A
  read-only workdir is locked through a read-only handle (enough for
  predict); create=False leaves a missing workdir for the caller to report.
  """
  workdir = Path(workdir)
  if create:
    _create(workdir)
  elif not workdir.is_dir():
    yield workdir
    return
  path = workdir / LOCK
  f, writable = _open_lock(path, workdir, create)
  with f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      holder = f.read().strip() or "another process"
      raise UserError(f"--workdir={workdir} is in use by {holder}; wait for "
                      "it to end (or stop it), or give another --workdir"
                      ) from None
    if writable:
      f.seek(0)
      f.truncate()
      f.write(f"a {purpose} (pid {os.getpid()} on {socket.gethostname()}, "
              f"since {datetime.datetime.now():%Y-%m-%d %H:%M:%S})\n")
      f.flush()
    try:
      yield workdir
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def _open_lock(path: Path, workdir: Path,
               create: bool) -> tuple[IO[str], bool]:
  """The lock file, and whether it opened for writing (else read-only)."""
  try:
    return open(path, "a+"), True
  except OSError as e:
    if create or not path.exists():
      raise UserError(f"cannot write to --workdir={workdir}: "
                      f"{os_error_advice(e)}") from e
    return open(path), False


def _create(workdir: Path) -> None:
  try:
    workdir.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise UserError(f"cannot create --workdir={workdir}: "
                    f"{os_error_advice(e)}") from e
  if not workdir.is_dir():
    raise UserError(f"--workdir={workdir} is not a directory")


def prepare(workdir: str | Path, configs: list[dict],
            overwrite: bool = False, data: dict | None = None
            ) -> tuple[Path, bool]:
  """Claims workdir for `configs` on `data` (data.facts); returns it and
  whether to resume there.

  The same configs as recorded resume, on the same data; other configs, or
  outputs without a record, are refused unless overwrite (which deletes
  them). The folder must be writable, which is checked before any training.
  """
  workdir = Path(workdir)
  _create(workdir)
  existing = [name for name in OUTPUTS if (workdir / name).exists()]
  recorded = read_configs(workdir)
  if recorded is not None:  # fields added since it was written: as before
    defaults = config_lib.to_dict(config_lib.Config())
    recorded = [{**defaults, **c} for c in recorded]
  resume = recorded == configs and not overwrite
  if resume and data is not None:
    check_same_data(workdir, data)
  if existing and not resume and not overwrite:
    if recorded is None:
      reason = f"holds files of another run ({existing[0]})"
    else:
      reason = ("holds a run of another configuration "
                f"({_difference(recorded, configs)})")
    raise UserError(f"--workdir={workdir} {reason}; give another --workdir, "
                    "run the same configuration to resume, or pass --overwrite")
  probe = workdir / f".write-test-{os.getpid()}"
  try:
    probe.write_bytes(b"x" * 4096)
    probe.unlink()
  except OSError as e:
    with contextlib.suppress(OSError):  # a partial probe on a full disk
      probe.unlink()
    raise UserError(f"cannot write to --workdir={workdir}: "
                    f"{os_error_advice(e)}") from e
  free = shutil.disk_usage(workdir).free
  if free < MIN_FREE_BYTES:
    raise UserError(f"--workdir={workdir} has only "
                    f"{free / 2**20:.1f} MiB free; "
                    f"a run writes checkpoints and figures and needs at least "
                    f"{MIN_FREE_BYTES / 2**20:.0f} MiB: free some space or "
                    "choose another --workdir")
  if not resume:
    for name in existing:
      path = workdir / name
      shutil.rmtree(path) if path.is_dir() else path.unlink()
    write_file(workdir / CONFIGS,
               lambda f: f.write(json.dumps(configs, indent=1).encode()))
    if data is not None:
      write_file(workdir / DATA,
                 lambda f: f.write(json.dumps(data, indent=1).encode()))
  return workdir, resume


def check_same_data(workdir: str | Path, data: dict) -> None:
  """Refuses data whose facts (data.facts) differ from those the run in
  workdir was started on: its checkpoints and model are of that data (a
  workdir from before data.json was written is not checked)."""
  recorded = _read_json(Path(workdir) / DATA)
  if recorded is None:
    return
  # (a fact added since the record was written is not checked)
  changed = [_change(k, recorded[k], data.get(k)) for k in sorted(recorded)
             if recorded[k] != data.get(k)]
  if len(changed) > 1:  # another shape or classes say it: values differ too
    changed = [c for c in changed if not c.startswith("other values")]
  if not changed:
    return
  raise UserError(f"the data set is not the one the run in {workdir} was "
                  f"started on ({'; '.join(changed)}): give it back its "
                  "data, or train on this data in another --workdir")


def _change(key: str, recorded, now) -> str:
  """What changed in one of data.facts, in words."""
  if key == "fingerprint" and isinstance(recorded, dict) and isinstance(
      now, dict):
    parts = [f"{name}'s {'features' if name[0] == 'x' else 'labels'}"
             for name in sorted({*recorded, *now})
             if recorded.get(name) != now.get(name)]
    return (f"other values in {', '.join(parts)} (the same shape, other "
            "data)")
  return f"{key} {_short(recorded)}, now {_short(now)}"


def _short(value) -> str:
  text = json.dumps(value)
  return text if len(text) <= 60 else text[:57] + "..."


def read_configs(workdir: Path) -> list[dict] | None:
  return _read_json(Path(workdir) / CONFIGS)


def read_summary(workdir: str | Path) -> dict | None:
  return _read_json(Path(workdir) / SUMMARY)


def _read_json(path: Path):
  """The file's JSON, or None when it is missing or unreadable."""
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _difference(recorded: list[dict], configs: list[dict]) -> str:
  if len(recorded) != len(configs):
    return f"{len(recorded)} configurations there, {len(configs)} here"
  for old, new in zip(recorded, configs, strict=True):
    for key in new:
      if old.get(key) != new[key]:
        return f"{key}={old.get(key)!r} there, {new[key]!r} here"
  return "another order"


def write_metrics(workdir: Path, records: list[dict]) -> None:
  """Replaces metrics.jsonl whole (at the end, and on resume)."""
  write_file(workdir / METRICS, lambda f: f.write(
      "".join(json.dumps(r) + "\n" for r in records).encode()))


def append_metrics(workdir: Path, record: dict) -> None:
  try:
    with open(workdir / METRICS, "a") as f:
      f.write(json.dumps(record) + "\n")
  except OSError as e:
    raise UserError(f"cannot write {workdir / METRICS}: {os_error_advice(e)}; "
                    "then run the same command to resume") from e


def write_summary(workdir: Path, summary: dict) -> None:
  write_file(workdir / SUMMARY,
             lambda f: f.write(json.dumps(summary, indent=2).encode()))


# What params.npz holds beside the parameters: all --mode=predict needs.
# (classes: an estimator's labels where they are numbers or booleans, as
# its classes_ held them; class_names are always their text.)
MODEL_FACTS = ("class_names", "classes", "feature_mean", "feature_std",
               "pixels", "image_shape", "temperature")


def save_params(workdir: Path, params: dict, facts: dict) -> None:
  """params.npz: one array per leaf, named by its path (w, b, hidden_0_w, a,
  s), and the model's `facts` (MODEL_FACTS; None values left out), e.g. the
  calibrated temperature (--calibrate) as `temperature`."""
  # (Any: savez takes them as keywords, and its own allow_pickle is a bool)
  flat: dict[str, Any] = {
      _leaf_name(path): np.asarray(leaf)
      for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}
  for name, value in facts.items():
    assert name in MODEL_FACTS, name
    if value is not None:
      flat[name] = np.asarray(value, np.float32 if name == "temperature"
                              else None)
  write_file(workdir / PARAMS, lambda f: np.savez(f, **flat))


def read_model(workdir: Path) -> tuple[dict[str, np.ndarray], dict] | None:
  """(the parameter arrays by leaf name, the facts as save_params took
  them) from params.npz, or None if it is missing, unreadable, or from
  before it held the class names."""
  try:
    with np.load(Path(workdir) / PARAMS, allow_pickle=False) as f:
      stored = {name: f[name] for name in f.files}
  except (OSError, ValueError, zipfile.BadZipFile):
    return None
  if "class_names" not in stored:
    return None
  decode: dict[str, Any] = {
      "class_names": lambda a: [str(c) for c in a], "pixels": str,
      "temperature": float, "image_shape": lambda a: tuple(int(d) for d in a)}
  facts = {k: decode.get(k, lambda a: a)(stored.pop(k))
           for k in MODEL_FACTS if k in stored}
  return stored, facts


def _leaf_name(path) -> str:
  return "_".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def save_curves(workdir: Path, history: list[dict], title: str = "") -> bool:
  return write_figure(workdir / CURVES,
                      lambda f: plotting().plot_curves(history, f, title))


def write_results(workdir: Path, rows: list[dict], swept: list[str]) -> None:
  """results.csv: config_id, a column per swept flag, then the results."""
  columns = ["config_id", *swept, *RESULT_COLUMNS]

  def anywhere(key):  # (empty in the rows it does not apply to)
    return any(key in r for r in rows)

  if anywhere("test_top5_accuracy"):  # more than 5 classes
    columns.insert(columns.index("test_accuracy") + 1, "test_top5_accuracy")
  if anywhere("temperature"):  # --calibrate
    at = columns.index("ece") + 1
    columns[at:at] = ["temperature", "ece_calibrated"]
  # A full-batch solver's solution, or a tracked objective: in a sweep of
  # minibatch and solver runs, empty for the former.
  at = columns.index("final_train_loss") + 1
  columns[at:at] = [k for k in solvers.SOLUTION_KEYS if anywhere(k)]
  _write_csv(workdir / RESULTS, rows, columns)


def write_results_by_config(workdir: Path, rows: list[dict],
                            columns: list[str]) -> None:
  """results_by_config.csv (a sweep over seeds; see seeds.py)."""
  _write_csv(workdir / RESULTS_BY_CONFIG, rows, columns)


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
  def write(f):
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    f.write(text.getvalue().encode())

  write_file(path, write)


def read_results(workdir: Path) -> list[dict]:
  with open(workdir / RESULTS, newline="") as f:
    return list(csv.DictReader(f))


def save_sweep_plot(workdir: Path, rows: list[dict], swept: list[str]
                    ) -> bool:
  return write_figure(workdir / SWEEP_PLOT,
                      lambda f: plotting().plot_sweep(rows, f, swept))


def plotting() -> ModuleType:
  """softmax_jax.outputs.plotting, imported where a figure is first drawn:
  matplotlib takes ~0.45 s to import (2026-12-04, this project's 2-core
  EPYC), which a run need not pay before its first line, and a process that
  draws nothing (an estimator's fit, --mode=predict) not at all. (Imported
  on a thread while the run trains instead, it gained nothing: A/B 0.99.)"""
  return importlib.import_module("softmax_jax.outputs.plotting")


def write_figure(path: Path, draw) -> bool:
  """write_file for a figure, which nothing else depends on: if drawing it
  fails, a note says why and the run goes on (False) with its other
  outputs; a disk that cannot be written to still stops it."""
  try:
    write_file(path, draw)
  except UserError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    first_line = (str(e).strip().splitlines() or [""])[0]
    _log.warning("%s was not drawn (%s: %s); the run's other outputs are "
                 "unaffected", path.name, type(e).__name__, first_line)
    return False
  return True


def write_file(path: Path, write) -> None:
  """Calls write(f) on a binary file that appears at path whole or not at
  all."""
  try:
    atomic_io.atomic_write(path, write)
  except OSError as e:
    raise UserError(f"cannot write {path}: {os_error_advice(e)}") from e
