"""The training objective of a stack of configurations.

A stack holds M configurations that may differ in their loss (ordered so
that each loss is one block, see `loss_blocks`), weight decay and Huber
delta. `per_example_losses` gives each configuration's loss of each
example of a minibatch; `full_batch` the penalized objective over the
whole training set,

  sum_i w_i loss(x_i, y_i) / sum_i w_i
      + weight_decay ((1 - rho) / 2 ||W||^2 + rho ||W||_1)

(w_i the examples' weights, 1 unless given, and 0 for the rows of the
cross-validation fold a configuration leaves out; rho the L1 share of the
penalty, 0 for --penalty=l2; b not penalized: the objective the SGD
family's weight decay follows), with the gradient of its smooth part (all
but the L1 term, which the solvers of an L1 penalty handle themselves), in
chunks of rows: what the full-batch solvers minimize (the minibatch
solvers, its unbiased estimate on each minibatch).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import TYPE_CHECKING

import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import numpy as np

from softmax_jax import compilation
from softmax_jax import evaluation
from softmax_jax import losses
from softmax_jax import metrics
from softmax_jax import model
from softmax_jax.data import datasets as data_lib
from softmax_jax.data import user_data
from softmax_jax.hosts import distributed
from softmax_jax.solvers import optimizers

if TYPE_CHECKING:  # (annotations only: no import at run time)
  from softmax_jax.config import Config

# A stack of one configuration with at least this many classes is trained
# squeezed rather than vmapped: on a CPU, XLA compiles the batched matmul of
# batch 1 with extra transposes, 15-30% of an epoch at K = 1,000 (D = 512),
# while at K <= 100 the batched form is the faster one (d2l's K = 10: 58
# against 85 ms per epoch); measured on 2 cores, the crossover near K = 300.
SQUEEZE_MIN_CLASSES = 256


def over_stack(fn, squeeze: bool, in_axes=0):
  """jax.vmap(fn, in_axes) over the configurations of a stack, or, with
  squeeze, fn on the only configuration (see SQUEEZE_MIN_CLASSES)."""
  if not squeeze:
    return jax.vmap(fn, in_axes=in_axes)

  def one(*args):
    axes = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)
    args = [arg if axis is None else jax.tree.map(
        lambda a: a.reshape(a.shape[1:]), arg)
            for arg, axis in zip(args, axes, strict=True)]
    return jax.tree.map(lambda a: a[None], fn(*args))

  return one


def per_example_losses(logits_MxBxK, y_B, huber_delta_M, *, blocks,
                       loss_input, squeeze=False):
  """Each configuration's loss of each example [M, B], each block with its
  loss (y: [B] shared, or [M, B])."""
  # Each block's logits cut by lax.split, whose transpose is one
  # concatenation of the blocks' gradients; slices' transposes are pads,
  # summed in one fusion that took 86 ms of a 0.87 s epoch of the 4-loss
  # sweep of 64 (benchmarks/compare.py; 0.82 s split, this CPU, 2026-12-06).
  pieces = (jax.lax.split(logits_MxBxK, [stop - start
                                         for _, start, stop in blocks])
            if len(blocks) > 1 else [logits_MxBxK])
  parts = []
  for (name, start, stop), piece in zip(blocks, pieces, strict=True):
    fn = functools.partial(losses.LOSSES[name], loss_input=loss_input)
    per_example = over_stack(
        lambda o, d, y, fn=fn: fn(o, y, huber_delta=d), squeeze,
        in_axes=(0, 0, None if y_B.ndim == 1 else 0))(
            piece, huber_delta_M[start:stop],
            y_B if y_B.ndim == 1 else y_B[start:stop])
    parts.append(per_example)
  return jnp.concatenate(parts)


def loss_blocks(configs: list[Config]) -> tuple[tuple[str, int, int], ...]:
  """(loss, start, stop) of each run of equal losses in the config order."""
  return _runs([c.loss for c in configs])


def _runs(names: list[str]) -> tuple[tuple[str, int, int], ...]:
  """(name, start, stop) of each run of equal names."""
  blocks, start = [], 0
  for i in range(1, len(names) + 1):
    if i == len(names) or names[i] != names[start]:
      blocks.append((names[start], start, i))
      start = i
  return tuple(blocks)


def _penalized_sum(fn, params_M):
  """sum of fn over each configuration's penalized entries (not b) [M]."""
  sums = jax.tree.map(
      lambda p, on: jnp.sum(fn(p.reshape(p.shape[0], -1)), axis=-1) if on
      else jnp.zeros(p.shape[0], p.dtype),
      params_M, optimizers.decayed(params_M))
  return sum(jax.tree.leaves(sums))


