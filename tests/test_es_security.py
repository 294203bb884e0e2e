"""Least privilege, start-up waiting and unsupported servers, against real servers.

The least-privilege tests run an Elasticsearch 9 with x-pack security on
(file realm, plain http): a role that may read the request logger's
indices and write the outcome indices, but lacks ``manage_index_templates``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import pytest

from feedback_stream.engine import Engine
from feedback_stream.es import (
    ElasticsearchClient,
    ElasticsearchSettings,
    EsAuthenticationError,
    EsUnavailableError,
    EsUnsupportedServerError,
    Family,
    HistoryBootstrap,
    HistorySettings,
    OutcomeSink,
    Paging,
    SearchClient,
    connect,
    server_from_version,
)
from feedback_stream.events import ModelKey
from tests import _services
from tests._es_helpers import seed_messages, wait_for
from tests._request_logger import log_messages
from tests._tcp_proxy import TcpProxy
from tests.test_es_sink import FAST, feed_seed, sinking_engine

pytestmark = pytest.mark.elasticsearch

ROLES = """\
feedback_stream:
  cluster: [monitor]
  indices:
    - names: ["inference-log-*"]
      privileges: [read]
    - names: ["feedback-outcomes-*"]
      privileges: [create_index, write]
history_only:
  cluster: [monitor]
  indices:
    - names: ["inference-log-*"]
      privileges: [read]
"""
USERS = {
    "admin": ("admin-password-1", "superuser"),
    "feedback": ("feedback-password-1", "feedback_stream"),
    "reader": ("reader-password-1", "history_only"),
}


@pytest.fixture(scope="module")
def secured_url() -> Iterator[str]:
    service = _services.start_search_server("elasticsearch-9", users=USERS, roles_yml=ROLES)
    try:
        yield service.address
    finally:
        service.stop()


def as_user(url: str, user: str, password: str | None = None) -> ElasticsearchSettings:
    return ElasticsearchSettings(
        hosts=[url],
        username=user,
        password=password or USERS[user][0],
        sink_enabled=True,
        **{**FAST, "request_timeout_s": 60.0},
    )


@pytest.fixture
async def admin(secured_url: str) -> AsyncIterator[SearchClient]:
    client = await connect(as_user(secured_url, "admin"), wait_s=0)
    try:
        yield client
    finally:
        await client.close()


async def test_least_privilege_user_reads_history_and_writes_without_the_template(
    secured_url: str, admin: SearchClient, caplog: pytest.LogCaptureFixture
) -> None:
    ns = f"p{uuid.uuid4().hex[:10]}"
    await log_messages(admin, seed_messages(ns))
    client = await connect(as_user(secured_url, "feedback"), wait_s=0)
    try:
        engine = Engine(("total",))
        progress = await HistoryBootstrap(
            client,
            HistorySettings(enabled=True, index_pattern=f"inference-log-*-{ns}-*"),
            hosts=secured_url,
        ).run(engine.process_event)
        assert progress.state == "done", progress.error
        key = ModelKey(ns, "sklearn", "default", "irisclassifier-default")
        assert engine.metrics(key, "total").reward_sum == 46.0

        with caplog.at_level(logging.WARNING, logger="feedback_stream.es.sink"):
            async with OutcomeSink(client, as_user(secured_url, "feedback")) as sink:
                feed_seed(sinking_engine(sink), seed_messages(ns))
                await sink.flush()
        assert sink.stats.template == "refused"
        assert (sink.stats.written, sink.stats.rejected) == (100, 0)
        assert "manage_index_templates" in caplog.text
        assert "403" in caplog.text
        index = f"feedback-outcomes-{ns}-sklearn"
        await admin.refresh(index)
        found = await admin.search(index, {"size": 0, "track_total_hits": True})
        assert found["hits"]["total"]["value"] == 100
    finally:
        await client.close()


async def test_a_user_who_may_not_write_is_counted_not_retried_forever(
    secured_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    ns = f"p{uuid.uuid4().hex[:10]}"
    settings = as_user(secured_url, "reader")
    client = await connect(settings, wait_s=0)
    try:
        with caplog.at_level(logging.ERROR, logger="feedback_stream.es.sink"):
            async with OutcomeSink(client, settings) as sink:
                feed_seed(sinking_engine(sink), seed_messages(ns))
                # Returns: a 403 on the bulk is not retried.
                await sink.flush()
        assert sink.stats.written == 0
        assert sink.stats.rejected == 100
        assert sink.stats.pending == 0
        assert sink.stats.last_error is not None
        assert "HTTP 403" in sink.stats.last_error
        assert "retrying cannot help" in caplog.text
    finally:
        await client.close()


async def test_a_wrong_password_is_one_clear_error_without_waiting(secured_url: str) -> None:
    with pytest.raises(EsAuthenticationError, match="rejected the credentials"):
        await connect(as_user(secured_url, "feedback", "wrong-password-9"), wait_s=600)


async def test_start_up_waits_for_the_cluster(
    es_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    target = urlsplit(es_url)
    assert target.hostname is not None
    assert target.port is not None
    proxy = TcpProxy(target.hostname, target.port)
    proxy.port = _services.free_port()
    settings = ElasticsearchSettings(hosts=[proxy.url], max_retries=0)
    with caplog.at_level(logging.INFO, logger="feedback_stream.es._client"):
        connecting = asyncio.ensure_future(connect(settings, wait_s=120))
        await wait_for(lambda: "waiting for it" in caplog.text)
        assert not connecting.done()
        await proxy.start()
        try:
            client = await connecting
            assert isinstance(client, ElasticsearchClient)
            assert client.server.version[0] == 9
            await client.close()
        finally:
            await proxy.stop()


async def test_an_unreachable_cluster_gives_up_at_the_deadline() -> None:
    port = _services.free_port()
    settings = ElasticsearchSettings(hosts=[f"http://127.0.0.1:{port}"], max_retries=0)
    with pytest.raises(EsUnavailableError, match="unreachable"):
        await connect(settings, wait_s=1.0)


@pytest.mark.parametrize(
    ("family", "number", "missing"),
    [
        ("elasticsearch", "6.8.23", "typeless mappings"),
        ("elasticsearch", "10.0.0", "newest supported"),
        ("opensearch", "4.0.0", "newest supported"),
    ],
)
def test_an_unsupported_server_is_named_with_what_it_lacks(
    family: str, number: str, missing: str
) -> None:
    server = server_from_version(family, number)
    with pytest.raises(EsUnsupportedServerError) as raised:
        server.check_supported()
    assert number in str(raised.value)
    assert missing in str(raised.value)


@pytest.mark.parametrize(
    ("family", "number", "paging", "composable", "elasticsearch_client"),
    [
        ("elasticsearch", "7.6.2", Paging.SCROLL, False, False),
        ("elasticsearch", "7.10.2", Paging.SCROLL, True, False),
        ("elasticsearch", "7.17.29", Paging.PIT, True, False),
        ("elasticsearch", "8.19.21", Paging.PIT, True, False),
        ("elasticsearch", "9.2.0", Paging.PIT, True, True),
        ("opensearch", "1.3.20", Paging.SCROLL, True, False),
        ("opensearch", "3.6.0", Paging.SCROLL, True, False),
    ],
)
def test_each_version_gets_its_dialect(
    family: str, number: str, paging: Paging, composable: bool, elasticsearch_client: bool
) -> None:
    server = server_from_version(family, number)
    server.check_supported()
    assert server.family is Family(family)
    assert (server.paging, server.composable_templates, server.elasticsearch_client) == (
        paging,
        composable,
        elasticsearch_client,
    )
