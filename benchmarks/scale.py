"""Epoch time and peak memory at scale, softmax_jax beside PyTorch, in one run.

  .venv/bin/pip install -r requirements-bench.txt
  .venv/bin/python benchmarks/scale.py            # ~8 minutes on 2 cores
  .venv/bin/python benchmarks/scale.py --quick    # the smaller points only

Each point is a generated linear-probe set (Gaussian clusters, one per
class: benchmarks/make_probe_data.py) written as an npy: folder under --tmp
and deleted after it is measured. Starting from N = 200,000 examples, D =
512 features, K = 1,000 classes and one configuration (M = 1), one axis at a
time is varied: N from 10^4 to 2 x 10^6, D from 64 to 4,096, K from 10 to
1,000, and the number of swept configurations M from 1 to 256 (at K = 10,
where a 256-model sweep takes seconds an epoch). Every run is a separate
process, its peak resident memory read from the OS (wait4's ru_maxrss):
`launch.py --dataset=npy:DIR --batch_size=1024 --lr=0.1` (plain SGD, the
whole run with evaluation, report and figures), and a plain PyTorch
in-memory loop (the same memory-mapped arrays, randperm minibatches,
cross-entropy, SGD) on every point with M = 1. Epoch time is the mean
training time per epoch (softmax_jax: summary.json's train_seconds, compiled
ahead, so compilation excluded). The work of an epoch is its matmuls, 4 N D
K M flops (logits and the weight gradient); the table gives each run's
GFLOP/s as a share of this machine's float32 matmul peak, measured first.

The matmul floor: at the speed target's point (N = 200,000, D = 512, K =
1,000) an epoch of nothing but each step's two matmuls (logits x W and the
weight gradient x^T G, on [1024, 512] slices), once compiled by XLA (a
lax.scan, as softmax_jax's epoch) and once as a PyTorch loop (MKL). No
training epoch can be faster than its library's floor.
Writes a markdown table to --out and the figure beside it (.png).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
from pathlib import Path
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import torch_loops  # pylint: disable=wrong-import-position

BASE = {"n": 200_000, "d": 512, "k": 1000, "m": 1}
AXES = {
    "n": [10_000, 100_000, 200_000, 1_000_000, 2_000_000],
    "d": [64, 512, 4096],
    "k": [10, 100, 1000],
    "m": [1, 16, 256],
}
QUICK_AXES = {"n": [10_000, 100_000], "d": [64, 512], "k": [10, 100],
              "m": [1, 16]}
M_AXIS_K = 10  # classes on the M axis
BATCH = 1024
EPOCHS = 2
N_TEST = 10_000
N_VAL = 10_000  # sweeps choose on the set's own validation split


def points(axes) -> list[dict]:
  """Every distinct point of the axes, each with the axes it lies on."""
  out: dict[tuple, dict] = {}
  for axis, values in axes.items():
    for v in values:
      p = {**BASE, axis: v}
      if axis == "m" or p["m"] > 1:
        p["k"] = M_AXIS_K
      key = tuple(sorted(p.items()))
      out.setdefault(key, {**p, "axes": []})["axes"].append(axis)
  return list(out.values())


def run_child(argv: list[str]) -> tuple[int, float, str]:
  """(exit status, peak resident GB, stdout) of a process.

  Linux starts the child's peak at this process's own peak (it is spawned
  with vfork, sharing this memory until exec), so this process never maps
  the data or loads JAX: the floor it sets is ~0.03 GB.
  """
  proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  assert proc.stdout is not None  # stdout=PIPE
  out = proc.stdout.read()
  _, status, usage = os.wait4(proc.pid, 0)
  proc.returncode = os.waitstatus_to_exitcode(status)
  return proc.returncode, usage.ru_maxrss * 1024 / 1e9, out


def ours(folder: Path, p: dict, workdir: Path) -> dict:
  lrs = np.geomspace(0.01, 1.0, p["m"]) if p["m"] > 1 else [0.1]
  code, peak, out = run_child([
      sys.executable, "launch.py", f"--dataset=npy:{folder}",
      f"--batch_size={BATCH}", f"--epochs={EPOCHS}",
      "--lr=" + ",".join(f"{lr:.6g}" for lr in lrs),
      f"--workdir={workdir}", "--overwrite"])
  if code:
    return {"error": out.strip().splitlines()[-1]}
  s = json.loads((workdir / "summary.json").read_text())
  return {"epoch_s": s["train_seconds"] / s["epochs_run"], "peak_gb": peak,
          "report_s": s.get("report_seconds"), "accuracy": s["test_accuracy"]}


def torch_loop(folder: Path, p: dict) -> dict:
  code, peak, out = run_child([sys.executable, __file__, "--torch_child",
                               str(folder)])
  if code:
    return {"error": out.strip().splitlines()[-1]}
  return {**json.loads(out.strip().splitlines()[-1]), "peak_gb": peak}


def torch_child(folder: str) -> None:
  """A plain PyTorch in-memory loop on the npy folder (torch_loops.sgd);
  prints JSON."""
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(os.cpu_count() or 1)
  x = torch.from_numpy(np.load(f"{folder}/x_train.npy", mmap_mode="r+"))
  r = torch_loops.sgd(x, np.load(f"{folder}/y_train.npy"),
                      np.load(f"{folder}/x_test.npy"),
                      np.load(f"{folder}/y_test.npy"), epochs=EPOCHS,
                      batch=BATCH, lr=0.1)
  print(json.dumps({"epoch_s": float(np.mean(r["epoch_seconds"])),
                    "accuracy": r["accuracy"]}))


def measure(what: str, library: str) -> float:
  """A number measured in a process of its own (see run_child): "peak", the
  float32 matmul GFLOP/s at 2048^3 (best of 10), or "floor", the seconds of
  the matmul floor's epoch (best of 3; see the module's docstring), through
  XLA ("jax") or PyTorch ("torch")."""
  code, _, out = run_child([sys.executable, __file__,
                            f"--measure_child={what},{library}"])
  if code:
    raise SystemExit(f"measuring the {library} matmul {what} failed: {out}")
  return float(out.strip().splitlines()[-1])


def measure_child(what: str, library: str) -> None:
  """Prints measure(what, library)."""
  asarray: Any
  if library == "torch":
    import torch  # pylint: disable=g-import-not-at-top
    torch.set_num_threads(os.cpu_count() or 1)
    asarray, block, matmul = torch.from_numpy, lambda a: a, torch.matmul
  else:
    import jax  # pylint: disable=g-import-not-at-top
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    asarray, block = jnp.asarray, jax.block_until_ready
    matmul = jax.jit(jnp.matmul)
  rng = np.random.default_rng(0)
  if what == "peak":
    a = asarray(rng.random((2048, 2048), np.float32))
    run, repeats, scale = (lambda: matmul(a, a)), 10, 2 * 2048**3 / 1e9
  else:
    n, d, k = (BASE[a] for a in "ndk")
    x = asarray(rng.standard_normal((n, d), np.float32))
    w = asarray(np.zeros((d, k), np.float32))
    run, repeats, scale = floor_epoch(library, x, w), 3, None
  block(run())
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    block(run())
    best = min(best, time.perf_counter() - start)
  print(best if scale is None else scale / best)


def floor_epoch(library: str, x, w):
  """An epoch of each step's two matmuls alone: G = x_B W, then W -= c x_B^T G
  (c tiny, so the values stay finite and the work is the same every step)."""
  steps = x.shape[0] // BATCH
  if library == "torch":
    import torch  # pylint: disable=g-import-not-at-top

    def torch_epoch():
      with torch.no_grad():
        for i in range(steps):
          x_b = x[i * BATCH:(i + 1) * BATCH]
          w.sub_(1e-12 * (x_b.T @ (x_b @ w)))
      return w
    return torch_epoch
  import jax  # pylint: disable=g-import-not-at-top

  @jax.jit
  def jax_epoch(w):
    def step(w, i):
      x_b = jax.lax.dynamic_slice_in_dim(x, i * BATCH, BATCH)
      return w - 1e-12 * (x_b.T @ (x_b @ w)), None
    return jax.lax.scan(step, w, jax.numpy.arange(steps))[0]
  return lambda: jax_epoch(w)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--no_torch", action="store_true")
  parser.add_argument("--tmp", default=tempfile.gettempdir())
  parser.add_argument("--out", default=str(ROOT / "benchmarks" / "scale.md"))
  parser.add_argument("--torch_child", help=argparse.SUPPRESS)
  parser.add_argument("--measure_child", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.torch_child:
    return torch_child(args.torch_child)
  if args.measure_child:
    return measure_child(*args.measure_child.split(","))
  peak = measure("peak", "jax")
  print(f"float32 matmul peak (XLA, 2048^3): {peak:.0f} GFLOP/s", flush=True)
  floor = {"peak_torch": None if args.no_torch else measure("peak", "torch"),
           **{library: measure("floor", library)
              for library in ("jax",) + (() if args.no_torch else ("torch",))}}
  print(f"matmul floor: {floor}", flush=True)
  rows = []
  for p in points(QUICK_AXES if args.quick else AXES):
    scratch = Path(tempfile.mkdtemp(dir=args.tmp, prefix="scale_"))
    try:
      # In a process of its own: this one stays small (see run_child).
      subprocess.run([
          sys.executable, str(ROOT / "benchmarks" / "make_probe_data.py"),
          f"--out={scratch / 'data'}", f"--n={p['n']}", f"--n_test={N_TEST}",
          f"--d={p['d']}", f"--k={p['k']}",
          f"--n_val={N_VAL if p['m'] > 1 else 0}"],
                     check=True, stdout=subprocess.DEVNULL)
      row = {**p, "ours": ours(scratch / "data", p, scratch / "run")}
      if p["m"] == 1 and not args.no_torch:
        row["torch"] = torch_loop(scratch / "data", p)
    finally:
      shutil.rmtree(scratch, ignore_errors=True)
    rows.append(row)
    print(_line(row, peak), flush=True)
  report = _markdown(rows, peak) + _floor_text(rows, floor)
  Path(args.out).write_text(report)
  _plot(rows, Path(args.out).with_suffix(".png"))
  print(report)


def _flops(p: dict) -> float:
  return 4.0 * (p["n"] // BATCH * BATCH) * p["d"] * p["k"] * p["m"]


def _line(row: dict, peak: float) -> str:
  """A point's progress line: seconds per epoch, share of peak, peak GB."""
  text = f"N={row['n']:,} D={row['d']} K={row['k']} M={row['m']}:"
  for who in ("ours", "torch"):
    if who in row:
      text += f" {who} " + " / ".join(_cells(row, row[who], peak))
  return text


