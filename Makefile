# Every target creates .venv when missing and installs what it needs; all are idempotent.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
HOST ?= 127.0.0.1
PORT ?= 8000
# Where CPU torch (torch==2.13.0+cpu in requirements/dev.txt) comes from; see INSTALL_LOCK.
TORCH_INDEX_URL ?= https://download.pytorch.org/whl/cpu
# Extra pip-compile flags for `make lock`: LOCK_FLAGS=--upgrade, LOCK_FLAGS='--upgrade-package fastapi'.
LOCK_FLAGS ?=
PIP_TOOLS_VERSION := 7.6.2

.PHONY: help serve serve-ray install-ray browser test test-fast train lint format bench docker-test \
	docker-build lock clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11 ...'"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Dependencies come from the locks in requirements/ (exact versions and sha256 hashes, see `lock`),
# then the project itself with --no-deps. CPU torch (in dev.txt) is on PyTorch's CPU index, not on
# PyPI: pip first tries only the sources it is configured with (a machine may have that wheel in a
# local wheel directory or a mirror, and asking an unreachable index costs seconds per package),
# then once more with TORCH_INDEX_URL added. The wheel must match the lock's hash either way.
INSTALL_LOCK = $(PY) -m pip install --quiet --require-hashes

# One stamp per lock: reinstall only when the lock (or pyproject.toml) changes.
$(VENV)/.stamp-service: requirements/service.txt pyproject.toml | $(PY)
	$(INSTALL_LOCK) -r requirements/service.txt
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $@

# requirements/service.txt pins a subset of requirements/dev.txt at the same versions.
$(VENV)/.stamp-all: requirements/dev.txt requirements/service.txt pyproject.toml | $(PY)
	$(INSTALL_LOCK) -r requirements/dev.txt || { \
		echo "retrying with $(TORCH_INDEX_URL) for CPU torch"; \
		$(INSTALL_LOCK) --extra-index-url $(TORCH_INDEX_URL) -r requirements/dev.txt; }
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $@ $(VENV)/.stamp-service

# The `ray` extra on top of the dev environment (requirements/ray.txt is resolved under dev.txt).
$(VENV)/.stamp-ray: requirements/ray.txt $(VENV)/.stamp-all
	$(INSTALL_LOCK) -r requirements/ray.txt
	@touch $@

install-ray: $(VENV)/.stamp-ray  ## install Ray Serve (the `ray` extra) into .venv

NODES ?= 1
serve-ray: $(VENV)/.stamp-ray  ## serve the default model from a local Ray cluster of NODES nodes on 127.0.0.1:8000
	exec $(PY) -m service.ray_serve --nodes $(NODES) --host $(HOST) --port $(PORT)

# The /explorer page is tested in a real browser: Debian's chromium, installed when missing
# (as root with apt-get; elsewhere the browser test skips and says why).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			{ apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; } \
				|| echo "note: installing chromium failed: the /explorer browser test will skip"; \
		else echo "note: no chromium on PATH: the /explorer browser test will skip"; fi; }

# Ray phones home and probes cloud metadata when it starts, so the tests that start Ray run in a
# loopback-only network namespace (needs root); `pytest` outside one skips them and says why.
OFFLINE_NETNS ?= scripts/offline-netns.sh

# exec: the server replaces the recipe's shell, so a supervisor's SIGTERM to this process reaches it.
serve: $(VENV)/.stamp-service  ## serve the committed default model on 127.0.0.1:8000
	VAE_HOST=$(HOST) VAE_PORT=$(PORT) exec $(BIN)/vae-serve

test: $(VENV)/.stamp-all $(VENV)/.stamp-ray browser  ## run the whole test suite
	$(PY) -m pytest -m "not ray"
	@if $(OFFLINE_NETNS) true 2>/dev/null; then \
		$(OFFLINE_NETNS) $(PY) -m pytest -m ray; \
	else echo "skipped the Ray tests: $(OFFLINE_NETNS) cannot make a network namespace here" \
		"(it needs root, CAP_SYS_ADMIN, util-linux's unshare and iproute2's ip)"; fi

test-fast: $(VENV)/.stamp-all  ## the suite without network and slow tests
	$(PY) -m pytest -m "not network and not slow and not ray"

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

# The locks: requirements/dev.txt (service + training + dev: `make test`, CI) is resolved first
# from pyproject.toml's extras; the others are resolved under it as a constraint, so every package
# they share has the same version: service.txt (`make serve`, the service image), train.txt (the
# train image), gpu.txt and gpu-cuda12.txt (the service-gpu image: the gpu extra plus the
# requirements/gpu*.in beside them, for CUDA 13 and CUDA 12 drivers), ray.txt (the ray extra:
# `make install-ray` on top of dev.txt, and the service-ray image).
# Existing pins are kept unless pyproject.toml no longer allows them (LOCK_FLAGS=--upgrade to move).
# They are for Linux x86_64 and CPython 3.11 (CI's machines and the images): pip-compile resolves
# for the machine it runs on, so run `make lock` on one.
# pip-tools writes the project itself into a lock when one extra names another (`vae-service[api]`,
# jazzband/pip-tools#2002) and warns that pip may reject the file: that entry and its comment are
# removed (the Makefile and the images install the project separately, with --no-deps).
PIP_COMPILE = CUSTOM_COMPILE_COMMAND='make lock' $(BIN)/pip-compile --quiet --generate-hashes \
	--allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links $(LOCK_FLAGS)
LOCKS := requirements/dev.txt requirements/service.txt requirements/train.txt \
	requirements/gpu.txt requirements/gpu-cuda12.txt requirements/ray.txt

$(BIN)/pip-compile: | $(PY)
	$(PY) -m pip install --quiet 'pip-tools==$(PIP_TOOLS_VERSION)'

lock: $(BIN)/pip-compile  ## re-resolve the locks in requirements/ from pyproject.toml's extras
	$(PIP_COMPILE) --extra service --extra training --extra dev -o requirements/dev.txt pyproject.toml
	$(PIP_COMPILE) --extra service -c requirements/dev.txt -o requirements/service.txt pyproject.toml
	$(PIP_COMPILE) --extra training -c requirements/dev.txt -o requirements/train.txt pyproject.toml
	$(PIP_COMPILE) --extra ray -c requirements/dev.txt -o requirements/ray.txt pyproject.toml
	for gpu in gpu gpu-cuda12; do \
		$(PIP_COMPILE) --extra gpu -c requirements/dev.txt -o requirements/$$gpu.txt \
			pyproject.toml requirements/$$gpu.in || exit 1; \
	done
	sed -i -e '/^# WARNING: pip install will require the following package to be hashed/,+1d' \
		-e '/^vae-service @ /,+1d' $(LOCKS)
	@! grep -n -e '^vae-service' -e 'file:/' $(LOCKS)
	@echo "locked: $(LOCKS) (the project's own entry removed, see the Makefile)"

docker-test:  ## build the image, start compose, drive every route, tear down
	bash scripts/docker-test.sh

clean:  ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis *.egg-info
