"""Using a trained run: --mode=eval, --mode=predict, TensorBoard, and their errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, synthetic_dataset, write_cache


def launch(*args):
  return subprocess.run([sys.executable, str(ROOT / "launch.py"), *args],
                        capture_output=True, text=True, cwd=ROOT, timeout=300)


def assert_one_line_error(r, expected):
  lines = [l for l in r.stderr.splitlines() if l.strip()]
  assert r.returncode == 2, (r.returncode, r.stderr)
  assert len(lines) == 1 and expected in lines[0], r.stderr
  assert "Traceback" not in r.stdout + r.stderr


@pytest.fixture(scope="module")
def dataset():
  return synthetic_dataset()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, dataset):
  """A finished run on tiny data: (workdir, data_dir)."""
  data_dir = tmp_path_factory.mktemp("data")
  write_cache(data_dir, dataset)
  workdir = tmp_path_factory.mktemp("runs") / "run"
  r = launch(f"--data_dir={data_dir}", f"--workdir={workdir}", "--epochs=3",
             "--batch_size=32", "--lr=0.5")
  assert r.returncode == 0, r.stderr
  return workdir, data_dir


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
  for line, label in zip(lines[1:], dataset.y_test[:3]):
    top = line.split(": ", 1)[1].split(", ")
    assert len(top) == 3
    assert top[0].startswith(f"class{label} ")  # separable data: right
    probs = [float(t.rsplit(" ", 1)[1]) for t in top]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1.0001
  # The PNG, resized down again, is still recognized.
  assert lines[0].split(": ", 1)[1].startswith(f"class{dataset.y_test[0]} ")


def test_tensorboard_event_files(trained):
  workdir, _ = trained
  events = list((workdir / "tensorboard" / "config_0").glob("events.out.tfevents.*"))
  assert events and events[0].stat().st_size > 0


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
