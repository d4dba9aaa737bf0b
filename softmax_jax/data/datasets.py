"""Data sets: TFDS image classification, or your own .npz/.csv, as arrays.

The first use of a TFDS data set goes through tensorflow-datasets (which needs
TensorFlow); the arrays are then cached as `<data_dir>/softmax_jax/<name>.npz`
so that later runs load them in well under a second and never import
TensorFlow. Offline, Fashion-MNIST is prepared from Debian's
`dataset-fashion-mnist` package (see `restore_upstream_gzip`). Images are
flattened to uint8 rows and scaled to [0, 1] inside the compiled step; what
counts as pixels in your own data is decided by `interpret_pixels`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import gzip
import hashlib
import logging
import os
from pathlib import Path
import re
import socket
import struct
import threading
from typing import Any
from urllib.parse import urlparse
import zipfile

import ml_dtypes
import numpy as np

from softmax_jax.data import user_data
from softmax_jax.errors import DataError
from softmax_jax.errors import os_error_advice
from softmax_jax.outputs import atomic_io

# Some TFDS image classification data sets, for messages; any other TFDS data
# set with `image` and `label` features works too.
EXAMPLES = ("fashion_mnist", "mnist", "kmnist", "emnist/letters", "cifar10")
_TFDS_NAME = re.compile(r"^[a-z0-9_]+(/[a-z0-9_]+)?(:[0-9.]+)?$")

DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

# Upstream gzip modification times of the Fashion-MNIST files (see below).
_UPSTREAM_MTIME = {"train": 1504176606, "t10k": 1504176627}
_CACHE_VERSION = 2
_NETWORK_PROBE_SECONDS = 1.0
_FALLBACK_PROBE_HOST = "storage.googleapis.com"  # TFDS's mirror
_log = logging.getLogger("softmax_jax")


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Train and test arrays: one row of features per example, int32 labels."""
  name: str
  x_train: np.ndarray  # [N, D]: uint8 pixels, or float32 features
  y_train: np.ndarray  # int32 [N]
  x_test: np.ndarray  # [M, D]
  y_test: np.ndarray  # int32 [M]
  class_names: tuple[str, ...]
  # e.g. (28, 28, 1); None: not images
  image_shape: tuple[int, ...] | None = None
  x_val: np.ndarray | None = None  # [V, D], held out from train
  y_val: np.ndarray | None = None  # int32 [V]
  # None: x holds features; "0-255" (stored as uint8, scaled to [0, 1]) or
  # "0-1": x holds image pixels (see interpret_pixels), and images to
  # predict on are scaled to [0, 1] as the training pixels were.
  pixels: str | None = None
  # With --standardize: features = (to_features(x) - mean) / std.
  feature_mean: np.ndarray | None = None  # float32 [D]
  feature_std: np.ndarray | None = None  # float32 [D]
  # Per-example weights of the training rows (float32 [N], finite, >= 0,
  # not all 0): every solver minimizes their weighted mean of the losses
  # (sum_i w_i loss_i / sum_i w_i). None: all 1. w_val: those of the rows
  # held out for validation (hold_out_validation), rejoined by a refit.
  w_train: np.ndarray | None = None
  w_val: np.ndarray | None = None
  # Cross-validation: each training row's fold (int32 [N], 0 .. F-1); a
  # configuration with Config.fold = f trains without the rows of fold f
  # (weight 0), so the folds x strengths of a search are one stack.
  folds: np.ndarray | None = None

  @property
  def num_features(self) -> int:
    return self.x_train.shape[1]

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def num_folds(self) -> int:
    return 0 if self.folds is None else int(self.folds.max()) + 1


CLASS_WEIGHTS = ("none", "balanced")


def train_weights(dataset: Dataset) -> np.ndarray:
  """The training rows' weights, float32 [N] (all 1 when none were given)."""
  if dataset.w_train is None:
    return np.ones(len(dataset.y_train), np.float32)
  return np.asarray(dataset.w_train, np.float32)


