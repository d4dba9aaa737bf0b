"""The minibatch optimizers (sgd, momentum, adam): a round is an epoch.

`train_epoch` runs `train_step` over an epoch's minibatches with
`lax.scan`; the minibatches are index arrays drawn on the host from (seed,
epoch) by `epoch_order`; the data stay on the device as stored (e.g. uint8),
gathered and scaled inside the step, or, when larger than the device's
memory, stream from the host a chunk of minibatches at a time (see feed.py).
With one seed in the stack, all configurations see the same minibatches,
gathered once and multiplied by all weights in one matmul.
"""

from __future__ import annotations

import functools
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

from softmax_jax import metrics
from softmax_jax import model
from softmax_jax.compilation import compile_once
from softmax_jax.config import Config
from softmax_jax.data import datasets as data_lib
from softmax_jax.data import feed as feed_lib
from softmax_jax.errors import UserError
from softmax_jax.hosts import distributed
from softmax_jax.solvers import objective
from softmax_jax.solvers import optimizers
from softmax_jax.solvers.base import Stack
from softmax_jax.solvers.base import START_LOSS
from softmax_jax.solvers.base import State


def init_state(values, params=None, *, num_features, num_classes, optimizer,
               hidden=(), phm_n=0, schedule="constant", total_steps=1,
               sparse=False, fit_intercept=True) -> State:
  """One configuration's initial params (random, or `params`: a warm
  start) and optimizer state (vmap it to stack); sparse: a penalty with an
  L1 part (its proximal step); fit_intercept False: b = 0, kept there."""
  if params is None:
    init_key, _ = jax.random.split(jax.random.key(values["seed"]))
    params = model.init_params(init_key, num_features, num_classes,
                               values["init_scale"], hidden, phm_n)
  if not fit_intercept:
    params = {**params, "b": jnp.zeros_like(params["b"])}
  # As arrays, so that inject_hyperparams keeps them in the state.
  weight_decay = (objective.smooth_weight_decay(values) if sparse
                  else values["weight_decay"])
  tx = optimizers.make_optimizer(
      optimizer, jnp.asarray(values["lr"]), jnp.asarray(weight_decay),
      schedule, total_steps,
      values["weight_decay"] * values["l1_share"] if sparse else None)
  return {"params": params, "opt_state": tx.init(params)}


