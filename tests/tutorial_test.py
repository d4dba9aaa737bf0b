"""The tutorial notebook (docs/tutorial.ipynb) runs from its first cell to
its last on 5,000 training images, its own checks included (the softmax
by hand, p - y from jax.grad, calibration lowering the NLL), and trains a
model worth the name."""

import os
import re

import pytest

from conftest import optimized_xla_flags
from conftest import ROOT

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")


@pytest.mark.slow  # a kernel process, ~1 minute of one core
def test_the_tutorial_notebook_runs(tmp_path):
  notebook = nbformat.read(ROOT / "docs" / "tutorial.ipynb", as_version=4)
  client = nbclient.NotebookClient(
      notebook, timeout=600, kernel_name="python3",
      resources={"metadata": {"path": str(tmp_path)}})
  env = {**os.environ, "TUTORIAL_ROWS": "5000", "PYTHONPATH": str(ROOT),
         "XLA_FLAGS": optimized_xla_flags()}  # (it trains for real)
  env.pop("MPLBACKEND", None)  # the kernel's own: inline figures
  client.execute(env=env)  # a failing cell raises CellExecutionError
  text = "\n".join(output.get("text", "")
                   for cell in notebook.cells if cell.cell_type == "code"
                   for output in cell.outputs)
  assert "5,000 training and 10,000 test images" in text
  # The library's d2l run on 5,000 images, and the L-BFGS probe.
  run = float(re.search(r"^test accuracy (\S+), ECE", text, re.M).group(1))
  probe = float(re.search(r"iterations; test accuracy (\S+)", text).group(1))
  assert 0.7 < run < 0.9 and 0.7 < probe < 0.9, (run, probe)
  assert "converged True" in text
  figures = sum("image/png" in output.get("data", {})
                for cell in notebook.cells if cell.cell_type == "code"
                for output in cell.outputs)
  assert figures == 3
