"""Calibration and confusion: hand-made cases with known answers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from softmax_jax import compilation
from softmax_jax import metrics


def _probs(confidences, predicted, k=3):
  """Rows whose top class is `predicted` with the given confidence."""
  rows = []
  for c, p in zip(confidences, predicted, strict=True):
    row = np.full(k, (1 - c) / (k - 1))
    row[p] = c
    rows.append(row)
  return np.array(rows, np.float32)


@pytest.mark.slow
def test_perfectly_calibrated_is_zero():
  # 10 predictions at confidence 0.7 with 7 right; 10 at 0.9 with 9 right.
  conf = [0.7] * 10 + [0.9] * 10
  pred = [0] * 20
  labels = [0] * 7 + [1] * 3 + [0] * 9 + [2]
  ece = metrics.expected_calibration_error(_probs(conf, pred), np.array(labels))
  assert float(ece) == pytest.approx(0.0, abs=1e-6)


def test_confident_and_wrong_is_large():
  probs = _probs([0.99] * 8, [0] * 8)
  ece = metrics.expected_calibration_error(probs, np.ones(8, np.int32))
  assert float(ece) == pytest.approx(0.99, abs=1e-6)


def test_hand_computed_mixture():
  # Bin of 0.6 (4 examples, 2 right: gap 0.1); bin of 0.95 (4 examples, all
  # right: gap 0.05).
  probs = _probs([0.6] * 4 + [0.95] * 4, [0] * 8)
  labels = np.array([0, 0, 1, 1, 0, 0, 0, 0])
  ece = metrics.expected_calibration_error(probs, labels)
  assert float(ece) == pytest.approx(0.5 * 0.1 + 0.5 * 0.05, abs=1e-6)


def test_confidence_one_goes_in_the_last_bin():
  probs = np.array([[1.0, 0.0], [1.0, 0.0]], np.float32)
  count, confidence, accuracy = metrics.confidence_bins(probs, np.array([0, 1]))
  assert count.tolist() == [0.0] * 14 + [2.0]
  assert float(confidence[-1]) == 1.0 and float(accuracy[-1]) == 0.5
  assert float(metrics.expected_calibration_error(probs, np.array([0, 1]))) == \
      pytest.approx(0.5)


@pytest.mark.slow
def test_bins_are_equal_width():
  probs = _probs([0.5, 0.99, 0.34, 0.2], [0, 0, 0, 0], k=20)
  count, _, _ = metrics.confidence_bins(probs, np.zeros(4, np.int32))
  # 0.5 in (7/15, 8/15], 0.99 in (14/15, 1], 0.34 in (5/15, 6/15], 0.2 in
  # (2/15, 3/15]
  assert np.nonzero(np.asarray(count))[0].tolist() == [2, 5, 7, 14]


def test_confusion_matrix_against_a_hand_count():
  labels = np.array([0, 0, 1, 1, 1, 2])
  predicted = np.array([0, 1, 1, 1, 2, 0])
  c = np.asarray(metrics.confusion_matrix(predicted, labels, 3))
  assert c.tolist() == [[1, 1, 0], [0, 2, 1], [1, 0, 0]]
  np.testing.assert_allclose(metrics.per_class_accuracy(c), [0.5, 2 / 3, 0.0])


def test_a_class_without_examples_has_no_accuracy():
  """Class 2 is never the true class: undefined, not 0% (it is predicted
  once)."""
  labels = np.array([0, 0, 1, 1])
  predicted = np.array([0, 2, 1, 1])
  c = np.asarray(metrics.confusion_matrix(predicted, labels, 3))
  accuracy = np.asarray(metrics.per_class_accuracy(c))
  np.testing.assert_allclose(accuracy[:2], [0.5, 1.0])
  assert np.isnan(accuracy[2])


@pytest.mark.slow
def test_argmax_is_argmax_with_its_ties():
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.integers(0, 3, (2000, 7)).astype(np.float32))  # ties
  labels = jnp.asarray(rng.integers(0, 7, 2000))
  np.testing.assert_array_equal(metrics.argmax_is(logits, labels),
                                jnp.argmax(logits, -1) == labels)


@pytest.mark.slow
def test_metrics_jit_and_vmap():
  probs = jax.nn.softmax(jax.random.normal(jax.random.key(0), (4, 50, 5)), -1)
  labels = jax.random.randint(jax.random.key(1), (50,), 0, 5)
  ece = jax.jit(jax.vmap(metrics.expected_calibration_error,
                         in_axes=(0, None)))(probs, labels)
  for m in range(4):
    assert float(ece[m]) == pytest.approx(
        float(metrics.expected_calibration_error(probs[m], labels)), rel=1e-5)


def test_calibration_sums_add_in_a_fixed_order(monkeypatch):
  """Off a CPU, the bins are summed without a scatter-add, which a GPU adds
  in no fixed order (atomics: the same model's ECE could differ between two
  evaluations in its last digit); both ways equal the sums by hand."""
  rng = np.random.default_rng(0)
  confidence, correct = rng.uniform(0, 1, 500), rng.uniform(0, 1, 500) < 0.6
  valid = rng.uniform(0, 1, 500) < 0.9
  bins = np.clip(np.ceil(confidence * metrics.NUM_BINS) - 1, 0,
                 metrics.NUM_BINS - 1).astype(np.int32)
  values = np.stack([valid, confidence * valid, correct * valid]
                    ).astype(np.float32)
  ordered = jax.jit(metrics.sums_in_fixed_order, static_argnums=2)
  assert "scatter" not in ordered.lower(
      values, bins, metrics.NUM_BINS).compile().as_text()
  monkeypatch.setattr(compilation, "on_cpu", lambda: False)  # (traced anew)
  assert "scatter" not in jax.jit(metrics.binned_sums.__wrapped__).lower(
      confidence, correct, valid).compile().as_text()
  monkeypatch.undo()
  for sums in (ordered(values, bins, metrics.NUM_BINS),
               np.stack(metrics.binned_sums(confidence, correct, valid))):
    for b in range(metrics.NUM_BINS):
      here = valid & (bins == b)
      assert sums[0, b] == here.sum()
      np.testing.assert_allclose(sums[1, b], confidence[here].sum(),
                                 rtol=1e-5)
      assert sums[2, b] == correct[here].sum()
