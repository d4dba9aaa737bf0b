"""Solvers: every way a stack of configurations is trained, behind one face
(base.Solver), and REGISTRY, --optimizer's names for them.

  minibatch.py  sgd, momentum, adam: an epoch of minibatches per round
  lbfgs.py      batched full-batch L-BFGS to a gradient-norm tolerance, and
                OWL-QN, its orthant-wise form for L1 and elastic-net penalties
  ridge.py      ridge regression on the one-hot code in closed form (exact)
  objective.py  the stack's losses and the full-batch penalized objective
  optimizers.py the optax transformations of the minibatch family

A new solver is a module here with its class, its entry below, and its
test file; the loop (train.py), the flags' refusals (cli.py), the reports
and the sweeps learn of it from its class attributes (base.Solver).
"""

from __future__ import annotations

import dataclasses

from softmax_jax.config import Config
from softmax_jax.solvers import lbfgs
from softmax_jax.solvers import minibatch
from softmax_jax.solvers import optimizers
from softmax_jax.solvers import ridge
from softmax_jax.solvers.base import Solver

REGISTRY: dict[str, type[Solver]] = {
    **dict.fromkeys(optimizers.OPTIMIZERS, minibatch.Minibatch),
    "lbfgs": lbfgs.LBFGS,
    "owlqn": lbfgs.OWLQN,
    "exact": ridge.ClosedForm,
}
# Every solver's solution keys, in a fixed order (results.csv's columns):
# OWL-QN's (L-BFGS's, then the sparsity's), then the others'.
_IN_ORDER: list[type[Solver]] = [lbfgs.OWLQN, *REGISTRY.values()]
SOLUTION_KEYS = tuple(dict.fromkeys(
    k for solver in _IN_ORDER for k in solver.SOLUTION_KEYS))


def get(optimizer: str) -> type[Solver]:
  """The solver of an --optimizer name (Config.validate refused others)."""
  return REGISTRY[optimizer]


def full_batch(optimizer: str) -> bool:
  return REGISTRY[optimizer].FULL_BATCH


def reads(optimizer: str, field: str) -> bool:
  """Whether --optimizer's solver reads the Config field."""
  return field not in REGISTRY[optimizer].UNREAD


def trained_as(config: Config) -> Config:
  """What a configuration trains: the fields its solver does not read take
  their defaults (two configurations that differ only there, e.g. an L-BFGS
  solution under two seeds, are one run)."""
  unread = REGISTRY[config.optimizer].UNREAD
  default = Config()
  return dataclasses.replace(config,
                             **{f: getattr(default, f) for f in unread})