def _markdown(rows: list[dict], peak: float) -> str:
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  jax_version = metadata.version("jax")
  try:
    torch_version = metadata.version("torch")
  except metadata.PackageNotFoundError:
    torch_version = "not installed"
  head = (f"Measured {datetime.date.today()} with `.venv/bin/python "
          f"benchmarks/scale.py` on {os.cpu_count()} cores of "
          f"{_cpu_model()} ({platform.machine()}, "
          f"{platform.platform()}, Python {platform.python_version()}, JAX "
          f"{jax_version}, torch {torch_version}); float32 matmul peak "
          f"(XLA, 2048^3): {peak:.0f} GFLOP/s. Batch {BATCH}, SGD lr 0.1, "
          f"{EPOCHS} epochs, float32 features (N x D x 4 bytes); the M axis "
          f"at K = {M_AXIS_K} with a validation split of {N_VAL:,}.\n\n")
  table = ["| N | D | K | M | features GB | softmax_jax s/epoch | % of peak "
           "| peak GB | report s | PyTorch s/epoch | % of peak | peak GB "
           "| softmax_jax faster by |",
           "|" + "---|" * 13]
  for r in rows:
    o, t = r["ours"], r.get("torch", {})
    cells = [f"{r['n']:,}", r["d"], r["k"], r["m"],
             f"{r['n'] * r['d'] * 4 / 1e9:.2f}"]
    cells += [
        *_cells(r, o, peak),
        "-" if o.get("report_s") is None else f"{o['report_s']:.2f}"]
    cells += [
        *_cells(r, t, peak),
        f"{t['epoch_s'] / o['epoch_s']:.2f}x" if "epoch_s" in t and
        "epoch_s" in o else "-"]
    table.append("| " + " | ".join(str(c) for c in cells) + " |")
  return head + "\n".join(table) + "\n"


