"""A sweep over seeds: means, standard deviations and the best configuration,
on a hand-made results table and end to end."""

import csv
import dataclasses
import json
import statistics

import pytest

from conftest import synthetic_dataset
from conftest import write_cache
from softmax_jax import outcome
from softmax_jax import runner
from softmax_jax import seeds
from softmax_jax import sweep
from softmax_jax import train
from softmax_jax.config import Config
from softmax_jax.errors import UserError


def _row(i, loss, lr, seed, val, test, status="ok"):
  return {"config_id": i, "loss": loss, "lr": lr, "seed": seed,
          "weight_decay": 0.0, "val_accuracy": val, "test_accuracy": test,
          "test_nll": 1.0 - test, "ece": 0.01 * (seed + 1), "status": status}


TABLE = [
    _row(0, "xent", 0.1, 0, 0.80, 0.79),
    _row(1, "xent", 0.1, 1, 0.84, 0.83),
    _row(2, "xent", 0.1, 2, 0.82, 0.80),
    # The best single run, but its configuration's mean is lower.
    _row(3, "l2", 1.0, 0, 0.90, 0.88),
    _row(4, "l2", 1.0, 1, 0.60, 0.58),
    _row(5, "l2", 1.0, 2, 0.70, 0.69),
    # The best mean over its finished seeds, but one seed diverged.
    _row(6, "l1", 1.0, 0, 0.95, 0.94),
    _row(7, "l1", 1.0, 1, float("nan"), 0.1, status="diverged"),
    _row(8, "l1", 1.0, 2, 0.93, 0.92),
]


def test_means_and_standard_deviations_of_a_hand_made_table():
  by = {r["loss"]: r for r in seeds.by_config(TABLE, ["loss", "lr", "seed"])}
  xent = by["xent"]
  assert xent["num_seeds"] == 3 and xent["num_diverged"] == 0
  assert xent["val_accuracy_mean"] == pytest.approx(0.82)
  assert xent["val_accuracy_std"] == pytest.approx(0.02)  # n - 1
  assert xent["test_accuracy_mean"] == pytest.approx(statistics.fmean(
      [0.79, 0.83, 0.80]))
  assert xent["ece_std"] == pytest.approx(0.01)
  assert xent["config_ids"] == [0, 1, 2] and xent["seeds"] == [0, 1, 2]
  l1 = by["l1"]  # the diverged seed is counted, not averaged
  assert l1["num_diverged"] == 1 and l1["num_seeds"] == 3
  assert l1["val_accuracy_mean"] == pytest.approx(0.94)
  assert l1["config_id"] == 6


def test_the_best_is_by_mean_and_a_diverged_seed_ranks_last():
  ranked = sorted(seeds.by_config(TABLE, ["loss", "lr", "seed"]),
                  key=seeds.rank_key)
  assert [r["loss"] for r in ranked] == ["xent", "l2", "l1"]


def test_the_same_total_of_correct_rows_ties_and_the_stronger_decay_wins():
  """Two configurations with 318 of 666 validation rows right over two
  seeds (150 + 168 and 159 + 159 of 333): their float32 accuracies average
  to means 1.5e-8 apart; read as counts, they tie, and the tie goes to the
  stronger weight decay (as for single runs)."""
  import numpy as np  # pylint: disable=g-import-not-at-top

  def accuracy(correct):  # as evaluation.py gives it: float32
    return float(np.float32(correct) / np.float32(333))

  rows = [{**_row(i, "xent", 0.1, seed, accuracy(correct), 0.5),
           "weight_decay": decay}
          for i, (decay, seed, correct) in enumerate(
              [(0.01, 0, 150), (0.01, 1, 168), (0.0, 0, 159), (0.0, 1, 159)])]
  fields = ["weight_decay", "seed"]
  noisy = seeds.by_config(rows, fields)
  assert noisy[0]["val_accuracy_mean"] != noisy[1]["val_accuracy_mean"]
  counted = seeds.by_config(rows, fields, num_val=333)
  assert counted[0]["val_accuracy_mean"] == counted[1]["val_accuracy_mean"]
  assert counted[0]["val_accuracy_mean"] == 318 / 666
  assert min(counted, key=seeds.rank_key)["weight_decay"] == 0.01
  assert counted[1]["val_accuracy_std"] == 0.0


def test_a_single_seed_has_no_standard_deviation():
  (row,) = seeds.by_config(TABLE[:1], ["seed"])
  assert row["val_accuracy_mean"] == 0.80 and row["val_accuracy_std"] is None


def test_the_runner_chooses_the_best_mean_not_the_best_run():
  configs = [Config(loss=r["loss"], lr=r["lr"], seed=r["seed"])
             for r in TABLE]
  history = [{"val_accuracy": r["val_accuracy"],
              "test_accuracy": r["test_accuracy"], "test_nll": r["test_nll"],
              "test_ece": r["ece"], "train_loss": 0.5} for r in TABLE]
  result = train.SweepResult(
      runs=[train.RunResult(c, [h], r["status"], {}) for c, h, r
            in zip(configs, history, TABLE, strict=True)],
      train_seconds=1.0, compile_seconds=1.0, num_groups=1)
  assert outcome.best_index(result, None) == 0
  # Without seeds, the best run.
  result.runs = result.runs[3:4] + result.runs[:1]
  assert outcome.best_index(result, None) == 0


