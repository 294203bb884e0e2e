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
from dataclasses import dataclass

import pytest
from elasticsearch import AsyncElasticsearch

from feedback_stream import CORE_BUILD
from feedback_stream.es import ElasticsearchSettings, SearchClient, connect, create_client
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


@dataclass(frozen=True)
class SearchServer:
    """One of the search servers every history and sink compatibility test runs against."""

    key: str
    title: str
    url: str


@pytest.fixture(
    scope="session",
    params=["elasticsearch-7", "elasticsearch-8", "opensearch-2", "elasticsearch-9"],
)
def search_server(request: pytest.FixtureRequest) -> Iterator[SearchServer]:
    """Each search server in turn, started once per run and stopped before the next one.

    Elasticsearch 9 is the ``es_url`` one; the others start here (pytest
    groups the tests by this parameter, so one extra server runs at a time).
    """
    key: str = request.param
    dist = _services.SEARCH_SERVERS[key]
    if key == "elasticsearch-9":
        yield SearchServer(key, dist.title, request.getfixturevalue("es_url"))
        return
    service = _services.start_search_server(key)
    _RAN_AGAINST[dist.title] = f"{service.version} at {service.address}"
    try:
        yield SearchServer(key, dist.title, service.address)
    finally:
        service.stop()


@pytest.fixture
async def search(search_server: SearchServer) -> AsyncIterator[SearchClient]:
    """A client of the current search server, of the kind :func:`connect` picks for it."""
    client = await connect(ElasticsearchSettings(hosts=[search_server.url]), wait_s=0)
    try:
        yield client
    finally:
        await client.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which real services the run used, so a log shows what was proven, and how
    the core ran (a stale compiled build is never used: the pure modules ran)."""
    if CORE_BUILD.stale:
        terminalreporter.write_sep("!", f"feedback_stream core: {CORE_BUILD.reason}", red=True)
    if _RAN_AGAINST:
        terminalreporter.section("services")
        for name, where in sorted(_RAN_AGAINST.items()):
            terminalreporter.write_line(f"{name} {where}")


def pytest_report_header() -> list[str]:
    """How the core runs in this run: compiled (mypyc), or the pure-Python modules and why."""
    return [f"feedback_stream core: {CORE_BUILD.reason}"]
