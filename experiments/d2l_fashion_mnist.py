"""Softmax regression as in "Dive into Deep Learning" ch. 3, on Fashion-MNIST.

  python launch.py --config=experiments/d2l_fashion_mnist.py

784 pixel features in [0, 1] -> one linear layer -> 10 classes;
W ~ N(0, 0.01^2), b = 0; cross-entropy; minibatch SGD, lr 0.1, batch 256,
10 epochs. Expected: test accuracy 0.83-0.84 (d2l reports 0.830-0.836), ~1 s
of training on 2 CPU cores after ~1 s of compilation.
"""

from softmax_jax.config import Config


def get_config() -> Config:
  return Config(
      dataset="fashion_mnist",  # 60,000 train / 10,000 test 28x28 images
      loss="xent",  # cross-entropy on the logits
      optimizer="sgd",  # plain minibatch SGD
      lr=0.1,  # learning rate
      weight_decay=0.0,  # no regularization
      batch_size=256,  # examples per minibatch
      epochs=10,  # passes over the training set
      seed=0,  # initialization and shuffling
      init_scale=0.01,  # W ~ N(0, 0.01^2)
  )
