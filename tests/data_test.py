"""Data: the Debian gzip repair, the array cache, TFDS, offline failure, the
real set."""

import gzip
import hashlib
from pathlib import Path
import struct
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from conftest import synthetic_dataset
from conftest import write_cache
from softmax_jax.data import datasets
from softmax_jax.errors import DataError


def _debian_style(payload: bytes) -> bytes:
  """A gzip file as Debian ships them: no file name, its own mtime."""
  compressed = gzip.compress(payload, mtime=1591315437)
  return compressed[:8] + b"\x00\x03" + compressed[10:]


def test_restore_upstream_gzip_header():
  payload = b"\x00\x00\x08\x01" + bytes(range(200))
  restored = datasets.restore_upstream_gzip(_debian_style(payload),
                                            "train-labels-idx1-ubyte.gz",
                                            1504176606)
  name = b"train-labels-idx1-ubyte\x00"
  assert restored[:4] == b"\x1f\x8b\x08\x08"
  assert struct.unpack("<I", restored[4:8])[0] == 1504176606
  assert restored[8:10] == b"\x00\x03"
  assert restored[10:10 + len(name)] == name
  assert gzip.decompress(restored) == payload
  # Restoring twice changes nothing.
  assert datasets.restore_upstream_gzip(restored, "train-labels-idx1-ubyte.gz",
                                        1504176606) == restored


def test_restore_refuses_non_gzip():
  with pytest.raises(DataError, match="not a gzip"):
    datasets.restore_upstream_gzip(b"plain text", "x.gz", 0)


def _registered_checksums():
  path = Path(tfds.__file__).parent / "url_checksums" / "fashion_mnist.txt"
  rows = [line.split("\t") for line in path.read_text().splitlines() if line]
  return {row[3].strip(): row[2] for row in rows}


@pytest.mark.skipif(not datasets.DEBIAN_FASHION_MNIST_DIR.is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_debian_files_restore_to_tfds_checksums():
  checksums = _registered_checksums()
  assert len(checksums) == 4
  for filename, sha256 in checksums.items():
    raw = (datasets.DEBIAN_FASHION_MNIST_DIR / filename).read_bytes()
    assert hashlib.sha256(raw).hexdigest() != sha256  # Debian changed them
    mtime = datasets._UPSTREAM_MTIME[filename.split("-")[0]]  # pylint: disable=protected-access
    restored = datasets.restore_upstream_gzip(raw, filename, mtime)
    assert hashlib.sha256(restored).hexdigest() == sha256


def test_cache_round_trip_without_tensorflow(tmp_path):
  ds = synthetic_dataset()
  write_cache(tmp_path, ds)
  loaded = datasets.load("fashion_mnist", tmp_path)
  np.testing.assert_array_equal(loaded.x_train, ds.x_train)
  np.testing.assert_array_equal(loaded.y_test, ds.y_test)
  assert loaded.class_names == ds.class_names
  assert loaded.x_train.dtype == np.uint8 and loaded.y_train.dtype == np.int32


def test_corrupt_cache_is_not_read_as_valid(tmp_path, monkeypatch):
  path = write_cache(tmp_path, synthetic_dataset(), name="mnist")
  path.write_bytes(path.read_bytes()[:1000])  # a truncated file
  monkeypatch.setattr(datasets, "_reachable", lambda host: False)
  with pytest.raises(DataError, match="not prepared"):
    datasets.load("mnist", tmp_path)  # rebuilds, and offline says so


def test_offline_without_data_fails_fast_and_says_what_to_do(tmp_path,
                                                             monkeypatch):
  monkeypatch.setattr(datasets, "_reachable", lambda host: False)
  monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "absent")
  start = time.monotonic()
  with pytest.raises(DataError) as e:
    datasets.load("fashion_mnist", tmp_path)
  assert time.monotonic() - start < 30  # TFDS's own retries take minutes
  assert "apt-get install dataset-fashion-mnist" in str(e.value)
  assert "--data_dir" in str(e.value)


def test_network_probe_gives_up_within_its_timeout():
  start = time.monotonic()
  assert not datasets._reachable("unreachable.invalid")  # pylint: disable=protected-access
  assert time.monotonic() - start < datasets._NETWORK_PROBE_SECONDS + 1  # pylint: disable=protected-access


