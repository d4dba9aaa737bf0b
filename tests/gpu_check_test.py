"""benchmarks/gpu_check.py, the one command a GPU machine runs, checked on
this CPU at its --quick sizes without TensorFlow Datasets or tensorboardX
(a GPU image has neither)."""

import json
import os
import subprocess
import sys

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
       "--steps=d2l,sweep,probe,path",
       "--without=tensorflow_datasets,tensorboardX"],
      cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
      env={**os.environ, "TFDS_DATA_DIR": str(data),
           "XLA_FLAGS": optimized_xla_flags()})  # (as a user runs it)
  assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
  report = json.loads((out / "gpu_check.json").read_text())
  steps = report["steps"]
  assert list(steps) == ["d2l", "sweep", "probe", "path"]
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
  table = (out / "gpu_check.md").read_text()
  for row in ("| d2l run", "| sweep of 32", "| probe epoch", "| L-BFGS path"):
    assert row in table, table
