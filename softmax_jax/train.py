"""Training: a whole epoch is one compiled program; the host loop logs per epoch.

`train_epoch` shuffles the training set on the device (a permutation from
(seed, epoch)), cuts it into minibatches and runs `train_step` over them with
`lax.scan`; the data stay on the device as uint8 and are scaled inside the
step. The epoch is traced and compiled once per run, before the first epoch.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from softmax_jax import data as data_lib
from softmax_jax import losses
from softmax_jax import model
from softmax_jax import optimizers
from softmax_jax.config import Config
from softmax_jax.errors import DivergedError, UserError

State = dict  # {"params": model.Params, "opt_state": optax.OptState}


def hyperparams(config: Config) -> dict[str, jax.Array]:
  """The loss's swept hyperparameters, as traced values."""
  return {"huber_delta": jnp.float32(config.huber_delta)}


def train_step(state: State, x_BxD, y_B, hparams, *, loss_fn, loss_input,
               optimizer: optax.GradientTransformation):
  """One SGD step on the mean loss of a minibatch."""

  def mean_loss(params):
    logits_BxK = model.logits(params, x_BxD)
    per_example_B = loss_fn(logits_BxK, y_B, huber_delta=hparams["huber_delta"],
                            loss_input=loss_input)
    return jnp.mean(per_example_B), logits_BxK

  (loss, logits_BxK), grads = jax.value_and_grad(mean_loss, has_aux=True)(
      state["params"])
  updates, opt_state = optimizer.update(grads, state["opt_state"],
                                        state["params"])
  params = optax.apply_updates(state["params"], updates)
  correct = jnp.sum(jnp.argmax(logits_BxK, axis=-1) == y_B)
  return {"params": params, "opt_state": opt_state}, {"loss": loss,
                                                       "correct": correct}


def train_epoch(state: State, x_NxD, y_N, key, hparams, *, batch_size, **step_kw):
  """One pass over the shuffled training set; the last partial batch is dropped.

  Returns the new state and the epoch's mean minibatch loss and accuracy
  (measured while training, as d2l's train_epoch_ch3 does).
  """
  num_batches = x_NxD.shape[0] // batch_size
  order = jax.random.permutation(key, x_NxD.shape[0])
  batches_SxB = order[:num_batches * batch_size].reshape(num_batches, batch_size)

  def body(state, idx_B):
    x_BxD = data_lib.scale_pixels(x_NxD[idx_B])
    return train_step(state, x_BxD, y_N[idx_B], hparams, **step_kw)

  state, m = jax.lax.scan(body, state, batches_SxB)
  return state, {
      "train_loss": jnp.mean(m["loss"]),
      "train_accuracy": jnp.sum(m["correct"]) / (num_batches * batch_size),
  }


def evaluate(params: model.Params, x_NxD, y_N) -> dict[str, jax.Array]:
  """Accuracy and negative log-likelihood (mean cross-entropy) on a data set."""
  logits_NxK = model.logits(params, data_lib.scale_pixels(x_NxD))
  return {
      "accuracy": jnp.mean(jnp.argmax(logits_NxK, axis=-1) == y_N),
      "nll": jnp.mean(losses.cross_entropy(logits_NxK, y_N)),
  }


@dataclasses.dataclass
class Result:
  params: model.Params
  history: list[dict]  # one record per epoch
  summary: dict


def train_and_evaluate(config: Config, dataset: data_lib.Dataset,
                       on_epoch: Callable[[dict], None] | None = None) -> Result:
  """Trains on dataset's training split; the test split is only reported."""
  if len(dataset.x_train) < config.batch_size:
    raise UserError(
        f"--batch_size={config.batch_size} is larger than the training set "
        f"({len(dataset.x_train)} examples); choose a smaller batch size")
  init_key, data_key = jax.random.split(jax.random.key(config.seed))
  params = model.init_params(init_key, dataset.num_features,
                             dataset.num_classes, config.init_scale)
  optimizer = optimizers.make_optimizer(config.optimizer, config.lr,
                                        config.weight_decay)
  state = {"params": params, "opt_state": optimizer.init(params)}
  hparams = hyperparams(config)
  x_train, y_train = jax.device_put((dataset.x_train, dataset.y_train))
  x_test, y_test = jax.device_put((dataset.x_test, dataset.y_test))

  epoch_fn = jax.jit(
      functools.partial(train_epoch, batch_size=config.batch_size,
                        loss_fn=losses.LOSSES[config.loss],
                        loss_input=config.loss_input, optimizer=optimizer),
      donate_argnums=0)
  start = time.perf_counter()
  epoch_fn = epoch_fn.lower(state, x_train, y_train, data_key, hparams).compile()
  eval_fn = jax.jit(evaluate).lower(state["params"], x_test, y_test).compile()
  compile_seconds = time.perf_counter() - start

  history, train_seconds = [], 0.0
  for epoch in range(1, config.epochs + 1):
    start = time.perf_counter()
    state, m = epoch_fn(state, x_train, y_train,
                        jax.random.fold_in(data_key, epoch), hparams)
    m = jax.device_get(m)
    train_seconds += time.perf_counter() - start
    test = jax.device_get(eval_fn(state["params"], x_test, y_test))
    record = {"epoch": epoch,
              "train_loss": float(m["train_loss"]),
              "train_accuracy": float(m["train_accuracy"]),
              "test_accuracy": float(test["accuracy"]),
              "test_nll": float(test["nll"])}
    history.append(record)
    if on_epoch:
      on_epoch(record)
    if not math.isfinite(record["train_loss"]):
      raise DivergedError(
          f"training diverged in epoch {epoch}: the train loss is "
          f"{record['train_loss']}; try a smaller --lr (now {config.lr})")

  params = jax.device_get(state["params"])
  summary = {
      "test_accuracy": history[-1]["test_accuracy"],
      "test_nll": history[-1]["test_nll"],
      "train_loss": history[-1]["train_loss"],
      "train_accuracy": history[-1]["train_accuracy"],
      "train_seconds": train_seconds,
      "compile_seconds": compile_seconds,
      "num_params": model.num_params(params),
      "num_train": int(len(dataset.x_train)),
      "num_test": int(len(dataset.x_test)),
      "class_names": list(dataset.class_names),
      "backend": jax.default_backend(),
      "num_devices": jax.device_count(),
  }
  return Result(params=params, history=history, summary=summary)
