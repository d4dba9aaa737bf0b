"""Using a trained run: --mode=eval, --mode=predict, TensorBoard, and their
errors."""

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import assert_one_line_error
from conftest import ROOT
from conftest import synthetic_dataset
from conftest import write_cache
from softmax_jax.outputs import tensorboard


def launch(*args):
  return subprocess.run([sys.executable, str(ROOT / "launch.py"), *args],
                        capture_output=True, text=True, cwd=ROOT, timeout=300,
                        check=False)


@pytest.fixture(scope="module")
def dataset():
  return synthetic_dataset()


def _train_tiny(tmp_path_factory, dataset, *flags):
  """Trains on tiny data with `flags`: (workdir, data_dir, stdout)."""
  data_dir = tmp_path_factory.mktemp("data")
  write_cache(data_dir, dataset)
  workdir = tmp_path_factory.mktemp("runs") / "run"
  r = launch(f"--data_dir={data_dir}", f"--workdir={workdir}", "--epochs=3",
             "--batch_size=32", "--lr=0.5", *flags)
  assert r.returncode == 0, r.stderr
  return workdir, data_dir, r.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory, dataset):
  """A finished run on tiny data: (workdir, data_dir)."""
  workdir, data_dir, _ = _train_tiny(tmp_path_factory, dataset)
  return workdir, data_dir


@pytest.mark.slow
@pytest.mark.gpu_smoke
def test_eval_reproduces_the_summary_and_redraws(trained):
  workdir, _ = trained
  summary = json.loads((workdir / "summary.json").read_text())
  (workdir / "reliability.png").unlink()
  r = launch("--mode=eval", f"--workdir={workdir}")
  assert r.returncode == 0, r.stderr
  assert f"test accuracy {summary['test_accuracy']:.4f}: the same" in r.stdout
  assert f"test ECE {summary['ece']:.4f}" in r.stdout
  assert (workdir / "reliability.png").exists()
  assert json.loads((workdir / "summary.json").read_text()) == summary


def test_eval_keeps_the_training_runs_facts_in_the_report(trained):
  workdir, _ = trained
  summary = json.loads((workdir / "summary.json").read_text())
  before = (workdir / "report.md").read_text()
  r = launch("--mode=eval", f"--workdir={workdir}")
  assert r.returncode == 0, r.stderr
  report = (workdir / "report.md").read_text()
  assert report == before
  for label, key in (("compile seconds", "compile_seconds"),
                     ("train seconds (compiled, no compile)", "train_seconds")):
    assert f"| {label} | {summary[key]:.2f} |" in report
  assert f"| date | {summary['date']} |" in report


def test_a_class_absent_from_the_test_set_has_no_accuracy(tmp_path, capsys):
  from softmax_jax import runner  # pylint: disable=g-import-not-at-top
  from softmax_jax.config import Config  # pylint: disable=g-import-not-at-top
  ds = synthetic_dataset(num_classes=3)
  keep = ds.y_test != 2
  path = tmp_path / "data.npz"
  np.savez(path, x_train=ds.x_train, y_train=ds.y_train,
           x_test=ds.x_test[keep], y_test=ds.y_test[keep],
           class_names=np.array(["a", "b", "absent"]))
  workdir = tmp_path / "run"
  summary = runner.run(Config(dataset=f"npz:{path}", batch_size=32, epochs=3,
                              lr=0.5), workdir)
  per_class = summary["per_class_accuracy"]
  assert per_class["absent"] is None
  assert summary["balanced_accuracy"] == pytest.approx(
      (per_class["a"] + per_class["b"]) / 2)
  written = json.loads((workdir / "summary.json").read_text())
  assert written["per_class_accuracy"]["absent"] is None
  assert "| absent | n/a |" in (workdir / "report.md").read_text()
  assert any(line.split() == ["absent", "n/a"]
             for line in capsys.readouterr().out.splitlines())


