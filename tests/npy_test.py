"""npy:DIR: memory-mapped arrays in every feature dtype, an optional validation
split and class names, every validation error (also in the last chunk only)."""

import contextlib
import json

import ml_dtypes
import numpy as np
import pytest

from softmax_jax import runner
from softmax_jax.config import Config
from softmax_jax.data import datasets
from softmax_jax.data import user_data
from softmax_jax.errors import DataError
from softmax_jax.errors import Interrupted
from softmax_jax.errors import UserError


def _folder(tmp_path, dtype=np.float32, val=False, names=None, n=120, d=6,
            k=3, **replace):
  rng = np.random.default_rng(0)
  centers = rng.normal(0, 3, (k, d))

  def sample(m):
    y = rng.integers(0, k, m)
    return (centers[y] + rng.normal(0, 1, (m, d))).astype(dtype), y

  arrays = dict(zip(("x_train", "y_train"), sample(n), strict=True))
  arrays.update(zip(("x_test", "y_test"), sample(n // 2), strict=True))
  if val:
    arrays.update(zip(("x_val", "y_val"), sample(n // 3), strict=True))
  arrays.update(replace)
  folder = tmp_path / "data"
  folder.mkdir(exist_ok=True)
  for name, array in arrays.items():
    if array is not None:
      np.save(folder / f"{name}.npy", array)
  if names is not None:
    (folder / "class_names.txt").write_text("\n".join(names) + "\n")
  return folder, arrays


@pytest.mark.gpu_smoke
@pytest.mark.parametrize("dtype", [np.float32, np.float16, ml_dtypes.bfloat16])
def test_npy_is_memory_mapped_in_each_feature_dtype(tmp_path, dtype):
  folder, arrays = _folder(tmp_path, dtype)
  ds = datasets.load(f"npy:{folder}")
  assert isinstance(ds.x_train, np.memmap) and ds.x_train.dtype == dtype
  assert ds.pixels is None and ds.num_classes == 3
  np.testing.assert_array_equal(ds.x_test, arrays["x_test"])
  summary = runner.run(Config(dataset=f"npy:{folder}", batch_size=20, epochs=4,
                              lr=0.5), tmp_path / "run", verbose=False,
                       figures=False)
  assert summary["test_accuracy"] > 0.9


def test_npy_uint8_images_are_pixels(tmp_path):
  images = np.random.default_rng(0).integers(0, 256, (120, 4, 4), np.uint8)
  folder, _ = _folder(tmp_path, x_train=images, x_test=images[:60])
  ds = datasets.load(f"npy:{folder}")
  assert ds.pixels == "0-255" and ds.image_shape == (4, 4)
  assert isinstance(ds.x_train, np.memmap) and ds.x_train.shape == (120, 16)


@pytest.mark.slow
def test_npy_validation_split_and_class_names(tmp_path):
  folder, arrays = _folder(tmp_path, val=True, names=["ant", "bee", "cat"])
  ds = datasets.load(f"npy:{folder}")
  assert ds.class_names == ("ant", "bee", "cat")
  np.testing.assert_array_equal(ds.y_val, arrays["y_val"])
  config = Config(dataset=f"npy:{folder}", batch_size=20, epochs=2)
  summary = runner.run([config, Config(**{**config.__dict__, "lr": 0.5})],
                       tmp_path / "sweep", verbose=False)
  assert summary["num_train"] == 120 and summary["num_val"] == 40  # no hold-out
  assert "ranking (by validation accuracy)" in (
      tmp_path / "sweep" / "report.md").read_text()  # (no seeds to average)
  assert json.loads((tmp_path / "sweep" / "summary.json").read_text())[
      "class_names"] == ["ant", "bee", "cat"]
  with pytest.raises(UserError, match="has its own validation split"):
    runner.run(Config(**{**config.__dict__, "val_fraction": 0.2}),
               tmp_path / "other", verbose=False)


def test_the_refit_also_trains_on_the_datas_own_validation_split(tmp_path):
  """--refit (and --val_fraction=0) trains on x_train and x_val together."""
  folder, arrays = _folder(tmp_path, val=True)
  config = Config(dataset=f"npy:{folder}", batch_size=20, epochs=2)
  summary = runner.run([config, Config(**{**config.__dict__, "lr": 0.5})],
                       tmp_path / "sweep", refit=True, verbose=False,
                       figures=False)
  refit = json.loads(
      (tmp_path / "sweep" / "refit" / "summary.json").read_text())
  assert summary["num_train"] == 120 and refit["num_train"] == 160
  assert "num_val" not in refit
  merged = datasets.without_validation(datasets.load(f"npy:{folder}"))
  np.testing.assert_array_equal(merged.x_train, np.concatenate(
      [arrays["x_train"], arrays["x_val"]]))
  np.testing.assert_array_equal(merged.y_train, np.concatenate(
      [arrays["y_train"], arrays["y_val"]]))


def _bad(tmp_path, **replace):
  folder, _ = _folder(tmp_path, **replace)
  return f"npy:{folder}"


x_nan_last = np.zeros((120, 6), np.float32)
x_nan_last[117, 4] = np.inf
BAD = {
    "missing array": (dict(y_test=None), "has no y_test.npy"),
    "non-finite in the last chunk only": (
        dict(x_train=x_nan_last), "x_train row 117, column 4 is inf"),
    "fractional label": (dict(y_test=np.r_[0.5, np.zeros(59)]),
                         "y_test[0] = 0.5 is not a label"),
    "negative label": (dict(y_train=np.r_[-1, np.zeros(119, int)]),
                       "y_train[0] = -1 is not a label"),
    "lengths differ": (dict(y_train=np.zeros(119, int)),
                       "x_train has 120 rows but y_train has shape (119,)"),
    "feature counts differ": (dict(x_test=np.zeros((60, 5), np.float32)),
                              "x_train rows have shape (6,) but x_test "
                              "rows (5,)"),
    "x_val without y_val": (dict(x_val=np.zeros((10, 6), np.float32)),
                            "has x_val.npy but not its pair"),
    "text features": (dict(x_train=np.array([["a"] * 6] * 120)), "not numbers"),
    "a typo for a label": (dict(y_train=np.r_[10**9, np.zeros(119, int)]),
                           "y_train[0] = 1000000000 makes 1,000,000,001 "
                           "classes for 180 examples"),
    "no features": (dict(x_train=np.zeros((120, 0)), x_test=np.zeros((60, 0))),
                    "its rows hold no features"),
    "complex features": (dict(x_train=np.zeros((120, 6), np.complex64)),
                         "x_train holds complex numbers"),
    "uint8 and [0, 1] splits": (dict(x_train=np.zeros((120, 6), np.uint8),
                                     x_test=np.full((60, 6), 0.5, np.float32)),
                                "x_train holds uint8 pixels (0-255) but x_test "
                                "values in [0, 1]"),
    "a name twice": (dict(names=["cat", "dog", "cat"]),
                     "the class name 'cat' is given twice (classes 0 and 2)"),
    "a blank name": (dict(names=["cat", "", "dog"]), "class name 1 is blank"),
    "no names": (dict(names=[]), "class_names.txt is empty"),
    "a weight short": (dict(w_train=np.ones(119)),
                       "w_train has shape (119,) for 120 rows; give one "
                       "weight per training row"),
    "a negative weight": (dict(w_train=np.r_[np.ones(119), -1.0]),
                          "w_train[119] = -1.0; weights must be finite and "
                          "non-negative"),
    "a NaN weight": (dict(w_train=np.r_[np.nan, np.ones(119)]),
                     "w_train[0] = nan"),
    "no weight at all": (dict(w_train=np.zeros(120)),
                         "w_train is 0 everywhere"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_npy_is_refused_saying_where(tmp_path, monkeypatch, case):
  monkeypatch.setattr(user_data, "SCAN_ROWS", 50)  # chunks 0-49, 50-99, 100-119
  replace, message = BAD[case]
  with pytest.raises(DataError) as e:
    datasets.load(_bad(tmp_path, **replace))
  assert "\n" not in str(e.value) and message in str(e.value)


def test_class_names_must_cover_the_labels(tmp_path):
  folder, _ = _folder(tmp_path, names=["a", "b"])
  with pytest.raises(DataError, match=r"outside \[0, 2\)"):
    datasets.load(f"npy:{folder}")


def test_not_a_folder_or_not_an_npy(tmp_path):
  with pytest.raises(DataError, match="no such folder"):
    datasets.load(f"npy:{tmp_path / 'nowhere'}")
  (tmp_path / "file").write_text("")
  with pytest.raises(DataError, match="a file, not a folder"):
    datasets.load(f"npy:{tmp_path / 'file'}")
  folder, _ = _folder(tmp_path)
  (folder / "x_test.npy").write_bytes(b"not an npy file")
  with pytest.raises(DataError, match=r"is not a readable .npy file"):
    datasets.load(f"npy:{folder}")


def test_a_model_trained_on_feature_rows_predicts_on_npy_rows(tmp_path):
  """A linear probe: trained on embeddings (rows without an image shape), it
  classifies new rows of the same width; an image file is refused."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  folder, arrays = _folder(tmp_path, names=["cat", "dog", "eel"])
  workdir = tmp_path / "run"
  runner.run(Config(dataset=f"npy:{folder}", epochs=3, batch_size=20),
             workdir, verbose=False)
  rows = arrays["x_test"][:4]
  np.save(tmp_path / "rows.npy", rows)
  np.save(tmp_path / "row.npy", rows[0])
  predicted = runner.predict(workdir, [str(tmp_path / "rows.npy"),
                                       str(tmp_path / "row.npy")])
  with np.load(workdir / "params.npz") as p:
    best = np.argmax(rows @ p["w"] + p["b"], axis=1)
  names = ["cat", "dog", "eel"]
  assert [top[0][0] for _, top in predicted] == [
      *(names[k] for k in best), names[best[0]]]
  for _, top in predicted:
    assert sum(p for _, p in top) == pytest.approx(1, abs=1e-5)
  assert predicted[4][0] == f"{tmp_path / 'row.npy'}[0]"
  wide = tmp_path / "wide.npy"
  np.save(wide, np.zeros((2, 7), np.float32))
  with pytest.raises(UserError, match=r"has shape \(2, 7\); expected \(6,\)"):
    runner.predict(workdir, [str(wide)])
  png = tmp_path / "a.png"
  Image.new("L", (4, 4)).save(png)
  with pytest.raises(UserError, match="trained on rows of 6 features, not "
                     "images"):
    runner.predict(workdir, [str(png)])


@pytest.mark.slow
def test_names_with_dollars_and_two_channel_images_lose_no_output(
    tmp_path, caplog):
  """A class name matplotlib could read as TeX ("save $$") is drawn as
  written; images of 2 channels, which no picture can show, get no
  pictures; and a figure that fails anyway costs only itself."""
  images = np.random.default_rng(0).integers(0, 256, (120, 4, 4, 2), np.uint8)
  folder, _ = _folder(tmp_path, x_train=images, x_test=images[:60],
                      names=["full price", "save $$", "$x^"])
  summary = runner.run(Config(dataset=f"npy:{folder}", batch_size=20,
                              epochs=1), tmp_path / "run", verbose=False)
  run = tmp_path / "run"
  assert (run / "params.npz").exists() and (run / "report.md").exists()
  assert summary["class_names"] == ["full price", "save $$", "$x^"]
  assert (run / "confusion.png").exists()
  assert not (run / "predictions.png").exists()

  def fail(*args, **kwargs):
    raise ValueError("no figure today")

  import softmax_jax.outputs.plotting  # pylint: disable=g-import-not-at-top
  with pytest.MonkeyPatch.context() as m:
    m.setattr(softmax_jax.outputs.plotting, "plot_confusion", fail)
    runner.run(Config(dataset=f"npy:{folder}", batch_size=20, epochs=1),
               tmp_path / "again", verbose=False)
  again = tmp_path / "again"
  assert (again / "params.npz").exists() and (again / "summary.json").exists()
  assert not (again / "confusion.png").exists()
  assert "confusion.png" not in (again / "report.md").read_text()
  assert "confusion.png was not drawn (ValueError: no figure today)" in (
      caplog.text)


@pytest.mark.slow
def test_predict_needs_only_the_run_and_a_changed_data_set_is_refused(
    tmp_path, monkeypatch):
  """params.npz holds all predict needs (the class names, the standardization,
  the temperature): the same answers with the data moved away. Eval and a
  resume on data of another shape are refused in the data's words (not as
  unreadable checkpoints), and a relative --dataset is recorded absolute."""
  folder, arrays = _folder(tmp_path, val=True, names=["cat", "dog", "eel"])
  monkeypatch.chdir(tmp_path)
  config = Config(dataset="npy:data", epochs=2, batch_size=20, lr=0.5,
                  standardize=True, calibrate=True)
  workdir = tmp_path / "run"
  runner.run(config, workdir, verbose=False, figures=False)
  recorded = json.loads((workdir / "configs.json").read_text())[0]
  assert recorded["dataset"] == f"npy:{folder}"
  rows = tmp_path / "rows.npy"
  np.save(rows, arrays["x_test"][:5] * 3 + 1)
  before = runner.predict(workdir, [str(rows)])
  assert len({top[0][0] for _, top in before} - {"cat", "dog", "eel"}) == 0
  moved = folder.rename(tmp_path / "elsewhere")
  assert runner.predict(workdir, [str(rows)]) == before
  folder = moved.rename(folder)

  np.save(folder / "y_train.npy", arrays["y_train"] % 2)  # same shapes
  (folder / "class_names.txt").write_text("cat\ndog\n")
  for y in ("y_test", "y_val"):
    np.save(folder / f"{y}.npy", arrays[y] % 2)
  with pytest.raises(UserError, match=r"not the one the run .* was started "
                     r'on \(class_names \["cat", "dog", "eel"\], now '
                     r'\["cat", "dog"\]\)'):
    runner.evaluate(workdir, verbose=False)
  with pytest.raises(UserError, match="not the one the run"):
    runner.run(config, workdir, verbose=False, checkpoint_every=0,
               figures=False)
  assert runner.predict(workdir, [str(rows)]) == before


def test_data_changed_in_its_values_alone_is_refused(tmp_path):
  """Data regenerated with the same shapes and classes: its fingerprint
  (labels, a sample of rows) tells, for a resume, for the same command on
  a finished run and for eval; a copy of the same values is the same
  data."""
  folder, arrays = _folder(tmp_path, val=True)
  config = Config(dataset=f"npy:{folder}", epochs=3, batch_size=20, lr=0.5)
  finished, stopped = tmp_path / "finished", tmp_path / "stopped"
  runner.run(config, finished, verbose=False, figures=False)
  asked = contextlib.contextmanager(lambda: (yield lambda: True))
  with pytest.MonkeyPatch.context() as m:  # Ctrl-C at once: after epoch 1
    m.setattr(runner, "_stop_requests", asked)
    with pytest.raises(Interrupted, match="stopped after epoch 1"):
      runner.run(config, stopped, verbose=False, checkpoint_every=0,
                 figures=False)
  summary = json.loads((finished / "summary.json").read_text())

  for name in ("x_test", "y_train"):  # the same command again: accepted
    np.save(folder / f"{name}.npy", arrays[name].copy())
  assert runner.run(config, finished, verbose=False, figures=False) == summary
  for name, changed in (("y_train", arrays["y_train"][::-1]),
                        ("x_test", arrays["x_test"] + 1)):
    np.save(folder / f"{name}.npy", changed)
    what = {"y_train": "y_train's labels", "x_test": "x_test's features"}
    message = (rf"not the one the run in .* was started on \(other values in "
               rf"{what[name]} \(the same shape, other data\)\)")
    with pytest.raises(UserError, match=message):  # finished
      runner.run(config, finished, verbose=False, figures=False)
    with pytest.raises(UserError, match=message):  # resumed
      runner.run(config, stopped, verbose=False, figures=False)
    with pytest.raises(UserError, match=message):
      runner.evaluate(finished, verbose=False)
    np.save(folder / f"{name}.npy", arrays[name])  # back as it was
  assert json.loads((finished / "summary.json").read_text()) == summary
  assert runner.evaluate(finished, verbose=False)["test_accuracy"] == (
      summary["test_accuracy"])



@pytest.mark.slow
def test_weights_and_balanced_classes_from_the_command_line(tmp_path):
  """w_train.npy and --class_weight=balanced give the run the objective of
  the estimator with those sample and class weights (one code path)."""
  from softmax_jax import SoftmaxRegression  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(3)
  y = np.r_[np.zeros(90, int), rng.integers(1, 3, 30)]  # class 0: 75 %
  w = rng.uniform(0.5, 2, 120)
  folder, arrays = _folder(tmp_path, y_train=y, w_train=w)
  summary = runner.run(Config(dataset=f"npy:{folder}", optimizer="lbfgs",
                              weight_decay=0.01, class_weight="balanced"),
                       tmp_path / "run", verbose=False, figures=False)
  assert summary["converged"]
  # scikit-learn's balanced weights of w's class sums, W / (K W_k): S = W
  per_class = w.sum() / (3 * np.bincount(y, weights=w))
  total = (w * per_class[y]).sum()  # C = 1 / (wd S)
  fitted = SoftmaxRegression(C=1 / (0.01 * total), class_weight="balanced",
                             tol=1e-6).fit(arrays["x_train"], y,
                                           sample_weight=w)
  loaded = SoftmaxRegression.load(tmp_path / "run")
  np.testing.assert_allclose(loaded.coef_, fitted.coef_, atol=2e-3)
  assert summary["objective"] == pytest.approx(fitted.objective_, rel=1e-5)
