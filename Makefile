# Roomgate: every command a developer or CI runs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
UV_VERSION ?= 0.13.9
VENV := .venv
BIN := $(VENV)/bin
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)

# Debian packages the tests and `make dev` run for real.
APT_PACKAGES := redis-server haproxy
# A recipe's shell fragment: install the Debian packages listed in $$missing (if any), as root or
# through sudo. $(call APT_ENSURE,<packages>) computes $$missing with dpkg -s; images-deps
# computes it from `command -v`.
APT_ENSURE = missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	$(APT_INSTALL_MISSING)
APT_INSTALL_MISSING = if [ -n "$$missing" ]; then \
	  command -v apt-get >/dev/null || { echo "install$$missing (no apt-get here)"; exit 1; }; \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

.PHONY: system-deps
system-deps: ## install the Debian packages (redis-server, haproxy) when missing
	@$(call APT_ENSURE,$(APT_PACKAGES))
	@command -v redis-server >/dev/null || { echo "redis-server missing after install"; exit 1; }

.PHONY: uv
uv:
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m pip install -q "uv==$(UV_VERSION)"

.PHONY: setup
setup: system-deps uv ## install everything: Debian packages, the venv with every service editable
	uv sync --frozen --python $(PYTHON) --all-packages

.PHONY: lock
lock: uv ## re-resolve uv.lock after changing a pyproject
	uv lock --python $(PYTHON)

.PHONY: protos
protos: ## regenerate the Python code of protos/
	$(BIN)/python tools/gen_protos.py

.PHONY: check-protos
check-protos:
	$(BIN)/python tools/gen_protos.py --check

.PHONY: lint
lint: ## ruff format check + ruff lint + import layering
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/lint-imports

.PHONY: fmt
fmt: ## format and autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

.PHONY: types
types: ## mypy strict over services/*/src and tools/src (exceptions: pyproject.toml overrides)
	$(BIN)/mypy --config-file pyproject.toml

.PHONY: pytest
pytest:
	$(BIN)/pytest $(PYTEST_ARGS)

# Each concern may add its own targets in mk/*.mk and append prerequisites of `make test`
# to TEST_DEPS (e.g. Go-built tools for the Kubernetes tests), or to TEST_LAST what runs
# after the main suite (the end-to-end tests on a real cluster).
TEST_DEPS :=
TEST_LAST :=
-include mk/*.mk

.PHONY: test
test: setup check-protos lint types $(TEST_DEPS) pytest $(TEST_LAST) ## what CI runs: install, check generated code, lint, all tests

.PHONY: check
check: setup check-protos lint types $(TEST_DEPS) pytest ## lint, types and tests

.PHONY: dev
dev: setup ## run the whole system locally (Ctrl-C stops everything)
	$(BIN)/roomgate dev

.PHONY: bench
bench: setup ## run the benchmarks (prints figures)
	$(BIN)/roomgate bench all
