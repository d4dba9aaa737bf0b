"""The CLIP paper's linear-probe protocol, on Fashion-MNIST.

  python launch.py --config=experiments/clip_probe.py --refit
  python launch.py --config=experiments/clip_probe.py --refit \\
      --dataset=npy:data/random_features      # experiments/random_features.py

Radford et al. (2021, appendix A.3) fit L2-regularized logistic regression
with scikit-learn's L-BFGS (at most 1,000 iterations) for regularization
strengths from 1e-6 to 1e6, choose the strength on a validation split and
refit on train + validation. Here the whole range, 96 log-spaced weight
decays (the objective mean cross-entropy + (weight_decay / 2) ||W||^2), is
one vmapped L-BFGS path (softmax_jax/solvers/lbfgs.py): the strong penalties
converge in a few iterations and drop out of the stack, the weak ones go on
to the tolerance or the iteration cap. The best by validation accuracy on
10,000 held-out images is refit on all 60,000 (--refit) and scored on the
test set. Standardized pixels, as a probe standardizes its embeddings.
(CLIP searched its 96 values by a parametric binary search, a fit at a
time; a path computes them all at once.)
"""

import numpy as np

from softmax_jax import sweep
from softmax_jax.config import Config


def get_config() -> Config:
  return Config(
      dataset="fashion_mnist",
      optimizer="lbfgs",
      loss="xent",
      standardize=True,  # per-feature (x - mean) / std, training statistics
      max_iters=1000,  # CLIP's cap
      tol=1e-5,
      val_fraction=1 / 6,  # 10,000 of the 60,000 training images
  )


def get_sweep() -> list[dict]:
  return sweep.axis("weight_decay",
                    [float(f"{wd:.3g}") for wd in np.logspace(-6, 6, 96)])
