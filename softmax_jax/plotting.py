"""Figures of a run, drawn with matplotlib (Agg: no display needed)."""

from __future__ import annotations

from typing import BinaryIO


def plot_curves(history: list[dict], out: BinaryIO, title: str = "") -> None:
  """Train loss, train accuracy and test accuracy per epoch, as d2l's Animator."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  epochs = [r["epoch"] for r in history]
  fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
  ax.plot(epochs, [r["train_loss"] for r in history], "-", label="train loss")
  ax.plot(epochs, [r["train_accuracy"] for r in history], "m--",
          label="train acc")
  ax.plot(epochs, [r["test_accuracy"] for r in history], "g-.", label="test acc")
  ax.set_xlabel("epoch")
  ax.set_xlim(1, max(epochs[-1], 2))
  ax.grid(True, alpha=0.3)
  ax.legend()
  if title:
    ax.set_title(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(out, format="png")
  plt.close(fig)
