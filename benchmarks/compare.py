"""softmax_jax side by side with the tools people use today, in one run.

  .venv/bin/pip install -r requirements-bench.txt
  .venv/bin/python benchmarks/compare.py                 # ~2 minutes on 2 cores
  .venv/bin/python benchmarks/compare.py --skip_sklearn  # ~1 minute (no
                                                         # quality per second
                                                         # either)

Every contender trains d2l's softmax regression on the real Fashion-MNIST
(60,000 training images scaled to [0, 1], batch 256, lr 0.1, 10 epochs,
W ~ N(0, 0.01^2)) on the same machine in the same run, --repeats times in
turn (contender after contender, round after round, so that a slower or
faster spell of a shared machine falls on all of them; the run with the
median training time is reported), so the ratios are comparable even where
the absolute times are noisy. The script also measures the machine's float32
matmul throughput and memory bandwidth, and reports how close each training
run comes to the time those allow. Then quality per second: the sweep of
experiments/best_linear.py with --refit against scikit-learn's lbfgs fit.
It prints a markdown report and writes it to --out (default
benchmarks/results.md).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from pathlib import Path
import platform
import subprocess
import sys
import tempfile
import time
from typing import cast

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from absl import app  # pylint: disable=wrong-import-position
from absl import flags  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from benchmarks import torch_loops  # pylint: disable=wrong-import-position

flags.DEFINE_string("out", str(ROOT / "benchmarks" / "results.md"),
                    "Where to write the markdown report.")
flags.DEFINE_bool("skip_sklearn", False, "Skip scikit-learn's lbfgs (~20 s) "
                  "and the quality-per-second comparison with it.")
flags.DEFINE_integer("epochs", 10, "Epochs per training run.")
flags.DEFINE_integer("repeats", 3,
                     "Runs per contender; the median is reported.")
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
  from softmax_jax.data import datasets  # pylint: disable=g-import-not-at-top
  ds = datasets.load("fashion_mnist")
  return ds, datasets.to_features(ds.x_train), datasets.to_features(ds.x_test)


# --------------------------------------------------------------- the machine


def matmul_gflops() -> tuple[float, str]:
  """The best float32 GFLOP/s of a large matmul on all cores (best of 5),
  NumPy's or XLA's, and which."""
  import jax  # pylint: disable=g-import-not-at-top
  n = 2048
  a = np.random.default_rng(0).standard_normal((n, n), np.float32)
  xla_matmul = jax.jit(lambda x: x @ x)
  a_device = jax.device_put(a)
  contenders = {"NumPy": lambda: a @ a,
                "XLA": lambda: xla_matmul(a_device).block_until_ready()}
  best = {}
  for name, fn in contenders.items():
    fn()  # warm up (and compile)
    best[name] = 2 * n**3 / min(_seconds(fn) for _ in range(5)) / 1e9
  name = max(best, key=lambda k: best[k])
  return best[name], f"{name}, {n}^3"


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


class SingleProcess:
  """`python launch.py --loss=xent` as a user runs it, the whole process timed.

  The first call also makes a run that fills a fresh compilation cache (the
  first run a user makes); each call then times a run that finds it warm,
  as every later run does.
  """

  def __init__(self, tmp: Path):
    self.tmp, self.env = tmp, {**os.environ,
                               "SOFTMAX_JAX_COMPILATION_CACHE": f"{tmp}/xla"}
    self.runs = 0
    self.cold: Row | None = None

  def _run(self) -> Row:
    self.runs += 1
    workdir = self.tmp / f"single{self.runs}"
    start = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "launch.py"), "--loss=xent",
                    f"--workdir={workdir}", f"--epochs={FLAGS.epochs}"],
                   check=True, capture_output=True, cwd=ROOT, env=self.env)
    wall = time.perf_counter() - start
    summary = json.loads((workdir / "summary.json").read_text())
    return Row("softmax_jax, single run (`launch.py --loss=xent`)",
               summary["train_seconds"], test_accuracy=summary["test_accuracy"],
               compile_seconds=summary["compile_seconds"], wall_seconds=wall,
               epochs=FLAGS.epochs)

  def __call__(self) -> Row:
    if self.cold is None:
      self.cold = self._run()
    return self._run()

  def note(self) -> str:
    assert self.cold is not None  # a run came first
    return (f"wall and compile: a run with the compilation cache warm; the "
            f"first run took {self.cold.wall_seconds:.1f} s wall with "
            f"{self.cold.compile_seconds:.2f} s of compilation (cold cache)")


def _median(rows: list[Row]) -> Row:
  return sorted(rows, key=lambda r: r.train_seconds)[len(rows) // 2]


def ours_sweep(ds) -> Row:
  """4 losses x 16 lrs in one compiled program, on all 60,000 training images
  (no validation split, so a model-epoch is the same work as the others')."""
  from softmax_jax import sweep  # pylint: disable=g-import-not-at-top
  from softmax_jax import train  # pylint: disable=g-import-not-at-top
  from softmax_jax.config import Config  # pylint: disable=g-import-not-at-top
  configs = sweep.expand(
      Config(epochs=FLAGS.epochs),
      sweep.product(sweep.axis("loss", SWEEP_LOSSES),
                    sweep.axis("lr", SWEEP_LRS)))
  result = train.train_configs(configs, ds)
  xent = next(r for r in result.runs
              if r.config.loss == "xent" and r.config.lr == 0.1)
  return Row(f"softmax_jax, sweep of {len(configs)} (4 losses x 16 lrs)",
             result.train_seconds, models=len(configs),
             test_accuracy=xent.history[-1]["test_accuracy"],
             compile_seconds=result.compile_seconds, epochs=FLAGS.epochs,
             note="test acc of its xent, lr 0.1 member")


@dataclasses.dataclass
class Quality:
  """experiments/best_linear.py with --refit, twice: cold and warm cache."""
  test_accuracy: dict  # "cold"/"warm" -> of the refit model
  val_accuracy: float  # of the sweep's best
  sweep_test_accuracy: float  # the sweep's best before the refit
  best: str
  seconds: dict  # "cold"/"warm" -> training + compilation, sweep and refit
  wall: dict  # "cold"/"warm" -> the whole process


def best_linear(tmp: Path) -> Quality:
  env = {**os.environ, "SOFTMAX_JAX_COMPILATION_CACHE": f"{tmp}/xla_quality"}
  seconds, wall, accuracy = {}, {}, {}
  for run in ("cold", "warm"):
    workdir = tmp / f"best_linear_{run}"
    start = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "launch.py"),
                    "--config=experiments/best_linear.py", "--refit",
                    f"--workdir={workdir}"],
                   check=True, capture_output=True, cwd=ROOT, env=env)
    wall[run] = time.perf_counter() - start
    summary = json.loads((workdir / "summary.json").read_text())
    refit = summary["refit"]
    accuracy[run] = refit["test_accuracy"]
    seconds[run] = (summary["train_seconds"] + summary["compile_seconds"] +
                    refit["train_seconds"] + refit["compile_seconds"])
  best = summary["best"]["config"]
  return Quality(
      test_accuracy=accuracy,
      val_accuracy=summary["best"]["val_accuracy"],
      sweep_test_accuracy=summary["test_accuracy"],
      best=(f"loss {best['loss']}, lr {best['lr']:g}, weight decay "
            f"{best['weight_decay']:g}"),
      seconds=seconds, wall=wall)


