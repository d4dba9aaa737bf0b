"""Devices and hosts: 8 simulated devices and 2 processes give the 1-device
results."""

import csv
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import assert_one_line_error
from conftest import free_port
from conftest import ROOT
from conftest import synthetic_dataset
from conftest import write_cache

pytestmark = pytest.mark.slow  # fresh processes on 1 and 8 devices, and gloo

SWEEP_FLAGS = ["--loss=xent,l2,huber", "--lr=0.05,0.2,0.5", "--batch_size=32",
               "--epochs=3"]
FLAGS = {"sweep": SWEEP_FLAGS, "single": ["--batch_size=32", "--epochs=3"]}
COMPARED = ("val_accuracy", "test_accuracy", "test_nll", "final_train_loss")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  path = tmp_path_factory.mktemp("data")
  write_cache(path, synthetic_dataset(noise=90.0))  # hard enough to differ
  return path


def device_env(devices):
  """This process's environment, with the test run's XLA_FLAGS
  (conftest.QUICK_COMPILE) on `devices` simulated devices."""
  return {**os.environ, "XLA_FLAGS": (
      f"{os.environ.get('XLA_FLAGS', '')} "
      f"--xla_force_host_platform_device_count={devices}")}


def launch(*args, devices=1, check=True, **popen_kw):
  """launch.py on `devices` simulated devices, drawing no figures (what
  these tests compare is in results.csv, summary.json and params.npz)."""
  env = device_env(devices)
  command = [sys.executable, str(ROOT / "launch.py"), "--nofigures", *args]
  if not check:
    return subprocess.Popen(command, env=env, cwd=ROOT, text=True, **popen_kw)
  r = subprocess.run(command, env=env, cwd=ROOT, capture_output=True,
                     text=True, timeout=300, check=False)
  assert r.returncode == 0, r.stderr
  return r


def results(workdir):
  with open(workdir / "results.csv", newline="") as f:
    return list(csv.DictReader(f))


def assert_same_results(a, b):
  assert len(a) == len(b)
  for ra, rb in zip(a, b, strict=True):
    assert (ra["config_id"], ra["loss"], ra["lr"], ra["status"]) == (
        rb["config_id"], rb["loss"], rb["lr"], rb["status"])
    for key in COMPARED:
      assert float(ra[key]) == pytest.approx(float(rb[key]), rel=1e-4,
                                             abs=1e-5), key


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
  """trained(run, devices): the workdir and output of the sweep or the
  single run (FLAGS) on 1 or 8 devices, each trained once in this module
  for the tests that compare or evaluate them."""
  done = {}

  def get(run, devices):
    if (run, devices) not in done:
      workdir = tmp_path_factory.mktemp(f"{run}{devices}") / "run"
      r = launch(f"--data_dir={data_dir}", f"--workdir={workdir}",
                 *FLAGS[run], devices=devices)
      done[run, devices] = workdir, r.stdout
    return done[run, devices]
  return get


def test_sweep_on_8_devices_equals_1_device(trained):
  workdir, stdout = trained("sweep", 8)
  assert "8 cpu devices" in stdout
  assert "device mesh (configurations x data): 8x1\n" in stdout
  one_device, stdout = trained("sweep", 1)
  assert "; 1 cpu device\n" in stdout
  assert_same_results(results(workdir), results(one_device))
  # 9 configurations on 8 devices: padded to 16, the padding dropped.
  assert len(results(workdir)) == 9


def test_a_2d_mesh_equals_1_device(data_dir, trained, tmp_path):
  """9 configurations on 2 rows of 4 devices: each row takes 5 (padded to
  10), and each minibatch is split over 4 devices; the same results."""
  workdir = tmp_path / "run"
  r = launch(f"--data_dir={data_dir}", f"--workdir={workdir}", *SWEEP_FLAGS,
             "--mesh=2x4", devices=8)
  assert "device mesh (configurations x data): 2x4\n" in r.stdout
  assert_same_results(results(workdir), results(trained("sweep", 1)[0]))


