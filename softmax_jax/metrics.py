"""Evaluation metrics: accuracy, NLL, calibration (ECE, reliability), confusion.

All take probabilities or logits [N, K] and integer labels [N] and work on
NumPy or JAX arrays alike (jnp inside, so they can be jitted and vmapped).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

NUM_BINS = 15  # equal-width confidence bins for ECE and the reliability diagram


def confidence_bins(probs_NxK, labels_N, num_bins: int = NUM_BINS):
  """Per bin of top-1 confidence: example count, mean confidence, accuracy.

  Bin b holds confidences in (b/num_bins, (b+1)/num_bins]; the first bin also
  holds 0, and a confidence of exactly 1.0 falls in the last bin. Empty bins
  have count 0 and mean confidence and accuracy 0.
  """
  confidence_N = jnp.max(probs_NxK, axis=-1)
  correct_N = (jnp.argmax(probs_NxK, axis=-1) == labels_N).astype(jnp.float32)
  bin_N = jnp.clip(jnp.ceil(confidence_N * num_bins).astype(jnp.int32) - 1,
                   0, num_bins - 1)
  count_M = jax.ops.segment_sum(jnp.ones_like(confidence_N), bin_N, num_bins)
  safe = jnp.maximum(count_M, 1)
  mean_confidence_M = jax.ops.segment_sum(confidence_N, bin_N, num_bins) / safe
  accuracy_M = jax.ops.segment_sum(correct_N, bin_N, num_bins) / safe
  return count_M, mean_confidence_M, accuracy_M


def expected_calibration_error(probs_NxK, labels_N, num_bins: int = NUM_BINS):
  """ECE = sum_b (n_b / N) |accuracy_b - confidence_b| over equal-width bins."""
  count_M, confidence_M, accuracy_M = confidence_bins(probs_NxK, labels_N,
                                                      num_bins)
  return jnp.sum(count_M * jnp.abs(accuracy_M - confidence_M)) / jnp.sum(count_M)


def confusion_matrix(predictions_N, labels_N, num_classes: int):
  """C[i, j] = number of examples of true class i predicted as class j."""
  return jax.ops.segment_sum(
      jax.nn.one_hot(predictions_N, num_classes, dtype=jnp.int32), labels_N,
      num_classes)


def per_class_accuracy(confusion_KxK):
  """Recall of each true class: the diagonal over the row sums; NaN for a
  class with no examples, whose accuracy is undefined (not 0)."""
  count_K = jnp.sum(confusion_KxK, axis=1)
  return jnp.where(count_K > 0,
                   jnp.diag(confusion_KxK) / jnp.maximum(count_K, 1), jnp.nan)
