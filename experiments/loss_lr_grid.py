"""Each loss at each learning rate of d2l's setup: the README's results table.

  python experiments/loss_lr_grid.py

Trains 4 losses x 5 learning rates (20 runs of 10 epochs, ~30 s on 2 CPU
cores) and prints a markdown table. The best lr of each loss is chosen by its
final training accuracy: the test set is only reported, never used to choose.
Expected: cross-entropy ~0.84 test accuracy; the regression losses on
probabilities learn slower at lr 0.1 and need larger learning rates.
"""

import dataclasses
import datetime
from pathlib import Path
import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from softmax_jax.config import Config  # pylint: disable=wrong-import-position

LOSSES = ("xent", "l2", "l1", "huber")
LEARNING_RATES = (0.03, 0.1, 0.3, 1.0, 3.0)


def get_config() -> Config:
  return Config()  # d2l ch. 3: sgd, batch 256, 10 epochs, W ~ N(0, 0.01^2)


def grid() -> list[Config]:
  return [dataclasses.replace(get_config(), loss=loss, lr=lr)
          for loss in LOSSES for lr in LEARNING_RATES]


def main():
  from softmax_jax import train  # pylint: disable=g-import-not-at-top
  from softmax_jax.data import datasets  # pylint: disable=g-import-not-at-top
  from softmax_jax.errors import DivergedError  # pylint: disable=g-import-not-at-top
  dataset = datasets.load(get_config().dataset)
  results = {}
  for config in grid():
    try:
      s = train.train_and_evaluate(config, dataset).summary
      results[config.loss, config.lr] = (s["train_accuracy"],
                                         s["test_accuracy"])
    except DivergedError:
      results[config.loss, config.lr] = (float("-inf"), float("nan"))
    print(f"{config.loss:6s} lr {config.lr:<5g} train acc "
          f"{results[config.loss, config.lr][0]:.4f} test acc "
          f"{results[config.loss, config.lr][1]:.4f}", file=sys.stderr)
  print(f"Measured {datetime.date.today()} with "
        "`python experiments/loss_lr_grid.py`"
        f" (Fashion-MNIST, d2l setup, 10 epochs, seed 0).\n")
  print("| loss | test acc at lr 0.1 | best lr (by train acc) | "
        "test acc at best lr |")
  print("|---|---|---|---|")
  for loss in LOSSES:
    best = max(LEARNING_RATES, key=lambda lr: results[loss, lr][0])
    print(f"| {loss} | {results[loss, 0.1][1]:.4f} | {best:g} | "
          f"{results[loss, best][1]:.4f} |")


if __name__ == "__main__":
  main()