def test_a_seeds_sweep_end_to_end(tmp_path, capsys):
  """With a configuration whose every seed explodes, and calibrated."""
  write_cache(tmp_path / "data", synthetic_dataset(noise=60.0))
  base = Config(data_dir=str(tmp_path / "data"), epochs=2, batch_size=32,
                calibrate=True)
  configs = sweep.expand(base, sweep.product(
      sweep.axis("lr", [0.01, 0.5, 1e9]), sweep.axis("seed", [0, 1, 2])))
  summary = runner.run(configs, tmp_path / "run")
  assert summary["num_groups"] == 1  # seeds share one compiled program
  out = capsys.readouterr().out
  assert "best by mean validation accuracy over 3 seeds: lr=" in out
  runs = list(csv.DictReader((tmp_path / "run" / "results.csv").open()))
  by_config = list(csv.DictReader(
      (tmp_path / "run" / "results_by_config.csv").open()))
  assert [r["lr"] for r in by_config] == ["0.01", "0.5", "1000000000.0"]
  exploded = by_config.pop()
  assert exploded["num_diverged"] == "3" and exploded["val_accuracy_mean"] == ""
  for agg in by_config:
    assert float(agg["temperature_mean"]) > 0
    assert int(agg["num_diverged"]) == 0
    vals = [float(r["val_accuracy"]) for r in runs if r["lr"] == agg["lr"]]
    assert int(agg["num_seeds"]) == 3
    assert float(agg["val_accuracy_mean"]) == pytest.approx(
        statistics.fmean(vals))
    assert float(agg["val_accuracy_std"]) == pytest.approx(
        statistics.stdev(vals))
  best = summary["best"]
  means = {float(a["lr"]): float(a["val_accuracy_mean"]) for a in by_config}
  assert best["config"]["lr"] == max(means, key=means.get)
  assert ranking_lines(out)[-1].split()[1] == "1e+09"  # ranked last
  assert best["num_seeds"] == 3 and best["seeds"] == [0, 1, 2]
  assert best["val_accuracy"] == pytest.approx(max(means.values()))
  assert best["config"]["seed"] == 0  # its first seed stands for it
  assert (tmp_path / "run" / "sweep.png").exists()
  on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
  assert on_disk["best"]["val_accuracy_std"] == pytest.approx(
      best["val_accuracy_std"])
  assert "+-" in (tmp_path / "run" / "report.md").read_text()
  assert "over seeds, its mean" in (tmp_path / "run" / "report.md").read_text()


def test_a_solver_in_a_seeds_sweep_runs_once_without_a_spread(tmp_path,
                                                               capsys):
  """--optimizer=sgd,lbfgs --seed=0,1,2: three sgd seeds and one L-BFGS
  solution (deterministic: three 'seeds' of it would report a std of 0);
  the library refuses the repeated solution in one line."""
  write_cache(tmp_path / "data", synthetic_dataset(noise=60.0))
  base = Config(data_dir=str(tmp_path / "data"), epochs=2, batch_size=32)
  configs = sweep.build(base, [], {"optimizer": "sgd,lbfgs",
                                   "seed": "0,1,2"})
  assert [(c.optimizer, c.seed) for c in configs] == [
      ("sgd", 0), ("sgd", 1), ("sgd", 2), ("lbfgs", 0)]
  summary = runner.run(configs, tmp_path / "run", figures=False)
  assert "--optimizer=lbfgs reads no seed: each of its configurations runs " \
      "once, without a spread over seeds" in capsys.readouterr().out
  by_config = {r["optimizer"]: r for r in csv.DictReader(
      (tmp_path / "run" / "results_by_config.csv").open())}
  assert by_config["lbfgs"]["num_seeds"] == "1"
  assert by_config["lbfgs"]["val_accuracy_std"] == ""  # none, not 0.0000
  assert by_config["sgd"]["num_seeds"] == "3"
  assert float(by_config["sgd"]["val_accuracy_std"]) > 0
  assert summary["num_configs"] == 4
  repeated = [dataclasses.replace(configs[3], seed=s) for s in (0, 1)]
  with pytest.raises(UserError, match="configurations 0 and 1 of the sweep "
                     "are the same --optimizer=lbfgs run: it reads none of "
                     "lr, batch_size, epochs, schedule, compute_dtype, seed"):
    runner.run(repeated, tmp_path / "repeated", verbose=False, figures=False)


def ranking_lines(out: str) -> list[str]:
  """The rows of the terminal's seed ranking."""
  lines = out.splitlines()
  start = next(i for i, line in enumerate(lines) if line.split()[:2] == [
      "rank", "lr"])
  rows = []
  for line in lines[start + 1:]:
    if not line.split() or not line.split()[0].isdigit():
      break
    rows.append(line)
  return rows


def test_the_same_configurations_without_seeds_behave_as_before(tmp_path):
  write_cache(tmp_path / "data", synthetic_dataset())
  base = Config(data_dir=str(tmp_path / "data"), epochs=1, batch_size=32)
  configs = [dataclasses.replace(base, lr=lr) for lr in (0.01, 0.5)]
  summary = runner.run(configs, tmp_path / "run", verbose=False, figures=False)
  assert "num_seeds" not in summary["best"]
  assert not (tmp_path / "run" / "results_by_config.csv").exists()