def train_step(state: State, x, y, values, *, optimizer, schedule, total_steps,
               blocks, loss_input, compute_dtype="float32", sparse=False,
               fit_intercept=True):
  """One optimizer step for every configuration of the stack.

  x is a minibatch [B, D] shared by all configurations, or [M, B, D] (y: [B]
  or [M, B]). The gradient of the sum of the configurations' losses is each
  configuration's own gradient, since no loss depends on another's params.
  Without an intercept the bias's gradient is 0: b stays at 0 under every
  optimizer (Adam's moments of b stay 0, and so its steps).
  """
  shared = x.ndim == 2
  weighted = isinstance(y, tuple)  # (labels, weights, folds): rows_of
  if weighted:
    y, w, fold = y
    # Each configuration's weight of each example [M, B], over the mean
    # weight of the rows it trains on: the minibatch mean of w_i loss_i so
    # scaled estimates the weighted mean loss without bias.
    kept = (fold[None] if fold.ndim == 1 else fold) != values["fold"][:, None]
    w_MxB = (w[None] if w.ndim == 1 else w) * kept / values["weight_mean"][
        :, None]
  squeeze = (values["lr"].shape[0] == 1
             and state["params"]["b"].shape[-1]
             >= objective.SQUEEZE_MIN_CLASSES)

  def total_loss(params_M):
    logits_MxBxK = objective.over_stack(
        functools.partial(model.logits, compute_dtype=compute_dtype),
        squeeze, in_axes=(0, None if shared else 0))(params_M, x)
    per_MxB = objective.per_example_losses(
        logits_MxBxK, y, values["huber_delta"], blocks=blocks,
        loss_input=loss_input, squeeze=squeeze)
    loss_M = jnp.mean(per_MxB * w_MxB if weighted else per_MxB, axis=-1)
    return jnp.sum(loss_M), (loss_M, logits_MxBxK)

  (_, (loss_M, logits_MxBxK)), grads = jax.value_and_grad(
      total_loss, has_aux=True)(state["params"])
  if not fit_intercept:
    grads = {**grads, "b": jnp.zeros_like(grads["b"])}
  # The update reads lr and weight decay from opt_state (inject_hyperparams);
  # the values given here are placeholders.
  tx = optimizers.make_optimizer(optimizer, 0.0, 0.0, schedule, total_steps,
                                 0.0 if sparse else None)
  updates, opt_state = objective.over_stack(tx.update, squeeze)(
      grads, state["opt_state"], state["params"])
  params = optax.apply_updates(state["params"], updates)
  right_MxB = objective.over_stack(metrics.argmax_is, squeeze, in_axes=(
      0, None if y.ndim == 1 else 0))(logits_MxBxK, y)
  # The training accuracy counts the rows each configuration trains on (of
  # weight > 0, not in the fold it leaves out).
  counted_MxB = (w_MxB > 0 if weighted
                 else jnp.ones(right_MxB.shape, bool))
  return {"params": params, "opt_state": opt_state}, {
      "loss": loss_M, "correct": jnp.sum(right_MxB & counted_MxB, axis=-1),
      "counted": jnp.sum(counted_MxB, axis=-1)}


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
    x_B, y_B = step if batches is None else (
        x[step], jax.tree.map(lambda a: a[step], y))
    x_B = data_lib.to_features(x_B)
    if batch_sharding is not None:  # data parallel: each device takes a slice
      x_B = jax.lax.with_sharding_constraint(x_B, batch_sharding)
    return train_step(state, x_B, y_B, values, **step_kw)

  steps = (x, y) if batches is None else batches
  state, m = jax.lax.scan(body, state, steps)
  return state, {
      "train_loss": jnp.mean(m["loss"], axis=0),
      "train_accuracy": (jnp.sum(m["correct"], axis=0)
                         / jnp.sum(m["counted"], axis=0)),
      # (whose sums over a streamed epoch's calls give its accuracy)
      "correct": jnp.sum(m["correct"], axis=0),
      "counted": jnp.sum(m["counted"], axis=0),
      "first_loss": m["loss"][0],  # before this call's first update
  }


