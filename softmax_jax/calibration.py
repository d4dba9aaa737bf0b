"""Temperature scaling (Guo et al., 2017, "On Calibration of Modern Neural
Networks"): after training, one scalar T > 0 divides a model's logits, the
T that minimizes the negative log-likelihood on the validation split.
softmax(o / T) keeps each row's argmax, so accuracy is unchanged.

With beta = 1 / T the validation NLL,

    g(beta) = mean_i [logsumexp_k(beta o_ik) - beta o_iy_i],

is convex (a log-sum-exp of functions linear in beta), with
g'(beta) = mean_i (E_p[o_i] - o_iy_i) and g''(beta) = mean_i Var_p[o_i] >= 0
under p = softmax(beta o_i). Its minimum is where g' = 0: Newton steps,
kept inside a bracket on which g' changes sign and halved (in log space)
wherever a Newton step would leave it, so every step is safe and the last
ones are quadratic. (Guo et al. fit T with L-BFGS; in one dimension this is
exact in a fixed number of passes, and vmaps over a sweep.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from softmax_jax import evaluation
from softmax_jax import model
from softmax_jax.data import datasets as data_lib

# The temperatures searched: beta = 1 / T in [1 / T_MAX, 1 / T_MIN].
T_MIN, T_MAX = 1e-2, 1e2
# Passes over the validation split: bisection alone narrows the bracket's
# four decades to a factor 1 + 2.1e-9 in 32 of them; Newton gets there
# sooner.
ITERATIONS = 32


def _nll_and_derivatives(params: model.Params, x_NxD, y_N, beta, chunk: int):
  """g(beta), g'(beta), g''(beta) over (x, y), a chunk of rows at a time."""

  def sums(x, y, valid):
    o_CxK = model.logits(params, data_lib.to_features(x))
    log_p_CxK = jax.nn.log_softmax(beta * o_CxK)
    p_CxK = jnp.exp(log_p_CxK)
    mean_C = jnp.sum(p_CxK * o_CxK, axis=-1)
    var_C = jnp.sum(p_CxK * jnp.square(o_CxK - mean_C[:, None]), axis=-1)
    o_y_C = jnp.take_along_axis(o_CxK, y[:, None], axis=-1)[:, 0]
    log_p_y_C = jnp.take_along_axis(log_p_CxK, y[:, None], axis=-1)[:, 0]
    w = valid.astype(jnp.float32)
    return (jnp.sum(w * -log_p_y_C), jnp.sum(w * (mean_C - o_y_C)),
            jnp.sum(w * var_C))

  totals = evaluation.sum_chunks(sums, x_NxD, y_N, chunk)
  return tuple(t / x_NxD.shape[0] for t in totals)


def fit_temperature(params: model.Params, x_NxD, y_N,
                    chunk: int = evaluation.CHUNK):
  """(T, validation NLL at T = 1, at T): the NLL-minimizing temperature in
  [T_MIN, T_MAX], or 1 where the fit would not lower the NLL (never worse)."""

  def step(_, state):
    lo, hi, beta = state
    _, d1, d2 = _nll_and_derivatives(params, x_NxD, y_N, beta, chunk)
    lo, hi = jnp.where(d1 < 0, beta, lo), jnp.where(d1 < 0, hi, beta)
    newton = beta - d1 / d2
    inside = (newton >= lo) & (newton <= hi)  # False for NaN (d2 = 0)
    return lo, hi, jnp.where(inside, newton, jnp.sqrt(lo * hi))

  start = (jnp.float32(1 / T_MAX), jnp.float32(1 / T_MIN), jnp.float32(1.0))
  _, _, beta = jax.lax.fori_loop(0, ITERATIONS, step, start)
  nll_1 = _nll_and_derivatives(params, x_NxD, y_N, 1.0, chunk)[0]
  nll_beta = _nll_and_derivatives(params, x_NxD, y_N, beta, chunk)[0]
  better = nll_beta < nll_1
  return (jnp.where(better, 1 / beta, 1.0), nll_1,
          jnp.where(better, nll_beta, nll_1))


def _stacked(params_M: model.Params, x_val, y_val, x_test, y_test, chunk):
  """fit_temperature and the test scores before and after, for a stack."""

  def one(params):
    t, val_before, val_after = fit_temperature(params, x_val, y_val, chunk)
    before = evaluation.evaluate(params, x_test, y_test, chunk)
    after = evaluation.evaluate(params, x_test, y_test, chunk, temperature=t)
    return {"temperature": t,
            "val_nll_before": val_before, "val_nll_after": val_after,
            "test_nll_before": before["nll"], "test_nll_after": after["nll"],
            "test_ece_before": before["ece"], "test_ece_after": after["ece"]}

  return jax.vmap(one)(params_M)


_stacked_jit = jax.jit(_stacked, static_argnames="chunk")


def calibrate(params_list: list[model.Params], dataset: data_lib.Dataset
              ) -> list[dict[str, float] | None]:
  """Each model's temperature, fit on the validation split, and its effect:
  validation and test NLL and test ECE before (T = 1) and after. Models of
  the same shapes are fit together (vmapped); a model with non-finite
  parameters (diverged) gets None."""
  assert dataset.x_val is not None and dataset.y_val is not None
  out: list[dict[str, float] | None] = [None] * len(params_list)
  by_shapes: dict[tuple, list[int]] = {}
  for i, p in enumerate(params_list):
    if all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(p)):
      shapes = tuple((a.shape, str(a.dtype)) for a in jax.tree.leaves(p))
      by_shapes.setdefault((jax.tree.structure(p), shapes), []).append(i)
  for members in by_shapes.values():
    stack = jax.tree.map(lambda *a: np.stack(a),
                         *[params_list[i] for i in members])
    chunk = evaluation.chunk_for(len(members), dataset.num_classes)
    fitted = jax.device_get(_stacked_jit(
        stack, dataset.x_val, dataset.y_val, dataset.x_test, dataset.y_test,
        chunk=chunk))
    for j, i in enumerate(members):
      out[i] = {k: float(v[j]) for k, v in fitted.items()}
  return out
