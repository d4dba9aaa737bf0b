"""Two processes on the loopback (gloo), as on two hosts: a lost process, a
stop request on one of them, and a coordinator that never comes. Each
process runs under its supervisor, as a user starts it."""

import concurrent.futures
import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import assert_one_line_error
from conftest import free_port
from conftest import ROOT
from conftest import synthetic_dataset
from conftest import write_cache

pytestmark = pytest.mark.slow  # gloo processes, and a heartbeat timeout

HEARTBEAT = 10  # seconds: a lost process is noticed within this
# Long enough to kill a process mid-run: ~0.3 s an epoch with 2 processes
# and a checkpoint every epoch.
FLAGS = ["--batch_size=32", "--epochs=30", "--checkpoint_every=0",
         f"--heartbeat_timeout={HEARTBEAT}"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  path = tmp_path_factory.mktemp("data")
  write_cache(path, synthetic_dataset(noise=90.0))
  return path


def start(data_dir, workdir, *args, port=None, ids=(0, 1), only=None):
  """The run's processes `ids`, each with args and its own `only[id]`
  (drawing no figures: these tests are about the processes)."""
  port = port or free_port()
  return [subprocess.Popen(
      [sys.executable, str(ROOT / "launch.py"), "--nofigures",
       f"--data_dir={data_dir}",
       f"--workdir={workdir}", f"--coordinator_address=127.0.0.1:{port}",
       "--num_processes=2", f"--process_id={i}", *args,
       *(only or {}).get(i, ())],
      cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
          for i in ids]


def wait_for_epoch(workdir, epoch, procs, timeout=120):
  """Until process 0 has logged `epoch` (its metrics.jsonl)."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    path = workdir / "metrics.jsonl"
    if path.exists() and any(json.loads(line)["epoch"] >= epoch
                             for line in path.read_text().splitlines()):
      return
    assert all(p.poll() is None for p in procs), "a process ended early"
    time.sleep(0.05)
  raise AssertionError(f"epoch {epoch} not reached in {timeout} s")


def test_a_lost_process_stops_the_other_and_both_resume_bit_identical(
    data_dir, tmp_path):
  whole = tmp_path / "whole"
  assert [r.returncode for r in run_all(start(data_dir, whole, *FLAGS))] == [
      0, 0]

  workdir = tmp_path / "run"
  procs = start(data_dir, workdir, *FLAGS)
  wait_for_epoch(workdir, 5, procs)
  procs[1].send_signal(signal.SIGKILL)  # the command on "host 1" dies
  killed_at = time.monotonic()
  survivor = run_all(procs[:1])[0]
  assert time.monotonic() - killed_at < HEARTBEAT + 10
  assert_one_line_error(survivor, "process 1 of the run was lost", code=1)
  assert "start the same command on every host again" in survivor.stderr
  assert "Check failure" not in survivor.stdout + survivor.stderr
  # The runtime's own account is kept in the workdir.
  assert "stopped sending heartbeats" in (
      workdir / "logs" / "process_0.log").read_text()
  trained = len((workdir / "metrics.jsonl").read_text().splitlines())
  assert trained < 30  # stopped mid-run

  again = run_all(start(data_dir, workdir, *FLAGS))
  assert [r.returncode for r in again] == [0, 0], again
  assert "resuming from the workdir's checkpoints" in again[0].stdout
  with np.load(whole / "params.npz") as a, \
       np.load(workdir / "params.npz") as b:
    for key in a.files:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)
  summaries = [json.loads((w / "summary.json").read_text())
               for w in (whole, workdir)]
  assert summaries[0]["test_accuracy"] == summaries[1]["test_accuracy"]
  # One process restores what two wrote.
  r = subprocess.run([sys.executable, str(ROOT / "launch.py"), "--mode=eval",
                      "--nofigures", f"--workdir={workdir}"], cwd=ROOT,
                     capture_output=True, text=True, timeout=300, check=False)
  assert r.returncode == 0 and ": the same" in r.stdout, r.stderr


def test_sigterm_to_one_process_stops_both_after_a_checkpoint(data_dir,
                                                              tmp_path):
  workdir = tmp_path / "run"
  procs = start(data_dir, workdir, *FLAGS)
  wait_for_epoch(workdir, 3, procs)
  procs[1].send_signal(signal.SIGTERM)
  results = run_all(procs)
  assert [r.returncode for r in results] == [130, 130], results
  stopped = [r.stderr.strip().splitlines()[-1] for r in results]
  assert stopped[0] == stopped[1]  # the same epoch on both
  assert "run the same command on every host again to resume" in stopped[0]
  epoch = int(stopped[0].split("stopped after epoch ")[1].split(",")[0])
  assert str(epoch) in os.listdir(workdir / "checkpoints" / "group_0")
  assert "Traceback" not in "".join(r.stderr for r in results)


def test_an_error_on_one_process_is_shown_by_the_other(data_dir, tmp_path):
  """Process 1 alone cannot load its data (a host without the file): it
  says so and ends at once; process 0, waiting for it, ends within the
  heartbeat timeout quoting it, instead of waiting out JAX's shutdown."""
  started = time.monotonic()
  results = run_all(start(data_dir, tmp_path / "run", *FLAGS,
                          only={1: [f"--dataset=npz:{tmp_path / 'none.npz'}",
                                   "--data_dir="]}))
  assert time.monotonic() - started < HEARTBEAT + 30
  assert_one_line_error(results[1], "none.npz: no such file", code=2)
  said = results[1].stderr.strip()
  assert_one_line_error(results[0], f'process 1 of the run ended first, '
                        f'saying "{said}"; so process 0 stopped', code=1)
  assert "Check failure" not in results[0].stdout + results[0].stderr


def _late_host(data_dir, workdir):
  """Process 1 paused for 40 s (as a slow host, e.g. validating a large data
  set) right after it joined, then let go; the run's results."""
  procs = start(data_dir, workdir, "--batch_size=32", "--epochs=2",
                "--heartbeat_timeout=120")  # a paused process sends none
  try:
    log = workdir / "logs" / "process_1.log"
    deadline = time.monotonic() + 120
    while not (log.exists() and "joined the run" in log.read_text()):
      assert time.monotonic() < deadline and procs[1].poll() is None
      time.sleep(0.01)
    # The trainer, under process 1's supervisor.
    (trainer,) = map(int, Path(f"/proc/{procs[1].pid}/task/{procs[1].pid}/"
                               "children").read_text().split())
    os.kill(trainer, signal.SIGSTOP)
    time.sleep(40)
    waiting = procs[0].poll() is None
    os.kill(trainer, signal.SIGCONT)
    return waiting, run_all(procs)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()


@pytest.fixture(scope="module", autouse=True)
def late_host(request, data_dir, tmp_path_factory):
  """_late_host, started with the module when its test is to run: its 40 s
  pause passes while the other tests run."""
  late = test_a_host_that_comes_late_to_the_first_collective_is_waited_for
  if not any(getattr(item, "function", None) is late
             for item in request.session.items):
    yield None
    return
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    workdir = tmp_path_factory.mktemp("late") / "run"
    yield workdir, pool.submit(_late_host, data_dir, workdir)


def test_a_host_that_comes_late_to_the_first_collective_is_waited_for(
    late_host):
  """Process 1 paused for 40 s right after it joined: process 0 waits for
  it, where a collective on its own gives up after gloo's 30 s, and the run
  completes."""
  workdir, future = late_host
  waiting, results = future.result(timeout=600)
  assert waiting  # process 0, 40 s after process 1 stopped
  assert [r.returncode for r in results] == [0, 0], results
  assert (workdir / "params.npz").exists()


def test_a_coordinator_that_never_comes(data_dir, tmp_path):
  """Process 1 alone: it says whom it waits for, then gives up in a line."""
  started = time.monotonic()
  (r,) = run_all(start(data_dir, tmp_path / "run", "--coordinator_timeout=2",
                       ids=(1,)))
  assert time.monotonic() - started < 60
  assert r.stdout.splitlines()[0].startswith(
      "waiting for process 0 at 127.0.0.1:")
  assert r.stdout.splitlines()[0].endswith(", up to 2 s")
  assert_one_line_error(r, "gave up waiting for process 0 at 127.0.0.1:",
                        code=1)
  assert "Check failure" not in r.stdout + r.stderr


class _Finished:

  def __init__(self, proc, out, err):
    self.returncode, self.stdout, self.stderr = proc.returncode, out, err

  def __repr__(self):
    return f"exit {self.returncode}\n{self.stdout}\n{self.stderr}"


def run_all(procs, timeout=300):
  """Waits for each process: its exit status, stdout and stderr."""
  return [_Finished(p, *p.communicate(timeout=timeout)) for p in procs]
