"""Checkpoints: resume equals an uninterrupted run, corruption, signals."""

import dataclasses
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from conftest import synthetic_dataset
from conftest import write_cache
from softmax_jax import sweep
from softmax_jax import train
from softmax_jax.config import Config
from softmax_jax.data import datasets

TINY = Config(batch_size=32, epochs=4, lr=0.3)


def _stop_after(epoch):
  seen = []

  def on_epoch(i, record):
    del i
    seen.append(record["epoch"])

  return on_epoch, lambda: bool(seen) and seen[-1] >= epoch


def _assert_same_runs(a, b):
  assert [r.history for r in a.runs] == [r.history for r in b.runs]
  for ra, rb in zip(a.runs, b.runs, strict=True):
    np.testing.assert_array_equal(ra.params["w"], rb.params["w"])
    np.testing.assert_array_equal(ra.params["b"], rb.params["b"])


@pytest.mark.parametrize("configs", [
    [TINY],
    [dataclasses.replace(TINY, optimizer="adam", lr=0.01, schedule="cosine")],
    sweep.expand(TINY, sweep.product(sweep.axis("loss", ["xent", "huber"]),
                                     sweep.axis("lr", [0.1, 0.5]),
                                     sweep.axis("optimizer", ["sgd", "adam"]))),
], ids=["single", "adam with a cosine schedule", "sweep of 2 groups"])
@pytest.mark.slow
@pytest.mark.gpu_smoke
def test_resume_is_bit_identical(tmp_path, configs):
  ds = datasets.hold_out_validation(synthetic_dataset(), 0.25)
  whole = train.train_configs(configs, ds, checkpoint_dir=tmp_path / "a")
  on_epoch, stop = _stop_after(2)
  with pytest.raises(train.StopRequested) as e:
    train.train_configs(configs, ds, on_epoch, checkpoint_dir=tmp_path / "b",
                        should_stop=stop)
  assert e.value.epoch == 2
  resumed_epochs = {}
  resumed = train.train_configs(
      configs, ds,
      lambda i, r: resumed_epochs.setdefault(i, []).append(r["epoch"]),
      checkpoint_dir=tmp_path / "b")
  first_group, *later_groups = sweep.groups(configs)
  for i in first_group:  # stopped after epoch 2: nothing before it again
    assert resumed_epochs[i] == [3, 4]
  # not started when stopped
  for i in [j for group in later_groups for j in group]:
    assert resumed_epochs[i] == [1, 2, 3, 4]
  _assert_same_runs(whole, resumed)


def _corrupt(checkpoint_dir):
  for root, _, files in os.walk(checkpoint_dir):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"\x00garbage")


def test_a_corrupted_last_checkpoint_falls_back_to_the_previous(tmp_path):
  ds = synthetic_dataset()
  whole = train.train_configs([TINY], ds)
  on_epoch, stop = _stop_after(3)
  with pytest.raises(train.StopRequested):
    train.train_configs([TINY], ds, on_epoch, checkpoint_dir=tmp_path,
                        checkpoint_every=0, should_stop=stop)
  _corrupt(tmp_path / "group_0" / "3")
  resumed_epochs = []
  resumed = train.train_configs(
      [TINY], ds, lambda i, r: resumed_epochs.append(r["epoch"]),
      checkpoint_dir=tmp_path)
  assert resumed_epochs == [3, 4]  # from epoch 2's checkpoint
  _assert_same_runs(whole, resumed)
  # Kept, out of the way: not deleted.
  assert (tmp_path / "group_0.unreadable" / "3").is_dir()


