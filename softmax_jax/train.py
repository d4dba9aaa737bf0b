"""Training: many configurations in one compiled program, a round per call.

A group is a stack of M configurations that differ only in values (lr, weight
decay, seed, Huber delta, init scale, the loss): their parameters and
solver states are stacked along a leading axis, their hyperparameters are
traced values, and one program trains them all (solvers/base.py's Stack).
Its solver (solvers.REGISTRY, by --optimizer) advances the whole stack a
round at a time: an epoch of minibatches (solvers/minibatch.py), a chunk of
L-BFGS iterations, or the closed form at once. The loop here is the same
for all of them: evaluation, records, divergence and explosion,
checkpoints and stop requests. Each group is traced and compiled once,
before its first round; a single run is a group of one.
"""

from __future__ import annotations

from collections.abc import Callable
import copy
import dataclasses
import functools
import math
from pathlib import Path
import time
from typing import cast

import jax
import numpy as np

from softmax_jax import compilation
from softmax_jax import config as config_lib
from softmax_jax import evaluation
from softmax_jax import losses
from softmax_jax import model
from softmax_jax import outcome
from softmax_jax import solvers
from softmax_jax import sweep
from softmax_jax.compilation import compile_once
from softmax_jax.config import Config
from softmax_jax.data import datasets as data_lib
from softmax_jax.errors import UserError
from softmax_jax.hosts import distributed
from softmax_jax.outputs import checkpoint as checkpoint_lib
from softmax_jax.results import DIVERGED
from softmax_jax.results import diverged_error
from softmax_jax.results import EXPLODED
from softmax_jax.results import OK
from softmax_jax.results import RunResult
from softmax_jax.results import SweepResult
from softmax_jax.solvers import objective
from softmax_jax.solvers.base import Stack
from softmax_jax.solvers.base import START_LOSS

# A configuration has exploded when its mean train loss of an epoch after the
# first (whose mean holds the start's transient), or of its last epoch, is
# over EXPLOSION_FACTOR times where it started: the larger of its loss at
# initialization (the first minibatch's, before any update) and the loss of
# predicting every class alike (ln K for cross-entropy). Finite, so no NaN
# check sees it, yet grown far beyond its start (e.g. --lr=1e9 for 1e-9);
# a loss that starts high (l2 on the logits of 1,000 classes: ~25, where
# predicting alike gives 0.5) and falls slowly is a slow start, not this.
# On Fashion-MNIST, the largest stable learning rates stay under 2x and lr 3
# with SGD under 5x.
EXPLOSION_FACTOR = 10.0


def uniform_loss(config: Config, num_classes: int) -> float:
  """The loss of predicting every class alike (all logits 0): ln K for
  cross-entropy; the same for every label, by symmetry."""
  return _uniform_loss(config.loss, config.loss_input,
                       float(config.huber_delta), num_classes)


@functools.lru_cache(maxsize=256)
def _uniform_loss(loss: str, loss_input: str, huber_delta: float,
                  num_classes: int) -> float:
  """uniform_loss, computed once a process for each loss and K: one
  compiled program, not a dozen eager operations (a notebook's small fit
  paid for each), and not one program a configuration (a cross-
  validation's 3 x 3 configurations compiled 9)."""
  value = losses.LOSSES[loss](  # (jitted where it is defined)
      np.zeros((1, num_classes), np.float32), np.zeros(1, np.int32),
      huber_delta=huber_delta, loss_input=loss_input)
  return float(value[0])


class StopRequested(Exception):
  """Training stopped on request after a checkpoint; rerunning resumes it."""

  def __init__(self, epoch: int):
    super().__init__(f"stopped after epoch {epoch}")
    self.epoch = epoch