def penalty(params_M, weight_decay_M, l1_share_M=None):
  """Each configuration's penalty [M] (b not counted): (weight_decay / 2)
  ||W||^2, or with l1_share rho, weight_decay ((1 - rho) / 2 ||W||^2 + rho
  ||W||_1)."""
  if l1_share_M is None:
    return 0.5 * weight_decay_M * _penalized_sum(jnp.square, params_M)
  return (penalty(params_M, weight_decay_M * (1 - l1_share_M))
          + weight_decay_M * l1_share_M * _penalized_sum(jnp.abs, params_M))


def smooth_weight_decay(values):
  """The strength of the penalty's L2 part, weight_decay (1 - rho), [M]."""
  return values["weight_decay"] * (1 - values["l1_share"])


def sparsity(params_M):
  """Each configuration's nonzero weights (the penalized entries: not the
  biases) and its input features used (rows of the first layer's W with a
  nonzero entry), [M] each."""
  first = params_M["hidden"][0]["w"] if "hidden" in params_M else None
  w = params_M["w"] if first is None else first
  nonzero = jax.tree.map(
      lambda p, on: jnp.sum((p != 0).reshape(p.shape[0], -1), axis=-1,
                            dtype=jnp.int32) * on,
      params_M, optimizers.decayed(params_M))
  return {"nonzero": sum(jax.tree.leaves(nonzero)),
          "features_used": jnp.sum(jnp.any(w != 0, axis=-1), axis=-1,
                                   dtype=jnp.int32)}


def stacked_logits(params_M, x_BxD):
  """Every configuration's logits [M, B, K] on the same rows: for linear
  models one matmul x [B, D] @ [D, M K] (the configurations' W side by side),
  which XLA's CPU dot runs faster than M batched ones (Fashion-MNIST's
  full-batch pass in 2,048-row chunks: 56 against 88 ms for one
  configuration, 271 against 310 ms for 16), else a vmap. x may be a pair
  (x [B, D], the same transposed [D, B]): see transposes."""
  x_DxB = None
  if isinstance(x_BxD, tuple):
    x_BxD, x_DxB = x_BxD
  if set(params_M) != {"w", "b"}:
    return jax.vmap(model.logits, in_axes=(0, None))(params_M, x_BxD)
  m, d, k = params_M["w"].shape
  wide = jnp.transpose(params_M["w"], (1, 0, 2)).reshape(d, m * k)
  product = (x_BxD @ wide if x_DxB is None
             else _times_with_transpose(x_BxD, x_DxB, wide))
  logits = product.reshape(-1, m, k) + params_M["b"][None]
  return jnp.transpose(logits, (1, 0, 2))


# The full-batch gradient's matmul x^T g reads x [N, D] down its columns,
# which XLA's CPU dot does at half the speed of a copy stored transposed
# when g has few columns (M K: one or a few configurations): 26.6 against
# 12.0 ms on Fashion-MNIST's 60,000 x 784 at K = 10, alike from ~100
# columns on. That copy pays in one pass over all the rows, not in chunks
# (whose slices of it are strided): one L-BFGS fit of those 60,000 images
# (C = 1/3) took 40-45 ms an iteration unchunked with the copy, 55-59
# chunked with or without it, 58-59 unchunked without it (2026-12-04,
# this project's 2-core EPYC). So FlatObjective takes all rows at once
# (up to the logits budget of evaluation.chunk_for), with the copy, for a
# stack of at most TRANSPOSED_MAX_OUTPUTS logits a row on float32 features
# (uint8 pixels are converted chunk by chunk, and whole they were slower)
# while the copy takes at most TRANSPOSED_MAX_BYTES.
TRANSPOSED_MAX_OUTPUTS = 64
TRANSPOSED_MAX_BYTES = 2**30


