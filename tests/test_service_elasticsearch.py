"""The service with Elasticsearch: history loaded before ready, outcomes written to the sink."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import aiohttp
import pytest
from elasticsearch import AsyncElasticsearch

from feedback_stream.demo.traffic import DemoConfig, IrisTraffic
from feedback_stream.es.settings import ElasticsearchSettings, HistorySettings
from tests._es_helpers import delete_indices, seed_messages
from tests._processor import (
    free_port,
    get_json,
    get_text,
    parse_metrics,
    running,
    settings,
    wait_until,
)
from tests._request_logger import log_messages
from tests._tcp_proxy import TcpProxy

pytestmark = [pytest.mark.elasticsearch, pytest.mark.timeout(120)]


async def test_history_is_loaded_before_the_service_is_ready(
    es: AsyncElasticsearch, es_url: str
) -> None:
    namespace = f"t{uuid.uuid4().hex[:10]}"
    await log_messages(es, seed_messages(namespace))
    try:
        config = settings(
            es=ElasticsearchSettings(hosts=[es_url]),
            history=HistorySettings(enabled=True, index_pattern=f"inference-log-*-{namespace}-*"),
            windows=["total"],
        )
        async with running(config) as (_, url):
            ready = await get_json(f"{url}/readyz")
            assert ready == {
                "ready": True,
                "checks": {"http": True, "history_loaded": True},
                "reasons": {},
                "history": {"state": "loaded", "documents": 100, "events": 263},
            }
            document = await get_json(f"{url}/api/v1/metrics")
            samples = parse_metrics((await get_text(f"{url}/metrics"))[1])
    finally:
        await delete_indices(es, f"inference-log-*-{namespace}-*")
    (model,) = document["models"]
    assert model["namespace"] == namespace
    total = model["windows"]["total"]
    # The seed's 63 feedbacks: 46 rewarded, 17 whose truth is what the model said.
    assert (total["outcomes"], total["correct"]) == (63, 63)
    assert total["reward"]["count"] == 63
    assert total["reward"]["sum"] == 46.0
    known = [v for (n, labels), v in samples.items() if n == "feedback_stream_window_known"]
    assert known == [63.0]


async def test_outcomes_reach_the_elasticsearch_sink(es: AsyncElasticsearch, es_url: str) -> None:
    namespace = f"t{uuid.uuid4().hex[:10]}"
    index = f"feedback-outcomes-{namespace}"
    traffic = IrisTraffic(DemoConfig(n_requests=20, namespace=namespace, feedback_share=1.0))
    config = settings(
        es=ElasticsearchSettings(
            hosts=[es_url], sink_enabled=True, sink_index=index, sink_flush_interval_s=0.1
        ),
    )
    try:
        async with running(config) as (_, url):
            async with aiohttp.ClientSession() as http:
                for scheduled in traffic.schedule():
                    async with http.post(
                        f"{url}/",
                        headers=scheduled.event.http_headers(),
                        data=scheduled.event.body,
                    ) as reply:
                        assert reply.status == 202

            async def written() -> bool:
                if not await es.indices.exists(index=index):
                    return False
                await es.indices.refresh(index=index)
                found = await es.count(index=index, query={"term": {"has_feedback": True}})
                return int(found["count"]) == 40

            await wait_until(written, 30, "40 outcome documents (20 requests x 2 predictors)")
            samples = parse_metrics((await get_text(f"{url}/metrics"))[1])
            ready = await get_json(f"{url}/readyz")
    finally:
        await delete_indices(es, index)
    # 20 responses x 2 predictors, then their outcomes over them: 80 writes of 40 documents.
    assert samples[("feedback_stream_es_sink_written_total", frozenset())] >= 40
    assert samples[("feedback_stream_es_sink_failed_total", frozenset())] == 0
    assert samples[("feedback_stream_es_sink_dropped_total", frozenset())] == 0
    assert samples[("feedback_stream_es_sink_up", frozenset())] == 1
    assert samples[("feedback_stream_es_sink_template_installed", frozenset())] == 1
    assert samples[("feedback_stream_es_sink_last_success_timestamp_seconds", frozenset())] > 0
    assert ready["es_sink"]["available"] is True
    assert ready["es_sink"]["written"] >= 40


async def test_a_history_that_cannot_be_read_is_reported_on_readyz() -> None:
    config = settings(
        es=ElasticsearchSettings(
            hosts=[f"http://127.0.0.1:{free_port()}"], max_retries=0, startup_wait_s=0.5
        ),
        history=HistorySettings(enabled=True, required=False),
    )
    async with running(config) as (_, url):
        ready = await get_json(f"{url}/readyz")
    assert ready["ready"] is True
    assert ready["checks"]["history_loaded"] is True
    assert ready["history"]["state"] == "failed"
    assert "unreachable" in ready["history"]["reason"]


async def test_a_sink_whose_cluster_was_down_at_start_starts_when_it_answers(
    es: AsyncElasticsearch, es_url: str
) -> None:
    namespace = f"t{uuid.uuid4().hex[:10]}"
    index = f"feedback-outcomes-{namespace}"
    target = urlsplit(es_url)
    assert target.hostname is not None
    assert target.port is not None
    proxy = TcpProxy(target.hostname, target.port)
    proxy.port = free_port()
    config = settings(
        es=ElasticsearchSettings(
            hosts=[proxy.url],
            max_retries=0,
            startup_wait_s=0.5,
            sink_enabled=True,
            sink_index=index,
            sink_flush_interval_s=0.1,
        ),
    )
    traffic = IrisTraffic(DemoConfig(n_requests=5, namespace=namespace, feedback_share=1.0))
    try:
        async with running(config) as (_, url):
            ready = await get_json(f"{url}/readyz")
            assert ready["ready"] is True
            assert ready["es_sink"]["available"] is False
            assert "unreachable" in ready["es_sink"]["last_error"]
            await proxy.start()

            async def sink_up() -> bool:
                return "written" in (await get_json(f"{url}/readyz"))["es_sink"]

            await wait_until(sink_up, 30, "the sink started once the cluster answered")
            async with aiohttp.ClientSession() as http:
                for scheduled in traffic.schedule():
                    async with http.post(
                        f"{url}/",
                        headers=scheduled.event.http_headers(),
                        data=scheduled.event.body,
                    ) as reply:
                        assert reply.status == 202

            async def written() -> bool:
                if not await es.indices.exists(index=index):
                    return False
                await es.indices.refresh(index=index)
                found = await es.count(index=index, query={"term": {"has_feedback": True}})
                return int(found["count"]) == 10

            await wait_until(written, 30, "10 outcome documents (5 requests x 2 predictors)")
    finally:
        await proxy.stop()
        await delete_indices(es, index)
