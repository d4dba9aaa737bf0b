"""The OPTIMIZERS registry: optax transformations with traced hyperparameters.

The learning rate and weight decay live in the optimizer state
(`optax.inject_hyperparams`), so they are values, not compile-time constants:
changing them does not recompile, and a sweep can vmap over them.
"""

from __future__ import annotations

import jax
import optax

MOMENTUM = 0.9


def _decay_weights_only(params):
  """Weight decay shrinks the weights, not the biases (as d2l's weight decay)."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: getattr(path[-1], "key", None) != "b", params)


def _with_weight_decay(make):
  def build(learning_rate, weight_decay):
    return optax.chain(
        optax.add_decayed_weights(weight_decay, mask=_decay_weights_only),
        make(learning_rate))
  return optax.inject_hyperparams(build)


OPTIMIZERS = {
    "sgd": _with_weight_decay(optax.sgd),
    "momentum": _with_weight_decay(lambda lr: optax.sgd(lr, momentum=MOMENTUM)),
    "adam": _with_weight_decay(optax.adam),
}


def make_optimizer(name: str, learning_rate: float,
                   weight_decay: float = 0.0) -> optax.GradientTransformation:
  """The named optimizer; weight decay adds weight_decay * W to W's gradient."""
  return OPTIMIZERS[name](learning_rate=learning_rate, weight_decay=weight_decay)