def test_unreadable_checkpoints_are_kept_and_refused(tmp_path):
  """No checkpoint can be restored: say why, keep them, train nothing; the
  runner's --overwrite is the way to start again."""
  from softmax_jax import runner  # pylint: disable=g-import-not-at-top
  from softmax_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  ds = synthetic_dataset()
  train.train_configs([TINY], ds, checkpoint_dir=tmp_path)
  _corrupt(tmp_path / "group_0")
  before = sorted(str(p) for p in tmp_path.rglob("*"))
  trained = []
  with pytest.raises(UserError, match=r"no readable checkpoint .*cannot "
                     r"restore epoch 4: .*kept; pass --overwrite"):
    train.train_configs([TINY], ds, lambda i, r: trained.append(r),
                        checkpoint_dir=tmp_path)
  assert not trained
  assert sorted(str(p) for p in tmp_path.rglob("*")) == before
  workdir = tmp_path / "run"
  data_dir = tmp_path / "data"
  write_cache(data_dir, ds)
  config = dataclasses.replace(TINY, data_dir=str(data_dir))
  runner.run(config, workdir, verbose=False, figures=False)
  _corrupt(workdir / "checkpoints")
  (workdir / "summary.json").unlink()  # as if killed before the end
  with pytest.raises(UserError, match="no readable checkpoint"):
    runner.run(config, workdir, verbose=False, figures=False)
  summary = runner.run(config, workdir, overwrite=True, verbose=False,
                       figures=False)
  assert summary["epochs_run"] == TINY.epochs


def test_restore_only_needs_a_readable_checkpoint(tmp_path):
  from softmax_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  with pytest.raises(UserError, match=r"no checkpoint in .*has not "
                     r"checkpointed these configurations yet"):
    train.train_configs([TINY], synthetic_dataset(), checkpoint_dir=tmp_path,
                        restore_only=True)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT],
                         ids=["SIGTERM", "SIGINT (Ctrl-C)"])