def balanced_class_weights(y_N: np.ndarray, num_classes: int,
                           w_N: np.ndarray | None = None) -> np.ndarray:
  """scikit-learn's "balanced" class weights, n / (K count_k) [K], with the
  rows' weights w_N counted as scikit-learn counts them (n their sum,
  count_k the sum over class k); 0 for a class of no weight, which then
  weighs nothing."""
  w = np.ones(len(y_N)) if w_N is None else np.asarray(w_N, np.float64)
  counts = np.bincount(y_N, weights=w, minlength=num_classes)
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(counts > 0, w.sum() / (num_classes * counts), 0.0)


def with_class_weight(dataset: Dataset, class_weight: str) -> Dataset:
  """The data with each training row's weight multiplied by its class's
  ("balanced": balanced_class_weights of the training labels and weights;
  "none": unchanged), as scikit-learn's class_weight multiplies sample
  weights."""
  if class_weight == "none":
    return dataset
  per_class = balanced_class_weights(dataset.y_train, dataset.num_classes,
                                     dataset.w_train)
  w_val = None
  if dataset.y_val is not None:  # (a refit trains on these rows too)
    w_val = (per_class[dataset.y_val] if dataset.w_val is None
             else dataset.w_val * per_class[dataset.y_val]).astype(np.float32)
  return dataclasses.replace(
      dataset, w_val=w_val,
      w_train=(train_weights(dataset) * per_class[dataset.y_train]
               ).astype(np.float32))


def to_features(x):
  """uint8 pixels -> float32 in [0, 1]; other features -> float32 as they are.

  Works on NumPy and JAX arrays, so also inside compiled code.
  """
  if x.dtype == np.uint8:
    return x.astype(np.float32) * np.float32(1 / 255)
  return x.astype(np.float32)


# --pixels: what counts as image pixels (see interpret_pixels).
PIXELS = ("auto", "yes", "no")
# Feature dtypes used as stored, on the host and the device; the compiled
# step casts each minibatch to float32 (see to_features).
_FEATURE_DTYPES = (np.dtype(np.float32), np.dtype(np.float16),
                   np.dtype(ml_dtypes.bfloat16))


