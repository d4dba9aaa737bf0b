"""The package as a user gets it: the wheel, installed into a fresh virtual
environment, imported and run from outside the checkout."""

import importlib.metadata
import json
import os
from pathlib import Path
import subprocess
import sys
import tomllib
import zipfile

import numpy as np
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
import pytest

from conftest import ROOT
from conftest import synthetic_dataset


def _run(args, cwd, env=None) -> str:
  r = subprocess.run([str(a) for a in args], cwd=cwd, env=env,
                     capture_output=True, text=True, timeout=900, check=False)
  assert r.returncode == 0, f"{args}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
  return r.stdout


@pytest.mark.slow
def test_the_wheel_installs_imports_and_trains_outside_the_checkout(tmp_path):
  _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
        "--no-build-isolation", "--wheel-dir", tmp_path / "dist", ROOT],
       cwd=tmp_path)
  (wheel,) = (tmp_path / "dist").glob("softmax_jax-*.whl")
  names = zipfile.ZipFile(wheel).namelist()
  assert "softmax_jax/cli.py" in names
  assert "softmax_jax/solvers/lbfgs.py" in names  # the subpackages too
  assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)

  venv = tmp_path / "venv"
  _run([sys.executable, "-m", "venv", venv], cwd=tmp_path)
  # The declared dependencies, at the versions of the tested lock (no
  # bytecode compiled ahead: the few modules a run imports compile then).
  _run([venv / "bin" / "python", "-m", "pip", "install", "--quiet",
        "--disable-pip-version-check", "--no-compile", wheel,
        "--constraint", ROOT / "requirements.txt"], cwd=tmp_path)

  outside = tmp_path / "elsewhere"
  outside.mkdir()
  # (Without the size limit of the test run's compilation cache: it needs
  # the filelock package, which the package does not.)
  env = {k: v for k, v in os.environ.items()
         if k not in ("PYTHONPATH", "JAX_COMPILATION_CACHE_MAX_SIZE")}
  where = _run([venv / "bin" / "python", "-c",
                "import softmax_jax; print(softmax_jax.__file__)"],
               cwd=outside, env=env)
  assert Path(where.strip()).is_relative_to(venv), where  # not the checkout

  d = synthetic_dataset()
  np.savez(outside / "tiny.npz", x_train=d.x_train, y_train=d.y_train,
           x_test=d.x_test, y_test=d.y_test)
  _run([venv / "bin" / "softmax-jax", "--dataset=npz:tiny.npz",
        "--workdir=run", "--epochs=3", "--batch_size=32", "--lr=0.5"],
       cwd=outside, env=env)
  summary = json.loads((outside / "run" / "summary.json").read_text())
  assert summary["test_accuracy"] > 0.9  # separable: a model that trained


def test_the_pinned_lock_satisfies_the_declared_ranges():
  """requirements*.txt (what the tests run with) within pyproject.toml's
  ranges, for the dependencies and every extra."""
  project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
  declared = [Requirement(r) for r in project["dependencies"]]
  declared += [Requirement(r) for extra in
               project["optional-dependencies"].values() for r in extra]
  pins = {}
  for lock in ("requirements.txt", "requirements-bench.txt"):
    for line in (ROOT / lock).read_text().splitlines():
      if "==" in line and not line.startswith("#"):
        name, version = line.split("==")
        pins[canonicalize_name(name)] = version.strip()
  assert len(declared) > 15
  for r in declared:
    name = canonicalize_name(r.name)
    # Not pinned (a dependency of a pinned package): the installed version.
    version = pins.get(name) or importlib.metadata.version(name)
    assert r.specifier.contains(version, prereleases=True), (r, version)
