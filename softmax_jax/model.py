"""Softmax regression o = xW + b, and its relatives: hidden layers, a PHM
output.

Params are a plain dict. The output layer, the softmax regression, is
{"w": [D, K], "b": [K]}, or, as a PHM layer (Zhang et al., ICLR 2021),
{"a": [n, n, n], "s": [n, D/n, K/n], "b": [K]} with W = sum_i kron(a_i, s_i):
n^3 + DK/n weights instead of DK. Hidden ReLU layers, if any, come first as
{"hidden": [{"w", "b"}, ...]}; the softmax layer stays the network's last.

init_params, logits and phm_weight are jitted where they are defined, as
losses' functions are (one compiled program when called eagerly, inlined
in a jitted caller).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

Params = dict  # see the module docstring


@functools.partial(jax.jit, static_argnames=("num_features", "num_classes",
                                             "hidden", "phm_n"))
def init_params(key: jax.Array, num_features: int, num_classes: int,
                init_scale: float = 0.01, hidden: tuple[int, ...] = (),
                phm_n: int = 0) -> Params:
  """d2l's init for the output layer: weights ~ N(0, init_scale^2), b = 0.

  Hidden layers get He initialization (ReLU); a PHM layer's a ~ N(0, 1/n)
  and s ~ N(0, init_scale^2), so that W's entries have variance init_scale^2.
  """
  keys = jax.random.split(key, len(hidden) + 1)
  params: Params = {}
  if hidden:
    sizes = (num_features, *hidden)
    params["hidden"] = [
        {"w": jnp.sqrt(2.0 / d_in) * jax.random.normal(k, (d_in, d_out)),
         "b": jnp.zeros((d_out,))}
        # keys has one more than the hidden layers: the last is the output's.
        for k, d_in, d_out in zip(keys, sizes[:-1], sizes[1:], strict=False)]
  d = hidden[-1] if hidden else num_features
  params["b"] = jnp.zeros((num_classes,), jnp.float32)
  if phm_n:
    n = phm_n
    ka, ks = jax.random.split(keys[-1])
    params["a"] = jax.random.normal(ka, (n, n, n)) / jnp.sqrt(n)
    params["s"] = init_scale * jax.random.normal(
        ks, (n, d // n, num_classes // n))
  else:
    params["w"] = init_scale * jax.random.normal(keys[-1], (d, num_classes),
                                                 jnp.float32)
  return params


def params_from_arrays(arrays: dict) -> Params | None:
  """The params whose leaves are named as in params.npz (w, b, hidden_0_w,
  hidden_0_b, ..., a, s), or None if the arrays are not such a model."""
  hidden: list[dict] = []
  while f"hidden_{len(hidden)}_w" in arrays:
    i = len(hidden)
    hidden.append({"w": arrays[f"hidden_{i}_w"], "b": arrays[f"hidden_{i}_b"]})
  params: Params = {"hidden": hidden} if hidden else {}
  names = ("a", "s") if "a" in arrays else ("w",)
  if not all(n in arrays for n in (*names, "b")):
    return None
  params.update({n: arrays[n] for n in (*names, "b")})
  try:  # the shapes must chain: D -> hidden... -> K
    jax.eval_shape(logits, params, jax.ShapeDtypeStruct(
        (1, input_width(params)), jnp.float32))
  except (TypeError, ValueError):
    return None
  return params


def input_width(params: Params) -> int:
  """D, the width of the inputs the params take."""
  if "hidden" in params:
    return params["hidden"][0]["w"].shape[0]
  if "a" in params:  # W = sum_i kron(a_i, s_i): [n P, n Q]
    return params["a"].shape[0] * params["s"].shape[1]
  return params["w"].shape[0]


@jax.jit
def phm_weight(a_NxNxN: jax.Array, s_NxPxQ: jax.Array) -> jax.Array:
  """W = sum_i kron(a_i, s_i), shape [n P, n Q]."""
  n, p, q = s_NxPxQ.shape
  w = jnp.einsum("irc,ipq->rpcq", a_NxNxN, s_NxPxQ)
  return w.reshape(n * p, n * q)


def output_weight(params: Params) -> jax.Array:
  """The softmax layer's W [D, K], whatever its parameterization."""
  return phm_weight(params["a"], params["s"]) if "a" in params else params["w"]


# The dtypes a matmul's inputs may be cast to (--compute_dtype); products
# accumulate, and params stay, in float32 either way.
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# What a float32 matmul computes on a GPU or TPU (--matmul_precision, JAX's
# default_matmul_precision): JAX's own default there is TF32 (NVIDIA) or one
# bfloat16 pass (TPU), ~3 significant digits, too few for an optimum to
# tol 1e-5; a CPU computes float32 whatever is asked.
MATMUL_PRECISIONS = ("highest", "high", "default")


@functools.partial(jax.jit, static_argnames="compute_dtype")
def logits(params: Params, x_BxD: jax.Array,
           compute_dtype: str = "float32") -> jax.Array:
  """o = h W + b, shape [B, K], h = x or the last hidden layer's output."""
  dtype = COMPUTE_DTYPES[compute_dtype]

  def matmul(a, b):
    if dtype == jnp.float32:
      return a @ b
    return jnp.matmul(a.astype(dtype), b.astype(dtype),
                      preferred_element_type=jnp.float32)

  h = x_BxD
  for layer in params.get("hidden", ()):
    h = jax.nn.relu(matmul(h, layer["w"]) + layer["b"])
  return matmul(h, output_weight(params)) + params["b"]


def num_params(params: Params) -> int:
  return sum(int(p.size) for p in jax.tree.leaves(params))


def check_phm(phm_n: int, hidden: tuple[int, ...], num_features: int,
              num_classes: int) -> str | None:
  """Why phm_n cannot parameterize the output layer, or None if it can."""
  if not phm_n:
    return None
  d = hidden[-1] if hidden else num_features
  if d % phm_n or num_classes % phm_n:
    fits = [n for n in range(1, min(d, num_classes) + 1)
            if d % n == 0 and num_classes % n == 0]
    return (f"--phm_n={phm_n} must divide the output layer's input size {d} "
            f"and output size {num_classes}; possible: "
            f"{', '.join(map(str, fits))}"
            + ("" if hidden
               else " (or add --hidden layers of a size it divides)"))
  return None
