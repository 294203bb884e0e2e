# feedback-stream: every entry point a developer or CI needs.
# `make demo` and `make test` do all of the set-up on a fresh machine.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYSRC  := src tests bench

.PHONY: help install system-deps services-install services-up services-down \
        lint format typecheck test test-fast demo bench bench-quick clean \
        deploy-check compose-up

help:
	@echo "make demo          run the processor with iris default-vs-shadow traffic (no broker)"
	@echo "make test          install what tests need, start Kafka + Elasticsearch, lint, type check, run every test"
	@echo "make lint          ruff + mypy --strict"
	@echo "make services-up   start Kafka + Elasticsearch for working by hand (see .cache/services.env)"
	@echo "make services-down stop them"
	@echo "make bench         benchmarks (< 10 min); make bench-quick (< 1 min)"
	@echo "make deploy-check  compose, Dockerfile, Prometheus rules, dashboard, k8s manifests"
	@echo "make compose-up    the docker-compose stack (needs a Docker engine): http://localhost:3000"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,demo]'
	touch $@

install: $(STAMP)

# Debian packages the tests use (promtool/prometheus, chromium, nginx); a no-op when present.
system-deps:
	bash scripts/install-system-deps.sh

# Kafka's jars and Elasticsearch's distribution from Maven Central, cached in .cache/.
services-install: $(STAMP)
	$(BIN)/python -m tests._services install

services-up: services-install
	$(BIN)/python -m tests._services up

services-down:
	$(BIN)/python -m tests._services down

lint: $(STAMP)
	$(BIN)/ruff check $(PYSRC)
	$(BIN)/ruff format --check $(PYSRC)
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format $(PYSRC)
	$(BIN)/ruff check --fix $(PYSRC)

typecheck: $(STAMP)
	$(BIN)/mypy

# The services start inside the test run (session fixtures) and stop with it.
test: install system-deps services-install lint
	$(BIN)/pytest

test-fast: $(STAMP)
	$(BIN)/pytest -m "not kafka and not elasticsearch"

demo: $(STAMP)
	$(BIN)/feedback-stream demo

bench: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,demo,bench]'
	$(BIN)/python -m bench

bench-quick: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,demo,bench]'
	$(BIN)/python -m bench --quick

# Deployment files: compose config, hadolint, promtool check/test, dashboard, k8s schemas, live Prometheus.
deploy-check: $(STAMP) system-deps
	$(BIN)/pytest tests/test_deploy_static.py tests/test_prometheus_live.py

# Where a Docker engine runs: the whole local stack, then open http://localhost:3000.
compose-up:
	docker compose up --build

clean: services-down
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
