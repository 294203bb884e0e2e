"""Credentials and TLS, through nginx in front of the test Elasticsearch.

Right credentials work for the history reader and the sink; wrong ones, an
untrusted certificate and a wrong API key each give one clear error; no
secret shows in any log record, message or status view.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from elasticsearch import AsyncElasticsearch

from feedback_stream.engine import Engine
from feedback_stream.es import (
    ElasticsearchEdgeError,
    ElasticsearchSettings,
    EsAuthenticationError,
    EsTlsError,
    HistoryBootstrap,
    HistorySettings,
    OutcomeSink,
    check_connection,
    create_client,
)
from feedback_stream.es import connect as connect_search
from feedback_stream.events import ModelKey
from feedback_stream.outcomes import pair_outcomes
from tests._es_helpers import delete_indices, seed_messages, wait_for
from tests._request_logger import log_messages
from tests._tls_proxy import TlsProxy, start_tls_proxy

pytestmark = pytest.mark.elasticsearch

PASSWORD = "correct-horse-battery-staple"
API_KEY = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="
SECRETS = (PASSWORD, API_KEY, "wrong-password-123", "d3Jvbmcta2V5")


@pytest.fixture(scope="module")
def tls_proxy(es_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsProxy]:
    target = urlsplit(es_url)
    proxy = start_tls_proxy(
        f"{target.hostname}:{target.port}",
        tmp_path_factory.mktemp("es-tls-proxy"),
        "feedback-stream",
        PASSWORD,
        API_KEY,
    )
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record of every logger, the client's included, at DEBUG."""
    with caplog.at_level(logging.DEBUG):
        yield caplog
    for secret in SECRETS:
        assert secret not in caplog.text


def settings_for(url: str, **kwargs: Any) -> ElasticsearchSettings:
    return ElasticsearchSettings(hosts=[url], max_retries=0, request_timeout_s=10, **kwargs)


def basic_auth(proxy: TlsProxy, password: str, **kwargs: Any) -> ElasticsearchSettings:
    """Settings for the proxy's basic-auth door as its user, with ``password``."""
    return settings_for(proxy.basic_url, username=proxy.username, password=password, **kwargs)


async def connect(settings: ElasticsearchSettings) -> None:
    client = create_client(settings)
    try:
        await check_connection(client, settings.hosts_text, "checking the connection")
    finally:
        await client.close()


@pytest.fixture
async def seed_namespace(es_url: str) -> AsyncIterator[str]:
    es = AsyncElasticsearch(es_url)
    ns = f"a{uuid.uuid4().hex[:10]}"
    try:
        await log_messages(es, seed_messages(ns))
        yield ns
        await delete_indices(es, f"inference-log-*-{ns}-*")
        await delete_indices(es, f"feedback-outcomes-{ns}-*")
    finally:
        await es.close()


async def test_basic_auth_over_tls_reads_history_and_writes_outcomes(
    tls_proxy: TlsProxy, seed_namespace: str, all_logs: pytest.LogCaptureFixture
) -> None:
    settings = basic_auth(
        tls_proxy,
        PASSWORD,
        ca_certs=tls_proxy.ca_certs,
        sink_enabled=True,
        sink_flush_interval_s=0.05,
    )
    await connect(settings)
    client = create_client(settings)
    try:
        engine = Engine(("total",))
        sink = OutcomeSink(client, settings)
        engine.add_outcome_listener(sink.on_outcomes)
        loader = HistoryBootstrap(
            client,
            HistorySettings(enabled=True, index_pattern=f"inference-log-*-{seed_namespace}-*"),
            hosts=settings.hosts_text,
        )
        progress = await loader.run(engine.process_event)
        assert (progress.state, progress.documents) == ("done", 100)
        await sink.flush()
        assert sink.stats.written == 63
        for text in (str(progress.as_dict(time.monotonic())), str(sink.stats.as_dict())):
            assert PASSWORD not in text
    finally:
        await client.close()
    assert PASSWORD not in str(settings.redacted())


async def test_wrong_password_is_a_clear_authentication_error(
    tls_proxy: TlsProxy, all_logs: pytest.LogCaptureFixture
) -> None:
    settings = basic_auth(tls_proxy, "wrong-password-123", ca_certs=tls_proxy.ca_certs)
    with pytest.raises(EsAuthenticationError) as caught:
        await connect(settings)
    message = str(caught.value)
    assert tls_proxy.basic_url in message
    assert "rejected the credentials (HTTP 401)" in message
    assert "wrong-password-123" not in message

    client = create_client(settings)
    try:
        loader = HistoryBootstrap(
            client, HistorySettings(enabled=True, required=True), hosts=settings.hosts_text
        )
        with pytest.raises(EsAuthenticationError):
            await loader.run(lambda item: None)
        assert loader.progress.error is not None
        assert "wrong-password-123" not in loader.progress.error
    finally:
        await client.close()


async def test_missing_credentials_are_refused(tls_proxy: TlsProxy) -> None:
    with pytest.raises(EsAuthenticationError):
        await connect(settings_for(tls_proxy.basic_url, ca_certs=tls_proxy.ca_certs))


async def test_untrusted_certificate_is_a_clear_tls_error(
    tls_proxy: TlsProxy, tmp_path: Path
) -> None:
    with pytest.raises(EsTlsError, match="ca_certs"):
        await connect(basic_auth(tls_proxy, PASSWORD))
    # Skipping verification is possible, and explicit.
    await connect(basic_auth(tls_proxy, PASSWORD, verify_certs=False))


async def test_api_key_is_sent_and_checked(
    tls_proxy: TlsProxy, all_logs: pytest.LogCaptureFixture
) -> None:
    await connect(settings_for(tls_proxy.api_key_url, api_key=API_KEY, ca_certs=tls_proxy.ca_certs))
    with pytest.raises(EsAuthenticationError, match="API key"):
        await connect(
            settings_for(tls_proxy.api_key_url, api_key="d3Jvbmcta2V5", ca_certs=tls_proxy.ca_certs)
        )


async def test_sink_with_wrong_credentials_keeps_the_outcomes_and_says_why(
    tls_proxy: TlsProxy, all_logs: pytest.LogCaptureFixture
) -> None:
    settings = basic_auth(
        tls_proxy,
        "wrong-password-123",
        ca_certs=tls_proxy.ca_certs,
        sink_enabled=True,
        sink_flush_interval_s=0.05,
        sink_retry_initial_s=0.05,
    )
    client = create_client(settings)
    sink = OutcomeSink(client, settings)
    try:
        await sink.start()
        key = ModelKey("auth", "iris", "default", "clf")
        for o in pair_outcomes(key, "p", ("a",), ("a",), 1.0, 1e9, 1e9, 1e9, None, 0):
            sink.apply(o)
        await wait_for(lambda: not sink.stats.available)
        assert not sink.stats.available
        assert sink.stats.last_error is not None
        assert "rejected the credentials" in sink.stats.last_error
        assert sink.stats.pending == 1
    finally:
        await sink.stop(timeout_s=0.2)
        await client.close()


async def test_http_to_an_https_port_hints_at_the_scheme(tls_proxy: TlsProxy) -> None:
    url = tls_proxy.basic_url.replace("https://", "http://")
    with pytest.raises(ElasticsearchEdgeError, match=r"use an https:// URL"):
        await connect_search(settings_for(url), wait_s=0)
