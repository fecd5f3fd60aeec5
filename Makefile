# Every target creates .venv when missing and installs what it needs; all are idempotent.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: help serve test test-fast train lint format bench docker-test docker-build clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11 ...'"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# One stamp per extra set: reinstall only when pyproject.toml changes.
$(VENV)/.stamp-service: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[service]'
	@touch $@

$(VENV)/.stamp-all: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[service,training,dev]'
	@touch $@ $(VENV)/.stamp-service

serve: $(VENV)/.stamp-service  ## serve the committed default model on 127.0.0.1:8000
	VAE_HOST=$(HOST) VAE_PORT=$(PORT) $(BIN)/vae-serve

test: $(VENV)/.stamp-all  ## run the whole test suite
	$(PY) -m pytest

test-fast: $(VENV)/.stamp-all  ## the suite without network and slow tests
	$(PY) -m pytest -m "not network and not slow"

train: $(VENV)/.stamp-all  ## train, export and evaluate the default recipe into models/mnist-vae
	$(PY) -m training all

lint: $(VENV)/.stamp-all  ## ruff (lint + format check) and hadolint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile

format: $(VENV)/.stamp-all  ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(VENV)/.stamp-all  ## run the benchmark harness (writes benchmarks/results/)
	$(PY) -m benchmarks

docker-test:  ## build the image, start compose, drive every route, tear down
	bash scripts/docker-test.sh

clean:  ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis *.egg-info
