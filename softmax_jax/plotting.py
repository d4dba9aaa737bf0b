"""Figures of a run, drawn with matplotlib (Agg: no display needed)."""

from __future__ import annotations

from typing import BinaryIO


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def plot_curves(history: list[dict], out: BinaryIO, title: str = "") -> None:
  """Train loss, train accuracy and test accuracy per epoch, as d2l's Animator."""
  plt = _pyplot()
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


def plot_sweep(rows: list[dict], out: BinaryIO) -> None:
  """Validation accuracy against lr, one line per loss (mean over other axes)."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
  by_loss: dict[str, dict[float, list[float]]] = {}
  for r in rows:
    if r["status"] == "ok":
      by_loss.setdefault(r["loss"], {}).setdefault(r["lr"], []).append(
          r["val_accuracy"])
  for loss, by_lr in by_loss.items():
    lrs = sorted(by_lr)
    ax.plot(lrs, [sum(by_lr[lr]) / len(by_lr[lr]) for lr in lrs], "o-",
            label=loss)
  ax.set_xscale("log")
  ax.set_xlabel("learning rate")
  ax.set_ylabel("validation accuracy")
  ax.grid(True, alpha=0.3)
  ax.legend()
  diverged = sum(r["status"] != "ok" for r in rows)
  ax.set_title(f"{len(rows)} configurations"
               + (f", {diverged} diverged (not shown)" if diverged else ""),
               fontsize=9)
  fig.tight_layout()
  fig.savefig(out, format="png")
  plt.close(fig)