def _cpu_model() -> str:
  """The CPU's model name (the ratios depend on it: PyTorch's MKL runs at
  its best on Intel CPUs)."""
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "an unknown CPU"


def _floor_text(rows: list[dict], floor: dict) -> str:
  """The matmul floor at the speed target's point (BASE), beside the epochs
  measured there and the epoch a 1.5 x lead over PyTorch would need."""
  base: dict = next((r for r in rows if all(r[a] == BASE[a] for a in BASE)),
              {**BASE, "ours": {}})  # --quick: not measured
  flops = _flops(base)
  text = (f"\nThe matmul floor at N = {BASE['n']:,}, D = {BASE['d']}, K = "
          f"{BASE['k']} (each step's two matmuls alone, best of 3 epochs): "
          f"XLA {floor['jax']:.3f} s ({flops / floor['jax'] / 1e9:.0f} "
          "GFLOP/s)")
  if "torch" in floor:
    text += (f", PyTorch {floor['torch']:.3f} s "
             f"({flops / floor['torch'] / 1e9:.0f} GFLOP/s; its 2048^3 "
             f"matmul peak: {floor['peak_torch']:.0f} GFLOP/s)")
  text += "."
  if "epoch_s" in base.get("torch", {}):
    need = base["torch"]["epoch_s"] / 1.5
    text += (f" An epoch 1.5 x faster than PyTorch's loop "
             f"({base['torch']['epoch_s']:.3f} s) would take at most "
             f"{need:.3f} s: {floor['jax'] / need:.2f} x XLA's floor.")
  return text + "\n"


