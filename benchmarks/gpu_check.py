"""One command that checks and measures softmax_jax on whatever JAX backend
it finds (a GPU, a TPU, or this CPU), beside PyTorch on the same device.

  .venv/bin/python benchmarks/gpu_check.py --out=DIR            # a GPU: ~4 min
  .venv/bin/python benchmarks/gpu_check.py --out=DIR --quick    # CPU: < 3 min

Steps, in this order, each recorded as it finishes (DIR/gpu_check.json and
DIR/gpu_check.md are rewritten after every step, so a crash or a timeout
loses nothing measured before it; a step that fails is recorded with its
error and the next one runs; with --budget_s, a step still running at the
budget's end is stopped and recorded so, and the steps after it skipped):
  1. d2l: the d2l run (SGD, lr 0.1, batch 256, 10 epochs) on the real
     Fashion-MNIST, twice (determinism: the same weights, bit for bit?),
     once more with --matmul_precision=default (TF32 on an NVIDIA GPU:
     what it does to accuracy and speed), beside PyTorch's in-memory loop.
  2. smoke: `pytest -m gpu_smoke` (the accelerator smoke set: every solver,
     sweeps, checkpoints and resume, streaming, bfloat16, evaluation,
     predict), its log in DIR/smoke_tests.log.
  3. sweep: 1,024 configurations (4 losses x 16 learning rates x 16 weight
     decays) in one compiled program, model-epochs per second, beside the
     PyTorch loop training one model after another.
  4. probe: an epoch at 200,000 x 512 features x 1,000 classes (generated
     npy: data, batch 1,024), beside PyTorch.
  5. objective: one full-batch value and gradient of the path's stack, in
     a CPU's chunks of rows and all at once, of uint8 pixels and float32
     features, and an L-BFGS round of 10 iterations and a direction alone
     at each precision: where an L-BFGS iteration's time goes.
  6. path: an 8-strength L-BFGS path (tol 1e-5) on Fashion-MNIST, beside
     torch.optim.LBFGS warm-started along the same strengths; the objectives
     compared per strength; and the path again at
     --matmul_precision=default.
  7. launch: `launch.py --loss=xent` as a user runs it, in a process of its
     own: its exit code, wall time and last lines.

Data: the real Fashion-MNIST from the softmax_jax cache (TFDS_DATA_DIR), so
no TensorFlow is needed. For a machine without it, `--write_data=DIR`
writes that cache compressed (30 MB) under DIR; carry DIR and set
TFDS_DATA_DIR=DIR there. `--without=tensorflow_datasets,tensorboardX`
makes those packages unimportable here, in this process and the tests', to
check on a CPU that a run needs neither (as on a GPU image without them).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
from pathlib import Path
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# PyTorch shares the device with JAX here: JAX allocates as it goes instead
# of taking 75% of the memory at its start.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import numpy as np  # pylint: disable=wrong-import-position

TARGETS = {"d2l": 5.0, "sweep": 50.0, "probe": 1.5}  # x PyTorch, on a GPU
FULL = {"epochs": 10, "sweep_lrs": 16, "sweep_wds": 16, "sweep_epochs": 2,
        "torch_sweep_models": 8, "probe": (200_000, 512, 1_000),
        "probe_epochs": 2, "path_rows": 60_000, "strengths": 8}
QUICK = {"epochs": 1, "sweep_lrs": 4, "sweep_wds": 2, "sweep_epochs": 1,
         "torch_sweep_models": 2, "probe": (10_000, 64, 50),
         "probe_epochs": 1, "path_rows": 1_000, "strengths": 3}
BATCH, LR, PROBE_BATCH = 256, 0.1, 1024
TOL, MAX_ITERS = 1e-5, 1000


STARTED = time.monotonic()  # --budget_s counts from here, as a lease does


class OutOfTime(Exception):
  """Raised in a step still running when the check's budget ends."""


