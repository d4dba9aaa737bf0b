"""Your own data: a feature matrix in .npy, .npz or .csv files, checked before
use.

  --dataset=npy:DIR    x_train.npy, y_train.npy, x_test.npy, y_test.npy, and
                       optionally x_val.npy/y_val.npy, w_train.npy (each
                       training row's weight) and class_names.txt;
                       memory-mapped, never read whole
  --dataset=npz:PATH   arrays x_train, y_train, x_test, y_test (optional
                       x_val/y_val, w_train, class_names)
  --dataset=csv:PATH   a header row and a `label` column; --test_csv=PATH, or a
                       seeded 20% of PATH becomes the test set

Labels must be integers in [0, K): K is len(class_names) if given, else the
largest label + 1. Every problem is reported as one line naming the file, the
problem and where (array and row, or line and column).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
import zipfile

import ml_dtypes
import numpy as np

from softmax_jax.errors import DataError

LABEL_COLUMN = "label"
CSV_TEST_FRACTION = 0.2  # of a single CSV, held out as the test set (seed 0)
NPY_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
# x_val and y_val: a validation split; w_train: per-example weights of the
# training rows (finite, >= 0, one per row).
OPTIONAL_ARRAYS = ("x_val", "y_val", "w_train")
CLASS_NAMES_FILE = "class_names.txt"  # npy: one class name per line
# Chunks of rows when scanning an array's values: at most SCAN_ROWS rows and
# SCAN_ELEMENTS values (16 MiB of float32), so that the temporaries stay
# small next to the array however wide its rows.
SCAN_ROWS = 65_536
SCAN_ELEMENTS = 2**22


def row_chunks(x: np.ndarray):
  """Slices of consecutive rows of x that cover it, in order (see SCAN_ROWS)."""
  per_row = max(1, int(np.prod(x.shape[1:])))
  step = max(1, min(SCAN_ROWS, SCAN_ELEMENTS // per_row))
  for start in range(0, len(x), step):
    yield slice(start, start + step)


def load_npy(folder: str | Path) -> dict:
  """The arrays of a data set in a folder of .npy files, memory-mapped
  (never read whole), checked a chunk at a time."""
  folder = Path(folder)
  if not folder.is_dir():
    what = "a file, not a folder" if folder.exists() else "no such folder"
    raise DataError(f"{folder}: {what}; --dataset=npy:DIR takes a "
                    f"folder with {', '.join(f'{n}.npy' for n in NPY_ARRAYS)}")
  arrays = {}
  for name in (*NPY_ARRAYS, *OPTIONAL_ARRAYS):
    path = folder / f"{name}.npy"
    if not path.exists():
      if name in NPY_ARRAYS:
        raise DataError(f"{folder} has no {name}.npy; save it with "
                        f"np.save('{path}', {name})")
      continue
    try:
      array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
      raise DataError(f"{path} is not a readable .npy file ({e})") from e
    arrays[name] = with_bfloat16(array)
  if ("x_val" in arrays) != ("y_val" in arrays):
    raise DataError(f"{folder} has {'x_val' if 'x_val' in arrays else 'y_val'}"
                    ".npy but not its pair; give both x_val.npy and y_val.npy, "
                    "or neither")
  names = None
  if (folder / CLASS_NAMES_FILE).exists():
    try:
      text = (folder / CLASS_NAMES_FILE).read_text()
    except (OSError, UnicodeDecodeError) as e:
      raise DataError(f"{folder / CLASS_NAMES_FILE} is not readable "
                      f"({e})") from e
    names = [line.strip() for line in text.rstrip("\n").split("\n")]
    if names == [""]:
      raise DataError(f"{folder / CLASS_NAMES_FILE} is empty; write one class "
                      "name per line, or delete it to number the classes")
  splits = {s: (arrays[f"x_{s}"], arrays[f"y_{s}"])
            for s in ("train", "test", "val") if f"x_{s}" in arrays}
  return _with_weights(folder, _checked(folder, splits, names),
                       arrays.get("w_train"))


def load_npz(path: str | Path) -> dict:
  """The arrays of a data set in an .npz file, checked."""
  path = _existing(path)
  if path.is_file() and not zipfile.is_zipfile(path):  # (np.load's own
    # guess would call it pickled data)
    raise DataError(f"{path} is not an .npz file (a zip archive of arrays, "
                    "as np.savez writes); give one")
  try:
    with np.load(path, allow_pickle=False) as f:
      arrays = {k: f[k] for k in f.files}
  except (OSError, ValueError, zipfile.BadZipFile) as e:
    raise DataError(f"{path} is not a readable .npz file ({e})") from e
  required = ("x_train", "y_train", "x_test", "y_test")
  for name in required:
    if name not in arrays:
      raise DataError(f"{path} has no array {name!r} (it has: "
                      f"{', '.join(sorted(arrays)) or 'none'}); save it with "
                      "np.savez(PATH, x_train=..., y_train=..., x_test=..., "
                      "y_test=...)")
  if ("x_val" in arrays) != ("y_val" in arrays):
    raise DataError(f"{path} has {'x_val' if 'x_val' in arrays else 'y_val'} "
                    "but not its pair; give both x_val and y_val, or neither")
  names = arrays.get("class_names")
  if names is not None and names.ndim != 1:
    raise DataError(f"{path}: class_names has shape {names.shape}; give a "
                    "1-D array of names, e.g. np.array(['cat', 'dog'])")
  if names is not None and names.dtype.kind == "S":  # bytes: as text
    names = np.char.decode(names, "utf-8", "replace")
  checked = _checked(path, {s: (arrays[f"x_{s}"], arrays[f"y_{s}"])
                            for s in ("train", "test", "val")
                            if f"x_{s}" in arrays},
                     None if names is None else [str(n) for n in names])
  return _with_weights(path, checked, arrays.get("w_train"))


def _with_weights(path, arrays: dict, w) -> dict:
  """arrays with w_train, checked (check_weights), if given."""
  if w is not None:
    problem = check_weights(w, len(arrays["y_train"]))
    if problem:
      raise DataError(f"{path}: {problem}")
    arrays["w_train"] = np.asarray(w, np.float32)
  return arrays


def check_weights(w, num_rows: int) -> str | None:
  """What is wrong with per-example weights w_train of num_rows rows (e.g.
  "w_train has shape (3,) for 4 rows; give one weight per training row"),
  or None."""
  w = np.asarray(w)
  if w.ndim != 1 or len(w) != num_rows:
    return (f"w_train has shape {w.shape} for {num_rows} rows; give one "
            "weight per training row")
  if not (is_numeric(w.dtype) or w.dtype == bool):
    return f"w_train holds {w.dtype}, not numbers"
  w = w.astype(np.float64)
  bad = np.flatnonzero(~np.isfinite(w) | (w < 0))
  if len(bad):
    return (f"w_train[{bad[0]}] = {w[bad[0]]}; weights must be finite and "
            "non-negative")
  if not w.any():
    return ("w_train is 0 everywhere; at least one example must weigh "
            "something")
  return None


def load_csv(path: str | Path, test_path: str | Path = "") -> dict:
  """A data set from CSV files with a header row and a `label` column."""
  path = _existing(path)
  header, x, y = _read_csv(path)
  if test_path:
    test_path = _existing(test_path)
    test_header, x_test, y_test = _read_csv(test_path)
    if test_header != header:
      raise DataError(f"{test_path}: its columns ({', '.join(test_header)}) "
                      f"differ from {path}'s ({', '.join(header)})")
  else:
    order = np.random.default_rng(0).permutation(len(x))
    num_test = max(1, round(CSV_TEST_FRACTION * len(x)))
    if num_test >= len(x):
      raise DataError(f"{path} has {len(x)} rows: too few to split off a test "
                      "set; give --test_csv")
    test, train = np.sort(order[:num_test]), np.sort(order[num_test:])
    x, y, x_test, y_test = x[train], y[train], x[test], y[test]
  return _checked(path, {"train": (x, y), "test": (x_test, y_test)}, None)


def _existing(path: str | Path) -> Path:
  path = Path(path)
  if not path.is_file():
    raise DataError(f"{path}: " + ("a folder, not a file" if path.is_dir()
                                   else "no such file"))
  return path


def _read_csv(path: Path):
  try:
    with open(path, newline="", encoding="utf-8-sig") as f:  # (BOM or not)
      rows = list(csv.reader(f))
  except (OSError, UnicodeDecodeError, csv.Error) as e:
    raise DataError(f"{path} is not a readable CSV file ({e})") from e
  if not rows:
    raise DataError(f"{path} is empty; expected a header row and data rows")
  header = [h.strip() for h in rows[0]]
  twice = sorted({h for h in header if header.count(h) > 1})
  if twice:
    raise DataError(f"{path}: the header names column {twice[0]!r} more than "
                    "once; give each column its own name")
  if LABEL_COLUMN not in header:
    raise DataError(f"{path} has no {LABEL_COLUMN!r} column in its header "
                    f"(columns: {', '.join(header)})")
  label_at = header.index(LABEL_COLUMN)
  features = [h for h in header if h != LABEL_COLUMN]
  if not features:
    raise DataError(f"{path} has no feature columns besides {LABEL_COLUMN!r}")
  x = np.empty((len(rows) - 1, len(features)), np.float32)
  y = np.empty(len(rows) - 1, np.float64)
  for i, row in enumerate(rows[1:]):
    line = i + 2
    if len(row) != len(header):
      raise DataError(f"{path}, line {line}: {len(row)} fields, but the header "
                      f"has {len(header)}")
    values = []
    for name, text in zip(header, row, strict=True):
      try:
        values.append(float(text))
      except ValueError:
        raise DataError(f"{path}, line {line}, column {name!r}: {text!r} is "
                        "not a number") from None
    for name, value in zip(header, values, strict=True):
      if not np.isfinite(value):
        raise DataError(f"{path}, line {line}, column {name!r}: {value} is "
                        "not a finite number")
    y[i] = values.pop(label_at)
    if _not_labels(y[i]):  # (said by its line, not its row after the split)
      raise DataError(f"{path}, line {line}, column {LABEL_COLUMN!r}: "
                      f"{row[label_at]!r} is not a label; labels must be "
                      "integers 0, 1, ..., K-1")
    x[i] = values
  if len(x) == 0:
    raise DataError(f"{path} has a header but no data rows")
  return features, x, y


def _checked(path, splits: dict, class_names) -> dict:
  """The arrays of `splits` ({"train": (x, y), "test": ..., "val": ...}) as
  feature rows and int32 labels, or a DataError saying where. x is never
  copied here (a memory map stays one); it is scanned a chunk at a time."""
  arrays = {}
  for split, (x, y) in splits.items():
    if x.ndim < 2 or len(x) == 0:
      raise DataError(f"{path}: x_{split} must have one row per example and "
                      f"at least one row, got shape {x.shape}")
    if math.prod(x.shape[1:]) == 0:
      raise DataError(f"{path}: x_{split} has shape {x.shape}: its rows hold "
                      "no features")
    if np.iscomplexobj(x) or np.iscomplexobj(y):
      raise DataError(f"{path}: {'x' if np.iscomplexobj(x) else 'y'}_{split} "
                      "holds complex numbers; give real ones")
    if y.ndim != 1 or len(y) != len(x):
      raise DataError(f"{path}: x_{split} has {len(x)} rows but y_{split} has "
                      f"shape {y.shape}; give one label per row")
    if not (is_numeric(x.dtype) or x.dtype == bool):
      raise DataError(f"{path}: x_{split} holds {x.dtype}, not numbers")
    if is_float(x.dtype):
      _refuse_non_finite(path, split, x)
    if not np.issubdtype(y.dtype, np.number):
      raise DataError(f"{path}: y_{split} holds {y.dtype}; labels must be "
                      "integers 0, 1, ..., K-1")
    labels = y
    if np.issubdtype(y.dtype, np.floating):  # (2**31 overflows float16)
      labels = y.astype(np.float64)
    bad = np.flatnonzero(_not_labels(labels))
    if len(bad):
      raise DataError(f"{path}: y_{split}[{bad[0]}] = {labels[bad[0]]} is "
                      "not a label; labels must be integers 0, 1, ..., K-1")
    arrays[f"x_{split}"] = x  # as stored; data.interpret_pixels converts it
    arrays[f"y_{split}"] = np.asarray(labels).astype(np.int32)
  x_train = splits["train"][0]
  for split, (x, _) in splits.items():
    if x.shape[1:] != x_train.shape[1:]:
      raise DataError(f"{path}: x_train rows have shape {x_train.shape[1:]} "
                      f"but x_{split} rows {x.shape[1:]}; they must match")
  if class_names is not None:
    _check_class_names(path, class_names)
    k = len(class_names)
  else:
    k = int(max(arrays[f"y_{s}"].max() for s in splits)) + 1
    examples = sum(len(arrays[f"y_{s}"]) for s in splits)
    if k > examples:  # (a typo, and K class names would not fit in memory)
      split, i = next((s, int(np.argmax(arrays[f"y_{s}"]))) for s in splits
                      if arrays[f"y_{s}"].max() == k - 1)
      raise DataError(f"{path}: y_{split}[{i}] = {k - 1} makes {k:,} classes "
                      f"for {examples:,} examples; labels number the classes "
                      "0, 1, ..., K-1")
  for split in splits:
    y = arrays[f"y_{split}"]
    bad = np.flatnonzero(y >= k)
    if len(bad):
      raise DataError(f"{path}: y_{split}[{bad[0]}] = {y[bad[0]]} is outside "
                      f"[0, {k}) (class_names has {k} entries)")
  if k < 2:
    raise DataError(f"{path}: the labels name only {k} class; a classifier "
                    "needs at least 2")
  for split in splits:
    x = arrays[f"x_{split}"]
    arrays[f"x_{split}"] = x.reshape(len(x), -1)  # a view
  arrays["class_names"] = tuple(class_names if class_names is not None
                                else (str(c) for c in range(k)))
  arrays["image_shape"] = x_train.shape[1:] if x_train.ndim > 2 else None
  return arrays


def _not_labels(values):
  """Where values are no labels (integers 0 <= y < 2**31), elementwise."""
  return (values != np.round(values)) | (values < 0) | (values >= 2**31)


def _check_class_names(path, names: list[str]) -> None:
  """Refuses a blank name or one given twice (a class would be lost in
  every table keyed by name)."""
  seen: dict[str, int] = {}
  for i, name in enumerate(names):
    if not name.strip():
      raise DataError(f"{path}: class name {i} is blank; give every class "
                      "a name")
    if name in seen:
      raise DataError(f"{path}: the class name {name!r} is given twice "
                      f"(classes {seen[name]} and {i}); names must differ")
    seen[name] = i


def with_bfloat16(array: np.ndarray) -> np.ndarray:
  """A loaded .npy array, bfloat16 seen as such: np.save stores it as 2-byte
  raw values (V2)."""
  return (array.view(ml_dtypes.bfloat16) if array.dtype == np.dtype("V2")
          else array)


def is_float(dtype) -> bool:
  """Floating point, bfloat16 included (ml_dtypes is not np.floating)."""
  return np.issubdtype(dtype, np.floating) or dtype == ml_dtypes.bfloat16


def numeric(chunk: np.ndarray) -> np.ndarray:
  """A chunk NumPy can compute with (bfloat16 as float32)."""
  return (chunk.astype(np.float32) if chunk.dtype == ml_dtypes.bfloat16
          else chunk)


def is_numeric(dtype) -> bool:
  return np.issubdtype(dtype, np.number) or dtype == ml_dtypes.bfloat16


def _refuse_non_finite(path, split, x) -> None:
  """The first value of x that is not finite, or too large for float32
  features, found a chunk of rows at a time (a whole-array test would
  allocate a mask as large as x)."""
  largest = np.finfo(np.float32).max
  for rows in row_chunks(x):
    start = rows.start
    chunk = numeric(np.asarray(x[rows]))
    ok = np.isfinite(chunk) & (np.abs(chunk) <= largest)
    if not ok.all():
      row, *col = np.argwhere(~ok)[0]
      raise DataError(f"{path}: x_{split} row {start + row}, column "
                      f"{', '.join(map(str, col))} is {chunk[(row, *col)]}; "
                      "features must be finite numbers within float32's "
                      "range")
