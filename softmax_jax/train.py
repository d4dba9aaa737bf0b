"""Training: many configurations in one compiled program, an epoch per call.

A group is a stack of M configurations that differ only in values (lr, weight
decay, seed, Huber delta, init scale, the loss): their parameters and
optimizer states are stacked along a leading axis, their hyperparameters are
traced values, and one program trains them all. `train_epoch` runs
`train_step` over an epoch's minibatches with `lax.scan`; the minibatches are
index arrays drawn on the host from (seed, epoch) by `epoch_order`; the
data stay on the device as stored (e.g. uint8), gathered and scaled inside
the step, or, when larger than the device's memory, stream from the host a
chunk of minibatches at a time (see feed.py). The configurations are
ordered by loss, so each loss is computed only on its own block of the stack
(static slices) rather than every loss on every configuration. With one seed
in the group, all configurations see the same minibatches, gathered once and
multiplied by all weights in one matmul. Each group is traced and compiled
once, before its first epoch; a single run is a group of one.
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
import jax.flatten_util  # pylint: disable=unused-import
import jax.numpy as jnp
import numpy as np
import optax

from softmax_jax import calibration
from softmax_jax import checkpoint as checkpoint_lib
from softmax_jax import data as data_lib
from softmax_jax import distributed
from softmax_jax import evaluation
from softmax_jax import feed as feed_lib
from softmax_jax import lbfgs
from softmax_jax import losses
from softmax_jax import metrics
from softmax_jax import model
from softmax_jax import objective
from softmax_jax import optimizers
from softmax_jax import ridge
from softmax_jax import sweep
from softmax_jax.config import Config
from softmax_jax.config import SOLVERS
from softmax_jax.errors import DivergedError
from softmax_jax.errors import UserError

State = dict  # {"params": model.Params, "opt_state": optax.OptState}, stacked
OK, DIVERGED, EXPLODED = "ok", "diverged", "exploded"
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
# The first record's loss at initialization (minibatch optimizers).
START_LOSS = "start_loss"


def config_values(configs: list[Config]) -> dict[str, np.ndarray]:
  """Per-configuration values [M], traced rather than compiled in."""

  def column(f, dtype):
    return np.array([getattr(c, f) for c in configs], dtype)

  return {
      "seed": column("seed", np.int32),
      "lr": column("lr", np.float32),
      "weight_decay": column("weight_decay", np.float32),
      "init_scale": column("init_scale", np.float32),
      "huber_delta": column("huber_delta", np.float32),
      "tol": column("tol", np.float32),
      "max_iters": column("max_iters", np.int32),
  }


def uniform_loss(config: Config, num_classes: int) -> float:
  """The loss of predicting every class alike (all logits 0): ln K for
  cross-entropy; the same for every label, by symmetry."""
  loss = losses.LOSSES[config.loss](
      jnp.zeros((1, num_classes)), jnp.zeros(1, jnp.int32),
      loss_input=config.loss_input, huber_delta=config.huber_delta)
  return float(loss[0])


def init_state(values, *, num_features, num_classes, optimizer, hidden=(),
               phm_n=0, schedule="constant", total_steps=1) -> State:
  """One configuration's initial params and optimizer state (vmap it to
  stack)."""
  init_key, _ = jax.random.split(jax.random.key(values["seed"]))
  params = model.init_params(init_key, num_features, num_classes,
                             values["init_scale"], hidden, phm_n)
  # As arrays, so that inject_hyperparams keeps them in the state.
  tx = optimizers.make_optimizer(optimizer, jnp.asarray(values["lr"]),
                                 jnp.asarray(values["weight_decay"]), schedule,
                                 total_steps)
  return {"params": params, "opt_state": tx.init(params)}


def train_step(state: State, x, y, values, *, optimizer, schedule, total_steps,
               blocks, loss_input, compute_dtype="float32"):
  """One optimizer step for every configuration of the stack.

  x is a minibatch [B, D] shared by all configurations, or [M, B, D] (y: [B]
  or [M, B]). The gradient of the sum of the configurations' losses is each
  configuration's own gradient, since no loss depends on another's params.
  """
  shared = x.ndim == 2
  squeeze = (values["lr"].shape[0] == 1
             and state["params"]["b"].shape[-1]
             >= objective.SQUEEZE_MIN_CLASSES)

  def total_loss(params_M):
    logits_MxBxK = objective.over_stack(
        functools.partial(model.logits, compute_dtype=compute_dtype),
        squeeze, in_axes=(0, None if shared else 0))(params_M, x)
    loss_M = objective.stacked_losses(logits_MxBxK, y, values["huber_delta"],
                            blocks=blocks, loss_input=loss_input,
                            squeeze=squeeze)
    return jnp.sum(loss_M), (loss_M, logits_MxBxK)

  (_, (loss_M, logits_MxBxK)), grads = jax.value_and_grad(
      total_loss, has_aux=True)(state["params"])
  # The update reads lr and weight decay from opt_state (inject_hyperparams);
  # the values given here are placeholders.
  tx = optimizers.make_optimizer(optimizer, 0.0, 0.0, schedule, total_steps)
  updates, opt_state = objective.over_stack(tx.update, squeeze)(
      grads, state["opt_state"], state["params"])
  params = optax.apply_updates(state["params"], updates)
  correct_M = jnp.sum(objective.over_stack(metrics.argmax_is, squeeze, in_axes=(
      0, None if y.ndim == 1 else 0))(logits_MxBxK, y), axis=-1)
  return {"params": params, "opt_state": opt_state}, {"loss": loss_M,
                                                       "correct": correct_M}


def epoch_order(seeds, epoch: int, num_examples: int, batch_size: int,
                shards: int = 1) -> np.ndarray:
  """The minibatches of one epoch, as example indices: [S, B] for one seed,
  [S, M, B] for one seed per configuration (M seeds).

  Each is a permutation drawn from (seed, epoch), its last partial batch
  dropped. It is drawn on the host: NumPy shuffles 60,000 indices in ~0.5 ms,
  where XLA, which permutes by sorting random keys, takes ~25 ms on two CPU
  cores (half of an epoch's training). Every process of a multi-host run
  draws the same one. With `shards` (hosts that each hold a share of the
  examples, see feed.Shard), the examples are cut into that many equal
  shares and each minibatch takes B / shards from each, in the share's own
  permutation, drawn from (seed, epoch, share).
  """
  size, part = num_examples // shards, batch_size // shards
  num_batches = size // part

  def one(seed):
    parts = []
    for k in range(shards):
      key = [int(seed), epoch] + ([k] if shards > 1 else [])
      order = np.random.default_rng(key).permutation(size)
      parts.append(k * size + order[:num_batches * part].reshape(
          num_batches, part))
    return np.concatenate(parts, axis=1).astype(np.int32)

  if np.ndim(seeds) == 0:
    return one(seeds)
  drawn = {s: one(s) for s in set(seeds)}  # e.g. 2 seeds x 32 lrs: 2 draws
  return np.stack([drawn[s] for s in seeds], axis=1)


def train_epoch(state: State, x, y, batches, values, *,
                batch_sharding=None, **step_kw):
  """One pass over the training set for the whole stack, in the minibatches
  given by `batches` (see epoch_order): [S, B] shared by all configurations,
  or [S, M, B], indices into x_NxD and y_N. With batches None, x and y are
  the minibatches themselves: [S, B, ...] and [S, B] (or [S, M, B, ...]).

  Returns the new state and each configuration's mean minibatch loss and
  accuracy over the epoch (measured while training, as d2l's train_epoch_ch3
  does).
  """
  def body(state, step):
    x_B, y_B = step if batches is None else (x[step], y[step])
    x_B = data_lib.to_features(x_B)
    if batch_sharding is not None:  # data parallel: each device takes a slice
      x_B = jax.lax.with_sharding_constraint(x_B, batch_sharding)
    return train_step(state, x_B, y_B, values, **step_kw)

  steps = (x, y) if batches is None else batches
  state, m = jax.lax.scan(body, state, steps)
  shape = (y if batches is None else batches).shape  # [S, (M,) B]
  num_examples = shape[0] * shape[-1]
  return state, {
      "train_loss": jnp.mean(m["loss"], axis=0),
      "train_accuracy": jnp.sum(m["correct"], axis=0) / num_examples,
      "first_loss": m["loss"][0],  # before this call's first update
  }


@dataclasses.dataclass
class RunResult:
  config: Config
  history: list[dict]  # one record per finished epoch
  status: str  # OK, DIVERGED (non-finite loss) or EXPLODED (see above)
  params: model.Params  # NumPy arrays


@dataclasses.dataclass
class SweepResult:
  runs: list[RunResult]  # in the order of the configs
  train_seconds: float  # compiled training time of all groups
  compile_seconds: float | None  # None: restored for evaluation, not trained
  num_groups: int


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
                  shard_data: bool = True) -> SweepResult:
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
  """
  check(configs, dataset)
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
      group_runs, seconds, compiling = _train_group(
          group, dataset, notify, checkpointer, should_stop, restore_only,
          mesh, shard_data)
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
  split."""
  _check_labels(dataset)
  for c in configs:
    if c.calibrate and dataset.x_val is None:
      raise UserError("--calibrate fits the temperature on a validation "
                      "split, and this run has none: give --val_fraction > 0 "
                      "(e.g. 0.1), or data with x_val")
    if len(dataset.x_train) < c.batch_size and c.optimizer not in (
        "lbfgs", "exact"):  # (full-batch: no minibatches)
      raise UserError(
          f"--batch_size={c.batch_size} is larger than the training set "
          f"({len(dataset.x_train)} examples); choose a smaller batch size")
    problem = model.check_phm(c.phm_n, c.hidden_sizes, dataset.num_features,
                              dataset.num_classes)
    if problem:
      raise UserError(problem)


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


def host_share(stacked: list[Config], layout, num_examples: int,
               shard_data: bool) -> tuple[int, feed_lib.Shard | None]:
  """(shares, this host's Shard or None): minibatches split across hosts
  draw a part from each of `shares` equal shares of the examples (see
  epoch_order). Each host holds only its own share where it can: one seed
  for the stack (else every host needs every example) and no full pass over
  the training set (--track_objective)."""
  c = stacked[0]
  if c.optimizer in SOLVERS or len({s.seed for s in stacked}) > 1:
    return 1, None
  index, count = layout.data_shard()
  if count == 1 or not shard_data or c.track_objective:
    return count, None
  return count, feed_lib.Shard(index, count, num_examples // count)


class _Minibatch:
  """The SGD family (sgd, momentum, adam): a round is an epoch of
  minibatches (see train_epoch), fed resident or streamed (feed.py)."""

  def __init__(self, stacked, dataset, layout, values, replicate,
               shard_data):
    c = stacked[0]
    self.c, self.values, self.layout = c, values, layout
    # One seed for all: the same minibatches, gathered once for the stack.
    seeds = c.seed if len({s.seed for s in stacked}) == 1 else [
        s.seed for s in stacked]
    self.per_config = np.ndim(seeds) != 0  # minibatches [S, M, B]
    count, self.shard = host_share(stacked, layout, len(dataset.x_train),
                                   shard_data)
    self.batches_of = functools.partial(epoch_order, seeds,
                                        num_examples=len(dataset.x_train),
                                        batch_size=c.batch_size, shards=count)
    steps = (len(dataset.x_train) // count) // (c.batch_size // count)
    self.optimizer_kw = {
        "optimizer": c.optimizer, "schedule": c.schedule,
        "total_steps": c.epochs * steps}
    self.init_kw = {"num_features": dataset.num_features,
                    "num_classes": dataset.num_classes,
                    "hidden": c.hidden_sizes, "phm_n": c.phm_n}
    self.num_rounds = c.epochs
    self.dataset, self.replicate, self.stacked = dataset, replicate, stacked
    self.examples_per_step = c.batch_size * (
        len(stacked) if self.per_config else 1)

  def init_states(self):
    return jax.jit(jax.vmap(functools.partial(
        init_state, **self.init_kw, **self.optimizer_kw)),
                   out_shardings=self.layout.configs)(self.values)

  def params(self, states):
    return states["params"]

  def compile(self, states):
    x, y = self.dataset.x_train, self.dataset.y_train
    if self.shard:  # (a view: of a memory-mapped file, only it is read)
      rows = slice(self.shard.index * self.shard.size,
                   (self.shard.index + 1) * self.shard.size)
      x, y = x[rows], y[rows]
    self.feed = feed_lib.Feed(
        x, y, self.replicate,
        budget=feed_lib.budget_bytes(self.c.device_memory_gb),
        examples_per_step=self.examples_per_step,
        batches=self.layout.minibatches(self.per_config), shard=self.shard)
    epoch_fn = jax.jit(
        functools.partial(train_epoch,
                          batch_sharding=self.layout.batch(self.per_config),
                          blocks=objective.loss_blocks(self.stacked),
                          loss_input=self.c.loss_input,
                          compute_dtype=self.c.compute_dtype,
                          **self.optimizer_kw),
        out_shardings=(self.layout.configs, self.layout.replicated))
    shape = self.batches_of(0).shape
    self.epoch_fns = {  # one per length of the feed's calls (in steps)
        steps: epoch_fn.lower(states, *self.feed.shapes((steps, *shape[1:])),
                              self.values).compile()
        for steps in self.feed.chunk_lengths(shape[0])}

  def round(self, states, epoch):
    parts = []  # (steps, means over them) of each call
    for x, y, idx in self.feed.chunks(self.batches_of(epoch)):
      steps = len(y if idx is None else idx)
      states, part = self.epoch_fns[steps](states, x, y, idx, self.values)
      parts.append((steps, part))
    parts = jax.device_get(parts)
    first = parts[0][1]["first_loss"]
    record = _mean_over_steps([(steps, {k: v for k, v in part.items()
                                        if k != "first_loss"})
                               for steps, part in parts])
    # The loss at initialization, where the explosion rule measures from.
    return states, {**record, START_LOSS: first} if epoch == 1 else record

  def finished(self, m) -> bool:
    del m
    return False


class _FullBatch:
  """L-BFGS (lbfgs.py) on the full-batch objective (objective.full_batch):
  a round is ITERATIONS_PER_ROUND iterations of every configuration, until
  all have converged (gradient norm below --tol) or run --max_iters.

  Only the configurations still moving are computed: each round runs on
  the smallest stack (a power of two) that holds them, so a path whose
  strong penalties converge early spends its passes on the weak ones."""

  ITERATIONS_PER_ROUND = 10
  CHUNK_VALUES = 2**20  # rows x features per chunk of the pass (in cache)

  def __init__(self, stacked, dataset, layout, values, replicate,
               shard_data):
    del shard_data  # every host holds the whole training set
    c = stacked[0]
    self.c, self.values, self.layout = c, values, layout
    self.num_rounds = max(num_rounds(s) for s in stacked)
    self.init_kw = {"num_features": dataset.num_features,
                    "num_classes": dataset.num_classes,
                    "init_scale": 0.0, "hidden": c.hidden_sizes,
                    "phm_n": c.phm_n}
    template = model.init_params(jax.random.key(0), **self.init_kw)
    flat, self.unravel = jax.flatten_util.ravel_pytree(template)
    self.unravel_size = flat.size
    # For lbfgs.warm_start: the entries the penalty applies to, and the
    # configurations that share the data term (the same loss).
    self.penalized = jax.flatten_util.ravel_pytree(jax.tree.map(
        lambda p, on: jnp.full(p.shape, float(on)), template,
        optimizers.decayed(template)))[0]
    loss_of = [(s.loss, s.huber_delta if s.loss == "huber" else 0.0)
               for s in stacked]
    self.same_loss = np.array([[a == b for b in loss_of] for a in loss_of])
    self.x, self.y = replicate(dataset.x_train), replicate(dataset.y_train)
    self.stacked, self.dataset = stacked, dataset
    # Chunks of ~1,000 rows of Fashion-MNIST keep the pass in cache: 231
    # against 305 ms for 16 configurations at 8,192 rows.
    self.chunk = min(evaluation.chunk_for(len(stacked), dataset.num_classes),
                     max(256, self.CHUNK_VALUES // dataset.num_features))
    self.objective = functools.partial(
        objective.full_batch, unravel=self.unravel,
        blocks=objective.loss_blocks(stacked), loss_input=c.loss_input,
        chunk=self.chunk,
        squeeze=len(stacked) == 1
        and dataset.num_classes >= objective.SQUEEZE_MIN_CLASSES)
    self.moments = self.moving = None
    self.runs = {}  # the compiled round of each stack size and its losses

  def _value_and_grad(self, x, y, values, blocks=None):
    """The objective of the stack `values` describes; `blocks`: its losses
    (objective.loss_blocks), when it is not the whole stack."""
    f = (self.objective if blocks is None
         else functools.partial(self.objective, blocks=blocks))
    return lambda theta: f(theta, x, y, values)[:2]

  def _zeros(self):
    """Every configuration's flat parameters at W = 0, b = 0 (where
    scikit-learn starts too; the seed has no role), as an argument of the
    compiled start: XLA folding the objective at constant zeros gave NaN."""
    return distributed.put(np.zeros((len(self.stacked), self.unravel_size),
                                    np.float32), self.layout.configs)

  def init_states(self):
    def init(theta, values, x, y):
      state = lbfgs.init(theta, self._value_and_grad(x, y, values))
      return {"solver": state._asdict(),
              "train_accuracy": self._accuracy(state.theta, x, y)}
    return jax.jit(init, out_shardings=self.layout.configs)(
        self._zeros(), self.values, self.x, self.y)

  def _accuracy(self, theta, x, y):
    """Each configuration's training accuracy (one forward pass)."""
    return jax.vmap(functools.partial(evaluation.accuracy, chunk=self.chunk),
                    in_axes=(0, None, None))(
                        jax.vmap(self.unravel)(theta), x, y)

  def params(self, states):
    return jax.vmap(self.unravel)(states["solver"]["theta"])

  def compile(self, states):
    # The preconditioner's moments (objective.whitening_preconditioner): the
    # features' mean and the eigendecomposition of their covariance.
    mean, cov = data_lib.feature_covariance(self.dataset.x_train)
    largest = float(np.max(np.abs(cov)))
    limit = float(np.finfo(np.float32).max) / self.dataset.num_features
    if not largest < limit:
      raise UserError(f"the features are too large for float32 arithmetic "
                      f"(their covariance reaches {largest:.3g}); scale them, "
                      "e.g. --standardize")
    eigvals, eigvecs = np.linalg.eigh(cov)
    self.moments = tuple(
        distributed.put(a.astype(np.float32), self.layout.replicated)
        for a in (mean, eigvecs, np.maximum(eigvals, 0)))
    self.moving = jax.jit(lambda st, v: ~lbfgs.finished(
        lbfgs.State(**st["solver"]), v["tol"], v["max_iters"]))
    self._compiled(len(self.stacked), objective.loss_blocks(self.stacked),
                   states)

  def _compiled(self, size, blocks, states):
    """The round of a stack of `size` configurations, picked by index from
    the whole stack and put back into it; its record describes them all.
    `blocks`: the losses of the picked stack (each configuration keeps its
    own loss whichever others are still moving)."""
    if (size, blocks) in self.runs:
      return self.runs[size, blocks]

    def run(states, picked, keep, x, y, values, moments):
      states = {**states, "solver": lbfgs.warm_start(
          lbfgs.State(**states["solver"]), values["weight_decay"],
          self.penalized, self.same_loss, values["tol"],
          values["max_iters"])._asdict()}
      sub = jax.tree.map(lambda a: a[picked], states)
      state = lbfgs.run(
          lbfgs.State(**sub["solver"]),
          self._value_and_grad(x, y, jax.tree.map(lambda a: a[picked], values),
                               blocks),
          values["tol"][picked], values["max_iters"][picked],
          self.ITERATIONS_PER_ROUND,
          objective.whitening_preconditioner(
              *moments, values["weight_decay"][picked],
              self.dataset.num_classes, self.unravel))
      sub = {"solver": state._asdict(),
             "train_accuracy": self._accuracy(state.theta, x, y)}
      # Padding (copies of a picked configuration) is dropped, not written.
      states = jax.tree.map(lambda a, new: a.at[keep].set(new, mode="drop"),
                            states, sub)
      state = lbfgs.State(**states["solver"])
      params = jax.vmap(self.unravel)(state.theta)
      return states, {
          # The loss is the objective without its penalty.
          "train_loss": state.value - objective.penalty(
              params, values["weight_decay"]),
          "train_accuracy": states["train_accuracy"], "objective": state.value,
          "grad_norm": lbfgs.grad_norm(state),
          "iterations": state.iterations, "evaluations": state.evaluations,
          "converged": lbfgs.grad_norm(state) < values["tol"],
          "finished": lbfgs.finished(state, values["tol"], values["max_iters"])}

    picked = np.zeros(size, np.int32)
    self.runs[size, blocks] = jax.jit(run, out_shardings=(
        self.layout.configs, self.layout.replicated)).lower(
            states, picked, picked, self.x, self.y, self.values,
            self.moments).compile()
    return self.runs[size, blocks]

  def round(self, states, r):
    del r
    m = len(self.stacked)
    moving = np.flatnonzero(jax.device_get(self.moving(states, self.values)))
    if not len(moving):  # (all finished: a round that changes nothing)
      moving = np.arange(m)
    size = self.layout.padded(min(m, 1 << (len(moving) - 1).bit_length()))
    picked = np.concatenate([moving,
                             np.repeat(moving[-1:], size - len(moving))])
    keep = np.where(np.arange(size) < len(moving), picked, m)  # m: dropped
    # picked is sorted, so its losses stay in blocks.
    blocks = objective.loss_blocks([self.stacked[i] for i in picked])
    states, record = self._compiled(size, blocks, states)(
        states, picked, keep, self.x, self.y, self.values, self.moments)
    return states, jax.device_get(record)

  def finished(self, m) -> bool:
    return bool(np.all(m["finished"]))


class _ClosedForm(_FullBatch):
  """--optimizer=exact: ridge regression on the one-hot code (ridge.py), the
  whole stack from one eigendecomposition, in one round; the round's record
  holds the objective and its gradient norm, a check of the solution."""

  def init_states(self):
    return {"params": jax.jit(jax.vmap(self.unravel),
                              out_shardings=self.layout.configs)(self._zeros())}

  def params(self, states):
    return states["params"]

  def compile(self, states):
    del states

  def round(self, states, r):
    del r
    solved = ridge.solve_path(self.dataset.x_train, self.dataset.y_train,
                              self.dataset.num_classes,
                              [c.weight_decay for c in self.stacked])
    params = jax.tree.map(lambda *a: distributed.put(np.stack(a),
                                                     self.layout.configs),
                          *solved)
    theta = jax.vmap(lambda p: jax.flatten_util.ravel_pytree(p)[0])(params)
    value, grad, aux = jax.jit(self.objective)(theta, self.x, self.y,
                                               self.values)
    return {"params": params}, jax.device_get({
        **aux, "objective": value, "grad_norm": jnp.linalg.norm(grad, axis=-1),
        "iterations": jnp.zeros_like(value, jnp.int32),
        # Exact in float64; the check, in float32, may say otherwise.
        "converged": jnp.linalg.norm(grad, axis=-1) < self.values["tol"],
        "finished": jnp.ones_like(value, bool)})

  def finished(self, m) -> bool:
    del m
    return True


def _train_group(configs: list[Config], dataset: data_lib.Dataset, on_epoch,
                 checkpointer, should_stop, restore_only, mesh, shard_data):
  """Trains a group with its family's rounds (an SGD epoch, or a chunk of
  L-BFGS iterations): one loop for every optimizer, with evaluation,
  records, divergence, checkpoints and stop requests."""
  c = configs[0]
  layout = distributed.make_layout(len(configs), c.batch_size, mesh)
  # Ordered by loss, so each loss is one block of the stack; padded with
  # copies of the last configuration to a multiple of the devices.
  order = sorted(range(len(configs)), key=lambda i: configs[i].loss)
  stacked = [configs[i] for i in order]
  place = [order.index(j) for j in range(len(configs))]
  stacked += [stacked[-1]] * (layout.padded(len(configs)) - len(configs))
  values = jax.tree.map(lambda v: distributed.put(v, layout.configs),
                        config_values(stacked))

  def replicate(a):
    return distributed.put(a, layout.replicated)

  family = {"lbfgs": _FullBatch, "exact": _ClosedForm}.get(
      c.optimizer, _Minibatch)(stacked, dataset, layout, values, replicate,
                               shard_data)

  start = time.perf_counter()
  states = family.init_states()
  history: list[list[dict]] = [[] for _ in configs]
  status = [OK] * len(configs)
  uniform = [uniform_loss(cfg, dataset.num_classes) for cfg in configs]
  first_epoch, train_seconds = 1, 0.0
  # Checkpoints hold the configurations without padding: any device count.
  restored = checkpointer.restore_latest(
      layout.unpadded_like(states, len(configs))) if checkpointer else None
  if restored:
    epoch, unpadded, meta = restored
    states = layout.padded_tree(unpadded)
    history, status, first_epoch = meta["history"], meta["status"], epoch + 1
    train_seconds = meta["train_seconds"]  # of the epochs before the stop
  elif restore_only:
    where = checkpointer.directory if checkpointer else "(no folder given)"
    raise UserError(f"no checkpoint in {where}: the training has not "
                    "checkpointed these configurations yet; train first, or "
                    "finish the training (the same command without --mode)")
  last_round = family.num_rounds
  if restore_only or first_epoch > last_round or all(
      s == DIVERGED for s in status) or all(
          h and h[-1].get("finished") for h in history):
    return (_results(configs, family.params(states), history, status, place,
                     layout), train_seconds, 0.0)
  if checkpointer:
    checkpointer.set_aside_unreadable()

  evals: dict[str, tuple] = {
      "test": (replicate(dataset.x_test), replicate(dataset.y_test))}
  if dataset.x_val is not None:
    evals["val"] = (replicate(dataset.x_val), replicate(dataset.y_val))
  family.compile(states)
  chunk = evaluation.chunk_for(len(stacked), dataset.num_classes)
  eval_fns = {
      split: jax.jit(jax.vmap(functools.partial(evaluation.evaluate,
                                                chunk=chunk),
                              in_axes=(0, None, None)),
                     out_shardings=layout.replicated)
      .lower(family.params(states), *xy).compile()
      for split, xy in evals.items()}
  if c.track_objective and c.optimizer not in SOLVERS:
    train_xy = (replicate(dataset.x_train), replicate(dataset.y_train))
    eval_fns["objective"] = jax.jit(functools.partial(
        objective.full_batch_value, blocks=objective.loss_blocks(stacked),
        loss_input=c.loss_input, chunk=chunk),
        out_shardings=layout.replicated).lower(
            family.params(states), *train_xy, values).compile()
    evals["objective"] = (*train_xy, values)
  compile_seconds = time.perf_counter() - start
  # The epochs' collectives begin together, however long each host took
  # to get here.
  distributed.sync("compiled")

  for epoch in range(first_epoch, last_round + 1):
    start = time.perf_counter()
    states, m = family.round(states, epoch)
    train_seconds += time.perf_counter() - start
    finished = family.finished(m)
    last = epoch == last_round or finished
    # Evaluated every eval_every rounds, in the last, and where a loss turns
    # non-finite (a diverged configuration's last record has its scores).
    due = (epoch % c.eval_every == 0 or last
           or not np.all(np.isfinite(m["train_loss"])))
    params = family.params(states)
    evaluated = {split: jax.device_get(fn(params, *evals[split]))
                 for split, fn in eval_fns.items()} if due else {}
    for j, s in enumerate(place):  # config j sits at s in the stack
      if status[j] == DIVERGED:
        continue
      record = {"epoch": epoch, **{k: v[s].item() for k, v in m.items()}}
      for split in ("val", "test"):  # accuracy, nll, ece (top5_accuracy)
        for name, score_M in evaluated.get(split, {}).items():
          record[f"{split}_{name}"] = float(score_M[s])
      if "objective" in evaluated:  # --track_objective
        record["objective"] = float(evaluated["objective"][s])
      if not math.isfinite(record["train_loss"]):
        status[j] = DIVERGED
      elif status[j] == OK and (epoch > 1 or last):
        start = _start_loss([*history[j], record], uniform[j])
        if record["train_loss"] > EXPLOSION_FACTOR * start:
          status[j] = EXPLODED
          record["warning"] = (
              f"the train loss exploded in epoch {epoch}: "
              f"{record['train_loss']:.4g}, over {EXPLOSION_FACTOR:g} x the "
              f"{start:.4g} it started from; try a smaller --lr (now "
              f"{configs[j].lr:g})")
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

  return (_results(configs, family.params(states), history, status, place,
                   layout), train_seconds, compile_seconds)


def _start_loss(history: list[dict], uniform: float) -> float:
  """Where a configuration's loss started, for the explosion rule: its loss
  at initialization, or that of predicting every class alike if larger (or
  if not recorded: a solver starts at W = 0, which predicts alike)."""
  return max(uniform, history[0].get(START_LOSS, uniform))


def _mean_over_steps(parts) -> dict[str, np.ndarray]:
  """An epoch's means from those of its calls, weighted by their steps."""
  if len(parts) == 1:
    return parts[0][1]
  total = sum(steps for steps, _ in parts)
  return {k: sum(steps * part[k] for steps, part in parts) / total
          for k in parts[0][1]}


def num_rounds(config: Config) -> int:
  """The rounds of the training loop: epochs, or chunks of L-BFGS iterations
  (fewer when every configuration converges before max_iters)."""
  if config.optimizer == "exact":
    return 1
  if config.optimizer == "lbfgs":
    return math.ceil(config.max_iters / _FullBatch.ITERATIONS_PER_ROUND)
  return config.epochs


def _results(configs, params, history, status, place,
             layout) -> list[RunResult]:
  """Each configuration's run, its params taken out of the stack."""
  params = jax.device_get(
      jax.jit(lambda p: p, out_shardings=layout.replicated)(params))
  return [RunResult(config=configs[j], history=history[j], status=status[j],
                    params=jax.tree.map(lambda p, s=s: np.asarray(p[s]),
                                        params))
          for j, s in enumerate(place)]


def diverged_error(run: RunResult) -> DivergedError:
  last = run.history[-1]
  return DivergedError(
      f"training diverged in epoch {last['epoch']}: the train loss is "
      f"{last['train_loss']}; try a smaller --lr (now {run.config.lr})")


@dataclasses.dataclass
class Result:
  params: model.Params
  history: list[dict]  # one record per epoch
  summary: dict


def train_and_evaluate(
    config: Config, dataset: data_lib.Dataset,
    on_epoch: Callable[[dict], None] | None = None) -> Result:
  """One run; raises DivergedError when its loss turns non-finite. With
  config.calibrate, the summary has the temperature fit on the validation
  split (see calibration.calibrate)."""
  result = train_configs([config], dataset,
                         on_epoch=((lambda _, r: on_epoch(r)) if on_epoch
                                   else None))
  run = result.runs[0]
  last = run.history[-1]
  if run.status == DIVERGED:
    raise diverged_error(run)
  summary = {
      "test_accuracy": last["test_accuracy"],
      "test_nll": last["test_nll"],
      "ece": last["test_ece"],
      "train_loss": last["train_loss"],
      "train_accuracy": last["train_accuracy"],
      "train_seconds": result.train_seconds,
      "compile_seconds": result.compile_seconds,
      "num_params": model.num_params(run.params),
      "num_train": len(dataset.x_train),
      "num_test": len(dataset.x_test),
      "class_names": list(dataset.class_names),
      "backend": jax.default_backend(),
      "num_devices": jax.device_count(),
  }
  if "val_accuracy" in last:
    assert dataset.x_val is not None  # validation accuracy needs it
    summary.update(val_accuracy=last["val_accuracy"], val_nll=last["val_nll"],
                   num_val=len(dataset.x_val))
  if config.calibrate:  # (check: it has a validation split)
    summary["calibration"] = calibration.calibrate([run.params], dataset)[0]
  return Result(params=run.params, history=run.history, summary=summary)
