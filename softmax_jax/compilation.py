"""Compiled programs, reused within a process: a second fit of the same
shapes (a notebook's next `fit`, a cross-validation's refit, a test's next
run) lowers its program again but pays no XLA compilation.

The key is the lowered program itself (its StableHLO text, with the
shardings it was lowered for) and its argument and result structures, so a
hit is the very program a fresh compilation would give.
"""

from __future__ import annotations

import collections
import hashlib

import jax

MAX_PROGRAMS = 64  # kept, the least recently used dropped first

_programs: collections.OrderedDict[str, jax.stages.Compiled] = (
    collections.OrderedDict())


def compile_once(lowered: jax.stages.Lowered) -> jax.stages.Compiled:
  """lowered.compile(), or the executable an identical lowering compiled."""
  key = hashlib.sha256("\n".join((
      lowered.as_text(), str(lowered.in_tree), str(lowered.out_tree),
      str([d.id for d in jax.devices()]))).encode()).hexdigest()
  if key in _programs:
    _programs.move_to_end(key)
    return _programs[key]
  compiled = _programs[key] = lowered.compile()
  if len(_programs) > MAX_PROGRAMS:
    _programs.popitem(last=False)
  return compiled