def interpret_pixels(dataset: Dataset, pixels: str = "auto") -> Dataset:
  """The one rule for what counts as pixels, for every source of data.

  Pixels are either whole numbers 0-255, stored as uint8 and scaled to [0, 1]
  by to_features (in training, evaluation and prediction alike), or floats
  already in [0, 1], used as they are. With pixels "auto", x holds pixels
  when it is uint8, or when it is an array of images ([N, H, W(, C)], so
  image_shape is known) whose values are whole numbers 0-255 or lie in
  [0, 1]; "yes" requires pixels of any array; "no" takes x as features, used
  as they are (uint8 too). Anything else is features, used as they are:
  float32, float16 and bfloat16 as stored, other dtypes as float32.
  """
  if pixels not in PIXELS:
    raise DataError(f"unknown --pixels={pixels!r}; choose one of: "
                    f"{', '.join(PIXELS)}")
  splits = [s for s in ("train", "val", "test")
            if getattr(dataset, f"x_{s}") is not None]
  xs = {s: getattr(dataset, f"x_{s}") for s in splits}
  if pixels != "no" and all(x.dtype == np.uint8 for x in xs.values()):
    return dataclasses.replace(dataset, pixels="0-255")
  scans = {s: _scan_values(x) for s, x in xs.items()}
  _refuse_mixed_scales(dataset.name, scans)
  if pixels == "no":
    kind = None
  else:
    low = min(v[0] for v in scans.values())
    high = max(v[1] for v in scans.values())
    whole = all(v[2] for v in scans.values())
    kind = ("0-255" if whole and low >= 0 and high <= 255 and high > 1 else
            "0-1" if low >= 0 and high <= 1 else None)
    if pixels == "yes" and kind is None:
      # Values that are not whole numbers can only be pixels in [0, 1].
      top = 255 if whole else 1
      split = next(s for s, v in scans.items() if v[0] < 0 or v[1] > top)
      row, col, value = _first_non_pixel(xs[split], top)
      raise DataError(f"--pixels=yes, but {dataset.name}: x_{split} row {row}, "
                      f"column {col} is {value}; pixels are whole numbers "
                      "0-255 or floats in [0, 1] (give --pixels=no to use "
                      "the values as they are)")
    # uint8 pixels 0-255 in one split, pixels in [0, 1] in another: no
    # single reading serves both.
    raw = [s for s, x in xs.items() if x.dtype == np.uint8]
    unit = [s for s, v in scans.items()
            if s not in raw and v[0] >= 0 and v[1] <= 1]
    if raw and unit and kind != "0-255":
      raise DataError(f"{dataset.name}: x_{raw[0]} holds uint8 pixels (0-255) "
                      f"but x_{unit[0]} values in [0, 1]; give every split "
                      "the same kind of values (e.g. uint8 in all, or "
                      "x.astype(np.float32) / 255 in all)")
    if pixels == "auto" and dataset.image_shape is None:
      if kind == "0-255":
        _log.warning("%s: x holds whole numbers 0-255 but is neither uint8 "
                     "nor an array of images, so it is used as features, "
                     "unscaled; give --pixels=yes if these are pixels (then "
                     "scaled to [0, 1])", dataset.name)
      kind = None
  if kind == "0-255":
    def convert(x):
      return x.astype(np.uint8)
  else:  # float32, float16 and bfloat16 stay (to_features casts in the step)
    def convert(x):
      return x if x.dtype in _FEATURE_DTYPES else x.astype(np.float32)
  return dataclasses.replace(dataset, pixels=kind,
                             **{f"x_{s}": convert(x) for s, x in xs.items()})


def _refuse_mixed_scales(name: str, scans: dict[str, tuple]) -> None:
  """Refuses a split of fractions in [0, 1] beside one of whole numbers up
  to 255 (one divided by 255, the other not): whatever their dtypes and
  --pixels, no single reading of the values serves both, and the model
  trained on one would be scored on numbers 255 times too large or small."""
  unit = [s for s, (low, high, whole) in scans.items()
          if low >= 0 and high <= 1 and not whole]
  byte = [s for s, (low, high, whole) in scans.items()
          if whole and low >= 0 and 1 < high <= 255]
  if unit and byte:
    high = scans[byte[0]][1]
    raise DataError(f"{name}: x_{byte[0]} holds whole numbers up to {high:g} "
                    f"but x_{unit[0]} fractions in [0, 1], so the splits are "
                    "on different scales (one divided by 255, the other "
                    "not?); give every split the same scale, e.g. "
                    "x.astype(np.float32) / 255 in all")


def _scan_values(x: np.ndarray) -> tuple[float, float, bool]:
  """(min, max, whether all are whole numbers), a chunk of rows at a time."""
  if x.dtype == bool:
    x = x.view(np.uint8)
  low, high, whole = np.inf, -np.inf, True
  for rows in user_data.row_chunks(x):
    chunk = user_data.numeric(x[rows])
    if chunk.size == 0:
      continue
    low, high = min(low, float(chunk.min())), max(high, float(chunk.max()))
    if whole and np.issubdtype(chunk.dtype, np.floating):
      whole = bool(np.all(chunk == np.round(chunk)))
  return low, high, whole


def _first_non_pixel(x: np.ndarray, top: int) -> tuple[int, int, float]:
  """The first value outside [0, top]: (row, column, value)."""
  for rows in user_data.row_chunks(x):
    start = rows.start
    chunk = user_data.numeric(x[rows])
    bad = np.argwhere((chunk < 0) | (chunk > top))
    if len(bad):
      row, col = int(bad[0][0]), int(bad[0][1])
      return start + row, col, chunk[row, col].item()
  raise AssertionError("no value outside the pixel range")