def transposes(x_NxD, num_outputs: int) -> bool:
  """Whether the full-batch pass reads x with its transposed copy (above)."""
  return (num_outputs <= TRANSPOSED_MAX_OUTPUTS
          and x_NxD.dtype == np.float32
          and x_NxD.nbytes <= TRANSPOSED_MAX_BYTES)


@jax.custom_vjp
def _times_with_transpose(x_BxD, x_DxB, w_DxJ):
  """x @ w, its gradient in w computed as x^T @ g from the transposed copy
  (the rows are data: no gradient for them)."""
  del x_DxB
  return x_BxD @ w_DxJ


def _times_forward(x_BxD, x_DxB, w_DxJ):
  return x_BxD @ w_DxJ, x_DxB


def _times_backward(x_DxB, g_BxJ):
  return None, None, x_DxB @ g_BxJ


_times_with_transpose.defvjp(_times_forward, _times_backward)


Rows = tuple  # (labels int32 [N], weights float32 [N], folds int32 [N])


def rows_of(dataset: data_lib.Dataset) -> Rows:
  """The training rows' labels, weights and folds, as the full-batch
  objective takes them (weights 1 and one fold 0 where the data have none)."""
  n = len(dataset.y_train)
  return (dataset.y_train, data_lib.train_weights(dataset),
          np.zeros(n, np.int32) if dataset.folds is None
          else np.asarray(dataset.folds, np.int32))


def _kept(rows_C: Rows, valid_C, fold_M):
  """Each configuration's weight of each row of a chunk [M, C] and whether
  it trains on it [M, C] (not padding, not in the fold it leaves out)."""
  _, w_C, fold_C = rows_C
  kept = valid_C[None] & (fold_C[None] != fold_M[:, None])
  return w_C[None] * kept, kept


def full_batch_value(params_M, x_NxD, rows_N: Rows, values, *, blocks,
                     loss_input, chunk):
  """Each configuration's objective over all N rows [M] (no gradient): the
  number `full_batch` minimizes, for any optimizer's params."""
  def chunk_sums(x, rows, valid):
    per = per_example_losses(stacked_logits(params_M, jax.tree.map(
        data_lib.to_features, x)),
                             rows[0], values["huber_delta"], blocks=blocks,
                             loss_input=loss_input)
    w, _ = _kept(rows, valid, values["fold"])
    return {"loss": jnp.sum(per * w, axis=-1), "weight": jnp.sum(w, axis=-1)}

  total = evaluation.sum_chunks(chunk_sums, x_NxD, rows_N, chunk)
  return (total["loss"] / total["weight"]
          + penalty(params_M, values["weight_decay"], values["l1_share"]))


# A static split of a pass by rows and configurations: (start, stop, the
# stack positions that train on some of rows start..stop), each position
# absent only where every row of the range weighs 0 for it (fold_groups).
Groups = tuple[tuple[int, int, tuple[int, ...]], ...]


