# feedback-stream: every entry point a developer or CI needs.
# `make demo` and `make test` do all of the set-up on a fresh machine.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYSRC  := src tests bench setup.py
# The core's tests, run a second time against the pure-Python modules by `make test`.
PURE_TESTS := tests/test_join.py tests/test_windows.py tests/test_partition.py \
              tests/test_decode.py tests/test_order_independence.py tests/test_metrics.py \
              tests/test_snapshot.py tests/test_caps.py tests/test_paired.py \
              tests/test_compiled.py

.PHONY: help install compile system-deps services-install services-up services-down \
        lint format typecheck test test-fast test-pure demo bench bench-quick clean \
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

# The editable install itself is pure Python (fast, and it never fails on a mypyc
# error); `compile` below builds the core's extensions in place (docs/building.md).
$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	FEEDBACK_STREAM_COMPILE=0 $(BIN)/python -m pip install -q -e '.[dev,demo]'
	touch $@

# Compiles the core with mypyc (setup.py build_ext --inplace) when one of its sources
# changed since the last build, a no-op otherwise; a stale build is never used
# (src/feedback_stream/_compiled.py).
compile: $(STAMP)
	$(BIN)/python src/feedback_stream/_compiled.py build

install: $(STAMP) compile

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
# The suite runs against the compiled core; then the core's own tests run again
# against the pure-Python modules (FEEDBACK_STREAM_PURE=1), which the differential
# test also compares with the compiled ones.
# The core's compile (CPU) overlaps the downloads of system packages and services (network).
test:
	$(MAKE) -j3 --output-sync=target install system-deps services-install
	$(MAKE) lint
	$(BIN)/pytest
	$(MAKE) test-pure

test-pure: compile
	FEEDBACK_STREAM_PURE=1 $(BIN)/pytest $(PURE_TESTS)

test-fast: install
	$(BIN)/pytest -m "not kafka and not elasticsearch"

demo: install
	$(BIN)/feedback-stream demo

bench: install
	FEEDBACK_STREAM_COMPILE=0 $(BIN)/python -m pip install -q -e '.[dev,demo,bench]'
	$(BIN)/python -m bench

bench-quick: install
	FEEDBACK_STREAM_COMPILE=0 $(BIN)/python -m pip install -q -e '.[dev,demo,bench]'
	$(BIN)/python -m bench --quick

# Deployment files: compose config, hadolint, promtool check/test, dashboard, k8s schemas, live Prometheus.
deploy-check: $(STAMP) system-deps
	$(BIN)/pytest tests/test_deploy_static.py tests/test_prometheus_live.py

# Where a Docker engine runs: the whole local stack, then open http://localhost:3000.
compose-up:
	docker compose up --build

clean: services-down
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build
	rm -f src/feedback_stream/*.so src/feedback_stream/_compiled_sources.json
