"""Checkpoints of a group's train state with orbax, written after an epoch.

A checkpoint is written after the first epoch that ends at least
`every_seconds` after the previous one (or after training began), after the
last epoch, and before a requested stop. The default, EVERY_SECONDS, keeps a
kill from losing more than about that much training, while short runs write
one checkpoint at the end: on two CPU cores a background write competes with
training and slowed a 25 ms epoch to 40 ms. `every_seconds=0` checkpoints
every epoch.

Each checkpoint holds the stacked params and optimizer states, and as JSON the
epoch, each configuration's history and status. The shuffling needs no saved
RNG: an epoch's minibatches come from (seed, epoch). Orbax writes a checkpoint
into a temporary folder and renames it when complete, so a kill at any moment
leaves the previous checkpoints intact; a checkpoint that cannot be read is
skipped in favour of the one before it (and moved aside, never deleted).
Checkpoints hold the configurations without the padding that spreads them
over the devices, so they restore on any number of devices. In a multi-host
run every process saves and restores together (orbax's multi-host
checkpoints, in one folder all hosts reach); they resume from the newest
checkpoint that every one of them can read.
"""

from __future__ import annotations

import logging
from pathlib import Path
import shutil
import time

from softmax_jax.errors import os_error_advice
from softmax_jax.errors import UserError
from softmax_jax.hosts import distributed

KEEP = 2  # the newest checkpoints kept; the older ones are deleted
EVERY_SECONDS = 10.0  # the least time between two checkpoints of a run
_clock = time.monotonic  # what the spacing is measured with (tests replace it)
_log = logging.getLogger("softmax_jax")


class Checkpointer:
  """Saves and restores one group's train state under `directory`."""

  def __init__(self, directory: str | Path,
               every_seconds: float = EVERY_SECONDS):
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    self._ocp = ocp
    self.directory = Path(directory).absolute()
    self.every_seconds = every_seconds
    self._last_save = _clock()
    self.unreadable: list[int] = []
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=KEEP, create=True,
                                             enable_async_checkpointing=True))

  def due(self) -> bool:
    """Whether every_seconds have passed since the last save (or the start)."""
    return _clock() - self._last_save >= self.every_seconds

  def save(self, epoch: int, state, meta: dict) -> None:
    """Starts writing the checkpoint of `epoch` in the background."""
    ocp = self._ocp
    self._last_save = _clock()
    try:
      saved = self._manager.save(epoch, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
    except (OSError, ValueError) as e:
      raise UserError(f"cannot write a checkpoint to {self.directory}: "
                      f"{os_error_advice(e)}") from e
    if not saved:  # orbax skips steps at or below its newest one
      raise RuntimeError(f"orbax did not save the checkpoint of epoch {epoch} "
                         f"in {self.directory}")

  def restore_latest(self, abstract_state):
    """(epoch, state, meta) of the newest readable checkpoint, or None if
    there is none at all.

    `abstract_state` gives the structure, shapes, dtypes and shardings to
    restore into (any layout of the devices: orbax reshards). Checkpoints
    that cannot be restored are skipped with a note saying why, and listed in
    `self.unreadable`; if none can be, UserError says why and keeps them.
    """
    ocp = self._ocp
    self.unreadable = []
    reasons = []
    for epoch in sorted(self._manager.all_steps(), reverse=True):
      try:
        restored = self._manager.restore(epoch, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            meta=ocp.args.JsonRestore()))
        failure = None
      except Exception as e:  # pylint: disable=broad-exception-caught
        # Any failure to read makes this checkpoint unusable; an older one may
        # still be fine, and training on from it gives the same result.
        failure = _first_line(e)
      # Several hosts resume together, from one that every host could read.
      if not distributed.everywhere(failure is None):
        self.unreadable.append(epoch)
        reasons.append(f"epoch {epoch}: {failure or 'unreadable on a peer'}")
        continue
      if self.unreadable:
        _log.warning("cannot restore the checkpoint of %s; going on from "
                     "epoch %d (the unreadable one is kept in %s)",
                     "; ".join(reasons), epoch, self.set_aside_directory)
      return epoch, restored["state"], restored["meta"]
    if self.unreadable:
      raise UserError(
          f"no readable checkpoint in {self.directory}: cannot restore "
          f"{'; '.join(reasons)}. The checkpoints are kept; pass --overwrite "
          "to train anew (deleting them)")
    return None

  @property
  def set_aside_directory(self) -> Path:
    return self.directory.with_name(self.directory.name + ".unreadable")

  def set_aside_unreadable(self) -> None:
    """Moves the checkpoints restore_latest could not read out of the way
    (into set_aside_directory, not deleted), so that the epochs they held can
    be checkpointed again."""
    for epoch in self.unreadable if distributed.is_main_process() else ():
      target = self.set_aside_directory / str(epoch)
      suffix = 1
      while target.exists():
        suffix += 1
        target = self.set_aside_directory / f"{epoch}.{suffix}"
      target.parent.mkdir(parents=True, exist_ok=True)
      shutil.move(self.directory / str(epoch), target)
    if self.unreadable:
      distributed.sync("unreadable checkpoints set aside")
      self._manager.reload()
    self.unreadable = []

  def close(self) -> None:
    """Waits for the writes in flight, so that the last checkpoint is
    complete."""
    try:
      self._manager.wait_until_finished()
      self._manager.close()
    except OSError as e:  # e.g. the disk filled up during a background write
      raise UserError(f"cannot write a checkpoint to {self.directory}: "
                      f"{os_error_advice(e)}") from e


def _first_line(error: Exception, limit: int = 200) -> str:
  text = str(error).strip()
  line = text.splitlines()[0] if text else type(error).__name__
  return line if len(line) <= limit else line[:limit] + "..."
