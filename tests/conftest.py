"""Shared test helpers: tiny generated data sets, and the real one when
present."""

import os
from pathlib import Path
import shutil
import socket
import sys
import tempfile

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from softmax_jax.data import datasets  # noqa: E402  needs sys.path above  # pylint: disable=g-import-not-at-top,wrong-import-position

# Where this test run keeps its compiled programs: launch.py reads the first
# (cli._use_compilation_cache), JAX itself the second.
_CACHE_DIRS = ("SOFTMAX_JAX_COMPILATION_CACHE", "JAX_COMPILATION_CACHE_DIR")
# The programs that take over 0.2 s to compile are kept (L-BFGS's rounds,
# the epochs, the evaluations: 0.3-2 s each), not the thousands of single
# operations a test runs eagerly (~30 ms each). A size limit turns on JAX's
# file lock (the filelock package): without it, a process may read an
# entry that another is still writing, and warn on stderr that it is not
# readable. But each write under that limit then lists the whole cache and
# reads every entry's access time (jax._src.lru_cache._evict_if_needed):
# with every eager operation kept (min. 0 s), the writes grew with the
# cache and `make test` took 596 s instead of 541 s (2026-12-05).
_CACHE_SETTINGS = {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": 0.2,
                   "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": 0,
                   "JAX_COMPILATION_CACHE_MAX_SIZE": 64 << 30}

# The tests' processes compile XLA's programs at LLVM's lowest optimization
# level, without its expensive passes: the same HLO programs, compiled ~30 %
# faster and run a little slower, which suits programs that the tests
# compile far more often than they run. `make test` took 418 s instead of
# 462 s (2026-12-05, in the checkout with a per-test timer). The results
# agree to float32 rounding, not bit for bit (LLVM's optimizing passes
# change how some float operations round): 2 epochs of the d2l run, 1e-7
# apart in the weights; an L-BFGS fit on 5,000 images, 1.4e-5 in its
# coefficients (each stops once its gradient is below tol). The tests that
# compare runs bit for bit compare runs compiled alike. The tutorial
# notebook and benchmarks/gpu_check.py run as a user runs them
# (optimized_xla_flags), and a test run with SOFTMAX_JAX_TEST_XLA_FLAGS set
# to "" compiles as usual throughout (gpu_check.py's smoke step: on an
# accelerator, the programs a user's run gets).
QUICK_COMPILE = os.environ.get(
    "SOFTMAX_JAX_TEST_XLA_FLAGS",
    "--xla_backend_optimization_level=0 "
    "--xla_llvm_disable_expensive_passes=true")


def optimized_xla_flags() -> str:
  """XLA_FLAGS without QUICK_COMPILE: for a process that trains for real
  (the tutorial notebook's kernel, benchmarks/gpu_check.py)."""
  return os.environ.get("XLA_FLAGS", "").replace(QUICK_COMPILE, "").strip()


def pytest_configure(config):
  config.addinivalue_line(
      "markers", "slow: over ~3 s of CPU each (measured in a `make test` "
      "run: several processes, simulated devices, real-data fits, "
      "scikit-learn's reference fits); `make test` and CI run them, "
      "`make test-fast` skips them")
  config.addinivalue_line(
      "markers", "gpu_smoke: the accelerator smoke set (every solver, "
      "sweeps, checkpoints and resume, streaming, bfloat16, evaluation, "
      "predict; no TensorFlow needed): `pytest -m gpu_smoke`, run by "
      "benchmarks/gpu_check.py on whatever backend JAX finds")
  if not hasattr(config, "workerinput"):  # not a pytest-xdist worker
    _fresh_compilation_cache(config)
    if QUICK_COMPILE not in os.environ.get("XLA_FLAGS", ""):  # (workers
      os.environ["XLA_FLAGS"] = (  # and processes inherit it)
          f"{os.environ.get('XLA_FLAGS', '')} {QUICK_COMPILE}".strip())
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_compilation_cache_dir",
                    os.environ["JAX_COMPILATION_CACHE_DIR"])
  for name, value in _CACHE_SETTINGS.items():  # this process imported JAX
    jax.config.update(name.lower(), type(value)(os.environ[name]))  # first