@dataclasses.dataclass
class Check:
  """The report, written after every step.

  With a deadline, a step still running at it is stopped at its next
  Python operation (SIGALRM), recorded so, and the steps after it skipped;
  one inside a single native call (a compilation, a device computation)
  that outlasts the deadline by `grace` seconds is recorded so and the
  process ends (exit 124), its report written."""
  out: Path
  facts: dict
  deadline: float = float("inf")  # time.monotonic() at the budget's end
  grace: float = 30.0
  steps: dict = dataclasses.field(default_factory=dict)

  def left(self) -> float:
    return self.deadline - time.monotonic()

  def run(self, name: str, step) -> None:
    print(f"== {name}", flush=True)
    if self.left() < 5:
      self.steps[name] = {"ok": False, "error": "skipped: out of --budget_s"}
      return self.write()
    start = time.perf_counter()
    watchdog = None
    if self.left() != float("inf"):
      signal.signal(signal.SIGALRM, _out_of_time)
      signal.alarm(max(1, int(self.left())))
      watchdog = threading.Timer(self.left() + self.grace, self._give_up,
                                 (name, start))
      watchdog.daemon = True
      watchdog.start()
    try:
      try:
        row = {"ok": True, **step()}
      finally:  # (before the handler below: no alarm can interrupt it)
        signal.alarm(0)
        if watchdog:
          watchdog.cancel()
    except Exception as e:  # pylint: disable=broad-except  (recorded, next)
      traceback.print_exc()
      row = {"ok": False, "error": f"{type(e).__name__}: {e}"[:500]}
    self.steps[name] = {**row, "step_seconds": time.perf_counter() - start}
    self.write()

  def _give_up(self, name: str, start: float) -> None:
    self.steps[name] = {
        "ok": False, "step_seconds": time.perf_counter() - start,
        "error": f"stopped: still in one native call {self.grace:g} s "
                 "after the end of --budget_s"}
    self.write()
    print(f"gpu_check: {name} outlasted --budget_s; report in {self.out}",
          file=sys.stderr, flush=True)
    os._exit(124)  # pylint: disable=protected-access  (from a thread)

  def write(self) -> None:
    data = {"facts": self.facts, "steps": self.steps}
    for name, text in (("gpu_check.json", json.dumps(data, indent=1)),
                       ("gpu_check.md", markdown(self.facts, self.steps))):
      partial = self.out / f".{name}.partial"
      partial.write_text(text)
      partial.replace(self.out / name)


# ---------------------------------------------------------------- the steps


def _out_of_time(signum, frame) -> None:
  del signum, frame
  raise OutOfTime("stopped at the end of --budget_s")


def smoke(out: Path, tmp: Path, quick: bool, without: str,
          seconds: float) -> dict:
  """pytest -m gpu_smoke in a process of its own, on a few workers, for at
  most `seconds`."""
  # (The tests compile as a user's run does, not quickly: conftest.py.)
  env = {**os.environ, **_hiding_env(without, tmp),
         "SOFTMAX_JAX_TEST_XLA_FLAGS": ""}
  # (The set is compile-bound: the H100's machine has 16 cores.)
  workers = min(8, os.cpu_count() or 1)
  log = out / "smoke_tests.log"
  # Only the files that hold smoke tests are collected (the others may
  # import what such a machine lacks, TensorFlow Datasets).
  files = sorted(str(f.relative_to(ROOT)) for f in (ROOT / "tests").glob(
      "*_test.py") if "@pytest.mark.gpu_smoke" in f.read_text())
  command = [sys.executable, "-m", "pytest", "-v", "-rfE", "-m", "gpu_smoke",
             "-p", "no:cacheprovider", "-n", str(workers), *files]
  if quick:
    command += ["-x"]
  with log.open("w") as f:
    code, _ = _run_group(command, seconds, env=env, stdout=f,
                         stderr=subprocess.STDOUT)
  text = log.read_text()
  tail = text.strip().splitlines()[-1:]
  counts = {k: int(v) for v, k in re.findall(
      r"(\d+) (passed|failed|skipped|error|errors)", tail[0] if tail else "")}
  if code == "timed out":  # no summary: the tests that finished, one a line
    counts = {k.lower(): len(re.findall(rf"\] {k} tests/", text))
              for k in ("PASSED", "FAILED", "SKIPPED", "ERROR")}
  failed = sorted(set(re.findall(r"^(?:FAILED|ERROR) (tests/\S+)", text,
                                 re.MULTILINE)
                      + re.findall(r"\] (?:FAILED|ERROR) (tests/\S+)", text)))
  return {"exit_code": code, **counts, "summary": tail[0] if tail else "",
          "failed_tests": failed}


