# ntune: `make demo` sets up and runs the quickstart; `make test` sets up and runs lint + tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup demo test lint typecheck format bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev,bench]"
	touch $(STAMP)

demo: setup
	RAY_AUTH_MODE=disabled $(VENV)/bin/ntune run configs/quickstart_study.yaml

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint typecheck
	RAY_AUTH_MODE=disabled $(VENV)/bin/pytest -m "not gpu" $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/trainer_speed.py
	$(PY) benchmarks/searcher_landscape.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
