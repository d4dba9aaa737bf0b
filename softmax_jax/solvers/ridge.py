"""Ridge regression on the one-hot code in closed form, for a whole path.

With the l2 loss on the logits, the objective

  (1 / 2N) sum_i ||x_i W + b - y_i||^2 + (weight_decay / 2) ||W||^2

(y_i one-hot, b not penalized) is minimized by b = mean(y) - mean(x) W and
W = (Xc^T Xc + N wd I)^-1 Xc^T Yc, Xc and Yc the centred data. With
example weights w_i (the mean weighted, N their sum), the same with the
weighted means and the rows of Xc and Yc scaled by sqrt(w_i). One
eigendecomposition Xc^T Xc = V diag(lam) V^T serves every weight decay
(without an intercept, b = 0 and X, Y are not centred):
W(wd) = V diag(1 / (lam + N wd)) V^T Xc^T Yc (when N < D, the N x N Gram
matrix Xc Xc^T instead: W = Xc^T U diag(1 / (mu + N wd)) U^T Yc), as in
big_vision's few-shot evaluator. In float64 on the host, a chunk of rows at
a time (the Gram matrix is D x D, the data are never copied whole): the
solution is exact to float64 rounding, where float32 would lose the small
eigenvalues that the smallest weight decays depend on.
"""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.flatten_util  # pylint: disable=unused-import
import jax.numpy as jnp
import numpy as np

from softmax_jax.config import Config
from softmax_jax.data import datasets as data_lib
from softmax_jax.data import user_data
from softmax_jax.errors import UserError
from softmax_jax.hosts import distributed
from softmax_jax.solvers import objective
from softmax_jax.solvers.base import check_linear
from softmax_jax.solvers.base import FULL_BATCH_UNREAD
from softmax_jax.solvers.base import Stack


def solve_path(x_NxD, y_N, num_classes: int, weight_decays,
               w_N=None, fit_intercept: bool = True) -> list[dict]:
  """{"w": [D, K], "b": [K]} (float32) for each weight decay; w_N: the
  examples' weights (None: all 1); fit_intercept False: b = 0."""
  d = x_NxD.shape[1]
  w_N = (np.ones(len(y_N)) if w_N is None
         else np.asarray(w_N, np.float64))
  n = w_N.sum()

  def chunks():  # (x, y, sqrt(w)) of each chunk of rows
    return ((data_lib.to_features(x_NxD[rows]).astype(np.float64), y_N[rows],
             np.sqrt(w_N[rows])[:, None])
            for rows in user_data.row_chunks(x_NxD))

  y_mean = np.bincount(y_N, weights=w_N, minlength=num_classes) / n
  x_mean = sum((s**2 * x).sum(axis=0) for x, _, s in chunks()) / n
  if not fit_intercept:
    y_mean, x_mean = np.zeros_like(y_mean), np.zeros_like(x_mean)

  def onehot(y):
    return np.eye(num_classes)[y] - y_mean

  if np.count_nonzero(w_N) >= d:  # primal: the D x D Gram matrix
    gram = np.zeros((d, d))
    xty = np.zeros((d, num_classes))
    for x, y, s in chunks():
      xc = s * (x - x_mean)
      gram += xc.T @ xc
      xty += xc.T @ (s * onehot(y))
    lam, v = np.linalg.eigh(gram)
    vxy = v.T @ xty

    def solve(wd):
      return v @ (vxy / (np.maximum(lam, 0) + n * wd)[:, None])
  else:  # dual: the N x N Gram matrix of the rows that weigh something
    rows = np.flatnonzero(w_N)
    s = np.sqrt(w_N[rows])[:, None]
    xc = s * (data_lib.to_features(np.asarray(x_NxD[rows])).astype(
        np.float64) - x_mean)
    mu, u = np.linalg.eigh(xc @ xc.T)
    uy = u.T @ (s * onehot(y_N[rows]))

    def solve(wd):
      return xc.T @ (u @ (uy / (np.maximum(mu, 0) + n * wd)[:, None]))

  out = []
  for wd in weight_decays:
    if wd <= 0:
      raise ValueError("the closed form needs weight_decay > 0")
    w = solve(float(wd))
    out.append({"w": w.astype(np.float32),
                "b": (y_mean - x_mean @ w).astype(np.float32)})
  return out