def default_data_dir() -> Path:
  """TFDS's own default, so prepared data sets are shared with other tools."""
  return Path(os.environ.get("TFDS_DATA_DIR",
                             "~/tensorflow_datasets")).expanduser()


def cache_path(name: str, data_dir: str | os.PathLike) -> Path:
  return (Path(data_dir) / "softmax_jax"
          / f"{name.replace('/', '__').replace(':', '@')}.npz")


USER_DATA = ("npy:", "npz:", "csv:")  # prefixes of your own data


def facts(dataset: Dataset) -> dict:
  """What a trained model and its checkpoints depend on: the splits' sizes,
  the features, the classes and a fingerprint of the values
  (workdir.check_same_data compares them)."""
  return {"num_train": len(dataset.x_train), "num_test": len(dataset.x_test),
          "num_val": 0 if dataset.x_val is None else len(dataset.x_val),
          "num_features": dataset.num_features,
          "class_names": list(dataset.class_names),
          "fingerprint": fingerprint(dataset)}


FINGERPRINT_ROWS = 1024  # of each split's features, evenly spaced


def fingerprint(dataset: Dataset) -> dict[str, str]:
  """A hash of each split's labels (all of them) and of a fixed sample of
  its feature rows (FINGERPRINT_ROWS, evenly spaced, read through a memory
  map as needed): data regenerated with the same shape gets another.

  Only the values count, not the files' times: a copy of the same data is
  the same data.
  """
  out = {}
  for split in ("train", "val", "test"):
    x, y = getattr(dataset, f"x_{split}"), getattr(dataset, f"y_{split}")
    if x is None:
      continue
    rows = np.unique(np.linspace(0, len(x) - 1, min(len(x), FINGERPRINT_ROWS)
                                 ).astype(np.int64))
    sample = np.ascontiguousarray(x[rows])
    out[f"x_{split}"] = _digest(str(sample.dtype).encode(), sample.tobytes())
    out[f"y_{split}"] = _digest(np.ascontiguousarray(y, np.int32).tobytes())
  if dataset.w_train is not None:  # (absent before weights existed)
    out["w_train"] = _digest(
        np.ascontiguousarray(dataset.w_train, np.float32).tobytes())
  return out


def _digest(*parts: bytes) -> str:
  h = hashlib.blake2b(digest_size=8)
  for part in parts:
    h.update(part)
  return h.hexdigest()


def absolute(name: str) -> str:
  """A user data set's name with its path absolute (~ expanded), so that a
  run's record finds the data from any directory; a TFDS name as it is."""
  if name.startswith(USER_DATA):
    return name[:4] + absolute_path(name[4:])
  return name


def absolute_path(path: str) -> str:
  """path made absolute (~ expanded); "" (not given) stays ""."""
  return os.path.abspath(os.path.expanduser(path)) if path else path


def check_name(name: str) -> None:
  """Refuses a --dataset that is neither npy:DIR, npz:PATH, csv:PATH nor a
  TFDS name."""
  if name.startswith(USER_DATA):
    if not name[4:]:
      raise DataError(f"--dataset={name} needs a path after the colon")
    return
  if not _TFDS_NAME.match(name):
    raise DataError(f"unknown --dataset={name!r}; give a TFDS image "
                    f"classification data set ({', '.join(EXAMPLES)}, ...), "
                    "npy:DIR, npz:PATH or csv:PATH")


# The prefixes of data sets read from the user's files (not TFDS's).
OWN_FILES = ("npy:", "npz:", "csv:")


def load(name: str, data_dir: str | os.PathLike | None = None,
         test_csv: str = "", pixels: str = "auto") -> Dataset:
  """Returns the data set, preparing and caching a TFDS one on first use;
  `pixels` says what counts as pixels (see interpret_pixels)."""
  return interpret_pixels(_load_arrays(name, data_dir, test_csv), pixels)