def quality_report(q: Quality, sklearn: Row) -> str:
  half = sklearn.train_seconds / 2

  def verdict(ok):
    return "met" if ok else "NOT met"

  return "\n".join([
      "",
      "Quality per second: `launch.py --config=experiments/best_linear.py "
      "--refit` (18 configurations: losses xent, l2, huber x 3 lrs x 2 "
      "weight decays, Adam, cosine schedule, standardized pixels, 20 epochs, "
      "one compiled sweep on 50,000 images; the best by validation accuracy "
      "trained again on all 60,000) against "
      "scikit-learn's lbfgs fit above. Seconds are training plus "
      "compilation of the sweep and the refit (data loading, evaluation and "
      "figures excluded, as for scikit-learn).",
      "",
      "| | seconds | test acc |",
      "|---|---|---|",
      f"| scikit-learn lbfgs, C=0.1 | {sklearn.train_seconds:.2f} | "
      f"{sklearn.test_accuracy:.4f} |",
      f"| softmax_jax sweep + refit, first run (cold compilation cache) | "
      f"{q.seconds['cold']:.2f} | {q.test_accuracy['cold']:.4f} |",
      f"| softmax_jax sweep + refit, a later run (warm cache) | "
      f"{q.seconds['warm']:.2f} | {q.test_accuracy['warm']:.4f} |",
      "",
      f"- chosen by validation: {q.best} (val acc {q.val_accuracy:.4f}; test "
      f"acc {q.sweep_test_accuracy:.4f} before the refit on all the data)",
      f"- whole process: {q.wall['cold']:.1f} s wall cold, "
      f"{q.wall['warm']:.1f} s warm (with data, evaluation, figures, "
      "checkpoints)",
      "- target: >= 0.846 test accuracy "
      f"({verdict(min(q.test_accuracy.values()) >= 0.846)}) "
      f"in less than half of scikit-learn's time, {half:.1f} s "
      f"({verdict(q.seconds['cold'] < half)} cold, "
      f"{verdict(q.seconds['warm'] < half)} warm)",
  ]) + "\n"


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
  """The fastest plain PyTorch way: tensors in memory, indexing by a
  permutation (torch_loops.sgd)."""
  import torch  # pylint: disable=g-import-not-at-top
  r = torch_loops.sgd(x, y, x_test, y_test, epochs=FLAGS.epochs, batch=BATCH,
                      lr=LR)
  return Row("PyTorch, in-memory tensors", sum(r["epoch_seconds"]),
             test_accuracy=r["accuracy"], epochs=FLAGS.epochs,
             note=f"torch {torch.__version__}, {torch.get_num_threads()} "
             "threads")