def test_unknown_dataset_lists_choices(tmp_path):
  with pytest.raises(DataError, match="fashion_mnist"):
    datasets.load("imagenet_but_typo", tmp_path)


@pytest.mark.slow
def test_tfds_path_with_mock_data(tmp_path, monkeypatch):
  """A TFDS data set goes through TFDS once, then comes from the cache."""
  monkeypatch.setattr(datasets, "_reachable", lambda host: True)
  with tfds.testing.mock_data(num_examples=40):
    ds = datasets.load("mnist", tmp_path)
  assert ds.x_train.shape == (40, 784) and ds.x_train.dtype == np.uint8
  assert ds.y_train.shape == (40,) and ds.num_classes == 10
  assert ds.class_names == tuple(str(k) for k in range(10))
  assert datasets.cache_path("mnist", tmp_path).exists()
  again = datasets.load("mnist", tmp_path)  # no mock now: read from the cache
  np.testing.assert_array_equal(again.x_train, ds.x_train)


def test_real_fashion_mnist(fashion_mnist):
  ds = fashion_mnist
  assert ds.x_train.shape == (60_000, 784) and ds.x_test.shape == (10_000, 784)
  assert np.bincount(ds.y_train).tolist() == [6000] * 10
  assert np.bincount(ds.y_test).tolist() == [1000] * 10
  assert ds.class_names == ("T-shirt/top", "Trouser", "Pullover", "Dress",
                            "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                            "Ankle boot")
  features = datasets.to_features(ds.x_train[:100])
  assert features.dtype == np.float32
  assert features.min() >= 0 and features.max() <= 1 and features.max() > 0.9


@pytest.mark.slow
@pytest.mark.skipif(not datasets.DEBIAN_FASHION_MNIST_DIR.is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_arrays_equal_the_original_idx_files(fashion_mnist):
  """TFDS's arrays, flattened, are the IDX files' images in the same order."""
  d = datasets.DEBIAN_FASHION_MNIST_DIR
  for split, prefix in (("train", "train"), ("test", "t10k")):
    images = datasets.read_idx(
        (d / f"{prefix}-images-idx3-ubyte.gz").read_bytes())
    labels = datasets.read_idx(
        (d / f"{prefix}-labels-idx1-ubyte.gz").read_bytes())
    x, y = (getattr(fashion_mnist, f"x_{split}"),
            getattr(fashion_mnist, f"y_{split}"))
    # TFDS may reorder examples: compare as sets of (image, label) rows.
    ours = np.concatenate([x, y[:, None].astype(np.uint8)], 1)
    theirs = np.concatenate([images.reshape(len(images), -1),
                             labels[:, None]], 1)
    np.testing.assert_array_equal(np.unique(ours, axis=0),
                                  np.unique(theirs, axis=0))


def test_unknown_tfds_version_is_one_line(tmp_path):
  with pytest.raises(DataError, match=r"--dataset='mnist:9.9.9'") as e:
    datasets.load("mnist:9.9.9", tmp_path)
  assert "\n" not in str(e.value)


def test_balanced_class_weights_count_the_rows_weights_as_scikit_learn():
  """--class_weight=balanced: n / (K n_k) with n and n_k the sums of the
  rows' weights (scikit-learn's compute_class_weight with sample_weight),
  n / (K count_k) without them, 0 for a class that weighs nothing."""
  from sklearn.utils.class_weight import compute_class_weight  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  y = rng.integers(0, 3, 200)
  w = rng.uniform(0.1, 3, 200) * np.where(y == 1, 5.0, 1.0)
  theirs = compute_class_weight("balanced", classes=np.arange(3), y=y,
                                sample_weight=w)
  np.testing.assert_allclose(datasets.balanced_class_weights(y, 3, w),
                             theirs, rtol=1e-12)
  assert not np.allclose(theirs, datasets.balanced_class_weights(y, 3))
  np.testing.assert_allclose(
      datasets.balanced_class_weights(y, 3),
      compute_class_weight("balanced", classes=np.arange(3), y=y))
  assert datasets.balanced_class_weights(y, 4, w)[3] == 0
