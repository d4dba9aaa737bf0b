"""The OPTIMIZERS registry: optax transformations with traced hyperparameters,
and the SCHEDULES of the learning rate.

The learning rate and weight decay live in the optimizer state
(`optax.inject_hyperparams`), so they are values, not compile-time constants:
changing them does not recompile, and a sweep can vmap over them. A schedule
multiplies each step's update by a factor in [0, 1] of the step count, so it
applies to any learning rate of the sweep.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

MOMENTUM = 0.9
ADAM_B2, ADAM_EPS = 0.999, 1e-8  # optax.adam's defaults


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


def soft_threshold(w, threshold):
  """The proximal operator of threshold ||w||_1: sign(w) max(|w| -
  threshold, 0), entry by entry (exact zeros below the threshold)."""
  return jnp.sign(w) * jnp.maximum(jnp.abs(w) - threshold, 0.0)


class ProximalL1State(NamedTuple):
  steps: jax.Array  # taken
  threshold: jax.Array  # lr lambda rho: a value, as inject_hyperparams's
  inner: optax.OptState  # the optimizer's own


def with_proximal_l1(tx: optax.GradientTransformation, threshold, factor,
                     adaptive: bool) -> optax.GradientTransformation:
  """tx, each step ended by the proximal step of an L1 penalty: the update
  lands each decayed entry (W, not b) at soft_threshold(W + u, t), u tx's
  update, t = threshold factor(step) (threshold = lr lambda rho): proximal
  SGD, weights whose steps stay below t exactly 0 after every step. With
  `adaptive` (Adam), t is divided by Adam's own scale of the entry,
  sqrt(v_hat) + eps, as its step is: the proximal step in Adam's metric."""
  def init(params):
    return ProximalL1State(jnp.zeros([], jnp.int32),
                           jnp.asarray(threshold, jnp.float32),
                           tx.init(params))

  def update(updates, state, params):
    updates, inner = tx.update(updates, state.inner, params)
    t = state.threshold * factor(state.steps)
    if adaptive:  # (optax.adam's b2 and eps)
      nu = optax.tree_utils.tree_get(inner, "nu")
      correction = 1 - ADAM_B2**(state.steps + 1).astype(jnp.float32)
      t = jax.tree.map(lambda v: t / (jnp.sqrt(v / correction) + ADAM_EPS),
                       nu)
    else:
      t = jax.tree.map(lambda _: t, params)
    updates = jax.tree.map(
        lambda u, p, t, on: soft_threshold(p + u, t) - p if on else u,
        updates, params, t, decayed(params))
    return updates, ProximalL1State(state.steps + 1, state.threshold, inner)

  return optax.GradientTransformation(init, update)


def make_optimizer(name: str, learning_rate: float | jax.Array,
                   weight_decay: float | jax.Array = 0.0,
                   schedule: str = "constant",
                   total_steps: int = 1,
                   l1: float | jax.Array | None = None
                   ) -> optax.GradientTransformation:
  """The named optimizer; weight decay adds weight_decay * W to W's gradient;
  the learning rate follows `schedule` over `total_steps` steps; l1 (an L1
  penalty's lambda rho): each step ends with its proximal step."""
  tx = OPTIMIZERS[name](learning_rate=learning_rate, weight_decay=weight_decay)
  factor = (optax.constant_schedule(1.0) if schedule == "constant"
            else SCHEDULES[schedule](total_steps))
  if schedule != "constant":
    tx = optax.chain(tx, optax.scale_by_schedule(factor))
  if l1 is None:
    return tx
  return with_proximal_l1(tx, learning_rate * l1, factor, name == "adam")
