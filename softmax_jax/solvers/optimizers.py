"""The OPTIMIZERS registry: optax transformations with traced hyperparameters,
and the SCHEDULES of the learning rate.

The learning rate and weight decay live in the optimizer state
(`optax.inject_hyperparams`), so they are values, not compile-time constants:
changing them does not recompile, and a sweep can vmap over them. A schedule
multiplies each step's update by a factor in [0, 1] of the step count, so it
applies to any learning rate of the sweep.
"""

from __future__ import annotations

import jax
import optax

MOMENTUM = 0.9


def decayed(params):
  """Weight decay shrinks the weights, not the biases (as d2l's weight decay):
  True for each leaf it applies to."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: getattr(path[-1], "key", None) != "b", params)


def _with_weight_decay(make):
  def build(learning_rate, weight_decay):
    return optax.chain(
        optax.add_decayed_weights(weight_decay, mask=decayed),
        make(learning_rate))
  return optax.inject_hyperparams(build)


OPTIMIZERS = {
    "sgd": _with_weight_decay(optax.sgd),
    "momentum": _with_weight_decay(lambda lr: optax.sgd(lr, momentum=MOMENTUM)),
    "adam": _with_weight_decay(optax.adam),
}


def _warmup_cosine(total: int):
  warmup = min(max(1, total // 20), total - 1)  # a run of one step: none
  if warmup == 0:
    return optax.cosine_decay_schedule(1.0, total)
  return optax.warmup_cosine_decay_schedule(0.0, 1.0, warmup, total)


# Factor of the learning rate at step t of `total` steps.
SCHEDULES = {
    "constant": lambda total: optax.constant_schedule(1.0),
    # 1 -> 0 along half a cosine (Loshchilov & Hutter, 2017).
    "cosine": lambda total: optax.cosine_decay_schedule(1.0, total),
    # Linear from 0 up to 1 in the first 5% of the steps, then cosine to 0.
    "warmup_cosine": _warmup_cosine,
}


def make_optimizer(name: str, learning_rate: float | jax.Array,
                   weight_decay: float | jax.Array = 0.0,
                   schedule: str = "constant",
                   total_steps: int = 1) -> optax.GradientTransformation:
  """The named optimizer; weight decay adds weight_decay * W to W's gradient;
  the learning rate follows `schedule` over `total_steps` steps."""
  tx = OPTIMIZERS[name](learning_rate=learning_rate, weight_decay=weight_decay)
  if schedule == "constant":
    return tx
  return optax.chain(tx,
                     optax.scale_by_schedule(SCHEDULES[schedule](total_steps)))