class ClosedForm:
  """--optimizer=exact: ridge regression on the one-hot code (above), the
  whole stack from one eigendecomposition, in one round; the round's record
  holds the objective and its gradient norm, a check of the solution."""

  FULL_BATCH: ClassVar[bool] = True
  UNREAD: ClassVar[tuple[str, ...]] = (*FULL_BATCH_UNREAD, "tol", "max_iters")
  SOLUTION_KEYS: ClassVar[tuple[str, ...]] = ("objective", "grad_norm",
                                              "iterations", "converged")
  num_rounds = 1

  def __init__(self, stack: Stack, dataset: data_lib.Dataset,
               shard_data: bool):
    del shard_data  # every host holds the whole training set
    self.stack, self.dataset = stack, dataset
    self.flat = objective.FlatObjective(stack, dataset)
    self.x = self.y = None  # on the devices once compiled

  @staticmethod
  def rounds(config: Config) -> int:
    del config
    return 1

  @staticmethod
  def check(config: Config) -> None:
    if (config.loss, config.loss_input) != ("l2", "logits"):
      raise UserError("--optimizer=exact solves ridge regression on the "
                      "one-hot code in closed form: it needs --loss=l2 "
                      "--loss_input=logits (use --optimizer=lbfgs for the "
                      "other losses)")
    if not config.weight_decay > 0:
      raise UserError("--optimizer=exact needs --weight_decay > 0 (the "
                      "ridge penalty that makes the solution unique)")
    if config.penalty != "l2":
      raise UserError(f"--optimizer=exact solves the L2 (ridge) penalty in "
                      f"closed form; --penalty={config.penalty} has none: "
                      "use --optimizer=owlqn")
    check_linear(config)

  def init_states(self, params=None):
    del params  # the closed form starts from nothing
    return {"params": jax.jit(self.flat.params, out_shardings=(
        self.stack.layout.configs))(self.flat.zeros())}

  def state_shapes(self):
    theta = jax.ShapeDtypeStruct((self.flat.num_configs, self.flat.size),
                                 np.float32)
    return {"params": jax.eval_shape(self.flat.params, theta)}

  def params(self, states):
    return states["params"]

  def compile(self, states):
    del states
    self.x = self.stack.replicate(self.dataset.x_train)
    self.y = jax.tree.map(self.stack.replicate,
                          objective.rows_of(self.dataset))

  def round(self, states, r):
    del r
    # One path for the configurations that leave out the same fold.
    _, w, folds = objective.rows_of(self.dataset)
    solved = [None] * len(self.stack.stacked)
    for fold in {c.fold for c in self.stack.stacked}:
      at = [i for i, c in enumerate(self.stack.stacked) if c.fold == fold]
      for i, params in zip(at, solve_path(
          self.dataset.x_train, self.dataset.y_train,
          self.dataset.num_classes,
          [self.stack.stacked[i].weight_decay for i in at],
          w * (folds != fold), self.stack.first.fit_intercept), strict=True):
        solved[i] = params
    params = jax.tree.map(lambda *a: distributed.put(
        np.stack(a), self.stack.layout.configs), *solved)
    theta = jax.vmap(lambda p: jax.flatten_util.ravel_pytree(p)[0])(params)
    value, grad, aux = jax.jit(self.flat.value)(theta, self.x, self.y,
                                                self.stack.values)
    return {"params": params}, jax.device_get({
        **aux, "objective": value, "grad_norm": jnp.linalg.norm(grad, axis=-1),
        "iterations": jnp.zeros_like(value, jnp.int32),
        # Exact in float64; the check, in float32, may say otherwise.
        "converged": (jnp.linalg.norm(grad, axis=-1)
                      < self.stack.values["tol"]),
        "finished": jnp.ones_like(value, bool)})

  def finished(self, m) -> bool:
    del m
    return True
