"""Figures read back from their matplotlib artists: what is drawn where, and
the text of axes, ticks and legends (a file that was written is not a figure
that reads)."""

import itertools
import subprocess
import sys

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest

from softmax_jax.outputs import plotting


def _rows(**axes):
  """results.csv-like rows of a sweep over the cross product of `axes`
  (field -> values); validation accuracy made up from the values."""
  names = list(axes)
  rows = []
  for i, values in enumerate(itertools.product(*axes.values())):
    row = {"config_id": i, "loss": "xent", "lr": 0.1, "weight_decay": 0.0,
           "optimizer": "sgd", "status": "ok"}
    row.update(zip(names, values, strict=True))
    row["val_accuracy"] = 0.5 + 0.01 * i
    rows.append(row)
  return rows


def _drawn(fig):
  """The axes, drawn (tick labels exist only then)."""
  fig.canvas.draw()
  (ax,) = fig.axes
  return ax


def _tick_texts(ax):
  return [t.get_text() for t in ax.get_xticklabels() if t.get_text()]


def _lines(ax):
  """(label, x values) of each line of points (an errorbar's container)."""
  return [(c.get_label(), list(c.lines[0].get_xdata()))
          for c in ax.containers]


@pytest.fixture(autouse=True)
def _close_figures():
  yield
  plt.close("all")


def test_a_learning_rate_sweep_has_lr_on_a_log_axis_labelled_in_numbers():
  ax = _drawn(plotting.sweep_figure(_rows(lr=[0.01, 0.1, 1.0, 3.0]), ["lr"]))
  assert ax.get_xlabel() == "learning rate" and ax.get_xscale() == "log"
  texts = _tick_texts(ax)
  assert texts == ["0.01", "0.1", "1", "3"]  # numbers, not TeX
  assert not any("$" in t or "mathdefault" in t for t in texts)
  assert [x for _, x in _lines(ax)] == [[0.01, 0.1, 1.0, 3.0]]
  assert ax.get_legend() is None  # one line: nothing to tell apart


def test_a_weight_decay_path_is_drawn_against_the_strength():
  """An L-BFGS path: every point at the lr it does not read; one point per
  strength, not their mean at lr 0.1."""
  strengths = list(np.logspace(-6, -1, 12))
  rows = _rows(weight_decay=strengths)
  for r in rows:
    r["optimizer"] = "lbfgs"
  ax = _drawn(plotting.sweep_figure(rows, ["weight_decay"]))
  assert ax.get_xlabel() == "weight decay (L2 strength)"
  assert ax.get_xscale() == "log"
  ((_, xs),) = _lines(ax)
  np.testing.assert_allclose(xs, strengths)
  for text in _tick_texts(ax):
    float(text)  # each a plain number
  path_with_zero = _rows(weight_decay=[0.0, 1e-4, 1e-3, 1e-2])
  ax = _drawn(plotting.sweep_figure(path_with_zero, ["weight_decay"]))
  assert ax.get_xscale() == "symlog"
  assert _tick_texts(ax) == ["0", "0.0001", "0.001", "0.01"]


def test_a_two_field_sweep_has_one_line_per_value_of_the_other():
  rows = _rows(lr=[0.03, 0.1, 0.3], weight_decay=[0.0, 1e-3])
  ax = _drawn(plotting.sweep_figure(rows, ["lr", "weight_decay"]))
  assert ax.get_xlabel() == "learning rate"  # the field with more values
  assert sorted(_lines(ax)) == [("weight_decay=0", [0.03, 0.1, 0.3]),
                                ("weight_decay=0.001", [0.03, 0.1, 0.3])]
  legend = [t.get_text() for t in ax.get_legend().get_texts()]
  assert legend == ["weight_decay=0", "weight_decay=0.001"]
  assert ax.get_xscale() == "linear"  # a factor of 10 only
  assert _tick_texts(ax) == ["0.03", "0.1", "0.3"]