@pytest.mark.gpu_smoke
def test_predict_on_a_generated_png_and_npy(trained, dataset, tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  workdir, _ = trained
  images = dataset.x_test[:3].reshape(3, 4, 4)
  png = tmp_path / "first.png"
  # A larger RGB picture of the first test image: converted and resized back.
  Image.fromarray(np.repeat(np.repeat(images[0], 8, 0), 8, 1)).convert(
      "RGB").save(png)
  npy = tmp_path / "three.npy"
  np.save(npy, images)
  r = launch("--mode=predict", f"--workdir={workdir}", f"--images={png},{npy}")
  assert r.returncode == 0, r.stderr
  lines = r.stdout.strip().splitlines()
  assert len(lines) == 4 and lines[0].startswith(f"{png}: ")
  assert lines[1].startswith(f"{npy}[0]: ")
  for line, label in zip(lines[1:], dataset.y_test[:3], strict=True):
    top = line.split(": ", 1)[1].split(", ")
    assert len(top) == 3
    assert top[0].startswith(f"class{label} ")  # separable data: right
    probs = [float(t.rsplit(" ", 1)[1]) for t in top]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1.0001
  # The PNG, resized down again, is still recognized.
  assert lines[0].split(": ", 1)[1].startswith(f"class{dataset.y_test[0]} ")


def test_tensorboard_event_files(trained):
  workdir, _ = trained
  events = list((workdir / "tensorboard" / "config_0").glob(
      "events.out.tfevents.*"))
  assert events and events[0].stat().st_size > 0


@pytest.mark.gpu_smoke
def test_without_tensorboardx_a_run_goes_on_without_curves(
    tmp_path, monkeypatch, capsys):
  """A machine with only what training needs (a GPU image without
  tensorboardX): one note, no curves, no failure."""
  monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import fails
  writer = tensorboard.Writer(tmp_path / "tensorboard")
  for epoch in (1, 2):
    writer.epoch(0, {"epoch": epoch, "train_loss": 0.5})
  writer.close()
  assert not (tmp_path / "tensorboard").exists()
  notes = capsys.readouterr().err.splitlines()
  assert len(notes) == 1 and "tensorboardX is not installed" in notes[0]


@pytest.mark.slow
def test_eval_and_predict_errors(trained, tmp_path):
  workdir, _ = trained
  empty = tmp_path / "empty"
  empty.mkdir()
  assert_one_line_error(launch("--mode=eval", f"--workdir={empty}"),
                        "holds no run")
  assert_one_line_error(launch("--mode=eval"), "needs --workdir")
  assert_one_line_error(launch("--mode=predict", f"--workdir={workdir}"),
                        "needs --images")
  text = tmp_path / "notes.png"
  text.write_text("not an image")
  assert_one_line_error(launch("--mode=predict", f"--workdir={workdir}",
                               f"--images={text}"), "is not a readable image")
  wrong = tmp_path / "wrong.npy"
  np.save(wrong, np.zeros((2, 5, 5), np.uint8))
  assert_one_line_error(launch("--mode=predict", f"--workdir={workdir}",
                               f"--images={wrong}"), "has shape (2, 5, 5)")
  assert_one_line_error(launch("--mode=predict", f"--workdir={workdir}",
                               f"--images={tmp_path / 'missing.png'}"),
                        "no such file")


def test_eval_with_every_checkpoint_corrupted(trained, tmp_path):
  import shutil  # pylint: disable=g-import-not-at-top
  workdir, _ = trained
  copy = tmp_path / "copy"
  shutil.copytree(workdir, copy)
  for root, _, files in os.walk(copy / "checkpoints"):
    for name in files:
      (open(os.path.join(root, name), "wb")).close()
  assert_one_line_error(launch("--mode=eval", f"--workdir={copy}"),
                        "no readable checkpoint")


@pytest.mark.slow
def test_colour_images_end_to_end(tmp_path):
  """RGB data: trained, evaluated, drawn, and predicted from a colour PNG."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  from softmax_jax import runner  # pylint: disable=g-import-not-at-top
  from softmax_jax.config import Config  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
  y = rng.integers(0, 3, 90)
  x = np.broadcast_to(colours[y][:, None, None, :], (90, 8, 8, 3)).copy()
  path = tmp_path / "rgb.npz"
  np.savez(path, x_train=x[:60], y_train=y[:60], x_test=x[60:], y_test=y[60:],
           class_names=np.array(["red", "green", "blue"]))
  workdir = tmp_path / "run"
  summary = runner.run(Config(dataset=f"npz:{path}", batch_size=16, epochs=5,
                              lr=0.5), workdir, verbose=False)
  assert summary["test_accuracy"] == 1.0
  assert ((workdir / "predictions.png").exists()
          and (workdir / "weights.png").exists())
  png = tmp_path / "blue.png"
  Image.new("RGB", (20, 20), (0, 0, 255)).save(png)
  [(name, top)] = runner.predict(workdir, [str(png)])
  assert name == str(png) and top[0][0] == "blue"


def test_predict_names_each_row(trained, dataset, tmp_path):
  from softmax_jax import runner  # pylint: disable=g-import-not-at-top
  workdir, _ = trained
  one = tmp_path / "one.npy"
  np.save(one, dataset.x_test[0].reshape(4, 4, 1))  # one image, channel last
  two = tmp_path / "two.npy"
  np.save(two, dataset.x_test[:2].reshape(2, 16))
  names = [name for name, _ in runner.predict(workdir, [str(one), str(two)])]
  assert names == [f"{one}[0]", f"{two}[0]", f"{two}[1]"]


@pytest.mark.slow
def test_params_npz_of_every_model_loads_without_pickle(trained, tmp_path):
  from softmax_jax import model  # pylint: disable=g-import-not-at-top
  from softmax_jax import runner  # pylint: disable=g-import-not-at-top
  from softmax_jax.config import Config  # pylint: disable=g-import-not-at-top
  _, data_dir = trained
  for hidden, phm_n, keys in (("8", 0, {"hidden_0_w", "hidden_0_b", "w", "b"}),
                              ("", 2, {"a", "s", "b"})):
    workdir = tmp_path / f"run{phm_n}"
    runner.run(Config(data_dir=str(data_dir), hidden=hidden, phm_n=phm_n,
                      epochs=1, batch_size=32), workdir, verbose=False,
               figures=False)
    with np.load(workdir / "params.npz", allow_pickle=False) as f:
      assert set(f.files) == keys | {"class_names", "pixels", "image_shape"}
      params = {k: f[k] for k in keys}
      x = f["image_shape"]
    # predict rebuilds the model from params.npz alone
    image = np.random.default_rng(0).integers(0, 256, (1, *x), np.uint8)
    np.save(tmp_path / "image.npy", image)
    [(_, top)] = runner.predict(workdir, [str(tmp_path / "image.npy")])
    logits = np.asarray(model.logits(model.params_from_arrays(params),
                                     image.reshape(1, -1) / 255.0))[0]
    names = json.loads((workdir / "summary.json").read_text())["class_names"]
    assert top[0][0] == names[int(np.argmax(logits))]


@pytest.mark.slow
def test_data_problems_are_found_before_the_workdir_is_claimed(trained,
                                                               tmp_path):
  _, data_dir = trained
  workdir = tmp_path / "run"
  r = launch(f"--data_dir={data_dir}", f"--workdir={workdir}",
             "--batch_size=100000")
  assert_one_line_error(r, "larger than the training set")
  assert not (workdir / "configs.json").exists()
  assert launch(f"--data_dir={data_dir}", f"--workdir={workdir}",
                "--batch_size=32", "--epochs=1").returncode == 0


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, dataset):
  """A run trained with --calibrate on tiny data: its workdir."""
  workdir, _, stdout = _train_tiny(tmp_path_factory, dataset,
                                   "--val_fraction=0.25", "--calibrate")
  assert "temperature scaling: T = " in stdout
  return workdir


@pytest.mark.slow
def test_calibrate_reports_its_temperature_and_keeps_it(calibrated):
  summary = json.loads((calibrated / "summary.json").read_text())
  c = summary["calibration"]
  assert set(c) == {"temperature", "val_nll_before", "val_nll_after",
                    "test_nll_before", "test_nll_after", "test_ece_before",
                    "test_ece_after"}
  assert c["temperature"] > 0 and c["val_nll_after"] <= c["val_nll_before"]
  assert c["test_nll_before"] == pytest.approx(summary["test_nll"], rel=1e-5)
  assert c["test_ece_before"] == pytest.approx(summary["ece"], rel=1e-5)
  with np.load(calibrated / "params.npz") as f:
    assert float(f["temperature"]) == pytest.approx(c["temperature"])
  assert "temperature T (fit on validation)" in (
      calibrated / "report.md").read_text()
  from softmax_jax import runner  # pylint: disable=g-import-not-at-top
  again = runner.evaluate(calibrated, verbose=False)  # fits T again
  assert again["calibration"] == pytest.approx(c, rel=1e-5)


def test_predict_on_an_unfinished_calibrated_run_calibrates(calibrated,
                                                           dataset, tmp_path):
  """A --calibrate run without params.npz and summary.json (stopped before
  its end): predict restores the checkpoint's model and fits its
  temperature as the finished run did, not T = 1 unsaid."""
  from softmax_jax import runner  # pylint: disable=g-import-not-at-top
  unfinished = tmp_path / "unfinished"
  shutil.copytree(calibrated, unfinished)
  t = json.loads((unfinished / "summary.json").read_text())[
      "calibration"]["temperature"]
  (unfinished / "summary.json").unlink()
  (unfinished / "params.npz").unlink()
  npy = tmp_path / "two.npy"
  np.save(npy, dataset.x_test[:2].reshape(2, 4, 4))
  _, temperature = runner.predict_calibrated(unfinished, [str(npy)])
  assert temperature == pytest.approx(t, rel=1e-4)


def test_predict_uses_the_temperature(calibrated, dataset, tmp_path):
  npy = tmp_path / "two.npy"
  images = dataset.x_test[:2].reshape(2, 4, 4)
  np.save(npy, images)
  r = launch("--mode=predict", f"--workdir={calibrated}", f"--images={npy}")
  assert r.returncode == 0, r.stderr
  note, *lines = r.stdout.strip().splitlines()
  t = json.loads((calibrated / "summary.json").read_text())[
      "calibration"]["temperature"]
  assert note.startswith("probabilities calibrated by temperature scaling: "
                         f"T = {t:.4g}")
  with np.load(calibrated / "params.npz") as f:
    o = (images.reshape(2, 16) / 255.0) @ f["w"] + f["b"]
  def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)

  p, uncalibrated = softmax(o / t), softmax(o)
  assert np.abs(p - uncalibrated).max() > 0.01  # T makes a difference here
  for line, row in zip(lines, p, strict=True):
    first = line.split(": ", 1)[1].split(", ")[0]
    assert float(first.rsplit(" ", 1)[1]) == pytest.approx(row.max(),
                                                           abs=1e-3)


def test_a_calibrated_sweep_has_a_temperature_per_configuration(tmp_path,
                                                                 dataset):
  from softmax_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from softmax_jax import runner  # pylint: disable=g-import-not-at-top
  from softmax_jax import sweep  # pylint: disable=g-import-not-at-top
  write_cache(tmp_path / "data", dataset)
  base = config_lib.Config(data_dir=str(tmp_path / "data"), epochs=2,
                           batch_size=32, calibrate=True)
  configs = sweep.expand(base, sweep.axis("lr", [0.05, 0.5]))
  summary = runner.run(configs, tmp_path / "run", verbose=False, figures=False)
  rows = list(csv.DictReader((tmp_path / "run" / "results.csv").open()))
  temperatures = [float(r["temperature"]) for r in rows]
  assert all(t > 0 for t in temperatures) and len(set(temperatures)) == 2
  assert all(0 <= float(r["ece_calibrated"]) <= 1 for r in rows)
  best = summary["best"]["config_id"]
  assert summary["calibration"]["temperature"] == pytest.approx(
      temperatures[best], rel=1e-5)


def test_a_workdir_from_before_a_new_field_is_still_the_same_run(trained,
                                                                 tmp_path):
  """configs.json written before --calibrate and --track_objective existed:
  the same command finds its run (the fields at their defaults)."""
  workdir, data_dir = trained
  old = tmp_path / "old"
  shutil.copytree(workdir, old)
  (old / ".lock").unlink(missing_ok=True)
  configs = json.loads((old / "configs.json").read_text())
  for c in configs:
    del c["calibrate"], c["track_objective"]
  (old / "configs.json").write_text(json.dumps(configs))
  r = launch(f"--data_dir={data_dir}", f"--workdir={old}", "--epochs=3",
             "--batch_size=32", "--lr=0.5")
  assert r.returncode == 0, r.stderr
  assert "holds this run, finished" in r.stdout


@pytest.mark.slow
def test_a_diverged_run_or_a_repeated_configuration_is_refused(tmp_path):
  """eval and predict on a run whose training diverged say so (they used to
  print confident scores of a NaN model); a sweep listing a value twice is
  refused before training."""
  from softmax_jax import runner  # pylint: disable=g-import-not-at-top
  from softmax_jax.config import Config  # pylint: disable=g-import-not-at-top
  from softmax_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  ds = synthetic_dataset(n_train=200, n_test=50, num_features=4,
                         num_classes=3)
  path = tmp_path / "d.npz"
  np.savez(path, x_train=ds.x_train, y_train=ds.y_train, x_test=ds.x_test,
           y_test=ds.y_test)
  config = Config(dataset=f"npz:{path}", loss="l2", loss_input="logits",
                  lr=1e4, epochs=3, batch_size=20)
  workdir = tmp_path / "run"
  with pytest.raises(UserError, match="diverged"):
    runner.run(config, workdir, verbose=False, checkpoint_every=0,
               figures=False)
  rows = tmp_path / "rows.npy"
  np.save(rows, ds.x_test[:2])
  for call in (lambda: runner.evaluate(workdir, verbose=False),
               lambda: runner.predict(workdir, [str(rows)])):
    with pytest.raises(UserError, match="has no usable model: training "
                       "diverged in epoch"):
      call()
  sweep = [Config(**{**config.__dict__, "lr": lr}) for lr in (1e4, 1e5)]
  with pytest.raises(UserError, match=r"all 2 configurations diverged.*; "
                     r"each one's status and last scores are in .*results.csv"):
    runner.run(sweep, tmp_path / "all", verbose=False, figures=False)
  with open(tmp_path / "all" / "results.csv") as f:
    assert [r["status"] for r in csv.DictReader(f)] == ["diverged"] * 2
  with pytest.raises(UserError, match="configurations 0 and 1 of the sweep "
                     "are the same"):
    runner.run([Config(**{**config.__dict__, "lr": 0.1})] * 2,
               tmp_path / "twice", verbose=False, figures=False)
  assert not (tmp_path / "twice").exists()


def test_the_advice_to_resume_names_a_workdir_the_run_made():
  from pathlib import Path  # pylint: disable=g-import-not-at-top

  from softmax_jax import runner  # pylint: disable=g-import-not-at-top
  made = Path("runs/20261122-095147-xent")
  assert runner._again(made, named=False) == (  # pylint: disable=protected-access
      f"the same command with --workdir={made} again")
  assert runner._again(made, named=True) == "the same command again"  # pylint: disable=protected-access


def test_the_library_and_the_command_line_give_one_summary(tmp_path):
  """train.train_and_evaluate's summary is summary.json's (one
  outcome.conclude), --calibrate included: the same keys, and the same
  numbers but for the run's times and date."""
  from softmax_jax import runner  # pylint: disable=g-import-not-at-top
  from softmax_jax import train  # pylint: disable=g-import-not-at-top
  from softmax_jax.config import Config  # pylint: disable=g-import-not-at-top
  from softmax_jax.data import datasets  # pylint: disable=g-import-not-at-top
  write_cache(tmp_path / "data", synthetic_dataset(noise=60.0))
  config = Config(data_dir=str(tmp_path / "data"), epochs=2, batch_size=32,
                  val_fraction=0.25, calibrate=True)
  command_line = runner.run(config, tmp_path / "run", verbose=False,
                            figures=False)
  dataset = datasets.hold_out_validation(datasets.load("fashion_mnist",
                                                       tmp_path / "data"), 0.25)
  library = train.train_and_evaluate(config, dataset).summary
  assert set(library) == set(command_line) - {"report_seconds"}
  timing = {"train_seconds", "compile_seconds", "date"}
  assert {k: v for k, v in library.items() if k not in timing} == {
      k: v for k, v in command_line.items()
      if k not in timing | {"report_seconds"}}
  assert library["calibration"]["temperature"] > 0


def test_the_title_names_the_settings_the_solver_reads():
  from softmax_jax import runner  # pylint: disable=g-import-not-at-top
  from softmax_jax.config import Config  # pylint: disable=g-import-not-at-top
  full = runner._title(Config(optimizer="lbfgs", weight_decay=0.01))  # pylint: disable=protected-access
  assert "weight decay 0.01" in full and "lr" not in full
  assert "lr 0.1, batch 256" in runner._title(Config())  # pylint: disable=protected-access