def d2l(ds, sizes, torch_device) -> dict:
  from softmax_jax import train  # pylint: disable=g-import-not-at-top
  from softmax_jax.config import Config  # pylint: disable=g-import-not-at-top
  from softmax_jax.data import datasets  # pylint: disable=g-import-not-at-top
  runs = {}
  for name, precision in (("first", "highest"), ("again", "highest"),
                          ("tf32", "default")):
    c = Config(epochs=sizes["epochs"], matmul_precision=precision)
    result = train.train_configs([c], ds)
    run = result.runs[0]
    runs[name] = {"train_s": result.train_seconds,
                  "compile_s": result.compile_seconds,
                  "test_accuracy": run.history[-1]["test_accuracy"],
                  "w": np.asarray(run.params["w"])}
  row = {"ours_s": runs["first"]["train_s"],
         "ours_compile_s": runs["first"]["compile_s"],
         "ours_accuracy": runs["first"]["test_accuracy"],
         "deterministic": bool(np.array_equal(runs["first"]["w"],
                                              runs["again"]["w"])),
         "default_precision_s": runs["tf32"]["train_s"],
         "default_precision_accuracy": runs["tf32"]["test_accuracy"],
         "default_precision_max_weight_change": float(np.abs(
             runs["tf32"]["w"] - runs["first"]["w"]).max())}
  if torch_device:
    from benchmarks import torch_loops  # pylint: disable=g-import-not-at-top
    arrays = (datasets.to_features(ds.x_train), ds.y_train,
              datasets.to_features(ds.x_test), ds.y_test)
    # An epoch first, untimed, as ours compiles first: the device's
    # context and cuBLAS's start (on an H100, 10 epochs took 1.72 s as a
    # process's first PyTorch work, 0.63 s after other PyTorch work).
    torch_loops.sgd(*arrays, epochs=1, batch=BATCH, lr=LR,
                    device=torch_device)
    r = torch_loops.sgd(*arrays, epochs=sizes["epochs"], batch=BATCH, lr=LR,
                        device=torch_device)
    row.update(torch_s=sum(r["epoch_seconds"]), torch_accuracy=r["accuracy"])
  return row


def sweep_step(ds, sizes, torch_device) -> dict:
  from softmax_jax import sweep  # pylint: disable=g-import-not-at-top
  from softmax_jax import train  # pylint: disable=g-import-not-at-top
  from softmax_jax.config import Config  # pylint: disable=g-import-not-at-top
  from softmax_jax.data import datasets  # pylint: disable=g-import-not-at-top
  lrs = [float(f"{v:.3g}") for v in np.logspace(-2, 0.5, sizes["sweep_lrs"])]
  wds = [0.0] + [float(f"{v:.3g}") for v in
                 np.logspace(-6, -2, sizes["sweep_wds"] - 1)]
  epochs = sizes["sweep_epochs"]
  configs = sweep.expand(Config(epochs=epochs),
                         sweep.product(
                             sweep.axis("loss", ("xent", "l2", "l1", "huber")),
                             sweep.axis("lr", lrs),
                             sweep.axis("weight_decay", wds)))
  result = train.train_configs(configs, ds)
  row = {"models": len(configs), "epochs": epochs,
         "ours_s": result.train_seconds,
         "ours_compile_s": result.compile_seconds,
         "ours_model_epochs_per_s": len(configs) * epochs
                                    / result.train_seconds,
         "best_test_accuracy": max(r.history[-1]["test_accuracy"]
                                   for r in result.runs)}
  if torch_device:
    from benchmarks import torch_loops  # pylint: disable=g-import-not-at-top
    x, x_test = (datasets.to_features(a) for a in (ds.x_train, ds.x_test))
    models = sizes["torch_sweep_models"]
    seconds = sum(sum(torch_loops.sgd(x, ds.y_train, x_test, ds.y_test,
                                      epochs=1, batch=BATCH, lr=lr,
                                      device=torch_device)["epoch_seconds"])
                  for lr in lrs[:models])
    row.update(torch_models=models, torch_s=seconds,
               torch_model_epochs_per_s=models / seconds)
  return row


