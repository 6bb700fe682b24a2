# Atlas: every target installs what it needs first (Debian packages, uv, the venv), idempotently.
SHELL := /bin/bash
VENV := .venv/bin
export UV_PYTHON_DOWNLOADS := never

.PHONY: bootstrap demo test lint typecheck unit integration bench down

bootstrap:
	@scripts/bootstrap.sh

## make demo: boot the default lab and show where NetBox and Prefect answer
demo: bootstrap
	$(VENV)/atlas lab up

## make test: lint, types, unit tests, then integration tests against a lab of their own
test: bootstrap lint typecheck
	$(VENV)/pytest tests/unit tests/integration tests/e2e

lint: bootstrap
	$(VENV)/ruff check atlas tests bench
	$(VENV)/ruff format --check atlas tests bench

typecheck: bootstrap
	$(VENV)/mypy

unit: bootstrap
	$(VENV)/pytest tests/unit

integration: bootstrap
	$(VENV)/pytest tests/integration

bench: bootstrap
	$(VENV)/python bench/lab_boot.py

down:
	$(VENV)/atlas lab down
