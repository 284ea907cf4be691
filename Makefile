# TaskForge's front door: `make help` lists the targets.  Everything runs from .venv,
# which `make venv` (a prerequisite of the others) creates from python3 when missing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# pytest-xdist worker processes for `make test` (tests/conftest.py groups what must not
# overlap); PYTEST_WORKERS=0 runs the suite in this process, one test at a time.
PYTEST_WORKERS ?= 2
BENCH_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv run test lint typecheck protos migrate bench bench-scale bench-hosts deploy-check clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  make %-10s %s\n", $$1, $$2}' \
		$(MAKEFILE_LIST)

venv: $(STAMP) ## Create .venv and install TaskForge with its dev tools (again when setup.cfg changes)

$(BIN)/python:
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
		echo "could not create $(VENV): on Debian, apt-get install python3-venv" >&2; exit 1; }

$(STAMP): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -e '.[dev]'
	@touch $@

run: venv ## Run Redis, the API, gRPC, a Celery worker and beat on this machine
	$(BIN)/taskforge run

test: venv ## Run the tests on 2 processes (PYTEST_ARGS='-k name -x', PYTEST_WORKERS=0)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

lint: venv ## Check style with ruff (lint and formatting) and the layering with import-linter
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: venv ## Type-check with mypy
	$(BIN)/mypy app tasks grpc_service taskforge_client

protos: venv ## Generate the gRPC stubs from proto/
	$(BIN)/python -m grpc_service.codegen

migrate: venv ## Apply database migrations to DATABASE_URL (default: SQLite in var/)
	$(BIN)/taskforge db upgrade

bench: venv ## Benchmark TaskForge vs raw Celery (BENCH_ARGS='--quick'; docs/performance.md)
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

bench-scale: venv ## Time the reads over 1,000,000 jobs, SQLite (+ BENCH_POSTGRES_URL); SCALE_ARGS
	$(BIN)/python -m benchmarks.scale $(SCALE_ARGS)

bench-hosts: venv ## Worker scaling across simulated hosts on PostgreSQL vs raw Celery (root)
	$(BIN)/python -m benchmarks.hosts_scale $(BENCH_ARGS)

deploy-check: venv ## Lint the Dockerfile, validate deploy/compose.yaml, verify the systemd units
	$(BIN)/python -m pytest tests/deploy/test_artefacts.py

clean: ## Remove caches and build output (keeps .venv and the data in var/)
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
	rm -rf .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov test-output build dist \
		*.egg-info