def full_batch(theta_MxP, x_NxD, rows_N: Rows, values, *, unravel, blocks,
               loss_input, chunk, squeeze=False, groups: Groups | None = None):
  """The objective over all N rows, its gradient (flat, [M, P]) and, as aux,
  each configuration's weighted mean loss and its accuracy on the rows it
  trains on.

  theta_MxP are the configurations' parameters flattened (`unravel` turns
  one row back into a params tree); rows_N their labels, weights and folds
  (rows_of). Rows are taken in chunks and the gradient summed over them
  (evaluation.sum_chunks): no [N, K] array. x_NxD may be
  FlatObjective.features's pair. groups: the pass split by rows and
  configurations (fold_groups), so that a configuration's logits are not
  computed on the rows it leaves out; None: all rows for all of them.
  """
  params_M = jax.vmap(unravel)(theta_MxP)

  def chunk_sums(params, vals, blks, x, rows, valid):
    w, _ = _kept(rows, valid, vals["fold"])

    def loss_sum(params):
      logits = stacked_logits(params, jax.tree.map(data_lib.to_features, x))
      per = per_example_losses(logits, rows[0], vals["huber_delta"],
                               blocks=blks, loss_input=loss_input,
                               squeeze=squeeze)
      sums = jnp.sum(per * w, axis=-1)
      return jnp.sum(sums), (sums, logits)

    (_, (sums, logits)), grads = jax.value_and_grad(loss_sum, has_aux=True)(
        params)
    counted = w > 0  # (the rows it trains on: kept, and of some weight)
    correct = jnp.sum(counted * over_stack(
        metrics.argmax_is, squeeze, in_axes=(0, None))(logits, rows[0]),
                      axis=-1)
    return {"loss": sums, "grad": grads, "correct": correct,
            "weight": jnp.sum(w, axis=-1), "count": jnp.sum(counted, axis=-1)}

  if groups is None:
    total = evaluation.sum_chunks(
        functools.partial(chunk_sums, params_M, values, blocks), x_NxD,
        rows_N, chunk)
  else:
    total = _grouped_sums(chunk_sums, params_M, values, blocks, x_NxD,
                          rows_N, groups, chunk)
  weight_M = total["weight"]
  wd = smooth_weight_decay(values)

  def per_config(a, v_M):
    return v_M.reshape((-1,) + (1,) * (a.ndim - 1))

  grads = jax.tree.map(
      lambda g, p, on: g / per_config(g, weight_M) + (per_config(p, wd) * p
                                                      if on else 0.0),
      total["grad"], params_M, optimizers.decayed(params_M))
  loss_M = total["loss"] / weight_M
  value_M = loss_M + penalty(params_M, wd)
  flat = jax.vmap(lambda g: ravel_pytree(g)[0])(grads)
  return value_M, flat, {"train_loss": loss_M,
                         "train_accuracy": total["correct"] / total["count"]}


def _grouped_sums(chunk_sums, params_M, values, blocks, x_NxD, rows_N: Rows,
                  groups: Groups, chunk: int):
  """The sum over groups (fold_groups) and over chunks of each group's rows
  of chunk_sums(params, values, blocks, x, rows, valid) of the group's
  configurations, added into each configuration's place [M, ...]: a loop
  over the groups around a loop over their chunks, one body to compile
  (unrolled, the 5 folds of a cross-validation compiled 0.8 s longer)."""
  kept = np.array([k for _, _, k in groups], np.int32)  # [G, M']
  starts = np.array([a for a, _, _ in groups], np.int32)
  stops = np.array([b for _, b, _ in groups], np.int32)
  c, per_group = group_chunks(groups, chunk)
  blks = sub_blocks(blocks, groups[0][2])  # (the same in each group)
  m = len(jax.tree.leaves(params_M)[0])

  def group_sums(g):
    at = jnp.asarray(kept)[g]
    params, vals = (jax.tree.map(lambda a: a[at], t)
                    for t in (params_M, values))
    start, stop = jnp.asarray(starts)[g], jnp.asarray(stops)[g]

    def one(i):  # chunk i of the group's rows (a smaller group's last
      # chunk cut short)
      return chunk_sums(params, vals, blks, *evaluation.chunk_of(
          x_NxD, rows_N, i, c, start, stop))

    sums = jax.lax.fori_loop(1, per_group, lambda i, t: jax.tree.map(
        jnp.add, t, one(i)), one(0))
    return at, sums

  def add(total, g):
    at, sums = group_sums(g)
    return jax.tree.map(lambda t, a: t.at[at].add(a), total, sums)

  zeros = jax.tree.map(
      lambda a: jnp.zeros((m, *a.shape[1:]), a.dtype),
      jax.eval_shape(lambda: group_sums(0)[1]))
  return jax.lax.fori_loop(0, len(groups), lambda g, t: add(t, g), zeros)