def torch_dataloader(x, y, x_test, y_test) -> Row:
  """d2l's way: nn.Linear, a shuffling DataLoader, CrossEntropyLoss,
  optim.SGD."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  net = nn.Sequential(nn.Flatten(), nn.Linear(x.shape[1], 10))
  linear = cast(nn.Linear, net[1])  # (indexing gives a plain Module)
  nn.init.normal_(linear.weight, std=0.01)
  nn.init.zeros_(linear.bias)
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


def report(rows, single, sweep_row, gflops, gflops_source, gbps, n, d,
           k) -> str:
  import jax  # pylint: disable=g-import-not-at-top
  cpu = next((line.split(":", 1)[1].strip() for line in
              Path("/proc/cpuinfo").read_text().splitlines()
              if line.startswith("model name")), platform.processor())
  lines = [
      f"Measured {datetime.date.today()} with `.venv/bin/python "
      f"benchmarks/compare.py` on {os.cpu_count()} cores of {cpu} "
      f"({platform.system()}, Python {platform.python_version()}, JAX "
      f"{jax.__version__}, NumPy {np.__version__}). Fashion-MNIST, "
      f"{n:,} training images, batch {BATCH}, lr {LR}, {single.epochs} epochs; "
      f"each row is the median of {FLAGS.repeats} runs taken in turn "
      "(scikit-learn: one fit).",
      "",
      "| contender | train s | ms / epoch | model-epochs / s | compile s | "
      "wall s | test acc | softmax_jax is faster by |",
      "|---|---|---|---|---|---|---|---|",
  ]

  def fmt(v, spec):
    return "-" if v is None else format(v, spec)

  for r in rows:
    if r is single or r is sweep_row:
      ratio = "-"
    elif r.epochs == 1:  # a whole fit: compare whole training times
      ratio = f"{r.train_seconds / single.train_seconds:.1f}x (single run)"
    else:
      ratio = (f"{r.epoch_ms / single.epoch_ms:.1f}x (single run), "
               f"{sweep_row.model_epochs_per_s / r.model_epochs_per_s:.1f}x "
               "(sweep)")
    lines.append(
        f"| {r.name} | {r.train_seconds:.2f} | "
        f"{fmt(r.epoch_ms if r.epochs > 1 else None, '.1f')} | "
        f"{fmt(r.model_epochs_per_s if r.epochs > 1 else None, '.1f')} | "
        f"{fmt(r.compile_seconds, '.2f')} | {fmt(r.wall_seconds, '.2f')} | "
        f"{fmt(r.test_accuracy, '.4f')} | {ratio} |")
  notes = [f"- {r.name}: {r.note}" for r in rows if r.note]
  single_limit = epoch_limit_seconds(n, d, k, 1, gflops, gbps)
  sweep_limit = epoch_limit_seconds(n, d, k, sweep_row.models, gflops, gbps)
  sweep_share = (100 * sweep_limit / sweep_row.models
                 * sweep_row.model_epochs_per_s)
  lines += ["", *notes, "",
            "The limit: this machine's float32 matmul reaches "
            f"{gflops:.0f} GFLOP/s ({gflops_source}) and its memory moves "
            f"{gbps:.1f} GB/s (a 256 MB copy). One model-epoch is "
            f"{4 * n * d * k / 1e9:.2f} GFLOP of matmul (forward and backward) "
            f"over {n * d / 1e6:.0f} MB of uint8 images, so it takes at least "
            f"{1e3 * single_limit:.1f} ms; a sweep of {sweep_row.models} "
            "sharing the images at least "
            f"{1e3 * sweep_limit / sweep_row.models:.1f} ms per model-epoch.",
            f"- single run: {single.epoch_ms:.1f} ms per epoch = "
            f"{100 * 1e3 * single_limit / single.epoch_ms:.0f}% of the limit "
            "(small matmuls with 10 outputs cannot use the machine fully; the "
            "rest is per-step overhead)",
            f"- sweep: {1e3 / sweep_row.model_epochs_per_s:.1f} ms per "
            f"model-epoch = {sweep_share:.0f}% "
            "of the limit"]
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  ds, x, x_test = load()
  y, y_test = ds.y_train, ds.y_test
  n, d, k = x.shape[0], x.shape[1], ds.num_classes
  print("measuring the machine ...", file=sys.stderr)
  (gflops, gflops_source), gbps = matmul_gflops(), memory_gbps()
  with tempfile.TemporaryDirectory() as tmp:
    single = SingleProcess(Path(tmp))
    contenders = [("softmax_jax single run", single),
                  ("softmax_jax sweep", lambda: ours_sweep(ds)),
                  ("PyTorch in-memory",
                   lambda: torch_in_memory(x, y, x_test, y_test)),
                  ("PyTorch DataLoader",
                   lambda: torch_dataloader(x, y, x_test, y_test)),
                  ("NumPy", lambda: numpy_loop(x, y, x_test, y_test))]
    runs = {name: [] for name, _ in contenders}
    for r in range(FLAGS.repeats):
      for name, fn in contenders:
        print(f"round {r + 1}/{FLAGS.repeats}: {name} ...", file=sys.stderr)
        runs[name].append(fn())
    rows = [_median(runs[name]) for name, _ in contenders]
    rows[0].note = single.note()
    if not FLAGS.skip_sklearn:
      print("scikit-learn ...", file=sys.stderr)
      sklearn = sklearn_lbfgs(x, y, x_test, y_test)
      rows.append(sklearn)
      print("softmax_jax best linear model (sweep + refit) ...",
            file=sys.stderr)
      quality = best_linear(Path(tmp))
  text = report(rows, rows[0], rows[1], gflops, gflops_source, gbps, n, d, k)
  if not FLAGS.skip_sklearn:
    text += quality_report(quality, sklearn)
  print(text)
  Path(FLAGS.out).write_text(text)


if __name__ == "__main__":
  app.run(main)