def probe(tmp: Path, sizes, torch_device) -> dict:
  from benchmarks import make_probe_data  # pylint: disable=g-import-not-at-top
  from softmax_jax import train  # pylint: disable=g-import-not-at-top
  from softmax_jax.config import Config  # pylint: disable=g-import-not-at-top
  from softmax_jax.data import datasets  # pylint: disable=g-import-not-at-top
  n, d, k = sizes["probe"]
  folder = tmp / "probe"
  make_probe_data.write(folder, n, 10_000, d, k, np.float32, noise=4.0)
  ds = datasets.load(f"npy:{folder}")
  epochs = sizes["probe_epochs"]
  c = Config(dataset=f"npy:{folder}", batch_size=PROBE_BATCH, epochs=epochs)
  result = train.train_configs([c], ds)
  row = {"shape": [n, d, k], "ours_s": result.train_seconds / epochs,
         "ours_compile_s": result.compile_seconds,
         "ours_accuracy": result.runs[0].history[-1]["test_accuracy"],
         "gflop_per_epoch": 4 * n * d * k / 1e9}
  if torch_device:
    from benchmarks import torch_loops  # pylint: disable=g-import-not-at-top
    # (an epoch more, the first untimed: its shapes' first cuBLAS calls)
    r = torch_loops.sgd(ds.x_train, ds.y_train, ds.x_test, ds.y_test,
                        epochs=epochs + 1, batch=PROBE_BATCH, lr=LR,
                        device=torch_device)
    row.update(torch_s=float(np.mean(r["epoch_seconds"][1:])),
               torch_accuracy=r["accuracy"])
  return row


