"""Training: convergence, one trace per run, divergence, determinism, honest
test use."""

import csv
import dataclasses
import re

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import synthetic_dataset
from softmax_jax import compilation
from softmax_jax import losses
from softmax_jax import model
from softmax_jax import sweep
from softmax_jax import train
from softmax_jax.config import Config
from softmax_jax.data import datasets
from softmax_jax.errors import DivergedError
from softmax_jax.errors import UserError
from softmax_jax.solvers import minibatch
from softmax_jax.solvers import objective

TINY = Config(batch_size=32, epochs=3, lr=0.5)


@pytest.mark.gpu_smoke
@pytest.mark.parametrize("loss", ["xent", "l2", "l1", "huber"])
def test_learns_separable_data(loss):
  ds = synthetic_dataset()
  config = dataclasses.replace(TINY, loss=loss,
                               lr=2.0 if loss != "xent" else 0.5, epochs=5)
  result = train.train_and_evaluate(config, ds)
  assert result.history[-1]["test_accuracy"] >= 0.95
  assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_train_step_is_traced_once_per_run(monkeypatch):
  traces = []
  original = minibatch.train_step

  def counting_step(*args, **kwargs):
    traces.append(1)
    return original(*args, **kwargs)

  monkeypatch.setattr(minibatch, "train_step", counting_step)
  result = train.train_and_evaluate(dataclasses.replace(TINY, epochs=4),
                                    synthetic_dataset())
  assert len(result.history) == 4
  assert len(traces) == 1


def test_history_and_summary():
  result = train.train_and_evaluate(TINY, synthetic_dataset())
  assert [r["epoch"] for r in result.history] == [1, 2, 3]
  for r in result.history:
    assert {"train_loss", "train_accuracy", "test_accuracy"} <= set(r)
    assert 0 <= r["train_accuracy"] <= 1 and 0 <= r["test_accuracy"] <= 1
  s = result.summary
  assert s["num_params"] == 16 * 4 + 4
  assert s["train_seconds"] > 0 and s["compile_seconds"] > 0
  assert s["test_accuracy"] == result.history[-1]["test_accuracy"]


def test_test_set_is_only_reported():
  """Garbage in the test split changes no parameter and no training metric."""
  ds = synthetic_dataset()
  rng = np.random.default_rng(1)
  garbage = dataclasses.replace(
      ds, x_test=rng.integers(0, 256, ds.x_test.shape, dtype=np.uint8),
      y_test=rng.integers(0, 4, ds.y_test.shape).astype(np.int32))
  a = train.train_and_evaluate(TINY, ds)
  b = train.train_and_evaluate(TINY, garbage)
  np.testing.assert_array_equal(a.params["w"], b.params["w"])
  assert ([r["train_loss"] for r in a.history] ==
          [r["train_loss"] for r in b.history])
  assert a.history[-1]["test_accuracy"] != b.history[-1]["test_accuracy"]


@pytest.mark.gpu_smoke
def test_same_seed_same_run_other_seed_other_run():
  ds = synthetic_dataset()
  a = train.train_and_evaluate(TINY, ds)
  b = train.train_and_evaluate(TINY, ds)
  c = train.train_and_evaluate(dataclasses.replace(TINY, seed=1), ds)
  assert a.history == b.history
  np.testing.assert_array_equal(a.params["w"], b.params["w"])
  assert not np.array_equal(a.params["w"], c.params["w"])


def test_epoch_order_comes_from_seed_and_epoch():
  """Each epoch reshuffles; the same (seed, epoch) gives the same
  minibatches."""

  def order(seed, epoch):
    return np.asarray(minibatch.epoch_order(seed, epoch, 512, 32))

  np.testing.assert_array_equal(order(0, 1), order(0, 1))
  assert not np.array_equal(order(0, 1), order(0, 2))
  assert not np.array_equal(order(0, 1), order(1, 1))
  assert order(0, 1).shape == (16, 32)
  assert sorted(order(0, 1).ravel().tolist()) == list(range(512))
  # The partial last batch dropped.
  assert minibatch.epoch_order(0, 1, 500, 32).shape == (15, 32)
  # One order per configuration, stacked on axis 1: [S, M, B].
  stacked = minibatch.epoch_order([1, 0], 1, 512, 32)
  assert stacked.shape == (16, 2, 32) and stacked.dtype == np.int32
  np.testing.assert_array_equal(stacked[:, 0], order(1, 1))
  np.testing.assert_array_equal(stacked[:, 1], order(0, 1))


