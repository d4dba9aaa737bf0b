"""Config: defaults, overrides from flag text, validation, experiment files."""

import dataclasses
import re

import pytest

from conftest import ROOT
from softmax_jax import config as config_lib
from softmax_jax.config import Config
from softmax_jax.errors import UserError


def test_d2l_experiment_is_the_textbook_setup():
  c = config_lib.load_experiment(
      ROOT / "experiments" / "d2l_fashion_mnist.py")[0]
  assert (c.dataset, c.loss, c.optimizer, c.lr, c.batch_size, c.epochs,
          c.init_scale) == ("fashion_mnist", "xent", "sgd", 0.1, 256, 10, 0.01)
  assert c == Config()  # launch.py's defaults are the same setup


def test_overrides_are_parsed_to_the_field_types():
  c = config_lib.with_overrides(Config(), {"lr": "0.5", "epochs": "3",
                                           "loss": "l2"})
  assert (c.lr, c.epochs, c.loss) == (0.5, 3, "l2")
  assert isinstance(c.epochs, int) and isinstance(c.lr, float)


@pytest.mark.parametrize("overrides, message", [
    ({"lr": "abc"}, "--lr='abc' is not a number"),
    ({"lr": ""}, "--lr='' is not a number"),
    ({"epochs": "2.5"}, "--epochs='2.5' is not an integer"),
    ({"momentum": "0.9"}, "unknown config field"),
])
def test_bad_override_text(overrides, message):
  with pytest.raises(UserError, match=message):
    config_lib.with_overrides(Config(), overrides)


@pytest.mark.parametrize("changes, message", [
    ({"loss": "hinge"},
     "unknown --loss='hinge'; choose one of: xent, l2, l1, huber"),
    ({"optimizer": "rmsprop"}, "choose one of: sgd, momentum, adam"),
    ({"dataset": "Fashion MNIST!"},
     "unknown --dataset='Fashion MNIST!'; give a TFDS"),
    ({"dataset": "npz:"}, "needs a path"),
    ({"hidden": "256,x"}, "--hidden='256,x': give layer sizes"),
    ({"hidden": "0"}, "--hidden='0'"),
    ({"phm_n": -1}, "--phm_n must be 0"),
    ({"loss_input": "probabilities"}, "choose one of: probs, logits"),
    ({"lr": 0.0}, "--lr must be a finite number > 0"),
    ({"lr": -0.1}, "--lr must be"),
    ({"lr": float("nan")}, "--lr must be"),
    ({"lr": float("inf")}, "--lr must be"),
    ({"huber_delta": 0.0}, "--huber_delta must be"),
    ({"weight_decay": -1.0}, "--weight_decay must be a finite number >= 0"),
    ({"batch_size": 0}, "--batch_size must be at least 1"),
    ({"epochs": 0}, "--epochs must be at least 1"),
    ({"seed": -1}, "--seed must be in"),
    ({"max_iters": 2**31}, "--max_iters must be in [1, 2^31)"),
    # (float32's range, in which training computes)
    ({"weight_decay": 1e39}, "--weight_decay=1e+39 is beyond float32's"),
    ({"init_scale": 1e39}, "--init_scale=1e+39 is beyond float32's"),
    ({"huber_delta": 1e-50}, "--huber_delta=1e-50 is beyond float32's"),
    ({"tol": 1e-46}, "--tol=1e-46 is beyond float32's"),
])
def test_validation_names_the_flag(changes, message):
  with pytest.raises(UserError, match=re.escape(message)):
    dataclasses.replace(Config(), **changes).validate()


def test_valid_config_passes():
  assert Config(loss="huber", optimizer="adam", weight_decay=0.0).validate()


def test_missing_config_file(tmp_path):
  with pytest.raises(UserError, match="no such file"):
    config_lib.load_experiment(tmp_path / "missing.py")
  (tmp_path / "notes.md").write_text("# lr 0.1\n")
  with pytest.raises(UserError, match="is not a Python"):
    config_lib.load_experiment(tmp_path / "notes.md")


@pytest.mark.parametrize("source, message", [
    ("x = 1\n", "has no get_config"),
    ("def get_config(:\n", "failed to load: SyntaxError"),
    ("def get_config():\n  return {'lr': 0.1}\n",
     "must return a softmax_jax.config.Config"),
    ("def get_config():\n  return 1 / 0\n", "ZeroDivisionError"),
])
def test_bad_config_file(tmp_path, source, message):
  path = tmp_path / "exp.py"
  path.write_text(source)
  with pytest.raises(UserError, match=message):
    config_lib.load_experiment(path)


def test_the_sweeps_page_lists_the_sweepable_fields():
  from softmax_jax import sweep  # pylint: disable=g-import-not-at-top
  text = (ROOT / "docs" / "guide" / "sweeps.md").read_text()
  sentence = text[text.index("Sweepable: "):].split(";")[0]
  listed = re.findall(r"`(\w+)`", sentence.split("(each field")[0])
  assert sorted(listed) == sorted(sweep.SWEEPABLE)


def test_each_field_declares_its_role_and_help():
  from softmax_jax import sweep  # pylint: disable=g-import-not-at-top
  for field in dataclasses.fields(Config):
    assert field.metadata["role"] in (config_lib.RUN, config_lib.VALUE,
                                      config_lib.STATIC), field.name
    assert field.metadata["help"].endswith("."), field.name
  assert set(config_lib.fields_of(config_lib.RUN)).isdisjoint(
      sweep.SWEEPABLE)
