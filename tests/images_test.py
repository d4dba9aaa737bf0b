"""--images for --mode=predict: .npy arrays in every dtype the npy: data
loader takes, read as the model's float32 feature rows."""

import ml_dtypes
import numpy as np
import pytest

from softmax_jax.data import images
from softmax_jax.errors import UserError


@pytest.mark.parametrize("dtype", [np.float32, np.float16,
                                   ml_dtypes.bfloat16, np.float64])
def test_feature_arrays_in_each_dtype(tmp_path, dtype):
  values = np.array([[0.5, -2.0, 3.25], [1.0, 0.0, -0.125]])
  path = tmp_path / "rows.npy"
  np.save(path, values.astype(dtype))
  rows, names = images.load([str(path)], (3,), pixels=None)
  assert rows.dtype == np.float32
  np.testing.assert_array_equal(rows, values.astype(dtype).astype(np.float32))
  assert names == [f"{path}[0]", f"{path}[1]"]


def test_bfloat16_pixels_in_the_unit_interval_are_taken_as_they_are(tmp_path):
  pixels = np.array([[[0.0, 0.5], [0.25, 1.0]]])  # one 2 x 2 image
  path = tmp_path / "image.npy"
  np.save(path, pixels.astype(ml_dtypes.bfloat16))
  rows, _ = images.load([str(path)], (2, 2, 1), pixels="0-1")
  np.testing.assert_array_equal(rows, pixels.reshape(1, 4))


@pytest.mark.parametrize("value, says", [
    (np.inf, "not finite"), (np.nan, "not finite"),
    (1e39, "beyond float32's range")])
def test_values_that_are_no_float32_features_are_refused(tmp_path, value,
                                                         says):
  path = tmp_path / "rows.npy"
  np.save(path, np.array([[0.0, value, 1.0]]))
  with pytest.raises(UserError, match=says):
    images.load([str(path)], (3,), pixels=None)


def test_an_image_file_for_a_model_of_two_channel_images_is_refused(tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  path = tmp_path / "pic.png"
  Image.new("L", (6, 6)).save(path)
  with pytest.raises(UserError, match=r"images of 2 channels.*\(N, 6, 6, 2\)"):
    images.load([str(path)], (6, 6, 2), pixels="0-255")
  array = tmp_path / "pics.NPY"  # (any case of the suffix)
  with open(array, "wb") as f:
    np.save(f, np.zeros((1, 6, 6, 2), np.uint8))
  rows, _ = images.load([str(array)], (6, 6, 2), pixels="0-255")
  assert rows.shape == (1, 72)


def test_rows_of_the_wrong_shape_or_none_at_all_are_refused(tmp_path):
  path = tmp_path / "rows.npy"
  np.save(path, np.zeros((2, 7), np.float32))
  with pytest.raises(UserError, match=r"\(2, 7\); expected \(8,\) or "
                     r"\(N, 8\)$"):
    images.load([str(path)], (8,), pixels=None)
  np.save(path, np.zeros((0, 8), np.float32))
  with pytest.raises(UserError, match="holds no rows"):
    images.load([str(path)], (8,), pixels=None)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, bool, np.float64])
def test_pixels_0_and_1_are_taken_as_given_as_training_takes_them(tmp_path,
                                                                  dtype):
  """Whole 0/1 images (binary: integers, booleans) are pixels in [0, 1] in
  training (datasets.interpret_pixels), so prediction reads them as given,
  not as 0-255 divided by 255; uint8 is 0-255 always, and whole numbers
  above 1 are too."""
  binary = np.array([[[0, 1], [1, 0]]])
  path = tmp_path / "image.npy"
  np.save(path, binary.astype(dtype))
  rows, _ = images.load([str(path)], (2, 2), pixels="0-1")
  np.testing.assert_array_equal(rows, binary.reshape(1, 4))
  np.save(path, binary.astype(np.uint8))
  rows, _ = images.load([str(path)], (2, 2), pixels="0-1")
  np.testing.assert_allclose(rows, binary.reshape(1, 4) / 255)
  np.save(path, (binary * 200).astype(dtype if dtype is not bool else int))
  rows, _ = images.load([str(path)], (2, 2), pixels="0-255")
  np.testing.assert_allclose(rows, binary.reshape(1, 4) * 200 / 255,
                             rtol=1e-6)


def test_complex_arrays_and_folders_are_refused(tmp_path):
  path = tmp_path / "rows.npy"
  np.save(path, np.array([[1 + 2j, 0, 1]]))
  with pytest.raises(UserError, match="complex numbers"):
    images.load([str(path)], (3,), pixels=None)
  with pytest.raises(UserError, match="a folder; give the files in it"):
    images.load([str(tmp_path)], (3,), pixels=None)
