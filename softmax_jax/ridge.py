"""Ridge regression on the one-hot code in closed form, for a whole path.

With the l2 loss on the logits, the objective

  (1 / 2N) sum_i ||x_i W + b - y_i||^2 + (weight_decay / 2) ||W||^2

(y_i one-hot, b not penalized) is minimized by b = mean(y) - mean(x) W and
W = (Xc^T Xc + N wd I)^-1 Xc^T Yc, Xc and Yc the centred data. One
eigendecomposition Xc^T Xc = V diag(lam) V^T serves every weight decay:
W(wd) = V diag(1 / (lam + N wd)) V^T Xc^T Yc (when N < D, the N x N Gram
matrix Xc Xc^T instead: W = Xc^T U diag(1 / (mu + N wd)) U^T Yc), as in
big_vision's few-shot evaluator. In float64 on the host, a chunk of rows at
a time (the Gram matrix is D x D, the data are never copied whole): the
solution is exact to float64 rounding, where float32 would lose the small
eigenvalues that the smallest weight decays depend on.
"""

from __future__ import annotations

import numpy as np

from softmax_jax import data as data_lib
from softmax_jax import user_data


def solve_path(x_NxD, y_N, num_classes: int, weight_decays) -> list[dict]:
  """{"w": [D, K], "b": [K]} (float32) for each weight decay."""
  n, d = x_NxD.shape

  def chunks():
    return ((data_lib.to_features(x_NxD[rows]).astype(np.float64), y_N[rows])
            for rows in user_data.row_chunks(x_NxD))

  y_mean = np.bincount(y_N, minlength=num_classes) / n

  def onehot(y):
    return np.eye(num_classes)[y] - y_mean

  if n >= d:  # primal: the D x D Gram matrix
    x_mean, cov = data_lib.feature_covariance(x_NxD)
    xty = sum((x - x_mean).T @ onehot(y) for x, y in chunks())
    lam, v = np.linalg.eigh(n * cov)
    vxy = v.T @ xty

    def solve(wd):
      return v @ (vxy / (np.maximum(lam, 0) + n * wd)[:, None])
  else:  # dual: the N x N Gram matrix
    xc = data_lib.to_features(np.asarray(x_NxD)).astype(np.float64)
    x_mean = xc.mean(axis=0)
    xc -= x_mean
    mu, u = np.linalg.eigh(xc @ xc.T)
    uy = u.T @ onehot(y_N)

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
