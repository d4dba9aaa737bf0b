"""The fault suite: kills, corrupted files, full or read-only disks, races,
determinism. (Each bad input's one-line message is in launch_test.py's
BAD_INPUTS table, runner_test.py and user_data_test.py.)"""

import contextlib
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import assert_one_line_error
from conftest import ROOT
from conftest import synthetic_dataset
from conftest import write_cache
from softmax_jax.data import datasets

LAUNCH = [sys.executable, str(ROOT / "launch.py")]


def run(*args, **kw):
  return subprocess.run([*LAUNCH, *args], capture_output=True, text=True,
                        cwd=ROOT, timeout=300, check=False, **kw)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  path = tmp_path_factory.mktemp("data")
  write_cache(path, synthetic_dataset(noise=60.0))
  return path


def _outputs(workdir):
  with np.load(workdir / "params.npz") as p:
    params = {k: p[k] for k in p.files}
  return (workdir / "metrics.jsonl").read_text(), params


def _assert_same_outputs(a, b):
  metrics_a, params_a = _outputs(a)
  metrics_b, params_b = _outputs(b)
  assert metrics_a == metrics_b
  for k in params_a:
    np.testing.assert_array_equal(params_a[k], params_b[k])


# ------------------------------------------------------------ determinism


@pytest.mark.slow
@pytest.mark.parametrize("flags", [[], ["--loss=xent,huber", "--lr=0.1,0.5",
                                        "--seed=0,1"]],
                         ids=["single run", "sweep"])
def test_same_command_and_seed_give_bit_identical_results(data_dir, tmp_path,
                                                          flags):
  args = [f"--data_dir={data_dir}", "--epochs=3", "--batch_size=32",
          "--nofigures", *flags]
  for name in ("a", "b"):
    r = run(*args, f"--workdir={tmp_path / name}")
    assert r.returncode == 0, r.stderr
  _assert_same_outputs(tmp_path / "a", tmp_path / "b")


# ------------------------------------------------------------------ kills


