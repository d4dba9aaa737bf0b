"""Evaluation in chunks, top-5 accuracy, and many classes end to end."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from softmax_jax import evaluation
from softmax_jax import losses
from softmax_jax import metrics


def _problem(n=50, d=6, k=12, seed=0):
  rng = np.random.default_rng(seed)
  params = {"w": jnp.asarray(rng.normal(0, 1, (d, k)), jnp.float32),
            "b": jnp.asarray(rng.normal(0, 1, k), jnp.float32)}
  x = rng.normal(0, 1, (n, d)).astype(np.float32)
  y = rng.integers(0, k, n).astype(np.int32)
  return params, x, y


@pytest.mark.slow
@pytest.mark.gpu_smoke
@pytest.mark.parametrize("chunk", [1, 7, 16, 50, 1000])
def test_chunked_evaluation_equals_unchunked(chunk):
  params, x, y = _problem()
  # (in float64 on the host: x @ params["w"] would be a JAX product, on a
  # GPU at its default TF32, ~1e-3 off)
  logits = (x.astype(np.float64) @ np.asarray(params["w"], np.float64)
            + np.asarray(params["b"], np.float64))
  probs = np.asarray(losses.softmax(jnp.asarray(logits, jnp.float32)))
  expected = {
      "accuracy": np.mean(logits.argmax(-1) == y),
      "nll": np.mean(np.log(np.exp(logits - logits.max(-1, keepdims=True))
                            .sum(-1))
                     + logits.max(-1) - logits[np.arange(len(y)), y]),
      "ece": float(metrics.expected_calibration_error(probs, y)),
      "top5_accuracy": np.mean([(logits[i] > logits[i, y[i]]).sum() < 5
                                for i in range(len(y))]),
  }
  # (float32 products: a GPU's default is TF32, ~1e-3 off; a run computes
  # at --matmul_precision's highest)
  with jax.default_matmul_precision("highest"):
    scores = jax.jit(evaluation.evaluate, static_argnames="chunk")(
        params, x, y, chunk=chunk)
    classes, confidence, valid = jax.device_get(
        evaluation.predict(params, x, chunk=chunk))
  assert set(scores) == set(expected)
  for name, value in expected.items():
    assert float(scores[name]) == pytest.approx(value, rel=1e-5, abs=1e-6), name
  np.testing.assert_array_equal(evaluation.rows(classes, valid),
                                logits.argmax(-1))
  np.testing.assert_allclose(evaluation.rows(confidence, valid),
                             probs.max(-1), rtol=1e-6)


def test_chunks_are_as_many_as_needed_and_of_even_sizes():
  """evaluation.even_chunk: the fewest chunks of at most `chunk` rows, of
  sizes that leave the last one repeating fewer rows than there are
  chunks."""
  assert evaluation.even_chunk(10_000, 1_337) == 1_250
  for n in range(1, 300):
    for chunk in (1, 7, 64, 256):
      c = evaluation.even_chunk(n, chunk)
      assert c <= min(n, chunk)
      assert math.ceil(n / c) == math.ceil(n / chunk)
      assert math.ceil(n / c) * c - n < math.ceil(n / c)


def test_few_classes_have_no_top5():
  params, x, y = _problem(k=5)
  assert "top5_accuracy" not in evaluation.evaluate(params, x, y)


def test_top_k_on_hand_made_logits():
  """Ranked as argsort ranks them: a tie goes to the lower index."""
  logits = jnp.array([[5.0, 4, 3, 2, 1, 0],   # label 4: 4 higher -> in top 5
                      [0.0, 1, 2, 3, 4, 5],   # label 0: 5 higher -> not
                      [1.0, 1, 1, 1, 1, 1],   # all tied, label 3: 4th -> in
                      [1.0, 1, 1, 1, 1, 1],   # all tied, label 5: 6th -> not
                      [0.0, 0, 9, 0, 0, 0]])  # label 5: 6th of the tie -> not
  labels = jnp.array([4, 0, 3, 5, 5])
  correct = metrics.top_k_correct(logits, labels, 5)
  assert correct.tolist() == [True, False, True, False, False]
  rank = np.argsort(np.argsort(-np.asarray(logits), axis=1, kind="stable"),
                    axis=1)[np.arange(5), labels]
  assert correct.tolist() == (rank < 5).tolist()
  for k in (1, 2):
    assert metrics.top_k_correct(logits, labels, k).tolist() == (
        rank < k).tolist()
  assert metrics.top_k_correct(logits, labels, 1).tolist() == (
      metrics.argmax_is(logits, labels).tolist())


def test_nan_logits_are_never_correct():
  """A diverged model's scores: NaN anywhere in a row is no correct top-k
  (NaN compares false, so a count of "higher" classes would say 0)."""
  logits = jnp.array([[np.nan] * 6, [0.0, np.nan, 0, 0, 0, 0],
                      [9.0, 0, 0, 0, 0, np.nan]])
  labels = jnp.array([2, 0, 0])
  assert metrics.top_k_correct(logits, labels, 5).tolist() == [
      False, True, True]
  params = {"w": jnp.full((3, 6), jnp.nan), "b": jnp.zeros(6)}
  scores = evaluation.evaluate(params, jnp.ones((4, 3)),
                               jnp.array([0, 1, 2, 3]))
  assert float(scores["top5_accuracy"]) == 0.0
  assert float(scores["accuracy"]) == 0.0


@pytest.mark.slow
def test_predictions_are_the_logits_argmax_at_any_temperature():
  """Logits 1e-8 apart have equal probabilities in float32 (at T = 50):
  the prediction is still the logits' argmax, as accuracy counts it."""
  params = {"w": jnp.zeros((1, 3)), "b": jnp.array([0.0, 1e-6, -1.0])}
  x = jnp.ones((2, 1))
  for t in (1.0, 50.0):
    classes, _, valid = evaluation.predict(params, x, temperature=t)
    assert evaluation.rows(classes, valid).tolist() == [1, 1]
    scores = evaluation.evaluate(params, x, jnp.array([1, 1]), temperature=t)
    assert float(scores["accuracy"]) == 1.0
    # The calibration counts them correct too: ECE = 1 - confidence.
    confidence = float(losses.softmax(params["b"][None] / t)[0, 1])
    assert float(scores["ece"]) == pytest.approx(1 - confidence, rel=1e-5)