def objective_pass(ds, sizes) -> dict:
  """Where an L-BFGS iteration's time goes: one value and gradient of the
  path's stack (its strengths, on its rows) as objective.full_batch
  computes it, in a CPU's chunks of rows (1,337 of 784 pixels) and all at
  once, of uint8 pixels and of float32 features (median of 20 calls); a
  round of 10 iterations and a direction alone, at each precision."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.flatten_util  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  from softmax_jax import model  # pylint: disable=g-import-not-at-top
  from softmax_jax.config import Config  # pylint: disable=g-import-not-at-top
  from softmax_jax.data import datasets  # pylint: disable=g-import-not-at-top
  from softmax_jax.solvers import base  # pylint: disable=g-import-not-at-top
  from softmax_jax.solvers import lbfgs  # pylint: disable=g-import-not-at-top
  from softmax_jax.solvers import objective  # pylint: disable=g-import-not-at-top
  rows = sizes["path_rows"]
  ds = dataclasses.replace(ds, x_train=ds.x_train[:rows],
                           y_train=ds.y_train[:rows])
  configs = [Config(optimizer="lbfgs", weight_decay=float(wd)) for wd in
             np.logspace(-4, -2, sizes["strengths"])]
  flat, unravel = jax.flatten_util.ravel_pytree(model.init_params(
      jax.random.key(0), ds.num_features, ds.num_classes, 0.0, (), 0))
  theta = jnp.asarray(np.random.default_rng(0).normal(
      0, 0.01, (len(configs), flat.size)), jnp.float32)
  values = jax.tree.map(jnp.asarray, base.config_values(configs))
  rows_n = jax.tree.map(jnp.asarray, objective.rows_of(ds))
  pixels = jnp.asarray(ds.x_train)
  features = jnp.asarray(datasets.to_features(ds.x_train))
  row: dict = {"rows": rows, "configs": len(configs),
               "gflop": 4 * rows * ds.num_features * ds.num_classes
                        * len(configs) / 1e9}

  def pass_of(chunk):
    return functools.partial(
        objective.full_batch, unravel=unravel,
        blocks=objective.loss_blocks(configs),
        loss_input=configs[0].loss_input, chunk=chunk)

  cpu_chunk = objective.FlatObjective.CHUNK_VALUES // ds.num_features
  for name, x, chunk, precision in (
      ("uint8_chunks", pixels, cpu_chunk, "highest"),
      ("uint8_all", pixels, rows, "highest"),
      ("float32_chunks", features, cpu_chunk, "highest"),
      ("float32_all", features, rows, "highest"),
      ("float32_all_default", features, rows, "default")):
    row[f"{name}_ms"] = _median_ms(jax.jit(pass_of(chunk)), precision, theta,
                                   x, rows_n, values)
  # An L-BFGS round (10 iterations) and a direction alone, as the solver
  # computes them (preconditioned, the memory full), at each precision.
  mean, cov = datasets.feature_covariance(ds.x_train)
  eigvals, eigvecs = np.linalg.eigh(cov)
  moments = tuple(jnp.asarray(a, jnp.float32)
                  for a in (mean, eigvecs, np.maximum(eigvals, 0)))
  m = len(configs)
  never = jnp.full(m, 1e-30), jnp.full(m, 2**30, jnp.int32)

  def solver(x, moments, values):  # (the data as arguments, not constants)
    precondition = objective.whitening_preconditioner(
        *moments, values["weight_decay"], ds.num_classes, unravel)

    def value_and_grad(theta):
      return pass_of(rows)(theta, x, rows_n, values)[:2]
    return value_and_grad, precondition

  def round_of(state, x, moments, values):
    value_and_grad, precondition = solver(x, moments, values)
    return lbfgs.run(state, value_and_grad, *never, 10, precondition)

  def direction_of(state, x, moments, values):
    return lbfgs.direction(state, solver(x, moments, values)[1])

  state = jax.jit(lambda theta, x, moments, values: round_of(lbfgs.init(
      theta, solver(x, moments, values)[0]), x, moments, values))(
          theta, pixels, moments, values)  # (its memory full)
  for precision in ("highest", "default"):
    row[f"round_{precision}_ms"] = _median_ms(
        jax.jit(round_of), precision, state, pixels, moments, values,
        repeats=5)
    row[f"direction_{precision}_ms"] = _median_ms(
        jax.jit(direction_of), precision, state, pixels, moments, values)
  return row


def _median_ms(fn, precision: str, *args, repeats: int = 20) -> float:
  """The median time of a call of fn, compiled at that matmul precision."""
  import jax  # pylint: disable=g-import-not-at-top
  with jax.default_matmul_precision(precision):
    compiled = fn.lower(*args).compile()
  jax.block_until_ready(compiled(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - start)
  return 1e3 * float(np.median(times))


def path(ds, sizes, torch_device) -> dict:
  from softmax_jax import train  # pylint: disable=g-import-not-at-top
  from softmax_jax.config import Config  # pylint: disable=g-import-not-at-top
  from softmax_jax.data import datasets  # pylint: disable=g-import-not-at-top
  rows = sizes["path_rows"]
  ds = dataclasses.replace(ds, x_train=ds.x_train[:rows],
                           y_train=ds.y_train[:rows])
  wds = [float(v) for v in np.logspace(-4, -2, sizes["strengths"])]
  row: dict = {"rows": rows, "weight_decays": wds}
  for name, precision in (("ours", "highest"), ("default_precision",
                                                "default")):
    configs = [Config(optimizer="lbfgs", weight_decay=wd, tol=TOL,
                      max_iters=MAX_ITERS, matmul_precision=precision)
               for wd in wds]
    result = train.train_configs(configs, ds)
    row[f"{name}_s"] = result.train_seconds
    row[f"{name}_compile_s"] = result.compile_seconds
    row[f"{name}_objectives"] = [r.history[-1]["objective"]
                                 for r in result.runs]
    row[f"{name}_converged"] = all(r.history[-1]["converged"]
                                   for r in result.runs)
    row[f"{name}_iterations"] = [r.history[-1]["iterations"]
                                 for r in result.runs]
  if torch_device:
    from benchmarks import torch_loops  # pylint: disable=g-import-not-at-top
    r = torch_loops.lbfgs_path(datasets.to_features(ds.x_train), ds.y_train,
                               wds, tol=TOL, max_iters=MAX_ITERS,
                               device=torch_device)
    theirs = [f["objective"] for f in r["fits"]]
    row.update(torch_s=r["seconds"], torch_objectives=theirs,
               torch_iterations=[f["iterations"] for f in r["fits"]],
               objective_difference=max(
                   (a - b) / b for a, b in zip(row["ours_objectives"], theirs,
                                               strict=True)))
  return row


def launch(tmp: Path, quick: bool, without: str, seconds: float) -> dict:
  """`launch.py --loss=xent` in a process of its own, as a user runs it."""
  env = {**os.environ, **_hiding_env(without, tmp)}
  command = [sys.executable, "launch.py", "--loss=xent",
             f"--workdir={tmp / 'launch'}"] + (["--epochs=1"] if quick else [])
  start = time.perf_counter()
  code, output = _run_group(command, seconds, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  wall = time.perf_counter() - start
  accuracy = re.findall(r"test[ _]accuracy[ =:]+([0-9.]+)", output)
  return {"exit_code": code, "wall_s": wall,
          "test_accuracy": float(accuracy[-1]) if accuracy else None,
          "last_lines": output.strip().splitlines()[-6:]}


def _run_group(command: list[str], seconds: float, **kw) -> tuple:
  """(exit code or "timed out", its output if piped): the command in a
  process group of its own, all of it (pytest's workers too) killed if it
  runs past `seconds` - 5 (at most 600 s)."""
  with subprocess.Popen(command, cwd=ROOT, text=True,
                        start_new_session=True, **kw) as process:
    try:
      output, _ = process.communicate(timeout=max(1, min(600, seconds - 5)))
      return process.returncode, output or ""
    except subprocess.TimeoutExpired:
      os.killpg(process.pid, signal.SIGKILL)
      output, _ = process.communicate()
      return "timed out", output or ""
    except BaseException:  # (OutOfTime, Ctrl-C: none of it left running)
      os.killpg(process.pid, signal.SIGKILL)
      raise


# ----------------------------------------------------------------- the report


def markdown(facts: dict, steps: dict) -> str:
  lines = [f"# softmax_jax on {facts.get('device', '?')}", "",
           ", ".join(f"{k} {v}" for k, v in facts.items()), "",
           "| step | softmax_jax | PyTorch | ratio | target | notes |",
           "|---|---|---|---|---|---|"]

  def ratio(row, key="torch_s", ours="ours_s"):
    if row.get(key) and row.get(ours):
      return f"**{row[key] / row[ours]:.2f} x**"
    return "n/a"

  for name, row in steps.items():
    target = TARGETS.get(name)
    target_text = f">= {target:g} x (GPU)" if target else ""
    if not row["ok"]:
      lines.append(f"| {name} | failed | | | {target_text} | "
                   f"{row['error'].splitlines()[0]} |")
    elif name == "smoke":
      lines.append(f"| smoke tests | {row.get('passed', 0)} passed, "
                   f"{row.get('failed', 0)} failed, {row.get('skipped', 0)}"
                   f" skipped | | | all pass | exit {row['exit_code']}, "
                   f"{row['step_seconds']:.0f} s |")
    elif name == "d2l":
      lines.append(
          f"| d2l run, {facts['epochs']} epochs | {row['ours_s']:.3f} s, "
          f"test {row['ours_accuracy']:.4f} | {_s(row, 'torch_s')} | "
          f"{ratio(row)} | {target_text} | compile "
          f"{row['ours_compile_s']:.2f} s; same weights twice: "
          f"{row['deterministic']}; matmul_precision=default: "
          f"{row['default_precision_s']:.3f} s, test "
          f"{row['default_precision_accuracy']:.4f}, weights differ by "
          f"{row['default_precision_max_weight_change']:.1e} |")
    elif name == "sweep":
      lines.append(
          f"| sweep of {row['models']}, {row['epochs']} epoch(s) | "
          f"{row['ours_model_epochs_per_s']:.0f} model-epochs/s "
          f"({row['ours_s']:.2f} s) | "
          + (f"{row['torch_model_epochs_per_s']:.1f} model-epochs/s "
             f"({row['torch_models']} models) | **"
             f"{row['ours_model_epochs_per_s'] / row['torch_model_epochs_per_s']:.1f}"  # noqa: E501
             " x** | " if "torch_s" in row else "n/a | n/a | ")
          + f"{target_text} | compile {row['ours_compile_s']:.2f} s |")
    elif name == "probe":
      n, d, k = row["shape"]
      lines.append(
          f"| probe epoch {n:,} x {d} x {k:,} | {row['ours_s']:.3f} s | "
          f"{_s(row, 'torch_s')} | {ratio(row)} | {target_text} | "
          f"{row['gflop_per_epoch'] / row['ours_s']:.0f} GFLOP/s; compile "
          f"{row['ours_compile_s']:.2f} s |")
    elif name == "path":
      lines.append(
          f"| L-BFGS path, {len(row['weight_decays'])} strengths, "
          f"{row['rows']:,} rows | {row['ours_s']:.2f} s | "
          f"{_s(row, 'torch_s')} | {ratio(row)} | same objective | "
          + ("objective vs PyTorch's: at most "
             f"{row['objective_difference']:+.1e} relative; "
             if "objective_difference" in row else "")
          + f"converged: {row['ours_converged']}; at matmul_precision="
          f"default: {row['default_precision_s']:.2f} s, converged: "
          f"{row['default_precision_converged']} |")
    elif name == "objective":
      lines.append(
          f"| one L-BFGS pass of {row['configs']} configurations x "
          f"{row['rows']:,} rows ({row['gflop']:.1f} GFLOP) | "
          + ", ".join(f"{k[:-3]} {v:.2f} ms" for k, v in row.items()
                      if k.endswith("_ms")) + " | | | | |")
    elif name == "launch":
      lines.append(
          f"| `launch.py --loss=xent`, whole process | {row['wall_s']:.1f} s"
          f", test {row['test_accuracy']} | | | exit 0 | exit "
          f"{row['exit_code']} |")
  return "\n".join(lines) + "\n"


def _s(row: dict, key: str) -> str:
  return f"{row[key]:.3f} s" if key in row else "n/a (no torch)"


# ---------------------------------------------------------------- the machine


def _hiding_env(without: str, tmp: Path) -> dict:
  """Environment for a process in which the packages named are
  unimportable (a sitecustomize.py on PYTHONPATH, in a folder under tmp)."""
  names = [n for n in without.split(",") if n]
  if not names:
    return {}
  folder = tmp / "without"
  folder.mkdir(exist_ok=True)
  (folder / "sitecustomize.py").write_text(
      "import sys\n" + "".join(f"sys.modules[{n!r}] = None\n" for n in names))
  return {"PYTHONPATH": os.pathsep.join(
      [str(folder), *filter(None, [os.environ.get("PYTHONPATH")])])}


def _facts(quick: bool) -> tuple[dict, str | None]:
  """The machine's description, and PyTorch's device (None: no torch)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jaxlib  # pylint: disable=g-import-not-at-top
  device = jax.devices()[0]
  try:  # the CUDA or TPU runtime (an attribute JAX may move)
    runtime = device.client.platform_version.split("\n")[0]
  except Exception:  # pylint: disable=broad-except
    runtime = "?"
  facts = {"device": f"{device.device_kind} ({jax.default_backend()})",
           "devices": jax.device_count(), "jax": jax.__version__,
           "jaxlib": jaxlib.__version__, "platform_version": runtime,
           "python": platform.python_version(),
           "sizes": "quick" if quick else "full",
           "epochs": (QUICK if quick else FULL)["epochs"],
           "date": time.strftime("%Y-%m-%d")}
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return {**facts, "torch": "not installed"}, None
  torch_device = "cuda" if (jax.default_backend() == "gpu"
                            and torch.cuda.is_available()) else "cpu"
  facts["torch"] = f"{torch.__version__} on {torch_device}" + (
      f" ({torch.cuda.get_device_name()}, CUDA {torch.version.cuda})"
      if torch_device == "cuda" else "")
  if torch_device == "cpu" and jax.default_backend() != "cpu":
    return {**facts, "torch": facts["torch"] + ": not the same device, "
            "not compared"}, None
  return facts, torch_device


def write_data(folder: Path) -> None:
  """The softmax_jax cache of Fashion-MNIST, compressed, under folder."""
  from softmax_jax.data import datasets  # pylint: disable=g-import-not-at-top
  source = datasets.cache_path("fashion_mnist", datasets.default_data_dir())
  if not source.exists():
    sys.exit(f"error: no Fashion-MNIST cache at {source}; run `make setup`")
  target = datasets.cache_path("fashion_mnist", folder)
  target.parent.mkdir(parents=True, exist_ok=True)
  with np.load(source) as arrays:
    np.savez_compressed(target, **arrays)
  print(f"wrote {target} ({target.stat().st_size / 2**20:.1f} MiB); there: "
        f"TFDS_DATA_DIR={folder}")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", help="folder for the report (made if absent)")
  parser.add_argument("--quick", action="store_true",
                      help="small sizes (a CPU check of the script)")
  parser.add_argument("--steps",
                      default="d2l,smoke,sweep,probe,objective,path,launch",
                      help="which steps, in order")
  parser.add_argument("--budget_s", type=float, default=0,
                      help="stop after this many seconds (0: no limit), "
                      "the report written; for a machine lent by the minute")
  parser.add_argument("--without", default="",
                      help="packages to make unimportable, comma-separated")
  parser.add_argument("--write_data", metavar="DIR",
                      help="only write the compressed Fashion-MNIST cache")
  args = parser.parse_args()
  if args.write_data:
    return write_data(Path(args.write_data))
  if not args.out:
    parser.error("--out=DIR is needed")
  for name in filter(None, args.without.split(",")):
    sys.modules[name] = None  # type: ignore[assignment]
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  sizes = QUICK if args.quick else FULL
  facts, torch_device = _facts(args.quick)
  check = Check(out, facts, deadline=STARTED + (args.budget_s
                                                or float("inf")))
  print(json.dumps(facts), flush=True)
  from softmax_jax.data import datasets  # pylint: disable=g-import-not-at-top

  @functools.cache
  def fashion_mnist():
    return datasets.load("fashion_mnist")

  with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
    steps = {"d2l": lambda: d2l(fashion_mnist(), sizes, torch_device),
             "smoke": lambda: smoke(out, Path(tmp), args.quick, args.without,
                                    check.left()),
             "sweep": lambda: sweep_step(fashion_mnist(), sizes, torch_device),
             "probe": lambda: probe(Path(tmp), sizes, torch_device),
             "objective": lambda: objective_pass(fashion_mnist(), sizes),
             "path": lambda: path(fashion_mnist(), sizes, torch_device),
             "launch": lambda: launch(Path(tmp), args.quick, args.without,
                                      check.left())}
    chosen = args.steps.split(",")
    unknown = [name for name in chosen if name not in steps]
    if unknown:
      parser.error(f"unknown step {unknown[0]!r}; choose from "
                   f"{', '.join(steps)}")
    for name in chosen:
      check.run(name, steps[name])
  print(markdown(facts, check.steps))


if __name__ == "__main__":
  main()
