"""Each loss over 5 seeds, calibrated after training: the README's loss table.

  python launch.py --config=experiments/loss_seeds.py

d2l's setup (SGD, batch 256, 10 epochs) for 4 losses x 5 learning rates x
5 seeds = 100 runs, trained as one compiled, vmapped program; 10,000
training images are held out to choose on and to fit each run's temperature
(--calibrate is on). results_by_config.csv has each (loss, lr) over its
seeds; the README's table is, for each loss, its row with the highest
val_accuracy_mean (the test set only reported). Expected on 2 CPU cores
(measured 2026-11-21): see the README's *Results on Fashion-MNIST*.
"""

from softmax_jax import sweep
from softmax_jax.config import Config

LOSSES = ("xent", "l2", "l1", "huber")
LEARNING_RATES = (0.03, 0.1, 0.3, 1.0, 3.0)
SEEDS = (0, 1, 2, 3, 4)


def get_config() -> Config:
  return Config(
      dataset="fashion_mnist",
      optimizer="sgd",  # plain minibatch SGD, as d2l ch. 3
      batch_size=256,  # examples per minibatch
      epochs=10,  # passes over the training set
      val_fraction=1 / 6,  # 10,000 of the 60,000 training images
      calibrate=True,  # a temperature per run, fit on the validation split
  )


def get_sweep() -> list[dict]:
  return sweep.product(sweep.axis("loss", list(LOSSES)),
                       sweep.axis("lr", list(LEARNING_RATES)),
                       sweep.axis("seed", list(SEEDS)))
