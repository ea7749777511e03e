# nesterov_bench -- `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.DEFAULT_GOAL := help
.PHONY: help setup test lint reproduce

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-14s %s\n", $$1, $$2}'

setup: ## Create .venv and install the package with its dev extras (torch 2.14.1 from local disk)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'

test: ## Run the test suite (CPU only, real MNIST/Fashion-MNIST from ../shared/data)
	$(PY) -m pytest -q

lint: ## Check style with ruff
	$(VENV)/bin/ruff check nesterov_bench tests scripts

PROFILE ?= paper
RESULTS ?= results
LAUNCHER ?=
reproduce: ## Rebuild a profile's results: tune, select, final, recipes (PROFILE=smoke|quick|paper, LAUNCHER=local)
	$(PY) -m nesterov_bench.reproduce --profile $(PROFILE) --results $(RESULTS) $(if $(LAUNCHER),--launcher $(LAUNCHER))
