"""A sweep over seeds: each configuration's results as the mean and standard
deviation over its seeds, and the best configuration by mean validation
accuracy.

A configuration is every swept field but the seed. The seeds that finished
(status ok) give the means and the sample standard deviations (n - 1; none
for a single seed); those that diverged or exploded are counted in
`num_diverged`, and a configuration with any of them ranks after every
configuration whose seeds all finished: a result that holds only for the
lucky seeds is not a result. Ties go to the stronger weight decay, then to
the first configuration, as for single runs (runner._rank_key).
"""

from __future__ import annotations

import math
import statistics

# Aggregated over the seeds; with --calibrate also the temperature and the
# calibrated ECE.
METRICS = ("val_accuracy", "test_accuracy", "test_nll", "ece")
CALIBRATED = ("temperature", "ece_calibrated")


def swept(fields: list[str]) -> bool:
  """Whether a sweep over these fields has several seeds to aggregate."""
  return "seed" in fields


def by_config(rows: list[dict], fields: list[str],
              num_val: int | None = None) -> list[dict]:
  """One row per configuration (in first-seen order) from results.csv's
  rows (one per run): the swept fields but the seed, num_seeds,
  num_diverged, <metric>_mean and <metric>_std, the runs' config_ids and
  seeds, and config_id, the configuration's first finished run (its
  representative: figures, params and a refit use it).

  num_val, the validation rows: each seed's float32 validation accuracy
  is read as the count of correct rows it rounds (exact below 2^23 rows),
  so that configurations with the same total of correct rows have the
  same mean, to the last bit, and the tie rule decides between them (the
  mean of the rounded accuracies differs in the 8th digit)."""
  config_fields = [f for f in fields if f != "seed"]
  groups: dict[tuple, list[dict]] = {}
  for r in rows:
    groups.setdefault(tuple(r[f] for f in config_fields), []).append(r)
  metrics = METRICS + tuple(m for m in CALIBRATED if m in rows[0])
  out = []
  for key, runs in groups.items():
    ok = [r for r in runs if r["status"] == "ok"]
    row = {**dict(zip(config_fields, key, strict=True)),
           "num_seeds": len(runs), "num_diverged": len(runs) - len(ok),
           "config_id": (ok or runs)[0]["config_id"],
           "config_ids": [r["config_id"] for r in runs],
           "seeds": [r["seed"] for r in runs],
           # (for the ranking and sweep.png, also when not swept)
           "loss": runs[0]["loss"], "lr": runs[0]["lr"],
           "weight_decay": runs[0]["weight_decay"],
           "optimizer": runs[0].get("optimizer")}
    for m in metrics:
      values = [r[m] for r in ok
                if r.get(m) is not None and math.isfinite(r[m])]
      if m == "val_accuracy" and values and num_val and num_val < 2**23:
        counts = [round(v * num_val) for v in values]
        values = [c / num_val for c in counts]
        row[f"{m}_mean"] = sum(counts) / (len(counts) * num_val)
      else:
        row[f"{m}_mean"] = statistics.fmean(values) if values else None
      row[f"{m}_std"] = statistics.stdev(values) if len(values) > 1 else None
    out.append(row)
  return out


def rank_key(row: dict):
  """Best first: every seed finished, then by mean validation accuracy, the
  stronger weight decay, the first configuration."""
  mean = row["val_accuracy_mean"]
  return (mean is None, row["num_diverged"] > 0,
          -mean if mean is not None else 0.0, -row["weight_decay"],
          row["config_ids"][0])


def columns(aggregated: list[dict], fields: list[str]) -> list[str]:
  """results_by_config.csv's columns."""
  stats = [f"{m}{s}" for m in METRICS + CALIBRATED
           for s in ("_mean", "_std") if f"{m}_mean" in aggregated[0]]
  return [*(f for f in fields if f != "seed"), "num_seeds", *stats,
          "num_diverged"]
