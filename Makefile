# make run   set up on first use, then train: python launch.py --loss=xent $(ARGS)
# make test  set up on first use, then run the tests (all: what CI runs), on
#            every core (pytest-xdist; tests/conftest.py orders the files)
#            with one fresh compilation cache for the run, compiling
#            quickly (LLVM -O0: tests/conftest.py)
# make test-fast  the quick loop: the tests without the slow ones (over ~3 s
#            of CPU each: processes, devices, real-data and reference fits)
# make lint  ruff (style, 80 columns, imports) and mypy (types), configured
#            in pyproject.toml
# make docs  the documentation site (mkdocs.yml) into runs/site, every
#            warning an error
# make notebook  run the tutorial notebook (docs/tutorial.ipynb) again in
#            place, on all the data: the outputs the site shows
# make setup the virtual environment in .venv (the pinned requirements and
#            this package, editable) and the data set, idempotent

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ARGS ?=
# One pytest-xdist worker per core; each test file in one worker, the files
# in the order tests/conftest.py puts them (the longest first).
PYTEST := $(PY) -m pytest -q -n auto --dist=loadfile --no-loadscope-reorder
DEBIAN_DATA := /usr/share/datasets/fashion-mnist

.PHONY: setup venv data run test test-fast lint docs notebook clean

setup: venv data

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps \
	  --no-build-isolation --editable .
	touch $@

# Offline, Fashion-MNIST comes from Debian's package (installed when we are root).
data: venv
	@if [ ! -d $(DEBIAN_DATA) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; }; \
	fi
	$(PY) launch.py --mode=prepare_data

run: setup
	$(PY) launch.py $(if $(ARGS),$(ARGS),--loss=xent)

test: setup
	$(PYTEST) tests

lint: venv
	$(PY) -m ruff check
	$(PY) -m mypy

docs: venv
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet

notebook: setup
	$(PY) -m nbconvert --to notebook --execute --inplace docs/tutorial.ipynb

test-fast: setup
	$(PYTEST) -m "not slow" tests

clean:
	rm -rf $(VENV) runs dist .pytest_cache .mypy_cache .ruff_cache