def test_divergence_stops_with_a_message():
  config = dataclasses.replace(TINY, loss="l2", loss_input="logits", lr=1e3)
  seen = []
  with pytest.raises(DivergedError,
                     match=r"diverged in epoch \d+.*smaller --lr"):
    train.train_and_evaluate(config, synthetic_dataset(), on_epoch=seen.append)
  assert seen and not np.isfinite(seen[-1]["train_loss"])


@pytest.mark.gpu_smoke
def test_bfloat16_compute_trains_like_float32():
  ds = synthetic_dataset()
  runs = [train.train_configs([dataclasses.replace(TINY, compute_dtype=d)],
                              ds).runs[0] for d in ("float32", "bfloat16")]
  assert runs[1].history[-1]["test_accuracy"] >= 0.95
  assert runs[1].params["w"].dtype == np.float32  # params stay float32
  assert not np.array_equal(runs[0].params["w"], runs[1].params["w"])
  np.testing.assert_allclose(runs[1].params["w"], runs[0].params["w"],
                             rtol=0.1, atol=0.02)


@pytest.mark.slow
@pytest.mark.gpu_smoke
@pytest.mark.parametrize("optimizer", ["sgd", "lbfgs"])
def test_the_matmul_precision_is_compiled_into_the_programs(optimizer):
  """--matmul_precision reaches every matmul a run compiles (a CPU computes
  float32 either way; a GPU's default would be TF32)."""
  ds = synthetic_dataset()
  texts = {}
  for precision in ("highest", "default"):
    compilation._programs.clear()  # pylint: disable=protected-access
    c = dataclasses.replace(TINY, optimizer=optimizer,
                            matmul_precision=precision)
    train.train_configs([c], ds)
    texts[precision] = [p.as_text() for p in
                        compilation._programs.values()]  # pylint: disable=protected-access
  highest = _dot_precisions(texts["highest"])
  assert highest and set(highest) == {"highest,highest"}, highest
  assert set(_dot_precisions(texts["default"])) == {"default"}


def _dot_precisions(texts: list[str]) -> list[str]:
  """The operand precision of each matrix product in compiled HLO texts:
  XLA's dot instructions (a CPU; fused ones on a GPU), where "default"
  leaves it out, and a GPU's cuBLAS calls, whose backend config names it."""
  found = []
  for line in (line for text in texts for line in text.splitlines()):
    if " dot(" in line:
      m = re.search(r"operand_precision=\{([a-z]+,[a-z]+)\}", line)
      found.append(m.group(1) if m else "default")
    elif "__cublas$gemm" in line or "__cublas$lt" in line:
      m = re.search(r'"operand_precision":\["([A-Z]+)","([A-Z]+)"\]', line)
      found.append(",".join(m.groups()).lower().replace(
          "default,default", "default") if m else "default")
  return found


@pytest.mark.parametrize("optimizer,dot_bound", [("lbfgs", True),
                                                  ("owlqn", True),
                                                  ("sgd", False)])
def test_only_the_full_batch_programs_compile_as_dot_bound(
    monkeypatch, optimizer, dot_bound):
  """L-BFGS's (and OWL-QN's) programs are compiled with
  compilation.DOT_BOUND_OPTIONS, an epoch of minibatches without them: an
  option XLA does not know fails the first and not the second."""
  monkeypatch.setattr(compilation, "_programs",
                      type(compilation._programs)())  # pylint: disable=protected-access
  monkeypatch.setattr(compilation, "_families",
                      type(compilation._families)())  # pylint: disable=protected-access
  monkeypatch.setattr(compilation, "DOT_BOUND_OPTIONS",
                      {"xla_not_an_option": True})
  c = dataclasses.replace(TINY, optimizer=optimizer, epochs=2)
  if dot_bound:
    with pytest.raises(Exception, match="No such compile option"):
      train.train_configs([c], synthetic_dataset())
  else:
    train.train_configs([c], synthetic_dataset())