def train_configs(configs: list[Config], dataset: data_lib.Dataset,
                  on_epoch: Callable[[int, dict], None] | None = None, *,
                  checkpoint_dir: str | Path | None = None,
                  checkpoint_every: float = checkpoint_lib.EVERY_SECONDS,
                  should_stop: Callable[[], bool] | None = None,
                  restore_only: bool = False,
                  mesh: tuple[int, int] | None = None,
                  shard_data: bool = True,
                  init_params: list[model.Params] | None = None
                  ) -> SweepResult:
  """Trains every config; on_epoch(config index, record) after each epoch.

  The test split is only reported; a configuration whose loss turns
  non-finite is marked diverged and leaves the others undisturbed; one whose
  loss explodes (see EXPLOSION_FACTOR) is marked exploded, the epoch's
  record getting a "warning", and trains on. With a
  checkpoint_dir, each group saves its state after an epoch at most every
  `checkpoint_every` seconds (0: every epoch), and always after its last,
  and resumes from its newest readable checkpoint. should_stop() is asked
  after each epoch and, when true, the state is saved and StopRequested
  raised. restore_only loads the checkpoints without training (for
  evaluation). mesh: (rows, columns) of the devices for every group, else
  chosen for each (distributed.make_layout). shard_data: where minibatches
  are split across hosts, each holds only its share of the training
  examples (else all of them; the same minibatches either way).
  init_params: each configuration's params to start from (a warm start;
  the model's shapes), instead of its seed's (or, full-batch, of W = 0).
  Strengths in units of lambda_max (weight_decay_unit) are made absolute
  on this data first (objective.in_absolute_units), as a run makes them.
  """
  check(configs, dataset)  # (one unit of strength among them, run-wide)
  configs, _ = objective.in_absolute_units(configs, dataset)
  # One precision for the run (a Config field of role RUN).
  with jax.default_matmul_precision(configs[0].matmul_precision):
    runs: list[RunResult | None] = [None] * len(configs)
    train_seconds = compile_seconds = 0.0
    group_indices = sweep.groups(configs)
    for g, indices in enumerate(group_indices):
      if g and should_stop and distributed.common_decision(should_stop(),
                                                           False)[0]:
        # The previous group is finished and checkpointed.
        raise StopRequested(configs[group_indices[g - 1][0]].epochs)
      group = [configs[i] for i in indices]
      notify = ((lambda j, r, indices=indices: on_epoch(indices[j], r))
                if on_epoch else None)
      checkpointer = None
      if checkpoint_dir is not None:
        checkpointer = checkpoint_lib.Checkpointer(
            Path(checkpoint_dir) / f"group_{g}", checkpoint_every)
      try:
        if restore_only:
          (group_runs, seconds), compiling = _restore_group(
              group, dataset, checkpointer, mesh), 0.0
        else:
          group_runs, seconds, compiling = _train_group(
              group, dataset, notify, checkpointer, should_stop, mesh,
              shard_data, init_params and [init_params[i] for i in indices])
      finally:
        if checkpointer:
          checkpointer.close()
      train_seconds += seconds
      compile_seconds += compiling
      for i, run in zip(indices, group_runs, strict=True):
        runs[i] = run
  # Every index is filled: the groups partition the configs.
  return SweepResult(runs=cast(list[RunResult], runs),
                     train_seconds=train_seconds,
                     compile_seconds=None if restore_only else compile_seconds,
                     num_groups=len(group_indices))


def check(configs: list[Config], dataset: data_lib.Dataset) -> None:
  """Refuses, before anything is trained or written, what the data rules out:
  labels outside [0, K), batches larger than the training set, PHM sizes
  that do not divide the output layer, calibration without a validation
  split, configurations that differ in a run-wide field."""
  config_lib.check_run_wide(configs)
  _check_labels(dataset)
  for c in configs:
    _check_fold(c, dataset)
    if c.calibrate and dataset.x_val is None:
      raise UserError("--calibrate fits the temperature on a validation "
                      "split, and this run has none: give --val_fraction > 0 "
                      "(e.g. 0.1), or data with x_val")
    if len(dataset.x_train) < c.batch_size and not solvers.full_batch(
        c.optimizer):  # (full-batch: no minibatches)
      raise UserError(
          f"--batch_size={c.batch_size} is larger than the training set "
          f"({len(dataset.x_train)} examples); choose a smaller batch size")
    problem = model.check_phm(c.phm_n, c.hidden_sizes, dataset.num_features,
                              dataset.num_classes)
    if problem:
      raise UserError(problem)


def _check_fold(c: Config, dataset: data_lib.Dataset) -> None:
  """Refuses a fold the data do not have (every solver minimizes the
  weighted objective: objective.rows_of)."""
  if c.fold >= dataset.num_folds:
    raise UserError(f"--fold={c.fold}: the data have "
                    + (f"{dataset.num_folds} folds (0 .. "
                       f"{dataset.num_folds - 1})" if dataset.num_folds
                       else "no cross-validation folds (SoftmaxRegressionCV "
                       "makes them)"))


def _check_labels(dataset: data_lib.Dataset) -> None:
  """Labels outside [0, K) would give a silent NaN or a wrong loss inside the
  compiled program, which cannot raise; so refuse them here, on the host."""
  k = dataset.num_classes
  for split in ("train", "val", "test"):
    y = getattr(dataset, f"y_{split}")
    if y is not None and len(y) and (y.min() < 0 or y.max() >= k):
      bad = int(np.flatnonzero((y < 0) | (y >= k))[0])
      raise UserError(f"{dataset.name}: y_{split}[{bad}] = {y[bad]} is not a "
                      f"class of the {k} in its class names")


