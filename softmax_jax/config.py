"""A run's hyperparameters: one frozen dataclass, overridden from strings,
validated.

Experiment files (`experiments/*.py`) define `get_config() -> Config`;
`launch.py` turns the flags the user gave into string overrides of it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from pathlib import Path
from typing import cast

from softmax_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class Config:
  # A TFDS image classification name, npy:DIR, npz:PATH or csv:PATH.
  dataset: str = "fashion_mnist"
  # TFDS data dir; "" = $TFDS_DATA_DIR or ~/tensorflow_datasets
  data_dir: str = ""
  loss: str = "xent"  # a name in losses.LOSSES
  # l2/l1/huber compare one-hot y with: probs or logits
  loss_input: str = "probs"
  huber_delta: float = 0.1  # where huber turns from quadratic to linear
  optimizer: str = "sgd"  # a name in solvers.REGISTRY
  lr: float = 0.1  # learning rate
  # the lr over the run: a name in optimizers.SCHEDULES
  schedule: str = "constant"
  # The training matmuls' input dtype, a name in model.COMPUTE_DTYPES; float32
  # sums and params either way; evaluation always in float32.
  compute_dtype: str = "float32"
  weight_decay: float = 0.0  # L2 penalty coefficient on W (not on b)
  # lbfgs: stop when the objective's gradient norm is below this (near
  # float32's resolution of a mean over 10^4-10^6 examples).
  tol: float = 1e-5
  max_iters: int = 1000  # lbfgs: iterations at most
  # examples per minibatch; the last partial one is dropped
  batch_size: int = 256
  epochs: int = 10  # passes over the training data, reshuffled each time
  # The accelerator memory the training set may use, in GiB (0: the device's
  # own; on a CPU no limit): a larger set streams from host memory (see feed).
  device_memory_gb: float = 0.0
  # evaluate on val/test every this many epochs (and the last)
  eval_every: int = 1
  # Minibatch optimizers: each evaluation also records the full training
  # objective, what --optimizer=lbfgs minimizes (one more forward pass).
  track_objective: bool = False
  # After training, fit a temperature T on the validation split (temperature
  # scaling, see calibration.py) and report calibrated probabilities.
  calibrate: bool = False
  seed: int = 0  # seeds initialization and the shuffling
  init_scale: float = 0.01  # standard deviation of the initial W
  # hidden ReLU layer sizes before the softmax layer, e.g. "256,128"
  hidden: str = ""
  # n > 0: the softmax layer's W as a sum of n Kronecker products
  phm_n: int = 0
  # What counts as image pixels (scaled to [0, 1]): auto, yes or no; see
  # data.interpret_pixels.
  pixels: str = "auto"
  # per-feature standardization, statistics from train
  standardize: bool = False
  test_csv: str = ""  # with dataset "csv:PATH": the test CSV ("" = split PATH)
  # Share of the training set held out for validation (model selection);
  # None: 0 for a single run (d2l trains on all 60,000), 1/6 for a sweep.
  val_fraction: float | None = None

  def validate(self) -> Config:
    """Returns self, or raises UserError naming the flag and the fix."""
    from softmax_jax import data  # pylint: disable=g-import-not-at-top
    from softmax_jax import losses  # pylint: disable=g-import-not-at-top
    from softmax_jax import model  # pylint: disable=g-import-not-at-top
    from softmax_jax import solvers  # pylint: disable=g-import-not-at-top
    from softmax_jax.solvers import optimizers  # pylint: disable=g-import-not-at-top
    _check_choice("loss", self.loss, losses.LOSSES)
    _check_choice("loss_input", self.loss_input, losses.LOSS_INPUTS)
    _check_choice("optimizer", self.optimizer, solvers.REGISTRY)
    _check_choice("schedule", self.schedule, optimizers.SCHEDULES)
    _check_choice("compute_dtype", self.compute_dtype, model.COMPUTE_DTYPES)
    data.check_name(self.dataset)
    _check_choice("pixels", self.pixels, data.PIXELS)
    _check_positive("lr", self.lr)
    _check_positive("huber_delta", self.huber_delta)
    _check_positive("init_scale", self.init_scale, allow_zero=True)
    _check_positive("weight_decay", self.weight_decay, allow_zero=True)
    _check_positive("device_memory_gb", self.device_memory_gb, allow_zero=True)
    _check_positive("tol", self.tol)
    if self.max_iters < 1:
      raise UserError(f"--max_iters must be at least 1, got {self.max_iters}")
    solvers.get(self.optimizer).check(self)
    if self.batch_size < 1:
      raise UserError(f"--batch_size must be at least 1, got {self.batch_size}")
    if self.epochs < 1:
      raise UserError(f"--epochs must be at least 1, got {self.epochs}")
    if self.eval_every < 1:
      raise UserError(f"--eval_every must be at least 1 (epochs), got "
                      f"{self.eval_every}")
    if not 0 <= self.seed < 2**31:
      raise UserError(f"--seed must be in [0, 2**31), got {self.seed}")
    if self.phm_n < 0:
      raise UserError(f"--phm_n must be 0 (a dense layer) or a positive "
                      f"divisor of the layer sizes, got {self.phm_n}")
    _ = self.hidden_sizes  # (validates)
    if self.val_fraction is not None and not 0 <= self.val_fraction < 1:
      raise UserError(f"--val_fraction must be in [0, 1), got "
                      f"{self.val_fraction}")
    return self

  @property
  def hidden_sizes(self) -> tuple[int, ...]:
    """The hidden layer sizes: "256,128" -> (256, 128)."""
    try:
      sizes = tuple(int(h) for h in self.hidden.split(",") if h.strip())
    except ValueError:
      sizes = ()
    if any(h < 1 for h in sizes) or (self.hidden.strip() and not sizes):
      raise UserError(f"--hidden={self.hidden!r}: give layer sizes as positive "
                      "integers separated by commas, e.g. --hidden=256,128")
    return sizes


def _check_choice(flag, value, choices):
  if value not in choices:
    raise UserError(f"unknown --{flag}={value!r}; choose one of: "
                    f"{', '.join(choices)}")


def _check_positive(flag, value, allow_zero=False):
  ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
  if not ok:
    bound = "a finite number >= 0" if allow_zero else "a finite number > 0"
    raise UserError(f"--{flag} must be {bound}, got {value}")


FIELDS = tuple(f.name for f in dataclasses.fields(Config))


def parse_value(name: str, text: str):
  """A flag's text as the type of the Config field `name`."""
  # A string: annotations are postponed (from __future__ import annotations).
  kind = cast(str, {f.name: f.type for f in dataclasses.fields(Config)}[name])
  if kind.endswith("| None") and text.strip().lower() in ("", "none", "auto"):
    return None
  try:
    if kind == "int":
      return int(text)
    if kind.startswith("float"):
      return float(text)
    if kind == "bool":
      if text.strip().lower() not in ("true", "false", "1", "0"):
        raise ValueError(text)
      return text.strip().lower() in ("true", "1")
  except ValueError:
    raise UserError(
        f"--{name}={text!r} is not " + {"int": "an integer", "bool": "true or "
                                       "false"}.get(kind, "a number")
    ) from None
  return text


