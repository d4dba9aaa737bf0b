"""One rule for pixels: the same images in any dtype train the same model, and
predict applies training's own transform (datasets.interpret_pixels)."""

import json

import numpy as np
import pytest

from conftest import synthetic_dataset
from softmax_jax import runner
from softmax_jax.config import Config
from softmax_jax.data import datasets
from softmax_jax.errors import DataError

TINY = Config(batch_size=32, epochs=3, lr=0.5)


@pytest.fixture(scope="module")
def images():
  """uint8 images [N, 4, 4] and labels, train and test."""
  ds = synthetic_dataset()
  return (ds.x_train.reshape(-1, 4, 4), ds.y_train,
          ds.x_test.reshape(-1, 4, 4), ds.y_test)


def _save(path, x_train, y_train, x_test, y_test):
  np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test,
           y_test=y_test)
  return f"npz:{path}"


def _train(tmp_path, name, dataset, **config):
  workdir = tmp_path / name
  runner.run(Config(**{**TINY.__dict__, "dataset": dataset, **config}),
             workdir, verbose=False, figures=False)
  with np.load(workdir / "params.npz") as f:
    params = {k: f[k] for k in f.files}
  return workdir, params, json.loads((workdir / "summary.json").read_text())


@pytest.mark.parametrize("dtype", [np.int64, np.float32, np.float64])
def test_images_in_any_dtype_are_pixels_scaled_like_uint8(tmp_path, images,
                                                          dtype):
  x_train, y_train, x_test, y_test = images
  reference = _train(tmp_path, "uint8", _save(tmp_path / "u8.npz", *images))
  other = _train(tmp_path, "other", _save(
      tmp_path / "other.npz", x_train.astype(dtype), y_train,
      x_test.astype(dtype), y_test))
  np.testing.assert_array_equal(other[1]["w"], reference[1]["w"])
  assert other[2]["test_nll"] == reference[2]["test_nll"]
  assert other[2]["inputs"] == "pixels 0-255 scaled to [0, 1]"


def test_flat_whole_numbers_are_features_unless_told(tmp_path, images, caplog):
  x_train, y_train, x_test, y_test = images
  flat = _save(tmp_path / "flat.npz", x_train.reshape(len(x_train), -1).astype(
      np.int64), y_train, x_test.reshape(len(x_test), -1).astype(np.int64),
               y_test)
  ds = datasets.load(flat)
  assert ds.pixels is None and ds.x_train.dtype == np.float32
  assert ds.x_train.max() > 1  # unscaled
  assert "give --pixels=yes if these are pixels" in caplog.text
  told = datasets.load(flat, pixels="yes")
  assert told.pixels == "0-255" and told.x_train.dtype == np.uint8
  np.testing.assert_array_equal(told.x_train,
                                x_train.reshape(len(x_train), -1))
  raw = datasets.load(_save(tmp_path / "u8.npz", *images), pixels="no")
  assert raw.pixels is None and raw.x_train.dtype == np.float32
  assert raw.x_train.max() > 1


def test_images_in_the_unit_interval_are_pixels_as_they_are(tmp_path, images):
  x_train, y_train, x_test, y_test = images
  unit = datasets.load(_save(tmp_path / "unit.npz", x_train / 255.0, y_train,
                             x_test / 255.0, y_test))
  assert unit.pixels == "0-1" and unit.x_train.dtype == np.float32
  binary = datasets.load(_save(tmp_path / "binary.npz", (x_train > 127).astype(
      np.int64), y_train, (x_test > 127).astype(np.int64), y_test))
  assert binary.pixels == "0-1" and binary.x_train.max() == 1.0  # not / 255


def test_pixels_yes_refuses_what_is_not_pixels(tmp_path, images):
  x_train, y_train, x_test, y_test = images
  x = x_train.astype(np.float32)
  x[2, 1, 3] = 300.0
  path = _save(tmp_path / "bad.npz", x, y_train, x_test, y_test)
  with pytest.raises(DataError, match=r"--pixels=yes, but .*x_train row 2, "
                     r"column 7 is 300.0"):
    datasets.load(path, pixels="yes")
  assert datasets.load(path).pixels is None  # auto: features, as they are


