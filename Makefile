# nesterov_bench -- `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.DEFAULT_GOAL := help
.PHONY: help setup test test-all lint reproduce estimate analyze paper latex-deps paper-pdf bench gpu-bundle gpu-check

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-14s %s\n", $$1, $$2}'

setup: ## Create .venv and install the package with its dev extras (torch 2.14.1 from local disk)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'

PYTEST := $(PY) -m pytest -q -n 2 --dist loadgroup
test: ## The fast test tier (3:59 on 2 cores, fresh clone): every module, real MNIST/Fashion-MNIST on a few tests
	$(PYTEST) -m "not slow"

test-all: ## Every test, the slow tier included (20:46 on 2 cores; smoke pipeline, kill/collide sweeps, real epochs); what CI runs
	$(PYTEST)

lint: ## Check style with ruff
	$(VENV)/bin/ruff check nesterov_bench tests scripts

PROFILE ?= quick
RESULTS ?= results
LAUNCHER ?=
ARGS ?=
reproduce: ## Run a profile (default quick), resuming finished runs: tune, select, final, recipes, analysis, PDF; a profile other than the paper's reports to results/reports/<profile>/ (PROFILE=quick|smoke|paper|full, LAUNCHER=local, ARGS='data.download=true')
	$(PY) -m nesterov_bench.reproduce --profile $(PROFILE) --results $(RESULTS) $(if $(LAUNCHER),--launcher $(LAUNCHER)) $(ARGS)

JOBS ?= 2
DEVICE ?= auto
estimate: ## Project a profile's reproduce time here from timed slices of each kind of job, stage by stage, beside its finished runs (PROFILE, JOBS=2 side by side, DEVICE, ARGS; paper ~5 min) -> results/bench/estimate-*.json, README table
	$(PY) scripts/estimate_paper_time.py --profile $(PROFILE) --jobs $(JOBS) --device $(DEVICE) --results $(RESULTS) --check --readme README.md $(ARGS)

analyze: ## Rebuild paper/generated and the README's results block from the paper's profile in results/ (paper_profile in conf/analysis.yaml)
	$(PY) -m nesterov_bench.analyze --results $(RESULTS) $(if $(STUDY),--profile $(STUDY))

paper: analyze paper-pdf ## Rebuild every table, figure and number and the PDF from the committed results of the paper's profile (no training)

LATEX_PKGS := texlive-latex-base texlive-latex-recommended latexmk lmodern
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
latex-deps: ## Install the LaTeX toolchain from Debian when latexmk is missing
	@command -v latexmk >/dev/null 2>&1 || { \
		$(SUDO) apt-get update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(LATEX_PKGS); }

paper-pdf: latex-deps ## Build paper/main.pdf from paper/generated/ (no training, no analysis)
	latexmk -pdf -interaction=nonstopmode -halt-on-error -quiet -cd paper/main.tex

bench: ## Time the training loop, optimizer steps, vectorized members, threads, the CNN's layout and max-pool against baselines (CPU, ~6 min; results/bench/)
	$(PY) scripts/bench.py --readme README.md

gpu-bundle: ## Put what an air-gapped GPU node needs beside the tree (hydra/omegaconf/antlr4 wheels, MNIST archives) in gpu_bundle/
	scripts/gpu_bundle.sh $(PY)

GPU_OUT ?= results/bench
gpu-check: ## On a CUDA GPU (its own python3, no network, gpu_bundle/ beside): determinism, members, per-step costs, throughput, DeepOBS baseline -> $(GPU_OUT)/gpu.json (~8 min)
	scripts/gpu_check.sh --out $(GPU_OUT)
