"""Your own data: npz and csv loading, every validation error,
standardization."""

import dataclasses
import zipfile

import numpy as np
import pytest
import tensorflow_datasets as tfds

from conftest import synthetic_dataset
from softmax_jax import train
from softmax_jax.config import Config
from softmax_jax.data import datasets
from softmax_jax.errors import DataError


def _arrays(n=60, d=5, k=3, seed=0):
  rng = np.random.default_rng(seed)
  return {"x_train": rng.normal(size=(n, d)).astype(np.float32),
          "y_train": rng.integers(0, k, n),
          "x_test": rng.normal(size=(n // 2, d)).astype(np.float32),
          "y_test": rng.integers(0, k, n // 2)}


def _npz(tmp_path, **arrays):
  path = tmp_path / "data.npz"
  np.savez(path, **arrays)
  return f"npz:{path}"


def test_npz_loads_and_trains(tmp_path):
  arrays = _arrays()
  ds = datasets.load(_npz(tmp_path, **arrays,
                          class_names=np.array(["a", "b", "c"])))
  assert ds.class_names == ("a", "b", "c") and ds.num_features == 5
  assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
  np.testing.assert_array_equal(ds.x_test, arrays["x_test"])
  assert ds.image_shape is None
  result = train.train_and_evaluate(Config(batch_size=16, epochs=2), ds)
  assert result.summary["num_params"] == 5 * 3 + 3


def test_npz_classes_come_from_the_labels(tmp_path):
  arrays = _arrays(k=3)
  arrays["y_test"][0] = 6
  assert datasets.load(_npz(tmp_path, **arrays)).num_classes == 7


def test_npz_images_keep_their_shape(tmp_path):
  arrays = _arrays()
  arrays["x_train"] = np.zeros((60, 6, 6), np.uint8)
  arrays["x_test"] = np.zeros((30, 6, 6), np.uint8)
  ds = datasets.load(_npz(tmp_path, **arrays))
  assert ds.x_train.shape == (60, 36) and ds.x_train.dtype == np.uint8
  assert ds.image_shape == (6, 6)


def _with(**changes):
  arrays = _arrays()
  arrays.update(changes)
  return {k: v for k, v in arrays.items() if v is not None}


BAD_NPZ = {
    "missing array": (_with(y_test=None), "has no array 'y_test'"),
    "label out of range": (
        {**_with(), "class_names": np.array(["a", "b"])},
        "y_train[", ),
    "negative label": (_with(y_train=np.r_[-1, np.zeros(59, int)]),
                       "y_train[0] = -1 is not a label"),
    "fractional label": (_with(y_test=np.r_[0.5, np.zeros(29)]),
                         "y_test[0] = 0.5 is not a label"),
    "non-finite feature": (
        _with(x_train=np.where(np.arange(300).reshape(60, 5) == 17, np.nan,
                               0.0).astype(np.float32)),
        "x_train row 3, column 2 is nan"),
    "lengths differ": (_with(y_train=np.zeros(59, int)),
                       "x_train has 60 rows but y_train has shape (59,)"),
    "feature counts differ": (_with(x_test=np.zeros((30, 4), np.float32)),
                              "x_train rows have shape (5,) but x_test "
                              "rows (4,)"),
    "one class": (_with(y_train=np.zeros(60, int), y_test=np.zeros(30, int)),
                  "only 1 class"),
}


@pytest.mark.parametrize("case", list(BAD_NPZ))
def test_bad_npz_is_refused_saying_where(tmp_path, case):
  arrays, message = BAD_NPZ[case][0], BAD_NPZ[case][1]
  name = _npz(tmp_path, **arrays)
  with pytest.raises(DataError) as e:
    datasets.load(name)
  assert message in str(e.value) and str(tmp_path / "data.npz") in str(e.value)
  assert "\n" not in str(e.value)


def test_label_out_of_range_names_the_range(tmp_path):
  arrays = {**_with(), "class_names": np.array(["a", "b"])}
  arrays["y_train"] = np.r_[2, np.zeros(59, int)]
  arrays["y_test"] = np.zeros(30, int)
  with pytest.raises(DataError, match=r"y_train\[0\] = 2 is outside \[0, 2\)"):
    datasets.load(_npz(tmp_path, **arrays))


def test_unreadable_npz(tmp_path):
  path = tmp_path / "broken.npz"
  path.write_bytes(b"not a zip")
  with pytest.raises(DataError, match=r"is not an .npz file \(a zip archive "
                     r"of arrays, as np.savez writes\); give one$"):
    datasets.load(f"npz:{path}")  # (np.load's guess: "pickled data")
  with zipfile.ZipFile(path, "w") as f:  # a zip, but cut short
    f.writestr("x_train.npy", b"\x93NUMPY\x01\x00")
  with pytest.raises(DataError, match=r"is not a readable .npz file"):
    datasets.load(f"npz:{path}")
  with pytest.raises(DataError, match="no such file"):
    datasets.load(f"npz:{tmp_path / 'missing.npz'}")


def _csv(tmp_path, text, name="data.csv"):
  path = tmp_path / name
  path.write_text(text)
  return path


def test_csv_with_a_seeded_split(tmp_path):
  rows = "\n".join(f"{i % 3},{i * 0.5},{-i}" for i in range(50))
  path = _csv(tmp_path, "label,f1,f2\n" + rows + "\n")
  a = datasets.load(f"csv:{path}")
  b = datasets.load(f"csv:{path}")
  assert len(a.x_test) == 10 and len(a.x_train) == 40 and a.num_features == 2
  np.testing.assert_array_equal(a.x_test, b.x_test)
  assert a.class_names == ("0", "1", "2")
  # The label column can be anywhere; the features keep their order.
  assert {tuple(r) for r in np.c_[a.x_train, a.y_train]} <= {
      (i * 0.5, -i, i % 3) for i in range(50)}


def test_csv_with_a_byte_order_mark(tmp_path):
  path = _csv(tmp_path, "\ufefflabel,a\n0,1\n1,2\n0,1\n1,2\n0,1\n1,2\n")
  assert datasets.load(f"csv:{path}").num_features == 1


def test_csv_with_a_test_file(tmp_path):
  train_csv = _csv(tmp_path, "f1,label\n1,0\n2,1\n3,0\n")
  test_csv = _csv(tmp_path, "f1,label\n4,1\n", "test.csv")
  ds = datasets.load(f"csv:{train_csv}", test_csv=str(test_csv))
  assert (ds.x_train.tolist() == [[1.0], [2.0], [3.0]]
          and ds.y_test.tolist() == [1])


BAD_CSV = {
    "no label column": ("a,b\n1,2\n",
                        "has no 'label' column in its header (columns: a, b)"),
    "not a number": ("label,a\n0,1\n1,x\n",
                     "line 3, column 'a': 'x' is not a number"),
    "ragged row": ("label,a\n0,1\n1\n",
                   "line 3: 1 fields, but the header has 2"),
    "fractional label": ("label,a\n0.5,1\n1,2\n0,3\n1,4\n0,5\n",
                         "line 2, column 'label': '0.5' is not a label"),
    "negative label, by its line": (
        "label,a\n" + "0,1\n1,2\n" * 5 + "-1,3\n", "line 12, column "
        "'label': '-1' is not a label"),
    "no rows": ("label,a\n", "has a header but no data rows"),
    "empty": ("", "is empty"),
    "a column twice": ("label,label,a\n0,0,0\n",
                       "names column 'label' more than once"),
}


@pytest.mark.parametrize("case", list(BAD_CSV))
def test_bad_csv_is_refused_saying_where(tmp_path, case):
  text, message = BAD_CSV[case]
  path = _csv(tmp_path, text)
  with pytest.raises(DataError) as e:
    datasets.load(f"csv:{path}")
  assert message in str(e.value) and str(path) in str(e.value)


def test_csv_test_file_with_other_columns(tmp_path):
  train_csv = _csv(tmp_path, "label,a\n0,1\n1,2\n")
  test_csv = _csv(tmp_path, "label,b\n0,1\n", "test.csv")
  with pytest.raises(DataError, match="differ from"):
    datasets.load(f"csv:{train_csv}", test_csv=str(test_csv))


def test_standardization_uses_training_statistics_only():
  ds = datasets.hold_out_validation(synthetic_dataset(), 0.25)
  shifted = dataclasses.replace(ds, x_test=np.full_like(ds.x_test, 255),
                                x_val=np.zeros_like(ds.x_val))
  a, b = datasets.standardize(ds), datasets.standardize(shifted)
  np.testing.assert_array_equal(a.feature_mean, b.feature_mean)
  np.testing.assert_array_equal(a.feature_std, b.feature_std)
  np.testing.assert_allclose(a.x_train.mean(0), 0, atol=1e-5)
  np.testing.assert_allclose(a.x_train.std(0), 1, atol=1e-4)
  expected = (datasets.to_features(ds.x_test) - a.feature_mean) / a.feature_std
  np.testing.assert_allclose(a.x_test, expected, rtol=1e-6)
  assert not np.allclose(a.x_val.mean(0), 0, atol=1e-3)  # not its own stats


def test_constant_features_do_not_divide_by_zero():
  ds = synthetic_dataset()
  x = ds.x_train.copy()
  x[:, 0] = 7
  standardized = datasets.standardize(dataclasses.replace(ds, x_train=x))
  assert np.all(np.isfinite(standardized.x_train))
  assert standardized.feature_std[0] == 1.0


@pytest.mark.slow
def test_colour_tfds_data_set_through_mock_data(tmp_path, monkeypatch):
  monkeypatch.setattr(datasets, "_reachable", lambda host: True)
  with tfds.testing.mock_data(num_examples=20):
    ds = datasets.load("cifar10", tmp_path)
  assert ds.image_shape == (32, 32, 3) and ds.x_train.shape == (20, 3072)
  assert len(ds.class_names) == 10  # from TFDS's metadata
  again = datasets.load("cifar10", tmp_path)  # from the cache, shape kept
  assert again.image_shape == (32, 32, 3)


def test_huge_labels_do_not_wrap_around(tmp_path):
  arrays = _with(y_train=np.r_[2**32, np.zeros(59, np.int64)])
  with pytest.raises(DataError,
                     match=r"y_train\[0\] = 4294967296 is not a label"):
    datasets.load(_npz(tmp_path, **arrays))


def test_non_finite_csv_value_names_line_and_column(tmp_path):
  path = _csv(tmp_path, "label,a,b\n0,1,2\n1,inf,3\n0,1,1\n")
  with pytest.raises(DataError,
                     match="line 3, column 'a': inf is not a finite"):
    datasets.load(f"csv:{path}")


def test_npz_class_names_as_bytes_or_a_scalar_and_its_own_validation(
    tmp_path):
  arrays = _arrays()
  ds = datasets.load(_npz(tmp_path, **arrays, x_val=arrays["x_test"][:10],
                          y_val=arrays["y_test"][:10],
                          class_names=np.array([b"a", b"b", b"c"])))
  assert ds.class_names == ("a", "b", "c")
  np.testing.assert_array_equal(ds.y_val, arrays["y_test"][:10])
  with pytest.raises(DataError, match=r"class_names has shape \(\); give a "
                     "1-D array"):
    datasets.load(_npz(tmp_path, **arrays, class_names=np.array("a,b,c")))
  with pytest.raises(DataError, match="has x_val but not its pair"):
    datasets.load(_npz(tmp_path, **arrays, x_val=arrays["x_test"]))
  with pytest.raises(DataError, match="class name 1 is blank"):  # (as npy:)
    datasets.load(_npz(tmp_path, **arrays,
                       class_names=np.array(["a", " ", "c"])))


def test_pixels_yes_names_the_value_outside_the_unit_interval(tmp_path):
  """Pixels in [0, 1] with one 1.5: that value is named, not the first
  fraction (a fraction is a pixel in [0, 1])."""
  arrays = _arrays()
  for x in ("x_train", "x_test"):
    arrays[x] = np.abs(arrays[x]) / (np.abs(arrays[x]).max() + 1)
  arrays["x_train"][7, 3] = 1.5
  with pytest.raises(DataError, match=r"x_train row 7, column 3 is 1.5"):
    datasets.load(_npz(tmp_path, **arrays), pixels="yes")
