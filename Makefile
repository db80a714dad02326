# Conveyor — the two commands users need are `make run` and `make test`.
SHELL := /bin/bash
UV ?= uv
PYTEST_ARGS ?=

.PHONY: install infra-up infra-down infra-status browser run test chaos test-unit lint validate-deploy fmt bench profile clean

install:            ## install Python deps from the lock file (and uv itself if missing)
	@scripts/bootstrap.sh

infra-up:           ## start RabbitMQ and the MongoDB-wire server (installs them if missing)
	@scripts/infra.sh up

browser:            ## Debian's chromium for the dashboard's browser tests (installs it if missing)
	@scripts/browser.sh

infra-down:
	@scripts/infra.sh down

infra-status:
	@scripts/infra.sh status

run: install infra-up  ## the whole stack in the foreground (API on :8000)
	@$(UV) run --frozen python scripts/supervise.py

test: install infra-up browser  ## the whole test suite against the real servers
	@$(UV) run --frozen pytest $(PYTEST_ARGS)

test-unit: install
	@$(UV) run --frozen pytest tests/unit $(PYTEST_ARGS)

lint: install       ## ruff + mypy strict
	@$(UV) run --frozen ruff check .
	@$(UV) run --frozen ruff format --check .
	@$(UV) run --frozen mypy

validate-deploy: install  ## check compose, k8s, Prometheus and Grafana files offline
	@scripts/infra.sh tools
	@$(UV) run --frozen python scripts/rabbitmq_definitions.py --check
	@$(UV) run --frozen python scripts/validate_deploy.py

fmt: install
	@$(UV) run --frozen ruff format .
	@$(UV) run --frozen ruff check --fix .

chaos: install infra-up  ## 10,000 jobs through kills and restarts, then the reckoning (tests/chaos)
	@$(UV) run --frozen python -m tests.chaos $(CHAOS_ARGS)

bench: install infra-up  ## Conveyor vs Celery side by side (see bench/README.md)
	@$(UV) run --frozen python bench/compare.py $(BENCH_ARGS)

profile: install infra-up  ## py-spy flame graphs of the API, workers and notifier under the bench's load
	@$(UV) run --frozen python bench/compare.py --systems conveyor --no-scaling --no-io-scaling --jobs 5000 --profile bench/results/profile $(BENCH_ARGS)

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache
