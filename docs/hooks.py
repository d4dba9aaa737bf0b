"""MkDocs hooks (mkdocs.yml's `hooks:`): the flags reference is generated
from the code when the site is built, so it cannot drift from the command
line (tests/docs_test.py checks that every flag is in it); the benchmarks'
dated reports and the experiments' figures, which live beside the scripts
that write them, join the site at their repository paths (a guide page
links ../benchmarks/sparse.md)."""

from __future__ import annotations

from pathlib import Path
import sys

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDER = "<!-- flags -->"
# Files outside docs/ that the site serves, at the same paths.
REPOSITORY_FILES = ("benchmarks/*.md", "benchmarks/*.png",
                    "experiments/figures/*.md", "experiments/figures/*.png")


def flags_markdown() -> str:
  """Every flag of launch.py as markdown: the Config fields (default, what
  a sweep may do with it, the solvers that read it, help), then the run's
  own flags (default, help)."""
  sys.path.insert(0, str(ROOT))
  import dataclasses  # pylint: disable=g-import-not-at-top

  from absl import flags  # pylint: disable=g-import-not-at-top

  from softmax_jax import cli  # pylint: disable=g-import-not-at-top
  from softmax_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from softmax_jax import solvers  # pylint: disable=g-import-not-at-top

  roles = {config_lib.RUN: "one value a run",
           config_lib.VALUE: "swept in one program",
           config_lib.STATIC: "swept, a program each"}
  names = list(solvers.REGISTRY)
  lines = ["## The model, data and solver: `Config` fields", "",
           "A comma list sweeps a field ([Sweeps](../guide/sweeps.md)) "
           "where its role allows; *solvers* are the `--optimizer` values "
           "that read it (a flag their solver does not read is refused).", "",
           "| flag | default | role | solvers | what it does |",
           "|---|---|---|---|---|"]
  fields = dataclasses.fields(config_lib.Config)
  for f in fields:
    reading = [n for n in names if solvers.reads(n, f.name)]
    who = "all" if reading == names else ", ".join(reading)
    lines.append(f"| `--{f.name}` | `{_text(f.default)}` | "
                 f"{roles[f.metadata['role']]} | {who} | "
                 f"{_cell(f.metadata['help'])} |")
  lines += ["", "## The run: `launch.py`'s own flags", "",
            "| flag | default | what it does |", "|---|---|---|"]
  config_names = {f.name for f in fields}
  for flag in flags.FLAGS.get_flags_for_module(cli.__name__):
    if flag.name not in config_names:
      lines.append(f"| `--{flag.name}` | `{_text(flag.default)}` | "
                   f"{_cell(flag.help)} |")
  return "\n".join(lines) + "\n"


def _text(value) -> str:
  return "auto" if value is None else str(value).replace("|", "\\|")


def _cell(text: str) -> str:
  return " ".join(text.split()).replace("|", "\\|")


def on_page_markdown(markdown: str, page, **kwargs) -> str:
  del kwargs
  if PLACEHOLDER in markdown:
    return markdown.replace(PLACEHOLDER, flags_markdown())
  return markdown


def on_files(files, config, **kwargs):
  """The REPOSITORY_FILES as pages and images of the site (the reports out
  of the navigation, reached from the pages that cite them)."""
  del kwargs
  from mkdocs.structure.files import File  # pylint: disable=g-import-not-at-top
  from mkdocs.structure.files import InclusionLevel  # pylint: disable=g-import-not-at-top
  for pattern in REPOSITORY_FILES:
    for path in sorted(ROOT.glob(pattern)):
      files.append(File.generated(
          config, path.relative_to(ROOT).as_posix(), abs_src_path=str(path),
          inclusion=InclusionLevel.NOT_IN_NAV))
  return files
