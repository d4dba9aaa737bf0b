"""Training: many configurations in one compiled program, an epoch per call.

`train_epoch` shuffles the training set on the device (a permutation from
(seed, epoch)), cuts it into minibatches and runs `train_step` over them with
`lax.scan`; the data stay on the device as uint8 and are scaled inside the
step. Configurations that differ only in values (lr, weight decay, seed, Huber
delta, init scale, the loss) are one group: `jax.vmap` runs them side by side,
their hyperparameters traced, the loss picked by `lax.switch`. Each group is
traced and compiled once, before its first epoch. A single run is a group of
one.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from softmax_jax import data as data_lib
from softmax_jax import distributed
from softmax_jax import losses
from softmax_jax import model
from softmax_jax import optimizers
from softmax_jax import sweep
from softmax_jax.config import Config
from softmax_jax.errors import DivergedError, UserError

State = dict  # {"params": model.Params, "opt_state": optax.OptState}
OK, DIVERGED = "ok", "diverged"


def config_values(configs: list[Config], loss_names: tuple[str, ...]
                  ) -> dict[str, np.ndarray]:
  """Per-configuration values, traced (and vmapped) rather than compiled in."""
  column = lambda f, dtype: np.array([getattr(c, f) for c in configs], dtype)
  return {
      "seed": column("seed", np.int32),
      "lr": column("lr", np.float32),
      "weight_decay": column("weight_decay", np.float32),
      "init_scale": column("init_scale", np.float32),
      "huber_delta": column("huber_delta", np.float32),
      "loss_index": np.array([loss_names.index(c.loss) for c in configs],
                             np.int32),
  }


def init_state(values, *, num_features, num_classes, optimizer) -> State:
  """One configuration's initial params and optimizer state."""
  init_key, _ = jax.random.split(jax.random.key(values["seed"]))
  params = model.init_params(init_key, num_features, num_classes,
                             values["init_scale"])
  # As arrays, so that inject_hyperparams keeps them in the state.
  tx = optimizers.make_optimizer(optimizer, jnp.asarray(values["lr"]),
                                 jnp.asarray(values["weight_decay"]))
  return {"params": params, "opt_state": tx.init(params)}


def per_example_loss(logits_BxK, y_B, values, *, loss_names, loss_input):
  """The configuration's loss; with several in a group, lax.switch picks it."""
  fns = [functools.partial(losses.LOSSES[name], loss_input=loss_input)
         for name in loss_names]
  if len(fns) == 1:
    return fns[0](logits_BxK, y_B, huber_delta=values["huber_delta"])
  branches = [lambda o, y, d, fn=fn: fn(o, y, huber_delta=d) for fn in fns]
  return jax.lax.switch(values["loss_index"], branches, logits_BxK, y_B,
                        values["huber_delta"])


def train_step(state: State, x_BxD, y_B, values, *, optimizer, **loss_kw):
  """One optimizer step on the mean loss of a minibatch."""

  def mean_loss(params):
    logits_BxK = model.logits(params, x_BxD)
    return jnp.mean(per_example_loss(logits_BxK, y_B, values, **loss_kw)), logits_BxK

  (loss, logits_BxK), grads = jax.value_and_grad(mean_loss, has_aux=True)(
      state["params"])
  # The update reads lr and weight decay from opt_state (inject_hyperparams);
  # the values given here are placeholders.
  tx = optimizers.make_optimizer(optimizer, 0.0, 0.0)
  updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
  params = optax.apply_updates(state["params"], updates)
  correct = jnp.sum(jnp.argmax(logits_BxK, axis=-1) == y_B)
  return {"params": params, "opt_state": opt_state}, {"loss": loss,
                                                       "correct": correct}


def train_epoch(state: State, x_NxD, y_N, key, values, *, batch_size,
                batch_sharding=None, **step_kw):
  """One pass over the shuffled training set; the last partial batch is dropped.

  Returns the new state and the epoch's mean minibatch loss and accuracy
  (measured while training, as d2l's train_epoch_ch3 does).
  """
  num_batches = x_NxD.shape[0] // batch_size
  order = jax.random.permutation(key, x_NxD.shape[0])
  batches_SxB = order[:num_batches * batch_size].reshape(num_batches, batch_size)

  def body(state, idx_B):
    x_BxD = data_lib.scale_pixels(x_NxD[idx_B])
    if batch_sharding is not None:  # data parallel: each device takes a slice
      x_BxD = jax.lax.with_sharding_constraint(x_BxD, batch_sharding)
    return train_step(state, x_BxD, y_N[idx_B], values, **step_kw)

  state, m = jax.lax.scan(body, state, batches_SxB)
  return state, {
      "train_loss": jnp.mean(m["loss"]),
      "train_accuracy": jnp.sum(m["correct"]) / (num_batches * batch_size),
  }


def group_epoch(states: State, x_NxD, y_N, seeds, values, epoch, *,
                shared_order: bool, **epoch_kw):
  """train_epoch for every configuration of a group, vmapped.

  With one seed in the group (`shared_order`), `seeds` is a scalar: all
  configurations see the same minibatches, gathered once and multiplied by
  all their weights in one matmul.
  """

  def one(state, seed, values):
    _, data_key = jax.random.split(jax.random.key(seed))
    return train_epoch(state, x_NxD, y_N, jax.random.fold_in(data_key, epoch),
                       values, **epoch_kw)

  return jax.vmap(one, in_axes=(0, None if shared_order else 0, 0))(
      states, seeds, values)