def test_a_dot_bound_program_is_its_own_and_computes_the_same():
  lowered = jax.jit(lambda x: jnp.tanh(x) @ x.T + jnp.exp(-x).sum()).lower(
      jnp.ones((40, 30)))
  plain = compilation.compile_once(lowered)
  dot_bound = compilation.compile_once(lowered, dot_bound=True)
  assert dot_bound is not plain
  assert compilation.compile_once(lowered, dot_bound=True) is dot_bound
  x = jnp.asarray(np.random.default_rng(0).normal(size=(40, 30)), jnp.float32)
  np.testing.assert_allclose(dot_bound(x), plain(x), rtol=1e-6)


def test_uniform_loss_is_ln_k_for_cross_entropy():
  assert train.uniform_loss(Config(), 10) == pytest.approx(np.log(10))
  # l2 on probabilities: ((1 - 1/K)^2 + (K - 1) / K^2) / 2 = (1 - 1/K) / 2
  assert train.uniform_loss(Config(loss="l2"), 4) == pytest.approx(0.375)


def test_a_finite_explosion_is_named_and_trains_on():
  """lr 1e9 (a typo for 1e-9) keeps every loss finite, so no NaN check fires;
  the run is marked exploded from epoch 2, with a warning, and finishes."""
  config = dataclasses.replace(TINY, lr=1e9)
  noisy = synthetic_dataset(noise=60.0)  # separable data would fit at any lr
  run = train.train_configs([config], noisy).runs[0]
  assert run.status == train.EXPLODED and len(run.history) == TINY.epochs
  assert all(np.isfinite(r["train_loss"]) for r in run.history)
  warned = [r["epoch"] for r in run.history if "warning" in r]
  assert warned == [2]
  assert "smaller --lr (now 1e+09)" in run.history[1]["warning"]
  one_epoch = dataclasses.replace(config, epochs=1)  # judged on its last
  assert train.train_configs([one_epoch], noisy).runs[0].status == (
      train.EXPLODED)


@pytest.mark.slow
def test_a_loss_that_starts_high_and_falls_is_no_explosion():
  """l2 on the logits of many classes starts far above the 0.5 of predicting
  every class alike (K x D x init_scale^2 / 2 = 7.7 here) and falls slowly
  at a small lr: no warning; cross-entropy at lr 1e9 grows far beyond its
  start, finite (l2 on logits would diverge to inf)."""
  rng = np.random.default_rng(0)
  k, d, n = 300, 512, 1200
  x = rng.normal(0, 1, (n, d)).astype(np.float32)
  y = (np.arange(n) % k).astype(np.int32)
  ds = datasets.Dataset(name="many", x_train=x, y_train=y, x_test=x[:300],
                        y_test=y[:300], class_names=tuple(map(str, range(k))))
  slow, fast = train.train_configs(
      sweep.expand(Config(loss="l2", loss_input="logits", batch_size=64,
                          epochs=3),
                   sweep.zipped(sweep.axis("loss", ["l2", "xent"]),
                                sweep.axis("lr", [0.001, 1e9]))), ds).runs
  losses = [r["train_loss"] for r in slow.history]
  assert losses[0] > 10 * train.uniform_loss(slow.config, k)
  assert losses == sorted(losses, reverse=True)  # falling, slowly
  assert slow.history[0]["start_loss"] == pytest.approx(
      0.5 * (k * d * 0.01**2 + 1), rel=0.1)  # at initialization
  assert slow.status == train.OK
  assert not [r for r in slow.history if "warning" in r]
  assert fast.status == train.EXPLODED
  assert "over 10 x the" in fast.history[1]["warning"]
  assert "it started from; try a smaller --lr (now 1e+09)" in (
      fast.history[1]["warning"])


