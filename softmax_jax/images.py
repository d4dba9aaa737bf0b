"""Images from files for prediction: PNG/JPEG/... or .npy, as uint8 feature rows."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from softmax_jax.errors import UserError


def load(paths: list[str], num_features: int) -> np.ndarray:
  """uint8 [N, num_features] from image files (any size and mode: converted
  to grayscale and resized) or .npy arrays of shape [H, W], [N, H, W] or
  [N, num_features] (uint8 0-255, or floats in [0, 1])."""
  side = math.isqrt(num_features)
  if side * side != num_features:
    raise UserError(f"the model takes {num_features} features, not a square "
                    "image; pass feature rows in a .npy file")
  rows = []
  for path in paths:
    path = Path(path)
    if not path.is_file():
      raise UserError(f"--images: {path}: no such file")
    rows.append(_from_npy(path, side) if path.suffix == ".npy"
                else _from_image(path, side))
  return np.concatenate(rows)


def _from_image(path: Path, side: int) -> np.ndarray:
  from PIL import Image, UnidentifiedImageError  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(path) as image:
      gray = image.convert("L").resize((side, side), Image.Resampling.BILINEAR)
      return np.asarray(gray, np.uint8).reshape(1, side * side)
  except (UnidentifiedImageError, OSError) as e:
    raise UserError(f"--images: {path} is not a readable image ({e})") from e


def _from_npy(path: Path, side: int) -> np.ndarray:
  try:
    array = np.load(path, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise UserError(f"--images: {path} is not a readable .npy file ({e})") from e
  if array.ndim == 2 and array.shape == (side, side):
    array = array[None]
  if array.ndim == 3 and array.shape[1:] == (side, side):
    array = array.reshape(len(array), side * side)
  if array.ndim != 2 or array.shape[1] != side * side:
    raise UserError(f"--images: {path} has shape {array.shape}; expected "
                    f"({side}, {side}), (N, {side}, {side}) or (N, {side * side})")
  if np.issubdtype(array.dtype, np.floating):
    if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
      raise UserError(f"--images: {path} holds floats outside [0, 1]; give "
                      "pixels as uint8 0-255 or floats in [0, 1]")
    array = np.round(array * 255)
  elif not (np.issubdtype(array.dtype, np.integer) and array.min() >= 0
            and array.max() <= 255):
    raise UserError(f"--images: {path} holds {array.dtype} values outside 0-255")
  return array.astype(np.uint8)
