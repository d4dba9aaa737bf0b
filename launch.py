"""Trains softmax regression: `python launch.py --loss=xent`.

Flags override the fields of the experiment config (--config, default: the
d2l ch. 3 setup). Every mistake in the input ends in one line on stderr and
exit status 2; --debug shows the traceback instead.
"""

import sys

from absl import app
from absl import flags
from absl import logging

from softmax_jax import config as config_lib
from softmax_jax.errors import UserError

_HELP = {
    "dataset": "TFDS data set name.",
    "data_dir": "TFDS data dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets).",
    "loss": "Loss: xent, l2, l1 or huber.",
    "loss_input": "What l2/l1/huber compare with the one-hot labels: probs or logits.",
    "huber_delta": "Huber's switch from quadratic to linear.",
    "optimizer": "Optimizer: sgd, momentum or adam.",
    "lr": "Learning rate.",
    "weight_decay": "L2 penalty on the weights W (not the bias).",
    "batch_size": "Minibatch size.",
    "epochs": "Number of passes over the training data.",
    "seed": "Random seed for initialization and shuffling.",
    "init_scale": "Standard deviation of the initial weights.",
}
_DEFAULTS = config_lib.Config()
for _name in config_lib.FIELDS:
  flags.DEFINE_string(_name, str(getattr(_DEFAULTS, _name)), _HELP[_name])
flags.DEFINE_string("config", None, "Experiment file with get_config(), e.g. "
                    "experiments/d2l_fashion_mnist.py; flags override its fields.")
flags.DEFINE_string("workdir", None, "Output folder (default: a new folder under runs/).")
flags.DEFINE_bool("overwrite", False, "Replace the outputs of a run in --workdir.")
flags.DEFINE_enum("mode", "train", ["train", "prepare_data"],
                  "train, or only prepare and cache the data set.")
flags.DEFINE_bool("debug", False, "Show full tracebacks.")
FLAGS = flags.FLAGS


def build_config() -> config_lib.Config:
  base = (config_lib.load_config_file(FLAGS.config) if FLAGS.config
          else config_lib.Config())
  overrides = {n: FLAGS[n].value for n in config_lib.FIELDS if FLAGS[n].present}
  return config_lib.with_overrides(base, overrides).validate()


def main(argv):
  if not FLAGS.debug:  # JAX and TFDS log chatter a user cannot act on
    logging.set_verbosity(logging.ERROR)
  if len(argv) > 1:
    raise UserError(f"unexpected argument {argv[1]!r}; flags look like --loss=xent")
  config = build_config()
  if FLAGS.mode == "prepare_data":
    from softmax_jax import data  # pylint: disable=g-import-not-at-top
    dataset = data.load(config.dataset, config.data_dir or None)
    print(f"{config.dataset} ready: {len(dataset.x_train):,} train / "
          f"{len(dataset.x_test):,} test examples, cached in "
          f"{data.cache_path(config.dataset, config.data_dir or data.default_data_dir())}")
    return
  from softmax_jax import runner  # pylint: disable=g-import-not-at-top
  runner.run(config, FLAGS.workdir, overwrite=FLAGS.overwrite)


def _parse_flags(argv):
  try:
    return FLAGS(argv)
  except flags.Error as e:
    print(f"error: {e}; see --helpfull", file=sys.stderr)
    sys.exit(2)


def _main_reporting_errors(argv):
  try:
    main(argv)
  except UserError as e:
    if FLAGS.debug:
      raise
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except KeyboardInterrupt:
    print("interrupted; the epochs that finished are in the workdir's "
          "metrics.jsonl", file=sys.stderr)
    sys.exit(130)


if __name__ == "__main__":
  app.run(_main_reporting_errors, flags_parser=_parse_flags)
