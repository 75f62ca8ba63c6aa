# A newcomer's targets: `make workbook` runs the workbook, `make test` runs every test (what CI runs),
# `make test-fast` all but the slow ones (trainings, other Pythons with torch, whole workflows).
# Each creates .venv on first use and installs the project into it, at the exact versions of
# requirements-dev.lock (what CI passed); `make lock` refreshes that file from pyproject.toml.
# Python 3.11 (what CI runs), 3.12 or 3.13 (the suite passed on them by hand); PYTHON=/path/to/python picks another.
PYTHON ?= $(firstword $(shell command -v python3.11 python3.12 python3.13 2>/dev/null))
PROFILE ?= quick
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
LOCK   := requirements-dev.lock

.PHONY: workbook test test-fast lint format data lab bench docs clean-venv lock

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(PY) || test -n "$(PYTHON)" || { echo "make: no python3.11, python3.12 or python3.13 on PATH: install one, or give PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r $(LOCK) -e '.[dev]'
	touch $(STAMP)

# pip-compile keeps each pin that still satisfies pyproject.toml; LOCK_ARGS=--upgrade moves all to the newest.
LOCK_ARGS ?=
lock: $(STAMP)  ## refresh requirements-dev.lock after a change to the dependencies in pyproject.toml
	CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile --extra dev --unsafe-package pip \
		--strip-extras --no-emit-index-url --no-emit-find-links -q $(LOCK_ARGS) -o $(LOCK) pyproject.toml

workbook: $(STAMP)  ## run notebooks 01-07 with papermill (PROFILE=quick|recommended|gpu|full|tiny) into results/notebooks/
	$(PY) -m seglib.workbook --profile $(PROFILE)

test: $(STAMP)  ## the whole test suite; it ends with its 25 slowest tests (docs/testing.md: how long it takes)
	$(PY) -m pytest --durations=25

test-fast: $(STAMP)  ## the developer loop: every test but those marked slow (trainings, other Pythons, whole workflows)
	$(PY) -m pytest -m "not slow"

lint: $(STAMP)  ## ruff check, ruff format --check and mypy on the package (CI runs this)
	$(VENV)/bin/ruff check seglib tests notebooks benchmarks
	$(VENV)/bin/ruff format --check seglib tests notebooks benchmarks docs README.md
	$(VENV)/bin/mypy

format: $(STAMP)  ## apply ruff format
	$(VENV)/bin/ruff format seglib tests notebooks benchmarks docs README.md

data: $(STAMP)  ## download the real Oxford-IIIT Pet data set (about 800 MB) into data/oxford-iiit-pet
	$(PY) -m seglib download --data_path data/oxford-iiit-pet

bench: $(STAMP)  ## reference vs seglib fast path, interleaved; writes results/bench.json
	$(PY) -m seglib.bench --json results/bench.json

docs: $(STAMP)  ## regenerate the tables in README.md and docs/ from their CSV files (tests/test_docs.py checks them)
	$(PY) -m seglib.doctables

# JupyterLab on notebooks/, root included (containers); quiet, with its settings in .jupyter/ (no news
# pop-up, no update check, quiet kernels). In a container: make lab LAB_ARGS="--ip=0.0.0.0 --no-browser"
LAB_ARGS ?=
lab: $(STAMP)  ## JupyterLab on notebooks/ (also as root); it prints its URL
	JUPYTER_CONFIG_PATH="$(CURDIR)/.jupyter$${JUPYTER_CONFIG_PATH:+:$$JUPYTER_CONFIG_PATH}" \
		env $$($(PY) -m seglib.jemalloc) $(VENV)/bin/jupyter lab --ServerApp.root_dir="$(CURDIR)/notebooks" $(LAB_ARGS)

clean-venv:
	rm -rf $(VENV)
