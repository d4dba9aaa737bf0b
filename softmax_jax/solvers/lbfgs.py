"""Full-batch L-BFGS for a stack of configurations, in one compiled program.

Each configuration m minimizes its own smooth objective f_m(theta_m) over a
flat parameter vector; `value_and_grad` evaluates all of them at once
([M, P] -> [M], [M, P], and optionally an aux [M] kept beside the value: the
training accuracy), so the pass over the data is shared by the stack (a
regularization path is M weight decays on the same data). Each iteration
computes every configuration's quasi-Newton direction (the two-loop
recursion over its last MEMORY curvature pairs, Nocedal & Wright alg. 7.4,
from an initial inverse Hessian gamma P, P a preconditioner of the
caller's: objective.whitening_preconditioner for the linear model), then a
backtracking line search (t = 1, 1/2, 1/4, ... until the Armijo condition
holds). The line searches are interleaved, not synchronized: each shared
pass evaluates every configuration at its own trial point; one whose trial
is accepted takes its step and starts its next iteration in the next pass,
one whose trial fails halves its step and tries again in the next pass, so
no configuration waits for another's retries. (Synchronized, a stack of 50
Fashion-MNIST configurations took 1.67 passes an iteration, as one or
another of them nearly always needed a second trial, against 1.05 trials
an iteration for each.) Configurations that have converged (gradient norm
below tol) or reached max_iters stop moving while the others go on, so a
vmapped path ends where each of its strengths solved alone does: each
configuration's sequence of trial points is the one it takes alone.

Why not a vmap of optax.lbfgs: its zoom line search under vmap runs every
branch for every configuration; measured at ~95 ms per model-iteration on
Fashion-MNIST against ~12 ms per model for one shared value-and-gradient pass.
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
import functools
import math
from typing import ClassVar, NamedTuple

import jax
import jax.flatten_util  # pylint: disable=unused-import
import jax.numpy as jnp
import numpy as np

from softmax_jax import compilation
from softmax_jax.compilation import compile_once
from softmax_jax.config import Config
from softmax_jax.data import datasets as data_lib
from softmax_jax.errors import UserError
from softmax_jax.hosts import distributed
from softmax_jax.solvers import objective
from softmax_jax.solvers import optimizers
from softmax_jax.solvers.base import check_linear
from softmax_jax.solvers.base import config_values
from softmax_jax.solvers.base import FULL_BATCH_UNREAD
from softmax_jax.solvers.base import Stack

MEMORY = 10  # curvature pairs kept (scipy's and scikit-learn's default)
ARMIJO = 1e-4  # sufficient decrease: f(x + t d) <= f(x) + ARMIJO t g.d
MAX_TRIALS = 30  # step halvings per line search before giving up
# Hager & Zhang's approximate Wolfe conditions (delta, sigma, epsilon).
WOLFE_DELTA, WOLFE_SIGMA, F_ROUNDING = 0.1, 0.9, 1e-6
# warm_start: the least relative decrease of the objective worth a restart.
WARM_MARGIN = 1e-5


class State(NamedTuple):
  theta: jax.Array  # [M, P] parameters
  value: jax.Array  # [M] objective
  grad: jax.Array  # [M, P]
  s: jax.Array  # [M, MEMORY, P] steps (a ring, newest at (pairs - 1) % MEMORY)
  y: jax.Array  # [M, MEMORY, P] gradient changes
  rho: jax.Array  # [M, MEMORY] 1 / s.y (0: an empty slot)
  pairs: jax.Array  # [M] int32: pairs stored so far
  iterations: jax.Array  # [M] int32: iterations taken
  evaluations: jax.Array  # [M] int32: objective evaluations (passes) taken
  stalled: jax.Array  # [M] bool: a line search found no decrease
  # What value_and_grad gives beside f and g at theta, kept as value is (0
  # where it gives nothing): the linear model's training accuracy, so that
  # a round's record needs no pass of its own (a forward pass of the whole
  # stack: ~0.05 s a round of a 50-configuration cross-validation).
  aux: jax.Array  # [M]
  # The line search under way (see step):
  d: jax.Array  # [M, P] its direction
  trials: jax.Array  # [M] int32: its trials so far (the next one's step:
  #                     t = 2^-trials)
  fresh: jax.Array  # [M] bool: a new one starts (d to be computed)


# theta [M, P] -> (f [M], g [M, P]) or (f, g, aux [M]).
ValueAndGrad = Callable[[jax.Array], tuple[jax.Array, ...]]
# A symmetric positive definite linear map of each configuration's vector
# ([M, P] -> [M, P]): L-BFGS's initial inverse Hessian, up to its scale.
# It may have an attribute `quadratic`: v -> v.P v [M], computed with less
# work than P v.
Precondition = Callable[[jax.Array], jax.Array]


def _quadratic(precondition: Precondition, v_MxP):
  """v.P v of each configuration [M]."""
  if hasattr(precondition, "quadratic"):
    return precondition.quadratic(v_MxP)
  return jnp.sum(v_MxP * precondition(v_MxP), axis=-1)


def _evaluated(value_and_grad: ValueAndGrad, theta_MxP):
  """(f, g, aux) of value_and_grad at theta (aux 0 where it gives none)."""
  out = value_and_grad(theta_MxP)
  return out if len(out) == 3 else (*out, jnp.zeros_like(out[0]))


def init(theta_MxP: jax.Array, value_and_grad: ValueAndGrad) -> State:
  """The state at theta, evaluated (one pass)."""
  value, grad, aux = _evaluated(value_and_grad, theta_MxP)
  return unevaluated(theta_MxP)._replace(
      value=value, grad=grad, aux=aux,
      evaluations=jnp.ones(len(theta_MxP), jnp.int32))


def unevaluated(theta_MxP: jax.Array) -> State:
  """The state at theta before any pass (evaluations 0): the first pass of
  step evaluates it there, so that the start needs no program with a pass
  of its own to compile (a cross-validation of 50 configurations compiled
  one for 0.45 s)."""
  m, p = theta_MxP.shape
  zeros = jnp.zeros(m, theta_MxP.dtype)
  return State(theta=theta_MxP, value=zeros, grad=jnp.zeros_like(theta_MxP),
               s=jnp.zeros((m, MEMORY, p), theta_MxP.dtype),
               y=jnp.zeros((m, MEMORY, p), theta_MxP.dtype),
               rho=jnp.zeros((m, MEMORY), theta_MxP.dtype),
               pairs=jnp.zeros(m, jnp.int32),
               iterations=jnp.zeros(m, jnp.int32),
               evaluations=jnp.zeros(m, jnp.int32),
               stalled=jnp.zeros(m, bool), aux=zeros,
               d=jnp.zeros((m, p), theta_MxP.dtype),
               trials=jnp.zeros(m, jnp.int32),
               fresh=jnp.ones(m, bool))


# Each configuration's weight of |theta| in its objective [M, P] (OWL-QN:
# lambda rho on the penalized entries, 0 on the others), or None: no L1 term.
L1 = jax.Array | None


def pseudo_gradient(theta, grad, l1: L1):
  """The smallest subgradient of f + sum l1 |theta| (grad: f's gradient),
  entry by entry (Andrew & Gao 2007): the gradient of the side theta lies
  on, and at 0 the side along which the objective descends, else 0. Its
  norm is the distance of 0 from the subdifferential: the KKT violation,
  0 exactly at the optimum."""
  if l1 is None:
    return grad
  right, left = grad + l1, grad - l1
  at_zero = jnp.where(right < 0, right, jnp.where(left > 0, left, 0.0))
  return jnp.where(theta > 0, right, jnp.where(theta < 0, left, at_zero))


# The model's gradient [M, P] of the solver's, where the solver works in
# other variables (OWLQN: centred ones): the certificate is the model's.
# None: the same variables.
ToModel = Callable[[jax.Array], jax.Array] | None


def grad_norm(state: State, l1: L1 = None, to_model: ToModel = None
              ) -> jax.Array:
  """The norm of the objective's (pseudo-)gradient [M] in the model's
  variables: the certificate. (The L1 term's entries, W's, are the same
  in both.)"""
  grad = state.grad if to_model is None else to_model(state.grad)
  return jnp.linalg.norm(pseudo_gradient(state.theta, grad, l1), axis=-1)


def finished(state: State, tol, max_iters, l1: L1 = None,
             to_model: ToModel = None) -> jax.Array:
  """[M] bool: converged (gradient norm < tol), out of iterations or
  stalled; never before its first evaluation (unevaluated)."""
  return (((grad_norm(state, l1, to_model) < tol)
           | (state.iterations >= max_iters) | state.stalled)
          & (state.evaluations > 0))


def warm_start(state: State, weight_M, penalized_P, same_loss_MxM, tol,
               max_iters, l1_share_M=None, to_model: ToModel = None) -> State:
  """Follows a regularization path inside one stack, with no pass over data.

  When configuration j and k minimize f(theta) = L(theta) + weight R(theta)
  with the same L (same_loss) and R = ||penalized * theta||^2 / 2, then
  f_j(theta_k) = f_k(theta_k) + (weight_j - weight_k) R(theta_k), and its
  gradient likewise: j's objective at k's iterate is known exactly (with
  an L1 share rho, R_j = (1 - rho_j) ||.||^2 / 2 + rho_j ||.||_1 and
  f_j(theta_k) = f_k(theta_k) - weight_k R_k(theta_k) + weight_j
  R_j(theta_k), the gradient that of the smooth part). Each
  configuration still moving takes the converged iterate where its own
  objective is the lowest, if that is below its own (by WARM_MARGIN,
  relative), and drops its curvature pairs: scikit-learn's warm-started
  path (each strength from its neighbour's solution), but every strength
  at once, taking a solution only where it helps.
  """
  l1 = (None if l1_share_M is None
        else (weight_M * l1_share_M)[:, None] * penalized_P)
  converged = (grad_norm(state, l1, to_model) < tol) & (state.evaluations > 0)
  moving = ~finished(state, tol, max_iters, l1, to_model)
  r = 0.5 * jnp.sum((state.theta * penalized_P)**2, axis=-1)
  smooth_M = weight_M if l1_share_M is None else weight_M * (1 - l1_share_M)
  dw = smooth_M[:, None] - smooth_M[None, :]  # [j, k]
  there = state.value[None, :] + dw * r[None, :]  # f_j(theta_k)
  if l1_share_M is not None:
    a = jnp.sum(jnp.abs(state.theta * penalized_P), axis=-1)
    l1_M = weight_M * l1_share_M
    there = there + (l1_M[:, None] - l1_M[None, :]) * a[None, :]
  usable = same_loss_MxM & converged[None, :] & moving[:, None]
  there = jnp.where(usable, there, jnp.inf)
  k = jnp.argmin(there, axis=1)
  best = jnp.take_along_axis(there, k[:, None], axis=1)[:, 0]
  jump = best < state.value - WARM_MARGIN * jnp.abs(state.value)
  theta = state.theta[k]
  grad = (state.grad[k]
          + dw[jnp.arange(len(k)), k][:, None] * penalized_P * theta)

  def where(a, b):
    return jnp.where(jump.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)

  return state._replace(
      theta=where(theta, state.theta), value=where(best, state.value),
      grad=where(grad, state.grad),
      # (The same rows and loss: the training accuracy there is k's.)
      aux=where(state.aux[k], state.aux),
      rho=where(jnp.zeros_like(state.rho), state.rho),
      pairs=where(jnp.zeros_like(state.pairs), state.pairs),
      fresh=state.fresh | jump)  # (its line search starts again there)


# The recursion's inner products are sums of products, not jnp.dot: a dot
# is a matrix product, computed at the matmul precision (on a GPU, TF32 at
# JAX's default: 3 digits for the curvature pairs) and, vmapped over the
# stack, a batched product of vectors for cuBLAS. (On this project's CPU
# an iteration costs the same either way, 42-46 ms; on a GPU the effect
# is not measured yet.)


def _backward(g, s, y, rho, pairs):
  """The first loop of the two-loop recursion (newest pair to oldest) for
  one configuration: q and the alphas."""
  newest = (pairs - 1) % MEMORY

  def body(i, carry):
    q, alpha = carry
    j = (newest - i) % MEMORY
    a = rho[j] * jnp.sum(s[j] * q)
    return q - a * y[j], alpha.at[j].set(a)

  return jax.lax.fori_loop(0, MEMORY, body, (g, jnp.zeros(MEMORY, g.dtype)))


def _forward(r, s, y, rho, alpha, pairs):
  """The second loop (oldest pair to newest) for one configuration."""
  newest = (pairs - 1) % MEMORY

  def body(i, r):
    j = (newest - (MEMORY - 1) + i) % MEMORY
    b = rho[j] * jnp.sum(y[j] * r)
    return r + s[j] * (alpha[j] - b)

  return jax.lax.fori_loop(0, MEMORY, body, r)


def identity(v_MxP):
  return v_MxP


def direction(state: State, precondition: Precondition = identity,
              l1: L1 = None):
  """-H g of every configuration, H the L-BFGS inverse Hessian estimate whose
  initial matrix is gamma P (P = precondition, gamma = s.y / y.P.y of the
  newest pair): L-BFGS in the coordinates where P is the identity. With
  l1, g is the pseudo-gradient, and the entries of an L1 term where the
  direction does not descend along -g are dropped (OWL-QN's alignment)."""
  g = pseudo_gradient(state.theta, state.grad, l1)
  q, alpha = jax.vmap(_backward)(g, state.s, state.y, state.rho,
                                 state.pairs)
  newest = (state.pairs - 1) % MEMORY
  y_new = jnp.take_along_axis(state.y, newest[:, None, None], axis=1)[:, 0]
  yPy = _quadratic(precondition, y_new)
  rho_new = jnp.take_along_axis(state.rho, newest[:, None], axis=1)[:, 0]
  # Before any pair, a first step of length at most 1 (in P's coordinates).
  # (P g only then: a third application of P in every other direction.)
  gPg = jax.lax.cond(jnp.any(state.pairs == 0),
                     lambda: _quadratic(precondition, g),
                     lambda: jnp.ones_like(yPy))
  gamma = jnp.where(state.pairs > 0,
                    1.0 / (rho_new * jnp.maximum(yPy, 1e-30)),
                    1.0 / jnp.maximum(jnp.sqrt(gPg), 1.0))
  r = gamma[:, None] * precondition(q)
  d = -jax.vmap(_forward)(r, state.s, state.y, state.rho, alpha, state.pairs)
  if l1 is None:
    return d
  return jnp.where((l1 > 0) & (d * g >= 0), 0.0, d)


def _search_direction(state: State, precondition: Precondition, l1: L1):
  """The direction of a line search starting at state.theta: the
  quasi-Newton one, or -g where that one does not descend (lost
  curvature: a restart along the (pseudo-)gradient)."""
  g = pseudo_gradient(state.theta, state.grad, l1)
  d = direction(state, precondition, l1)
  bad = ~(jnp.sum(g * d, axis=-1) < 0)
  return jnp.where(bad[:, None], -g, d)


def step(state: State, value_and_grad: ValueAndGrad, tol, max_iters,
         precondition: Precondition = identity, l1: L1 = None,
         to_model: ToModel = None) -> State:
  """One shared pass: every configuration not finished evaluates its line
  search's trial point theta + t d. One whose trial is accepted takes the
  step (an iteration: a new curvature pair, and a new line search from t =
  1 in the next pass); one whose trial is refused halves t for the next
  pass, and gives up (stalled) after MAX_TRIALS trials.

  With l1, OWL-QN (Andrew & Gao 2007) on f + sum l1 |theta|,
  value_and_grad giving that whole objective and the gradient of f alone:
  the direction from the pseudo-gradient, each trial point projected onto
  the orthant the step starts in (an entry that would change sign stops at
  0, where it stays unless the pseudo-gradient leads out), the Armijo
  condition along the projected step, the curvature pairs from f's
  gradients.
  """
  active = ~finished(state, tol, max_iters, l1, to_model)
  first = state.evaluations == 0  # (unevaluated: this pass evaluates theta)
  fresh = state.fresh & active & ~first
  # (Computed only in passes where some line search starts: most of them.)
  d = jax.lax.cond(
      jnp.any(fresh),
      lambda: jnp.where(fresh[:, None],
                        _search_direction(state, precondition, l1), state.d),
      lambda: state.d)
  trials = jnp.where(fresh, 0, state.trials)
  t = jnp.ldexp(jnp.ones_like(state.value), -trials)  # 1, 1/2, 1/4, ...
  g = pseudo_gradient(state.theta, state.grad, l1)
  slope = jnp.sum(g * d, axis=-1)
  orthant = (None if l1 is None else jnp.where(
      state.theta != 0, jnp.sign(state.theta), -jnp.sign(g)))

  def point(t):
    theta = state.theta + t[:, None] * d
    if l1 is None:
      return theta
    return jnp.where((l1 > 0) & (theta * orthant <= 0), 0.0, theta)

  # (The finished, and the unevaluated: where they are.)
  theta = point(jnp.where(active & ~first, t, 0.0))
  f, g_new, aux = _evaluated(value_and_grad, theta)
  # Armijo, or near the optimum, where float32 cannot resolve the decrease
  # of f, the approximate Wolfe conditions of Hager & Zhang (2005): f no
  # larger up to its rounding, and the slope along d much flatter, judged
  # by the gradient, which stays accurate there.
  decrease = (t * slope if l1 is None
              else jnp.sum(g * (theta - state.theta), axis=-1))
  new_slope = jnp.sum(pseudo_gradient(theta, g_new, l1) * d, axis=-1)
  approximate_wolfe = ((f <= state.value + F_ROUNDING * jnp.abs(state.value))
                       & (new_slope <= (2 * WOLFE_DELTA - 1) * slope)
                       & (new_slope >= WOLFE_SIGMA * slope))
  moved = first | (active & jnp.isfinite(f) & (
      (f <= state.value + ARMIJO * decrease) | approximate_wolfe))
  trials = jnp.where(first, 0, trials + active.astype(jnp.int32))
  gave_up = active & ~moved & (trials >= MAX_TRIALS)
  if l1 is None:
    s_new = jnp.where(moved, t, 0.0)[:, None] * d
  else:
    s_new = jnp.where(moved[:, None], theta, state.theta) - state.theta
  y_new = jnp.where(moved[:, None], g_new, state.grad) - state.grad
  sy = jnp.sum(s_new * y_new, axis=-1)
  # Keep the pair only where the curvature is positive (else H would not be
  # positive definite); float32 noise makes tiny sy meaningless.
  keep = moved & (sy > 1e-10 * jnp.sum(y_new * y_new, axis=-1))
  slot = state.pairs % MEMORY

  def put(ring, new):
    return jnp.where(
        keep[:, None, None]
        & (jnp.arange(MEMORY)[None, :, None] == slot[:, None, None]),
        new[:, None, :], ring)

  return State(
      theta=state.theta + s_new,
      value=jnp.where(moved, f, state.value),
      grad=jnp.where(moved[:, None], g_new, state.grad),
      s=put(state.s, s_new), y=put(state.y, y_new),
      rho=jnp.where(keep[:, None] & (jnp.arange(MEMORY) == slot[:, None]),
                    (1.0 / jnp.where(keep, sy, 1.0))[:, None], state.rho),
      pairs=state.pairs + keep.astype(jnp.int32),
      iterations=state.iterations
      + ((moved | gave_up) & ~first).astype(jnp.int32),
      evaluations=state.evaluations + active.astype(jnp.int32),
      stalled=state.stalled | gave_up, aux=jnp.where(moved, aux, state.aux),
      d=d, trials=trials,
      fresh=jnp.where(active, moved, state.fresh))


def run(state: State, value_and_grad: ValueAndGrad, tol, max_iters,
        num_iterations: int, precondition: Precondition = identity,
        l1: L1 = None, to_model: ToModel = None) -> State:
  """Passes (step) until every configuration not finished has taken
  num_iterations more iterations (those whose line searches need fewer
  retries take more meanwhile); finished configurations stay where they
  are."""
  start = state.iterations

  def going(st):
    return jnp.any(~finished(st, tol, max_iters, l1, to_model)
                   & (st.iterations - start < num_iterations))

  return jax.lax.while_loop(
      going,
      lambda st: step(st, value_and_grad, tol, max_iters, precondition, l1,
                      to_model),
      state)


class LBFGS:
  """--optimizer=lbfgs: L-BFGS (above) on the full-batch objective
  (objective.full_batch):
  a round is the passes in which every configuration takes at least
  ITERATIONS_PER_ROUND more iterations (run), until all have converged
  (gradient norm below --tol) or run --max_iters.

  Only the configurations still moving are computed: a round runs on the
  smallest stack (a power of two) that holds them, so a path whose strong
  penalties converge early spends its passes on the weak ones, where that
  pays. Each stack size is a program of its own to compile (1.1-1.6 s on 2
  cores), so a stack shrinks only where the passes it saves are worth more
  than that: 4 N P (size now - size then) x the iterations the moving
  configurations may still take (their max_iters left) at least
  SHRINK_FLOPS. A
  cross-validation of 50 configurations capped at 100 iterations compiled
  two smaller sizes in its last two rounds, 2.2 s to save under 0.3 s
  (2026-12-05, 10,000 Fashion-MNIST images); small data (a CV fit of 3 x 3
  configurations on 30 rows took 7.7 s with four sizes compiled, 2.4 s
  with one) never shrinks. The rule reads only the state and the size in
  use, so a run's programs do not depend on the machine's speed. On an
  accelerator the whole stack always goes on: a program compiles there in
  seconds (an 8-strength path's programs took 9.9 s on an H100) while a
  pass of all 8 configurations over 60,000 images took 1.8 ms, so that
  fewer configurations could save at most ~2 ms a pass (not measured there
  alone)."""

  FULL_BATCH: ClassVar[bool] = True
  UNREAD: ClassVar[tuple[str, ...]] = FULL_BATCH_UNREAD
  SOLUTION_KEYS: ClassVar[tuple[str, ...]] = (
      "objective", "grad_norm", "iterations", "evaluations", "converged")
  ITERATIONS_PER_ROUND = 10
  SPARSE = False  # OWLQN: the objective's L1 part, solved orthant-wise
  # The work of a pass saved by a smaller stack that pays for compiling it
  # (~1.3 s of this project's 2-core CPU at the ~150 GFLOP/s of a wide
  # stack's matmuls).
  SHRINK_FLOPS = 2e11

  def __init__(self, stack: Stack, dataset: data_lib.Dataset,
               shard_data: bool):
    del shard_data  # every host holds the whole training set
    stacked = stack.stacked
    self.values, self.layout = stack.values, stack.layout
    self.num_rounds = max(self.rounds(s) for s in stacked)
    self.flat = objective.FlatObjective(stack, dataset)
    # For warm_start: the entries the penalty applies to, and the
    # configurations that share the data term (the same loss).
    self.penalized = self.flat.mask(
        jax.tree.leaves(optimizers.decayed(self.flat.template)))
    # (and the same rows: a cross-validation fold leaves out its own)
    loss_of = [(s.loss, s.huber_delta if s.loss == "huber" else 0.0, s.fold)
               for s in stacked]
    self.same_loss = np.array([[a == b for b in loss_of] for a in loss_of])
    self.stack, self.stacked, self.dataset = stack, stacked, dataset
    self.shrinks = compilation.on_cpu()
    # The floating-point work of one configuration's pass (forward and
    # gradient matmuls), and the stack size whose round runs now.
    self.pass_flops = 4.0 * len(dataset.y_train) * self.flat.size
    self.size = len(stacked)
    # OWLQN's facts of the data: each configuration's lambda_max, reported,
    # and the centre of its change of variables (see OWLQN; none without an
    # intercept, where b = 0 and W alone moves). Arguments of the compiled
    # programs, not constants in them: a fit of other data of the same
    # shapes runs the same programs (compilation.compile_once).
    self.lambda_max = self.center = None
    if self.SPARSE:
      self.lambda_max = stack.replicate(np.asarray(
          objective.lambda_maxes(dataset, stacked), np.float32))
      self.center = stack.replicate(np.asarray(
          data_lib.feature_mean(dataset.x_train) if stack.first.fit_intercept
          else np.zeros(dataset.num_features), np.float32))
    self.x = self.y = None  # the training set, once on the devices
    self.moments = None
    # The compiled programs: the start, the moving test, and the round of
    # each stack size and its losses; shared with every later solver of
    # the same signature.
    self.programs = compilation.family(self._signature())

  def _signature(self) -> tuple:
    """What this solver's programs are a function of (compilation.family):
    its class, each configuration's fields but the numeric values (traced:
    stack.values), the constants derived from them, the data's shapes and
    dtypes, the devices' layout and how the pass reads the features."""
    numeric = set(config_values(self.stacked))
    x = self.dataset.x_train
    return (type(self).__qualname__, self.ITERATIONS_PER_ROUND,
            tuple(tuple((f.name, getattr(c, f.name))
                        for f in dataclasses.fields(c)
                        if f.name not in numeric) for c in self.stacked),
            self.same_loss.tobytes(), self.penalized.tobytes(),
            tuple(x.shape), str(x.dtype), self.dataset.num_classes,
            tuple((a.shape, str(a.dtype))
                  for a in objective.rows_of(self.dataset)),
            self.layout.mesh, self.flat.transposed, self.flat.chunk,
            self.flat.size, self.flat.groups)

  @classmethod
  def rounds(cls, config: Config) -> int:
    """Chunks of ITERATIONS_PER_ROUND iterations (fewer when every
    configuration converges before max_iters)."""
    return math.ceil(config.max_iters / cls.ITERATIONS_PER_ROUND)

  @staticmethod
  def check(config: Config) -> None:
    if config.penalty != "l2":
      raise UserError(f"--optimizer=lbfgs needs a smooth objective and "
                      f"--penalty={config.penalty}'s L1 part is not "
                      "differentiable at 0; use --optimizer=owlqn (its "
                      "orthant-wise form, exact to --tol) or sgd, momentum "
                      "or adam (a proximal step)")
    _check_smooth_linear(config)

  def _l1(self, values) -> L1:
    """Each configuration's weight of |theta| [M, P] (lambda rho on W), or
    None for L-BFGS."""
    if not self.SPARSE:
      return None
    return ((values["weight_decay"] * values["l1_share"])[:, None]
            * self.penalized)

  def _model(self, theta_MxP, center):
    """The model's flat parameters of the solver's: OWLQN solves for (W, b +
    center W), the model on centred features (center: the features' mean);
    W, and so the penalty, the same."""
    if not self.SPARSE:
      return theta_MxP

    def one(theta):
      p = self.flat.unravel(theta)
      return jax.flatten_util.ravel_pytree(
          {**p, "b": p["b"] - center @ p["w"]})[0]

    return jax.vmap(one)(theta_MxP)

  def _theta(self, params):
    """The solver's flat variables [M, P] of stacked model params: the
    inverse of _model (OWLQN: b + mean W); b = 0 without an intercept."""
    def one(p, center):
      if self.SPARSE:
        p = {**p, "b": p["b"] + center @ p["w"]}
      return jax.flatten_util.ravel_pytree(p)[0]

    if "theta" not in self.programs:  # (a warm start: compiled once)
      self.programs["theta"] = compile_once(jax.jit(
          lambda p, center: self.flat.without_intercept(
              jax.vmap(one, in_axes=(0, None))(p, center)),
          out_shardings=self.layout.configs).lower(params, self.center))
    return self.programs["theta"](params, self.center)

  def _solver_gradient(self, grad_MxP, center):
    """The gradient in the solver's variables of one in the model's: the
    transpose of _model's map (W's part minus center x b's)."""
    if not self.SPARSE:
      return grad_MxP
    return self._w_plus_center_b(grad_MxP, -center)

  def _to_model(self, center) -> ToModel:
    """The model's gradient of the solver's (OWLQN: the inverse of
    _solver_gradient's map, W's part plus center x b's), for the
    certificate; None for L-BFGS, whose variables are the model's."""
    if not self.SPARSE:
      return None
    return functools.partial(self._w_plus_center_b, center=center)

  def _w_plus_center_b(self, grad_MxP, center):
    """Flat gradients [M, P] with center x b's part added to W's (the two
    gradient maps above, one the other's inverse with -center)."""
    def one(grad):
      g = self.flat.unravel(grad)
      return jax.flatten_util.ravel_pytree(
          {**g, "w": g["w"] + center[:, None] * g["b"][None, :]})[0]

    return jax.vmap(one)(grad_MxP)

  def _value_and_grad(self, x, y, values, center, blocks=None):
    """The objective of the stack `values` describes (with its L1 term) and
    the gradient of its smooth part, in the solver's variables; `blocks`:
    its losses (objective.loss_blocks), when it is not the whole stack."""
    f = (self.flat.value if blocks is None
         else functools.partial(self.flat.value, blocks=blocks))
    l1 = self._l1(values)

    def value_and_grad(theta):
      value, grad, aux = f(self._model(theta, center), x, y, values)
      if l1 is not None:
        value = value + jnp.sum(l1 * jnp.abs(theta), axis=-1)
      return (value, self._solver_gradient(grad, center),
              aux["train_accuracy"])

    return value_and_grad

  @staticmethod
  def _start(theta):
    """The states at theta, evaluated by the first round's first pass."""
    state = unevaluated(theta)
    return {"solver": state._asdict()}

  def _on_devices(self):
    """The training set (features, as FlatObjective.features gives them,
    and the rows' labels, weights and folds: objective.rows_of), put on the
    devices on first use."""
    if self.x is None:  # (with its transposed copy where that pays)
      self.x = self.flat.features(self.stack.replicate(self.dataset.x_train))
      self.y = jax.tree.map(self.stack.replicate,
                            objective.rows_of(self.dataset))
    return self.x, self.y

  def init_states(self, params=None):
    theta = self.flat.zeros() if params is None else self._theta(params)
    if "start" not in self.programs:
      self.programs["start"] = compile_once(jax.jit(
          self._start, out_shardings=self.layout.configs).lower(theta))
    return self.programs["start"](theta)

  def state_shapes(self):
    return jax.eval_shape(self._start, jax.ShapeDtypeStruct(
        (self.flat.num_configs, self.flat.size), np.float32))

  def params_of(self, theta_MxP, center=None):
    """The model's params trees of the solver's flat variables (center: a
    traced self.center, inside a compiled program)."""
    return self.flat.params(self._model(
        theta_MxP, self.center if center is None else center))

  def params(self, states):
    return self.params_of(states["solver"]["theta"])

  def compile(self, states):
    self._on_devices()
    # The preconditioner's moments (objective.whitening_preconditioner): the
    # features' mean and the eigendecomposition of their covariance. (OWLQN
    # has none: the variances alone, for the check below, since a
    # covariance's largest entry is on its diagonal.)
    mean, cov = data_lib.feature_covariance(self.dataset.x_train,
                                            diagonal=self.SPARSE)
    if not self.stack.first.fit_intercept:  # the model on the raw features:
      # their second moment about 0 (W alone moves; b = 0)
      cov = cov + (mean**2 if self.SPARSE else np.outer(mean, mean))
      mean = np.zeros_like(mean)
    largest = float(np.max(np.abs(cov)))
    limit = float(np.finfo(np.float32).max) / self.dataset.num_features
    if not largest < limit:
      raise UserError(f"the features are too large for float32 arithmetic "
                      f"(their covariance reaches {largest:.3g}); scale them, "
                      "e.g. --standardize")
    eigvals, eigvecs = ((np.zeros(1), np.zeros((1, 1))) if self.SPARSE
                        else np.linalg.eigh(cov))  # (OWLQN: not read)
    self.moments = tuple(
        distributed.put(a.astype(np.float32), self.layout.replicated)
        for a in (mean, eigvecs, np.maximum(eigvals, 0)))
    if "moving" not in self.programs:
      self.programs["moving"] = compile_once(jax.jit(
          lambda st, v, center: ~finished(
              State(**st["solver"]), v["tol"], v["max_iters"], self._l1(v),
              self._to_model(center))).lower(states, self.values,
                                             self.center))
    self._compiled(len(self.stacked), objective.loss_blocks(self.stacked),
                   states)

  def _compiled(self, size, blocks, states):
    """The round of a stack of `size` configurations, picked by index from
    the whole stack and put back into it; its record describes them all.
    `blocks`: the losses of the picked stack (each configuration keeps its
    own loss whichever others are still moving)."""
    if ("round", size, blocks) in self.programs:
      return self.programs["round", size, blocks]

    def advance(states, picked, keep, x, y, values, moments, center,
                lambda_max):
      states = {**states, "solver": warm_start(
          State(**states["solver"]), values["weight_decay"],
          self.penalized, self.same_loss, values["tol"],
          values["max_iters"],
          values["l1_share"] if self.SPARSE else None,
          self._to_model(center))._asdict()}
      # The whole stack as it is (picked: all, in order), its pass split by
      # folds; else the picked configurations, gathered.
      whole = size == len(self.stacked)
      sub, sub_values = ((states, values) if whole else (
          jax.tree.map(lambda a: a[picked], t) for t in (states, values)))
      state = run(
          State(**sub["solver"]),
          self._value_and_grad(x, y, sub_values, center,
                               None if whole else blocks),
          sub_values["tol"], sub_values["max_iters"],
          self.ITERATIONS_PER_ROUND,
          identity if self.SPARSE else objective.whitening_preconditioner(
              *moments, sub_values["weight_decay"],
              self.dataset.num_classes, self.flat.unravel),
          self._l1(sub_values), self._to_model(center))
      sub = {"solver": state._asdict()}
      # Padding (copies of a picked configuration) is dropped, not written.
      states = sub if whole else jax.tree.map(
          lambda a, new: a.at[keep].set(new, mode="drop"), states, sub)
      state = State(**states["solver"])
      params = self.params_of(state.theta, center)
      l1, to_model = self._l1(values), self._to_model(center)
      record = {
          # The loss is the objective without its penalty.
          "train_loss": state.value - objective.penalty(
              params, values["weight_decay"],
              values["l1_share"] if self.SPARSE else None),
          "train_accuracy": state.aux, "objective": state.value,
          "grad_norm": grad_norm(state, l1, to_model),
          "iterations": state.iterations, "evaluations": state.evaluations,
          "converged": grad_norm(state, l1, to_model) < values["tol"],
          "finished": finished(state, values["tol"], values["max_iters"], l1,
                               to_model)}
      if self.SPARSE:
        record.update(objective.sparsity(params),
                      lambda_max=lambda_max)
      return states, record

    picked = np.zeros(size, np.int32)
    self.programs["round", size, blocks] = compile_once(jax.jit(
        advance, out_shardings=(self.layout.configs,
                                self.layout.replicated)).lower(
            states, picked, picked, self.x, self.y, self.values,
            self.moments, self.center, self.lambda_max), dot_bound=True)
    return self.programs["round", size, blocks]

  def round(self, states, r):
    del r
    m = len(self.stacked)
    moving = np.arange(m)
    if self.shrinks:
      going, iterations = jax.device_get((self.programs["moving"](
          states, self.values, self.center), states["solver"]["iterations"]))
      if going.any():  # (all finished: a round that changes nothing)
        moving = np.flatnonzero(going)
        smaller = self.layout.padded(1 << (len(moving) - 1).bit_length())
        left = max(self.stacked[i].max_iters - iterations[i] for i in moving)
        if smaller < self.size and (self.pass_flops * (self.size - smaller)
                                    * left >= self.SHRINK_FLOPS):
          self.size = smaller
    size = self.size
    if size == m:  # the whole stack, as it is (finished ones stay put)
      picked = keep = np.arange(m)
    else:
      moving = moving[:size]  # (all finished: the first size of them)
      picked = np.concatenate([moving,
                               np.repeat(moving[-1:], size - len(moving))])
      keep = np.where(np.arange(size) < len(moving), picked, m)  # m: dropped
    # picked is sorted, so its losses stay in blocks.
    blocks = objective.loss_blocks([self.stacked[i] for i in picked])
    states, record = self._compiled(size, blocks, states)(
        states, picked, keep, self.x, self.y, self.values, self.moments,
        self.center, self.lambda_max)
    return states, jax.device_get(record)

  def finished(self, m) -> bool:
    return bool(np.all(m["finished"]))


class OWLQN(LBFGS):
  """--optimizer=owlqn: the objective with an L1 part (--penalty=l1 or
  elasticnet; l2 too, where it is L-BFGS) solved exactly by orthant-wise
  L-BFGS (step above, with l1): the same batched rounds, path and warm
  starts as lbfgs, its grad_norm the norm of the smallest subgradient
  (the KKT violation: a certificate of optimality, 0 at the optimum), and
  each configuration's sparsity (nonzero weights, input features used) and
  lambda_max (objective.lambda_max) in its records.

  It solves for (W, b' = b + mean W): the model on centred features, an
  exact change of variables (_model) that leaves W, and so the L1 term
  and its orthants, as they are, while the data term no longer couples W
  with b through the features' mean (pixels: all positive). Its
  certificate, and its test against tol, is the smallest subgradient in
  the model's variables (_to_model; in the centred ones it was up to 3.4x
  smaller away from 0, 2026-12-05). lbfgs's whitening preconditioner does
  not serve
  here: it couples W's entries with each other, and the orthant
  alignment, entry by entry, undoes its steps. On 2,000 Fashion-MNIST
  images, an L1 path of 6 strengths (1.01 to 0.01 lambda_max, tol 1e-5,
  at most 3,000 iterations): centred, all 6 converged in 17 s (the
  weakest in 1,740 iterations); uncentred, 4 of 6 in 209 s; with the
  whitening preconditioner 1 of 6 in 1,000 iterations; with a diagonal
  one, several stalled (2026-12-04)."""

  SPARSE = True
  SOLUTION_KEYS: ClassVar[tuple[str, ...]] = (
      *LBFGS.SOLUTION_KEYS, "nonzero", "features_used", "lambda_max")

  @staticmethod
  def check(config: Config) -> None:
    _check_smooth_linear(config)


def _check_smooth_linear(config: Config) -> None:
  if config.loss == "l1":
    raise UserError(f"--optimizer={config.optimizer} needs a smooth loss and "
                    "l1 is not differentiable at 0; use xent, l2 or huber, "
                    "or an SGD-family optimizer for l1")
  check_linear(config)
