"""The documentation site: its flags reference is generated from the code
and holds every flag (docs/hooks.py), and the site builds with every
warning an error."""

import dataclasses
import importlib.util
import re
import shutil
import subprocess
import sys

from absl import flags
import pytest

from conftest import ROOT
from softmax_jax import cli
from softmax_jax.config import Config


def _hooks():
  spec = importlib.util.spec_from_file_location("hooks",
                                                ROOT / "docs" / "hooks.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_the_flags_reference_holds_every_flag_with_its_default():
  text = _hooks().flags_markdown()
  rows = {line.split("|")[1].strip(): line for line in text.splitlines()
          if line.startswith("| `--")}
  for flag in flags.FLAGS.get_flags_for_module(cli.__name__):
    assert f"`--{flag.name}`" in rows, flag.name
  for f in dataclasses.fields(Config):
    row = rows[f"`--{f.name}`"]
    default = "auto" if f.default is None else str(f.default)
    assert row.split("|")[2].strip() == f"`{default}`", row
  # Which solvers read a field: tol is L-BFGS's and OWL-QN's, lr the
  # minibatch optimizers'.
  assert rows["`--tol`"].split("|")[4].strip() == "lbfgs, owlqn"
  assert rows["`--lr`"].split("|")[4].strip() == "sgd, momentum, adam"
  assert rows["`--dataset`"].split("|")[4].strip() == "all"


@pytest.mark.slow
def test_the_site_builds_with_warnings_as_errors(tmp_path):
  pytest.importorskip("mkdocs")
  site = tmp_path / "site"
  r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict",
                      "--quiet", "--site-dir", str(site)], cwd=ROOT,
                     capture_output=True, text=True, timeout=300, check=False,
                     env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin",
                          "HOME": str(tmp_path)})
  assert r.returncode == 0, r.stderr[-3000:]
  flags_page = (site / "reference" / "flags" / "index.html").read_text()
  assert "--matmul_precision" in flags_page and "<!-- flags -->" not in (
      flags_page)
  api = (site / "reference" / "api" / "index.html").read_text()
  assert "SoftmaxRegressionCV" in api and "cross_entropy" in api
  assert not (site / "hooks.py").exists()
  assert not list(site.rglob("__pycache__"))
  # The tutorial notebook as a page, with its saved outputs (figures).
  tutorial = (site / "tutorial" / "index.html").read_text()
  assert "jax.grad" in tutorial and "data:image/png;base64" in tutorial
  # The guide's pages link the benchmarks' reports and the figures, served
  # at their repository paths.
  assert (site / "benchmarks" / "sparse" / "index.html").exists()
  assert (site / "experiments" / "figures" / "d2l_weights.png").exists()
  assert 'src="../../experiments/figures/d2l_weights.png"' in (
      site / "guide" / "d2l" / "index.html").read_text()
  shutil.rmtree(site)


def test_the_readme_is_short_and_its_links_resolve():
  """The README is the front page (at most 250 lines); every relative link
  in it names a file of the repository."""
  text = (ROOT / "README.md").read_text()
  assert len(text.splitlines()) <= 250
  targets = re.findall(r"\]\(([^)#\s]+)", text)
  local = [t for t in targets if "://" not in t]
  assert len(local) > 20, local
  missing = [t for t in local if not (ROOT / t).exists()]
  assert not missing, missing
