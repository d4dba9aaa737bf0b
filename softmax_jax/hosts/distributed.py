"""Devices and hosts: how a group of configurations is laid out on the devices.

The devices form a 2-D mesh, configurations x data: a sweep's configurations
are split over its rows (padded to a multiple of them) and each minibatch over
its columns (data parallel). A sweep on as many devices as configurations
splits configurations only, a single run minibatches only. Across hosts,
`initialize` must run before any other JAX call; then `jax.devices()` lists
every host's devices and the same code runs on all, agreeing where each
process could decide otherwise (a stop request, a checkpoint due).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from pathlib import Path

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

from softmax_jax.errors import UserError

CONFIGS, DATA = "configs", "data"  # the axes of the device mesh
# How long a process waits for the others at a meeting point (see _meet): a
# slower host may be validating a large data set or writing the report. A
# lost one is noticed sooner, by its heartbeats (--heartbeat_timeout).
WAIT_FOR_PEERS_S = 7 * 24 * 3600
_meetings = itertools.count()  # every process meets the others in one order


def initialize(coordinator_address: str, num_processes: int | None,
               process_id: int | None, *, coordinator_timeout: int,
               heartbeat_timeout: int) -> None:
  """Joins a multi-host run; CPU hosts exchange collectives through gloo.

  coordinator_address "auto": on Cloud TPU pod slices and SLURM or Open MPI
  clusters JAX finds the coordinator, process count and index itself. Gives
  up after coordinator_timeout seconds; a process whose heartbeats stop for
  heartbeat_timeout seconds is taken for lost, and the runtime ends the
  others (see supervisor.py).
  """
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(coordinator_address=(
        None if coordinator_address == "auto" else coordinator_address),
                               num_processes=num_processes,
                               process_id=process_id,
                               initialization_timeout=coordinator_timeout,
                               heartbeat_timeout_seconds=heartbeat_timeout)
  except (RuntimeError, ValueError) as e:
    first_line = (str(e).strip().splitlines()[0] if str(e).strip()
                  else type(e).__name__)
    raise UserError(
        f"cannot join the multi-host run at --coordinator_address="
        f"{coordinator_address}: {first_line}; check that every process got "
        "the same address and --num_processes, and a distinct --process_id"
    ) from e


def is_main_process() -> bool:
  return jax.process_index() == 0


def _meet(what: str) -> None:
  """Waits, as long as it takes, until every process has come here, at the
  coordination service's barrier: before a collective between hosts, whose
  first rendezvous gloo gives only 30 s."""
  from jax._src import distributed as jax_distributed  # pylint: disable=g-import-not-at-top
  client = jax_distributed.global_state.client
  if client is not None:
    client.wait_at_barrier(f"softmax_jax {next(_meetings)}: {what}",
                           timeout_in_ms=WAIT_FOR_PEERS_S * 1000)


def agree(flag: bool) -> bool:
  """Process 0's value of flag, on every process (the others' is ignored)."""
  return bool(from_process_0(int(flag)))


def from_process_0(value: int) -> int:
  """Process 0's value, on every process (the others' is ignored)."""
  if jax.process_count() == 1:
    return value
  return int(_allgather(np.int32(value))[0])


def everywhere(flag: bool) -> bool:
  """Whether flag holds on every process."""
  if jax.process_count() == 1:
    return flag
  return bool(_allgather(np.int32(flag)).all())


def common_decision(stop: bool, save: bool) -> tuple[bool, bool]:
  """After an epoch, what every process does alike: stop if any process was
  asked to (a signal reaches one host), save a checkpoint if process 0's
  clock says it is due (orbax saves are collective)."""
  if jax.process_count() == 1:
    return stop, save
  flags_Px2 = _allgather(np.array([stop, save], np.int32))
  return bool(flags_Px2[:, 0].any()), bool(flags_Px2[0, 1])


def sync(name: str) -> None:
  """Waits until every process has come here."""
  if jax.process_count() > 1:
    _meet(name)


def _allgather(value: np.ndarray | np.generic) -> np.ndarray:
  """Every process's value, stacked in process order."""
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  _meet("allgather")
  return np.asarray(multihost_utils.process_allgather(value))


def check_shared(workdir: Path) -> None:
  """Refuses a workdir that some process cannot see as process 0 wrote it:
  checkpoints and outputs need one folder that every host reaches."""
  if jax.process_count() == 1:
    return
  path = Path(workdir) / ".shared-check"
  token = int(np.random.default_rng().integers(1, 2**31 - 1))
  if is_main_process():
    path.write_text(str(token))
  sync("shared check written")
  token = from_process_0(token)
  try:
    seen = int(path.read_text()) == token
  except (OSError, ValueError):
    seen = False
  blind = np.flatnonzero(_allgather(np.int32(seen)) == 0)
  if len(blind):
    raise UserError(
        f"--workdir={workdir} is not one folder that every host reaches: "
        f"process {', '.join(map(str, blind))} cannot read there what process "
        "0 wrote; a multi-host run needs the same folder on every host, e.g. "
        "on a shared file system")


@contextlib.contextmanager
def decided_by_process_0():
  """Runs a block that only process 0 may fail (e.g. claiming the workdir);
  if it fails there, the other processes stop too instead of waiting forever
  for it in the first collective."""
  failed = False
  try:
    yield
  except BaseException:
    failed = True
    raise
  finally:
    if agree(failed) and not failed:
      raise UserError("process 0 stopped (see its message); stopping too")


