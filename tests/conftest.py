"""Session fixtures for the real services the tests run against.

Each service starts on first use and stops at the end of the run. When
``FEEDBACK_STREAM_TEST_KAFKA_BOOTSTRAP`` / ``FEEDBACK_STREAM_TEST_ES_URL``
name running ones (``make services-up``), those are used instead. A service
that fails to start is an error, never a skip: a skipped integration test
proves nothing.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from elasticsearch import AsyncElasticsearch

from feedback_stream.es import ElasticsearchSettings, create_client
from tests import _services

_RAN_AGAINST: dict[str, str] = {}


def _given_or_started(
    name: str, variable: str, given_as: Callable[[str], str], start: Callable[[], _services.Service]
) -> Iterator[str]:
    """The running service ``variable`` names, else one started here and stopped after."""
    given = os.environ.get(variable)
    if given:
        _RAN_AGAINST[name] = given_as(given)
        yield given
        return
    service = start()
    _RAN_AGAINST[name] = f"{service.version} at {service.address}"
    try:
        yield service.address
    finally:
        service.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of a real Kafka broker (KRaft, single node)."""
    yield from _given_or_started(
        "Kafka",
        "FEEDBACK_STREAM_TEST_KAFKA_BOOTSTRAP",
        lambda given: f"{given} (given)",
        _services.start_kafka,
    )


@pytest.fixture(scope="session")
def es_url() -> Iterator[str]:
    """Base URL of a real single-node Elasticsearch, security off."""
    yield from _given_or_started(
        "Elasticsearch",
        "FEEDBACK_STREAM_TEST_ES_URL",
        lambda given: f"{_services._es_version(given)} at {given} (given)",
        _services.start_elasticsearch,
    )


@pytest.fixture
async def es(es_url: str) -> AsyncIterator[AsyncElasticsearch]:
    """A client of the test Elasticsearch per test, so no connection outlives its test."""
    client = create_client(ElasticsearchSettings(hosts=[es_url]))
    try:
        yield client
    finally:
        await client.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which real services the run used, so a log shows what was proven."""
    if _RAN_AGAINST:
        terminalreporter.section("services")
        for name, where in sorted(_RAN_AGAINST.items()):
            terminalreporter.write_line(f"{name} {where}")