def evaluate(params: model.Params, x_NxD, y_N) -> dict[str, jax.Array]:
  """Accuracy and negative log-likelihood (mean cross-entropy) on a data set."""
  logits_NxK = model.logits(params, data_lib.scale_pixels(x_NxD))
  return {
      "accuracy": jnp.mean(jnp.argmax(logits_NxK, axis=-1) == y_N),
      "nll": jnp.mean(losses.cross_entropy(logits_NxK, y_N)),
  }


@dataclasses.dataclass
class RunResult:
  config: Config
  history: list[dict]  # one record per finished epoch
  status: str  # OK or DIVERGED
  params: model.Params  # NumPy arrays


@dataclasses.dataclass
class SweepResult:
  runs: list[RunResult]  # in the order of the configs
  train_seconds: float  # compiled training time of all groups
  compile_seconds: float
  num_groups: int


def train_configs(configs: list[Config], dataset: data_lib.Dataset,
                  on_epoch: Callable[[int, dict], None] | None = None
                  ) -> SweepResult:
  """Trains every config; on_epoch(config index, record) after each epoch.

  The test split is only reported; a configuration whose loss turns
  non-finite is marked diverged and leaves the others undisturbed.
  """
  runs: list[RunResult | None] = [None] * len(configs)
  train_seconds = compile_seconds = 0.0
  group_indices = sweep.groups(configs)
  for indices in group_indices:
    group = [configs[i] for i in indices]
    notify = on_epoch and (lambda j, r, indices=indices: on_epoch(indices[j], r))
    group_runs, seconds, compiling = _train_group(group, dataset, notify)
    train_seconds += seconds
    compile_seconds += compiling
    for i, run in zip(indices, group_runs):
      runs[i] = run
  return SweepResult(runs=runs, train_seconds=train_seconds,
                     compile_seconds=compile_seconds,
                     num_groups=len(group_indices))


def _train_group(configs: list[Config], dataset: data_lib.Dataset, on_epoch):
  c = configs[0]
  if len(dataset.x_train) < c.batch_size:
    raise UserError(
        f"--batch_size={c.batch_size} is larger than the training set "
        f"({len(dataset.x_train)} examples); choose a smaller batch size")
  layout = distributed.make_layout(len(configs), c.batch_size)
  num_padded = layout.padded(len(configs))
  padded = configs + [configs[-1]] * (num_padded - len(configs))
  loss_names = tuple(dict.fromkeys(c.loss for c in configs))
  values = jax.tree.map(lambda v: distributed.put(v, layout.configs),
                        config_values(padded, loss_names))
  shared_order = len({c.seed for c in configs}) == 1
  seeds = (distributed.put(np.int32(c.seed), layout.replicated) if shared_order
           else values["seed"])
  replicate = lambda a: distributed.put(a, layout.replicated)
  x_train, y_train = replicate(dataset.x_train), replicate(dataset.y_train)
  evals = {"test": (replicate(dataset.x_test), replicate(dataset.y_test))}
  if dataset.x_val is not None:
    evals["val"] = (replicate(dataset.x_val), replicate(dataset.y_val))

  start = time.perf_counter()
  states = jax.jit(
      jax.vmap(functools.partial(
          init_state, num_features=dataset.num_features,
          num_classes=dataset.num_classes, optimizer=c.optimizer)),
      out_shardings=layout.configs)(values)
  epoch_fn = jax.jit(
      functools.partial(group_epoch, shared_order=shared_order,
                        batch_size=c.batch_size, batch_sharding=layout.batch,
                        loss_names=loss_names, loss_input=c.loss_input,
                        optimizer=c.optimizer),
      donate_argnums=0, out_shardings=(layout.configs, layout.replicated))
  epoch_fn = epoch_fn.lower(states, x_train, y_train, seeds, values,
                            replicate(np.int32(0))).compile()
  eval_fns = {
      split: jax.jit(jax.vmap(evaluate, in_axes=(0, None, None)),
                     out_shardings=layout.replicated)
      .lower(states["params"], *xy).compile()
      for split, xy in evals.items()}
  compile_seconds = time.perf_counter() - start

  history = [[] for _ in configs]
  status = [OK] * len(configs)
  train_seconds = 0.0
  for epoch in range(1, c.epochs + 1):
    start = time.perf_counter()
    states, m = epoch_fn(states, x_train, y_train, seeds, values,
                         replicate(np.int32(epoch)))
    m = jax.device_get(m)
    train_seconds += time.perf_counter() - start
    evaluated = {split: jax.device_get(fn(states["params"], *evals[split]))
                 for split, fn in eval_fns.items()}
    for j in range(len(configs)):
      if status[j] == DIVERGED:
        continue
      record = {"epoch": epoch,
                "train_loss": float(m["train_loss"][j]),
                "train_accuracy": float(m["train_accuracy"][j])}
      for split in ("val", "test"):
        if split in evaluated:
          record[f"{split}_accuracy"] = float(evaluated[split]["accuracy"][j])
          record[f"{split}_nll"] = float(evaluated[split]["nll"][j])
      history[j].append(record)
      if on_epoch:
        on_epoch(j, record)
      if not math.isfinite(record["train_loss"]):
        status[j] = DIVERGED
    if all(s == DIVERGED for s in status):
      break

  params = jax.device_get(
      jax.jit(lambda p: p, out_shardings=layout.replicated)(states["params"]))
  runs = [RunResult(config=cfg, history=history[j], status=status[j],
                    params=jax.tree.map(lambda p, j=j: np.asarray(p[j]), params))
          for j, cfg in enumerate(configs)]
  return runs, train_seconds, compile_seconds


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
    raise DivergedError(
        f"training diverged in epoch {last['epoch']}: the train loss is "
        f"{last['train_loss']}; try a smaller --lr (now {config.lr})")
  summary = {
      "test_accuracy": last["test_accuracy"],
      "test_nll": last["test_nll"],
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
