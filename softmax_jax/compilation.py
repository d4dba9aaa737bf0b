"""Compiled programs, reused within a process, at two levels.

compile_once: a second fit of the same shapes (a notebook's next `fit`, a
cross-validation's refit, a test's next run) lowers its program again but
pays no XLA compilation. The key is the lowered program itself (its
StableHLO text, with the shardings it was lowered for) and its arguments'
structure and shapes and its results' structure, so a hit is the very
program a fresh compilation would give, for arguments of those shapes.

family: a solver whose programs are a function of a signature it computes
(every constant their trace reads: the configurations' compiled-in fields,
the data's shapes and dtypes, the devices) keeps them there, and a later
solver of the same signature takes them without tracing or lowering them
again (L-BFGS: ~0.25 s a fit, as much as a small fit's own work). What
differs between two such fits (the data, the strengths, the states) is
the programs' arguments, and a compiled program called with arguments of
other shapes, dtypes or structure raises a TypeError: it never runs on
what it was not compiled for.

dot_bound: a program whose run time is in its matmuls (L-BFGS's rounds:
one pass over the data each) compiles on a CPU without XLA's fusion
emitters (xla_cpu_use_fusion_emitters=False, for it alone): its
elementwise kernels then take XLA's older emitter, and it compiles in
13-40 % less time at the same speed (see compile_once).

on_cpu: whether the programs run on a CPU, for the choices measured there
that an accelerator makes otherwise; seconds_compiling: the time
compile_once has spent compiling, so that a solver's training time can
leave out a program it compiles on first use.
"""

from __future__ import annotations

import collections
from collections.abc import Hashable
import hashlib
import time
from typing import Any

import jax

MAX_PROGRAMS = 64  # kept, the least recently used dropped first
MAX_FAMILIES = 16  # (the same)
# XLA:CPU's compiler options for dot_bound programs.
DOT_BOUND_OPTIONS: dict[str, str | bool] = {
    "xla_cpu_use_fusion_emitters": False}

_programs: collections.OrderedDict[str, jax.stages.Compiled] = (
    collections.OrderedDict())
_compiling = {"seconds": 0.0}  # (compile_once's, in this process)


def on_cpu() -> bool:
  """Whether JAX's default backend, where the programs run, is a CPU."""
  return jax.default_backend() == "cpu"


def seconds_compiling() -> float:
  """The seconds compile_once has spent compiling, in this process."""
  return _compiling["seconds"]


def compile_once(lowered: jax.stages.Lowered, *,
                 dot_bound: bool = False) -> jax.stages.Compiled:
  """lowered.compile(), or the executable an identical lowering compiled.

  dot_bound (on a CPU): compiled with DOT_BOUND_OPTIONS. Measured for
  L-BFGS's round on this project's 2-core EPYC (2026-12-05), default
  options against DOT_BOUND_OPTIONS: 0.83 against 0.51 s to compile for
  one fit of 20,000 Fashion-MNIST images, 1.27 against 1.11 s for a
  cross-validation stack of 12; a round of the 60,000 images ran 138.5
  against 140.3 ms (median of 60, the two programs in turn in one
  process); the first fit of a process on iris took 1.46-1.57 against
  1.13-1.14 s (three fresh processes each).
  """
  options: dict[str, str | bool] = (
      DOT_BOUND_OPTIONS if dot_bound and on_cpu()
      else {})
  key = hashlib.sha256("\n".join((
      # (args_info: the arguments' shapes, also of those the program does
      # not read, which its text leaves out)
      lowered.as_text(), str(lowered.args_info), str(lowered.out_tree),
      str([d.id for d in jax.devices()]), str(sorted(options.items())))
                                 ).encode()).hexdigest()
  if key in _programs:
    _programs.move_to_end(key)
    return _programs[key]
  start = time.perf_counter()
  compiled = _programs[key] = lowered.compile(compiler_options=options or None)
  _compiling["seconds"] += time.perf_counter() - start
  if len(_programs) > MAX_PROGRAMS:
    _programs.popitem(last=False)
  return compiled


_families: collections.OrderedDict[Hashable, dict[Any, Any]] = (
    collections.OrderedDict())


def family(signature: Hashable) -> dict[Any, Any]:
  """The compiled programs of every solver of this signature: a dict the
  first fills and the next ones read (see the module's docstring). The
  signature includes JAX's settings that change a trace (64-bit mode, the
  default matmul precision)."""
  settings: Any = jax.config  # (the values in effect, contexts included)
  key = (signature, settings.jax_enable_x64,
         settings.jax_default_matmul_precision,
         tuple(d.id for d in jax.devices()))
  if key in _families:
    _families.move_to_end(key)
    return _families[key]
  programs = _families[key] = {}
  if len(_families) > MAX_FAMILIES:
    _families.popitem(last=False)
  return programs