def test_a_small_sweep_splits_minibatches_too(data_dir, tmp_path):
  """6 configurations on 8 devices: 4 rows (padded to 8 configurations) of
  2 devices, chosen without --mesh; the 1-device results."""
  flags = ["--loss=xent,l2,huber", "--lr=0.2,0.5", "--batch_size=32",
           "--epochs=3"]
  runs = {}
  for devices in (1, 8):
    runs[devices] = tmp_path / f"run{devices}"
    r = launch(f"--data_dir={data_dir}", f"--workdir={runs[devices]}",
               *flags, devices=devices)
  assert "device mesh (configurations x data): 4x2\n" in r.stdout
  assert_same_results(results(runs[8]), results(runs[1]))


def test_a_mesh_that_does_not_fit_is_refused(data_dir, tmp_path):
  for mesh, expected in [("3x3", "--mesh=3x3 needs 9 devices; this run has 8"),
                         ("1x8", "--batch_size=36 is not a multiple of 8"),
                         ("2by4", "--mesh=2by4 is not CONFIGSxDATA")]:
    command = [sys.executable, str(ROOT / "launch.py"),
               f"--data_dir={data_dir}", f"--workdir={tmp_path / mesh}",
               "--batch_size=36", f"--mesh={mesh}"]
    r = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                       timeout=300, check=False, env=device_env(8))
    assert_one_line_error(r, expected)
    assert not (tmp_path / mesh / "configs.json").exists()


def test_data_parallel_single_run_on_8_devices(trained):
  summaries = [json.loads((trained("single", devices)[0] / "summary.json"
                           ).read_text()) for devices in (1, 8)]
  assert summaries[1]["num_devices"] == 8
  assert ("device mesh (configurations x data): 1x8\n"
          in trained("single", 8)[1])
  for key in ("test_accuracy", "test_nll", "train_loss"):
    assert summaries[0][key] == pytest.approx(summaries[1][key], rel=1e-4)


def _two_processes(data_dir, workdirs, *args):
  address = f"127.0.0.1:{free_port()}"
  procs = [
      launch(f"--data_dir={data_dir}", f"--workdir={workdirs[i]}", *args,
             f"--coordinator_address={address}", "--num_processes=2",
             f"--process_id={i}", check=False, stdout=subprocess.PIPE,
             stderr=subprocess.PIPE)
      for i in (0, 1)]
  outputs = [p.communicate(timeout=300) for p in procs]
  return [p.returncode for p in procs], outputs


def test_two_processes_equal_one_and_only_process_0_writes(data_dir, trained,
                                                            tmp_path):
  workdir = tmp_path / "run"
  codes, outputs = _two_processes(data_dir, [workdir] * 2, *SWEEP_FLAGS)
  assert codes == [0, 0], outputs
  assert "2 cpu devices on 2 hosts" in outputs[0][0]
  assert "val acc" in outputs[0][0] and "val acc" not in outputs[1][0]
  assert "[Gloo]" not in outputs[0][0] + outputs[1][0]  # in the logs
  assert_same_results(results(workdir), results(trained("sweep", 1)[0]))
  # Each process logs the runtime's own output in the workdir.
  assert sorted(p.name for p in (workdir / "logs").iterdir()) == [
      "process_0.log", "process_1.log"]


def test_host_shares_of_the_data_equal_full_copies(data_dir, tmp_path):
  """A single run on 2 processes splits each minibatch across them: each
  holds only its half of the training examples, or (--noshard_data) all of
  them; the same minibatches, the same parameters."""
  flags = ["--batch_size=32", "--epochs=3"]
  workdirs = {}
  for shard in ("--shard_data", "--noshard_data"):
    workdirs[shard] = tmp_path / shard
    codes, outputs = _two_processes(data_dir, [workdirs[shard]] * 2, *flags,
                                    shard)
    assert codes == [0, 0], outputs
    assert "device mesh (configurations x data): 1x2\n" in outputs[0][0]
    assert ("each host holds only its share of the training examples: 256 "
            "of 512 (2 shares)" in outputs[0][0]) == (shard == "--shard_data")
  with np.load(workdirs["--shard_data"] / "params.npz") as a, \
       np.load(workdirs["--noshard_data"] / "params.npz") as b:
    for key in a.files:  # (params.npz also holds the class names)
      if a[key].dtype.kind == "f":
        np.testing.assert_allclose(a[key], b[key], rtol=1e-6, atol=1e-7)
      else:
        np.testing.assert_array_equal(a[key], b[key])


