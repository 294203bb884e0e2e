"""The outcome sink against a real Elasticsearch: round trip, outage, recovery."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from elasticsearch import AsyncElasticsearch

from feedback_stream.decode import DecodeError, decode_http
from feedback_stream.engine import Engine
from feedback_stream.es import (
    ElasticsearchSettings,
    OutcomeSink,
    create_client,
    outcome_id,
    outcome_index,
)
from feedback_stream.events import Event, EventKind, ModelKey, SourcePosition
from feedback_stream.join import EventStatus, JoinResult
from feedback_stream.outcomes import Outcome, pair_outcomes
from tests._es_helpers import delete_indices, seed_messages, wait_for
from tests._tcp_proxy import TcpProxy

pytestmark = pytest.mark.elasticsearch

FAST = {
    "sink_flush_interval_s": 0.05,
    "sink_retry_initial_s": 0.05,
    "sink_retry_max_s": 0.2,
    "request_timeout_s": 5.0,
}


@pytest.fixture
async def namespace(es: AsyncElasticsearch) -> AsyncIterator[str]:
    ns = f"s{uuid.uuid4().hex[:10]}"
    yield ns
    await delete_indices(es, f"feedback-outcomes-{ns}-*")


def outcomes(ns: str, start: int, count: int) -> list[Outcome]:
    key = ModelKey(ns, "iris", "default", "clf")
    out: list[Outcome] = []
    for i in range(start, start + count):
        out.extend(
            pair_outcomes(key, f"puid-{i}", ("a",), ("a",), 1.0, 1e9 + i, 1e9, 1e9 + i, None, i)
        )
    return out


def feed_seed(engine: Engine, messages: list[tuple[dict[str, str], object]]) -> None:
    for n, (headers, body) in enumerate(messages):
        at = time.time()
        item = decode_http(headers, json.dumps(body), at, SourcePosition("http", 0, n))
        assert not isinstance(item, DecodeError), item
        engine.process_event(item)


def sinking_engine(sink: OutcomeSink) -> Engine:
    """An engine whose outcomes and join results all go to ``sink``."""
    engine = Engine(("total",))
    engine.add_outcome_listener(sink.on_outcomes)
    engine.add_result_listener(sink.on_result)
    return engine


async def feed_and_refresh(
    es: AsyncElasticsearch,
    sink: OutcomeSink,
    engine: Engine,
    messages: list[tuple[dict[str, str], object]],
    index: str,
) -> None:
    """Feed ``messages``, flush the sink and refresh ``index`` so searches see them."""
    feed_seed(engine, messages)
    await sink.flush()
    await es.indices.refresh(index=index)


async def test_round_trip_answers_the_seed_aggregations(
    es: AsyncElasticsearch, es_url: str, namespace: str
) -> None:
    settings = ElasticsearchSettings(hosts=[es_url], sink_enabled=True, **FAST)
    messages = seed_messages(namespace)
    index = f"feedback-outcomes-{namespace}-sklearn"
    async with OutcomeSink(es, settings) as sink:
        engine = sinking_engine(sink)
        await feed_and_refresh(es, sink, engine, messages, index)
        assert (await es.count(index=index))["count"] == 100

        found = await es.search(
            index=index,
            size=0,
            aggregations={
                "reward_sum": {"sum": {"field": "reward"}},
                "reward_count": {"filter": {"exists": {"field": "reward"}}},
                "correct": {"terms": {"field": "correct"}},
                "feedback": {"terms": {"field": "has_feedback"}},
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
        mapping = (await es.indices.get_mapping(index=index))[index]["mappings"]["properties"]
        assert mapping["predicted"]["type"] == "keyword"
        assert mapping["feedback_time"]["type"] == "date"

        # The same history again (a restart): the same documents, no copies.
        await feed_and_refresh(es, sink, sinking_engine(sink), messages, index)
        assert (await es.count(index=index))["count"] == 100

        # An amendment overwrites the outcome it amends.
        headers, _ = messages[-1]
        puid = headers["Ce-Requestid"]
        amended = {**headers, "Ce-Id": "amendment", "Ce-Time": "2020-07-11T12:00:00Z"}
        wrong = {
            "reward": 0,
            "truth": {"data": {"names": ["t:0", "t:1", "t:2"], "ndarray": [[1, 0, 0]]}},
        }
        await feed_and_refresh(es, sink, engine, [(amended, wrong)], index)
        key = ModelKey(namespace, "sklearn", "default", "irisclassifier-default")
        doc = await es.get(index=index, id=outcome_id(key, puid, 0))
        assert doc["_source"]["correct"] is False
        assert doc["_source"]["truth"] == "t:0"
        assert (await es.count(index=index))["count"] == 100
    assert sink.stats.rejected == 0
    assert sink.stats.dropped == 0


async def test_elasticsearch_down_mid_run_keeps_serving_and_catches_up(
    es: AsyncElasticsearch, es_url: str, namespace: str
) -> None:
    target = urlsplit(es_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 9200)
    await proxy.start()
    client = create_client(ElasticsearchSettings(hosts=[proxy.url], max_retries=0))
    settings = ElasticsearchSettings(
        hosts=[proxy.url],
        sink_enabled=True,
        sink_bulk_size=10,
        sink_buffer_max=60,
        **FAST,
    )
    sink = OutcomeSink(client, settings)
    await sink.start()
    try:
        for o in outcomes(namespace, 0, 30):
            sink.apply(o)
        await wait_for(lambda: sink.stats.written == 30)

        await proxy.stop()
        for o in outcomes(namespace, 30, 20):
            sink.apply(o)
        await wait_for(lambda: not sink.stats.available)
        assert sink.stats.last_error is not None
        assert "unreachable" in sink.stats.last_error
        # The processor goes on joining and serving metrics meanwhile.
        engine = sinking_engine(sink)
        key = ModelKey(namespace, "iris", "default", "clf")
        for i in range(50, 70):
            for kind, classes, reward in (("response", ("a",), None), ("feedback", ("b",), 0.0)):
                identity = (kind, f"id-{i}")
                event = Event(EventKind(kind), f"puid-{i}", key, 2e9 + i, identity, classes, reward)
                engine.process_event(event)
        metrics = engine.metrics(key, "total")
        assert (metrics.outcomes, metrics.correct) == (20, 0)
        for o in outcomes(namespace, 70, 30):  # 20 fit in the buffer, 10 do not
            sink.apply(o)
        assert sink.stats.dropped == 10
        assert sink.stats.pending == 60
        await asyncio.sleep(0.5)  # retries go on without blocking the loop
        assert sink.stats.failures >= 2

        await proxy.start()  # Elasticsearch is back
        await wait_for(lambda: sink.stats.pending == 0 and sink.stats.available)
    finally:
        await sink.stop()
        await client.close()
        await proxy.stop()
    index = outcome_index(settings.sink_index, ModelKey(namespace, "iris", "default", "clf"))
    await es.indices.refresh(index=index)
    assert (await es.count(index=index))["count"] == 90
    assert sink.stats.written == 90
    assert sink.stats.dropped == 10


async def test_flush_waits_for_the_bulk_the_sender_has_in_flight(
    es: AsyncElasticsearch, es_url: str, namespace: str
) -> None:
    """The state commit flushes the sink, then commits the input offsets: a flush
    that returned while the sender's bulk (taken out of the buffer) was still in
    flight let a SIGKILL lose its documents. It returns once they are written,
    sent again after the bulk failed."""
    target = urlsplit(es_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 9200)
    await proxy.start()
    client = create_client(ElasticsearchSettings(hosts=[proxy.url], max_retries=0))
    settings = ElasticsearchSettings(
        hosts=[proxy.url], sink_enabled=True, **{**FAST, "request_timeout_s": 60.0}
    )
    sink = OutcomeSink(client, settings)
    await sink.start()
    try:
        sink.apply(outcomes(namespace, 0, 1)[0])
        await wait_for(lambda: sink.stats.written == 1)
        proxy.stall()  # Elasticsearch takes the request and does not answer
        for o in outcomes(namespace, 1, 20):
            sink.apply(o)
        await wait_for(lambda: sink.stats.pending == 20 and not sink._buffer)  # all in flight
        flush = asyncio.create_task(sink.flush())
        await asyncio.sleep(0.5)
        assert not flush.done(), "flush returned with 20 documents unwritten"
        await proxy.stop()  # the request is cut, never delivered: the bulk fails
        proxy.resume()
        await proxy.start()
        async with asyncio.timeout(20):
            await flush
        assert sink.stats.written == 21
        assert sink.stats.failures >= 1
    finally:
        await sink.stop()
        await client.close()
        await proxy.stop()
    index = outcome_index(settings.sink_index, ModelKey(namespace, "iris", "default", "clf"))
    await es.indices.refresh(index=index)
    assert (await es.count(index=index))["count"] == 21


async def test_responses_are_left_out_when_asked(namespace: str) -> None:
    settings = ElasticsearchSettings(hosts=["http://127.0.0.1:9"], sink_responses=False)
    client = create_client(settings)
    try:
        sink = OutcomeSink(client, settings)
        engine = Engine(("total",))
        engine.add_result_listener(sink.on_result)
        key = ModelKey(namespace, "iris", "default", "clf")
        engine.process_event(Event(EventKind.RESPONSE, "p", key, 1.0, ("r", "1"), ("a",)))
        assert sink.stats.pending == 0
        with_responses = OutcomeSink(client, settings.model_copy(update={"sink_responses": True}))
        with_responses.on_result(
            Event(EventKind.RESPONSE, "p", key, 1.0, ("r", "1"), ("a", "b")),
            JoinResult(EventStatus.ACCEPTED),
        )
        assert with_responses.stats.pending == 2
    finally:
        await client.close()


async def test_sink_starts_and_stops_while_elasticsearch_is_unreachable(namespace: str) -> None:
    settings = ElasticsearchSettings(
        hosts=["http://127.0.0.1:9"],
        sink_enabled=True,
        max_retries=0,
        **FAST,
    )
    client = create_client(settings)
    sink = OutcomeSink(client, settings)
    try:
        await sink.start()
        for o in outcomes(namespace, 0, 5):
            sink.apply(o)
        await wait_for(lambda: not sink.stats.available)
        started = time.monotonic()
        await sink.stop(timeout_s=0.5)
        assert time.monotonic() - started < 5
        assert sink.stats.pending == 5
        assert sink.stats.written == 0
    finally:
        await client.close()


async def test_a_sink_started_before_the_cluster_answers_buffers_until_connected(
    es: AsyncElasticsearch, es_url: str, namespace: str
) -> None:
    """Down at start, the sink has no client yet: it buffers, its flush waits (so the
    state commit does too), and what it holds is written once it is connected."""
    settings = ElasticsearchSettings(hosts=[es_url], sink_enabled=True, **FAST)
    sink = OutcomeSink(None, settings)
    await sink.start()
    client = create_client(settings)
    try:
        assert not sink.stats.available
        for o in outcomes(namespace, 0, 7):
            sink.apply(o)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(sink.flush()), 0.5)
        assert (sink.stats.pending, sink.stats.written) == (7, 0)
        sink.connect(client)
        async with asyncio.timeout(20):
            await sink.flush()
        assert (sink.stats.pending, sink.stats.written) == (0, 7)
    finally:
        await sink.stop()
        await client.close()
    index = outcome_index(settings.sink_index, ModelKey(namespace, "iris", "default", "clf"))
    await es.indices.refresh(index=index)
    assert (await es.count(index=index))["count"] == 7


async def test_an_abandoned_sink_counts_what_it_drops_and_no_longer_holds_flushes(
    namespace: str,
) -> None:
    """The cluster refused the sink for good: every document is counted as dropped and
    a flush returns at once, so the processor goes on."""
    settings = ElasticsearchSettings(hosts=["http://127.0.0.1:9"], sink_enabled=True, **FAST)
    sink = OutcomeSink(None, settings)
    await sink.start()
    try:
        for o in outcomes(namespace, 0, 4):
            sink.apply(o)
        sink.abandon("401 Unauthorized")
        sink.apply(outcomes(namespace, 4, 1)[0])
        async with asyncio.timeout(5):
            await sink.flush()
        assert (sink.stats.dropped, sink.stats.pending) == (5, 0)
        assert sink.stats.last_error == "401 Unauthorized"
    finally:
        await sink.stop()


def test_index_names_are_valid_and_ids_idempotent() -> None:
    key = ModelKey("Prod", "Iris Model", "", "clf")
    assert outcome_index("feedback-outcomes-{namespace}-{deployment}", key) == (
        "feedback-outcomes-prod-iris_model"
    )
    assert outcome_index("outcomes-{predictor}", key) == "outcomes-unknown"
    assert outcome_id(key, "p", 2) == outcome_id(key, "p", 2) != outcome_id(key, "p", 1)