def _restore_group(configs: list[Config], dataset: data_lib.Dataset,
                   checkpointer, mesh) -> tuple[list[RunResult], float]:
  """A group's runs as its newest readable checkpoint holds them, and the
  training seconds they took (for evaluation): the state's shapes come
  from its solver, no training data goes to the devices, nothing compiles."""
  stack = Stack.of(configs, mesh)
  solver = solvers.get(stack.first.optimizer)(stack, dataset, True)
  restored = _restore_latest(checkpointer, stack, solver)
  if restored is None:
    where = checkpointer.directory if checkpointer else "(no folder given)"
    raise UserError(f"no checkpoint in {where}: the training has not "
                    "checkpointed these configurations yet; train first, or "
                    "finish the training (the same command without --mode)")
  _, states, meta = restored
  return (_results(stack, solver.params(states), meta["history"],
                   meta["status"]), meta["train_seconds"])


def _restore_latest(checkpointer, stack: Stack, solver):
  """(epoch, the stack's state laid out on the devices, meta) of the
  newest readable checkpoint, or None. Checkpoints hold the configurations
  without padding: they restore on any number of devices."""
  if checkpointer is None:
    return None
  restored = checkpointer.restore_latest(stack.layout.unpadded_like(
      solver.state_shapes(), len(stack.configs)))
  if not restored:
    return None
  epoch, unpadded, meta = restored
  return epoch, stack.layout.padded_tree(unpadded), meta


def _train_group(configs: list[Config], dataset: data_lib.Dataset, on_epoch,
                 checkpointer, should_stop, mesh, shard_data, init_params):
  """Trains (or resumes) a group with its solver's rounds (an SGD epoch, or
  a chunk of L-BFGS iterations): one loop for every solver, with
  evaluation, records, divergence, checkpoints and stop requests."""
  stack = Stack.of(configs, mesh)
  c, layout, place = stack.first, stack.layout, stack.place
  family = solvers.get(c.optimizer)(stack, dataset, shard_data)

  start = time.perf_counter()
  history: list[list[dict]] = [[] for _ in configs]
  status = [OK] * len(configs)
  uniform = [uniform_loss(cfg, dataset.num_classes) for cfg in configs]
  first_epoch, train_seconds = 1, 0.0
  restored = _restore_latest(checkpointer, stack, family)
  if restored:
    epoch, states, meta = restored
    history, status, first_epoch = meta["history"], meta["status"], epoch + 1
    train_seconds = meta["train_seconds"]  # of the epochs before the stop
  else:
    states = family.init_states(init_params and stack.stack(init_params))
  last_round = family.num_rounds
  if first_epoch > last_round or all(s == DIVERGED for s in status) or all(
      h and h[-1].get("finished") for h in history):  # finished before
    return (_results(stack, family.params(states), history, status),
            train_seconds, 0.0)
  if checkpointer:
    checkpointer.set_aside_unreadable()

  family.compile(states)
  evaluate = _compiled_evaluation(stack, family.params(states), dataset,
                                  objective_too=(c.track_objective
                                                 and not family.FULL_BATCH))
  compile_seconds = time.perf_counter() - start
  # The epochs' collectives begin together, however long each host took
  # to get here.
  distributed.sync("compiled")

  for epoch in range(first_epoch, last_round + 1):
    start, compiled = time.perf_counter(), compilation.seconds_compiling()
    states, m = family.round(states, epoch)
    # (A program the round compiles on first use, e.g. L-BFGS's for a
    # smaller stack, counts as compilation, not training.)
    compiling = compilation.seconds_compiling() - compiled
    train_seconds += time.perf_counter() - start - compiling
    compile_seconds += compiling
    finished = family.finished(m)
    last = epoch == last_round or finished
    # Evaluated every eval_every rounds, in the last, and where a loss turns
    # non-finite (a diverged configuration's last record has its scores).
    due = (epoch % c.eval_every == 0 or last
           or not np.all(np.isfinite(m["train_loss"])))
    evaluated = evaluate(family.params(states)) if due else {}
    for j, s in enumerate(place):  # config j sits at s in the stack
      if status[j] == DIVERGED:
        continue
      record = {"epoch": epoch, **{k: v[s].item() for k, v in m.items()}}
      for split in ("val", "test"):  # accuracy, nll, ece (top5_accuracy)
        for name, score_M in evaluated.get(split, {}).items():
          record[f"{split}_{name}"] = float(score_M[s])
      if "objective" in evaluated:  # --track_objective
        record["objective"] = float(evaluated["objective"][s])
      status[j] = _judge(record, history[j], status[j], uniform[j],
                         configs[j], last)
      history[j].append(record)
      if on_epoch:
        on_epoch(j, record)
    done = last or all(s == DIVERGED for s in status)
    stop, due = distributed.common_decision(
        not done and should_stop is not None and should_stop(),
        checkpointer is not None and checkpointer.due())
    stop = stop and not done
    if checkpointer and (done or stop or due):
      # A snapshot: the save finishes in the background while history grows.
      meta = {"epoch": epoch, "history": history, "status": status,
              "train_seconds": train_seconds}
      checkpointer.save(epoch, layout.unpadded(states, len(configs)),
                        copy.deepcopy(meta))
    if stop:
      raise StopRequested(epoch)
    if done:
      break

  return (_results(stack, family.params(states), history, status),
          train_seconds, compile_seconds)


