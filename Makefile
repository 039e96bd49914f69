# localllm.fleet — the commands a newcomer and CI use. Each target sets up what it needs.
#   make demo   the lab fleet, site.yml over it, the report     make test   lint + unit + molecule
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ROOT := $(CURDIR)
VENV := $(ROOT)/.venv
PYTHON := $(VENV)/bin/python
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(ROOT)/ansible.cfg
export CONTAINERS_CONF := $(ROOT)/tests/lab/containers.conf
export ANSIBLE_FORCE_COLOR ?= 0
export PY_COLORS ?= 0

# Molecule scenarios to run (default: all of them), e.g. `make integration SCENARIOS=ollama_default`.
SCENARIOS ?=

.PHONY: help system-packages setup lint unit unit-py39 integration test demo lab-up lab-down lab-status collection clean

help: ## this list
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

system-packages: ## the control node's system packages: podman, the lab's tools, Node.js (seconds when there)
	@scripts/system-packages

setup: ## the pinned toolchain in .venv (seconds when done)
	@scripts/setup

lint: setup ## yamllint, ansible-lint (production profile), ruff check + format, spec drift
	yamllint --strict .
	ansible-lint --offline
	ruff check .
	ruff format --check .
	$(PYTHON) scripts/check-argument-specs

unit: setup ## pytest unit and conformance tests (no lab needed)
	pytest -q -n 2 tests/unit

unit-py39: setup ## the host-side unit tests under Python 3.9 (Debian 11 container, built once)
	tests/py39/run

integration: setup lab-up ## molecule scenarios on the lab's images
	$(PYTHON) scripts/molecule-run $(SCENARIOS)

test: system-packages lint unit unit-py39 collection integration ## everything CI runs

collection: setup ## build the collection tarball into build/
	ansible-galaxy collection build --force --output-path build/ .

demo: system-packages setup lab-up ## the lab fleet, site.yml over every profile, the fleet report
	scripts/demo

lab-up: setup ## build or reuse the lab images, start the mirror and the hosts
	$(PYTHON) scripts/lab up

lab-down: ## remove the lab (cached images stay; scripts/lab down --purge removes them)
	@if [ -x $(PYTHON) ]; then $(PYTHON) scripts/lab down; else python3 scripts/lab down; fi

lab-status: ## the lab's hosts, profiles and SSH ports
	@$(PYTHON) scripts/lab status

clean: ## remove build outputs (not the venv, not the lab)
	rm -rf build .pytest_cache .ruff_cache