@dataclasses.dataclass(frozen=True)
class Layout:
  """A 2-D mesh of the devices: configurations x data. A group's stack of
  configurations is split over the rows (padded to a multiple of them), and
  each minibatch over the columns (data parallel)."""
  mesh: Mesh  # axes (CONFIGS, DATA)

  @property
  def rows(self) -> int:
    return self.mesh.shape[CONFIGS]

  @property
  def columns(self) -> int:
    return self.mesh.shape[DATA]

  def padded(self, num_configs: int) -> int:
    """The configuration count rounded up to a multiple of the rows."""
    return -(-num_configs // self.rows) * self.rows

  @property
  def configs(self) -> NamedSharding:
    """Sharding of arrays whose leading axis is the configuration."""
    return NamedSharding(self.mesh, P(CONFIGS))

  @property
  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, P())

  def batch(self, per_config: bool) -> NamedSharding | None:
    """Sharding of a minibatch's features, [B, D] (or [M, B, D] with one
    seed per configuration), when the columns split it; else None."""
    if self.columns == 1:
      return None
    return NamedSharding(self.mesh, P(CONFIGS, DATA) if per_config
                         else P(DATA))

  def minibatches(self, per_config: bool) -> NamedSharding:
    """Sharding of a chunk of minibatches gathered on the host: x [steps, B,
    ...] and y [steps, B] (or [steps, M, B, ...] with a seed per
    configuration)."""
    return NamedSharding(self.mesh, P(None, CONFIGS, DATA) if per_config
                         else P(None, DATA))

  def data_shard(self) -> tuple[int, int]:
    """(index, count): which of `count` equal parts of every minibatch this
    process's devices take, where the data columns span processes (each
    process holding a block of whole columns); else (0, 1)."""
    columns_of: dict[int, set[int]] = {}
    for (_, column), device in np.ndenumerate(self.mesh.devices):
      columns_of.setdefault(device.process_index, set()).add(column)
    widths = {len(c) for c in columns_of.values()}
    width = widths.pop()
    if widths or width == self.columns or not all(
        min(c) % width == 0 and max(c) - min(c) == width - 1
        for c in columns_of.values()):
      return 0, 1
    return min(columns_of[jax.process_index()]) // width, self.columns // width

  def unpadded(self, tree, num_configs: int):
    """The first num_configs entries of each leaf, replicated: a copy that
    fits any layout (checkpoints hold these)."""
    return jax.tree.map(
        lambda a: jax.device_put(a[:num_configs], self.replicated), tree)

  def unpadded_like(self, tree, num_configs: int):
    """The shapes, dtypes and shardings of unpadded(tree, num_configs)."""
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(
        (num_configs, *a.shape[1:]), a.dtype, sharding=self.replicated), tree)

  def padded_tree(self, tree):
    """Leaves of the unpadded configurations, padded with copies of the last
    to a multiple of the rows and laid out as `configs`."""
    def pad(a):
      extra = self.padded(len(a)) - len(a)
      if extra:
        a = jnp.concatenate([a, jnp.repeat(a[-1:], extra, axis=0)])
      return jax.device_put(a, self.configs)
    return jax.tree.map(pad, tree)


def parse_mesh(text: str) -> tuple[int, int] | None:
  """--mesh: (rows, columns) from "CONFIGSxDATA", None for "auto"."""
  if text == "auto":
    return None
  parts = text.lower().split("x")
  if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
    raise UserError(f"--mesh={text} is not CONFIGSxDATA with two positive "
                    "whole numbers, e.g. --mesh=4x2 (or auto)")
  return int(parts[0]), int(parts[1])


def make_layout(num_configs: int, batch_size: int,
                mesh: tuple[int, int] | None = None) -> Layout:
  """The mesh given as (rows, columns), or chosen: configurations are split
  first (their devices never communicate), over the most rows that the
  configurations fill, and each minibatch over the devices left (its
  gradients are summed across them every step)."""
  devices = jax.devices()
  n = len(devices)
  if mesh is None:
    fits = [r for r in range(1, n + 1) if n % r == 0
            and r <= num_configs and batch_size % (n // r) == 0]
    rows = max(fits) if fits else n
    mesh = (rows, n // rows)
  rows, columns = mesh
  if rows * columns != n:
    raise UserError(f"--mesh={rows}x{columns} needs {rows * columns} "
                    f"devices; this run has {n}: give ROWSxCOLUMNS with "
                    f"ROWS x COLUMNS = {n}, or --mesh=auto")
  if batch_size % columns:
    raise UserError(f"--mesh={rows}x{columns} splits each minibatch over "
                    f"{columns} devices, and --batch_size={batch_size} is not "
                    f"a multiple of {columns}")
  return Layout(Mesh(np.array(devices).reshape(rows, columns),
                     (CONFIGS, DATA)))


def put(array: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """A global array from a host array that every process holds in full."""
  array = np.asarray(array)
  return jax.make_array_from_callback(array.shape, sharding,
                                      lambda index: array[index])


def describe() -> str:
  n, hosts = jax.device_count(), jax.process_count()
  where = f" on {hosts} hosts" if hosts > 1 else ""
  return f"{n} {jax.default_backend()} device{'s' if n > 1 else ''}{where}"
