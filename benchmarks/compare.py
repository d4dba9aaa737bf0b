"""softmax_jax side by side with the tools people use today, in one run.

  .venv/bin/pip install -r requirements-bench.txt
  .venv/bin/python benchmarks/compare.py                  # ~3 minutes on 2 cores
  .venv/bin/python benchmarks/compare.py --skip_sklearn   # ~2 minutes

Every contender trains d2l's softmax regression on the real Fashion-MNIST
(60,000 training images scaled to [0, 1], batch 256, lr 0.1, 10 epochs,
W ~ N(0, 0.01^2)) on the same machine in the same run, --repeats times (the
run with the median training time is reported), so the ratios are comparable
even where the absolute times are noisy. The script also measures
the machine's float32 matmul throughput and memory bandwidth, and reports how
close each training run comes to the time those allow. It prints a markdown
report and writes it to --out (default benchmarks/results.md).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from absl import app  # pylint: disable=wrong-import-position
from absl import flags  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

flags.DEFINE_string("out", str(ROOT / "benchmarks" / "results.md"),
                    "Where to write the markdown report.")
flags.DEFINE_bool("skip_sklearn", False, "Skip scikit-learn's lbfgs (~60 s).")
flags.DEFINE_integer("epochs", 10, "Epochs per training run.")
flags.DEFINE_integer("repeats", 3, "Runs per contender; the median is reported.")
FLAGS = flags.FLAGS

BATCH, LR = 256, 0.1
SWEEP_LOSSES = ("xent", "l2", "l1", "huber")
SWEEP_LRS = tuple(float(f"{lr:.3g}") for lr in np.logspace(-2, 1, 16))


@dataclasses.dataclass
class Row:
  name: str
  train_seconds: float  # training only: no compilation, no data loading
  models: int = 1  # models trained together
  test_accuracy: float | None = None
  compile_seconds: float | None = None
  wall_seconds: float | None = None  # the whole process, when measured
  epochs: int = 10
  note: str = ""

  @property
  def epoch_ms(self) -> float:
    return 1e3 * self.train_seconds / self.epochs

  @property
  def model_epochs_per_s(self) -> float:
    return self.models * self.epochs / self.train_seconds


def load():
  from softmax_jax import data  # pylint: disable=g-import-not-at-top
  ds = data.load("fashion_mnist")
  return ds, data.to_features(ds.x_train), data.to_features(ds.x_test)


# --------------------------------------------------------------- the machine


def matmul_gflops() -> float:
  """Best-of-5 float32 GFLOP/s of a large NumPy matmul on all cores."""
  a = np.random.default_rng(0).standard_normal((2048, 2048), np.float32)
  a @ a  # warm up
  best = min(_seconds(lambda: a @ a) for _ in range(5))
  return 2 * 2048**3 / best / 1e9


def memory_gbps() -> float:
  """Best-of-5 GB/s of reading and writing a 256 MB array (bytes moved / s)."""
  src = np.ones(64 * 2**20, np.float32)
  dst = np.empty_like(src)
  np.copyto(dst, src)
  best = min(_seconds(lambda: np.copyto(dst, src)) for _ in range(5))
  return 2 * src.nbytes / best / 1e9


def _seconds(fn) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def epoch_limit_seconds(n, d, k, models, gflops, gbps) -> float:
  """The least time one epoch can take here: its matmuls at the measured peak,
  or reading the uint8 images once at the measured bandwidth, whichever is
  larger. Forward (x W) and backward (x^T g) are 2 n d k FLOPs each per model;
  the images are shared by all models of a sweep."""
  return max(4 * n * d * k * models / (gflops * 1e9), n * d / (gbps * 1e9))


# --------------------------------------------------------------- softmax_jax


def ours_single_process() -> Row:
  """`python launch.py --loss=xent` as a user runs it, the whole process timed.

  The first run fills the compilation cache; the later ones are what users
  see on every run after their first.
  """
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    env = {**os.environ, "SOFTMAX_JAX_COMPILATION_CACHE": f"{tmp}/xla"}
    for i in range(FLAGS.repeats + 1):
      start = time.perf_counter()
      subprocess.run([sys.executable, str(ROOT / "launch.py"), "--loss=xent",
                      f"--workdir={tmp}/run{i}", f"--epochs={FLAGS.epochs}"],
                     check=True, capture_output=True, cwd=ROOT, env=env)
      wall = time.perf_counter() - start
      summary = json.loads(Path(f"{tmp}/run{i}/summary.json").read_text())
      rows.append(Row("softmax_jax, single run (`launch.py --loss=xent`)",
                      summary["train_seconds"],
                      test_accuracy=summary["test_accuracy"],
                      compile_seconds=summary["compile_seconds"],
                      wall_seconds=wall, epochs=FLAGS.epochs))
  first, *later = rows
  row = _median(later)
  row.note = (f"wall and compile: a later run; the first took {first.wall_seconds:.1f} s "
              f"wall with {first.compile_seconds:.2f} s of compilation "
              "(cold compilation cache)")
  return row


def _median(rows: list[Row]) -> Row:
  return sorted(rows, key=lambda r: r.train_seconds)[len(rows) // 2]


def repeated(fn, *args) -> Row:
  return _median([fn(*args) for _ in range(FLAGS.repeats)])


def ours_sweep(ds) -> Row:
  """4 losses x 16 lrs in one compiled program, on all 60,000 training images
  (no validation split, so a model-epoch is the same work as the others')."""
  from softmax_jax import sweep, train  # pylint: disable=g-import-not-at-top
  from softmax_jax.config import Config  # pylint: disable=g-import-not-at-top
  configs = sweep.expand(
      Config(epochs=FLAGS.epochs),
      sweep.product(sweep.axis("loss", SWEEP_LOSSES), sweep.axis("lr", SWEEP_LRS)))
  result = train.train_configs(configs, ds)
  xent = next(r for r in result.runs
              if r.config.loss == "xent" and r.config.lr == 0.1)
  return Row(f"softmax_jax, sweep of {len(configs)} (4 losses x 16 lrs)",
             result.train_seconds, models=len(configs),
             test_accuracy=xent.history[-1]["test_accuracy"],
             compile_seconds=result.compile_seconds, epochs=FLAGS.epochs,
             note="test acc of its xent, lr 0.1 member")


# ------------------------------------------------------------- the others


def numpy_loop(x, y, x_test, y_test) -> Row:
  """The textbook loop in NumPy: forward, softmax, gradient p - y, SGD."""
  rng = np.random.default_rng(0)
  w = rng.normal(0, 0.01, (x.shape[1], 10)).astype(np.float32)
  b = np.zeros(10, np.float32)
  eye = np.eye(10, dtype=np.float32)
  start = time.perf_counter()
  for _ in range(FLAGS.epochs):
    order = rng.permutation(len(x))
    for i in range(0, len(x), BATCH):
      idx = order[i:i + BATCH]
      xb = x[idx]
      o = xb @ w + b
      o -= o.max(1, keepdims=True)
      p = np.exp(o)
      p /= p.sum(1, keepdims=True)
      g = (p - eye[y[idx]]) / len(idx)
      w -= LR * (xb.T @ g)
      b -= LR * g.sum(0)
  seconds = time.perf_counter() - start
  acc = float(np.mean(np.argmax(x_test @ w + b, 1) == y_test))
  return Row("NumPy minibatch loop", seconds, test_accuracy=acc,
             epochs=FLAGS.epochs)


def torch_in_memory(x, y, x_test, y_test) -> Row:
  """The fastest plain PyTorch way: tensors in memory, indexing by a permutation."""
  import torch  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  x, y = torch.from_numpy(x), torch.from_numpy(y).long()
  w = (torch.randn(x.shape[1], 10) * 0.01).requires_grad_()
  b = torch.zeros(10, requires_grad=True)
  start = time.perf_counter()
  for _ in range(FLAGS.epochs):
    order = torch.randperm(len(x))
    for i in range(0, len(x), BATCH):
      idx = order[i:i + BATCH]
      loss = torch.nn.functional.cross_entropy(x[idx] @ w + b, y[idx])
      loss.backward()
      with torch.no_grad():
        w -= LR * w.grad
        b -= LR * b.grad
        w.grad.zero_()
        b.grad.zero_()
  seconds = time.perf_counter() - start
  with torch.no_grad():
    acc = float((torch.from_numpy(x_test) @ w + b).argmax(1)
                .eq(torch.from_numpy(y_test).long()).float().mean())
  return Row("PyTorch, in-memory tensors", seconds, test_accuracy=acc,
             epochs=FLAGS.epochs, note=f"torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads")


def torch_dataloader(x, y, x_test, y_test) -> Row:
  """d2l's way: nn.Linear, a shuffling DataLoader, CrossEntropyLoss, optim.SGD."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  net = nn.Sequential(nn.Flatten(), nn.Linear(x.shape[1], 10))
  nn.init.normal_(net[1].weight, std=0.01)
  nn.init.zeros_(net[1].bias)
  loader = torch.utils.data.DataLoader(
      torch.utils.data.TensorDataset(torch.from_numpy(x),
                                     torch.from_numpy(y).long()),
      batch_size=BATCH, shuffle=True)
  loss_fn = nn.CrossEntropyLoss()
  optimizer = torch.optim.SGD(net.parameters(), lr=LR)
  start = time.perf_counter()
  for _ in range(FLAGS.epochs):
    for xb, yb in loader:
      optimizer.zero_grad()
      loss_fn(net(xb), yb).backward()
      optimizer.step()
  seconds = time.perf_counter() - start
  with torch.no_grad():
    acc = float(net(torch.from_numpy(x_test)).argmax(1)
                .eq(torch.from_numpy(y_test).long()).float().mean())
  return Row("PyTorch, d2l-style DataLoader", seconds, test_accuracy=acc,
             epochs=FLAGS.epochs)


def sklearn_lbfgs(x, y, x_test, y_test) -> Row:
  import sklearn  # pylint: disable=g-import-not-at-top
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  model = LogisticRegression(C=0.1, max_iter=200)  # lbfgs, multinomial
  start = time.perf_counter()
  model.fit(x, y)
  seconds = time.perf_counter() - start
  return Row("scikit-learn LogisticRegression (lbfgs, C=0.1, 200 iterations)",
             seconds, test_accuracy=float(model.score(x_test, y_test)),
             epochs=1, note=f"scikit-learn {sklearn.__version__}; time is the "
             "whole fit, not per epoch")


# ----------------------------------------------------------------- report


def report(rows, single, sweep_row, gflops, gbps, n, d, k) -> str:
  import jax  # pylint: disable=g-import-not-at-top
  cpu = next((l.split(":", 1)[1].strip() for l in
              Path("/proc/cpuinfo").read_text().splitlines()
              if l.startswith("model name")), platform.processor())
  lines = [
      f"Measured {datetime.date.today()} with `.venv/bin/python "
      f"benchmarks/compare.py` on {os.cpu_count()} cores of {cpu} "
      f"({platform.system()}, Python {platform.python_version()}, JAX "
      f"{jax.__version__}, NumPy {np.__version__}). Fashion-MNIST, "
      f"{n:,} training images, batch {BATCH}, lr {LR}, {single.epochs} epochs; "
      f"each row is the median of {FLAGS.repeats} runs (scikit-learn: one fit).",
      "",
      "| contender | train s | ms / epoch | model-epochs / s | compile s | "
      "wall s | test acc | softmax_jax is faster by |",
      "|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    if r is single or r is sweep_row:
      ratio = "-"
    elif r.epochs == 1:  # a whole fit: compare whole training times
      ratio = f"{r.train_seconds / single.train_seconds:.1f}x (single run)"
    else:
      ratio = (f"{r.epoch_ms / single.epoch_ms:.1f}x (single run), "
               f"{sweep_row.model_epochs_per_s / r.model_epochs_per_s:.1f}x (sweep)")
    fmt = lambda v, spec: "-" if v is None else format(v, spec)
    lines.append(
        f"| {r.name} | {r.train_seconds:.2f} | "
        f"{fmt(r.epoch_ms if r.epochs > 1 else None, '.1f')} | "
        f"{fmt(r.model_epochs_per_s if r.epochs > 1 else None, '.1f')} | "
        f"{fmt(r.compile_seconds, '.2f')} | {fmt(r.wall_seconds, '.2f')} | "
        f"{fmt(r.test_accuracy, '.4f')} | {ratio} |")
  notes = [f"- {r.name}: {r.note}" for r in rows if r.note]
  single_limit = epoch_limit_seconds(n, d, k, 1, gflops, gbps)
  sweep_limit = epoch_limit_seconds(n, d, k, sweep_row.models, gflops, gbps)
  lines += ["", *notes, "",
            "The limit: this machine's float32 matmul reaches "
            f"{gflops:.0f} GFLOP/s (NumPy, 2048^3) and its memory moves "
            f"{gbps:.1f} GB/s (a 256 MB copy). One model-epoch is "
            f"{4 * n * d * k / 1e9:.2f} GFLOP of matmul (forward and backward) "
            f"over {n * d / 1e6:.0f} MB of uint8 images, so it takes at least "
            f"{1e3 * single_limit:.1f} ms; a sweep of {sweep_row.models} sharing "
            f"the images at least {1e3 * sweep_limit / sweep_row.models:.1f} ms "
            "per model-epoch.",
            f"- single run: {single.epoch_ms:.1f} ms per epoch = "
            f"{100 * 1e3 * single_limit / single.epoch_ms:.0f}% of the limit "
            "(small matmuls with 10 outputs cannot use the machine fully; the "
            "rest is per-step overhead)",
            f"- sweep: {1e3 / sweep_row.model_epochs_per_s:.1f} ms per "
            f"model-epoch = {100 * sweep_limit / sweep_row.models * sweep_row.model_epochs_per_s:.0f}% "
            "of the limit"]
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  ds, x, x_test = load()
  y, y_test = ds.y_train, ds.y_test
  n, d, k = x.shape[0], x.shape[1], ds.num_classes
  print("measuring the machine ...", file=sys.stderr)
  gflops, gbps = matmul_gflops(), memory_gbps()
  print("softmax_jax single run ...", file=sys.stderr)
  single = ours_single_process()
  print("softmax_jax sweep ...", file=sys.stderr)
  sweep_row = repeated(ours_sweep, ds)
  rows = [single, sweep_row]
  for name, fn in [("PyTorch in-memory", torch_in_memory),
                   ("PyTorch DataLoader", torch_dataloader),
                   ("NumPy", numpy_loop)] + (
                       [] if FLAGS.skip_sklearn else
                       [("scikit-learn", sklearn_lbfgs)]):
    print(f"{name} ...", file=sys.stderr)
    rows.append(repeated(fn, x, y, x_test, y_test) if fn is not sklearn_lbfgs
                else fn(x, y, x_test, y_test))
  text = report(rows, single, sweep_row, gflops, gbps, n, d, k)
  print(text)
  Path(FLAGS.out).write_text(text)


if __name__ == "__main__":
  app.run(main)
