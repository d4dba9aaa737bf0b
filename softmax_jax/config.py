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
from typing import Any, cast

import numpy as np

from softmax_jax.errors import UserError

# Each field's role, declared beside it (the `role` of its metadata):
RUN = "run"  # one value for a whole run (a sweep cannot vary it)
VALUE = "value"  # traced: configurations that differ train in one program
STATIC = "static"  # compiled in: a sweep trains one program per value


def _field(default, role: str, help_text: str, *, data: bool = False) -> Any:
  """A Config field: its default, role and --help line; `data`: a flag of
  the data set (--mode=prepare_data reads it)."""
  return dataclasses.field(default=default, metadata={
      "role": role, "help": help_text, "data": data})


@dataclasses.dataclass(frozen=True)
class Config:
  """A run's hyperparameters; `--help` shows each field's line below."""
  dataset: str = _field(
      "fashion_mnist", RUN, "A TFDS image classification data set name, "
      "npy:DIR (a folder of .npy files, memory-mapped), npz:PATH or "
      "csv:PATH.", data=True)
  data_dir: str = _field(
      "", RUN, "TFDS data dir (default: $TFDS_DATA_DIR or "
      "~/tensorflow_datasets).", data=True)
  loss: str = _field("xent", VALUE, "Loss: xent, l2, l1 or huber.")
  loss_input: str = _field(
      "probs", STATIC, "What l2/l1/huber compare with the one-hot labels: "
      "probs or logits.")
  huber_delta: float = _field(
      0.1, VALUE, "Huber's switch from quadratic to linear (with delta >= 1 "
      "Huber on probabilities is exactly L2, since |p - y| <= 1).")
  optimizer: str = _field(
      "sgd", STATIC, "Optimizer: sgd, momentum or adam (minibatches), lbfgs "
      "(full-batch L-BFGS to --tol), owlqn (its orthant-wise form for "
      "--penalty=l1/elasticnet, Andrew & Gao 2007) or exact (ridge "
      "regression on the one-hot code in closed form: --loss=l2 "
      "--loss_input=logits).")
  lr: float = _field(0.1, VALUE, "Learning rate.")
  schedule: str = _field(
      "constant", STATIC, "The learning rate over the run: constant, cosine "
      "(decays to 0) or warmup_cosine (5% linear warm-up, then cosine).")
  compute_dtype: str = _field(
      "float32", STATIC, "The training matmuls' input dtype: float32, or "
      "bfloat16 (float32 accumulation, params and evaluation).")
  matmul_precision: str = _field(
      "highest", RUN, "float32 matmuls on a GPU or TPU: highest (true "
      "float32), high (3 bfloat16 passes) or default (TF32 on NVIDIA GPUs, "
      "one bfloat16 pass on TPUs: faster, ~3 significant digits). A CPU "
      "computes float32 whatever this says.")
  weight_decay: float = _field(
      0.0, VALUE, "The penalty's strength lambda on the weights W (not the "
      "bias): lambda/2 ||W||^2 with --penalty=l2.")
  penalty: str = _field(
      "l2", STATIC, "The penalty on W: l2 (lambda/2 ||W||^2), l1 (lambda "
      "||W||_1: sparse weights) or elasticnet (lambda (rho ||W||_1 + "
      "(1 - rho)/2 ||W||^2), rho = --l1_ratio). l1 and elasticnet: "
      "--optimizer=owlqn (exact, to --tol) or sgd/momentum/adam (a proximal "
      "step after each update).")
  l1_ratio: float = _field(
      0.5, VALUE, "--penalty=elasticnet: rho, the L1 share of the penalty "
      "(0: l2, 1: l1).")
  weight_decay_unit: str = _field(
      "absolute", RUN, "How --weight_decay is read: absolute (lambda itself) "
      "or lambda_max (fractions of lambda_max, the smallest strength at which "
      "W = 0 is optimal, computed from the training rows: "
      "--weight_decay=1.01,0.1,0.01 is a path from W = 0 down); needs an L1 "
      "part. Outputs give the strengths as lambda.")
  fit_intercept: bool = _field(
      True, RUN, "Fit the bias b (the intercept); --nofit_intercept keeps "
      "b = 0, the model o = xW (scikit-learn's fit_intercept=False).")
  tol: float = _field(
      1e-5, VALUE, "--optimizer=lbfgs/owlqn: stop when the gradient norm of "
      "the objective (mean loss + the penalty; with an L1 part, the norm of "
      "its smallest subgradient: the KKT violation, in the model's W and "
      "b) is below this (near float32's resolution of a mean over "
      "10^4-10^6 examples): a certificate of optimality where the "
      "objective is convex (xent, and any loss on logits), of a stationary "
      "point for l2 and huber on probabilities.")
  max_iters: int = _field(1000, VALUE,
                          "--optimizer=lbfgs/owlqn: iterations at most.")
  batch_size: int = _field(
      256, STATIC, "Minibatch size (the last partial one is dropped).")
  epochs: int = _field(
      10, STATIC, "Number of passes over the training data, reshuffled each "
      "time.")
  device_memory_gb: float = _field(
      0.0, RUN, "Accelerator memory the training set may use, in GiB (0: "
      "the device's own; on a CPU, none): a larger set streams from host "
      "memory, prefetched.")
  eval_every: int = _field(
      1, RUN, "Evaluate on the validation and test splits every N epochs "
      "(the last always).")
  track_objective: bool = _field(
      False, RUN, "Each evaluation also records the full training objective "
      "(mean loss + weight_decay/2 ||W||^2, what --optimizer=lbfgs "
      "minimizes) as `objective`: one more pass over the training set.")
  calibrate: bool = _field(
      False, RUN, "After training, fit one temperature T per configuration "
      "on the validation split (temperature scaling: softmax(logits / T)); "
      "report NLL and ECE before and after, and predict with it. Needs a "
      "validation split.")
  seed: int = _field(
      0, VALUE, "Random seed for initialization and shuffling: the same seed "
      "gives the same run; a list (--seed=0,1,2) makes a sweep report each "
      "configuration as mean +- std over its seeds.")
  init_scale: float = _field(
      0.01, VALUE, "Standard deviation of the initial weights: W ~ N(0, "
      "init_scale^2), b = 0.")
  hidden: str = _field(
      "", STATIC, "Hidden ReLU layer sizes before the softmax layer, e.g. "
      "256,128 (sweep them in an experiments file).")
  phm_n: int = _field(
      0, STATIC, "n > 0: the softmax layer as a PHM layer, W = sum of n "
      "Kronecker products (n must divide its input and output sizes).")
  pixels: str = _field(
      "auto", RUN, "What counts as image pixels, scaled to [0, 1]: auto "
      "(uint8 arrays, and arrays of images holding whole numbers 0-255 or "
      "values in [0, 1]), yes (any array; refused unless it holds pixels) or "
      "no (every array used as it is).", data=True)
  standardize: bool = _field(
      False, RUN, "Standardize each feature with the training split's mean "
      "and standard deviation.")
  test_csv: str = _field(
      "", RUN, "With --dataset=csv:PATH: the test set's CSV (default: a "
      "seeded 20% split of PATH).", data=True)
  val_fraction: float | None = _field(
      None, RUN, "Share of the training set held out for validation (auto: "
      "none for one run, 1/6 for a sweep; data with its own x_val uses that, "
      "and 0 trains on it too).")
  class_weight: str = _field(
      "none", RUN, "Weights of the training examples by class: none, or "
      "balanced (n / (K n_k), scikit-learn's, n and n_k counted in the "
      "data's own per-example weights w_train where it has them), "
      "multiplying those weights.")
  fold: int = _field(
      -1, VALUE, "Cross-validation: the fold of the data's folds left out "
      "of training (-1: none; SoftmaxRegressionCV sets it, and its folds x "
      "strengths train as one stack).")

  def validate(self) -> Config:
    """Returns self, or raises UserError naming the flag and the fix."""
    from softmax_jax import losses  # pylint: disable=g-import-not-at-top
    from softmax_jax import model  # pylint: disable=g-import-not-at-top
    from softmax_jax import solvers  # pylint: disable=g-import-not-at-top
    from softmax_jax.data import datasets  # pylint: disable=g-import-not-at-top
    from softmax_jax.solvers import optimizers  # pylint: disable=g-import-not-at-top
    _check_choice("loss", self.loss, losses.LOSSES)
    _check_choice("loss_input", self.loss_input, losses.LOSS_INPUTS)
    _check_choice("optimizer", self.optimizer, solvers.REGISTRY)
    _check_choice("schedule", self.schedule, optimizers.SCHEDULES)
    _check_choice("compute_dtype", self.compute_dtype, model.COMPUTE_DTYPES)
    _check_choice("matmul_precision", self.matmul_precision,
                  model.MATMUL_PRECISIONS)
    datasets.check_name(self.dataset)
    _check_choice("pixels", self.pixels, datasets.PIXELS)
    _check_choice("class_weight", self.class_weight, datasets.CLASS_WEIGHTS)
    _check_choice("penalty", self.penalty, PENALTIES)
    _check_choice("weight_decay_unit", self.weight_decay_unit,
                  WEIGHT_DECAY_UNITS)
    if self.weight_decay_unit == "lambda_max" and self.l1_share == 0:
      raise UserError("--weight_decay_unit=lambda_max needs an L1 part "
                      "(--penalty=l1, or elasticnet with --l1_ratio > 0): "
                      "with l2 alone no finite strength makes W = 0")
    if not 0 <= self.l1_ratio <= 1:
      raise UserError(f"--l1_ratio must be in [0, 1] (the L1 share of the "
                      f"elastic net), got {self.l1_ratio}")
    if self.fold < -1:
      raise UserError(f"--fold must be -1 (none) or a fold's number, got "
                      f"{self.fold}")
    _check_positive("lr", self.lr)
    _check_positive("huber_delta", self.huber_delta)
    _check_positive("init_scale", self.init_scale, allow_zero=True)
    _check_positive("weight_decay", self.weight_decay, allow_zero=True)
    _check_positive("device_memory_gb", self.device_memory_gb, allow_zero=True,
                    float32=False)
    _check_positive("tol", self.tol)
    if not 1 <= self.max_iters < 2**31:  # (an int32 of the stack's)
      raise UserError(f"--max_iters must be in [1, 2^31), got "
                      f"{self.max_iters}")
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
  def l1_share(self) -> float:
    """rho, the L1 share of the penalty: 0 for l2, 1 for l1, --l1_ratio for
    elasticnet."""
    return {"l2": 0.0, "l1": 1.0}.get(self.penalty, self.l1_ratio)

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


