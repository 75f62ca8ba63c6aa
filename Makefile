# A newcomer's targets: `make workbook` runs the workbook, `make test` runs every test (what CI runs),
# `make test-fast` all but the slow ones (the trainings and whole workflows).
# Each creates .venv on first use and installs the project into it.
PYTHON ?= python3.11
PROFILE ?= quick
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: workbook test test-fast lint format data lab bench docs clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

workbook: $(STAMP)  ## run notebooks 01-06 with papermill (PROFILE=quick|full|tiny) into results/notebooks/
	$(PY) -m seglib.workbook --profile $(PROFILE)

test: $(STAMP)  ## the whole test suite
	$(PY) -m pytest

test-fast: $(STAMP)  ## the developer loop: every test but those marked slow (the trainings and whole workflows)
	$(PY) -m pytest -m "not slow"

lint: $(STAMP)  ## ruff check and ruff format --check (CI runs this)
	$(VENV)/bin/ruff check seglib tests notebooks benchmarks
	$(VENV)/bin/ruff format --check seglib tests notebooks benchmarks

format: $(STAMP)  ## apply ruff format
	$(VENV)/bin/ruff format seglib tests notebooks benchmarks

data: $(STAMP)  ## download the real Oxford-IIIT Pet data set (about 800 MB) into data/oxford-iiit-pet
	$(PY) -m seglib download --data_path data/oxford-iiit-pet

bench: $(STAMP)  ## reference vs seglib fast path, interleaved; writes results/bench.json
	$(PY) -m seglib.bench --json results/bench.json

docs: $(STAMP)  ## regenerate the tables in README.md and docs/ from their CSV files (tests/test_docs.py checks them)
	$(PY) -m seglib.doctables

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks

clean-venv:
	rm -rf $(VENV)
