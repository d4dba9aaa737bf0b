"""What the training loop needs from a solver (the Solver protocol), and the
Stack of configurations that a solver advances.

A group of configurations that differ only in values (lr, weight decay,
seed, Huber delta, init scale, the loss) trains as one Stack: ordered by
loss (each loss one block, so it is computed only on its own slice),
padded with copies of the last configuration to a multiple of the devices,
its hyperparameters traced arrays [M] rather than compiled-in constants. A
solver advances the whole stack by one round at a time (an epoch of
minibatches, or a chunk of full-batch iterations, or the whole closed-form
solution at once); the loop (train.py) does the rest: evaluation, records,
divergence, checkpoints, stop requests.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar, Protocol

import jax
import numpy as np

from softmax_jax import config as config_lib
from softmax_jax import model
from softmax_jax.config import Config
from softmax_jax.data import datasets as data_lib
from softmax_jax.errors import UserError
from softmax_jax.hosts import distributed

State = dict  # a solver's state of the whole stack (arrays [M, ...])
Record = dict  # a round's measurements, each an array [M]
# In the first round's record of a solver that starts from random params:
# the loss at initialization (the explosion rule measures from it).
START_LOSS = "start_loss"


def config_values(configs: list[Config]) -> dict[str, np.ndarray]:
  """Each configuration's numeric value fields (config.VALUE), [M] arrays
  traced rather than compiled in (the loss is the stack's order instead),
  and l1_share, the L1 share of its penalty (Config.l1_share)."""
  types = {f.name: f.type for f in dataclasses.fields(Config)}
  values = {f: np.array([getattr(c, f) for c in configs],
                        np.int32 if types[f] == "int" else np.float32)
            for f in config_lib.fields_of(config_lib.VALUE)
            if types[f] in ("int", "float")}
  values["l1_share"] = np.array([c.l1_share for c in configs], np.float32)
  return values


@dataclasses.dataclass
class Stack:
  """A group's configurations as one compiled program holds them."""
  configs: list[Config]  # in the caller's order
  layout: distributed.Layout
  stacked: list[Config]  # ordered by loss, then padded (see Stack.of)
  place: list[int]  # configs[j] sits at stacked[place[j]]
  values: dict[str, Any]  # config_values(stacked), on the devices

  @classmethod
  def of(cls, configs: list[Config], mesh: tuple[int, int] | None) -> Stack:
    layout = distributed.make_layout(len(configs), configs[0].batch_size, mesh)
    order = sorted(range(len(configs)), key=lambda i: configs[i].loss)
    stacked = [configs[i] for i in order]
    stacked += [stacked[-1]] * (layout.padded(len(configs)) - len(configs))
    values = jax.tree.map(lambda v: distributed.put(v, layout.configs),
                          config_values(stacked))
    return cls(configs=list(configs), layout=layout, stacked=stacked,
               place=[order.index(j) for j in range(len(configs))],
               values=values)

  @property
  def first(self) -> Config:
    """The static fields (batch size, optimizer, ...) of the whole stack."""
    return self.stacked[0]

  def replicate(self, a):
    """a on every device (the data a stack shares)."""
    return distributed.put(a, self.layout.replicated)

  def stack(self, per_config: list[model.Params]) -> model.Params:
    """Each configuration's params (in the caller's order) as the stack
    holds them: in its order, padded, laid out over the configurations."""
    ordered = [per_config[j] for j in sorted(range(len(self.configs)),
                                             key=lambda j: self.place[j])]
    return self.layout.padded_tree(jax.tree.map(
        lambda *leaves: np.stack([np.asarray(a, np.float32) for a in leaves]),
        *ordered))

  def unstack(self, params) -> list[model.Params]:
    """Each configuration's params (NumPy), in the caller's order."""
    params = jax.device_get(_gathered(self.layout.replicated)(params))
    return [jax.tree.map(lambda p, s=s: np.asarray(p[s]), params)
            for s in self.place]


@functools.lru_cache(maxsize=16)
def _gathered(sharding):
  """The identity, compiled to put its result whole on every device (on
  several hosts, a gather no device_put can do): one program a sharding
  and shape, not one a fit."""
  return jax.jit(lambda p: p, out_shardings=sharding)


# What a solver of the full-batch objective from W = 0 does not read.
FULL_BATCH_UNREAD = ("lr", "batch_size", "epochs", "schedule", "compute_dtype",
                     "seed", "init_scale", "track_objective")


def check_linear(config: Config) -> None:
  """Refuses a model other than the linear one, for a solver of the convex
  objective."""
  if config.hidden or config.phm_n:
    raise UserError(f"--optimizer={config.optimizer} solves the convex "
                    "linear model (from W = 0, a saddle point of --hidden "
                    "and --phm_n models); drop them or use sgd, momentum "
                    "or adam")


class Solver(Protocol):
  """One family of solvers (e.g. the minibatch optimizers, or L-BFGS): how
  the loop trains a Stack with it, and what the rest of the codebase knows
  of it (the registry in solvers/__init__.py maps --optimizer names to
  solvers)."""

  # Solves the full-batch objective (objective.py) from W = 0 (or from the
  # params of a warm start): no minibatches, no seed, one host never holds
  # a share of the examples.
  FULL_BATCH: ClassVar[bool]
  # The Config fields it does not read (a flag for them alone is refused,
  # and configurations that differ only there are one run).
  UNREAD: ClassVar[tuple[str, ...]]
  # What its records report of the solution beside the loss (summary.json
  # and results.csv take them).
  SOLUTION_KEYS: ClassVar[tuple[str, ...]]
  num_rounds: int  # of the whole stack

  def __init__(self, stack: Stack, dataset: data_lib.Dataset,
               shard_data: bool) -> None: ...

  @staticmethod
  def rounds(config: Config, /) -> int:
    """The rounds a configuration takes at most."""

  @staticmethod
  def check(config: Config, /) -> None:
    """Raises UserError for a configuration it cannot solve."""

  def init_states(self, params: model.Params | None = None, /) -> State:
    """The stack's initial state, on the devices; from `params` (stacked
    as Stack.stack gives them) where given, a warm start (the closed form
    has no use for one)."""

  def state_shapes(self) -> State:
    """The shapes and dtypes of init_states's state (jax.ShapeDtypeStruct
    leaves), computed without the training data on the devices: what a
    checkpoint is restored into."""

  def compile(self, states: State, /) -> None:
    """Compiles its rounds (and puts its data on the devices)."""

  def round(self, states: State, r: int, /) -> tuple[State, Record]:
    """Advances every configuration by round r (1, 2, ...)."""

  def params(self, states: State, /) -> model.Params:
    """The stacked model params [M, ...] of a state."""

  def finished(self, record: Record, /) -> bool:
    """Whether every configuration is done before its last round."""