@pytest.mark.slow
def test_a_sweep_marks_and_counts_exploded_configurations(tmp_path, capsys):
  from conftest import write_cache  # pylint: disable=g-import-not-at-top
  from softmax_jax import runner  # pylint: disable=g-import-not-at-top
  write_cache(tmp_path / "data", synthetic_dataset(noise=60.0))
  configs = sweep.expand(
      dataclasses.replace(TINY, data_dir=str(tmp_path / "data")),
      sweep.axis("lr", [1e9, 0.5]))
  summary = runner.run(configs, tmp_path / "run", verbose=False)
  assert summary["num_exploded"] == 1 and summary["num_diverged"] == 0
  assert summary["best"]["config_id"] == 1
  rows = (tmp_path / "run" / "results.csv").read_text().splitlines()
  assert rows[1].endswith(",exploded") and rows[2].endswith(",ok")
  single = runner.run(configs[0], tmp_path / "single")  # prints the warning
  assert len(single["warnings"]) == 1
  assert f"warning: {single['warnings'][0]}" in capsys.readouterr().err
  assert "## Warnings" in (tmp_path / "single" / "report.md").read_text()
  assert runner.run(configs[1], tmp_path / "fine",
                    verbose=False)["warnings"] == []


@pytest.mark.slow
def test_the_largest_stable_learning_rates_never_explode(fashion_mnist):
  """On the real data: each loss at the largest learning rates that still
  train well (and above: SGD lr 3 for cross-entropy), SGD and Adam."""
  ds = datasets.hold_out_validation(fashion_mnist, 1 / 6)
  base = Config(epochs=5)
  configs = (
      sweep.expand(base, sweep.product(sweep.axis("loss", ["xent", "l2", "l1",
                                                           "huber"]),
                                       sweep.axis("lr", [1.0, 3.0])))
      + sweep.expand(dataclasses.replace(base, optimizer="adam"),
                     sweep.product(sweep.axis("loss", ["xent", "l2", "l1",
                                                       "huber"]),
                                   sweep.axis("lr", [0.01, 0.03])))
      + sweep.expand(dataclasses.replace(base, loss_input="logits", lr=0.01),
                     sweep.axis("loss", ["l2", "huber"])))
  result = train.train_configs(configs, ds)
  assert [r.status for r in result.runs] == ["ok"] * len(configs)


def test_batch_larger_than_training_set_is_refused():
  with pytest.raises(UserError, match="batch_size"):
    train.train_and_evaluate(dataclasses.replace(TINY, batch_size=10_000),
                             synthetic_dataset())


@pytest.mark.slow
@pytest.mark.gpu_smoke
def test_d2l_setup_reaches_083_on_real_fashion_mnist(fashion_mnist):
  result = train.train_and_evaluate(Config(), fashion_mnist)
  assert result.summary["test_accuracy"] >= 0.83
  assert result.summary["num_params"] == 7850


def _xor_dataset(n=512, seed=0):
  """Two features; the class is the XOR of their signs: no line separates it."""
  from softmax_jax.data import datasets  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  x = rng.uniform(-1, 1, (2 * n, 2)).astype(np.float32)
  y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(np.int32)
  return datasets.Dataset(name="xor", x_train=x[:n], y_train=y[:n],
                          x_test=x[n:], y_test=y[n:],
                          class_names=("same sign", "other sign"))


@pytest.mark.slow
def test_hidden_layers_learn_what_a_linear_model_cannot():
  ds = _xor_dataset()
  config = Config(batch_size=32, epochs=40, optimizer="adam", lr=0.01)
  linear = train.train_and_evaluate(config, ds)
  mlp = train.train_and_evaluate(dataclasses.replace(config, hidden="32"), ds)
  assert linear.summary["test_accuracy"] < 0.7
  assert mlp.summary["test_accuracy"] > 0.95


def test_a_phm_size_that_does_not_fit_is_refused():
  with pytest.raises(UserError, match="--phm_n=3 must divide"):
    train.train_and_evaluate(dataclasses.replace(TINY, phm_n=3),
                             synthetic_dataset())