def test_the_chunk_fits_the_stack():
  assert evaluation.chunk_for(1, 10) == evaluation.CHUNK
  assert evaluation.chunk_for(64, 1000) == 262  # 64 x 262 x 1000 < 2**24
  assert evaluation.chunk_for(1024, 1000) == 256  # never below 256 rows
  # At most `most` rows (a thin stack's whole pass: objective.transposes).
  assert evaluation.chunk_for(1, 10, most=60_000) == 60_000
  assert evaluation.chunk_for(1, 10, most=10**7) == 2**24 // 10


@pytest.mark.slow
@pytest.mark.gpu_smoke
def test_many_classes_end_to_end(tmp_path, capsys):
  """500 classes: training, report, figures, eval and predict, with
  summaries instead of 500 lines and a 500 x 500 dump."""
  from softmax_jax import runner  # pylint: disable=g-import-not-at-top
  from softmax_jax.config import Config  # pylint: disable=g-import-not-at-top
  k, rng = 500, np.random.default_rng(0)
  prototypes = rng.integers(0, 256, (k, 16))

  def sample(n):
    y = rng.integers(0, k, n)
    x = np.clip(prototypes[y] + rng.normal(0, 25, (n, 16)), 0, 255)
    return x.astype(np.uint8).reshape(n, 4, 4), y

  (x_train, y_train), (x_test, y_test) = sample(4000), sample(1000)
  path = tmp_path / "many.npz"
  np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
           class_names=np.array([f"c{i}" for i in range(k)]))
  workdir = tmp_path / "run"
  summary = runner.run(Config(dataset=f"npz:{path}", optimizer="adam", lr=0.05,
                              epochs=5, batch_size=100), workdir)
  out = capsys.readouterr().out
  assert summary["test_top5_accuracy"] >= summary["test_accuracy"] > 0.3
  assert ("confusion_matrix" not in summary
          and len(summary["per_class_accuracy"]) == k)
  assert len(summary["weakest_classes"]) == 10 and summary["most_confused"]
  confusion = np.load(workdir / "confusion.npy")
  assert confusion.shape == (k, k) and confusion.sum() == len(y_test)
  assert np.trace(confusion) == round(summary["test_accuracy"] * len(y_test))
  weakest = summary["weakest_classes"][0]
  assert weakest["accuracy"] == min(
      a for a in summary["per_class_accuracy"].values() if a is not None)
  assert len(out.splitlines()) < 60  # not a line per class
  report = (workdir / "report.md").read_text()
  assert "weakest of 500 classes" in report and "test top-5 accuracy" in report
  for name in ("confusion.png", "reliability.png", "predictions.png",
               "weights.png"):
    assert (workdir / name).stat().st_size > 0
  records = [json.loads(line) for line in
             (workdir / "metrics.jsonl").read_text().splitlines()]
  assert all("test_top5_accuracy" in r for r in records)
  assert runner.evaluate(workdir, verbose=False)["test_accuracy"] == (
      summary["test_accuracy"])
  npy = tmp_path / "three.npy"
  np.save(npy, x_test[:3])
  predicted = runner.predict(workdir, [str(npy)], top=5)
  assert [len(top) for _, top in predicted] == [5, 5, 5]


def test_eval_every_evaluates_every_nth_and_the_last_epoch():
  from conftest import synthetic_dataset  # pylint: disable=g-import-not-at-top
  from softmax_jax import train  # pylint: disable=g-import-not-at-top
  from softmax_jax.config import Config  # pylint: disable=g-import-not-at-top
  from softmax_jax.data import datasets  # pylint: disable=g-import-not-at-top
  ds = datasets.hold_out_validation(synthetic_dataset(), 0.25)
  every = train.train_configs([Config(batch_size=32, epochs=7, lr=0.3,
                                      eval_every=3)], ds).runs[0]
  assert [r["epoch"] for r in every.history
          if "test_accuracy" in r] == [3, 6, 7]
  assert all("val_accuracy" in r for r in every.history
             if r["epoch"] in (3, 6, 7))
  assert all(set(r) == {"epoch", "train_loss", "train_accuracy"}
             | ({"start_loss"} if r["epoch"] == 1 else set())
             for r in every.history if r["epoch"] not in (3, 6, 7))
  each = train.train_configs([Config(batch_size=32, epochs=7, lr=0.3)],
                             ds).runs[0]
  assert each.history[-1] == every.history[-1]  # the same training
  np.testing.assert_array_equal(each.params["w"], every.params["w"])