# `make test` runs the tests in one pytest-xdist worker per core
# (--dist=loadfile): each test file in one worker, which builds its module
# fixtures once (launch_test's 34 bad runs, runner_test's trained run,
# devices_test's trained runs). A worker that is done takes the next
# file, in this order: the longest first (each file's seconds in a
# `make test` run, measured 2026-12-05 with a per-test timer), so that the
# workers end together on short files. (pytest-xdist 3.8's loadgroup, which
# could keep the gloo pairs and the 8-device runs apart, groups nothing
# under pytest 9, whose node ids it cannot suffix.)
_LONGEST_FIRST = ("faults_test.py", "estimator_test.py", "hosts_test.py",
                  "train_test.py", "devices_test.py", "sparse_test.py",
                  "runner_test.py", "launch_test.py", "tutorial_test.py",
                  "lbfgs_test.py", "package_test.py", "gpu_check_test.py",
                  "checkpoint_test.py", "sweep_test.py",
                  "estimator_checks_test.py", "npy_test.py",
                  "losses_test.py", "data_test.py", "calibration_test.py",
                  "evaluation_test.py", "model_test.py")


def pytest_collection_modifyitems(items):
  """The files in _LONGEST_FIRST first, in its order; then the others."""
  def rank(item):
    name = item.path.name
    return (_LONGEST_FIRST.index(name) if name in _LONGEST_FIRST
            else len(_LONGEST_FIRST))

  items.sort(key=rank)


def _fresh_compilation_cache(config):
  """One persistent compilation cache for the whole run, empty at its start
  and removed at its end: its workers (they inherit the environment), the
  tests in them and every process they start compile a program once, and
  nothing compiled by another run or version is read."""
  path = tempfile.mkdtemp(prefix="softmax_jax_test_xla_")
  os.environ.update({name: path for name in _CACHE_DIRS},
                    **{name: str(v) for name, v in _CACHE_SETTINGS.items()})
  config.add_cleanup(lambda: shutil.rmtree(path, ignore_errors=True))


def synthetic_dataset(n_train=512, n_test=256, num_features=16, num_classes=4,
                      seed=0, name="synthetic", noise=20.0) -> datasets.Dataset:
  """uint8 images: one prototype per class plus noise (separable at noise
  20)."""
  rng = np.random.default_rng(seed)
  prototypes = rng.integers(0, 256, (num_classes, num_features))

  def sample(n):
    y = rng.integers(0, num_classes, n).astype(np.int32)
    x = prototypes[y] + rng.normal(0, noise, (n, num_features))
    return np.clip(x, 0, 255).astype(np.uint8), y

  x_train, y_train = sample(n_train)
  x_test, y_test = sample(n_test)
  side = int(num_features ** 0.5)
  return datasets.Dataset(name=name, x_train=x_train, y_train=y_train,
                          x_test=x_test, y_test=y_test,
                          class_names=tuple(f"class{k}"
                                            for k in range(num_classes)),
                      pixels="0-255",
                      image_shape=(side, side, 1) if side * side == num_features
                      else None)


def write_cache(data_dir, dataset: datasets.Dataset, name="fashion_mnist"):
  """Puts `dataset` where datasets.load(name, data_dir) finds its cache."""
  path = datasets.cache_path(name, data_dir)
  path.parent.mkdir(parents=True, exist_ok=True)
  datasets._write_cache(path, dataset)  # pylint: disable=protected-access
  return path


def assert_one_line_error(r, expected: str, code: int = 2) -> None:
  """A finished launch.py process that failed as promised: exit code, one
  line on stderr containing `expected`, no traceback anywhere."""
  lines = [line for line in r.stderr.splitlines() if line.strip()]
  assert r.returncode == code, (r.returncode, r.stderr)
  assert len(lines) == 1, r.stderr
  assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
  assert "Traceback" not in r.stdout + r.stderr


def free_port() -> int:
  """A TCP port on the loopback that nothing listens on (for a coordinator)."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="session")
def fashion_mnist():
  """The real Fashion-MNIST, when `make setup` (or a run) has cached it."""
  path = datasets.cache_path("fashion_mnist", datasets.default_data_dir())
  if not path.exists():
    pytest.skip(f"real Fashion-MNIST not cached at {path}; run `make setup`")
  return datasets.load("fashion_mnist")
