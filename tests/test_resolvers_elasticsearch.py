"""Orphan feedback whose response is found in the request logger's index, on real Elasticsearch.

The request logger (its upserts, emulated byte for byte) has written the
seed's predictions; the processor starts without history and without the
predictions ever reaching it, then reads only the feedback. With the lookup
on, each feedback finds its response by puid and is scored; a second
feedback of the same puid then joins the response found, without a lookup.
"""

from __future__ import annotations

import uuid

import aiohttp
import pytest
from elasticsearch import AsyncElasticsearch

from feedback_stream.es._client import connect
from feedback_stream.es.settings import ElasticsearchSettings, HistorySettings
from feedback_stream.resolvers.elasticsearch import ElasticsearchResolver
from tests._es_helpers import delete_indices, seed_messages, wait_for
from tests._processor import get_json, running, settings
from tests._request_logger import log_messages

pytestmark = [pytest.mark.elasticsearch, pytest.mark.timeout(120)]


async def test_orphan_feedback_finds_its_response_in_the_logger_index(
    es: AsyncElasticsearch, es_url: str
) -> None:
    namespace = f"t{uuid.uuid4().hex[:10]}"
    messages = seed_messages(namespace)
    predictions = [m for m in messages if not m[0]["Ce-Type"].endswith("feedback")]
    feedbacks = [m for m in messages if m[0]["Ce-Type"].endswith("feedback")][:10]
    pattern = f"inference-log-*-{namespace}-*"
    await log_messages(es, predictions)
    try:
        config = settings(
            es=ElasticsearchSettings(hosts=[es_url]),
            history=HistorySettings(index_pattern=pattern),
            orphan_lookup=True,
            windows=["total"],
        )
        async with running(config) as (service, url), aiohttp.ClientSession() as session:

            async def send(headers: dict[str, str], body: object) -> None:
                again = {**headers, "Ce-Id": str(uuid.uuid4())}
                async with session.post(url + "/", json=body, headers=again) as reply:
                    assert reply.status == 202

            for headers, body in feedbacks:
                await send(headers, body)
            await wait_for(lambda: service.resolving == 0)
            # A second feedback of a puid now joins the response found: no new lookup.
            await send(*feedbacks[0])
            await wait_for(lambda: service.resolving == 0)
            document = await get_json(f"{url}/api/v1/metrics?window=total")
            lookup = service.orphan_lookup
            assert lookup is not None
            counts = (lookup.lookups, lookup.resolved, dict(lookup.unresolved))
    finally:
        await delete_indices(es, pattern)
    (model,) = document["models"]
    total = model["windows"]["total"]
    # The seed's first ten feedbacks are rewarded: every one correct, one outcome per puid.
    assert (total["outcomes"], total["correct"]) == (10, 10)
    assert counts == (10, 10, {})
    assert document["events"]["feedback"] == 11


async def test_lookup_cache_is_bounded_and_misses_are_counted(
    es: AsyncElasticsearch, es_url: str
) -> None:
    namespace = f"t{uuid.uuid4().hex[:10]}"
    pattern = f"inference-log-*-{namespace}-*"
    client = await connect(ElasticsearchSettings(hosts=[es_url]))
    resolver = ElasticsearchResolver(client, pattern, cache_size=2)
    try:
        for puid in ("a", "b", "c", "a"):
            assert await resolver.responses(puid) == ()
    finally:
        await client.close()
    assert resolver.cached == 2
    assert resolver.lookups == 4  # "a" was evicted by "c", so it was asked again