def with_overrides(config: Config, overrides: dict[str, str]) -> Config:
  """The config with each field in `overrides` parsed from its text."""
  unknown = set(overrides) - set(FIELDS)
  if unknown:
    raise UserError(f"unknown config field(s) {', '.join(sorted(unknown))}; "
                    f"known: {', '.join(FIELDS)}")
  parsed = {k: parse_value(k, v) for k, v in overrides.items()}
  return dataclasses.replace(config, **parsed)


def load_experiment(path: str | Path) -> tuple[Config, list[dict]]:
  """An experiments file's `get_config()` and, if it has one, `get_sweep()`.

  get_sweep() returns a list of override dicts (see softmax_jax.sweep); a file
  without it describes a single run.
  """
  path = Path(path)
  if not path.is_file():
    raise UserError(f"--config={path}: no such file; give a Python file with "
                    "get_config(), e.g. experiments/d2l_fashion_mnist.py")
  spec = importlib.util.spec_from_file_location(f"_experiment_{path.stem}",
                                                path)
  if spec is None or spec.loader is None:
    raise UserError(f"--config={path} is not a Python (.py) file")
  module = importlib.util.module_from_spec(spec)
  try:  # the user's code: report its errors in one line
    spec.loader.exec_module(module)
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
      raise UserError(f"--config={path} has no get_config() function")
    config = get_config()
    get_sweep = getattr(module, "get_sweep", None)
    if get_sweep is not None and not callable(get_sweep):
      raise UserError(f"--config={path}: get_sweep must be a function")
    entries = get_sweep() if get_sweep else []
  except UserError:
    raise
  except Exception as e:  # pylint: disable=broad-exception-caught
    first_line = (str(e).strip().splitlines() or [""])[0]
    script = ("" if callable(getattr(module, "get_config", None)) else
              " (a script, not an experiment file? run it with python)")
    raise UserError(f"--config={path} failed to load: "
                    f"{type(e).__name__}: {first_line}{script}") from e
  if not isinstance(config, Config):
    raise UserError(f"--config={path}: get_config() must return a "
                    f"softmax_jax.config.Config, got {type(config).__name__}")
  try:  # each field as its type, e.g. lr="0.1" -> 0.1; a wrong one refused
    config = with_overrides(Config(),
                            {f: str(getattr(config, f)) for f in FIELDS})
  except UserError as e:
    raise UserError(f"--config={path}: get_config(): {e}") from None
  if not (isinstance(entries, list)
          and all(isinstance(e, dict) for e in entries)):
    raise UserError(f"--config={path}: get_sweep() must return a list of "
                    "dicts of overrides, e.g. sweep.product(sweep.axis('lr', "
                    "[0.1, 1.0]))")
  return config, entries


def to_dict(config: Config) -> dict:
  return dataclasses.asdict(config)

