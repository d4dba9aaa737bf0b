"""Evaluation in chunks of rows: never more than [chunk, K] logits at once.

`evaluate` gives the scores recorded after every epoch (jit- and vmap-able
over a stack of configurations); `predict` the top-1 class and its
probability of every example, for the final report. Both walk the examples
with `map_chunks`, which neither pads nor copies the data: the chunks are as
even as can be (even_chunk), the last one the last rows, and the rows it
shares with the previous chunk are marked invalid.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from softmax_jax import losses
from softmax_jax import metrics
from softmax_jax import model
from softmax_jax.data import datasets as data_lib

CHUNK = 8192  # rows per chunk at most
TOP_K = 5  # top-5 accuracy is reported when there are more classes than this
# Logits of all configurations of a stack, per chunk: 2**24 floats (64 MiB).
_STACK_BUDGET = 2**24


def chunk_for(num_configs: int, num_classes: int, most: int = CHUNK) -> int:
  """Rows per chunk for a stack of configurations: [M, chunk, K] logits
  within the budget (between 256 and `most` rows)."""
  return int(min(most, max(256, _STACK_BUDGET // (num_configs * num_classes))))


def chunk_of(x_NxD, y_N, i, c, begin=0, end=None):
  """Chunk i of c rows of rows begin..end (all by default; begin and end
  may be traced): (x [c, D], y [c], valid [c]); y may be a pytree of
  [N, ...] arrays (e.g. labels with their weights), each chunked alike, and
  x a pair (x [N, D], the same transposed [D, N]), chunked into ([c, D],
  [D, c]) (objective.transposes). Its window of c rows ends at row N at
  the latest; valid marks its rows from begin + i c on (not already in
  chunk i - 1) and before end (a range's last chunk cut short)."""
  start = jnp.minimum(begin + i * c, untransposed(x_NxD).shape[0] - c)
  row = start + jnp.arange(c)
  valid_c = row >= begin + i * c
  if end is not None:
    valid_c = valid_c & (row < end)

  def cut(a, axis=0):
    return jax.lax.dynamic_slice_in_dim(a, start, c, axis=axis)

  x = ((cut(x_NxD[0]), cut(x_NxD[1], axis=1)) if isinstance(x_NxD, tuple)
       else cut(x_NxD))
  return x, jax.tree.map(cut, y_N), valid_c


def untransposed(x_NxD):
  """x [N, D] of a pair (x, the same transposed), or x itself."""
  return x_NxD[0] if isinstance(x_NxD, tuple) else x_NxD


def even_chunk(n: int, chunk: int) -> int:
  """The rows of each chunk when n rows are taken at most `chunk` at a
  time: as many chunks as that takes, of as equal sizes as can be, so that
  the last one repeats as few rows as can be (10,000 rows at most 1,337 at
  a time: 8 chunks of 1,250, where 8 of 1,337 computed 696 rows twice, 7 %
  of a pass)."""
  return math.ceil(n / math.ceil(n / chunk))


def map_chunks(fn, x_NxD, y_N, chunk: int = CHUNK):
  """fn(x [c, D], y [c], valid [c]) of each chunk of rows, stacked [S, ...]."""
  c = even_chunk(untransposed(x_NxD).shape[0], chunk)
  return jax.lax.map(lambda i: fn(*chunk_of(x_NxD, y_N, i, c)),
                     jnp.arange(math.ceil(untransposed(x_NxD).shape[0] / c)))


def sum_chunks(fn, x_NxD, y_N, chunk: int = CHUNK):
  """The sum over the chunks of rows of fn(x [c, D], y [c], valid [c]) (a
  pytree), accumulated in a loop: nothing of a chunk outlives it, also when
  fn takes a gradient (a full-batch gradient without an [N, K] array)."""
  c = even_chunk(untransposed(x_NxD).shape[0], chunk)
  first = fn(*chunk_of(x_NxD, y_N, 0, c))
  return jax.lax.fori_loop(
      1, math.ceil(untransposed(x_NxD).shape[0] / c),
      lambda i, total: jax.tree.map(jnp.add, total,
                                    fn(*chunk_of(x_NxD, y_N, i, c))), first)


def evaluate(params: model.Params, x_NxD, y_N, chunk: int = CHUNK,
             temperature=1.0) -> dict[str, jax.Array]:
  """Accuracy, negative log-likelihood (mean cross-entropy), ECE (15 bins)
  and, with more than TOP_K classes, top-5 accuracy, of softmax(logits /
  temperature) (see calibration.py)."""

  def sums(x, y, valid):
    logits_CxK = model.logits(params, data_lib.to_features(x)) / temperature
    w = valid.astype(jnp.float32)
    out = {
        "correct": jnp.sum(w * metrics.argmax_is(logits_CxK, y)),
        "nll": jnp.sum(w * losses.cross_entropy(logits_CxK, y)),
        # Correct as in "correct" (the logits' argmax; probabilities of
        # logits a hair apart can round to a tie).
        "calibration": metrics.binned_sums(
            jnp.max(losses.softmax(logits_CxK), axis=-1),
            metrics.argmax_is(logits_CxK, y), valid),
    }
    if logits_CxK.shape[-1] > TOP_K:
      out["top5"] = jnp.sum(w * metrics.top_k_correct(logits_CxK, y, TOP_K))
    return out

  total = jax.tree.map(lambda a: jnp.sum(a, axis=0),
                       map_chunks(sums, x_NxD, y_N, chunk))
  n = x_NxD.shape[0]
  scores = {"accuracy": total["correct"] / n, "nll": total["nll"] / n,
            "ece": metrics.ece_from_sums(*total["calibration"])}
  if "top5" in total:
    scores["top5_accuracy"] = total["top5"] / n
  return scores


def predict(params: model.Params, x_NxD, chunk: int = CHUNK,
            temperature=1.0):
  """Each row's top-1 class (int32 [N]) and its probability (float32 [N])
  under softmax(logits / temperature), as chunks: (classes [S, c],
  probabilities [S, c], valid [S, c]); the valid entries, in order, are the
  N rows (see `rows`)."""

  def top1(x, y, valid):
    del y
    logits_CxK = model.logits(params, data_lib.to_features(x)) / temperature
    # The class of the logits (as accuracy counts it): a temperature cannot
    # change it, though probabilities a hair apart may round to a tie.
    return (jnp.argmax(logits_CxK, -1),
            jnp.max(losses.softmax(logits_CxK), -1), valid)

  return map_chunks(top1, x_NxD, jnp.zeros(x_NxD.shape[0], jnp.int32), chunk)


def rows(chunked, valid_SxC):
  """The per-row values of `predict`'s chunks, in order ([N] from [S, c])."""
  return chunked[valid_SxC]