def _cells(row: dict, r: dict, peak: float) -> list[str]:
  """Seconds per epoch, share of the matmul peak, peak GB (or the error)."""
  if "epoch_s" not in r:
    return [r.get("error", "-"), "-", "-"]
  return [f"{r['epoch_s']:.3f}",
          f"{_flops(row) / r['epoch_s'] / 1e9 / peak:.0%}",
          f"{r['peak_gb']:.2f}"]


def _plot(rows: list[dict], path: Path) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  axes_names = {"n": "N (examples)", "d": "D (features)", "k": "K (classes)",
                "m": f"M (configurations, K = {M_AXIS_K})"}
  fig, grid = plt.subplots(2, 4, figsize=(16, 7), dpi=100)
  for col, (axis, label) in enumerate(axes_names.items()):
    on = sorted((r for r in rows if axis in r["axes"]), key=lambda r: r[axis])
    for who, style in (("ours", "o-"), ("torch", "s--")):
      pts = [(r[axis], r[who]) for r in on if "epoch_s" in r.get(who, {})]
      if not pts:
        continue
      xs = [x for x, _ in pts]
      name = "softmax_jax" if who == "ours" else "PyTorch"
      grid[0, col].plot(xs, [v["epoch_s"] for _, v in pts], style, label=name)
      grid[1, col].plot(xs, [v["peak_gb"] for _, v in pts], style, label=name)
    for row, ylabel in ((0, "seconds per epoch"), (1, "peak resident GB")):
      grid[row, col].set_xscale("log")
      grid[row, col].set_yscale("log")
      grid[row, col].set_xlabel(label)
      grid[row, col].set_ylabel(ylabel)
      grid[row, col].grid(True, which="both", alpha=0.3)
    grid[0, col].legend(fontsize=8)
  fig.suptitle(f"Epoch time and peak memory, batch {BATCH} (base: N = "
               f"{BASE['n']:,}, D = {BASE['d']}, K = {BASE['k']}, M = 1)")
  fig.tight_layout()
  fig.savefig(path)


if __name__ == "__main__":
  main()