def _compiled_evaluation(stack: Stack, params, dataset: data_lib.Dataset,
                         objective_too: bool):
  """evaluate(params) -> {split: scores [M]} on the validation and test
  splits (and, objective_too, {"objective": [M]}, the full training
  objective: --track_objective), compiled for the stack's params."""
  replicate = stack.replicate
  evals: dict[str, tuple] = {}
  if len(dataset.x_test):  # (an estimator's fit has no test split)
    evals["test"] = (replicate(dataset.x_test), replicate(dataset.y_test))
  if dataset.x_val is not None:
    evals["val"] = (replicate(dataset.x_val), replicate(dataset.y_val))
  chunk = evaluation.chunk_for(len(stack.stacked), dataset.num_classes)
  fns = {
      split: jax.jit(jax.vmap(functools.partial(evaluation.evaluate,
                                                chunk=chunk),
                              in_axes=(0, None, None)),
                     out_shardings=stack.layout.replicated)
      .lower(params, *xy)
      for split, xy in evals.items()}
  if objective_too:
    train_xy = (replicate(dataset.x_train),
                jax.tree.map(replicate, objective.rows_of(dataset)))
    fns["objective"] = jax.jit(functools.partial(
        objective.full_batch_value, blocks=objective.loss_blocks(stack.stacked),
        loss_input=stack.first.loss_input, chunk=chunk),
        out_shardings=stack.layout.replicated).lower(
            params, *train_xy, stack.values)
    evals["objective"] = (*train_xy, stack.values)
  compiled = {split: compile_once(lowered) for split, lowered in fns.items()}
  return lambda p: {split: jax.device_get(fn(p, *evals[split]))
                    for split, fn in compiled.items()}


def _judge(record: dict, history: list[dict], status: str, uniform: float,
           config: Config, last: bool) -> str:
  """A configuration's status after this record: DIVERGED where its loss
  is not finite, EXPLODED (the record gets a warning) where it has grown
  EXPLOSION_FACTOR times beyond its start (judged after the first round,
  or in the last), else as it was."""
  if not math.isfinite(record["train_loss"]):
    return DIVERGED
  if status == OK and (record["epoch"] > 1 or last):
    origin = _start_loss([*history, record], uniform)
    if record["train_loss"] > EXPLOSION_FACTOR * origin:
      record["warning"] = (
          f"the train loss exploded in epoch {record['epoch']}: "
          f"{record['train_loss']:.4g}, over {EXPLOSION_FACTOR:g} x the "
          f"{origin:.4g} it started from; try a smaller --lr (now "
          f"{config.lr:g})")
      return EXPLODED
  return status


def _start_loss(history: list[dict], uniform: float) -> float:
  """Where a configuration's loss started, for the explosion rule: its loss
  at initialization, or that of predicting every class alike if larger (or
  if not recorded: a solver starts at W = 0, which predicts alike)."""
  return max(uniform, history[0].get(START_LOSS, uniform))


def num_rounds(config: Config) -> int:
  """The rounds of the training loop a configuration takes at most (epochs,
  or chunks of L-BFGS iterations; its solver says)."""
  return solvers.get(config.optimizer).rounds(config)


def _results(stack: Stack, params, history, status) -> list[RunResult]:
  """Each configuration's run, its params taken out of the stack."""
  return [RunResult(config=config, history=h, status=s, params=p)
          for config, h, s, p in zip(stack.configs, history, status,
                                     stack.unstack(params), strict=True)]


@dataclasses.dataclass
class Result:
  params: model.Params
  history: list[dict]  # one record per epoch
  summary: dict


def train_and_evaluate(
    config: Config, dataset: data_lib.Dataset,
    on_epoch: Callable[[dict], None] | None = None) -> Result:
  """One run; raises DivergedError when its loss turns non-finite. Its
  summary is the command line's (outcome.conclude: the test analysis, and
  with config.calibrate the temperature fit on the validation split)."""
  result = train_configs([config], dataset,
                         on_epoch=((lambda _, r: on_epoch(r)) if on_epoch
                                   else None))
  run = result.runs[0]
  if run.status == DIVERGED:
    raise diverged_error(run)
  summary = outcome.conclude([config], dataset, result, final=True).summary
  return Result(params=run.params, history=run.history, summary=summary)
