"""History and outcome sink on every supported server family: ES 7.6, 8.19, 9.2, OpenSearch 2.19.

Each test runs once per server (the session fixture ``search_server``
starts each once per run), with documents written the request logger's
way, and checks the numbers against the seed's own aggregations and the
streamed run.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from feedback_stream.engine import Engine
from feedback_stream.es import (
    ElasticsearchClient,
    ElasticsearchSettings,
    Family,
    HistoryBootstrap,
    HistoryProgress,
    HistorySettings,
    OpenSearchClient,
    OutcomeSink,
    Paging,
    SearchClient,
    outcome_id,
)
from feedback_stream.events import ModelKey
from feedback_stream.generator import generate_records
from tests._es_helpers import delete_indices, seed_messages
from tests._request_logger import log_messages, messages_from_records
from tests.conftest import SearchServer
from tests.test_es_history import WINDOWS, generated, stream, window_view
from tests.test_es_sink import FAST, feed_seed, sinking_engine

pytestmark = pytest.mark.elasticsearch

EXPECTED: dict[str, tuple[Family, int, Paging, type[SearchClient]]] = {
    "elasticsearch-7": (Family.ELASTICSEARCH, 7, Paging.SCROLL, OpenSearchClient),
    "elasticsearch-8": (Family.ELASTICSEARCH, 8, Paging.PIT, OpenSearchClient),
    "opensearch-2": (Family.OPENSEARCH, 2, Paging.SCROLL, OpenSearchClient),
    "elasticsearch-9": (Family.ELASTICSEARCH, 9, Paging.PIT, ElasticsearchClient),
}


async def drop(client: SearchClient, pattern: str) -> None:
    """Delete the indices matching ``pattern`` (by name: wildcard deletes may be refused)."""
    if isinstance(client, ElasticsearchClient):
        await delete_indices(client.raw, pattern)
        return
    assert isinstance(client, OpenSearchClient)
    found = await client.raw.indices.get(
        index=pattern, params={"allow_no_indices": "true", "ignore_unavailable": "true"}
    )
    if found:
        await client.raw.indices.delete(index=",".join(found))


@pytest.fixture
async def namespace(search: SearchClient) -> AsyncIterator[str]:
    ns = f"c{uuid.uuid4().hex[:10]}"
    yield ns
    await drop(search, f"inference-log-*-{ns}-*")
    await drop(search, f"feedback-outcomes-{ns}-*")


async def load(
    client: SearchClient, engine: Engine, ns: str, paging: Paging | None = None
) -> HistoryProgress:
    settings = HistorySettings(enabled=True, index_pattern=f"inference-log-*-{ns}-*", page_size=97)
    loader = HistoryBootstrap(
        client,
        settings,
        hosts="test",
        time_basis=engine.time_basis,
        join_ttl_s=engine.ttl,
        paging=paging,
    )
    return await loader.run(engine.process_event)


async def count(client: SearchClient, index: str, query: dict[str, Any] | None = None) -> int:
    body = {"size": 0, "track_total_hits": True, "query": query or {"match_all": {}}}
    found = await client.search(index, body)
    return int(found["hits"]["total"]["value"])


async def test_the_server_is_detected_and_its_dialect_picked(
    search: SearchClient, search_server: SearchServer
) -> None:
    family, major, paging, kind = EXPECTED[search_server.key]
    assert search.server.family is family
    assert search.server.version[0] == major
    assert search.paging is paging
    assert isinstance(search, kind)
    assert str(search.server) == search_server.title


async def test_seed_run_history_is_exact(search: SearchClient, namespace: str) -> None:
    await log_messages(search, seed_messages(namespace))
    index = f"inference-log-seldon-{namespace}-sklearn-default"
    assert await count(search, index) == 100

    engine = Engine(WINDOWS)
    progress = await load(search, engine, namespace)
    assert progress.state == "done", progress.error
    assert (progress.documents, progress.events, sum(progress.invalid.values())) == (100, 263, 0)
    assert progress.total == 100
    key = ModelKey(namespace, "sklearn", "default", "irisclassifier-default")
    metrics = engine.metrics(key, "total")
    assert (metrics.outcomes, metrics.correct, metrics.accuracy) == (63, 63, 1.0)
    assert (metrics.reward_count, metrics.reward_sum) == (63, 46.0)
    counters = engine.model_counters(key)
    assert (counters.responses, counters.labelled, counters.conflicts) == (100, 63, 17)


async def test_history_equals_the_streamed_run_by_each_paging(
    search: SearchClient, namespace: str
) -> None:
    records = list(generate_records(generated(namespace, n_requests=250)))
    await log_messages(search, messages_from_records(records))
    streamed = Engine(WINDOWS)
    stream(streamed, records)
    pagings = [Paging.SCROLL] + ([Paging.PIT] if search.paging is Paging.PIT else [])
    for paging in pagings:
        loaded = Engine(WINDOWS)
        progress = await load(search, loaded, namespace, paging)
        assert progress.state == "done", (paging, progress.error)
        assert sum(progress.invalid.values()) == 0
        assert loaded.clock == streamed.clock
        for window in WINDOWS:
            assert window_view(loaded, window) == window_view(streamed, window), paging


async def test_sink_round_trip_answers_the_seed_aggregations(
    search: SearchClient, search_server: SearchServer, namespace: str
) -> None:
    settings = ElasticsearchSettings(hosts=[search_server.url], sink_enabled=True, **FAST)
    messages = seed_messages(namespace)
    index = f"feedback-outcomes-{namespace}-sklearn"
    async with OutcomeSink(search, settings) as sink:
        engine = sinking_engine(sink)
        feed_seed(engine, messages)
        await sink.flush()
        await search.refresh(index)
        assert await count(search, index) == 100
        found = await search.search(
            index,
            {
                "size": 0,
                "aggs": {
                    "reward_sum": {"sum": {"field": "reward"}},
                    "reward_count": {"filter": {"exists": {"field": "reward"}}},
                    "correct": {"terms": {"field": "correct"}},
                    "feedback": {"terms": {"field": "has_feedback"}},
                    "predicted": {"terms": {"field": "predicted"}},
                },
            },
        )
        aggs = found["aggregations"]
        assert aggs["reward_sum"]["value"] == 46.0
        assert aggs["reward_count"]["doc_count"] == 63
        assert {b["key_as_string"]: b["doc_count"] for b in aggs["correct"]["buckets"]} == {
            "true": 63
        }
        assert {b["key_as_string"]: b["doc_count"] for b in aggs["feedback"]["buckets"]} == {
            "true": 63,
            "false": 37,
        }
        # A keyword field: the template is in, on legacy and composable servers alike.
        assert aggs["predicted"]["buckets"] == [{"key": "t:2", "doc_count": 100}]
        assert sink.stats.template == "installed"

        headers, _ = messages[-1]
        amended = {**headers, "Ce-Id": "amendment", "Ce-Time": "2020-07-11T12:00:00Z"}
        wrong = {
            "reward": 0,
            "truth": {"data": {"names": ["t:0", "t:1", "t:2"], "ndarray": [[1, 0, 0]]}},
        }
        feed_seed(engine, [(amended, wrong)])
        await sink.flush()
        await search.refresh(index)
        key = ModelKey(namespace, "sklearn", "default", "irisclassifier-default")
        doc_id = outcome_id(key, headers["Ce-Requestid"], 0)
        hit = await search.search(index, {"query": {"ids": {"values": [doc_id]}}})
        (source,) = [h["_source"] for h in hit["hits"]["hits"]]
        assert (source["correct"], source["truth"]) == (False, "t:0")
        assert await count(search, index) == 100
    assert (sink.stats.rejected, sink.stats.dropped, sink.stats.pending) == (0, 0, 0)
    assert sink.stats.written == 101
    assert sink.stats.last_success is not None
