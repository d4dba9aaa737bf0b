"""benchmarks/gpu_check.py, the one command a GPU machine runs, checked on
this CPU at its --quick sizes without TensorFlow Datasets or tensorboardX
(a GPU image has neither)."""

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import optimized_xla_flags
from conftest import ROOT
from softmax_jax.data import datasets

pytestmark = pytest.mark.slow  # a process training ~20 small programs


def test_the_smoke_set_covers_every_solver():
  """The marker selects a few dozen tests, every solver among them."""
  r = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                      "-m", "gpu_smoke", "-p", "no:cacheprovider", "tests"],
                     cwd=ROOT, capture_output=True, text=True, timeout=300,
                     check=False)
  ids = [line for line in r.stdout.splitlines() if "::" in line]
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
  assert 30 <= len(ids) <= 80, len(ids)
  files = {i.split("::")[0].rsplit("/", 1)[-1] for i in ids}
  for covered in ("lbfgs_test.py", "sparse_test.py", "ridge_test.py",
                  "checkpoint_test.py", "feed_test.py", "sweep_test.py",
                  "evaluation_test.py", "runner_test.py", "train_test.py"):
    assert covered in files, covered


def test_quick_check_without_tfds_writes_every_step(tmp_path, fashion_mnist):
  del fashion_mnist  # (the cache the check reads must exist)
  data = tmp_path / "data"
  r = subprocess.run([sys.executable, "benchmarks/gpu_check.py",
                      f"--write_data={data}"], cwd=ROOT, capture_output=True,
                     text=True, timeout=300, check=False)
  assert r.returncode == 0, r.stderr
  assert datasets.cache_path("fashion_mnist", data).stat().st_size < 40e6
  out = tmp_path / "out"
  r = subprocess.run(
      [sys.executable, "benchmarks/gpu_check.py", f"--out={out}", "--quick",
       "--steps=d2l,sweep,probe,objective,path,launch",
       "--without=tensorflow_datasets,tensorboardX"],
      cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
      env={**os.environ, "TFDS_DATA_DIR": str(data),
           "XLA_FLAGS": optimized_xla_flags()})  # (as a user runs it)
  assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
  report = json.loads((out / "gpu_check.json").read_text())
  steps = report["steps"]
  assert list(steps) == ["d2l", "sweep", "probe", "objective", "path",
                         "launch"]
  assert all(s["ok"] for s in steps.values()), steps
  assert report["facts"]["device"].endswith("(cpu)")
  # Real training on the real data: the quick d2l run (1 epoch) learns,
  # twice the same, and a CPU's default precision is float32 too.
  d2l = steps["d2l"]
  assert d2l["ours_accuracy"] > 0.75 and d2l["deterministic"]
  assert d2l["default_precision_max_weight_change"] == 0.0
  assert steps["sweep"]["models"] == 32
  path = steps["path"]
  assert path["ours_converged"] and path["default_precision_converged"]
  if "torch_objectives" in path:  # (CI has no torch)
    assert path["objective_difference"] < 1e-5
  timings = [v for k, v in steps["objective"].items() if k.endswith("_ms")]
  assert len(timings) == 9 and all(t > 0 for t in timings)
  launch = steps["launch"]  # (a user's whole process, without TFDS either)
  assert launch["exit_code"] == 0 and launch["test_accuracy"] > 0.75, launch
  table = (out / "gpu_check.md").read_text()
  for row in ("| d2l run", "| sweep of 32", "| probe epoch", "| L-BFGS path",
              "| one L-BFGS pass", "| `launch.py --loss=xent`"):
    assert row in table, table


def test_a_budget_skips_the_steps_past_it_and_still_reports(tmp_path):
  out = tmp_path / "out"
  r = subprocess.run(
      [sys.executable, "benchmarks/gpu_check.py", f"--out={out}", "--quick",
       "--steps=d2l,path", "--budget_s=1"], cwd=ROOT, capture_output=True,
      text=True, timeout=300, check=False)
  assert r.returncode == 0, r.stderr[-3000:]
  steps = json.loads((out / "gpu_check.json").read_text())["steps"]
  assert steps == {name: {"ok": False, "error": "skipped: out of --budget_s"}
                   for name in ("d2l", "path")}
  assert "| d2l | failed |" in (out / "gpu_check.md").read_text()


_STEP_PAST_THE_BUDGET = """
import signal, sys, time
from pathlib import Path
from benchmarks import gpu_check
check = gpu_check.Check(Path(sys.argv[1]), {}, deadline=time.monotonic() + 6,
                        grace=1)
def python_step():  # stopped at its next Python operation
  time.sleep(60)
def native_step():  # as a native call: SIGALRM held off
  signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
  time.sleep(60)
check.run(sys.argv[2], {"python": python_step, "native": native_step}[
    sys.argv[2]])
check.run("next", lambda: {})
"""


@pytest.mark.parametrize("kind", ["python", "native"])
def test_a_step_past_the_budget_is_stopped_and_recorded(tmp_path, kind):
  """A step running at the budget's end is stopped (Python code at once,
  a native call `grace` seconds later, ending the process), recorded, and
  the steps after it skipped; the report is written either way."""
  start = time.monotonic()
  r = subprocess.run([sys.executable, "-c", _STEP_PAST_THE_BUDGET,
                      str(tmp_path), kind], cwd=ROOT, capture_output=True,
                     text=True, timeout=120, check=False)
  assert time.monotonic() - start < 30, "not stopped at the budget"
  steps = json.loads((tmp_path / "gpu_check.json").read_text())["steps"]
  if kind == "python":
    assert r.returncode == 0, r.stderr[-2000:]
    assert steps[kind]["error"].startswith("OutOfTime"), steps
    assert steps["next"]["error"] == "skipped: out of --budget_s"
  else:
    assert r.returncode == 124, r.stderr[-2000:]
    assert "still in one native call" in steps[kind]["error"], steps
    assert "next" not in steps
