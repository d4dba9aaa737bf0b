"""Images from files for prediction: PNG/JPEG/... or .npy, as uint8 feature rows."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from softmax_jax.errors import UserError


def load(paths: list[str], image_shape: tuple[int, ...]
         ) -> tuple[np.ndarray, list[str]]:
  """uint8 [N, H*W*C] and a name per row, from image files (any size and mode:
  converted to the model's channels and resized) or .npy arrays of one image
  [H, W(, C)], of images [N, H, W(, C)] or of rows [N, H*W*C] (uint8 0-255,
  or floats in [0, 1]); the rows of an array are named PATH[i]."""
  rows, names = [], []
  for path in paths:
    path = Path(path)
    if not path.is_file():
      raise UserError(f"--images: {path}: no such file")
    if path.suffix == ".npy":
      array = _from_npy(path, image_shape)
      names += [f"{path}[{i}]" for i in range(len(array))]
    else:
      array = _from_image(path, image_shape)
      names.append(str(path))
    rows.append(array)
  return np.concatenate(rows), names


def _from_image(path: Path, image_shape) -> np.ndarray:
  from PIL import Image, UnidentifiedImageError  # pylint: disable=g-import-not-at-top
  h, w = image_shape[:2]
  mode = "RGB" if len(image_shape) == 3 and image_shape[2] == 3 else "L"
  try:
    with Image.open(path) as image:
      converted = image.convert(mode).resize((w, h), Image.Resampling.BILINEAR)
      return np.asarray(converted, np.uint8).reshape(1, -1)
  except (UnidentifiedImageError, OSError) as e:
    raise UserError(f"--images: {path} is not a readable image ({e})") from e


def _from_npy(path: Path, image_shape) -> np.ndarray:
  try:
    array = np.load(path, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise UserError(f"--images: {path} is not a readable .npy file ({e})") from e
  size = math.prod(image_shape)
  squeezed = tuple(d for d in image_shape if d != 1) or (1,)
  if array.shape in (tuple(image_shape), squeezed):
    array = array.reshape(1, size)
  elif array.ndim >= 2 and array.shape[1:] in (tuple(image_shape), squeezed):
    array = array.reshape(len(array), size)
  if array.ndim != 2 or array.shape[1] != size:
    raise UserError(f"--images: {path} has shape {array.shape}; expected "
                    f"{squeezed}, (N, {', '.join(map(str, squeezed))}) or "
                    f"(N, {size})")
  if np.issubdtype(array.dtype, np.floating):
    if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
      raise UserError(f"--images: {path} holds floats outside [0, 1]; give "
                      "pixels as uint8 0-255 or floats in [0, 1]")
    array = np.round(array * 255)
  elif not (np.issubdtype(array.dtype, np.integer) and array.min() >= 0
            and array.max() <= 255):
    raise UserError(f"--images: {path} holds {array.dtype} values outside 0-255")
  return array.astype(np.uint8)