def test_a_signal_stops_after_a_checkpoint_and_the_rerun_resumes(tmp_path, sig):
  write_cache(tmp_path / "data", synthetic_dataset())
  args = [sys.executable, str(ROOT / "launch.py"),
          f"--data_dir={tmp_path / 'data'}", "--epochs=60", "--batch_size=32"]
  whole = subprocess.run([*args, f"--workdir={tmp_path / 'a'}"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300,
                         check=False)
  assert whole.returncode == 0, whole.stderr
  proc = subprocess.Popen([*args, f"--workdir={tmp_path / 'b'}"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, cwd=ROOT)
  for line in proc.stdout:
    if line.startswith("epoch"):
      proc.send_signal(sig)
      break
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 130, err
  assert "run the same command again to resume" in err
  assert "Traceback" not in out + err
  assert not (tmp_path / "b" / "summary.json").exists()
  again = subprocess.run([*args, f"--workdir={tmp_path / 'b'}"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300,
                         check=False)
  assert again.returncode == 0, again.stderr
  assert "resuming from the workdir's checkpoints" in again.stdout
  for name in ("metrics.jsonl",):
    assert (tmp_path / "a" / name).read_text() == (
        tmp_path / "b" / name).read_text()
  with np.load(tmp_path / "a" / "params.npz") as a, \
       np.load(tmp_path / "b" / "params.npz") as b:
    np.testing.assert_array_equal(a["w"], b["w"])

  def summary(d):
    return json.loads((d / "summary.json").read_text())

  assert summary(tmp_path / "a")["test_accuracy"] == summary(
      tmp_path / "b")["test_accuracy"]


def _kept(checkpoint_dir):
  return sorted(int(p.name) for p in (checkpoint_dir / "group_0").iterdir()
                if p.name.isdigit())


def test_checkpoints_keep_what_resume_needs(tmp_path):
  configs = [dataclasses.replace(TINY, epochs=3)]
  train.train_configs(configs, synthetic_dataset(), checkpoint_dir=tmp_path,
                      checkpoint_every=0)
  assert _kept(tmp_path) == [2, 3]


def test_checkpoints_are_spaced_by_checkpoint_every(tmp_path, monkeypatch):
  """A clock that ticks 1 s per reading: with 2.5 s between checkpoints,
  epochs 3 and 6 are due, and the last (8) is always saved."""
  from softmax_jax.outputs import checkpoint  # pylint: disable=g-import-not-at-top
  ticks = iter(range(10**6))
  monkeypatch.setattr(checkpoint, "_clock", lambda: next(ticks))
  saved = []
  save = checkpoint.Checkpointer.save
  monkeypatch.setattr(checkpoint.Checkpointer, "save",
                      lambda self, epoch, *a: (saved.append(epoch),
                                               save(self, epoch, *a)))
  train.train_configs([dataclasses.replace(TINY, epochs=8)],
                      synthetic_dataset(), checkpoint_dir=tmp_path,
                      checkpoint_every=2.5)
  assert saved == [3, 6, 8]


def test_a_stop_between_groups_trains_no_further_group(tmp_path):
  """Asked in group 1's last (here only) epoch: group 1 finishes, 2 waits."""
  configs = sweep.expand(dataclasses.replace(TINY, epochs=1),
                         sweep.axis("optimizer", ["sgd", "adam"]))
  ds = datasets.hold_out_validation(synthetic_dataset(), 0.25)
  with pytest.raises(train.StopRequested) as e:
    train.train_configs(configs, ds, checkpoint_dir=tmp_path,
                        should_stop=lambda: True)
  assert e.value.epoch == 1
  assert _kept(tmp_path) == [1] and not (tmp_path / "group_1").exists()


def test_checkpoints_are_spaced_in_time_but_the_last_epoch_is_kept(tmp_path):
  """A run shorter than the interval writes one checkpoint, at its end; one
  stopped on request writes one where it stopped."""
  ds = synthetic_dataset()
  train.train_configs([TINY], ds, checkpoint_dir=tmp_path / "a",
                      checkpoint_every=3600)
  assert _kept(tmp_path / "a") == [TINY.epochs]
  on_epoch, stop = _stop_after(2)
  with pytest.raises(train.StopRequested):
    train.train_configs([TINY], ds, on_epoch, checkpoint_dir=tmp_path / "b",
                        checkpoint_every=3600, should_stop=stop)
  assert _kept(tmp_path / "b") == [2]


def test_after_a_fallback_the_redone_epochs_are_checkpointed(tmp_path):
  from softmax_jax.outputs import checkpoint  # pylint: disable=g-import-not-at-top
  ds = synthetic_dataset()
  on_epoch, stop = _stop_after(3)
  with pytest.raises(train.StopRequested):
    train.train_configs([TINY], ds, on_epoch, checkpoint_dir=tmp_path,
                        checkpoint_every=0, should_stop=stop)
  _corrupt(tmp_path / "group_0" / "3")
  on_epoch, stop = _stop_after(3)  # redo epoch 3, then stop again
  with pytest.raises(train.StopRequested):
    train.train_configs([TINY], ds, on_epoch, checkpoint_dir=tmp_path,
                        checkpoint_every=0, should_stop=stop)
  ckpt = checkpoint.Checkpointer(tmp_path / "group_0")
  states = train.train_configs([TINY], ds, checkpoint_dir=tmp_path,
                               restore_only=True)
  ckpt.close()
  assert [r["epoch"] for r in states.runs[0].history] == [1, 2, 3]


def test_eval_of_an_unfinished_run_says_so(tmp_path, capsys):
  from softmax_jax import runner  # pylint: disable=g-import-not-at-top
  data_dir = tmp_path / "data"
  write_cache(data_dir, synthetic_dataset())
  config = dataclasses.replace(TINY, data_dir=str(data_dir))
  workdir = tmp_path / "run"
  runner.run(config, workdir, verbose=False, figures=False)
  runner.evaluate(workdir)
  assert "has not finished" not in capsys.readouterr().out
  (workdir / "summary.json").unlink()  # as if stopped before the end
  runner.evaluate(workdir)
  assert f"note: the run in {workdir} has not finished" in (
      capsys.readouterr().out)


@pytest.mark.slow
@pytest.mark.gpu_smoke
@pytest.mark.parametrize("optimizer", ["sgd", "lbfgs", "exact"])
def test_restoring_moves_no_training_data_to_the_devices(tmp_path, monkeypatch,
                                                         optimizer):
  """Evaluation restores a group's state into the shapes its solver gives
  (jax.eval_shape): the training set stays on the host."""
  from softmax_jax.hosts import distributed  # pylint: disable=g-import-not-at-top
  ds = datasets.hold_out_validation(synthetic_dataset(), 0.25)
  configs = sweep.expand(
      dataclasses.replace(TINY, optimizer=optimizer, loss="l2",
                          loss_input="logits"),
      sweep.axis("weight_decay", [1e-3, 1e-2]))
  trained = train.train_configs(configs, ds, checkpoint_dir=tmp_path)
  put = []  # the leading size of each array put on the devices
  original = distributed.put
  monkeypatch.setattr(distributed, "put", lambda a, *rest: put.append(
      np.shape(a)[:1]) or original(a, *rest))
  restored = train.train_configs(configs, ds, checkpoint_dir=tmp_path,
                                 restore_only=True)
  assert put and (len(ds.x_train),) not in put, put
  _assert_same_runs(trained, restored)


def test_eval_after_a_stop_between_evaluations(tmp_path, capsys,
                                               monkeypatch):
  """A sweep stopped (Ctrl-C) at an epoch --eval_every skipped: eval and
  predict score the restored models, as training would have scored that
  epoch, and say so."""
  import contextlib  # pylint: disable=g-import-not-at-top

  from softmax_jax import runner  # pylint: disable=g-import-not-at-top
  from softmax_jax.errors import Interrupted  # pylint: disable=g-import-not-at-top
  write_cache(tmp_path / "data", synthetic_dataset(noise=60.0))
  base = dataclasses.replace(TINY, data_dir=str(tmp_path / "data"), epochs=10)
  asked = contextlib.contextmanager(lambda: (yield lambda: True))
  monkeypatch.setattr(runner, "_stop_requests", asked)  # after epoch 1
  runs = {}
  for every in (7, 1):
    configs = sweep.expand(dataclasses.replace(base, eval_every=every),
                           sweep.axis("lr", [0.1, 0.3]))
    with pytest.raises(Interrupted, match="stopped after epoch 1"):
      runner.run(configs, tmp_path / f"every{every}", verbose=False,
                 checkpoint_every=0, figures=False)
    runs[every] = train.train_configs(
        configs, datasets.hold_out_validation(datasets.load(
            "fashion_mnist", tmp_path / "data"), 1 / 6),
        checkpoint_dir=tmp_path / f"every{every}" / "checkpoints",
        restore_only=True)
  assert "val_accuracy" not in runs[7].runs[0].history[-1]  # skipped
  capsys.readouterr()
  summary = runner.evaluate(tmp_path / "every7")
  out = capsys.readouterr().out
  assert ("note: epoch 1, where it stopped, was not evaluated in training "
          "(--eval_every=7): its validation and test scores are computed "
          "now from that epoch's checkpoint") in out
  assert "has not finished" in out
  scored = runs[1].runs  # the same epoch, scored in training
  best = max(range(2), key=lambda i: (scored[i].history[-1]["val_accuracy"],
                                      -i))
  assert summary["best"]["config_id"] == best
  for key in ("val_accuracy", "test_accuracy"):
    assert summary[key] == pytest.approx(scored[best].history[-1][key])
  assert len(runner.predict(tmp_path / "every7", [str(_row(tmp_path))])) == 1


def _row(tmp_path):
  """A .npy of one row of 16 pixels."""
  path = tmp_path / "row.npy"
  np.save(path, np.full((1, 16), 128, np.uint8))
  return path


def test_a_run_stopped_in_its_report_stage_redoes_it(tmp_path):
  """summary.json is written before the figures (so no figure can lose it)
  and again at the end with report_seconds: a run stopped in between is not
  taken as finished, and the same command draws the report again."""
  from softmax_jax import runner  # pylint: disable=g-import-not-at-top
  data_dir = tmp_path / "data"
  write_cache(data_dir, synthetic_dataset())
  config = dataclasses.replace(TINY, data_dir=str(data_dir))
  workdir = tmp_path / "run"
  runner.run(config, workdir, verbose=False)
  summary = json.loads((workdir / "summary.json").read_text())
  del summary["report_seconds"]
  (workdir / "summary.json").write_text(json.dumps(summary))
  (workdir / "report.md").unlink()
  again = runner.run(config, workdir, verbose=False)
  assert (workdir / "report.md").exists() and "report_seconds" in again
  assert again["test_accuracy"] == summary["test_accuracy"]
