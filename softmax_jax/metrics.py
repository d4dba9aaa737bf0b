"""Evaluation metrics: accuracy, NLL, calibration (ECE, reliability), confusion.

All take probabilities or logits [N, K] and integer labels [N] and work on
NumPy or JAX arrays alike. Each is jitted where it is defined (its integer
options static), as losses' are: one compiled program when called eagerly,
inlined in a jitted caller; they vmap.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from softmax_jax import compilation

NUM_BINS = 15  # equal-width confidence bins for ECE and the reliability diagram


@functools.partial(jax.jit, static_argnames="num_bins")
def calibration_sums(probs_NxK, labels_N, valid_N=None,
                     num_bins: int = NUM_BINS):
  """Per bin of top-1 confidence: example count, sum of confidences and of
  correct predictions (see binned_sums)."""
  return binned_sums(jnp.max(probs_NxK, axis=-1),
                     argmax_is(probs_NxK, labels_N), valid_N, num_bins)


@functools.partial(jax.jit, static_argnames="num_bins")
def binned_sums(confidence_N, correct_N, valid_N=None,
                num_bins: int = NUM_BINS):
  """Per bin of top-1 confidence: example count, sum of confidences and of
  correct predictions; rows where valid_N is False count nowhere. Sums add
  up over chunks of rows.

  Bin b holds confidences in (b/num_bins, (b+1)/num_bins]; the first bin also
  holds 0, and a confidence of exactly 1.0 falls in the last bin.
  """
  confidence_N = jnp.asarray(confidence_N, jnp.float32)
  correct_N = jnp.asarray(correct_N, jnp.float32)
  weight_N = (jnp.ones_like(confidence_N) if valid_N is None
              else valid_N.astype(jnp.float32))
  bin_N = jnp.clip(jnp.ceil(confidence_N * num_bins).astype(jnp.int32) - 1,
                   0, num_bins - 1)
  values = (weight_N, confidence_N * weight_N, correct_N * weight_N)
  if compilation.on_cpu():  # (a CPU adds a scatter's updates in
    return tuple(jax.ops.segment_sum(  # order: the fastest, smallest way)
        v, bin_N, num_bins) for v in values)
  return tuple(sums_in_fixed_order(jnp.stack(values), bin_N, num_bins))


def sums_in_fixed_order(values_VxN, bin_N, num_bins: int):
  """The sums of values [V, N] in each of num_bins bins [V, num_bins], in
  an order fixed by the program: a masked sum a bin at a time. (A
  scatter-add, segment_sum, is added on a GPU in no fixed order, by
  atomics: two evaluations of the same model on an H100 gave ECEs one
  rounding apart, 2026-12-05. A bin at a time, since a mask of every bin at
  once is [N, num_bins] per configuration: for a stack of 1,024 two-class
  models, 1.75 GB of temporaries against 0.38 GB.)"""
  return jax.lax.map(
      lambda b: jnp.sum(jnp.where(bin_N == b, values_VxN, 0.0), axis=-1),
      jnp.arange(num_bins)).T


@jax.jit
def bins_from_sums(count_M, confidence_sum_M, correct_sum_M):
  """(count, mean confidence, accuracy) per bin; empty bins have 0 and 0."""
  safe = jnp.maximum(count_M, 1)
  return count_M, confidence_sum_M / safe, correct_sum_M / safe


@jax.jit
def ece_from_sums(count_M, confidence_sum_M, correct_sum_M):
  """ECE = sum_b |correct_b - confidence_b| / N, from calibration_sums."""
  return (jnp.sum(jnp.abs(correct_sum_M - confidence_sum_M))
          / jnp.maximum(jnp.sum(count_M), 1))


@functools.partial(jax.jit, static_argnames="num_bins")
def confidence_bins(probs_NxK, labels_N, num_bins: int = NUM_BINS):
  """Per bin of top-1 confidence: example count, mean confidence, accuracy
  (see calibration_sums for the bins). Empty bins have count 0 and mean
  confidence and accuracy 0."""
  return bins_from_sums(*calibration_sums(probs_NxK, labels_N, None, num_bins))


@functools.partial(jax.jit, static_argnames="num_bins")
def expected_calibration_error(probs_NxK, labels_N, num_bins: int = NUM_BINS):
  """ECE = sum_b (n_b / N) |accuracy_b - confidence_b| over equal-width bins."""
  return ece_from_sums(*calibration_sums(probs_NxK, labels_N, None, num_bins))


@jax.jit
def argmax_is(logits_NxK, labels_N):
  """argmax(logits) == label, ties to the first index as argmax, without
  argmax: XLA's argmax on a CPU (a variadic reduction) cost 0.15-0.4 s of a
  2 s epoch at K = 1,000; one max and one masked any cost nearly nothing."""
  label_logit_N = jnp.take_along_axis(logits_NxK, labels_N[:, None],
                                      axis=-1)[:, 0]
  top_N = jnp.max(logits_NxK, axis=-1)
  earlier_NxK = jnp.arange(logits_NxK.shape[-1]) < labels_N[:, None]
  return (label_logit_N >= top_N) & ~jnp.any(
      earlier_NxK & (logits_NxK >= top_N[:, None]), axis=-1)


@functools.partial(jax.jit, static_argnames="k")
def top_k_correct(logits_NxK, labels_N, k: int):
  """Whether the label is among the k highest logits, ranked as argmax and
  argsort rank them (a tie goes to the lower index, so k = 1 is argmax_is):
  fewer than k classes are ahead of it. A NaN logit is ahead of every class,
  so a row with one in the label's place is wrong. No sort needed."""
  label_logit_Nx1 = jnp.take_along_axis(logits_NxK, labels_N[:, None],
                                        axis=-1)
  earlier_NxK = jnp.arange(logits_NxK.shape[-1]) < labels_N[:, None]
  ahead_NxK = ~(logits_NxK <= label_logit_Nx1) | (
      earlier_NxK & (logits_NxK == label_logit_Nx1))
  return jnp.sum(ahead_NxK, axis=-1) < k


@functools.partial(jax.jit, static_argnames="num_classes")
def confusion_matrix(predictions_N, labels_N, num_classes: int):
  """C[i, j] = number of examples of true class i predicted as class j
  (counted by cell: no [N, K] one-hot array)."""
  cell_N = jnp.asarray(labels_N) * num_classes + jnp.asarray(predictions_N)
  return jax.ops.segment_sum(jnp.ones_like(cell_N), cell_N,
                             num_classes * num_classes).reshape(
                                 num_classes, num_classes)


@jax.jit
def per_class_accuracy(confusion_KxK):
  """Recall of each true class: the diagonal over the row sums; NaN for a
  class with no examples, whose accuracy is undefined (not 0)."""
  count_K = jnp.sum(confusion_KxK, axis=1)
  return jnp.where(count_K > 0,
                   jnp.diag(confusion_KxK) / jnp.maximum(count_K, 1), jnp.nan)