def _load_arrays(name, data_dir, test_csv) -> Dataset:
  check_name(name)
  if test_csv and not name.startswith("csv:"):
    raise DataError(f"--test_csv={test_csv} is for --dataset=csv:PATH, not "
                    f"--dataset={name}")
  if name.startswith("npy:"):
    return Dataset(name=name, **user_data.load_npy(name[4:]))
  if name.startswith("npz:"):
    return Dataset(name=name, **user_data.load_npz(name[4:]))
  if name.startswith("csv:"):
    return Dataset(name=name, **user_data.load_csv(name[4:], test_csv))
  data_dir = Path(data_dir) if data_dir else default_data_dir()
  path = cache_path(name, data_dir)
  dataset = _read_cache(path, name)
  if dataset is not None:
    return dataset
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise DataError(f"cannot create the data cache in {path.parent}: "
                    f"{os_error_advice(e, '--data_dir')}") from e
  # Two runs starting together on a fresh machine prepare the data once.
  with _file_lock(path.with_suffix(".lock")):
    dataset = _read_cache(path, name)
    if dataset is None:
      dataset = _load_with_tfds(name, data_dir)
      _write_cache(path, dataset)
  return dataset


def standardize(dataset: Dataset) -> Dataset:
  """Per-feature (x - mean) / std, both from the training split only.

  Constant features get std 1. The validation split, if any, is held out
  first, so it does not inform the statistics either. A chunk of rows at a
  time (float64 sums, two passes): the only full-size array made is the
  standardized float32 copy, which replaces the memory-mapped one.
  """
  mean, std = _column_mean_std(dataset.x_train)
  mean, std = mean.astype(np.float32), std.astype(np.float32)
  std[std == 0] = 1.0

  def apply(a):
    if a is None:
      return None
    out = np.empty(a.shape, np.float32)
    for rows in user_data.row_chunks(a):
      out[rows] = (to_features(a[rows]) - mean) / std
    return out

  return dataclasses.replace(
      dataset, x_train=apply(dataset.x_train), x_val=apply(dataset.x_val),
      x_test=apply(dataset.x_test), feature_mean=mean, feature_std=std)


def _column_mean_std(x):
  """Each column's mean and (population) standard deviation, float64."""

  def chunks():
    return (to_features(x[rows]) for rows in user_data.row_chunks(x))

  mean = sum(c.sum(axis=0, dtype=np.float64) for c in chunks()) / len(x)
  variance = sum(np.square(c - mean).sum(axis=0) for c in chunks()) / len(x)
  return mean, np.sqrt(variance)


def _feature_chunks(x):
  return (to_features(x[rows]).astype(np.float64)
          for rows in user_data.row_chunks(x))


def feature_mean(x) -> np.ndarray:
  """The features' mean [D], float64, a chunk of rows at a time."""
  return sum(c.sum(axis=0) for c in _feature_chunks(x)) / len(x)


def feature_covariance(x, diagonal: bool = False
                       ) -> tuple[np.ndarray, np.ndarray]:
  """The features' mean [D] and (population) covariance [D, D], float64,
  a chunk of rows at a time (the data are never copied whole); diagonal:
  only its diagonal [D], the variances (O(N D), not O(N D^2))."""
  mean = feature_mean(x)
  cov = np.zeros(x.shape[1] if diagonal else (x.shape[1], x.shape[1]))
  for c in _feature_chunks(x):
    np.subtract(c, mean, out=c)  # in place: the chunk is a copy of our own
    cov += np.einsum("nd,nd->d", c, c) if diagonal else c.T @ c
  return mean, cov / len(x)