def group_chunks(groups: Groups, chunk: int) -> tuple[int, int]:
  """(rows of each chunk, chunks of each group) of a split pass: as even
  chunks of at most `chunk` rows as the largest group takes (a smaller
  group's last chunk cut short)."""
  largest = max(b - a for a, b, _ in groups)
  c = evaluation.even_chunk(largest, chunk)
  return c, math.ceil(largest / c)


def sub_blocks(blocks, kept) -> tuple[tuple[str, int, int], ...]:
  """The loss blocks (loss_blocks) of the stack positions `kept` (sorted)
  of a stack whose blocks are `blocks`, numbered within them."""
  loss_at = [name for name, start, stop in blocks
             for _ in range(start, stop)]
  return _runs([loss_at[i] for i in kept])


# fold_groups splits a pass where it saves at least this share of its work.
GROUPS_MIN_SAVING = 0.05
GROUPS_MAX = 64  # row ranges, at most (more: folds not sorted, no split)


def fold_groups(folds_of_configs, folds_N, weights_N, blocks,
                chunk: int) -> Groups | None:
  """The pass of a cross-validation stack split by its rows' folds: each
  range of consecutive rows of one fold, with the configurations that do
  not leave that fold out (folds_of_configs: each stack position's --fold,
  -1 for none; `blocks` their losses), and none for the trailing rows of
  weight 0 (an estimator's padding). Where the rows come as such ranges
  (the estimator sorts them by fold), of sizes within 2 x of each other,
  each with as many configurations of the same losses (the folds x
  strengths of a cross-validation), and that saves GROUPS_MIN_SAVING of
  the pass; else None. A stack of 5 folds x 10 strengths then computes 4/5
  of the logits it did: each fold fit's pass is over its own rows, as it
  would be alone."""
  if folds_N is None or not len(folds_N):
    return None
  folds_N = np.asarray(folds_N)
  m, n = len(folds_of_configs), len(folds_N)
  weighed = np.flatnonzero(np.asarray(weights_N) > 0)
  end = int(weighed[-1]) + 1 if len(weighed) else 0
  edges = np.flatnonzero(np.diff(folds_N[:end])) + 1
  if len(edges) + 1 > GROUPS_MAX:
    return None
  groups = tuple(
      (int(a), int(b), tuple(i for i, f in enumerate(folds_of_configs)
                             if f != folds_N[a]))
      for a, b in zip(np.r_[0, edges], np.r_[edges, end], strict=True)
      if b > a)
  groups = tuple(g for g in groups if g[2])  # (rows no one trains on: none)
  if not groups:
    return None
  sizes = [b - a for a, b, _ in groups]
  if (len({len(k) for _, _, k in groups}) > 1 or max(sizes) > 2 * min(sizes)
      or len({sub_blocks(blocks, k) for _, _, k in groups}) > 1):
    return None
  c, per_group = group_chunks(groups, chunk)  # (the rows computed)
  if len(groups) * per_group * c * len(groups[0][2]) > (
      1 - GROUPS_MIN_SAVING) * m * n:
    return None
  return groups


