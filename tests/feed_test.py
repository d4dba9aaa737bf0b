"""Streaming minibatches from host memory trains exactly as a resident set."""

import dataclasses

import jax
import numpy as np
import pytest

from conftest import synthetic_dataset
from softmax_jax import config as config_lib
from softmax_jax import runner
from softmax_jax import train
from softmax_jax.data import feed as feed_lib
from softmax_jax.solvers import minibatch

# 3,000 x 64 uint8 features are 192,000 bytes: streamed under 0.0001 GiB
# (107,374 bytes: 13,421-byte chunks, 3 minibatches of 64 at a time).
TINY_BUDGET_GB = 0.0001


def _dataset():
  return synthetic_dataset(n_train=3000, n_test=500, num_features=64,
                           num_classes=7, noise=60.0)


def _train(configs, dataset):
  return train.train_configs(configs, dataset)


@pytest.mark.slow
@pytest.mark.gpu_smoke
@pytest.mark.parametrize("sweep_over", [None, "lr", "seed", "weights"])
def test_streamed_equals_resident(sweep_over):
  """A single run; a sweep sharing one seed ([S, B] minibatches); a sweep
  with one seed per configuration ([S, M, B]); rows with weights, some 0
  (labels, weights and folds streamed together; the training accuracy
  counts other rows in each step): 46 steps an epoch, not a multiple of
  the chunk, so two chunk lengths are compiled."""
  dataset = _dataset()
  if sweep_over == "weights":
    w = np.random.default_rng(0).uniform(0, 2, len(dataset.y_train))
    dataset = dataclasses.replace(dataset, w_train=np.where(
        np.arange(len(w)) % 7 == 0, 0, w).astype(np.float32))
  base = config_lib.Config(batch_size=64, epochs=2, lr=0.5)
  overrides = {None: [{}], "lr": [{"lr": 0.5}, {"lr": 0.05}],
               "seed": [{"seed": 0}, {"seed": 1}, {"seed": 2}],
               "weights": [{"seed": 0}, {"seed": 1}]}[sweep_over]
  resident = [dataclasses.replace(base, **o) for o in overrides]
  streamed = [dataclasses.replace(c, device_memory_gb=TINY_BUDGET_GB)
              for c in resident]
  assert feed_lib.streams(dataset.x_train,
                          feed_lib.budget_bytes(TINY_BUDGET_GB))
  a, b = _train(resident, dataset), _train(streamed, dataset)
  for run_a, run_b in zip(a.runs, b.runs, strict=True):
    for p, q in zip(jax.tree.leaves(run_a.params),
                    jax.tree.leaves(run_b.params), strict=True):
      np.testing.assert_array_equal(p, q)
    for rec_a, rec_b in zip(run_a.history, run_b.history, strict=True):
      assert rec_a.keys() == rec_b.keys()
      for key in rec_a:
        np.testing.assert_allclose(rec_a[key], rec_b[key], rtol=1e-6)


def test_chunks_cover_the_epoch_in_order():
  """The streamed chunks hold exactly the epoch's minibatches, in order,
  and the last, shorter chunk is one of the compiled lengths."""
  dataset = _dataset()

  def put(a):
    return jax.device_put(np.asarray(a))

  feed = feed_lib.Feed(dataset.x_train, dataset.y_train, put,
                       budget=feed_lib.budget_bytes(TINY_BUDGET_GB),
                       examples_per_step=64)
  assert feed.streamed and feed.steps_per_chunk == 3
  batches = minibatch.epoch_order(0, 1, len(dataset.x_train), 64)  # [46, 64]
  xs, ys, lengths = [], [], []
  for x, y, idx in feed.chunks(batches):
    assert idx is None  # the minibatches themselves: [steps, 64, ...]
    xs.append(np.asarray(x))
    ys.append(np.asarray(y))
    lengths.append(len(y))
  np.testing.assert_array_equal(np.concatenate(xs), dataset.x_train[batches])
  np.testing.assert_array_equal(np.concatenate(ys), dataset.y_train[batches])
  assert sorted(set(lengths), reverse=True) == feed.chunk_lengths(46) == [3, 1]


def test_shards_draw_a_part_of_each_minibatch_from_each_share():
  """Minibatches split across 3 hosts: each takes 4 of its 12 examples from
  each third of the set, a permutation of that third, over the epoch."""
  batches = minibatch.epoch_order(0, 1, num_examples=100, batch_size=12,
                                  shards=3)
  assert batches.shape == (8, 12)  # 33 examples a share, 4 at a time
  for k in range(3):
    part = batches[:, 4 * k:4 * (k + 1)]
    assert part.min() >= 33 * k and part.max() < 33 * (k + 1)
    assert len(set(part.ravel())) == 32  # no example twice
  np.testing.assert_array_equal(  # one share: the plain permutation
      minibatch.epoch_order(0, 1, 100, 12, shards=1),
      minibatch.epoch_order(0, 1, 100, 12))


def test_a_shard_gathers_its_own_part_of_each_minibatch():
  """A Shard's feed, given the epoch's global indices, gathers from its own
  share the columns its devices take (one process: the shard of 2 it
  holds must be the whole minibatch's second half)."""
  dataset = _dataset()
  batches = minibatch.epoch_order(0, 1, len(dataset.x_train), 64, shards=2)
  size = len(dataset.x_train) // 2
  rows = slice(size, 2 * size)
  feed = feed_lib.Feed(dataset.x_train[rows], dataset.y_train[rows],
                       jax.device_put, budget=None, examples_per_step=64,
                       shard=feed_lib.Shard(index=1, count=2, size=size))
  xs = [np.asarray(x) for x, _, _ in feed.chunks(batches)]
  np.testing.assert_array_equal(np.concatenate(xs),
                                dataset.x_train[batches[:, 32:]])


def test_resident_without_a_budget_on_cpu():
  """On a CPU with no budget given nothing is streamed (and no copy made)."""
  assert feed_lib.budget_bytes(0) is None
  assert not feed_lib.streams(np.zeros((10, 4), np.float32), None)


@pytest.mark.slow
@pytest.mark.gpu_smoke
def test_streamed_npy_run_end_to_end(tmp_path, capsys):
  """A memory-mapped npy: set streamed under a tiny budget: the run says so
  (terminal and summary.json) and scores as the resident run does."""
  dataset = _dataset()
  folder = tmp_path / "data"
  folder.mkdir()
  for split in ("train", "test"):  # features as given, not pixels
    np.save(folder / f"x_{split}.npy",
            getattr(dataset, f"x_{split}").astype(np.float32) / 255)
    np.save(folder / f"y_{split}.npy", getattr(dataset, f"y_{split}"))
  config = config_lib.Config(dataset=f"npy:{folder}", batch_size=64, epochs=2)
  resident = runner.run(config, tmp_path / "resident", verbose=False,
                        figures=False)
  streamed = runner.run(
      dataclasses.replace(config, device_memory_gb=TINY_BUDGET_GB * 4),
      tmp_path / "streamed", figures=False)
  assert "minibatches stream from host memory" in capsys.readouterr().out
  assert streamed["streamed"] and not resident["streamed"]
  for key in ("test_accuracy", "test_nll", "train_loss"):
    assert streamed[key] == pytest.approx(resident[key], rel=1e-6), key
