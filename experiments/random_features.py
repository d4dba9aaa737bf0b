"""A linear probe at large D on real images: Fashion-MNIST through random
features.

  python experiments/random_features.py [--features=4096] [--out=DIR]
  python launch.py --config=experiments/random_features.py

The first command writes the npy: folder (default
runs/data/fashion_mnist_relu4096): each image's 784 pixels in [0, 1] through
a fixed, seeded random ReLU feature map, phi(x) = max(0, x R + c) with R ~
N(0, 1/784) [784 x F] and c ~ U(-1, 1) [F] (random features, Rahimi & Recht
2007), computed in chunks (resumable) as float32 (60,000 x 4,096 x 4 bytes
= 0.98 GB), with the class names. The second trains softmax regression on
them, standardized, with Adam and a cosine schedule: the features play the
role of a pretrained model's embeddings, and a linear classifier on them
clearly beats the 0.83-0.85 it reaches on the pixels themselves.
Expected: test accuracy 0.871 (20 epochs, ~5 s of training on 2 CPU cores; a
sweep over lr and weight decay chose wd 0.01 at 0.869 test, no better).
"""

import argparse
from pathlib import Path
import sys

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FEATURES = 4096
DEFAULT_DIR = ROOT / "runs" / "data" / f"fashion_mnist_relu{DEFAULT_FEATURES}"
CHUNK = 5000  # images mapped at a time
SEED = 0


def get_config():
  from softmax_jax.config import Config  # pylint: disable=g-import-not-at-top
  return Config(
      dataset=f"npy:{DEFAULT_DIR}",  # written by this file's main()
      standardize=True,  # per-feature, statistics from the training split
      loss="xent",
      optimizer="adam",
      lr=1e-3,
      schedule="cosine",
      weight_decay=1e-4,
      batch_size=256,
      epochs=20,
  )


def write(out: Path, num_features: int, data_dir: str | None = None) -> None:
  """The random-feature npy: folder of Fashion-MNIST, written in chunks
  (softmax_jax/data/embeddings.py: resumable after a kill)."""
  import jax  # pylint: disable=g-import-not-at-top

  # pylint: disable=g-import-not-at-top
  from softmax_jax.data import datasets
  from softmax_jax.data import embeddings
  dataset = datasets.load("fashion_mnist", data_dir)
  d = dataset.num_features
  key_r, key_c = jax.random.split(jax.random.key(SEED))
  r = jax.random.normal(key_r, (d, num_features)) / np.sqrt(d)
  c = jax.random.uniform(key_c, (num_features,), minval=-1.0, maxval=1.0)
  feature_map = jax.jit(lambda x: jax.nn.relu(datasets.to_features(x) @ r + c))
  embeddings.write_npy_folder(
      dataset, feature_map, out, num_features=num_features, chunk=CHUNK,
      settings={"map": "relu(x R + c)", "seed": SEED})


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--features", type=int, default=DEFAULT_FEATURES)
  parser.add_argument("--out", default=None,
                      help=f"the npy: folder (default {DEFAULT_DIR})")
  parser.add_argument("--data_dir", default=None, help="TFDS data dir")
  args = parser.parse_args()
  out = Path(args.out or ROOT / "runs" / "data" /
             f"fashion_mnist_relu{args.features}")
  sys.path.insert(0, str(ROOT))
  from softmax_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  try:
    write(out, args.features, args.data_dir)
  except UserError as e:
    sys.exit(f"error: {e}")
  print(f"wrote {out}: Fashion-MNIST through {args.features} random ReLU "
        f"features; train with python launch.py --dataset=npy:{out} "
        "--standardize (or --config=experiments/random_features.py)")


if __name__ == "__main__":
  main()
