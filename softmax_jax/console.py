"""What a run shows in the terminal: a progress bar, a line per epoch, a summary."""

from __future__ import annotations

import sys

import tqdm


class EpochLog:
  """Callable per epoch record: advances the bar and prints the epoch's line."""

  def __init__(self, epochs: int, enabled: bool = True):
    self._bar = tqdm.tqdm(total=epochs, unit="epoch", leave=False,
                          disable=None if enabled else True,  # None: off when not a tty
                          file=sys.stderr,
                          dynamic_ncols=True)
    self._enabled = enabled

  def __call__(self, record: dict) -> None:
    if self._enabled:
      self._bar.write(format_epoch(record))
    self._bar.update(1)

  def close(self) -> None:
    self._bar.close()


def format_epoch(r: dict) -> str:
  return (f"epoch {r['epoch']:3d}  train loss {r['train_loss']:.4f}  "
          f"train acc {r['train_accuracy']:.4f}  test acc {r['test_accuracy']:.4f}")


def format_summary(summary: dict, workdir) -> str:
  c = summary["config"]
  epochs = c["epochs"]
  return "\n".join([
      f"{summary['dataset']} | loss {c['loss']} | {c['optimizer']} lr {c['lr']:g}"
      f" | batch {c['batch_size']} | {epochs} epochs | {summary['num_params']:,} params",
      f"test accuracy {summary['test_accuracy']:.4f}   test nll "
      f"{summary['test_nll']:.4f}   train loss {summary['train_loss']:.4f}",
      f"train {summary['train_seconds']:.2f} s "
      f"({1e3 * summary['train_seconds'] / epochs:.0f} ms/epoch)   compile "
      f"{summary['compile_seconds']:.2f} s   on {summary['num_devices']} "
      f"{summary['backend']} device(s)",
      f"outputs in {workdir}",
  ])
