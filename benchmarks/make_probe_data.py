"""Writes a generated linear-probe data set as an npy:DIR folder, in chunks.

  python benchmarks/make_probe_data.py --out=/tmp/probe --n=2000000 --d=512 \
      --k=1000 [--n_test=10000] [--n_val=0] [--dtype=float32] [--noise=4]

Features are Gaussian clusters, one centre per class (seeded), like the
embeddings a pretrained model gives a linear probe; the rows are written a
chunk at a time into memory-mapped .npy files, so a set larger than memory
can be made. Nothing it writes is committed.
"""

import argparse
from pathlib import Path

import ml_dtypes
import numpy as np

CHUNK = 100_000  # rows generated at a time


def write(folder: Path, n: int, n_test: int, d: int, k: int, dtype,
          noise: float, seed: int = 0, n_val: int = 0) -> None:
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  centers = rng.normal(0, 1, (k, d)).astype(np.float32)
  splits = ((("train", n), ("test", n_test))
            + ((("val", n_val),) if n_val else ()))
  for split, rows in splits:
    x = np.lib.format.open_memmap(folder / f"x_{split}.npy", mode="w+",
                                  dtype=dtype, shape=(rows, d))
    y = np.lib.format.open_memmap(folder / f"y_{split}.npy", mode="w+",
                                  dtype=np.int32, shape=(rows,))
    for start in range(0, rows, CHUNK):
      m = min(CHUNK, rows - start)
      labels = rng.integers(0, k, m, dtype=np.int32)
      x[start:start + m] = (centers[labels] + rng.normal(
          0, noise, (m, d)).astype(np.float32)).astype(dtype)
      y[start:start + m] = labels
    x.flush()
    y.flush()
    del x, y


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True)
  parser.add_argument("--n", type=int, default=200_000)
  parser.add_argument("--n_test", type=int, default=10_000)
  parser.add_argument("--n_val", type=int, default=0,
                      help="rows of x_val/y_val (0: none; sweeps then hold "
                      "out a share of the training rows)")
  parser.add_argument("--d", type=int, default=512)
  parser.add_argument("--k", type=int, default=1000)
  parser.add_argument("--dtype", default="float32",
                      choices=["float32", "float16", "bfloat16"])
  parser.add_argument("--noise", type=float, default=4.0)
  args = parser.parse_args()
  dtype = (ml_dtypes.bfloat16 if args.dtype == "bfloat16"
           else np.dtype(args.dtype))
  write(Path(args.out), args.n, args.n_test, args.d, args.k, dtype, args.noise,
        n_val=args.n_val)
  print(f"wrote {args.out}: {args.n:,} + {args.n_test:,} rows x {args.d} "
        f"{args.dtype} features, {args.k} classes")


if __name__ == "__main__":
  main()