def hold_out_validation(dataset: Dataset, fraction: float) -> Dataset:
  """Moves a fixed random `fraction` of the training set into x_val/y_val.

  The split depends only on the data set (not on a run's seed), so every
  configuration of a sweep is compared on the same validation examples.
  """
  num_val = round(fraction * len(dataset.x_train))
  if num_val == 0:
    raise DataError(f"--val_fraction={fraction:g} holds out none of the "
                    f"{len(dataset.x_train)} training examples; give at "
                    f"least {1 / len(dataset.x_train):.2g} (one example)")
  if num_val >= len(dataset.x_train):
    raise DataError(f"--val_fraction={fraction} leaves no training examples")
  order = np.random.default_rng(0).permutation(len(dataset.x_train))
  val, train = np.sort(order[:num_val]), np.sort(order[num_val:])
  w = dataset.w_train
  return dataclasses.replace(
      dataset, x_train=dataset.x_train[train], y_train=dataset.y_train[train],
      x_val=dataset.x_train[val], y_val=dataset.y_train[val],
      w_train=None if w is None else w[train],
      w_val=None if w is None else w[val])


def without_validation(dataset: Dataset) -> Dataset:
  """The validation split appended to the training set (the training rows
  first): all the data there is to train on, in one copy in memory."""
  assert dataset.x_val is not None and dataset.y_val is not None
  weights = None
  if dataset.w_train is not None or dataset.w_val is not None:
    weights = np.concatenate([
        train_weights(dataset),
        np.ones(len(dataset.y_val), np.float32) if dataset.w_val is None
        else dataset.w_val])
  return dataclasses.replace(
      dataset, x_train=np.concatenate([dataset.x_train, dataset.x_val]),
      y_train=np.concatenate([dataset.y_train, dataset.y_val]), x_val=None,
      y_val=None, w_train=weights, w_val=None)


def _read_cache(path: Path, name: str) -> Dataset | None:
  """The cached arrays, or None when absent or unreadable (then rebuilt)."""
  if not path.exists():
    return None
  try:
    with np.load(path, allow_pickle=False) as f:
      if int(f["version"]) != _CACHE_VERSION:
        return None
      dataset = Dataset(
          name=name,
          x_train=f["x_train"], y_train=f["y_train"],
          x_test=f["x_test"], y_test=f["y_test"],
          class_names=tuple(str(c) for c in f["class_names"]),
          image_shape=tuple(int(d) for d in f["image_shape"]) or None)
  except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
    return None
  ok = (dataset.x_train.ndim == 2 and dataset.x_test.ndim == 2
        and dataset.x_train.shape[1] == dataset.x_test.shape[1]
        and len(dataset.x_train) == len(dataset.y_train)
        and len(dataset.x_test) == len(dataset.y_test))
  return dataset if ok else None


def _write_cache(path: Path, dataset: Dataset) -> None:
  try:
    atomic_io.atomic_write(path, lambda f: np.savez(
        f, version=_CACHE_VERSION,
        x_train=dataset.x_train, y_train=dataset.y_train,
        x_test=dataset.x_test, y_test=dataset.y_test,
        class_names=np.array(dataset.class_names),
        image_shape=np.array(dataset.image_shape or (), np.int64)))
  except OSError as e:
    raise DataError(f"cannot write the data cache {path}: "
                    f"{os_error_advice(e, '--data_dir')}") from e


@contextlib.contextmanager
def _file_lock(path: Path):
  with open(path, "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def check_available(name: str, data_dir: str | os.PathLike | None = None
                    ) -> None:
  """Refuses, within about a second, a TFDS data set that cannot be had;
  cheap enough to call before anything heavy is imported."""
  check_name(name)
  if name.startswith(USER_DATA):
    return
  data_dir = Path(data_dir) if data_dir else default_data_dir()
  if not cache_path(name, data_dir).exists():
    _refuse_unavailable(name, data_dir)