@pytest.mark.parametrize("pixels", ["auto", "yes", "no"])
@pytest.mark.parametrize("scaled", ["x_train", "x_test", "x_val"])
@pytest.mark.parametrize("flat", [False, True])
def test_splits_on_different_scales_are_refused(tmp_path, images, scaled,
                                                flat, pixels):
  """One split divided by 255 and another not: refused whatever the dtypes
  (floats in both here), the shape of the arrays and --pixels."""
  x_train, y_train, x_test, y_test = images
  arrays = {"x_train": x_train[:400], "y_train": y_train[:400],
            "x_val": x_train[400:], "y_val": y_train[400:],
            "x_test": x_test, "y_test": y_test}
  for name in ("x_train", "x_val", "x_test"):
    x = arrays[name].astype(np.float64)
    x = x.reshape(len(x), -1) if flat else x
    arrays[name] = x / 255 if name == scaled else x
  np.savez(tmp_path / "mixed.npz", **arrays)
  others = sorted({"x_train", "x_val", "x_test"} - {scaled})
  with pytest.raises(DataError, match=(
      rf"({'|'.join(others)}) holds whole numbers up to 25\d but "
      rf"{scaled} fractions in \[0, 1\], so the splits are on different "
      "scales")):
    datasets.load(f"npz:{tmp_path / 'mixed.npz'}", pixels=pixels)
  for name in ("x_train", "x_val", "x_test"):  # the same scale: accepted
    arrays[name] = arrays[name] / (1 if name == scaled else 255)
  np.savez(tmp_path / "unit.npz", **arrays)
  loaded = datasets.load(f"npz:{tmp_path / 'unit.npz'}", pixels=pixels)
  assert loaded.pixels == (
      None if pixels == "no" or (flat and pixels == "auto") else "0-1")


def _probs(params, x_NxD):
  logits = x_NxD.astype(np.float64) @ params["w"] + params["b"]
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("standardize", [False, True])
def test_predict_applies_the_training_transform(tmp_path, images, standardize):
  """int64 images 0-255: predict on them (and on PNGs of them) gives the
  model's own probabilities for its test images."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  x_train, y_train, x_test, y_test = images
  workdir, params, _ = _train(
      tmp_path, "run", _save(tmp_path / "int.npz", x_train.astype(np.int64),
                             y_train, x_test.astype(np.int64), y_test),
      standardize=standardize)
  x = x_test[:5].reshape(5, -1) / 255.0
  if standardize:
    train_x = x_train.reshape(len(x_train), -1) / np.float32(255)
    mean, std = train_x.mean(0), train_x.std(0)
    std[std == 0] = 1
    x = (x - mean) / std
  expected = _probs(params, x)
  npy = tmp_path / "five.npy"
  np.save(npy, x_test[:5].astype(np.int64))
  pngs = []
  for i in range(2):
    pngs.append(tmp_path / f"{i}.png")
    Image.fromarray(x_test[i]).save(pngs[-1])
  predicted = runner.predict(workdir, [str(npy), *map(str, pngs)], top=4)
  for (_, top), probs in zip(predicted, [*expected, *expected[:2]],
                             strict=True):
    for name, p in top:
      assert p == pytest.approx(probs[int(name)], rel=1e-4, abs=1e-6)


def test_a_model_of_features_predicts_from_features_only(tmp_path, images):
  from softmax_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  x_train, y_train, x_test, y_test = images

  def shift(x):
    return x.astype(np.float32) / 255 - 0.5  # not pixels: negative

  workdir, params, summary = _train(
      tmp_path, "run", _save(tmp_path / "f.npz", shift(x_train), y_train,
                             shift(x_test), y_test))
  assert summary["inputs"] == "as given"
  npy = tmp_path / "f.npy"
  np.save(npy, shift(x_test[:3]))
  expected = _probs(params, shift(x_test[:3]).reshape(3, -1))
  for (_, top), probs in zip(runner.predict(workdir, [str(npy)], top=4),
                             expected, strict=True):
    for name, p in top:
      assert p == pytest.approx(probs[int(name)], rel=1e-4, abs=1e-6)
  png = tmp_path / "a.png"
  from PIL import Image  # pylint: disable=g-import-not-at-top
  Image.fromarray(x_test[0]).save(png)
  with pytest.raises(UserError, match="not pixels"):
    runner.predict(workdir, [str(png)])
