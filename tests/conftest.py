"""Session fixtures for the real services the tests run against.

Each service starts on first use and stops at the end of the run. When
``FEEDBACK_STREAM_TEST_KAFKA_BOOTSTRAP`` / ``FEEDBACK_STREAM_TEST_ES_URL``
name running ones (``make services-up``), those are used instead. A service
that fails to start is an error, never a skip: a skipped integration test
proves nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests import _services

_RAN_AGAINST: dict[str, str] = {}


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of a real Kafka broker (KRaft, single node)."""
    given = os.environ.get("FEEDBACK_STREAM_TEST_KAFKA_BOOTSTRAP")
    if given:
        _RAN_AGAINST["Kafka"] = f"{given} (given)"
        yield given
        return
    service = _services.start_kafka()
    _RAN_AGAINST["Kafka"] = f"{service.version} at {service.address}"
    try:
        yield service.address
    finally:
        service.stop()


@pytest.fixture(scope="session")
def es_url() -> Iterator[str]:
    """Base URL of a real single-node Elasticsearch, security off."""
    given = os.environ.get("FEEDBACK_STREAM_TEST_ES_URL")
    if given:
        _RAN_AGAINST["Elasticsearch"] = f"{_services._es_version(given)} at {given} (given)"
        yield given
        return
    service = _services.start_elasticsearch()
    _RAN_AGAINST["Elasticsearch"] = f"{service.version} at {service.address}"
    try:
        yield service.address
    finally:
        service.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which real services the run used, so a log shows what was proven."""
    if _RAN_AGAINST:
        terminalreporter.section("services")
        for name, where in sorted(_RAN_AGAINST.items()):
            terminalreporter.write_line(f"{name} {where}")
