"""Stable log-softmax / softmax and the per-example losses of softmax
regression.

Every loss maps logits [B, K] and integer labels [B] to a per-example loss [B];
the caller takes the mean. Cross-entropy works on the logits; the regression
losses (l2, l1, huber) compare the one-hot code y with the softmax
probabilities p, or, with `loss_input="logits"`, with the raw logits o (the
"regress the one-hot code" variant).

Each function is jitted where it is defined, as jax.nn's are: called
eagerly (a notebook, a test), it is one compiled program instead of one per
operation (~30 ms each on a CPU); inside a jitted program it is inlined
(the d2l run's and an L-BFGS fit's weights were the same, bit for bit,
with and without: 2026-12-05).
"""

from __future__ import annotations

import functools
from typing import Protocol

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

LOSS_INPUTS = ("probs", "logits")
# Regression losses compare values in [0, 1]: with delta >= 1 Huber on
# probabilities is exactly L2, so the default keeps its linear part in play.
DEFAULT_HUBER_DELTA = 0.1


@jax.jit
def log_softmax(logits_BxK: jax.Array) -> jax.Array:
  """log p = o - max(o) - log sum exp(o - max(o)): finite for any finite o
  whose spread max(o) - min(o) is finite in its dtype (else -inf there)."""
  shifted = logits_BxK - jax.lax.stop_gradient(
      jnp.max(logits_BxK, axis=-1, keepdims=True))
  return shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=-1, keepdims=True))


@jax.jit
def softmax(logits_BxK: jax.Array) -> jax.Array:
  """p = exp(o - max(o)) / sum exp(o - max(o)); rows sum to 1."""
  shifted = logits_BxK - jax.lax.stop_gradient(
      jnp.max(logits_BxK, axis=-1, keepdims=True))
  e = jnp.exp(shifted)
  return e / jnp.sum(e, axis=-1, keepdims=True)


@functools.partial(jax.jit, static_argnames="num_classes")
def one_hot(labels_B: jax.Array, num_classes: int) -> jax.Array:
  return jax.nn.one_hot(labels_B, num_classes, dtype=jnp.float32)


def _check(logits_BxK: jax.Array, labels_B: jax.Array) -> None:
  if logits_BxK.ndim != 2 or labels_B.shape != logits_BxK.shape[:1]:
    raise ValueError(f"expected logits [B, K] and labels [B], got "
                     f"{logits_BxK.shape} and {labels_B.shape}")
  if not jnp.issubdtype(labels_B.dtype, jnp.integer):
    raise TypeError(f"labels must be integers, got {labels_B.dtype}")


@functools.partial(jax.jit, static_argnames="loss_input")
def cross_entropy(logits_BxK, labels_B, *, huber_delta=None, loss_input=None):
  """-log p_y = logsumexp(o) - o_y. Its gradient in o is p - onehot(y).

  `huber_delta` and `loss_input` are accepted for a uniform signature and
  ignored: cross-entropy is always taken on the logits.
  """
  del huber_delta, loss_input
  _check(logits_BxK, labels_B)
  log_p = log_softmax(logits_BxK)
  # A one-hot select rather than take_along_axis: the same values, and its
  # gradient is elementwise where take_along_axis's is a scatter (~1 ms of a
  # 24 ms epoch on 2 CPU cores). A select, not a product: another class's
  # log p is -inf when the logits' spread overflows float32, and -inf * 0
  # would be NaN.
  is_label_BxK = labels_B[:, None] == jnp.arange(logits_BxK.shape[-1])
  return -jnp.sum(jnp.where(is_label_BxK, log_p, 0.0), axis=-1)


def _residual(logits_BxK, labels_B, loss_input):
  """z - y where z is p (probs) or o (logits) and y the one-hot code."""
  _check(logits_BxK, labels_B)
  if loss_input not in LOSS_INPUTS:
    raise ValueError(f"loss_input must be one of {LOSS_INPUTS}, got "
                     f"{loss_input!r}")
  z = softmax(logits_BxK) if loss_input == "probs" else logits_BxK
  return z - one_hot(labels_B, logits_BxK.shape[-1])


@functools.partial(jax.jit, static_argnames="loss_input")
def squared_error(logits_BxK, labels_B, *, huber_delta=None,
                  loss_input="probs"):
  """L2: sum_k (z_k - y_k)^2 / 2, as d2l's squared_loss."""
  del huber_delta
  r = _residual(logits_BxK, labels_B, loss_input)
  return 0.5 * jnp.sum(r * r, axis=-1)


@functools.partial(jax.jit, static_argnames="loss_input")
def absolute_error(logits_BxK, labels_B, *, huber_delta=None,
                   loss_input="probs"):
  """L1: sum_k |z_k - y_k|."""
  del huber_delta
  r = _residual(logits_BxK, labels_B, loss_input)
  return jnp.sum(jnp.abs(r), axis=-1)


@functools.partial(jax.jit, static_argnames="loss_input")
def huber(logits_BxK, labels_B, *, huber_delta=DEFAULT_HUBER_DELTA,
          loss_input="probs"):
  """sum_k h(z_k - y_k): h(r) = r^2/2 for |r| <= delta, else
  delta (|r| - delta/2).

  Quadratic near the target like L2, linear far from it like L1 (scaled by
  delta). `huber_delta` may be a traced value.
  """
  r = jnp.abs(_residual(logits_BxK, labels_B, loss_input))
  quadratic = jnp.minimum(r, huber_delta)
  return jnp.sum(0.5 * quadratic**2 + huber_delta * (r - quadratic), axis=-1)


class Loss(Protocol):

  def __call__(self, logits_BxK: ArrayLike, labels_B: ArrayLike, *,
               huber_delta: float | jax.Array = ..., loss_input: str = ...
               ) -> jax.Array:
    ...


LOSSES: dict[str, Loss] = {
    "xent": cross_entropy,
    "l2": squared_error,
    "l1": absolute_error,
    "huber": huber,
}
