# Atlas: every target installs what it needs first (Debian packages, uv, the venv), idempotently.
SHELL := /bin/bash
VENV := .venv/bin
export UV_PYTHON_DOWNLOADS := never

.PHONY: bootstrap demo test lint typecheck unit integration bench down

bootstrap:
	@scripts/bootstrap.sh

## make demo: boot the default lab, bring its active rack and a planned rack up, show where to watch
demo: bootstrap
	$(VENV)/atlas lab up
	$(VENV)/atlas run bringup --lab atlas --site fra1 --rack fra1-r01
	$(VENV)/atlas run bringup --lab atlas --site fra1 --rack fra1-r02
	@echo "The runs, their logs and report artifacts: http://127.0.0.1:28004/runs"

## make test: lint, types, unit tests, then integration tests against a lab of their own
test: bootstrap lint typecheck
	$(VENV)/pytest --durations=15 tests/unit tests/integration tests/e2e

lint: bootstrap
	$(VENV)/ruff check atlas tests bench flows playbooks
	$(VENV)/ruff format --check atlas tests bench flows playbooks

typecheck: bootstrap
	$(VENV)/mypy

unit: bootstrap
	$(VENV)/pytest tests/unit

integration: bootstrap
	$(VENV)/pytest tests/integration

bench: bootstrap
	$(VENV)/python bench/lab_boot.py
	$(VENV)/python bench/bringup.py
	$(VENV)/python bench/sweep_vs_nornir.py

down:
	$(VENV)/atlas lab down