@pytest.mark.slow
def test_mlp_passes_086_on_real_fashion_mnist(fashion_mnist):
  config = Config(hidden="256", optimizer="adam", lr=0.001)
  assert train.train_and_evaluate(config, fashion_mnist).summary[
      "test_accuracy"] > 0.86


def test_a_schedule_trains_in_its_own_group():
  """(optimizers_test checks each step's factor.)"""
  configs = [TINY, dataclasses.replace(TINY, schedule="cosine")]
  assert len(sweep.groups(configs)) == 2
  constant, cosine = train.train_configs(configs, synthetic_dataset()).runs
  assert not np.array_equal(constant.params["w"], cosine.params["w"])
  assert cosine.history[-1]["test_accuracy"] > 0.8


@pytest.mark.parametrize("schedule", ["cosine", "warmup_cosine"])
def test_a_scheduled_run_equals_a_plain_optax_loop(schedule):
  """The schedule spans the run's steps (epochs x batches), not an epoch's."""
  config = dataclasses.replace(TINY, schedule=schedule, epochs=3)
  ds = synthetic_dataset()
  ours = train.train_configs([config], ds).runs[0].params
  n, batch = len(ds.x_train), config.batch_size
  total = config.epochs * (n // batch)
  init_key, _ = jax.random.split(jax.random.key(config.seed))
  params = model.init_params(init_key, ds.num_features, ds.num_classes,
                             config.init_scale)
  lr = (optax.cosine_decay_schedule(config.lr, total) if schedule == "cosine"
        else optax.warmup_cosine_decay_schedule(0.0, config.lr,
                                                total // 20 or 1, total))
  tx = optax.sgd(lr)
  state = tx.init(params)

  @jax.jit
  def step(params, state, x, y):
    grads = jax.grad(lambda p: jnp.mean(
        losses.cross_entropy(model.logits(p, x), y)))(params)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  for epoch in range(1, config.epochs + 1):
    for idx in minibatch.epoch_order(config.seed, epoch, n, batch):
      params, state = step(params, state, datasets.to_features(ds.x_train[idx]),
                           ds.y_train[idx])
  for name in ("w", "b"):
    np.testing.assert_allclose(ours[name], params[name], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.gpu_smoke
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_wide_run_alone_trains_as_in_a_stack(optimizer):
  """With K >= SQUEEZE_MIN_CLASSES a run alone is trained squeezed, not
  vmapped; it must end where the same configuration does in a stack of
  two (vmapped)."""
  k = objective.SQUEEZE_MIN_CLASSES
  ds = synthetic_dataset(n_train=2 * k, n_test=k, num_features=16,
                         num_classes=k)
  c = Config(batch_size=64, epochs=2, lr=0.05, optimizer=optimizer,
             weight_decay=1e-3)
  alone = train.train_configs([c], ds).runs[0]
  stacked = train.train_configs(
      [c, dataclasses.replace(c, lr=0.01)], ds).runs[0]
  for p, q in zip(jax.tree.leaves(alone.params),
                  jax.tree.leaves(stacked.params), strict=True):
    np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-7)
  for key in ("train_loss", "train_accuracy", "test_accuracy", "test_nll"):
    assert alone.history[-1][key] == pytest.approx(
        stacked.history[-1][key], rel=1e-5), key


@pytest.mark.slow
def test_a_tie_in_validation_accuracy_goes_to_the_stronger_weight_decay(
    tmp_path):
  """As scikit-learn's LogisticRegressionCV (the smallest C among equal
  scores); then to the first configuration."""
  from conftest import write_cache  # pylint: disable=g-import-not-at-top
  from softmax_jax import runner  # pylint: disable=g-import-not-at-top
  write_cache(tmp_path / "data", synthetic_dataset())
  base = dataclasses.replace(TINY, data_dir=str(tmp_path / "data"))
  configs = sweep.expand(base, sweep.axis("weight_decay", [0.0, 1e-9, 1e-8]))
  summary = runner.run(configs, tmp_path / "run", verbose=False, figures=False)
  rows = list(csv.DictReader((tmp_path / "run" / "results.csv").open()))
  assert len({r["val_accuracy"] for r in rows}) == 1  # the tie this tests
  assert summary["best"]["config_id"] == 2
  assert summary["best"]["config"]["weight_decay"] == 1e-8


def test_calibrate_fits_a_temperature_on_the_validation_split():
  ds = datasets.hold_out_validation(synthetic_dataset(), 0.2)
  result = train.train_and_evaluate(
      dataclasses.replace(TINY, calibrate=True), ds)
  fitted = result.summary["calibration"]
  assert fitted["temperature"] > 0
  # Never worse than T = 1 on the split it is fit on.
  assert fitted["val_nll_after"] <= fitted["val_nll_before"] + 1e-6
  with pytest.raises(UserError, match="--calibrate fits the temperature on a "
                     "validation split"):
    train.train_and_evaluate(dataclasses.replace(TINY, calibrate=True),
                             synthetic_dataset())


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["sgd", "lbfgs"])
@pytest.mark.parametrize("fold", [-1, 1])
def test_a_step_follows_the_weighted_objective(optimizer, fold):
  """Weights and a left-out fold: SGD's first step on one minibatch of
  every row is -lr times the gradient of the weighted full-batch objective
  (the one L-BFGS minimizes, objective.full_batch), and L-BFGS's loss is
  that objective's."""
  dataset = dataclasses.replace(
      synthetic_dataset(n_train=96, num_features=6, num_classes=3),
      w_train=np.random.default_rng(1).uniform(0, 2, 96).astype(np.float32),
      folds=(np.arange(96) % 3).astype(np.int32))
  config = Config(optimizer=optimizer, lr=0.5, weight_decay=0.01, epochs=1,
                  batch_size=96, init_scale=0.0, max_iters=50, fold=fold)
  run = train.train_configs([config], dataset).runs[0]
  zeros = model.init_params(jax.random.key(0), 6, 3, 0.0)
  _, unravel = jax.flatten_util.ravel_pytree(zeros)
  values = {"weight_decay": np.array([0.01], np.float32),
            "huber_delta": np.ones(1, np.float32),
            "fold": np.array([fold], np.int32),
            "l1_share": np.zeros(1, np.float32)}

  @jax.jit  # (compiled once, not op by op)
  def value(params):
    theta = jax.flatten_util.ravel_pytree(params)[0][None]
    return objective.full_batch(
        theta, dataset.x_train, objective.rows_of(dataset), values,
        unravel=unravel, blocks=(("xent", 0, 1),), loss_input="probs",
        chunk=32)

  if optimizer == "sgd":
    grad = unravel(value(zeros)[1][0])
    for name in ("w", "b"):
      np.testing.assert_allclose(run.params[name], -0.5 * grad[name],
                                 atol=1e-6)
  else:
    loss = float(value(run.params)[2]["train_loss"][0])
    assert run.history[-1]["train_loss"] == pytest.approx(loss, rel=1e-5)
    assert float(value(run.params)[0][0]) == pytest.approx(
        run.history[-1]["objective"], rel=1e-5)


def test_train_accuracy_counts_the_rows_each_configuration_trains_on():
  """The full-batch solvers' train_accuracy is over the rows each trains
  on: not the fold it leaves out (here with scrambled labels), not rows of
  weight 0 (sgd's: the next test)."""
  ds = synthetic_dataset(n_train=300, num_features=9, num_classes=3, seed=4,
                         noise=60.0)
  rng = np.random.default_rng(4)
  folds = (np.arange(300) % 3).astype(np.int32)
  w = np.where(np.arange(300) % 7 == 0, 0.0, rng.uniform(0.5, 2, 300))
  y = np.where(folds == 1, (ds.y_train + 1) % 3, ds.y_train).astype(np.int32)
  ds = dataclasses.replace(ds, y_train=y, folds=folds,
                           w_train=w.astype(np.float32))
  trained_on = (folds != 1) & (w > 0)
  for config in (Config(optimizer="lbfgs", weight_decay=0.01, fold=1),
                 Config(optimizer="exact", weight_decay=0.01, fold=1,
                        loss="l2", loss_input="logits")):
    run = train.train_configs([config], ds).runs[0]
    x = datasets.to_features(ds.x_train)
    right = np.argmax(x @ run.params["w"] + run.params["b"], 1) == y
    assert run.history[-1]["train_accuracy"] == pytest.approx(
        right[trained_on].mean(), abs=1e-6), config.optimizer
    assert abs(right[trained_on].mean() - right.mean()) > 0.05


def test_sgds_train_accuracy_counts_the_rows_it_trains_on():
  """One full-batch step from W0: its training accuracy is W0's on the
  rows outside the left-out fold and of weight > 0."""
  ds = synthetic_dataset(n_train=240, num_features=9, num_classes=3, seed=5)
  folds = (np.arange(240) % 3).astype(np.int32)
  w = np.where(np.arange(240) % 5 == 0, 0.0, 1.0).astype(np.float32)
  y = np.where(folds == 0, (ds.y_train + 1) % 3, ds.y_train).astype(np.int32)
  ds = dataclasses.replace(ds, y_train=y, folds=folds, w_train=w)
  rng = np.random.default_rng(0)
  w0 = {"w": rng.normal(0, 0.1, (9, 3)).astype(np.float32),
        "b": np.zeros(3, np.float32)}
  run = train.train_configs([Config(optimizer="sgd", fold=0, lr=1e-9,
                                    batch_size=240, epochs=1)], ds,
                            init_params=[w0]).runs[0]
  right = np.argmax(datasets.to_features(ds.x_train) @ w0["w"], 1) == y
  trained_on = (folds != 0) & (w > 0)
  assert run.history[-1]["train_accuracy"] == pytest.approx(
      right[trained_on].mean(), abs=1e-6)
  assert abs(right[trained_on].mean() - right.mean()) > 0.05


def test_train_configs_reads_lambda_max_units_and_refuses_mixed_runs():
  """The library's entry point as a run: strengths in units of lambda_max
  made absolute on the data, and configurations that differ in a run-wide
  field (fit_intercept) refused, not trained as the first one says."""
  ds = synthetic_dataset(n_train=200, num_features=9, num_classes=3, seed=6)
  config = Config(optimizer="owlqn", penalty="l1", weight_decay=0.3,
                  weight_decay_unit="lambda_max", tol=1e-6)
  lam = objective.lambda_max(ds, config)
  run = train.train_configs([config], ds).runs[0]
  absolute = train.train_configs([dataclasses.replace(
      config, weight_decay=0.3 * lam, weight_decay_unit="absolute")],
                                 ds).runs[0]
  np.testing.assert_allclose(run.params["w"], absolute.params["w"], atol=1e-6)
  assert np.count_nonzero(run.params["w"])  # (0.3 lambda_max: not W = 0)
  with pytest.raises(UserError, match=r"^weight_decay_unit cannot be swept"):
    train.train_configs([config, dataclasses.replace(
        config, weight_decay=0.01, weight_decay_unit="absolute")], ds)
  with pytest.raises(UserError, match=r"^fit_intercept cannot be swept"):
    train.train_configs([Config(optimizer="lbfgs", weight_decay=0.01),
                         Config(optimizer="lbfgs", weight_decay=0.02,
                                fit_intercept=False)], ds)


def test_only_strengths_in_lambda_max_units_are_rescaled():
  """objective.in_absolute_units multiplies the weight decay of the
  configurations in units of lambda_max, and leaves absolute ones alone
  (an l2 one's lambda_max is inf)."""
  ds = synthetic_dataset(n_train=120, num_features=9, num_classes=3, seed=7)
  absolute = Config(weight_decay=0.01)
  relative = Config(penalty="l1", weight_decay=0.5,
                    weight_decay_unit="lambda_max")
  (a, r), maxes = objective.in_absolute_units([absolute, relative], ds)
  assert a == absolute and maxes[0] == float("inf")
  assert r.weight_decay == pytest.approx(0.5 * maxes[1])
  assert r.weight_decay_unit == "absolute"
