"""Curves for TensorBoard: event files in the workdir, a folder per
configuration.

  tensorboard --logdir RUN_WORKDIR/tensorboard
"""

from __future__ import annotations

from pathlib import Path
import sys
from typing import Any


class Writer:
  """Writes each epoch record's numbers as scalars; a no-op without a folder."""

  def __init__(self, directory: str | Path | None):
    self._directory = Path(directory) if directory else None
    self._writers: dict[int, Any] = {}  # tensorboardX's SummaryWriter

  def epoch(self, config_id: int, record: dict) -> None:
    if self._directory is None:
      return
    writer = self._writers.get(config_id)
    if writer is None:
      summary_writer = _summary_writer()
      if summary_writer is None:  # the run goes on without the curves
        print("note: tensorboardX is not installed, so this run writes no "
              "TensorBoard curves (pip install tensorboardX)",
              file=sys.stderr)
        self._directory = None
        return
      writer = summary_writer(str(self._directory / f"config_{config_id}"))
      self._writers[config_id] = writer
    for name, value in record.items():
      if name != "epoch" and isinstance(value, (int, float)):
        writer.add_scalar(name, value, record["epoch"])

  def close(self) -> None:
    for writer in self._writers.values():
      writer.close()


def _summary_writer():
  """tensorboardX's SummaryWriter, imported without PyTorch; None where
  tensorboardX is not installed (a machine with only what training needs).

  tensorboardX imports PyTorch, when installed, only to accept torch tensors
  (about a second); we log Python floats, so we hide torch from that import.
  """
  hidden = "torch" not in sys.modules
  if hidden:
    sys.modules["torch"] = None  # makes `import torch` fail fast
  try:
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  finally:
    if hidden:
      del sys.modules["torch"]
  return SummaryWriter
