"""launch.py end to end on tiny data, and every input error as one clear
line."""

import concurrent.futures
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import assert_one_line_error
from conftest import ROOT
from conftest import synthetic_dataset
from conftest import write_cache


def launch(*args, env=None):
  return subprocess.run([sys.executable, str(ROOT / "launch.py"), *args],
                        capture_output=True, text=True, cwd=ROOT, timeout=120,
                        env={**os.environ, **(env or {})}, check=False)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  path = tmp_path_factory.mktemp("data")
  write_cache(path, synthetic_dataset())
  return path


def test_the_exit_still_runs_threads_handlers_and_profilers(tmp_path):
  """cli ends the process with os._exit (no teardown), but only after what
  the interpreter does first: a thread it waits for, an idle thread pool
  told to end (else joining its threads would wait forever), the exit
  handlers. Under a profiler it ends as Python does: the profile is
  written."""
  code = (f"import atexit, concurrent.futures, sys, threading, time\n"
          f"sys.argv = ['launch.py', '--loss=bogus']\n"
          f"pool = concurrent.futures.ThreadPoolExecutor(2)\n"
          f"pool.submit(print, end='').result()  # then idle, not shut down\n"
          f"atexit.register(lambda: open({str(tmp_path / 'handler')!r}, "
          f"'w').close())\n"
          f"def late():\n"
          f"  time.sleep(0.5)\n"
          f"  open({str(tmp_path / 'thread')!r}, 'w').close()\n"
          f"threading.Thread(target=late).start()\n"
          f"from softmax_jax import cli\n"
          f"cli.run()\n")
  r = subprocess.run([sys.executable, "-c", code], capture_output=True,
                     text=True, cwd=ROOT, timeout=120, check=False)
  assert_one_line_error(r, "unknown --loss='bogus'")
  assert (tmp_path / "handler").exists() and (tmp_path / "thread").exists()
  profile = tmp_path / "launch.prof"
  r = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(profile),
                      str(ROOT / "launch.py"), "--loss=bogus"],
                     capture_output=True, text=True, cwd=ROOT, timeout=120,
                     check=False)
  assert "unknown --loss='bogus'" in r.stderr  # (cProfile exits 0 anyway)
  assert profile.stat().st_size > 0


