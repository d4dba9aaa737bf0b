"""Sweeps: definitions, grouping, one program per group, equality with single
runs."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from conftest import ROOT
from conftest import synthetic_dataset
from conftest import write_cache
from softmax_jax import config as config_lib
from softmax_jax import runner
from softmax_jax import sweep
from softmax_jax import train
from softmax_jax.config import Config
from softmax_jax.data import datasets
from softmax_jax.errors import UserError
from softmax_jax.outputs import workdir as workdir_lib
from softmax_jax.solvers import lbfgs
from softmax_jax.solvers import minibatch

TINY = Config(batch_size=32, epochs=3, lr=0.5)


def test_flag_lists_make_a_cross_product():
  single, entries = sweep.parse_flag_lists(
      {"loss": "xent,l2", "lr": "0.1, 1", "epochs": "3"})
  assert single == {"epochs": "3"}
  assert entries == [{"loss": "xent", "lr": 0.1}, {"loss": "xent", "lr": 1.0},
                     {"loss": "l2", "lr": 0.1}, {"loss": "l2", "lr": 1.0}]


@pytest.mark.parametrize("texts, message", [
    ({"lr": "0.1,"}, "empty item"),
    ({"lr": "0.1,,1"}, "empty item"),
    ({"lr": "0.1,fast"}, "'fast' is not a number"),
    ({"epochs": "1,2.5"}, "is not an integer"),
    ({"dataset": "mnist,fashion_mnist"}, "--dataset cannot be swept"),
    ({"val_fraction": "0.1,0.2"}, "--val_fraction cannot be swept"),
])
def test_bad_flag_lists(texts, message):
  with pytest.raises(UserError, match=message):
    sweep.parse_flag_lists(texts)


def test_product_and_zipped():
  assert len(sweep.product(sweep.axis("a", [1, 2, 3]),
                           sweep.axis("b", [4, 5]))) == 6
  assert sweep.zipped(sweep.axis("lr", [0.1, 1]),
                      sweep.axis("seed", [0, 1])) == [
                          {"lr": 0.1, "seed": 0}, {"lr": 1, "seed": 1}]
  with pytest.raises(UserError, match="differ in length"):
    sweep.zipped(sweep.axis("lr", [0.1, 1]), sweep.axis("seed", [0]))


def test_build_combines_file_sweep_and_flags():
  file_sweep = sweep.axis("lr", [0.1, 1.0])
  configs = sweep.build(Config(), file_sweep, {"seed": "0,1", "epochs": "2"})
  assert [(c.lr, c.seed, c.epochs) for c in configs] == [
      (0.1, 0, 2), (0.1, 1, 2), (1.0, 0, 2), (1.0, 1, 2)]
  # A single-valued flag overrides the file's axis over that field.
  assert [c.lr for c in sweep.build(Config(), file_sweep,
                                    {"lr": "0.3"})] == [0.3]


def test_expand_validates_every_entry():
  with pytest.raises(UserError, match="cannot sweep dataset"):
    sweep.expand(Config(), [{"dataset": "mnist"}])
  with pytest.raises(UserError, match="--lr must be"):
    sweep.expand(Config(), [{"lr": 0.1}, {"lr": -1.0}])
  with pytest.raises(UserError, match="not a number"):
    sweep.expand(Config(), [{"lr": "fast"}])


def test_loss_sweep_experiment():
  base, entries = config_lib.load_experiment(
      ROOT / "experiments" / "loss_sweep.py")
  configs = sweep.expand(base, entries)
  assert len(configs) == 64
  assert sweep.swept_fields(configs) == ["loss", "lr"]
  assert len(sweep.groups(configs)) == 1


def test_best_linear_experiment_is_one_compiled_sweep():
  base, entries = config_lib.load_experiment(
      ROOT / "experiments" / "best_linear.py")
  configs = sweep.expand(base, entries)
  assert len(configs) == 18 and len(sweep.groups(configs)) == 1
  assert sweep.swept_fields(configs) == ["loss", "lr", "weight_decay"]
  assert (base.optimizer, base.schedule, base.standardize) == (
      "adam", "cosine", True)


def test_clip_probe_experiment_is_one_path():
  """The CLIP protocol: 96 weight decays over 1e-6 .. 1e6, one L-BFGS stack."""
  base, entries = config_lib.load_experiment(
      ROOT / "experiments" / "clip_probe.py")
  configs = sweep.expand(base, entries)
  decays = [c.weight_decay for c in configs]
  assert len(configs) == 96 and len(sweep.groups(configs)) == 1
  assert (min(decays), max(decays)) == (1e-6, 1e6) and decays == sorted(decays)
  assert (base.optimizer == "lbfgs" and base.max_iters == 1000
          and base.standardize)


@pytest.mark.parametrize("source, message", [
    ("from softmax_jax.config import Config\n"
     "def get_config(): return Config()\n"
     "def get_sweep(): return {'lr': [0.1]}\n", "must return a list of dicts"),
    ("from softmax_jax.config import Config\n"
     "def get_config(): return Config()\n"
     "get_sweep = [{'lr': 0.1}]\n", "get_sweep must be a function"),
    ("def get_sweep(): return []\n", "has no get_config"),
])
def test_bad_sweep_files(tmp_path, source, message):
  path = tmp_path / "sweep.py"
  path.write_text(source)
  with pytest.raises(UserError, match=message):
    config_lib.load_experiment(path)


def test_values_share_a_group_and_shapes_split_groups():
  configs = sweep.expand(TINY, sweep.product(
      sweep.axis("loss", ["xent", "huber"]), sweep.axis("lr", [0.1, 1.0]),
      sweep.axis("batch_size", [16, 32])))
  groups = sweep.groups(configs)
  assert len(groups) == 2
  for g in groups:
    assert len({configs[i].batch_size for i in g}) == 1 and len(g) == 4


@pytest.mark.slow
def test_tolerances_and_iteration_limits_are_values_of_one_program():
  """tol and max_iters are traced per configuration (config.VALUE): a
  sweep over them is one group, each configuration stopping at its own."""
  configs = sweep.build(dataclasses.replace(TINY, optimizer="lbfgs"), [],
                        {"tol": "1e-2,1e-6", "max_iters": "5,40"})
  assert len(configs) == 4 and len(sweep.groups(configs)) == 1
  result = train.train_configs(configs, datasets.hold_out_validation(
      synthetic_dataset(noise=60.0), 0.25))
  iterations = {(r.config.tol, r.config.max_iters): r.history[-1]["iterations"]
                for r in result.runs}
  assert iterations[1e-6, 5] == 5 and iterations[1e-6, 40] > 5
  assert iterations[1e-2, 40] < iterations[1e-6, 40]  # converged sooner


@pytest.mark.slow
def test_each_group_is_traced_once(monkeypatch):
  traces = []
  original = minibatch.train_step
  monkeypatch.setattr(minibatch, "train_step",
                      lambda *a, **k: traces.append(1) or original(*a, **k))
  configs = sweep.expand(TINY, sweep.product(
      sweep.axis("loss", ["xent", "l2", "l1", "huber"]),
      sweep.axis("lr", [0.1, 1.0]), sweep.axis("optimizer", ["sgd", "adam"])))
  result = train.train_configs(configs, synthetic_dataset())
  assert result.num_groups == 2 and len(traces) == 2


SWEEP = sweep.product(
    sweep.zipped(sweep.axis("loss", ["xent", "l2", "l1", "huber", "xent"]),
                 sweep.axis("huber_delta", [0.1, 0.1, 0.1, 0.3, 0.1]),
                 sweep.axis("weight_decay", [0.0, 0.0, 0.0, 0.0, 0.01])),
    sweep.zipped(sweep.axis("lr", [0.05, 0.3]), sweep.axis("seed", [0, 3])))


@pytest.mark.slow
@pytest.mark.gpu_smoke
def test_every_sweep_config_equals_its_single_run():
  ds = datasets.hold_out_validation(synthetic_dataset(), 0.25)
  configs = sweep.expand(TINY, SWEEP)
  together = train.train_configs(configs, ds)
  assert together.num_groups == 1
  for config, run in zip(configs, together.runs, strict=True):
    alone = train.train_configs([config], ds).runs[0]
    np.testing.assert_allclose(run.params["w"], alone.params["w"], rtol=1e-5,
                               atol=1e-6)
    for a, b in zip(run.history, alone.history, strict=True):
      assert a.keys() == b.keys()
      for key in a:
        assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (
            config, key)


@pytest.mark.gpu_smoke
def test_a_diverged_config_does_not_disturb_the_others():
  ds = datasets.hold_out_validation(synthetic_dataset(), 0.25)
  base = dataclasses.replace(TINY, loss="l2", loss_input="logits")
  configs = sweep.expand(base, sweep.axis("lr", [0.05, 1e4, 0.2]))
  together = train.train_configs(configs, ds)
  assert [r.status for r in together.runs] == ["ok", "diverged", "ok"]
  assert len(together.runs[1].history) < 3  # stopped recording once diverged
  for i in (0, 2):
    alone = train.train_configs([configs[i]], ds).runs[0]
    np.testing.assert_allclose(together.runs[i].params["w"], alone.params["w"],
                               rtol=1e-5, atol=1e-6)


def test_validation_split_is_fixed_and_disjoint():
  ds = synthetic_dataset(n_train=600)
  a = datasets.hold_out_validation(ds, 1 / 6)
  b = datasets.hold_out_validation(ds, 1 / 6)
  assert len(a.x_val) == 100 and len(a.x_train) == 500
  np.testing.assert_array_equal(a.x_val, b.x_val)

  def rows(x):
    return {r.tobytes() for r in x}

  assert rows(a.x_val) | rows(a.x_train) == rows(ds.x_train)
  np.testing.assert_array_equal(a.x_test, ds.x_test)


def _write_cache(tmp_path, garbage_test_labels):
  ds = synthetic_dataset()
  if garbage_test_labels:
    rng = np.random.default_rng(1)
    ds = dataclasses.replace(
        ds, y_test=rng.integers(0, 4, ds.y_test.shape).astype(np.int32))
  write_cache(tmp_path, ds)
  return dataclasses.replace(TINY, data_dir=str(tmp_path))


@pytest.mark.gpu_smoke
def test_sweep_outputs_and_honest_selection(tmp_path):
  """The best is chosen on validation: a different test set changes no
  choice."""
  summaries = []
  for garbage in (False, True):
    base = _write_cache(tmp_path / f"data{garbage}", garbage)
    configs = sweep.expand(base, sweep.product(
        sweep.axis("loss", ["xent", "l1"]), sweep.axis("lr", [0.01, 0.5])))
    workdir = tmp_path / f"run{garbage}"
    summaries.append(runner.run(configs, workdir, verbose=False))
    rows = workdir_lib.read_results(workdir)
    assert list(rows[0]) == ["config_id", "loss", "lr", "val_accuracy",
                             "test_accuracy", "test_nll", "ece",
                             "final_train_loss", "epochs_run", "status"]
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    best = max(rows, key=lambda r: float(r["val_accuracy"]))
    assert summaries[-1]["best"]["config_id"] == int(best["config_id"])
    assert summaries[-1]["test_accuracy"] == pytest.approx(
        float(best["test_accuracy"]))
    records = [json.loads(line) for line in
               (workdir / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 4 * 3
    assert {(r["config_id"], r["epoch"]) for r in records} == {
        (i, e) for i in range(4) for e in (1, 2, 3)}
    assert (workdir / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert summaries[-1]["train_seconds"] > 0
    assert summaries[-1]["compile_seconds"] > 0
  a, b = (s["best"] for s in summaries)
  assert (a["config_id"], a["val_accuracy"]) == (b["config_id"],
                                                 b["val_accuracy"])
  assert a["test_accuracy"] != b["test_accuracy"]


@pytest.mark.gpu_smoke
def test_refit_trains_the_best_again_on_all_training_data(tmp_path):
  base = _write_cache(tmp_path / "data", garbage_test_labels=False)
  configs = sweep.expand(base, sweep.axis("lr", [0.01, 0.5]))
  summary = runner.run(configs, tmp_path / "run", refit=True, verbose=False,
                       figures=False)
  refit_dir = tmp_path / "run" / "refit"
  refit = workdir_lib.read_summary(refit_dir)
  best = configs[summary["best"]["config_id"]]
  assert refit["config"] == {**config_lib.to_dict(best), "val_fraction": 0.0}
  assert refit["num_train"] == summary["num_train"] + summary["num_val"]
  assert "val_accuracy" not in refit
  assert summary["refit"]["test_accuracy"] == refit["test_accuracy"]
  assert summary["refit"]["workdir"] == str(refit_dir)
  assert workdir_lib.read_summary(tmp_path / "run")["refit"] == summary["refit"]
  # The same command again finds both finished and trains nothing.
  again = runner.run(configs, tmp_path / "run", refit=True, verbose=False,
                     figures=False)
  assert again["refit"] == summary["refit"]


@pytest.mark.slow
def test_solver_columns_come_from_every_row_and_the_refit(tmp_path, capsys):
  """sgd first, then an L-BFGS run stopped unconverged at --max_iters: its
  solution's columns are there (empty for sgd), and in the refit's
  summary."""
  base = dataclasses.replace(_write_cache(tmp_path / "data", False),
                             lr=1e-6, max_iters=2)  # sgd learns nothing
  configs = sweep.expand(base, sweep.axis("optimizer", ["sgd", "lbfgs"]))
  summary = runner.run(configs, tmp_path / "run", refit=True, figures=False)
  rows = workdir_lib.read_results(tmp_path / "run")
  assert list(rows[0])[list(rows[0]).index("final_train_loss"):] == [
      "final_train_loss", *lbfgs.LBFGS.SOLUTION_KEYS, "epochs_run",
      "status"]  # (only the columns some row has: no sparsity here)
  assert [r["converged"] for r in rows] == ["", "False"]
  assert [r["iterations"] for r in rows] == ["", "2"]
  assert summary["best"]["config_id"] == 1
  assert summary["refit"]["converged"] is False
  assert summary["refit"]["iterations"] == 2
  assert summary["refit"]["grad_norm"] > base.tol
  assert "NOT converged in --max_iters=2" in capsys.readouterr().out


def test_a_stop_in_the_sweeps_last_epoch_comes_before_the_refit(
    tmp_path, monkeypatch):
  import contextlib  # pylint: disable=g-import-not-at-top

  from softmax_jax.errors import Interrupted  # pylint: disable=g-import-not-at-top
  base = _write_cache(tmp_path / "data", garbage_test_labels=False)
  configs = sweep.expand(dataclasses.replace(base, epochs=1),
                         sweep.axis("lr", [0.01, 0.5]))
  asked = contextlib.contextmanager(lambda: (yield lambda: True))
  monkeypatch.setattr(runner, "_stop_requests", asked)  # Ctrl-C at once
  with pytest.raises(Interrupted, match="stopped before the refit"):
    runner.run(configs, tmp_path / "run", refit=True, verbose=False,
               figures=False)
  assert workdir_lib.read_summary(tmp_path / "run") is not None
  assert not (tmp_path / "run" / "refit").exists()
  monkeypatch.undo()
  summary = runner.run(configs, tmp_path / "run", refit=True, verbose=False,
                       figures=False)
  assert summary["refit"]["num_train"] == (summary["num_train"]
                                           + summary["num_val"])


def test_refit_needs_a_sweep(tmp_path):
  with pytest.raises(UserError, match="--refit retrains a sweep's best"):
    runner.run(TINY, tmp_path / "run", refit=True, verbose=False, figures=False)


def test_a_sweep_needs_a_validation_split(tmp_path):
  configs = sweep.expand(dataclasses.replace(TINY, val_fraction=0.0),
                         sweep.axis("lr", [0.1, 0.2]))
  with pytest.raises(UserError, match="--val_fraction > 0"):
    runner.run(configs, tmp_path / "run", verbose=False, figures=False)


@pytest.mark.slow
def test_model_sweeps_make_separate_groups():
  configs = sweep.build(TINY, sweep.axis("hidden", ["", "8"]), {"phm_n": "0,2"})
  assert [(c.hidden, c.phm_n) for c in configs] == [
      ("", 0), ("", 2), ("8", 0), ("8", 2)]
  assert len(sweep.groups(configs)) == 4
  ds = datasets.hold_out_validation(synthetic_dataset(), 0.25)
  result = train.train_configs(configs, ds)
  counts = [sum(p.size for p in jax.tree.leaves(r.params)) for r in result.runs]
  assert counts == [16 * 4 + 4, 8 + 16 * 4 // 2 + 4,
                    16 * 8 + 8 + 8 * 4 + 4, 16 * 8 + 8 + 8 + 8 * 4 // 2 + 4]


def test_hidden_takes_its_commas_as_layer_sizes():
  single, entries = sweep.parse_flag_lists({"hidden": "256,128"})
  assert single == {"hidden": "256,128"} and entries == []


def test_a_flag_list_replaces_the_file_axis_of_its_field():
  file_sweep = sweep.product(sweep.axis("loss", ["xent", "l2"]),
                             sweep.axis("lr", [0.01, 0.1, 1.0]))
  configs = sweep.build(Config(), file_sweep, {"lr": "0.1,1"})
  assert [(c.loss, c.lr) for c in configs] == [
      ("xent", 0.1), ("xent", 1.0), ("l2", 0.1), ("l2", 1.0)]


def test_a_files_repeated_value_stays_to_be_refused():
  """Entries of the file's sweep that a flag made alike are one; entries
  alike in the file itself stay two (the runner refuses them, as it does a
  flag's repeated value), not silently one."""
  repeated = sweep.axis("lr", [0.1, 0.1])
  assert [c.lr for c in sweep.build(Config(), repeated, {})] == [0.1, 0.1]
  alike = sweep.product(sweep.axis("loss", ["xent"]),
                        sweep.axis("lr", [0.1, 1.0]))
  assert [c.lr for c in sweep.build(Config(), alike, {"lr": "0.3"})] == [0.3]
  with pytest.raises(UserError, match="configurations 0 and 1 of the sweep "
                     "are the same"):
    runner._validated(sweep.build(Config(), repeated, {}))  # pylint: disable=protected-access


def test_experiment_file_values_get_their_field_types(tmp_path):
  path = tmp_path / "exp.py"
  path.write_text("from softmax_jax.config import Config\n"
                  "def get_config(): return Config(lr='0.5', hidden=64)\n")
  config, _ = config_lib.load_experiment(path)
  assert config.lr == 0.5 and config.hidden_sizes == (64,)
  path.write_text("from softmax_jax.config import Config\n"
                  "def get_config(): return Config(lr='fast')\n")
  with pytest.raises(UserError,
                     match="get_config\\(\\): --lr='fast' is not a number"):
    config_lib.load_experiment(path)
