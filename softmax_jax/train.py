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

import copy
import dataclasses
import functools
import math
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from softmax_jax import checkpoint as checkpoint_lib
from softmax_jax import data as data_lib
from softmax_jax import distributed
from softmax_jax import evaluation
from softmax_jax import feed as feed_lib
from softmax_jax import losses
from softmax_jax import metrics
from softmax_jax import model
from softmax_jax import optimizers
from softmax_jax import sweep
from softmax_jax.config import Config
from softmax_jax.errors import DivergedError, UserError

State = dict  # {"params": model.Params, "opt_state": optax.OptState}, stacked
OK, DIVERGED, EXPLODED = "ok", "diverged", "exploded"
# A configuration has exploded when its mean train loss of an epoch after the
# first (whose mean holds the start's transient), or of its last epoch, is
# over EXPLOSION_FACTOR times the loss of predicting every class alike (ln K
# for cross-entropy): finite, so no NaN check sees it, yet no longer learning
# (e.g. --lr=1e9 for 1e-9). On Fashion-MNIST, the largest stable learning
# rates stay under 2x and lr 3 with SGD under 5x.
EXPLOSION_FACTOR = 10.0


def config_values(configs: list[Config]) -> dict[str, np.ndarray]:
  """Per-configuration values [M], traced rather than compiled in."""
  column = lambda f, dtype: np.array([getattr(c, f) for c in configs], dtype)
  return {
      "seed": column("seed", np.int32),
      "lr": column("lr", np.float32),
      "weight_decay": column("weight_decay", np.float32),
      "init_scale": column("init_scale", np.float32),
      "huber_delta": column("huber_delta", np.float32),
  }


def uniform_loss(config: Config, num_classes: int) -> float:
  """The loss of predicting every class alike (all logits 0): ln K for
  cross-entropy; the same for every label, by symmetry."""
  loss = losses.LOSSES[config.loss](
      jnp.zeros((1, num_classes)), jnp.zeros(1, jnp.int32),
      loss_input=config.loss_input, huber_delta=config.huber_delta)
  return float(loss[0])


def loss_blocks(configs: list[Config]) -> tuple[tuple[str, int, int], ...]:
  """(loss, start, stop) of each run of equal losses in the config order."""
  blocks, start = [], 0
  for i in range(1, len(configs) + 1):
    if i == len(configs) or configs[i].loss != configs[start].loss:
      blocks.append((configs[start].loss, start, i))
      start = i
  return tuple(blocks)


def init_state(values, *, num_features, num_classes, optimizer, hidden=(),
               phm_n=0, schedule="constant", total_steps=1) -> State:
  """One configuration's initial params and optimizer state (vmap it to stack)."""
  init_key, _ = jax.random.split(jax.random.key(values["seed"]))
  params = model.init_params(init_key, num_features, num_classes,
                             values["init_scale"], hidden, phm_n)
  # As arrays, so that inject_hyperparams keeps them in the state.
  tx = optimizers.make_optimizer(optimizer, jnp.asarray(values["lr"]),
                                 jnp.asarray(values["weight_decay"]), schedule,
                                 total_steps)
  return {"params": params, "opt_state": tx.init(params)}


# A stack of one configuration with at least this many classes is trained
# squeezed rather than vmapped: on a CPU, XLA compiles the batched matmul of
# batch 1 with extra transposes, 15-30% of an epoch at K = 1,000 (D = 512),
# while at K <= 100 the batched form is the faster one (d2l's K = 10: 58
# against 85 ms per epoch); measured on 2 cores, the crossover near K = 300.
SQUEEZE_MIN_CLASSES = 256


def over_stack(fn, squeeze: bool, in_axes=0):
  """jax.vmap(fn, in_axes) over the configurations of a stack, or, with
  squeeze, fn on the only configuration (see SQUEEZE_MIN_CLASSES)."""
  if not squeeze:
    return jax.vmap(fn, in_axes=in_axes)

  def one(*args):
    axes = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)
    args = [arg if axis is None else jax.tree.map(
        lambda a: a.reshape(a.shape[1:]), arg) for arg, axis in zip(args, axes)]
    return jax.tree.map(lambda a: a[None], fn(*args))

  return one