def host_share(stacked: list[Config], layout, num_examples: int,
               shard_data: bool) -> tuple[int, feed_lib.Shard | None]:
  """(shares, this host's Shard or None): minibatches split across hosts
  draw a part from each of `shares` equal shares of the examples (see
  epoch_order). Each host holds only its own share where it can: one seed
  for the stack (else every host needs every example) and no full pass over
  the training set (--track_objective)."""
  c = stacked[0]
  if len({s.seed for s in stacked}) > 1:
    return 1, None
  index, count = layout.data_shard()
  if count == 1 or not shard_data or c.track_objective:
    return count, None
  return count, feed_lib.Shard(index, count, num_examples // count)


class Minibatch:
  """The SGD family (sgd, momentum, adam): a round is an epoch of
  minibatches (see train_epoch), fed resident or streamed (feed.py)."""

  FULL_BATCH: ClassVar[bool] = False
  UNREAD: ClassVar[tuple[str, ...]] = ("tol", "max_iters")
  # With --track_objective, each evaluation records the objective; with an
  # L1 penalty, each round the sparsity (objective.sparsity).
  SOLUTION_KEYS: ClassVar[tuple[str, ...]] = ("objective", "nonzero",
                                              "features_used")

  def __init__(self, stack: Stack, dataset: data_lib.Dataset,
               shard_data: bool):
    stacked, layout = stack.stacked, stack.layout
    c = stacked[0]
    self.c, self.values, self.layout = c, stack.values, layout
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
        "total_steps": c.epochs * steps, "sparse": c.penalty != "l2",
        "fit_intercept": c.fit_intercept}
    self.init_kw = {"num_features": dataset.num_features,
                    "num_classes": dataset.num_classes,
                    "hidden": c.hidden_sizes, "phm_n": c.phm_n}
    self.num_rounds = c.epochs
    self.dataset, self.replicate, self.stacked = (dataset, stack.replicate,
                                                  stacked)
    self.examples_per_step = c.batch_size * (
        len(stacked) if self.per_config else 1)
    # Weighted (objective.rows_of through the feed) only where the data have
    # weights or a configuration leaves a fold out: else the plain step.
    self.weighted = dataset.w_train is not None or any(
        s.fold >= 0 for s in stacked)
    if self.weighted:
      self.rows = objective.rows_of(dataset)
      _, w, folds = self.rows
      self.values = {**self.values, "weight_mean": distributed.put(np.array(
          [w[folds != s.fold].sum() / len(w) for s in stacked], np.float32),
          layout.configs)}

  @staticmethod
  def rounds(config: Config) -> int:
    return config.epochs

  @staticmethod
  def check(config: Config) -> None:
    if config.penalty != "l2" and config.phm_n:
      raise UserError(f"--penalty={config.penalty} applies to dense weights; "
                      "--phm_n's layer is a sum of Kronecker products: drop "
                      "one of them")

  def init_states(self, params=None):
    return jax.jit(jax.vmap(functools.partial(
        init_state, **self.init_kw, **self.optimizer_kw)),
                   out_shardings=self.layout.configs)(self.values, params)

  def state_shapes(self):
    return jax.eval_shape(self.init_states)

  def params(self, states):
    return states["params"]

  def compile(self, states):
    x, y = self.dataset.x_train, self.dataset.y_train
    if self.weighted:
      y = self.rows
    if self.shard:  # (a view: of a memory-mapped file, only it is read)
      rows = slice(self.shard.index * self.shard.size,
                   (self.shard.index + 1) * self.shard.size)
      x, y = x[rows], jax.tree.map(lambda a: a[rows], y)
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
    self.sparsity = (compile_once(jax.jit(objective.sparsity).lower(
        states["params"])) if self.optimizer_kw["sparse"] else None)
    self.epoch_fns = {  # one per length of the feed's calls (in steps)
        steps: compile_once(epoch_fn.lower(
            states, *self.feed.shapes((steps, *shape[1:])), self.values))
        for steps in self.feed.chunk_lengths(shape[0])}

  def round(self, states, epoch):
    parts = []  # (steps, means over them) of each call
    for x, y, idx in self.feed.chunks(self.batches_of(epoch)):
      # (y: the labels, or with weights and folds a tuple of them)
      steps = len(jax.tree.leaves(y)[0] if idx is None else idx)
      states, part = self.epoch_fns[steps](states, x, y, idx, self.values)
      parts.append((steps, part))
    parts = jax.device_get(parts)
    first = parts[0][1]["first_loss"]
    record = _mean_over_steps([(steps, {k: v for k, v in part.items()
                                        if k not in ("first_loss", "correct",
                                                     "counted")})
                               for steps, part in parts])
    if len(parts) > 1:  # (streamed: the rows counted differ from step to
      # step where rows have weights, so the calls' shares do not average)
      record["train_accuracy"] = np.float32(
          sum(part["correct"] for _, part in parts)) / np.float32(
              sum(part["counted"] for _, part in parts))
    if self.sparsity is not None:
      record.update(jax.device_get(self.sparsity(states["params"])))
    # The loss at initialization, where the explosion rule measures from.
    return states, {**record, START_LOSS: first} if epoch == 1 else record

  def finished(self, m) -> bool:
    del m
    return False


def _mean_over_steps(parts) -> dict[str, np.ndarray]:
  """An epoch's means from those of its calls, weighted by their steps."""
  if len(parts) == 1:
    return parts[0][1]
  total = sum(steps for steps, _ in parts)
  return {k: sum(steps * part[k] for steps, part in parts) / total
          for k in parts[0][1]}
