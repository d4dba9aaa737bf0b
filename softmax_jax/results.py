"""What training gives back: each configuration's run (its records, its
status, its params) and a sweep's runs, read by the outcome (outcome.py)
and the outputs."""

from __future__ import annotations

import dataclasses

from softmax_jax import model
from softmax_jax.config import Config
from softmax_jax.errors import DivergedError

# A run's status: trained on (OK); its loss turned non-finite (DIVERGED);
# its loss grew far beyond where it started (EXPLODED, train.py's rule).
OK, DIVERGED, EXPLODED = "ok", "diverged", "exploded"


@dataclasses.dataclass
class RunResult:
  config: Config
  history: list[dict]  # one record per finished epoch
  status: str  # OK, DIVERGED or EXPLODED
  params: model.Params  # NumPy arrays


@dataclasses.dataclass
class SweepResult:
  runs: list[RunResult]  # in the order of the configs
  train_seconds: float  # compiled training time of all groups
  compile_seconds: float | None  # None: restored for evaluation, not trained
  num_groups: int


def diverged_error(run: RunResult) -> DivergedError:
  last = run.history[-1]
  return DivergedError(
      f"training diverged in epoch {last['epoch']}: the train loss is "
      f"{last['train_loss']}; try a smaller --lr (now {run.config.lr})")