def test_train_end_to_end(data_dir, tmp_path):
  workdir = tmp_path / "run"
  r = launch(f"--data_dir={data_dir}", f"--workdir={workdir}", "--epochs=3",
             "--batch_size=32", "--lr=0.5")
  assert r.returncode == 0, r.stderr
  assert "epoch   3" in r.stdout and "test accuracy" in r.stdout
  records = [json.loads(line) for line in
             (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [m["epoch"] for m in records] == [1, 2, 3]
  assert {"train_loss", "train_accuracy", "test_accuracy"} <= set(records[0])
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["test_accuracy"] == records[-1]["test_accuracy"] > 0.9
  assert summary["num_params"] == 16 * 4 + 4
  assert summary["train_seconds"] > 0 and summary["compile_seconds"] > 0
  assert summary["config"]["lr"] == 0.5 and summary["config"]["loss"] == "xent"
  for figure in ("curves", "reliability", "confusion", "predictions",
                 "weights"):
    assert (workdir / f"{figure}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  report = (workdir / "report.md").read_text()
  assert ("| test accuracy |" in report
          and "![reliability](reliability.png)" in report)
  assert set(summary["per_class_accuracy"]) == {f"class{k}" for k in range(4)}
  confusion = np.array(summary["confusion_matrix"])
  assert confusion.shape == (4, 4) and confusion.sum() == 256
  assert np.trace(confusion) / 256 == pytest.approx(summary["test_accuracy"])
  assert 0 <= summary["ece"] <= 1 and "test ECE" in r.stdout
  with np.load(workdir / "params.npz") as params:
    assert params["w"].shape == (16, 4) and params["b"].shape == (4,)


@pytest.mark.slow
def test_a_path_and_a_tracked_objective_end_to_end(data_dir, tmp_path):
  """An L-BFGS path writes its solutions to results.csv and summary.json
  (with --nofigures, no figure); an SGD run with --track_objective records
  and reports its objective."""
  r = launch(f"--data_dir={data_dir}", f"--workdir={tmp_path / 'path'}",
             "--optimizer=lbfgs", "--weight_decay=0.01,0.001", "--nofigures")
  assert r.returncode == 0, r.stderr
  assert not list((tmp_path / "path").glob("*.png"))
  report = (tmp_path / "path" / "report.md").read_text()
  assert "| test accuracy |" in report and "![" not in report
  header = (tmp_path / "path" / "results.csv").read_text().splitlines()[0]
  assert "objective,grad_norm,iterations,evaluations,converged" in header
  summary = json.loads((tmp_path / "path" / "summary.json").read_text())
  assert summary["best"]["config"]["optimizer"] == "lbfgs"
  r = launch(f"--data_dir={data_dir}", f"--workdir={tmp_path / 'sgd'}",
             "--epochs=2", "--batch_size=32", "--weight_decay=0.001",
             "--track_objective", "--nofigures")
  assert r.returncode == 0, r.stderr
  assert "ms/epoch" in r.stdout
  records = [json.loads(line) for line in
             (tmp_path / "sgd" / "metrics.jsonl").read_text().splitlines()]
  summary = json.loads((tmp_path / "sgd" / "summary.json").read_text())
  assert summary["objective"] == records[-1]["objective"] > 0
  assert "iterations" not in summary


@pytest.mark.slow
def test_config_file_and_flags_combine(data_dir, tmp_path):
  config = tmp_path / "exp.py"
  config.write_text(
      "from softmax_jax.config import Config\n"
      "def get_config():\n"
      "  return Config(loss='huber', optimizer='adam', lr=0.05, epochs=5)\n")
  workdir = tmp_path / "run"
  r = launch(f"--config={config}", "--epochs=2", "--batch_size=64",
             f"--data_dir={data_dir}", f"--workdir={workdir}", "--nofigures")
  assert r.returncode == 0, r.stderr
  c = json.loads((workdir / "summary.json").read_text())["config"]
  assert (c["loss"], c["optimizer"], c["lr"], c["epochs"], c["batch_size"]) == (
      "huber", "adam", 0.05, 2, 64)


BAD_INPUTS = {
    "unknown loss": (["--loss=hinge"], "choose one of: xent, l2, l1, huber"),
    "unknown optimizer": (["--optimizer=rmsprop"],
                          "choose one of: sgd, momentum, adam"),
    "unknown dataset": (["--dataset=imagenet_but_typo"],
                        "TFDS has no such data set"),
    "not a dataset name": (["--dataset=Fashion MNIST"], "npz:PATH or csv:PATH"),
    "a script as --config": (["--config=experiments/sgd_vs_optimum.py"],
                             "(a script, not an experiment file? run it with "
                             "python)"),
    "unknown loss input": (["--loss_input=probabilities"],
                           "choose one of: probs, logits"),
    "zero lr": (["--lr=0"], "--lr must be a finite number > 0"),
    "negative lr": (["--lr=-1"], "--lr must be"),
    "nan lr": (["--lr=nan"], "--lr must be"),
    "text lr": (["--lr=fast"], "--lr='fast' is not a number"),
    "bad mesh": (["--mesh=two_by_one"], "--mesh=two_by_one is not "
                 "CONFIGSxDATA"),
    "mesh of other devices": (["--mesh=2x1"], "--mesh=2x1 needs 2 devices; "
                              "this run has 1"),
    "zero batch": (["--batch_size=0"], "--batch_size must be at least 1"),
    "zero epochs": (["--epochs=0"], "--epochs must be at least 1"),
    "zero eval interval": (["--eval_every=0"],
                           "--eval_every must be at least 1"),
    "refit without a sweep": (["--refit"], "--refit retrains a sweep's best"),
    "negative checkpoint interval": (["--checkpoint_every=-1"],
                                     "--checkpoint_every=-1.0 must be a "
                                     "number of seconds"),
    "unknown flag": (["--momentum=0.9"],
                     "Unknown command line flag 'momentum'"),
    "missing config": (["--config=nowhere.py"], "no such file"),
    "stray argument": (["xent"], "unexpected argument 'xent'"),
    "batch too large": (["--batch_size=100000"],
                        "larger than the training set"),
    "divergence": (["--loss=l2", "--loss_input=logits", "--lr=10000",
                    "--batch_size=16"],
                   "diverged in epoch"),
    "unwritable workdir": (["--workdir=/proc/version/run"],
                           "cannot create --workdir"),
    "empty list item": (["--lr=0.1,"], "--lr='0.1,' has an empty item"),
    "non-numeric list item": (["--lr=0.1,fast"],
                              "--lr='fast' is not a number"),
    "unsweepable flag": (["--dataset=mnist,fashion_mnist"],
                         "--dataset cannot be swept"),
    "sweep without validation": (["--lr=0.1,0.2", "--val_fraction=0"],
                                 "give --val_fraction > 0"),
    "missing npz": (["--dataset=npz:/nowhere/data.npz", "--data_dir="],
                    "/nowhere/data.npz: no such file"),
    "a data dir for own files": (["--dataset=npz:{good_npz}"],
                                 "is for TFDS data sets; --dataset=npz:"),
    "test csv without csv data": (["--test_csv=test.csv"],
                                  "--test_csv=test.csv is for "
                                  "--dataset=csv:PATH"),
    "unknown pixels rule": (["--pixels=maybe"], "choose one of: auto, yes, no"),
    "bad hidden": (["--hidden=256,x"], "--hidden='256,x': give layer sizes"),
    "phm that does not fit": (["--phm_n=3"],
                              "--phm_n=3 must divide the output layer's "
                              "input size 16"),
    "experiment file without functions": (["--config={empty_experiment}"],
                                          "has no get_config() function"),
    "a smooth solver with an l1 penalty": (["--optimizer=lbfgs",
                                            "--penalty=l1"],
                                           "use --optimizer=owlqn"),
    "a weight decay beyond float32": (["--weight_decay=1e39"],
                                      "--weight_decay=1e+39 is beyond "
                                      "float32's range"),
    "a validation share of no rows": (["--lr=0.1,0.2",
                                       "--val_fraction=0.000001"],
                                      "holds out none of the"),
    "calibration without validation": (["--calibrate"],
                                       "--calibrate fits the temperature on "
                                       "a validation split"),
}


@pytest.fixture(scope="module")
def bad_runs(data_dir, tmp_path_factory):
  """Runs every bad input at once: each is a separate process."""
  workdirs = {case: tmp_path_factory.mktemp("w") / "run" for case in BAD_INPUTS}
  empty_experiment = tmp_path_factory.mktemp("exp") / "empty.py"
  empty_experiment.write_text("LEARNING_RATES = [0.1, 1.0]\n")
  good_npz = tmp_path_factory.mktemp("npz") / "good.npz"
  rng = np.random.default_rng(0)
  np.savez(good_npz, x_train=rng.normal(size=(40, 3)),
           y_train=np.arange(40) % 2, x_test=rng.normal(size=(10, 3)),
           y_test=np.arange(10) % 2)
  with concurrent.futures.ThreadPoolExecutor(4) as pool:
    futures = {
        case: pool.submit(launch, f"--data_dir={data_dir}", "--epochs=2",
                          f"--workdir={workdirs[case]}",
                          *(a.format(empty_experiment=empty_experiment,
                                     good_npz=good_npz)
                            for a in args))
        for case, (args, _) in BAD_INPUTS.items()}
    return {case: (f.result(), workdirs[case]) for case, f in futures.items()}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_clear_line(bad_runs, case):
  assert_one_line_error(bad_runs[case][0], BAD_INPUTS[case][1])


FLAGS_WITHOUT_EFFECT = {
    "images outside predict": (["--images=a.png"],
                               "--images is for --mode=predict"),
    "training flag in eval": (["--mode=eval", "--workdir=somewhere",
                               "--lr=0.1"],
                              "--lr has no effect with --mode=eval"),
    "overwrite in predict": (["--mode=predict", "--workdir=w", "--overwrite",
                              "--images=a.png"],
                             "--overwrite has no effect with --mode=predict"),
    "training flag in prepare_data": (["--mode=prepare_data", "--epochs=3"],
                                      "--epochs has no effect with "
                                      "--mode=prepare_data"),
    "process count without coordinator": (["--num_processes=2"],
                                          "give --coordinator_address"),
    "overwrite without workdir": (["--overwrite"], "give --workdir"),
    "heartbeat without coordinator": (["--heartbeat_timeout=5"],
                                      "--heartbeat_timeout is for multi-host "
                                      "runs; give --coordinator_address"),
    "host shares without coordinator": (["--noshard_data"],
                                        "--shard_data is for multi-host"),
    "multi-host without workdir": (
        ["--coordinator_address=127.0.0.1:1", "--num_processes=2",
         "--process_id=0"], "a multi-host run needs --workdir"),
    "multi-host eval": (["--mode=eval", "--workdir=w",
                         "--coordinator_address=127.0.0.1:1"],
                        "--mode=eval runs on one host"),
    "zero heartbeat timeout": (["--workdir=w", "--heartbeat_timeout=0",
                                "--coordinator_address=127.0.0.1:1"],
                               "--heartbeat_timeout=0 must be at least 1"),
    "mesh in predict": (["--mode=predict", "--workdir=w", "--mesh=1x1",
                         "--images=a.png"],
                        "--mesh has no effect with --mode=predict"),
    "figures in predict": (["--mode=predict", "--workdir=w", "--nofigures",
                            "--images=a.png"],
                           "--figures has no effect with --mode=predict"),
    "l1 ratio without the elastic net": (["--penalty=l1", "--l1_ratio=0.3"],
                                         "--l1_ratio has no effect without "
                                         "--penalty=elasticnet"),
    "huber delta without huber": (["--loss=xent,l2", "--huber_delta=0.5"],
                                  "--huber_delta has no effect without "
                                  "--loss=huber"),
    "loss input with xent": (["--loss_input=logits"],
                             "--loss_input has no effect with --loss=xent"),
    "lr with a solver": (["--optimizer=lbfgs", "--lr=0.3"],
                         "--lr has no effect with --optimizer=lbfgs, which "
                         "solves on the full batch from W = 0; it is for "
                         "--optimizer=sgd/momentum/adam: drop it"),
    "tol without a solver that reads it": (
        ["--optimizer=sgd,exact", "--weight_decay=0.01", "--loss=l2",
         "--loss_input=logits", "--tol=1e-6"],
        "--tol has no effect with --optimizer=exact/sgd; it is for "
        "--optimizer=lbfgs/owlqn: drop it"),
    "an empty workdir": (["--workdir="], "--workdir is empty"),
}


@pytest.mark.parametrize("case", list(FLAGS_WITHOUT_EFFECT))
def test_a_flag_without_effect_is_refused(case):
  args, expected = FLAGS_WITHOUT_EFFECT[case]
  assert_one_line_error(launch(*args), expected)


def test_divergence_keeps_the_epochs_it_finished(bad_runs):
  r, workdir = bad_runs["divergence"]
  assert "smaller --lr (now 10000.0)" in r.stderr
  records = [json.loads(line) for line in
             (workdir / "metrics.jsonl").read_text().splitlines()]
  assert records and not np.isfinite(records[-1]["train_loss"])
  assert f"epoch {records[-1]['epoch']}" in r.stderr
  assert ((workdir / "curves.png").exists()
          and not (workdir / "summary.json").exists())


@pytest.mark.slow
def test_existing_run_is_not_overwritten(data_dir, tmp_path):
  workdir = tmp_path / "run"
  args = [f"--data_dir={data_dir}", f"--workdir={workdir}", "--epochs=1",
          "--batch_size=64", "--nofigures"]
  assert launch(*args).returncode == 0
  before = (workdir / "summary.json").read_text()
  again = launch(*args)  # the same command: finished, nothing to redo
  assert again.returncode == 0 and "finished" in again.stdout
  assert (workdir / "summary.json").read_text() == before
  assert_one_line_error(launch(*args, "--lr=0.3"),
                        "holds a run of another configuration (lr=0.1 there, "
                        "0.3 here)")
  assert (workdir / "summary.json").read_text() == before
  assert launch(*args, "--lr=0.3", "--overwrite").returncode == 0
  assert json.loads(
      (workdir / "summary.json").read_text())["config"]["lr"] == 0.3
  assert len((workdir / "metrics.jsonl").read_text().splitlines()) == 1


def test_missing_dataset_offline_fails_within_seconds(tmp_path):
  from softmax_jax.data import datasets  # pylint: disable=g-import-not-at-top
  if datasets._reachable("storage.googleapis.com"):  # pylint: disable=protected-access
    pytest.skip("online: TFDS would download MNIST")
  for mode in ("--mode=prepare_data", "--mode=train"):
    r = launch("--dataset=mnist", f"--data_dir={tmp_path}", mode)
    assert_one_line_error(r, "cannot be reached")
    assert "--data_dir" in r.stderr
    # Decided before TensorFlow (6-9 s to import) or even JAX is imported:
    # ~0.9 s in all on this project's 2-core machine (2026-11-21).
    r = subprocess.run([sys.executable, "-X", "importtime",
                        str(ROOT / "launch.py"), "--dataset=mnist",
                        f"--data_dir={tmp_path}", mode],
                       capture_output=True, text=True, cwd=ROOT, timeout=300,
                       check=False)
    imported = {line.rsplit("|", 1)[-1].strip()
                for line in r.stderr.splitlines()
                if line.startswith("import time")}
    assert "tensorflow_datasets" in imported  # what the check needs
    assert "tensorflow" not in imported and "jax" not in imported


def test_debug_shows_the_traceback():
  r = launch("--lr=0", "--debug")
  assert r.returncode != 0 and "Traceback" in r.stderr


def test_a_multi_host_workdir_that_cannot_hold_logs(tmp_path):
  """Each process's log goes to WORKDIR/logs; a file there is one line."""
  (tmp_path / "file").write_text("not a folder")
  assert_one_line_error(
      launch(f"--workdir={tmp_path / 'file'}",
             "--coordinator_address=127.0.0.1:1", "--num_processes=2",
             "--process_id=1"),
      "cannot write this process's log in --workdir=")
