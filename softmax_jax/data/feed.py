"""How an epoch's minibatches reach the compiled step: resident or streamed.

Resident (the default wherever the training set fits): the training set is
put on the device once, and each step gathers its minibatch by index inside
the compiled program. On a CPU the device array is the host array itself (no
copy). Streamed, when the training features exceed the device's memory
budget (`--device_memory_gb`, default the accelerator's own memory): the
host gathers the minibatches of a chunk of steps and puts them on the device
while the device still trains on the chunks before (one chunk ahead), so the
compiled step stays fed and the device holds two or three chunks, never the
set. The resident set goes to the compiled epoch function with the epoch's
indices into it, a streamed chunk as its minibatches themselves: the same
minibatches in the same order, hence the same results for the same seed.

In a multi-host run whose minibatches are split across hosts, each host
holds only its share of the training examples (a `Shard`) and gathers, chunk
by chunk, its part of every minibatch; the device arrays are assembled from
every host's part (jax.make_array_from_process_local_data).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
import dataclasses

import jax
from jax.sharding import NamedSharding
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


@dataclasses.dataclass(frozen=True)
class Shard:
  """This process's share of the training examples in a multi-host run that
  splits each minibatch across hosts: the rows [index * size, (index + 1) *
  size) of the training split, the `index`-th of `count`."""
  index: int
  count: int
  size: int


class Feed:
  """The training split as the compiled epoch function takes it.

  `chunks(batches)` turns an epoch's minibatches (example indices [S, B] or
  [S, M, B], see minibatch.epoch_order) into (x, y, indices) triples on the
  device: for a resident set, the whole set with the epoch's indices into
  it; else, for each chunk of steps, its minibatches themselves (x [steps,
  B, ...] or [steps, M, B, ...], y alike) with indices None, gathered on the
  host. A `shard` holds only this process's share (x_NxD, y_N are it): each
  process gathers its part of every minibatch, and the device arrays are
  assembled from all processes' parts. y_N: the labels [N], or a tuple of
  [N] arrays (the labels with the rows' weights and folds:
  objective.rows_of), each gathered alike.
  """

  def __init__(self, x_NxD: np.ndarray, y_N,
               put: Callable[[np.ndarray], jax.Array], *,
               budget: int | None, examples_per_step: int,
               batches: NamedSharding | None = None,
               shard: Shard | None = None):
    self.x, self.y, self.put, self.shard = x_NxD, y_N, put, shard
    self.batch_sharding = batches  # of the chunks' x and y (else put's)
    row_bytes = x_NxD.dtype.itemsize * int(np.prod(x_NxD.shape[1:]))
    self.streamed = streams(x_NxD, budget)
    self.steps_per_chunk: int | None
    if self.streamed or shard:
      chunk_bytes = min(CHUNK_BYTES, budget // 8) if budget else CHUNK_BYTES
      self.steps_per_chunk = max(
          1, chunk_bytes // (row_bytes * examples_per_step))
    else:
      self.steps_per_chunk = None
      self.x_dev, self.y_dev = put(x_NxD), jax.tree.map(put, y_N)

  def chunk_lengths(self, num_steps: int) -> list[int]:
    """The distinct numbers of steps the epoch function is called with."""
    if self.steps_per_chunk is None:
      return [num_steps]
    lengths = {min(self.steps_per_chunk, num_steps)}
    if num_steps % self.steps_per_chunk:
      lengths.add(num_steps % self.steps_per_chunk)
    return sorted(lengths, reverse=True)

  def shapes(self, batches_shape: tuple[int, ...]):
    """(x, y, indices) as ShapeDtypeStructs for minibatches of batches_shape
    (for compiling ahead of the first epoch)."""
    if self.steps_per_chunk is None:
      return (self.x_dev, self.y_dev,
              jax.ShapeDtypeStruct(batches_shape, np.int32,
                                   sharding=self.x_dev.sharding))
    sharding = self.batch_sharding or self.put(np.zeros(1, np.int32)).sharding
    return (jax.ShapeDtypeStruct((*batches_shape, *self.x.shape[1:]),
                                 self.x.dtype, sharding=sharding),
            jax.tree.map(lambda y: jax.ShapeDtypeStruct(
                batches_shape, y.dtype, sharding=sharding), self.y), None)

  def chunks(self, batches: np.ndarray) -> Iterator[tuple]:
    if self.steps_per_chunk is None:
      yield self.x_dev, self.y_dev, self.put(batches)
      return
    starts = range(0, len(batches), self.steps_per_chunk)
    ahead = self._gather(batches[:self.steps_per_chunk])
    for start in starts:
      current = ahead
      yield current  # the caller dispatches its steps, which run while ...
      following = batches[start + self.steps_per_chunk:
                          start + 2 * self.steps_per_chunk]
      if len(following):  # ... the host gathers and puts the next chunk
        ahead = self._gather(following)

  def _gather(self, batches: np.ndarray) -> tuple:
    """The minibatches of `batches` (global example indices) on the device;
    with a shard, this process gathers only its own columns of them."""
    rows = batches
    if self.shard:  # its part of each minibatch, as rows of its share
      part = batches.shape[-1] // self.shard.count
      rows = batches[..., self.shard.index * part:
                     (self.shard.index + 1) * part] - (
                         self.shard.index * self.shard.size)
    x = self.x[rows.reshape(-1)].reshape(*rows.shape, *self.x.shape[1:])
    y = jax.tree.map(lambda a: self._place(
        a[rows.reshape(-1)].reshape(rows.shape), batches.shape), self.y)
    return self._place(x, batches.shape), y, None

  def _place(self, part: np.ndarray, batches_shape) -> jax.Array:
    if self.batch_sharding is None:
      return self.put(part)
    shape = (*batches_shape, *part.shape[len(batches_shape):])
    if self.shard:
      return jax.make_array_from_process_local_data(self.batch_sharding, part,
                                                    shape)
    return jax.make_array_from_callback(shape, self.batch_sharding,
                                        lambda index: part[index])
