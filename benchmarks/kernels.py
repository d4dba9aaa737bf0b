"""Where an epoch's time goes, kernel by kernel, as XLA runs it.

  .venv/bin/python benchmarks/kernels.py --point=d2l     # ~30 s, 2 cores
  .venv/bin/python benchmarks/kernels.py --point=sweep   # ~1 minute

Trains the point's configurations on the real Fashion-MNIST as
`launch.py` does (its solver's rounds: an epoch of 234 minibatches of
256), times --rounds epochs after two, then records --traced more under
JAX's profiler and adds up, over its trace, the time of each kernel XLA ran
(a fusion, a matmul: named as in the optimized HLO, which
XLA_FLAGS=--xla_dump_to=DIR writes), per epoch. The tracer's own cost
lengthens each kernel by a few microseconds, so the traced kernels add up
to more than the untraced epoch where the kernels are many and small (d2l:
~41-47 against ~33-34 ms); the matmuls' times are those of kernels of 10-300 ms
an epoch, which it hardly moves. Points: d2l (`launch.py --loss=xent`),
sweep (benchmarks/compare.py's 4 losses x 16 learning rates).
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
from pathlib import Path
import sys
import tempfile
import time

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from softmax_jax import solvers  # pylint: disable=wrong-import-position
from softmax_jax import sweep  # pylint: disable=wrong-import-position
from softmax_jax.config import Config  # pylint: disable=wrong-import-position
from softmax_jax.data import datasets  # pylint: disable=wrong-import-position
from softmax_jax.solvers.base import Stack  # pylint: disable=wrong-import-position

POINTS = ("d2l", "sweep")


def point_configs(point: str, compare) -> list[Config]:
  if point == "d2l":
    return [Config(loss="xent")]
  return sweep.expand(Config(), sweep.product(
      sweep.axis("loss", compare.SWEEP_LOSSES),
      sweep.axis("lr", compare.SWEEP_LRS)))


def kernel_seconds(trace_dir: Path, epochs: int) -> dict[str, float]:
  """Seconds an epoch of each kernel in the trace (XLA's thunks on the
  host's threads: events without the Python tracer's "$" and without the
  runtime's own wrappers)."""
  path = sorted(trace_dir.rglob("*.trace.json.gz"))[-1]
  trace = json.loads(gzip.decompress(path.read_bytes()))
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  total: collections.Counter[str] = collections.Counter()
  for e in events:
    name = e.get("name", "")
    if (e.get("ph") == "X" and not name.startswith("$")
        and not any(w in name for w in ("Thunk", "Pjit", "ThreadPool",
                                        "np.asarray", "while"))):
      total[name] += e.get("dur", 0) / 1e6 / epochs
  return dict(total)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--point", choices=POINTS, default="d2l")
  parser.add_argument("--rounds", type=int, default=9)
  parser.add_argument("--traced", type=int, default=3)
  parser.add_argument("--top", type=int, default=15)
  args = parser.parse_args()
  # (Here, not at the top: compare.py defines absl flags, which clash with
  # the command line's where both are imported, as in the test suite.)
  from benchmarks import compare  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_default_matmul_precision", "highest")  # (launch's)
  peak, peak_source = compare.matmul_gflops()
  ds = datasets.load("fashion_mnist")
  configs = point_configs(args.point, compare)
  family = solvers.get(configs[0].optimizer)(Stack.of(configs, None), ds,
                                             False)
  states = family.init_states()
  family.compile(states)
  epoch_seconds = []
  for epoch in range(1, args.rounds + 3):
    start = time.perf_counter()
    states, _ = family.round(states, epoch)
    epoch_seconds.append(time.perf_counter() - start)
  seconds = float(np.median(epoch_seconds[2:]))
  with tempfile.TemporaryDirectory() as tmp:
    jax.profiler.start_trace(tmp, create_perfetto_trace=True)
    for i in range(args.traced):
      states, _ = family.round(states, args.rounds + 3 + i)
    jax.profiler.stop_trace()
    kernels = kernel_seconds(Path(tmp), args.traced)
  n, d = ds.x_train.shape
  batch = configs[0].batch_size  # (the epoch's steps drop the last part)
  flop = 4 * (n // batch * batch) * d * ds.num_classes * len(configs)
  print(f"{args.point}: {len(configs)} configuration(s); an epoch "
        f"{seconds * 1e3:.1f} ms (median of {args.rounds}), its matmuls' "
        f"{flop / 1e9:.1f} GFLOP at {flop / seconds / 1e9:.0f} GFLOP/s, "
        f"{flop / seconds / 1e9 / peak:.0%} of the peak ({peak:.0f} GFLOP/s, "
        f"{peak_source}). Traced, per epoch ({args.traced} epochs), "
        f"{sum(kernels.values()) * 1e3:.1f} ms of kernels:")
  for name, kernel in sorted(kernels.items(), key=lambda kv: -kv[1])[
      :args.top]:
    print(f"  {kernel * 1e3:8.2f} ms  {kernel / seconds:6.1%}  {name}")


if __name__ == "__main__":
  main()
