# One entry point for everything: `make up` runs the mesh, `make test` passes the suite,
# `make check` runs exactly what CI runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c

GEN_DIR := gen/python
DESCRIPTOR := $(GEN_DIR)/sutazai/descriptor.binpb
PROTO_FILES := $(shell cd protos && find sutazai -name '*.proto' | sort)
PY_SOURCES := services sdk runtime client ops gateway tui tests

.PHONY: up down test test-unit check lint typecheck imports proto-check gen gen-check install install-dev bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==26.2

# Editable installs (gen/python on the path; see pyproject.toml): an edit is seen by pytest, mypy
# and lint-imports with no reinstall. Only a change of pyproject.toml reinstalls.
INSTALLED := $(VENV)/.installed
INSTALLED_DEV := $(VENV)/.installed-dev
# Build backends for --no-build-isolation: hatchling for this project, scikit-build-core for
# llama-cpp-python, which has no Linux wheel on PyPI and is built from its sdist here.
BUILD_DEPS := hatchling==1.33.0 scikit-build-core==0.11.6

$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet $(BUILD_DEPS)
	$(BIN)/python -m pip install --quiet --no-build-isolation --editable .
	touch $@

$(INSTALLED_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet $(BUILD_DEPS)
	$(BIN)/python -m pip install --quiet --no-build-isolation --editable '.[dev]'
	touch $@ $(INSTALLED)

install: $(INSTALLED)

install-dev: $(INSTALLED_DEV)

up: install
	$(BIN)/sutazai up

down:
	$(BIN)/sutazai down

test: install-dev
	$(BIN)/python -m pytest

# Everything that needs no server process: the inner loop.
test-unit: install-dev
	$(BIN)/python -m pytest -m "not integration"

check: install-dev lint typecheck imports proto-check gen-check
	$(BIN)/python -m pytest

lint:
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)

# mypy finds the hand-written packages through gen/python's symlinks; name them by their folders.
typecheck: install-dev
	$(BIN)/mypy | sed -E 's#^gen/python/sutazai/(services|sdk|runtime|client|ops|gateway|tui)/#\1/#'

imports: install-dev
	$(BIN)/lint-imports

# buf breaking compares with the previous commit; on the first commit there is nothing to compare.
proto-check:
	$(BIN)/buf format --diff --exit-code
	$(BIN)/buf lint
	@if git rev-parse --verify --quiet HEAD~1 >/dev/null; then \
		$(BIN)/buf breaking --against '.git#ref=HEAD~1'; \
	else echo "buf breaking: no previous commit"; fi

# Generated code: messages, .pyi and grpc stubs (+ typed stubs) under gen/python, and the
# descriptor set (with imports) that Envoy's transcoder and the gateway's reflection read.
# Only the generated packages (real directories) are replaced; the symlinks to the hand-written
# folders stay.
gen:
	find $(GEN_DIR)/sutazai -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
	$(BIN)/buf build --output $(DESCRIPTOR) --as-file-descriptor-set
	$(BIN)/python -m grpc_tools.protoc --descriptor_set_in=$(DESCRIPTOR) \
		--python_out=$(GEN_DIR) --mypy_out=$(GEN_DIR) \
		--grpc_python_out=$(GEN_DIR) --mypy_grpc_out=$(GEN_DIR) \
		$(PROTO_FILES)
	find $(GEN_DIR)/sutazai -mindepth 1 -type d -exec touch {}/py.typed \;

gen-check: gen
	@git add --intent-to-add --all $(GEN_DIR) $(DESCRIPTOR) >/dev/null 2>&1 || true
	@git diff --exit-code --stat -- $(GEN_DIR) $(DESCRIPTOR) || \
		{ echo "generated code is stale: run 'make gen' and commit the result"; exit 1; }

bench: install-dev
	$(BIN)/python -m sutazai.ops.bench edge
	$(BIN)/python -m sutazai.ops.bench auth

clean:
	rm -rf $(VENV) build dist .mypy_cache .pytest_cache .ruff_cache
