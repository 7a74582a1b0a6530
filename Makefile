# lambda-sink: developer entry points. Everything a target needs is installed by the target itself.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STACK := $(PY) dev/stack
PYTEST_ARGS ?=

.PHONY: help venv images lint test test-unit test-stack stack-up stack-down stack-status demo demo-down bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed  ## create .venv with the project and its dev tools

# The operator and runtime images from deploy/docker/Dockerfile, built with buildah on a local
# base (no registry), saved as docker archives under ~/.cache/lambda-sink/images/<inputs digest>/.
images: venv  ## build the operator and runtime images (cached by a digest of their inputs)
	$(PY) dev/images.py

STACK_TEST_DIRS := tests/integration tests/cluster tests/e2e

lint: venv  ## ruff, mypy (strict: packages, bench, dev/, tests/), import contracts
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check runtime operator bench
	$(VENV)/bin/mypy
	set -e; for d in $(STACK_TEST_DIRS); do MYPYPATH=$$d $(VENV)/bin/mypy $$d; done
	$(VENV)/bin/lint-imports

test-unit: venv  ## fast tests, no stack
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

.PHONY: test-lowest
test-lowest:  ## unit tests in a scratch venv with the lowest versions pyproject declares
	PYTHON=$(PYTHON) tests/lowest_versions.sh $(PYTEST_ARGS)

stack-up: venv  ## install what is missing and start Pulsar, Kubernetes API and Lambda locally
	$(STACK) up

stack-down: venv  ## stop everything the stack started
	$(STACK) down

stack-status: venv  ## what runs and where
	$(STACK) status

# The whole suite on the real local stack; the stack is stopped whatever the outcome.
test: venv images  ## the whole suite: builds the images, starts the real stack, runs every test, stops it
	$(STACK) up
	set -o pipefail; rc=0; $(PY) -m pytest $(PYTEST_ARGS) || rc=$$?; $(STACK) down; exit $$rc

demo: venv  ## the product end to end on the local stack (see README)
	$(PY) dev/demo.py

demo-down: venv  ## stop the demo: the stack, with every container of its node
	$(PY) dev/demo.py down

bench: venv  ## benchmarks; results printed, written to bench/results/ and bench/README.md
	$(STACK) up
	rc=0; $(PY) -m bench $(BENCH_ARGS) || rc=$$?; exit $$rc

clean:
	rm -rf $(VENV) .stack .mypy_cache .ruff_cache .pytest_cache .import_linter_cache .grimp_cache