def whitening_preconditioner(mean_D, eigvecs_DxD, eigvals_D, weight_decay_M,
                             num_classes, unravel):
  """L-BFGS's initial inverse Hessian for the linear model (lbfgs.Precondition).

  P = T T^T, T the change of variables W = A W', b = b' - mean W, with
  A = (Cov + lam I)^(-1/2) (Cov = V diag(eigvals) V^T, the features'
  covariance): the model on centred, whitened features. L-BFGS with this P
  takes the steps it would take in those coordinates, where features with a
  large mean (pixels, all positive) no longer couple W with b and
  correlated features no longer make the problem ill-conditioned, while its
  iterates, gradient and tolerance stay those of W and b. The curvature of
  the data term along W is about Cov (x) S (S the softmax's Jacobian
  averaged over the examples), that of the penalty weight_decay I; lam =
  10 K weight_decay takes S as I / (10 K). Measured on Fashion-MNIST
  (pixels / 255), iterations to a gradient norm of 1e-5 at weight decay
  1e-4: 375 (lam = 10 K wd), 392 (K wd), 808 (wd; also centring alone),
  over 1,000 (no preconditioner); at 1e-2: 88 (K wd) against 356.
  """
  lam_M = jnp.maximum(10 * num_classes * weight_decay_M,
                      1e-6 * jnp.max(eigvals_D))  # (weight_decay 0)

  def one(v, lam):
    g = unravel(v)
    u = g["w"] - mean_D[:, None] * g["b"][None, :]  # the W part of T^T g
    u = eigvecs_DxD @ ((eigvecs_DxD.T @ u) / (eigvals_D + lam)[:, None])
    return ravel_pytree({"w": u, "b": g["b"] - mean_D @ u})[0]

  def quadratic(v, lam):
    # v.P v = ||(Cov + lam)^(-1/2) u||^2 + ||v_b||^2 (u as above): one
    # product with the eigenvectors instead of P's two (in a 50-
    # configuration cross-validation, 3.3 of a pass's ~100 ms).
    g = unravel(v)
    u = eigvecs_DxD.T @ (g["w"] - mean_D[:, None] * g["b"][None, :])
    return (jnp.sum(u * u / (eigvals_D + lam)[:, None])
            + jnp.sum(g["b"] * g["b"]))

  def precondition(v_MxP):
    return jax.vmap(one)(v_MxP, lam_M)

  precondition.quadratic = lambda v_MxP: jax.vmap(quadratic)(v_MxP, lam_M)
  return precondition