def _refuse_unavailable(name: str, data_dir: Path) -> None:
  """Refuses, in about a second and before TensorFlow is imported (6-9 s),
  a name TFDS does not know, or a data set that is neither prepared in
  data_dir nor preparable offline while the internet cannot be reached."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  path, _, version = name.partition(":")
  base, _, config = path.partition("/")
  try:
    builder = tfds.builder_cls(base)  # its class: no TensorFlow needed
  except tfds.core.registered.DatasetNotFoundError:
    raise _unknown(name) from None
  configs = getattr(builder, "BUILDER_CONFIGS", None) or []
  if config and config not in {c.name for c in configs}:
    raise DataError(f"--dataset={name!r}: {base} has no config {config!r} "
                    f"(it has: {', '.join(c.name for c in configs) or 'none'})")
  versions = {str(builder.VERSION), *map(str, builder.SUPPORTED_VERSIONS),
              *(str(c.version) for c in configs if c.version)}
  if version and "*" not in version and version not in versions:
    raise DataError(f"--dataset={name!r}: {base} has no version {version} "
                    f"(it has: {', '.join(sorted(versions))})")
  folder = data_dir / name.split(":")[0]
  if any(folder.glob("**/dataset_info.json")):  # prepared (some version)
    return
  if name == "fashion_mnist" and DEBIAN_FASHION_MNIST_DIR.is_dir():
    return
  if not _reachable(_FALLBACK_PROBE_HOST):
    raise DataError(
        f"dataset {name!r} is not prepared in {data_dir} and the internet "
        f"({_FALLBACK_PROBE_HOST}) cannot be reached: "
        + ("install Debian's package (apt-get install dataset-fashion-mnist), "
           if name == "fashion_mnist" else "")
        + "give --data_dir of a TFDS data dir where it is prepared, "
        "or connect to the internet")


def _unknown(name: str) -> DataError:
  return DataError(f"unknown --dataset={name!r}: TFDS has no such data set; "
                   f"try one of {', '.join(EXAMPLES)}, or npy:DIR, npz:PATH "
                   "or csv:PATH for your own data")


def _load_with_tfds(name: str, data_dir: Path) -> Dataset:
  _refuse_unavailable(name, data_dir)
  # Quiet TensorFlow's start-up logs; oneDNN's speed-ups do not matter here.
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  # TensorFlow only reads files here; keep it off any accelerator JAX uses.
  tf.config.set_visible_devices([], "GPU")

  try:
    builder = tfds.builder(name, data_dir=str(data_dir))
  except tfds.core.registered.DatasetNotFoundError:
    raise _unknown(name) from None
  except (AssertionError, ValueError) as e:  # an unknown config or version
    first = (str(e).strip().splitlines()[0] if str(e).strip()
             else type(e).__name__)
    raise DataError(f"--dataset={name!r}: {first}") from None
  features = builder.info.features
  if not ("image" in features and "label" in features
          and hasattr(features["label"], "names")):
    raise DataError(f"--dataset={name!r} is not an image classification data "
                    "set: it needs `image` and `label` features")
  if None in features["image"].shape:
    raise DataError(f"--dataset={name!r} has images of varying sizes "
                    f"{features['image'].shape}; softmax_jax needs one size")
  if not builder.is_prepared():
    download_config = None
    manual_dir = data_dir / "downloads" / "manual"
    if name == "fashion_mnist" and DEBIAN_FASHION_MNIST_DIR.is_dir():
      _restore_debian_fashion_mnist(manual_dir)
      download_config = tfds.download.DownloadConfig(manual_dir=str(manual_dir))
    else:
      hosts = sorted({urlparse(u).hostname for u in builder.url_infos or {}})
      host = hosts[0] if hosts else _FALLBACK_PROBE_HOST
      if not _reachable(host):
        raise DataError(
            f"dataset {name!r} is not prepared in {data_dir} and {host} "
            "cannot be reached: "
            + ("install Debian's package (apt-get install "
               "dataset-fashion-mnist), "
               if name == "fashion_mnist" else "")
            + "give --data_dir of a TFDS data dir where it is prepared, "
            "or connect to the internet")
    _log.info("preparing %s in %s (first use; later runs read its cache)",
              name, data_dir)
    builder.download_and_prepare(download_config=download_config)
  else:
    _log.info("caching %s from %s (first use; later runs read the cache)",
              name, data_dir)
  missing = {"train", "test"} - set(builder.info.splits)
  if builder.info.splits and missing:  # (unknown under tfds.testing.mock_data)
    raise DataError(f"--dataset={name!r} has no {' or '.join(sorted(missing))} "
                    f"split (it has: {', '.join(builder.info.splits)})")

  arrays: dict[str, Any] = {}  # (Any: passed as Dataset's keywords)
  for split in ("train", "test"):
    # Batches, not batch_size=-1: that one needs the whole split in one tensor.
    batches = list(tfds.as_numpy(builder.as_dataset(split=split,
                                                    batch_size=10_000)))
    images = np.concatenate([b["image"] for b in batches])
    arrays[f"x_{split}"] = images.reshape(len(images), -1).astype(np.uint8)
    arrays[f"y_{split}"] = np.concatenate(
        [b["label"] for b in batches]).astype(np.int32)
  return Dataset(name=name, class_names=tuple(features["label"].names),
                 image_shape=tuple(int(d) for d in images.shape[1:]), **arrays)


def _reachable(host: str) -> bool:
  """Whether a TCP connection to host:80 opens within a few seconds.

  Offline, a TFDS download retries for minutes before failing; this probe lets
  us fail in seconds instead. It runs in a thread because DNS has no timeout.
  """
  result = []

  def probe():
    try:
      socket.create_connection((host, 80),
                               timeout=_NETWORK_PROBE_SECONDS).close()
      result.append(True)
    except OSError:
      pass

  thread = threading.Thread(target=probe, daemon=True)
  thread.start()
  thread.join(_NETWORK_PROBE_SECONDS)
  return bool(result)


def restore_upstream_gzip(data: bytes, filename: str, mtime: int) -> bytes:
  """Gives a gzip file the header upstream wrote: FNAME flag, mtime, name.

  Debian's dataset-fashion-mnist recompressed nothing: it only rewrote the
  10-byte gzip headers (no file name, another mtime). The deflate payload and
  CRC are untouched, so restoring the header restores the upstream bytes, and
  with them the SHA-256 checksums TFDS registers.
  """
  if data[:3] != b"\x1f\x8b\x08":
    raise DataError(f"{filename} is not a gzip file")
  flags = data[3]
  if flags & ~0x08:  # only FNAME may be set
    raise DataError(f"{filename}: unexpected gzip header flags {flags:#x}")
  body = 10
  if flags & 0x08:
    body = data.index(b"\x00", 10) + 1
  header = (b"\x1f\x8b\x08\x08" + struct.pack("<I", mtime) + b"\x00\x03"
            + filename.removesuffix(".gz").encode() + b"\x00")
  return header + data[body:]


def _restore_debian_fashion_mnist(manual_dir: Path) -> None:
  manual_dir.mkdir(parents=True, exist_ok=True)
  for src in sorted(DEBIAN_FASHION_MNIST_DIR.glob("*-ubyte.gz")):
    dst = manual_dir / src.name
    if dst.exists():
      continue
    mtime = _UPSTREAM_MTIME[src.name.split("-")[0]]
    restored = restore_upstream_gzip(src.read_bytes(), src.name, mtime)
    atomic_io.atomic_write(dst, lambda f: f.write(restored))  # noqa: B023  called at once, in this iteration


def read_idx(data: bytes) -> np.ndarray:
  """Decodes an (optionally gzipped) IDX file of unsigned bytes."""
  if data[:2] == b"\x1f\x8b":
    data = gzip.decompress(data)
  zero, dtype, ndim = struct.unpack(">HBB", data[:4])
  if zero != 0 or dtype != 0x08:
    raise DataError("not an IDX file of unsigned bytes")
  shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
  return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)