def test_a_solver_beside_an_lr_sweep_is_a_horizontal_line():
  solver = {**_rows(lr=[0.01])[0], "config_id": 3, "optimizer": "lbfgs",
            "val_accuracy": 0.9}
  rows = [*_rows(optimizer=["sgd"], lr=[0.01, 0.1, 1.0]), solver]
  ax = _drawn(plotting.sweep_figure(rows, ["optimizer", "lr"]))
  assert _lines(ax) == [("optimizer=sgd", [0.01, 0.1, 1.0])]
  (flat,) = [line for line in ax.lines
             if line.get_label() == "optimizer=lbfgs (reads no lr)"]
  assert list(flat.get_ydata()) == [0.9, 0.9]


def test_a_sweep_over_losses_alone_names_each_configuration():
  rows = _rows(loss=["xent", "l2", "huber"])
  ax = _drawn(plotting.sweep_figure(rows, ["loss"]))
  assert _tick_texts(ax) == ["loss=xent", "loss=l2", "loss=huber"]


def test_a_seeds_sweep_draws_error_bars():
  rows = [{"loss": "xent", "lr": lr, "weight_decay": 0.0, "optimizer": "sgd",
           "val_accuracy_mean": 0.8, "val_accuracy_std": 0.02,
           "num_seeds": 3, "num_diverged": 0} for lr in (0.1, 1.0, 10.0)]
  ax = _drawn(plotting.sweep_figure(rows, ["lr", "seed"]))
  assert [x for _, x in _lines(ax)] == [[0.1, 1.0, 10.0]]
  assert ax.collections  # the error bars
  assert "3 seeds (mean +- std)" in ax.get_title()


def test_the_reliability_diagram_paints_only_colours_its_legend_names():
  """Bins under-confident (accuracy above confidence) and over-confident:
  no filled area is painted twice (red over blue reads as a third colour),
  and every filled colour and hatch is in the legend."""
  count = np.array([0, 5, 5, 5, 5])
  confidence = np.array([0.0, 0.3, 0.5, 0.7, 0.9])
  accuracy = np.array([0.0, 0.6, 0.5, 0.4, 0.95])
  _, ax = plt.subplots()
  plotting._reliability_panel(  # pylint: disable=protected-access
      ax, count, confidence, accuracy, 0.1, "")
  filled = [p for p in ax.patches if p.get_fill() and p.get_facecolor()[3]]
  for a, b in itertools.combinations(filled, 2):
    if abs(a.get_x() - b.get_x()) < 1e-9:  # the same bin
      lo_a, hi_a = sorted([a.get_y(), a.get_y() + a.get_height()])
      lo_b, hi_b = sorted([b.get_y(), b.get_y() + b.get_height()])
      assert min(hi_a, hi_b) - max(lo_a, lo_b) <= 1e-9, (a, b)
  handles = ax.get_legend().legend_handles
  named = {(tuple(np.round(h.get_facecolor(), 3)), h.get_hatch())
           for h in handles if hasattr(h, "get_hatch")}
  for p in ax.patches:
    if p.get_height():
      assert (tuple(np.round(p.get_facecolor(), 3)), p.get_hatch()) in named
  hatched = [p for p in ax.patches if p.get_hatch()]
  assert [(round(p.get_y(), 6), round(p.get_height(), 6)) for p in hatched
          if p.get_height()] == [(0.3, 0.3), (0.9, 0.05)]


def test_drawing_leaves_the_callers_matplotlib_as_it_was(tmp_path):
  """No backend forced on import (a notebook keeps its inline figures), no
  rcParams changed by drawing; class names with "$" still drawn as written."""
  code = ("import matplotlib; from softmax_jax.outputs import plotting; "
          "print(matplotlib.get_backend())")
  backend = subprocess.run([sys.executable, "-c", code], capture_output=True,
                           text=True, check=True,
                           env={"MPLBACKEND": "svg", "PATH": "/usr/bin:/bin",
                                "PYTHONPATH": ":".join(sys.path)}).stdout
  assert backend.strip() == "svg"
  before = dict(matplotlib.rcParams)
  with open(tmp_path / "c.png", "wb") as out:
    plotting.plot_confusion(np.eye(3, dtype=int) * 5, ["$1", "b", "c"], out)
  assert dict(matplotlib.rcParams) == before
  assert (tmp_path / "c.png").read_bytes().startswith(b"\x89PNG")