def stacked_losses(logits_MxBxK, y_B, huber_delta_M, *, blocks, loss_input,
                   squeeze=False):
  """Each configuration's mean minibatch loss [M], each block with its loss."""
  means = []
  for name, start, stop in blocks:
    fn = functools.partial(losses.LOSSES[name], loss_input=loss_input)
    per_example = over_stack(
        lambda o, d, y, fn=fn: fn(o, y, huber_delta=d), squeeze,
        in_axes=(0, 0, None if y_B.ndim == 1 else 0))(
            logits_MxBxK[start:stop], huber_delta_M[start:stop],
            y_B if y_B.ndim == 1 else y_B[start:stop])
    means.append(jnp.mean(per_example, axis=-1))
  return jnp.concatenate(means)


def train_step(state: State, x, y, values, *, optimizer, schedule, total_steps,
               blocks, loss_input, compute_dtype="float32"):
  """One optimizer step for every configuration of the stack.

  x is a minibatch [B, D] shared by all configurations, or [M, B, D] (y: [B]
  or [M, B]). The gradient of the sum of the configurations' losses is each
  configuration's own gradient, since no loss depends on another's params.
  """
  shared = x.ndim == 2
  squeeze = (values["lr"].shape[0] == 1
             and state["params"]["b"].shape[-1] >= SQUEEZE_MIN_CLASSES)

  def total_loss(params_M):
    logits_MxBxK = over_stack(
        functools.partial(model.logits, compute_dtype=compute_dtype),
        squeeze, in_axes=(0, None if shared else 0))(params_M, x)
    loss_M = stacked_losses(logits_MxBxK, y, values["huber_delta"],
                            blocks=blocks, loss_input=loss_input,
                            squeeze=squeeze)
    return jnp.sum(loss_M), (loss_M, logits_MxBxK)

  (_, (loss_M, logits_MxBxK)), grads = jax.value_and_grad(
      total_loss, has_aux=True)(state["params"])
  # The update reads lr and weight decay from opt_state (inject_hyperparams);
  # the values given here are placeholders.
  tx = optimizers.make_optimizer(optimizer, 0.0, 0.0, schedule, total_steps)
  updates, opt_state = over_stack(tx.update, squeeze)(
      grads, state["opt_state"], state["params"])
  params = optax.apply_updates(state["params"], updates)
  correct_M = jnp.sum(over_stack(metrics.argmax_is, squeeze, in_axes=(
      0, None if y.ndim == 1 else 0))(logits_MxBxK, y), axis=-1)
  return {"params": params, "opt_state": opt_state}, {"loss": loss_M,
                                                       "correct": correct_M}


def epoch_order(seeds, epoch: int, num_examples: int,
                batch_size: int) -> np.ndarray:
  """The minibatches of one epoch, as example indices: [S, B] for one seed,
  [S, M, B] for one seed per configuration (M seeds).

  Each is a permutation drawn from (seed, epoch), its last partial batch
  dropped. It is drawn on the host: NumPy shuffles 60,000 indices in ~0.5 ms,
  where XLA, which permutes by sorting random keys, takes ~25 ms on two CPU
  cores (half of an epoch's training). Every process of a multi-host run
  draws the same one.
  """
  num_batches = num_examples // batch_size

  def one(seed):
    order = np.random.default_rng([int(seed), epoch]).permutation(num_examples)
    return order[:num_batches * batch_size].astype(np.int32).reshape(
        num_batches, batch_size)

  if np.ndim(seeds) == 0:
    return one(seeds)
  drawn = {s: one(s) for s in set(seeds)}  # e.g. 2 seeds x 32 lrs: 2 draws
  return np.stack([drawn[s] for s in seeds], axis=1)