def _check_positive(flag, value, allow_zero=False, float32=True):
  """A finite number > 0 (or >= 0); float32: one that training, in
  float32, holds as such (neither beyond its range nor rounded to 0)."""
  ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
  if not ok:
    bound = "a finite number >= 0" if allow_zero else "a finite number > 0"
    raise UserError(f"--{flag} must be {bound}, got {value}")
  if float32:
    with np.errstate(over="ignore"):  # (inf: said below, in one line)
      held = float(np.float32(value))
    if not math.isfinite(held) or (value > 0 and held == 0):
      tiny = float(np.finfo(np.float32).smallest_subnormal)
      raise UserError(f"--{flag}={value:g} is beyond float32's range "
                      f"({tiny:.2g} to {float(np.finfo(np.float32).max):.3g})"
                      ", in which training computes; give a number in it")


PENALTIES = ("l2", "l1", "elasticnet")
WEIGHT_DECAY_UNITS = ("absolute", "lambda_max")

FIELDS = tuple(f.name for f in dataclasses.fields(Config))
HELP = {f.name: f.metadata["help"] for f in dataclasses.fields(Config)}
DATA_FIELDS = tuple(f.name for f in dataclasses.fields(Config)
                    if f.metadata["data"])


def check_run_wide(configs: list[Config]) -> None:
  """Refuses configurations that differ in a field of role RUN (one value
  for the whole run: the data's reading, the validation split, the model's
  intercept, ...), which no stack of them could train as each says."""
  differ = [f for f in fields_of(RUN)
            if len({getattr(c, f) for c in configs}) > 1]
  if differ:
    raise UserError(f"{', '.join(differ)} cannot be swept: one value for "
                    "the whole run")


def fields_of(role: str) -> tuple[str, ...]:
  """The Config fields of a role (RUN, VALUE or STATIC), in Config order."""
  return tuple(f.name for f in dataclasses.fields(Config)
               if f.metadata["role"] == role)


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

