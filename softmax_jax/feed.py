"""How an epoch's minibatches reach the compiled step: resident or streamed.

Resident (the default wherever the training set fits): the training set is
put on the device once, and each step gathers its minibatch by index inside
the compiled program. On a CPU the device array is the host array itself (no
copy). Streamed, when the training features exceed the device's memory
budget (`--device_memory_gb`, default the accelerator's own memory): the
host gathers the minibatches of a chunk of steps and puts them on the device
while the device still trains on the chunks before (one chunk ahead), so the
compiled step stays fed and the device holds two or three chunks, never the
set. Both feed the same compiled epoch function, the resident set with the
epoch's indices or each chunk with indices into itself: the same minibatches
in the same order, hence the same results for the same seed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import jax
import numpy as np

# Streamed when the training features exceed this share of the budget: the
# rest holds the evaluation splits, parameters, optimizer state and logits.
RESIDENT_SHARE = 0.5
# Bytes of features per streamed chunk at most (and an eighth of the budget).
CHUNK_BYTES = 256 * 2**20


def device_memory(device: jax.Device) -> int | None:
  """The accelerator's memory in bytes; None on a CPU, which trains on the
  host's memory without a copy."""
  if device.platform == "cpu":
    return None
  stats = device.memory_stats() or {}
  return stats.get("bytes_limit")


def budget_bytes(device_memory_gb: float) -> int | None:
  """--device_memory_gb in bytes (0: the device's own memory; None: none)."""
  if device_memory_gb:
    return int(device_memory_gb * 2**30)
  return device_memory(jax.devices()[0])


def streams(x_NxD: np.ndarray, budget: int | None) -> bool:
  """Whether training features x_NxD are streamed under the budget."""
  return budget is not None and x_NxD.nbytes > RESIDENT_SHARE * budget


class Feed:
  """The training split as the compiled epoch function takes it.

  `chunks(batches)` turns an epoch's minibatches (example indices [S, B] or
  [S, M, B], see train.epoch_order) into (x, y, indices into x) triples on
  the device: one for a resident set, one per chunk of steps when streamed.
  """

  def __init__(self, x_NxD: np.ndarray, y_N: np.ndarray,
               put: Callable[[np.ndarray], jax.Array], *,
               budget: int | None, examples_per_step: int):
    self.x, self.y, self.put = x_NxD, y_N, put
    row_bytes = x_NxD.dtype.itemsize * int(np.prod(x_NxD.shape[1:]))
    self.streamed = streams(x_NxD, budget)
    self.steps_per_chunk: int | None
    if self.streamed:
      assert budget is not None  # streams() is true only with a budget
      chunk_bytes = min(CHUNK_BYTES, budget // 8)
      self.steps_per_chunk = max(
          1, chunk_bytes // (row_bytes * examples_per_step))
    else:
      self.steps_per_chunk = None
      self.x_dev, self.y_dev = put(x_NxD), put(y_N)

  def chunk_lengths(self, num_steps: int) -> list[int]:
    """The distinct numbers of steps the epoch function is called with."""
    if not self.streamed:
      return [num_steps]
    assert self.steps_per_chunk is not None  # set when streamed
    lengths = {min(self.steps_per_chunk, num_steps)}
    if num_steps % self.steps_per_chunk:
      lengths.add(num_steps % self.steps_per_chunk)
    return sorted(lengths, reverse=True)

  def shapes(self, batches_shape: tuple[int, ...]):
    """(x, y, indices) as ShapeDtypeStructs for minibatches of batches_shape
    (for compiling ahead of the first epoch)."""
    if not self.streamed:
      return (self.x_dev, self.y_dev,
              jax.ShapeDtypeStruct(batches_shape, np.int32,
                                   sharding=self.x_dev.sharding))
    sharding = self.put(np.zeros(1, np.int32)).sharding
    n = int(np.prod(batches_shape))
    return (jax.ShapeDtypeStruct((n, *self.x.shape[1:]), self.x.dtype,
                                 sharding=sharding),
            jax.ShapeDtypeStruct((n,), self.y.dtype, sharding=sharding),
            jax.ShapeDtypeStruct(batches_shape, np.int32, sharding=sharding))

  def chunks(self, batches: np.ndarray) -> Iterator[tuple[jax.Array, ...]]:
    if not self.streamed:
      yield self.x_dev, self.y_dev, self.put(batches)
      return
    assert self.steps_per_chunk is not None  # set when streamed
    starts = range(0, len(batches), self.steps_per_chunk)
    ahead = self._gather(batches[:self.steps_per_chunk])
    for start in starts:
      current = ahead
      yield current  # the caller dispatches its steps, which run while ...
      following = batches[start + self.steps_per_chunk:
                          start + 2 * self.steps_per_chunk]
      if len(following):  # ... the host gathers and puts the next chunk
        ahead = self._gather(following)

  def _gather(self, batches: np.ndarray) -> tuple[jax.Array, ...]:
    rows = batches.reshape(-1)
    local = np.arange(rows.size, dtype=np.int32).reshape(batches.shape)
    return self.put(self.x[rows]), self.put(self.y[rows]), self.put(local)
