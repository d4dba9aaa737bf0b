"""Full-batch L-BFGS: the optimum of the penalized objective, as
scikit-learn's."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from conftest import synthetic_dataset
from softmax_jax import compilation
from softmax_jax import evaluation
from softmax_jax import train
from softmax_jax.config import Config
from softmax_jax.data import datasets
from softmax_jax.errors import UserError
from softmax_jax.solvers import lbfgs
from softmax_jax.solvers import objective

WEIGHT_DECAYS = (1e-1, 1e-2, 1e-3)


@pytest.fixture(scope="module")
def dataset():
  return synthetic_dataset(n_train=3000, n_test=500, num_features=64,
                           num_classes=7, noise=60.0)


@pytest.fixture(scope="module")
def path(dataset):
  """The three weight decays solved as one vmapped path."""
  configs = [Config(optimizer="lbfgs", weight_decay=wd, tol=1e-6)
             for wd in WEIGHT_DECAYS]
  return train.train_configs(configs, dataset).runs


def _objective(x, y, w, b, weight_decay):
  """mean cross-entropy + (weight_decay / 2) ||W||^2, in float64."""
  o = x @ w + b
  o = o - o.max(axis=1, keepdims=True)
  log_p = o - np.log(np.exp(o).sum(axis=1, keepdims=True))
  return -log_p[np.arange(len(y)), y].mean() + 0.5 * weight_decay * (w**2).sum()


@pytest.mark.slow
@pytest.mark.gpu_smoke
@pytest.mark.parametrize("index", range(len(WEIGHT_DECAYS)))
def test_the_optimum_is_scikit_learns(dataset, path, index):
  """C = 1 / (weight_decay N), multinomial lbfgs at a tight tol: the same
  objective (1e-5 relative), predictions (>= 99.9%) and weights (1e-3)."""
  wd = WEIGHT_DECAYS[index]
  x = datasets.to_features(dataset.x_train).astype(np.float64)
  y = dataset.y_train
  sk = LogisticRegression(C=1 / (wd * len(x)), tol=1e-10, max_iter=10_000)
  sk.fit(x, y)
  run = path[index]
  w, b = (run.params[k].astype(np.float64) for k in ("w", "b"))
  ours, theirs = (_objective(x, y, w, b, wd),
                  _objective(x, y, sk.coef_.T, sk.intercept_, wd))
  assert abs(ours - theirs) <= 1e-5 * theirs
  assert run.history[-1]["objective"] == pytest.approx(ours, rel=1e-5)
  assert np.mean((x @ w + b).argmax(1) == sk.predict(x)) >= 0.999
  np.testing.assert_allclose(w, sk.coef_.T, rtol=0,
                             atol=1e-3 * np.abs(sk.coef_).max())
  assert np.linalg.norm(w - sk.coef_.T) <= 1e-3 * np.linalg.norm(sk.coef_)


def test_the_returned_gradient_is_below_tol(dataset, path):
  """KKT: where it says converged, the gradient of the objective, computed
  here again in float64 from the returned weights, is below tol (up to the
  float32 rounding of the solver's own evaluation)."""
  x = datasets.to_features(dataset.x_train).astype(np.float64)
  y = np.eye(dataset.num_classes)[dataset.y_train]
  for wd, run in zip(WEIGHT_DECAYS, path, strict=True):
    last = run.history[-1]
    w, b = (run.params[k].astype(np.float64) for k in ("w", "b"))
    o = x @ w + b
    p = np.exp(o - o.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    grad = np.concatenate([(x.T @ (p - y) / len(x) + wd * w).ravel(),
                           ((p - y).mean(0)).ravel()])
    assert np.linalg.norm(grad) == pytest.approx(last["grad_norm"], rel=0.05,
                                                 abs=2e-6)
    assert last["converged"]
    assert np.linalg.norm(grad) < run.config.tol + 2e-6


@pytest.mark.slow
@pytest.mark.gpu_smoke
def test_a_path_equals_each_strength_alone(dataset, path):
  for wd, run in zip(WEIGHT_DECAYS, path, strict=True):
    alone = train.train_configs(
        [Config(optimizer="lbfgs", weight_decay=wd, tol=1e-6)], dataset).runs[0]
    # The same iterations up to float32 rounding (a vmapped pass sums in
    # another order), so the same optimum to the tolerance's precision.
    assert alone.history[-1]["converged"] and run.history[-1]["converged"]
    for p, q in zip(jax.tree.leaves(alone.params), jax.tree.leaves(run.params),
                    strict=True):
      assert np.linalg.norm(p - q) <= 1e-3 * np.linalg.norm(q)


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["l2", "huber"])
def test_regression_losses_reach_a_stationary_point(dataset, loss):
  config = Config(optimizer="lbfgs", loss=loss, weight_decay=1e-3)
  last = train.train_configs([config], dataset).runs[0].history[-1]
  assert last["converged"] and last["grad_norm"] < config.tol
  assert last["test_accuracy"] > 0.8


@pytest.mark.slow
@pytest.mark.gpu_smoke
def test_resume_after_a_stop_equals_an_uninterrupted_solve(dataset, tmp_path):
  """A path whose strong penalty converges within the first rounds, so that
  the rounds after the stop run on a smaller stack."""
  configs = [Config(optimizer="lbfgs", weight_decay=1.0, max_iters=80),
             Config(optimizer="lbfgs", weight_decay=1e-4, max_iters=80,
                    tol=1e-12)]  # (beyond float32: runs all 80)
  whole = train.train_configs(configs, dataset).runs
  assert whole[0].history[-1]["iterations"] <= 20 < 80 == whole[1].history[
      -1]["iterations"]
  asked = iter([False, False, True])  # stop after the third round
  with pytest.raises(train.StopRequested):
    train.train_configs(configs, dataset, checkpoint_dir=tmp_path,
                        checkpoint_every=0, should_stop=lambda: next(asked))
  resumed = train.train_configs(configs, dataset,
                                checkpoint_dir=tmp_path).runs
  for w, r in zip(whole, resumed, strict=True):
    assert [h["iterations"] for h in r.history] == [
        h["iterations"] for h in w.history]
    assert r.history[-1]["objective"] == w.history[-1]["objective"]
    for p, q in zip(jax.tree.leaves(w.params), jax.tree.leaves(r.params),
                    strict=True):
      np.testing.assert_array_equal(p, q)


def test_finished_strengths_stop_costing_passes(dataset):
  """A converged strength is no longer evaluated while the others go on:
  its evaluations stay where they were when it finished."""
  configs = [Config(optimizer="lbfgs", weight_decay=1.0, max_iters=60),
             Config(optimizer="lbfgs", weight_decay=1e-4, max_iters=60,
                    tol=1e-12)]
  strong, weak = (r.history for r in train.train_configs(configs, dataset).runs)
  done = next(i for i, h in enumerate(strong) if h["finished"])
  assert done < len(strong) - 1 and strong[-1]["converged"]
  assert {h["evaluations"] for h in strong[done:]} == {
      strong[done]["evaluations"]}
  assert weak[-1]["evaluations"] > weak[done]["evaluations"]


def _fresh_programs(monkeypatch):
  """Compile afresh, as a new process would (the caches restored after)."""
  for name in ("_programs", "_families"):
    monkeypatch.setattr(compilation, name,
                        type(getattr(compilation, name))())


def _round_sizes() -> set[int]:
  return {key[1] for programs in compilation._families.values()  # pylint: disable=protected-access
          for key in programs if isinstance(key, tuple) and key[0] == "round"}


_SHRINKING = [Config(optimizer="lbfgs", weight_decay=1.0, max_iters=60),
              Config(optimizer="lbfgs", weight_decay=1e-4, max_iters=60,
                     tol=1e-12)]  # (the first finishes long before)


@pytest.mark.slow
def test_a_program_compiled_in_the_rounds_counts_as_compilation(
    dataset, monkeypatch):
  """A stack that shrinks compiles the round of its smaller size on first
  use, in the rounds: that time is compilation, not training. (Such a
  compilation is made 3 s longer here than the whole training takes.)"""
  monkeypatch.setattr(lbfgs.LBFGS, "SHRINK_FLOPS", 0)
  _fresh_programs(monkeypatch)
  in_rounds, slept = [], []
  round_, compile_ = lbfgs.LBFGS.round, jax.stages.Lowered.compile

  def timed_round(self, states, r):
    in_rounds.append(r)
    try:
      return round_(self, states, r)
    finally:
      in_rounds.pop()

  def slow_compile(self, *args, **kwargs):
    if in_rounds and not slept:
      slept.append(time.sleep(3))
    return compile_(self, *args, **kwargs)

  monkeypatch.setattr(lbfgs.LBFGS, "round", timed_round)
  monkeypatch.setattr(jax.stages.Lowered, "compile", slow_compile)
  result = train.train_configs(_SHRINKING, dataset)
  assert slept and _round_sizes() == {1, 2}
  assert result.compile_seconds >= 3 and result.train_seconds < 3


def test_a_stack_shrinks_where_the_passes_it_saves_pay(dataset, monkeypatch):
  """When the strong configuration finishes, the weak one has `left` of
  its 60 iterations to go: a stack of one pays for its compilation where
  `left` passes of one configuration are worth SHRINK_FLOPS, not where
  they are worth a little less; the same solution either way."""
  one_pass = (4.0 * len(dataset.y_train) * (dataset.num_features + 1)
              * dataset.num_classes)
  _fresh_programs(monkeypatch)
  monkeypatch.setattr(lbfgs.LBFGS, "SHRINK_FLOPS", np.inf)
  whole = train.train_configs(_SHRINKING, dataset).runs
  assert _round_sizes() == {2}
  done = next(i for i, r in enumerate(whole[0].history) if r["finished"])
  left = 60 - whole[1].history[done]["iterations"]
  assert left > 0
  for flops, sizes in ((left * one_pass * 1.01, {2}),
                       (left * one_pass, {1, 2})):
    _fresh_programs(monkeypatch)
    monkeypatch.setattr(lbfgs.LBFGS, "SHRINK_FLOPS", flops)
    runs = train.train_configs(_SHRINKING, dataset).runs
    assert _round_sizes() == sizes
    assert runs[1].history[-1]["iterations"] == 60
    assert runs[1].history[-1]["objective"] == pytest.approx(
        whole[1].history[-1]["objective"], rel=1e-6)


def test_off_a_cpu_the_whole_stack_goes_on(dataset, monkeypatch):
  """On an accelerator, where a program compiles in seconds, a stack never
  shrinks: one round program for the whole path, the same solutions."""
  monkeypatch.setattr(lbfgs.LBFGS, "SHRINK_FLOPS", 0)
  _fresh_programs(monkeypatch)
  shrinking = train.train_configs(_SHRINKING, dataset).runs
  assert _round_sizes() == {1, 2}
  _fresh_programs(monkeypatch)
  monkeypatch.setattr(compilation, "on_cpu", lambda: False)
  whole = train.train_configs(_SHRINKING, dataset).runs
  assert _round_sizes() == {2}
  for a, b in zip(shrinking, whole, strict=True):
    assert b.history[-1]["iterations"] == a.history[-1]["iterations"]
    assert b.history[-1]["objective"] == pytest.approx(
        a.history[-1]["objective"], rel=1e-6)


@pytest.mark.slow
def test_each_loss_of_a_mixed_path_keeps_its_own_objective(dataset,
                                                           monkeypatch):
  """The L2 configuration (sorted first) converges in the first rounds; the
  cross-entropy one, still moving, must go on minimizing cross-entropy on
  the smaller stack (shrinking, which this small data would not do by
  itself), and it may run more iterations than the other's max_iters
  allows."""
  monkeypatch.setattr(lbfgs.LBFGS, "SHRINK_FLOPS", 0)
  xent = Config(optimizer="lbfgs", loss="xent", weight_decay=1e-3,
                max_iters=60)
  l2 = Config(optimizer="lbfgs", loss="l2", weight_decay=1.0, max_iters=10)
  mixed = train.train_configs([xent, l2], dataset).runs[0].history[-1]
  alone = train.train_configs([xent], dataset).runs[0].history[-1]
  assert alone["converged"] and mixed["converged"]
  assert mixed["iterations"] > l2.max_iters
  assert mixed["objective"] == pytest.approx(alone["objective"], rel=1e-5)
  assert mixed["train_loss"] == pytest.approx(alone["train_loss"], rel=1e-4)


def test_l1_and_hidden_layers_are_refused():
  with pytest.raises(UserError, match="smooth"):
    Config(optimizer="lbfgs", loss="l1").validate()
  with pytest.raises(UserError, match="linear model"):
    Config(optimizer="lbfgs", hidden="16").validate()
  with pytest.raises(UserError, match="max_iters"):
    Config(optimizer="lbfgs", max_iters=0).validate()
  with pytest.raises(UserError, match="tol"):
    Config(optimizer="lbfgs", tol=0).validate()


@pytest.mark.slow
def test_the_first_round_on_real_fashion_mnist_descends(fashion_mnist):
  """From W = 0 (ln 10) the first 10 iterations on the real data descend
  (a start compiled with constant zeros once gave NaN here)."""
  last = train.train_configs(
      [Config(optimizer="lbfgs", weight_decay=1e-3, max_iters=10)],
      fashion_mnist).runs[0].history[-1]
  assert np.isfinite(last["objective"]) and last["objective"] < np.log(10) / 2
  assert last["iterations"] == 10 and last["test_accuracy"] > 0.7


@pytest.mark.slow
def test_sgd_tracks_its_objective_above_the_optimum(dataset):
  """--track_objective: an SGD run's recorded objective is that of its
  params (recomputed in float64) and never below L-BFGS's optimum f*."""
  wd = 1e-2
  best = train.train_configs([Config(optimizer="lbfgs", weight_decay=wd,
                                     tol=1e-6)], dataset).runs[0]
  f_star = best.history[-1]["objective"]
  runs = train.train_configs(
      [Config(optimizer=opt, lr=lr, weight_decay=wd, epochs=4,
              track_objective=True)
       for opt, lr in (("sgd", 0.1), ("adam", 0.01))], dataset).runs
  x = datasets.to_features(dataset.x_train).astype(np.float64)
  for run in runs:
    tracked = [r["objective"] for r in run.history]
    assert len(tracked) == 4 and min(tracked) >= f_star * (1 - 1e-6)
    w, b = (run.params[k].astype(np.float64) for k in ("w", "b"))
    assert tracked[-1] == pytest.approx(
        _objective(x, dataset.y_train, w, b, wd), rel=1e-5)
    assert tracked[-1] < tracked[0]


@pytest.mark.slow
def test_a_warm_start_knows_the_objective_where_it_lands(dataset):
  """lbfgs.warm_start moves a weak penalty's iterate to a strong penalty's
  converged one, its value and gradient there taken from the strong one's
  without a pass over the data: they equal a pass's."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  from softmax_jax import model  # pylint: disable=import-outside-toplevel
  from softmax_jax.solvers import objective  # pylint: disable=import-outside-toplevel
  template = model.init_params(jax.random.key(0), dataset.num_features,
                               dataset.num_classes, init_scale=0.0)
  flat, unravel = jax.flatten_util.ravel_pytree(template)
  values = {"weight_decay": jnp.array([1.0, 1e-3]),
            "huber_delta": jnp.ones(2), "fold": -jnp.ones(2, jnp.int32),
            "l1_share": jnp.zeros(2)}

  @jax.jit  # (each function compiled once, not op by op)
  def value_and_grad(theta):
    return objective.full_batch(
        theta, dataset.x_train, objective.rows_of(dataset), values,
        unravel=unravel,
        blocks=(("xent", 0, 2),), loss_input="probs", chunk=1024)[:2]

  state = jax.jit(lbfgs.init, static_argnums=1)(jnp.zeros((2, flat.size)),
                                                value_and_grad)
  tol, max_iters = jnp.array([1e-5, 1e-12]), jnp.array([100, 100])
  state = jax.jit(lbfgs.run, static_argnums=(1, 4))(
      state, value_and_grad, tol, max_iters, 30)
  assert lbfgs.grad_norm(state)[0] < 1e-5
  # Started again from W = 0: far above the strong penalty's optimum.
  state = state._replace(theta=state.theta.at[1].set(0.0),
                         value=state.value.at[1].set(np.log(7)))
  penalized = jax.flatten_util.ravel_pytree(
      {"b": jnp.zeros(dataset.num_classes),
       "w": jnp.ones((dataset.num_features, dataset.num_classes))})[0]
  moved = lbfgs.warm_start(state, values["weight_decay"], penalized,
                           np.ones((2, 2), bool), tol, max_iters)
  np.testing.assert_array_equal(moved.theta[1], state.theta[0])
  assert moved.pairs[1] == 0 and moved.pairs[0] == state.pairs[0]
  value, grad = value_and_grad(moved.theta)
  assert float(moved.value[1]) == pytest.approx(float(value[1]), rel=1e-5)
  np.testing.assert_allclose(moved.grad[1], grad[1], rtol=0, atol=1e-5)
  # Nothing better to take: nothing moves.
  again = lbfgs.warm_start(moved, values["weight_decay"], penalized,
                           np.ones((2, 2), bool), tol, max_iters)
  np.testing.assert_array_equal(again.theta, moved.theta)


@pytest.mark.slow
def test_a_stack_takes_a_pass_only_for_its_slowest_line_searches(dataset):
  """Every pass serves each configuration's own next trial: a stack of 4
  strengths, whose line searches need second trials at different
  iterations, takes as many passes as its busiest configuration's trials,
  not one per trial of any of them (synchronized line searches took one
  more pass each time one configuration retried)."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  from softmax_jax import model  # pylint: disable=import-outside-toplevel
  from softmax_jax.solvers import objective  # pylint: disable=import-outside-toplevel
  template = model.init_params(jax.random.key(0), dataset.num_features,
                               dataset.num_classes, init_scale=0.0)
  flat, unravel = jax.flatten_util.ravel_pytree(template)
  m = 4
  values = {"weight_decay": jnp.array([1e-1, 1e-2, 1e-3, 1e-4]),
            "huber_delta": jnp.ones(m), "fold": -jnp.ones(m, jnp.int32),
            "l1_share": jnp.zeros(m)}
  passes = []

  def value_and_grad(theta):
    jax.debug.callback(lambda _: passes.append(1), theta[0, 0])
    return objective.full_batch(
        theta, dataset.x_train, objective.rows_of(dataset), values,
        unravel=unravel, blocks=(("xent", 0, m),), loss_input="probs",
        chunk=1024)[:2]

  state = jax.jit(lbfgs.init, static_argnums=1)(jnp.zeros((m, flat.size)),
                                                value_and_grad)
  del passes[:]
  tol, max_iters = jnp.full(m, 1e-12), jnp.full(m, 40)
  state = jax.jit(lbfgs.run, static_argnums=(1, 4))(
      state, value_and_grad, tol, max_iters, 40)
  jax.effects_barrier()
  trials = np.asarray(state.evaluations) - 1  # (init's pass counted as 1)
  assert list(np.asarray(state.iterations)) == [40] * m
  retried = trials > 40
  assert retried.sum() >= 2, trials  # (else any line search would do)
  assert len(passes) == trials.max(), (len(passes), trials)


def test_the_transposed_copy_gives_the_plain_gradient():
  """A thin stack on float32 features reads x with its transposed copy
  (objective.transposes): its logits and their gradient in W are those of
  x alone, to float32 rounding, in one chunk or in several (a pass beyond
  the logits' budget); wide stacks, uint8 pixels and copies over
  TRANSPOSED_MAX_BYTES keep x alone."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(300, 20)).astype(np.float32)
  y = jnp.asarray(rng.integers(0, 3, 300))
  params = {"w": jnp.asarray(rng.normal(size=(2, 20, 3)), jnp.float32),
            "b": jnp.asarray(rng.normal(size=(2, 3)), jnp.float32)}

  def loss(p, features, labels, valid):
    logits = objective.stacked_logits(p, features)
    return jnp.sum(valid * (
        jax.nn.logsumexp(logits, axis=-1)
        - jnp.take_along_axis(logits, labels[None, :, None], -1)[..., 0]))

  def pass_(p, features, chunk):
    return evaluation.sum_chunks(
        lambda xc, yc, valid: jax.value_and_grad(loss)(p, xc, yc, valid),
        features, y, chunk)

  pair = (jnp.asarray(x), jnp.asarray(np.ascontiguousarray(x.T)))
  v0, g0 = jax.jit(pass_, static_argnums=2)(params, jnp.asarray(x), 300)
  for chunk in (300, 128):
    v1, g1 = jax.jit(pass_, static_argnums=2)(params, pair, chunk)
    np.testing.assert_allclose(v1, v0, rtol=1e-5)
    for name in ("w", "b"):
      np.testing.assert_allclose(g1[name], g0[name], rtol=1e-5, atol=1e-5)
  assert objective.transposes(x, 6)
  assert not objective.transposes(x, objective.TRANSPOSED_MAX_OUTPUTS + 1)
  assert not objective.transposes(x.astype(np.uint8), 6)
  assert not objective.transposes(
      np.lib.stride_tricks.as_strided(  # (a view: nothing allocated)
          x, (objective.TRANSPOSED_MAX_BYTES // 80 + 1, 20), (0, 4)), 6)


def test_a_pass_split_by_folds_is_the_whole_pass(dataset):
  """objective.fold_groups: a cross-validation stack whose rows come sorted
  by fold (of unequal sizes, then rows of weight 0) computes each
  configuration's logits only on the rows it trains on; the objective,
  gradient and training accuracy are the whole pass's, to rounding."""
  from softmax_jax import model  # pylint: disable=import-outside-toplevel
  n = len(dataset.y_train)
  folds = np.repeat(np.arange(3, dtype=np.int32), [1000, 900, n - 1900])
  weights = np.ones(n, np.float32)
  weights[-50:] = 0  # (an estimator's padding: no one computes it)
  rows = (dataset.y_train, weights, folds)
  config_folds = [0, 0, 1, 1, 2, 2]
  blocks = (("xent", 0, 6),)
  groups = objective.fold_groups(config_folds, folds, weights, blocks, 256)
  assert [(a, b, k) for a, b, k in groups] == [
      (0, 1000, (2, 3, 4, 5)), (1000, 1900, (0, 1, 4, 5)),
      (1900, n - 50, (0, 1, 2, 3))]
  template = model.init_params(jax.random.key(0), dataset.num_features,
                               dataset.num_classes, init_scale=0.0)
  flat, unravel = jax.flatten_util.ravel_pytree(template)
  theta = jax.random.normal(jax.random.key(1), (6, flat.size)) * 0.01
  values = {"weight_decay": jnp.array([1e-3, 1e-1] * 3),
            "huber_delta": jnp.ones(6),
            "fold": jnp.array(config_folds, jnp.int32),
            "l1_share": jnp.zeros(6)}

  def pass_(split, chunk):
    return jax.jit(lambda t: objective.full_batch(
        t, dataset.x_train, rows, values, unravel=unravel, blocks=blocks,
        loss_input="probs", chunk=chunk, groups=split))(theta)

  # Chunks of a part of a fold, and of a whole fold (each fold's rows in
  # one chunk, the smaller folds' cut short).
  for chunk in (256, 4096):
    (v1, g1, aux1), (v2, g2, aux2) = pass_(groups, chunk), pass_(None, chunk)
    np.testing.assert_allclose(v1, v2, rtol=1e-5)
    np.testing.assert_allclose(g1, g2, rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(aux1["train_accuracy"],
                                  aux2["train_accuracy"])
  assert objective.group_chunks(groups, 4096) == (n - 1950, 1)
  # Rows not sorted by fold, folds too unequal, or nothing saved: no split.
  assert objective.fold_groups(config_folds, np.arange(n) % 3, weights,
                               blocks, 256) is None
  assert objective.fold_groups(config_folds, np.repeat(
      np.arange(3), [2500, 250, n - 2750]), weights, blocks, 256) is None
  assert objective.fold_groups([-1] * 6, folds, weights, blocks, 256) is None


def test_the_preconditioners_quadratic_form_is_v_dot_p_v():
  """whitening_preconditioner's quadratic (one product with the
  eigenvectors) is v.P v, as L-BFGS's scale gamma = s.y / y.P y needs it."""
  rng = np.random.default_rng(0)
  d, k = 12, 4
  a = rng.normal(size=(d, d))
  eigvals, eigvecs = np.linalg.eigh(a @ a.T / d)
  template = {"b": jnp.zeros(k), "w": jnp.zeros((d, k))}
  unravel = jax.flatten_util.ravel_pytree(template)[1]
  precondition = objective.whitening_preconditioner(
      jnp.asarray(rng.normal(size=d), jnp.float32),
      jnp.asarray(eigvecs, jnp.float32), jnp.asarray(eigvals, jnp.float32),
      jnp.array([1e-3, 1e-1, 1.0]), k, unravel)
  v = jnp.asarray(rng.normal(size=(3, (d + 1) * k)), jnp.float32)
  np.testing.assert_allclose(precondition.quadratic(v),
                             jnp.sum(v * precondition(v), axis=-1),
                             rtol=1e-5)


def test_a_start_evaluated_by_the_first_pass_is_the_evaluated_start(dataset):
  """lbfgs.unevaluated: a state whose first pass evaluates it (no program
  of its own at the start) takes the same iterations to the same point as
  one evaluated by init, bit for bit; before that pass it is not
  finished, however small its (unknown) gradient."""
  from softmax_jax import model  # pylint: disable=import-outside-toplevel
  template = model.init_params(jax.random.key(0), dataset.num_features,
                               dataset.num_classes, init_scale=0.0)
  flat, unravel = jax.flatten_util.ravel_pytree(template)
  values = {"weight_decay": jnp.array([1e-1, 1e-3]),
            "huber_delta": jnp.ones(2), "fold": -jnp.ones(2, jnp.int32),
            "l1_share": jnp.zeros(2)}

  def value_and_grad(theta):
    value, grad, aux = objective.full_batch(
        theta, dataset.x_train, objective.rows_of(dataset), values,
        unravel=unravel, blocks=(("xent", 0, 2),), loss_input="probs",
        chunk=1024)
    return value, grad, aux["train_accuracy"]

  tol, max_iters = jnp.array([1e-5, 1e-5]), jnp.array([40, 40])
  theta = jnp.zeros((2, flat.size))
  fresh = lbfgs.unevaluated(theta)
  assert not lbfgs.finished(fresh, tol, max_iters).any()
  run = jax.jit(lbfgs.run, static_argnums=(1, 4))
  a = run(jax.jit(lbfgs.init, static_argnums=1)(theta, value_and_grad),
          value_and_grad, tol, max_iters, 30)
  b = run(fresh, value_and_grad, tol, max_iters, 30)
  np.testing.assert_array_equal(a.iterations, b.iterations)
  np.testing.assert_array_equal(a.evaluations, b.evaluations)
  np.testing.assert_array_equal(a.theta, b.theta)
  np.testing.assert_array_equal(a.aux, b.aux)