class FlatObjective:
  """A stack's penalized full-batch objective (full_batch) over flat
  parameter vectors theta [M, P], the model's params raveled: what the
  full-batch solvers minimize, and check their solutions with."""

  CHUNK_VALUES = 2**20  # rows x features per chunk of the pass (in cache)
  # On an accelerator: a chunk's features as float32 (uint8 pixels are
  # converted a chunk at a time) within 1 GiB.
  ACCELERATOR_VALUES = 2**28

  def __init__(self, stack, dataset):
    c = stack.first
    unravel = []

    def flat_template():  # traced only (no eager operations to compile)
      flat, to_tree = ravel_pytree(model.init_params(
          jax.random.key(0), dataset.num_features, dataset.num_classes, 0.0,
          c.hidden_sizes, c.phm_n))
      unravel.append(to_tree)
      return flat

    self.size = jax.eval_shape(flat_template).shape[0]
    self.unravel = unravel[0]
    # The params' shapes and dtypes (jax.ShapeDtypeStruct leaves).
    self.template = jax.eval_shape(self.unravel, jax.ShapeDtypeStruct(
        (self.size,), np.float32))
    self.layout, self.num_configs = stack.layout, len(stack.stacked)
    # x with its transposed copy, all rows at once within the logits'
    # budget (see transposes), or in chunks of ~1,000 rows of Fashion-MNIST
    # that keep the pass in cache: 231 against 305 ms for 16 configurations
    # at 8,192 rows.
    # On an accelerator, the rows at once within the logits' budget and
    # ACCELERATOR_VALUES, and no transposed copy: the cache sizes above are
    # a CPU's, and a loop of chunks costs a GPU each chunk's launches (on an
    # H100, one pass of an 8-strength stack on 60,000 Fashion-MNIST images
    # took 1.76 ms at once against 3.61 ms in 1,337-row chunks, 2026-12-05;
    # without the copy: its effect there is not measured).
    m, k = len(stack.stacked), dataset.num_classes
    on_cpu = compilation.on_cpu()
    self.transposed = on_cpu and transposes(dataset.x_train, m * k)
    all_rows = evaluation.chunk_for(m, k, most=len(dataset.x_train))
    if self.transposed:
      self.chunk = all_rows
    elif on_cpu:
      self.chunk = min(evaluation.chunk_for(m, k), max(
          256, self.CHUNK_VALUES // dataset.num_features))
    else:
      self.chunk = min(all_rows, max(
          256, self.ACCELERATOR_VALUES // dataset.num_features))
    blocks = loss_blocks(stack.stacked)
    self._full_batch = functools.partial(
        full_batch, unravel=self.unravel, blocks=blocks,
        loss_input=c.loss_input,
        chunk=self.chunk,
        squeeze=len(stack.stacked) == 1
        and dataset.num_classes >= SQUEEZE_MIN_CLASSES)
    # The whole stack's pass split by folds (fold_groups), on one CPU
    # device (the configurations of a stack over several are split among
    # them; on an accelerator, a loop over the folds is not measured).
    self.groups = (fold_groups([s.fold for s in stack.stacked],
                               dataset.folds, rows_of(dataset)[1], blocks,
                               self.chunk)
                   if on_cpu and len(jax.devices()) == 1 else None)
    # Without an intercept (fit_intercept=False) b stays 0: its entries of
    # the gradient are 0, so no solver moves them.
    self.free = None if c.fit_intercept else self.mask(
        [name != "b" for name in _leaf_names(self.template)])

  def features(self, x_NxD):
    """x, on the devices, as the pass reads it: with its transposed copy
    [D, N] (a pair), transposed there (no copy of it on the host), where
    self.transposed, else alone."""
    if not self.transposed:
      return x_NxD
    return x_NxD, jax.jit(jnp.transpose,
                          out_shardings=self.layout.replicated)(x_NxD)

  def value(self, theta_MxP, x_NxD, rows_N: Rows, values, blocks=None):
    """(objective [M], gradient [M, P], aux) at theta: full_batch, the
    gradient in the entries the model fits (free); `blocks`: the losses of
    theta's stack when it is not the whole stack (loss_blocks; None: the
    whole stack, in its order, its pass split by self.groups)."""
    value, grad, aux = self._full_batch(
        theta_MxP, x_NxD, rows_N, values,
        **({"groups": self.groups} if blocks is None
           else {"blocks": blocks}))
    return value, grad if self.free is None else grad * self.free, aux

  def mask(self, on_leaves) -> np.ndarray:
    """[P] float32: 1 in the flat entries of the leaves that are on (a bool
    per leaf of the params, in their order), 0 elsewhere; built in NumPy, in
    ravel_pytree's order (no eager operations)."""
    return np.concatenate([
        np.full(math.prod(leaf.shape), float(on), np.float32) for leaf, on in
        zip(jax.tree.leaves(self.template), on_leaves, strict=True)])

  def without_intercept(self, theta_MxP):
    """theta with b = 0 where the model has no intercept (a warm start's)."""
    return theta_MxP if self.free is None else theta_MxP * self.free

  def zeros(self):
    """Every configuration's flat parameters at W = 0, b = 0 (where
    scikit-learn starts too; the seed has no role), as an argument of the
    compiled start: XLA folding the objective at constant zeros gave NaN."""
    return distributed.put(np.zeros((self.num_configs, self.size),
                                    np.float32), self.layout.configs)

  def params(self, theta_MxP):
    """The stacked params trees of theta."""
    return jax.vmap(self.unravel)(theta_MxP)


def _leaf_names(tree) -> list[str]:
  """Each leaf's key when it is at the top of the tree ("" deeper down), in
  the leaves' order: the output layer's bias is the "b" at the top."""
  return [path[-1].key if len(path) == 1 else ""
          for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def objective_key(config: Config) -> tuple:
  """What lambda_max depends on: configurations with the same key share
  it (a path's strengths, its learning rates)."""
  return (config.loss, config.loss_input, config.huber_delta,
          config.l1_share, config.fold, config.fit_intercept)


def lambda_maxes(dataset: data_lib.Dataset,
                 configs: list[Config]) -> list[float]:
  """Each config's lambda_max, one pass over the data for each distinct
  objective (a path: one)."""
  passes: dict[tuple, float] = {}
  for c in configs:
    if objective_key(c) not in passes:
      passes[objective_key(c)] = lambda_max(dataset, c)
  return [passes[objective_key(c)] for c in configs]


def in_absolute_units(configs: list[Config], dataset: data_lib.Dataset
                      ) -> tuple[list[Config], list[float] | None]:
  """configs with --weight_decay_unit=lambda_max read: weight_decay, a
  fraction of lambda_max on dataset (the training rows), made absolute
  (lambda = fraction x lambda_max), and each one's lambda_max; others as
  they are, and None."""
  if all(c.weight_decay_unit == "absolute" for c in configs):
    return configs, None
  maxes = lambda_maxes(dataset, configs)
  return [dataclasses.replace(c, weight_decay=c.weight_decay * m,
                              weight_decay_unit="absolute")
          if c.weight_decay_unit == "lambda_max" else c
          for c, m in zip(configs, maxes, strict=True)], maxes


def lambda_max(dataset: data_lib.Dataset, config: Config) -> float:
  """The smallest strength at which W = 0 is the optimum of config's
  objective (its loss, L1 share rho and fold; the linear model): W = 0
  with the best bias b* is optimal while every entry of the data term's
  gradient in W there is at most lambda rho in size, so lambda_max =
  max |G| / rho, G = sum_i w_i x_i r(y_i)^T / sum_i w_i with r(k) the
  loss's gradient in the logits at b* for class k (cross-entropy:
  softmax(b*) - e_k = c - e_k, c the weighted class shares; other losses:
  b* solved numerically over the K biases; without an intercept b* = 0,
  and for cross-entropy c = 1/K). inf for rho = 0 (l2: W = 0 at no finite
  strength). One pass over the training rows. (Optimal where the objective
  is convex: cross-entropy, and any loss on logits. l2 and huber on
  probabilities are not convex in W: there W = 0 is a stationary point
  from lambda_max on, a lower objective may lie elsewhere, and b* is
  solved to scipy's tolerance.)"""
  if config.l1_share == 0:
    return math.inf
  y, w, folds = rows_of(dataset)
  w = np.where(folds != config.fold, w, 0).astype(np.float64)
  k = dataset.num_classes
  shares = np.bincount(y, weights=w, minlength=k) / w.sum()
  sums = np.zeros((k, dataset.num_features))  # S[k] = sum_{y_i=k} w_i x_i
  for rows in user_data.row_chunks(dataset.x_train):
    x = data_lib.to_features(dataset.x_train[rows]).astype(np.float64)
    np.add.at(sums, y[rows], x * w[rows, None])  # O(N D), not O(N D K)
  sums = sums.T
  if config.loss == "xent":
    c = shares if config.fit_intercept else np.full(k, 1 / k)
    r = c[None, :] - np.eye(k)
  else:
    r = _bias_gradients(config, shares)
  g = sums @ r / w.sum()
  return float(np.max(np.abs(g)) / config.l1_share)


def _bias_gradients(config: Config, shares) -> np.ndarray:
  """r [K, K]: row k the loss's gradient in the logits o = b* for label k,
  b* minimizing sum_k shares_k loss(b, k) (the mean loss at W = 0), or
  b* = 0 without an intercept."""
  import scipy.optimize  # pylint: disable=g-import-not-at-top  (0.3 s, rare)
  k = len(shares)
  labels = jnp.arange(k)
  loss = functools.partial(losses.LOSSES[config.loss],
                           loss_input=config.loss_input,
                           huber_delta=config.huber_delta)

  def mean_loss(b):
    return jnp.sum(jnp.asarray(shares, jnp.float32)
                   * loss(jnp.broadcast_to(b, (k, k)), labels))

  b = jnp.zeros(k, jnp.float32)
  if config.fit_intercept:
    solution = scipy.optimize.minimize(
        lambda b: [np.asarray(v, np.float64) for v in jax.value_and_grad(
            mean_loss)(jnp.asarray(b, jnp.float32))],
        np.zeros(k), jac=True, method="L-BFGS-B", options={"gtol": 1e-10})
    b = jnp.asarray(solution.x, jnp.float32)
  return np.asarray(jax.vmap(jax.grad(lambda o, label: loss(o[None],
                                                            label[None])[0]),
                             in_axes=(None, 0))(b, labels), np.float64)
