"""Softmax regression: one linear layer o = xW + b; softmax turns o into p."""

from __future__ import annotations

import jax
import jax.numpy as jnp

Params = dict[str, jax.Array]  # {"w": [D, K], "b": [K]}


def init_params(key: jax.Array, num_features: int, num_classes: int,
                init_scale: float = 0.01) -> Params:
  """W ~ N(0, init_scale^2), b = 0, as in d2l ch. 3."""
  w_DxK = init_scale * jax.random.normal(key, (num_features, num_classes),
                                         jnp.float32)
  return {"w": w_DxK, "b": jnp.zeros((num_classes,), jnp.float32)}


def logits(params: Params, x_BxD: jax.Array) -> jax.Array:
  """o = xW + b, shape [B, K]."""
  return x_BxD @ params["w"] + params["b"]


def num_params(params: Params) -> int:
  return sum(int(p.size) for p in jax.tree.leaves(params))
