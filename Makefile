# A newcomer's targets: `make workbook` runs the workbook, `make test` runs the tests.
# Both create .venv on first use and install the project into it.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: workbook test lint data lab clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

workbook: $(STAMP)  ## train and evaluate on the default data (real if present, else the synthetic set)
	$(PY) -m seglib.workbook

test: $(STAMP)  ## the whole test suite
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check seglib tests

data: $(STAMP)  ## download the real Oxford-IIIT Pet data set (about 800 MB) into data/oxford-iiit-pet
	$(PY) -m seglib download --data_path data/oxford-iiit-pet

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks

clean-venv:
	rm -rf $(VENV)
