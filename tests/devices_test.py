"""Devices and hosts: 8 simulated devices and 2 processes give the 1-device results."""

import csv
import json
import os
import socket
import subprocess
import sys

import pytest
from conftest import ROOT, synthetic_dataset, write_cache

SWEEP_FLAGS = ["--loss=xent,l2,huber", "--lr=0.05,0.2,0.5", "--batch_size=32",
               "--epochs=3"]
COMPARED = ("val_accuracy", "test_accuracy", "test_nll", "final_train_loss")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  path = tmp_path_factory.mktemp("data")
  write_cache(path, synthetic_dataset(noise=90.0))  # hard enough to differ
  return path


def launch(*args, devices=1, check=True, **popen_kw):
  env = {**os.environ,
         "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
  command = [sys.executable, str(ROOT / "launch.py"), *args]
  if not check:
    return subprocess.Popen(command, env=env, cwd=ROOT, text=True, **popen_kw)
  r = subprocess.run(command, env=env, cwd=ROOT, capture_output=True,
                     text=True, timeout=300)
  assert r.returncode == 0, r.stderr
  return r


def results(workdir):
  with open(workdir / "results.csv", newline="") as f:
    return list(csv.DictReader(f))


def assert_same_results(a, b):
  assert len(a) == len(b)
  for ra, rb in zip(a, b):
    assert (ra["config_id"], ra["loss"], ra["lr"], ra["status"]) == (
        rb["config_id"], rb["loss"], rb["lr"], rb["status"])
    for key in COMPARED:
      assert float(ra[key]) == pytest.approx(float(rb[key]), rel=1e-4, abs=1e-5), key


@pytest.fixture(scope="module")
def one_device(data_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("one") / "run"
  r = launch(f"--data_dir={data_dir}", f"--workdir={workdir}", *SWEEP_FLAGS)
  assert "; 1 cpu device\n" in r.stdout
  return workdir


def test_sweep_on_8_devices_equals_1_device(data_dir, one_device, tmp_path):
  workdir = tmp_path / "run"
  r = launch(f"--data_dir={data_dir}", f"--workdir={workdir}", *SWEEP_FLAGS,
             devices=8)
  assert "8 cpu devices" in r.stdout
  assert_same_results(results(workdir), results(one_device))
  # 9 configurations on 8 devices: padded to 16, the padding dropped.
  assert len(results(workdir)) == 9


def test_data_parallel_single_run_on_8_devices(data_dir, tmp_path):
  summaries = []
  for devices in (1, 8):
    workdir = tmp_path / f"run{devices}"
    launch(f"--data_dir={data_dir}", f"--workdir={workdir}", "--batch_size=32",
           "--epochs=3", devices=devices)
    summaries.append(json.loads((workdir / "summary.json").read_text()))
  assert summaries[1]["num_devices"] == 8
  for key in ("test_accuracy", "test_nll", "train_loss"):
    assert summaries[0][key] == pytest.approx(summaries[1][key], rel=1e-4)


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_equal_one_and_only_process_0_writes(data_dir, one_device,
                                                            tmp_path):
  address = f"127.0.0.1:{_free_port()}"
  procs = [
      launch(f"--data_dir={data_dir}", f"--workdir={tmp_path / f'run{i}'}",
             *SWEEP_FLAGS, f"--coordinator_address={address}",
             "--num_processes=2", f"--process_id={i}", check=False,
             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
      for i in (0, 1)]
  outputs = [p.communicate(timeout=300) for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outputs
  assert "2 cpu devices on 2 hosts" in outputs[0][0]
  assert "val acc" in outputs[0][0] and "val acc" not in outputs[1][0]
  assert not (tmp_path / "run1").exists()  # and writes nothing
  assert_same_results(results(tmp_path / "run0"), results(one_device))
