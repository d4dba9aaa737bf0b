"""Sweeps: lists of overrides, from comma-separated flags or an experiments
file.

A sweep is a list of dicts, each a set of Config field overrides. Build them
with `axis`, `product` and `zipped`:

  product(axis("loss", ["xent", "l2"]), axis("lr", [0.1, 1.0]))  # 4 configs
  zipped(axis("lr", [0.1, 1.0]), axis("epochs", [10, 20]))  # 2 configs

`python launch.py --loss=xent,l2 --lr=0.1,1` is the first of these.
"""

from __future__ import annotations

import dataclasses
import itertools

from softmax_jax import config as config_lib
from softmax_jax.config import Config
from softmax_jax.errors import UserError

# Fields a sweep may vary (their roles are declared in config.Config): the
# value fields train together in one compiled program; the static ones
# split a sweep into groups, one program per value.
SWEEPABLE = tuple(f for f in config_lib.FIELDS
                  if f not in config_lib.fields_of(config_lib.RUN))
STATIC_FIELDS = config_lib.fields_of(config_lib.STATIC)
# Flags whose commas are part of one value (--hidden=256,128 is two layers);
# sweep them in an experiments file.
COMMA_VALUES = ("hidden",)
# Sweeps choose by validation accuracy; unless told, they hold out 10,000 of
# Fashion-MNIST's 60,000 training examples.
DEFAULT_VAL_FRACTION = 1 / 6


def axis(name: str, values) -> list[dict]:
  return [{name: v} for v in values]


def product(*sweeps: list[dict]) -> list[dict]:
  """Every combination, the last sweep varying fastest."""
  return [_merge(combo) for combo in itertools.product(*sweeps)]


def zipped(*sweeps: list[dict]) -> list[dict]:
  """The i-th entries of each sweep together; all sweeps have one length."""
  lengths = {len(s) for s in sweeps}
  if len(lengths) > 1:
    raise UserError(f"zipped sweeps differ in length: {sorted(lengths)}")
  return [_merge(combo) for combo in zip(*sweeps, strict=True)]


def _merge(dicts) -> dict:
  merged = {}
  for d in dicts:
    merged.update(d)
  return merged


def parse_flag_lists(
    texts: dict[str, str]) -> tuple[dict[str, str], list[dict]]:
  """Splits flag texts into single values and a sweep over the comma lists."""
  single, axes = {}, []
  for name, text in texts.items():
    if "," not in text or name in COMMA_VALUES:
      single[name] = text
      continue
    if name not in SWEEPABLE:
      raise UserError(f"--{name} cannot be swept (it got {text!r}); sweepable "
                      f"flags: {', '.join(SWEEPABLE)}")
    items = [item.strip() for item in text.split(",")]
    if any(not item for item in items):
      raise UserError(f"--{name}={text!r} has an empty item; write values "
                      "separated by single commas, e.g. --lr=0.1,0.3")
    axes.append(axis(name, [config_lib.parse_value(name, i) for i in items]))
  return single, product(*axes) if axes else []


def expand(base: Config, sweep: list[dict]) -> list[Config]:
  """The validated configs of a sweep over base ([base] for an empty sweep).

  A configuration is kept once where the sweep varies only what its solver
  does not read (solvers.trained_as): --optimizer=sgd,lbfgs --seed=0,1,2
  trains three sgd seeds and one L-BFGS solution, which has no spread over
  seeds to report.
  """
  configs = []
  for overrides in sweep or [{}]:
    if not isinstance(overrides, dict):
      raise UserError(f"a sweep entry must be a dict of overrides, got "
                      f"{overrides!r}")
    unknown = set(overrides) - set(SWEEPABLE)
    if unknown:
      raise UserError(f"cannot sweep {', '.join(sorted(unknown))}; sweepable: "
                      f"{', '.join(SWEEPABLE)}")
    try:
      typed = {k: config_lib.parse_value(k, str(v))
               for k, v in overrides.items()}
    except UserError as e:
      raise UserError(f"sweep entry {overrides}: {e}") from None
    configs.append(dataclasses.replace(base, **typed).validate())
  from softmax_jax import solvers  # pylint: disable=g-import-not-at-top
  kept: dict[Config, Config] = {}  # what each trains as -> the first one
  out = []
  for c in configs:
    first = kept.setdefault(solvers.trained_as(c), c)
    if first == c:  # (a value listed twice is for runner to refuse)
      out.append(c)
  return out


def build(base: Config, file_sweep: list[dict], flag_texts: dict[str, str]
          ) -> list[Config]:
  """The configs of `launch.py`: an experiments file's config and sweep, with
  flags.

  A flag overrides the file's config and any axis of its sweep over that
  field; comma-listed flags add axes (a cross product with the rest of the
  file's sweep).
  """
  single, flag_sweep = parse_flag_lists(flag_texts)
  base = config_lib.with_overrides(base, single)
  flagged = set(single) | {k for e in flag_sweep for k in e}
  stripped = [{k: v for k, v in e.items() if k not in flagged}
              for e in file_sweep]
  # Entries a flag made alike are one; entries alike in the file stay two,
  # refused as a flag's repeated value is.
  file_sweep = [e for i, e in enumerate(stripped)
                if not any(e == stripped[j] and file_sweep[i] != file_sweep[j]
                           for j in range(i))]
  return expand(base, product(file_sweep or [{}], flag_sweep or [{}]))


def swept_fields(configs: list[Config]) -> list[str]:
  """The fields whose value differs between configs, in Config order."""
  return [f for f in config_lib.FIELDS
          if len({getattr(c, f) for c in configs}) > 1]


def group_key(config: Config) -> tuple:
  return tuple(getattr(config, f) for f in STATIC_FIELDS)


def groups(configs: list[Config]) -> list[list[int]]:
  """Indices of configs that can share one compiled program, in first-seen
  order."""
  by_key: dict[tuple, list[int]] = {}
  for i, c in enumerate(configs):
    by_key.setdefault(group_key(c), []).append(i)
  return list(by_key.values())
