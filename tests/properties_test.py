"""Property-based tests: random flags, sweeps and data files (npz, npy, csv)
end in a result or one UserError, never in another exception (which would be
a traceback)."""

from pathlib import Path
import tempfile

import hypothesis
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np

from softmax_jax import config as config_lib
from softmax_jax import solvers
from softmax_jax import sweep
from softmax_jax.data import datasets
from softmax_jax.errors import UserError

SETTINGS = hypothesis.settings(max_examples=150, deadline=None,
                               suppress_health_check=list(hypothesis.HealthCheck))

# Values near what users type: numbers, lists, names, and noise.
_TEXT = st.one_of(
    st.text(max_size=12),
    st.from_regex(r"-?[0-9]{0,4}(\.[0-9]{0,3})?(e-?[0-9]{1,3})?",
                  fullmatch=True),
    st.lists(st.sampled_from(["0.1", "1", "xent", "l2", "", "nan", "-1", "1e9",
                              "adam", "auto", "true", " 3 "]),
             min_size=1, max_size=4).map(",".join),
    st.sampled_from(["inf", "-inf", "nan", "1e400", "0", "256,128", "npz:",
                     "csv:x.csv", "mnist", "auto", "None"]))


@SETTINGS
@hypothesis.given(st.dictionaries(st.sampled_from(config_lib.FIELDS), _TEXT,
                                  max_size=4))
def test_flag_texts_give_configs_or_one_user_error(texts):
  try:
    configs = sweep.build(config_lib.Config(), [], texts)
  except UserError as e:
    assert str(e) and "\n" not in str(e)
    return
  assert configs and all(isinstance(c, config_lib.Config) for c in configs)
  for c in configs:
    c.validate()  # what build returns is valid


_VALUE = st.one_of(st.integers(-5, 300), st.floats(allow_nan=True),
                   st.text(max_size=5), st.none(), st.booleans(),
                   st.lists(st.integers(0, 3), max_size=2))


@SETTINGS
@hypothesis.given(st.lists(st.dictionaries(st.sampled_from(
    (*sweep.SWEEPABLE, "dataset", "unknown")), _VALUE, max_size=3),
                           max_size=4), st.booleans())
def test_experiment_sweeps_give_configs_or_one_user_error(entries, product):
  try:
    file_sweep = (sweep.product(*[[e] for e in entries]) if product
                  else entries)
    configs = sweep.expand(config_lib.Config(), file_sweep)
  except UserError as e:
    assert str(e) and "\n" not in str(e)
    return
  # One configuration per entry, but for those that train as an earlier,
  # other one (a solver does not read the field they differ in).
  trained = [solvers.trained_as(c) for c in configs]
  assert len(configs) <= max(1, len(file_sweep))
  for i in range(len(configs)):
    for j in range(i):
      assert trained[i] != trained[j] or configs[i] == configs[j]
  if not any(solvers.full_batch(c.optimizer) for c in configs):
    assert len(configs) == max(1, len(file_sweep))


_DTYPES = st.sampled_from([np.uint8, np.int64, np.int8, np.float32,
                           np.float64, np.float16, np.bool_])


@st.composite
def _npz_arrays(draw):
  """Arrays close to a valid data set, with random defects."""
  n, m = draw(st.integers(0, 6)), draw(st.integers(0, 4))
  shape = draw(st.sampled_from([(3,), (2, 2), (1,), (2, 2, 3)]))
  arrays = {}
  for split, rows in (("train", n), ("test", m)):
    arrays[f"x_{split}"] = draw(hnp.arrays(
        draw(_DTYPES), (rows + draw(st.sampled_from([0, 0, 1])), *draw(
            st.sampled_from([shape, shape, (4,)])))))
    y_shape = (max(0, rows + draw(st.sampled_from([0, 0, -1]))),)
    y_dtype = draw(_DTYPES)
    arrays[f"y_{split}"] = (
        draw(hnp.arrays(np.int64, y_shape, elements=st.integers(0, 3))).astype(
            y_dtype) if draw(st.booleans())
        else draw(hnp.arrays(y_dtype, y_shape)))
  if draw(st.booleans()):
    arrays["class_names"] = np.array(
        draw(st.lists(st.text(max_size=3), min_size=0, max_size=4)), dtype=str)
  for name in draw(st.lists(st.sampled_from(list(arrays)), max_size=1)):
    del arrays[name]
  return arrays


def _save(folder: Path, form: str, arrays: dict) -> str:
  """The arrays as an npz file or a folder of .npy files; the --dataset."""
  if form == "npz":
    np.savez(folder / "d.npz", **arrays)
    return f"npz:{folder / 'd.npz'}"
  for name, array in arrays.items():
    if name == "class_names":
      (folder / "class_names.txt").write_text("\n".join(array) + "\n")
    else:
      np.save(folder / f"{name}.npy", array)
  return f"npy:{folder}"


@SETTINGS
@hypothesis.given(_npz_arrays(), st.sampled_from(datasets.PIXELS),
                  st.sampled_from(["npz", "npy"]))
def test_npz_and_npy_files_load_or_give_one_data_error(arrays, pixels, form):
  with tempfile.TemporaryDirectory() as tmp:
    try:
      ds = datasets.load(_save(Path(tmp), form, arrays), pixels=pixels)
    except UserError as e:
      assert str(e) and "\n" not in str(e)
      return
    assert ds.x_train.ndim == 2 and len(ds.x_train) == len(ds.y_train) > 0
    assert (ds.y_train.max() < ds.num_classes
            and ds.y_test.max() < ds.num_classes)
    assert ds.x_train.dtype in (np.uint8, np.float32, np.float16)
    assert np.all(np.isfinite(ds.x_train.astype(np.float64)))


_CELL = st.one_of(st.from_regex(r"-?[0-9]{1,3}(\.[0-9]{1,2})?", fullmatch=True),
                  st.sampled_from(["", "nan", "inf", "x", "1e999", " 2 "]),
                  st.text(alphabet=",\"\n\r ab0", max_size=3))


@SETTINGS
@hypothesis.given(st.lists(st.sampled_from(["label", "a", "b", "label", ""]),
                           min_size=0, max_size=3),
                  st.lists(st.lists(_CELL, min_size=0, max_size=4), max_size=8))
def test_csv_files_load_or_give_one_data_error(header, rows):
  with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "d.csv"
    path.write_text("\n".join(",".join(r) for r in [header, *rows]))
    try:
      ds = datasets.load(f"csv:{path}")
    except UserError as e:
      assert str(e) and "\n" not in str(e)
      return
  assert len(ds.x_train) > 0 and len(ds.x_test) > 0
  assert np.all(np.isfinite(ds.x_train))