def _kill_when(args, predicate):
  """Starts launch.py, SIGKILLs it once predicate(line of stdout) holds."""
  proc = subprocess.Popen([*LAUNCH, *args], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
  for line in proc.stdout:
    if predicate(line):
      proc.send_signal(signal.SIGKILL)
      break
  proc.wait(timeout=300)
  return proc.returncode


@pytest.mark.slow
def test_sigkill_during_training_then_resume(data_dir, tmp_path):
  args = [f"--data_dir={data_dir}", "--epochs=40", "--batch_size=32",
          "--checkpoint_every=0", "--nofigures"]
  assert run(*args, f"--workdir={tmp_path / 'whole'}").returncode == 0
  killed = _kill_when([*args, f"--workdir={tmp_path / 'run'}"],
                      lambda line: line.startswith("epoch  12"))
  assert killed == -signal.SIGKILL
  r = run(*args, f"--workdir={tmp_path / 'run'}")
  assert r.returncode == 0, r.stderr
  assert "resuming" in r.stdout
  assert "epoch   1 " not in r.stdout  # went on from a checkpoint
  _assert_same_outputs(tmp_path / "whole", tmp_path / "run")


@pytest.mark.slow
def test_sigkill_at_random_moments_including_checkpoint_writes(data_dir,
                                                               tmp_path):
  """Killed again and again, wherever it is (often inside a checkpoint write,
  which is most of an epoch's time here), the run still ends as if never
  interrupted."""
  args = [f"--data_dir={data_dir}", "--epochs=60", "--batch_size=64",
          "--loss=xent,l2", "--lr=0.2,0.5", "--checkpoint_every=0"]
  assert run(*args, f"--workdir={tmp_path / 'whole'}").returncode == 0
  rng = random.Random(0)
  workdir = tmp_path / "run"
  for _ in range(3):
    proc = subprocess.Popen([*LAUNCH, *args, f"--workdir={workdir}"],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=ROOT)
    time.sleep(rng.uniform(3.0, 6.0))  # start-up takes ~3 s
    proc.kill()
    proc.wait()
  r = run(*args, f"--workdir={workdir}")
  assert r.returncode == 0, r.stderr
  _assert_same_outputs(tmp_path / "whole", workdir)


def _prepared_fashion_mnist(tmp_path):
  """A TFDS data dir with Fashion-MNIST prepared but not yet cached as
  arrays."""
  source = datasets.default_data_dir() / "fashion_mnist"
  if not source.is_dir():
    pytest.skip("Fashion-MNIST is not prepared in the default TFDS data dir")
  shutil.copytree(source, tmp_path / "fashion_mnist")
  return tmp_path


@pytest.mark.slow
def test_sigkill_while_creating_the_data_cache_then_rebuild(tmp_path):
  """A run killed while it writes the cache leaves none or a whole one; a
  truncated one (as a full disk, or a copy cut short, leaves it) is found
  out and rebuilt, beside the killed run's temporary file. (One rebuild
  for both: each reads all of Fashion-MNIST through TensorFlow, ~9 s.)"""
  data_dir = _prepared_fashion_mnist(tmp_path)
  cache = datasets.cache_path("fashion_mnist", data_dir)
  proc = subprocess.Popen([*LAUNCH, "--mode=prepare_data",
                           f"--data_dir={data_dir}"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          cwd=ROOT)
  deadline = time.monotonic() + 120
  while time.monotonic() < deadline and not list(cache.parent.glob(".*.tmp")):
    time.sleep(0.005)  # until the cache's temporary file appears
  proc.kill()
  proc.wait()
  assert not cache.exists() or datasets._read_cache(cache, "fashion_mnist")  # pylint: disable=protected-access
  whole = datasets.cache_path("fashion_mnist", datasets.default_data_dir())
  cache.write_bytes(whole.read_bytes()[:1_000_000])
  r = run("--mode=prepare_data", f"--data_dir={data_dir}")
  assert r.returncode == 0, r.stderr
  assert "note: caching fashion_mnist" in r.stderr
  assert datasets.load("fashion_mnist", data_dir).x_train.shape == (60000, 784)


@pytest.mark.slow
def test_two_concurrent_first_runs_prepare_the_cache_once(tmp_path):
  data_dir = _prepared_fashion_mnist(tmp_path)
  procs = [subprocess.Popen([*LAUNCH, "--mode=prepare_data",
                             f"--data_dir={data_dir}"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
           for _ in range(2)]
  outputs = [p.communicate(timeout=300) for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outputs
  assert sum(err.count("note: caching fashion_mnist")
             for _, err in outputs) == 1
  assert datasets.load("fashion_mnist", data_dir).y_test.shape == (10000,)


@pytest.mark.slow
def test_a_workdir_is_used_by_one_run_at_a_time(data_dir, tmp_path):
  """A second run, or an eval, on a workdir in training is refused at once,
  naming the holder; the first run goes on undisturbed. (A lock left by a
  SIGKILLed run blocks nothing: see the kill tests, which resume there.)"""
  args = [f"--data_dir={data_dir}", "--epochs=30", "--batch_size=32",
          f"--workdir={tmp_path / 'run'}"]
  first = subprocess.Popen([*LAUNCH, *args], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, cwd=ROOT)
  try:
    for line in first.stdout:
      if line.startswith("epoch"):
        first.send_signal(signal.SIGSTOP)  # holds the workdir, paused
        break
    start = time.monotonic()
    second = run(*args)
    assert_one_line_error(second, f"is in use by a training run (pid "
                          f"{first.pid} on ")
    assert "give another --workdir" in second.stderr
    assert time.monotonic() - start < 60  # refused, not waiting
    assert_one_line_error(run("--mode=eval", f"--workdir={tmp_path / 'run'}"),
                          "is in use by a training run")
  finally:
    first.send_signal(signal.SIGCONT)
  _, err = first.communicate(timeout=300)
  assert first.returncode == 0, err
  summary = json.loads((tmp_path / "run" / "summary.json").read_text())
  assert summary["epochs_run"] == 30
  r = run("--mode=eval", f"--workdir={tmp_path / 'run'}")
  assert r.returncode == 0 and ": the same" in r.stdout, r.stderr


# ------------------------------------------------------------------ disks


@contextlib.contextmanager
def _tmpfs(path, options):
  """A small tmpfs mounted at path (root only), unmounted afterwards."""
  path.mkdir(parents=True, exist_ok=True)
  if os.geteuid() != 0:
    pytest.skip("mounting a test file system needs root")
  r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs",
                      str(path)], capture_output=True, check=False)
  if r.returncode:
    pytest.skip(f"cannot mount a tmpfs here: {r.stderr!r}")
  try:
    yield path
  finally:
    subprocess.run(["umount", str(path)], check=False)


@pytest.mark.slow
def test_read_only_workdir_is_refused_before_training(data_dir, tmp_path):
  with _tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
    r = run(f"--data_dir={data_dir}", f"--workdir={ro}")
    assert_one_line_error(r, "cannot write to --workdir")
    assert "Read-only file system" in r.stderr
    r = run(f"--data_dir={data_dir}", f"--workdir={ro / 'new'}")
    assert_one_line_error(r, "cannot create --workdir")


def test_full_disk_is_refused_before_training(data_dir, tmp_path):
  with _tmpfs(tmp_path / "small", "size=1m") as small:
    r = run(f"--data_dir={data_dir}", f"--workdir={small / 'run'}")
    assert_one_line_error(r, "MiB free; a run writes checkpoints")


@pytest.mark.parametrize("code,advice", [
    (errno.ENOSPC, "free some disk space"),
    (errno.EDQUOT, "free some disk space"),
    (errno.EACCES, "may write to"), (errno.EROFS, "may write to"),
    (errno.ENOENT, None), (errno.EIO, None)])
def test_file_errors_name_their_real_cause(code, advice):
  from softmax_jax.errors import os_error_advice  # pylint: disable=g-import-not-at-top
  text = os_error_advice(OSError(code, os.strerror(code), "/w/x"))
  assert text.startswith(os.strerror(code))
  if advice:
    assert advice in text
  else:  # the error itself, no guessed advice
    assert text == f"{os.strerror(code)}: /w/x"


def test_a_write_that_fails_for_another_reason_says_so(tmp_path):
  from softmax_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  from softmax_jax.outputs import workdir  # pylint: disable=g-import-not-at-top
  (tmp_path / "summary.json").mkdir()  # in the way of the file
  with pytest.raises(UserError) as e:
    workdir.write_summary(tmp_path, {"a": 1})
  assert "Is a directory" in str(e.value) and "disk space" not in str(e.value)


def test_labels_out_of_range_never_train_into_a_silent_nan():
  import dataclasses  # pylint: disable=g-import-not-at-top

  from softmax_jax import train  # pylint: disable=g-import-not-at-top
  from softmax_jax.config import Config  # pylint: disable=g-import-not-at-top
  from softmax_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  ds = synthetic_dataset()
  y = ds.y_train.copy()
  y[7] = 4  # 4 classes: 0..3
  with pytest.raises(UserError, match=r"y_train\[7\] = 4 is not a class"):
    train.train_configs([Config(epochs=1, batch_size=32)],
                        dataclasses.replace(ds, y_train=y))


def test_runs_started_in_the_same_second_get_their_own_workdirs(tmp_path):
  from softmax_jax.outputs import workdir  # pylint: disable=g-import-not-at-top
  paths = {workdir.default_workdir(tmp_path, "xent") for _ in range(5)}
  assert len(paths) == 5 and all(p.is_dir() for p in paths)