def test_a_workdir_that_is_not_shared_is_refused(data_dir, tmp_path):
  codes, outputs = _two_processes(data_dir, [tmp_path / "a", tmp_path / "b"],
                                  "--epochs=1")
  assert codes == [2, 2], outputs
  for _, err in outputs:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "is not one folder that every host reaches: process 1" in err


# Trains a sweep (and a single run) in a fresh process on `devices` devices
# and saves the final params; with stop_after, stops after that epoch.
_TRAIN = textwrap.dedent("""
    import sys
    sys.path[:0] = [{root!r}, {tests!r}]
    import numpy as np
    from conftest import synthetic_dataset
    from softmax_jax import sweep, train
    from softmax_jax.data import datasets
    from softmax_jax.config import Config
    checkpoint_dir, stop_after, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    ds = datasets.hold_out_validation(synthetic_dataset(noise=90.0), 0.25)
    base = Config(batch_size=32, epochs=4, lr=0.2)
    sweeps = {{"sweep": sweep.expand(base, sweep.product(
        sweep.axis("loss", ["xent", "l2", "huber"]),
        sweep.axis("lr", [0.05, 0.2, 0.5]))), "single": [base]}}
    params = {{}}
    for name, configs in sweeps.items():
      epochs = []
      try:
        result = train.train_configs(
            configs, ds, lambda i, r: epochs.append(r["epoch"]),
            checkpoint_dir=f"{{checkpoint_dir}}/{{name}}", checkpoint_every=0,
            should_stop=lambda: stop_after and epochs[-1] >= stop_after)
      except train.StopRequested:
        continue
      print(name, "first epoch trained:", epochs[0])
      for i, run in enumerate(result.runs):
        params[f"{{name}}_{{i}}_w"] = run.params["w"]
        params[f"{{name}}_{{i}}_b"] = run.params["b"]
    np.savez(out, **params)
""")


def _train(tmp_path, devices, checkpoint_dir, stop_after, out):
  script = tmp_path / "train_on_devices.py"
  script.write_text(_TRAIN.format(root=str(ROOT), tests=str(ROOT / "tests")))
  env = device_env(devices)
  r = subprocess.run([sys.executable, str(script), str(checkpoint_dir),
                      str(stop_after), str(out)], env=env, capture_output=True,
                     text=True, timeout=300, check=False)
  assert r.returncode == 0, r.stderr
  return r.stdout


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  """The params of _TRAIN's sweep and single run on 1 device, not stopped."""
  tmp_path = tmp_path_factory.mktemp("whole")
  _train(tmp_path, 1, tmp_path / "whole", 0, tmp_path / "whole.npz")
  return tmp_path / "whole.npz"


@pytest.mark.parametrize("before,after", [(1, 8), (8, 1)])
def test_checkpoints_resume_on_another_device_count(uninterrupted, tmp_path,
                                                    before, after):
  """Stopped after epoch 2 on `before` devices, resumed on `after`: the same
  params as an uninterrupted run (on 1 device: 8 give the same, as the
  tests above show), for a sweep (9 configurations: padded to 16 on 8
  devices) and a single run (data parallel on 8)."""
  _train(tmp_path, before, tmp_path / "ckpt", 2, tmp_path / "unused.npz")
  out = _train(tmp_path, after, tmp_path / "ckpt", 0, tmp_path / "resumed.npz")
  assert "sweep first epoch trained: 3" in out  # resumed, not retrained
  assert "single first epoch trained: 3" in out
  with np.load(uninterrupted) as whole, \
       np.load(tmp_path / "resumed.npz") as resumed:
    assert (sorted(whole.files) == sorted(resumed.files)
            and len(whole.files) == 20)
    for key in whole.files:
      np.testing.assert_allclose(resumed[key], whole[key], rtol=1e-4,
                                 atol=1e-6, err_msg=key)


@pytest.mark.parametrize("before,after", [(1, 8), (8, 1)])
def test_eval_on_another_device_count(trained, tmp_path, before, after):
  for run in FLAGS:
    workdir = tmp_path / run  # (a copy: eval rewrites the run's outputs)
    shutil.copytree(trained(run, before)[0], workdir)
    r = launch("--mode=eval", f"--workdir={workdir}", devices=after)
    assert ": the same" in r.stdout, r.stdout
