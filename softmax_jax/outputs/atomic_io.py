"""Whole-file writes that a crash cannot leave half done."""

from __future__ import annotations

from collections.abc import Callable
import os
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
  """Calls write(f) on a temporary file beside path, syncs it, renames it to
  path.

  A reader sees the old file or the complete new one, never a partial write.
  Raises OSError (disk full, no permission) after removing the temporary file.
  """
  tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
  try:
    with open(tmp, "wb") as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise
