"""A data set's examples through an embedding (random features, a pretrained
network), written as an npy: folder a chunk at a time, resumable after a
kill.

The folder is built beside its destination, in OUT.partial, and renamed to
OUT only when every split is written: a folder named OUT is always whole,
and --dataset=npy:OUT never reads half an embedding. A kill loses at most
the chunk in progress: each chunk is written into the memory-mapped
x_SPLIT.npy and synced before progress.json counts it, so the same command
run again goes on from the first chunk not counted.
"""

from __future__ import annotations

from collections.abc import Callable
import json
from pathlib import Path
import shutil
import time

import numpy as np
import tqdm

from softmax_jax.data import datasets
from softmax_jax.data import user_data
from softmax_jax.errors import DataError
from softmax_jax.errors import os_error_advice
from softmax_jax.outputs.atomic_io import atomic_write

PROGRESS_FILE = "progress.json"  # in OUT.partial while it is written
RECORD_FILE = "embedding.json"  # in OUT: what made the features, and when
SPLITS = ("train", "val", "test")
DTYPES = ("float32", "float16")

Embed = Callable[[np.ndarray], np.ndarray]  # rows of x [n, D] -> [n, F]


def write_npy_folder(dataset: datasets.Dataset, embed: Embed, out: Path, *,
                     num_features: int, settings: dict,
                     dtype: str = "float32", chunk: int = 1000,
                     progress: bool = True) -> Path:
  """Writes every split of dataset through embed as the npy: folder out.

  embed(x) maps a chunk of rows of x (as the data set stores them: uint8
  pixels for images) to features [n, num_features]; they are stored as
  dtype. settings names everything that changes the features (the model,
  the resolution, a seed): a partial folder begun with other settings is
  refused rather than mixed, and a complete one with the same settings is
  kept as it is. Returns out.
  """
  if dtype not in DTYPES:
    raise DataError(f"dtype={dtype!r}: the features are stored as one of "
                    f"{', '.join(DTYPES)}")
  if chunk < 1:
    raise DataError(f"chunk={chunk}: give at least 1 example a chunk")
  out = Path(out)
  record = {"settings": settings, "dtype": dtype,
            "num_features": num_features, "source": dataset.name}
  if out.exists():
    _check_complete(out, record)
    return out
  partial = out.with_name(out.name + ".partial")
  splits = {s: getattr(dataset, f"x_{s}") for s in SPLITS
            if getattr(dataset, f"x_{s}") is not None}
  try:
    done = _begin(partial, record, splits)
    start = time.time()
    with tqdm.tqdm(total=sum(len(x) for x in splits.values()),
                   initial=sum(done.values()), unit="img", unit_scale=True,
                   disable=not progress, dynamic_ncols=True) as bar:
      for split, x in splits.items():
        bar.set_description(split)
        features = np.lib.format.open_memmap(partial / f"x_{split}.npy",
                                             mode="r+")
        for begin in range(done[split], len(x), chunk):
          end = min(begin + chunk, len(x))
          features[begin:end] = _checked(embed(x[begin:end]), dtype,
                                         (end - begin, num_features), split)
          features.flush()  # on disk before progress.json counts it
          done[split] = end
          _save_json(partial / PROGRESS_FILE, {**record, "done": done})
          bar.update(end - begin)
        del features
    _finish(partial, out, dataset, record, splits, time.time() - start)
  except OSError as e:
    raise DataError(f"cannot write the features to {partial}: "
                    f"{os_error_advice(e, '--out')}") from e
  return out


def _begin(partial: Path, record: dict, splits: dict) -> dict[str, int]:
  """The examples of each split already written to partial (0 for a new
  folder, whose arrays it creates)."""
  saved = _read_json(partial / PROGRESS_FILE)
  if saved is not None:
    if {k: saved.get(k) for k in record} != record:
      raise DataError(
          f"{partial} was begun with other settings ({_describe(saved)}, "
          f"not {_describe(record)}); run with those to resume it, or delete "
          "it to start again")
    return {s: int(saved["done"].get(s, 0)) for s in splits}
  if partial.exists():  # killed before its first progress.json
    shutil.rmtree(partial)
  partial.mkdir(parents=True)
  for split, x in splits.items():
    np.lib.format.open_memmap(partial / f"x_{split}.npy", mode="w+",
                              dtype=record["dtype"],
                              shape=(len(x), record["num_features"]))
  done = {s: 0 for s in splits}
  _save_json(partial / PROGRESS_FILE, {**record, "done": done})
  return done


def _finish(partial: Path, out: Path, dataset: datasets.Dataset,
            record: dict, splits: dict, seconds: float) -> None:
  """The labels, class names, weights and record beside the features; then
  the folder under its name."""
  for split in splits:
    np.save(partial / f"y_{split}.npy", getattr(dataset, f"y_{split}"))
  if dataset.w_train is not None:
    np.save(partial / "w_train.npy", dataset.w_train)
  (partial / user_data.CLASS_NAMES_FILE).write_text(
      "\n".join(dataset.class_names) + "\n")
  _save_json(partial / RECORD_FILE,
             {**record, "examples": {s: len(x) for s, x in splits.items()},
              "seconds_this_run": round(seconds, 1),
              "written": time.strftime("%Y-%m-%d %H:%M:%S")})
  (partial / PROGRESS_FILE).unlink()
  partial.rename(out)


def _check_complete(out: Path, record: dict) -> None:
  saved = _read_json(out / RECORD_FILE)
  if saved is None:
    raise DataError(f"{out} exists and is not a folder this writer made; "
                    "choose another --out, or delete it")
  if {k: saved.get(k) for k in record} != record:
    raise DataError(f"{out} already holds other features ({_describe(saved)},"
                    f" not {_describe(record)}); choose another --out, or "
                    "delete it")


def _checked(features, dtype: str, shape: tuple[int, int],
             split: str) -> np.ndarray:
  """The features of a chunk as stored, refused when of the wrong shape or
  not finite (as stored: float16 overflows above 65,504)."""
  with np.errstate(over="ignore"):  # an overflow is refused just below
    features = np.asarray(features).astype(dtype, copy=False)
  if features.shape != shape:
    raise ValueError(f"the embedding gave features of shape {features.shape} "
                     f"for a chunk of {split}, not {shape}")
  if not np.isfinite(features).all():
    raise DataError(f"the embedding gave a non-finite feature in {split}; "
                    "nothing was written for that chunk")
  return features


def _describe(record: dict) -> str:
  settings = ", ".join(f"{k}={v}" for k, v in
                       sorted(record.get("settings", {}).items()))
  return (f"{settings}, dtype={record.get('dtype')}, "
          f"{record.get('num_features')} features of {record.get('source')}")


def _read_json(path: Path) -> dict | None:
  try:
    return json.loads(path.read_text())
  except FileNotFoundError:
    return None
  except (OSError, ValueError) as e:
    raise DataError(f"{path} is not readable ({e}); delete its folder to "
                    "start again") from e


def _save_json(path: Path, value: dict) -> None:
  atomic_write(path, lambda f: f.write(json.dumps(value, indent=1).encode()))