def train_epoch(state: State, x_NxD, y_N, batches, values, *, batch_sharding=None,
                **step_kw):
  """One pass over the training set for the whole stack, in the minibatches
  given by `batches` (see epoch_order): [S, B] shared by all configurations,
  or [S, M, B].

  Returns the new state and each configuration's mean minibatch loss and
  accuracy over the epoch (measured while training, as d2l's train_epoch_ch3
  does).
  """
  def body(state, idx):
    x = data_lib.to_features(x_NxD[idx])
    if batch_sharding is not None:  # data parallel: each device takes a slice
      x = jax.lax.with_sharding_constraint(x, batch_sharding)
    return train_step(state, x, y_N[idx], values, **step_kw)

  state, m = jax.lax.scan(body, state, batches)
  num_examples = batches.shape[0] * batches.shape[-1]
  return state, {
      "train_loss": jnp.mean(m["loss"], axis=0),
      "train_accuracy": jnp.sum(m["correct"], axis=0) / num_examples,
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
                  restore_only: bool = False) -> SweepResult:
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
  evaluation).
  """
  check(configs, dataset)
  runs: list[RunResult | None] = [None] * len(configs)
  train_seconds = compile_seconds = 0.0
  group_indices = sweep.groups(configs)
  for g, indices in enumerate(group_indices):
    if g and should_stop and should_stop():  # the previous group is finished
      raise StopRequested(configs[group_indices[g - 1][0]].epochs)
    group = [configs[i] for i in indices]
    notify = on_epoch and (lambda j, r, indices=indices: on_epoch(indices[j], r))
    checkpointer = None
    if checkpoint_dir is not None:
      checkpointer = checkpoint_lib.Checkpointer(
          Path(checkpoint_dir) / f"group_{g}", checkpoint_every)
    try:
      group_runs, seconds, compiling = _train_group(
          group, dataset, notify, checkpointer, should_stop, restore_only)
    finally:
      if checkpointer:
        checkpointer.close()
    train_seconds += seconds
    compile_seconds += compiling
    for i, run in zip(indices, group_runs):
      runs[i] = run
  return SweepResult(runs=runs, train_seconds=train_seconds,
                     compile_seconds=None if restore_only else compile_seconds,
                     num_groups=len(group_indices))


def check(configs: list[Config], dataset: data_lib.Dataset) -> None:
  """Refuses, before anything is trained or written, what the data rules out:
  labels outside [0, K), batches larger than the training set, PHM sizes
  that do not divide the output layer."""
  _check_labels(dataset)
  for c in configs:
    if len(dataset.x_train) < c.batch_size:
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


def _train_group(configs: list[Config], dataset: data_lib.Dataset, on_epoch,
                 checkpointer, should_stop, restore_only):
  c = configs[0]
  layout = distributed.make_layout(len(configs), c.batch_size)
  # Ordered by loss, so each loss is one block of the stack; padded with
  # copies of the last configuration to a multiple of the devices.
  order = sorted(range(len(configs)), key=lambda i: configs[i].loss)
  stacked = [configs[i] for i in order]
  place = [order.index(j) for j in range(len(configs))]
  stacked += [stacked[-1]] * (layout.padded(len(configs)) - len(configs))
  values = jax.tree.map(lambda v: distributed.put(v, layout.configs),
                        config_values(stacked))
  # One seed for all: the same minibatches, gathered once for the stack.
  seeds = c.seed if len({c.seed for c in configs}) == 1 else [
      s.seed for s in stacked]
  batches_of = functools.partial(epoch_order, seeds,
                                 num_examples=len(dataset.x_train),
                                 batch_size=c.batch_size)
  replicate = lambda a: distributed.put(a, layout.replicated)

  optimizer_kw = {"optimizer": c.optimizer, "schedule": c.schedule,
                  "total_steps": c.epochs * (len(dataset.x_train) // c.batch_size)}

  start = time.perf_counter()
  states = jax.jit(
      jax.vmap(functools.partial(
          init_state, num_features=dataset.num_features,
          num_classes=dataset.num_classes, hidden=c.hidden_sizes,
          phm_n=c.phm_n, **optimizer_kw)),
      out_shardings=layout.configs)(values)
  history = [[] for _ in configs]
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
    raise UserError(f"no readable checkpoint in {where}; train first (the "
                    "same command without --mode)")
  if restore_only or first_epoch > c.epochs or all(
      s == DIVERGED for s in status):
    return (_results(configs, states, history, status, place, layout),
            train_seconds, 0.0)
  if checkpointer:
    checkpointer.set_aside_unreadable()

  examples_per_step = c.batch_size * (1 if np.ndim(seeds) == 0 else len(stacked))
  feed = feed_lib.Feed(dataset.x_train, dataset.y_train, replicate,
                       budget=feed_lib.budget_bytes(c.device_memory_gb),
                       examples_per_step=examples_per_step)
  evals = {"test": (replicate(dataset.x_test), replicate(dataset.y_test))}
  if dataset.x_val is not None:
    evals["val"] = (replicate(dataset.x_val), replicate(dataset.y_val))
  epoch_fn = jax.jit(
      functools.partial(train_epoch, batch_sharding=layout.batch,
                        blocks=loss_blocks(stacked), loss_input=c.loss_input,
                        compute_dtype=c.compute_dtype, **optimizer_kw),
      out_shardings=(layout.configs, layout.replicated))
  batches_shape = batches_of(0).shape
  epoch_fns = {  # one per length of the feed's calls (in steps)
      steps: epoch_fn.lower(states, *feed.shapes((steps, *batches_shape[1:])),
                            values).compile()
      for steps in feed.chunk_lengths(batches_shape[0])}
  chunk = evaluation.chunk_for(len(stacked), dataset.num_classes)
  eval_fns = {
      split: jax.jit(jax.vmap(functools.partial(evaluation.evaluate, chunk=chunk),
                              in_axes=(0, None, None)),
                     out_shardings=layout.replicated)
      .lower(states["params"], *xy).compile()
      for split, xy in evals.items()}
  compile_seconds = time.perf_counter() - start

  for epoch in range(first_epoch, c.epochs + 1):
    start = time.perf_counter()
    parts = []  # (steps, means over them) of each call
    for x, y, idx in feed.chunks(batches_of(epoch)):
      states, part = epoch_fns[idx.shape[0]](states, x, y, idx, values)
      parts.append((idx.shape[0], part))
    m = _mean_over_steps(jax.device_get(parts))
    train_seconds += time.perf_counter() - start
    # Evaluated every eval_every epochs, in the last, and where a loss turns
    # non-finite (a diverged configuration's last record has its scores).
    due = (epoch % c.eval_every == 0 or epoch == c.epochs
           or not np.all(np.isfinite(m["train_loss"])))
    evaluated = {split: jax.device_get(fn(states["params"], *evals[split]))
                 for split, fn in eval_fns.items()} if due else {}
    for j, s in enumerate(place):  # config j sits at s in the stack
      if status[j] == DIVERGED:
        continue
      record = {"epoch": epoch,
                "train_loss": float(m["train_loss"][s]),
                "train_accuracy": float(m["train_accuracy"][s])}
      for split in ("val", "test"):  # accuracy, nll, ece (top5_accuracy)
        for name, score_M in evaluated.get(split, {}).items():
          record[f"{split}_{name}"] = float(score_M[s])
      if not math.isfinite(record["train_loss"]):
        status[j] = DIVERGED
      elif status[j] == OK and (epoch > 1 or epoch == c.epochs) and (
          record["train_loss"] > EXPLOSION_FACTOR * uniform[j]):
        status[j] = EXPLODED
        record["warning"] = (
            f"the train loss exploded in epoch {epoch}: "
            f"{record['train_loss']:.4g}, over {EXPLOSION_FACTOR:g} x the "
            f"{uniform[j]:.4g} of predicting every class alike; try a "
            f"smaller --lr (now {configs[j].lr:g})")
      history[j].append(record)
      if on_epoch:
        on_epoch(j, record)
    done = epoch == c.epochs or all(s == DIVERGED for s in status)
    stop = not done and should_stop is not None and should_stop()
    if checkpointer and (done or stop or checkpointer.due()):
      # A snapshot: the save finishes in the background while history grows.
      meta = {"epoch": epoch, "history": history, "status": status,
              "train_seconds": train_seconds}
      checkpointer.save(epoch, layout.unpadded(states, len(configs)),
                        copy.deepcopy(meta))
    if stop:
      raise StopRequested(epoch)
    if done:
      break

  return (_results(configs, states, history, status, place, layout),
          train_seconds, compile_seconds)


def _mean_over_steps(parts) -> dict[str, np.ndarray]:
  """An epoch's means from those of its calls, weighted by their steps."""
  if len(parts) == 1:
    return parts[0][1]
  total = sum(steps for steps, _ in parts)
  return {k: sum(steps * part[k] for steps, part in parts) / total
          for k in parts[0][1]}


def _results(configs, states, history, status, place, layout) -> list[RunResult]:
  """Each configuration's run, its params taken out of the stack."""
  params = jax.device_get(
      jax.jit(lambda p: p, out_shardings=layout.replicated)(states["params"]))
  return [RunResult(config=configs[j], history=history[j], status=status[j],
                    params=jax.tree.map(lambda p, s=s: np.asarray(p[s]), params))
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


def train_and_evaluate(config: Config, dataset: data_lib.Dataset,
                       on_epoch: Callable[[dict], None] | None = None) -> Result:
  """One run; raises DivergedError when its loss turns non-finite."""
  result = train_configs([config], dataset,
                         on_epoch=on_epoch and (lambda _, r: on_epoch(r)))
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
      "num_train": int(len(dataset.x_train)),
      "num_test": int(len(dataset.x_test)),
      "class_names": list(dataset.class_names),
      "backend": jax.default_backend(),
      "num_devices": jax.device_count(),
  }
  if "val_accuracy" in last:
    summary.update(val_accuracy=last["val_accuracy"], val_nll=last["val_nll"],
                   num_val=int(len(dataset.x_val)))
  return Result(params=run.params, history=run.history, summary=summary)
