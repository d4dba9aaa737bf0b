"""Images from files for prediction: PNG/JPEG/... or .npy, as float32 feature
rows in the representation the model was trained on."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from softmax_jax.data import datasets
from softmax_jax.data import user_data
from softmax_jax.errors import UserError


def load(paths: list[str], image_shape: tuple[int, ...], pixels: str | None
         ) -> tuple[np.ndarray, list[str]]:
  """float32 [N, H*W*C] and a name per row, from image files (any size and
  mode: converted to the model's channels and resized) or .npy arrays of one
  image [H, W(, C)], of images [N, H, W(, C)] or of rows [N, H*W*C]. A model
  trained on rows of D features without an image shape has image_shape
  (D,), and takes .npy arrays of one row [D] or of rows [N, D].

  For a model trained on pixels (`pixels` not None), image files, uint8
  arrays and arrays of whole numbers 0-255 (above 1) are scaled to [0, 1],
  values in [0, 1] (floats, whole 0 and 1) taken as they are: the training
  data's reading (datasets.interpret_pixels, datasets.to_features). A model
  trained on other features takes .npy arrays of such features, as they
  are, and no image files. The rows of an array are named PATH[i].
  """
  rows, names = [], []
  for given in paths:
    path = Path(given)
    if not path.is_file():
      raise UserError(f"--images: {path}: " + (
          "a folder; give the files in it (e.g. --images=DIR/*.png)"
          if path.is_dir() else "no such file"))
    if path.suffix.lower() == ".npy":
      array = _from_npy(path, image_shape, pixels)
      if not len(array):
        raise UserError(f"--images: {path} holds no rows; give at least one")
      names += [f"{path}[{i}]" for i in range(len(array))]
    else:
      if len(image_shape) < 2:
        raise UserError(f"--images: {path}: this model was trained on rows "
                        f"of {math.prod(image_shape)} features, not images; "
                        "give .npy arrays of such rows")
      if len(image_shape) == 3 and image_shape[2] not in (1, 3):
        raise UserError(f"--images: {path}: this model was trained on images "
                        f"of {image_shape[2]} channels, which an image file "
                        "does not have; give .npy arrays of shape "
                        f"{tuple(image_shape)} or (N, "
                        f"{', '.join(map(str, image_shape))})")
      if pixels is None:
        raise UserError(f"--images: {path}: this model was trained on "
                        "features that are not pixels (see the run's "
                        "summary.json, 'inputs'); give .npy arrays of such "
                        "features")
      array = datasets.to_features(_from_image(path, image_shape))
      names.append(str(path))
    rows.append(array)
  return np.concatenate(rows), names


def _from_image(path: Path, image_shape) -> np.ndarray:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from PIL import UnidentifiedImageError  # pylint: disable=g-import-not-at-top
  h, w = image_shape[:2]
  mode = "RGB" if len(image_shape) == 3 and image_shape[2] == 3 else "L"
  try:
    with Image.open(path) as image:
      converted = image.convert(mode).resize((w, h), Image.Resampling.BILINEAR)
      return np.asarray(converted, np.uint8).reshape(1, -1)
  except (UnidentifiedImageError, OSError) as e:
    raise UserError(f"--images: {path} is not a readable image ({e})") from e


def _from_npy(path: Path, image_shape, pixels) -> np.ndarray:
  try:
    array = user_data.with_bfloat16(np.load(path, allow_pickle=False))
  except (OSError, ValueError) as e:
    raise UserError(f"--images: {path} is not a readable .npy file "
                    f"({e})") from e
  size = math.prod(image_shape)
  squeezed = tuple(d for d in image_shape if d != 1) or (1,)
  if array.shape in (tuple(image_shape), squeezed):
    array = array.reshape(1, size)
  elif array.ndim >= 2 and array.shape[1:] in (tuple(image_shape), squeezed):
    array = array.reshape(len(array), size)
  if array.ndim != 2 or array.shape[1] != size:
    shapes = dict.fromkeys([str(squeezed),
                            f"(N, {', '.join(map(str, squeezed))})",
                            f"(N, {size})"])
    raise UserError(f"--images: {path} has shape {array.shape}; expected "
                    f"{' or '.join(shapes)}")
  if not (user_data.is_numeric(array.dtype) or array.dtype == bool):
    raise UserError(f"--images: {path} holds {array.dtype}, not numbers")
  if np.iscomplexobj(array):
    raise UserError(f"--images: {path} holds complex numbers; give real "
                    "ones")
  array = user_data.numeric(array)
  if not np.all(np.isfinite(array)):
    raise UserError(f"--images: {path} holds values that are not finite")
  if np.any(np.abs(array) > np.finfo(np.float32).max):
    raise UserError(f"--images: {path} holds values beyond float32's range; "
                    "features must be float32 numbers")
  if pixels is None:
    return array.astype(np.float32)
  # Values in [0, 1] (floats, or whole numbers 0 and 1 of any type but
  # uint8) are pixels in [0, 1], taken as given, as training takes them
  # (datasets.interpret_pixels).
  if array.dtype != np.uint8 and array.min() >= 0 and array.max() <= 1:
    return array.astype(np.float32)
  if array.min() < 0 or array.max() > 255 or np.any(array != np.round(array)):
    raise UserError(f"--images: {path} holds values that are not pixels; give "
                    "whole numbers 0-255 (e.g. uint8) or floats in [0, 1]")
  return datasets.to_features(array.astype(np.uint8))
