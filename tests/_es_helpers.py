"""Shared pieces of the Elasticsearch tests: the seed's run, cleanup, polling."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from elasticsearch import AsyncElasticsearch

from tests._request_logger import Message


async def delete_indices(es: AsyncElasticsearch, pattern: str) -> None:
    """Delete by name: the cluster refuses wildcard deletes (destructive_requires_name)."""
    found = await es.indices.get(index=pattern, allow_no_indices=True, ignore_unavailable=True)
    if found.body:
        await es.indices.delete(index=list(found.body))


async def wait_for(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` for up to 20 s."""
    async with asyncio.timeout(20):
        while True:
            if condition():
                return
            await asyncio.sleep(0.02)


SEED_RESPONSE = {
    "data": {
        "names": ["t:0", "t:1", "t:2"],
        "ndarray": [[0.0006985194531162841, 0.003668039039435755, 0.9956334415074478]],
    },
    "meta": {},
}
SEED_TRUTH = {"data": {"names": ["t:0", "t:1", "t:2"], "ndarray": [[0, 0, 1]]}}
SEED_META = {"tags": {"user": "Seldon Admin", "date": "11/07/2020"}}


def seed_messages(ns: str) -> list[Message]:
    """The seed notebook's run: 100 predictions, feedback for 63, reward true for 46."""
    base = datetime(2020, 7, 11, 9, 0, tzinfo=UTC).timestamp()
    messages: list[Message] = []

    def headers(ce_type: str, puid: str, at: float) -> dict[str, str]:
        return {
            "Ce-Id": str(uuid.uuid4()),
            "Ce-Type": ce_type,
            "Ce-Source": "http:localhost:8000",
            "Ce-Time": datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z"),
            "Ce-Requestid": puid,
            "Ce-Modelid": "irisclassifier-default",
            "Ce-Inferenceservicename": "sklearn",
            "Ce-Namespace": ns,
            "Ce-Endpoint": "default",
            "Content-Type": "application/json",
        }

    puids = [str(uuid.UUID(int=i + 1)) for i in range(100)]
    for i, puid in enumerate(puids):
        at = base + i
        messages.append(
            (
                headers("io.seldon.serving.inference.request", puid, at),
                {"data": {"ndarray": [[1, 2, 3, 4]]}},
            )
        )
        messages.append(
            (headers("io.seldon.serving.inference.response", puid, at + 0.005), SEED_RESPONSE)
        )
    for idx, puid in enumerate(puids[:63]):
        feedback: dict[str, Any] = {"reward": idx < 46}
        feedback["truth"] = {} if idx < 46 else dict(SEED_TRUTH)
        feedback["truth"]["meta"] = SEED_META
        messages.append((headers("io.seldon.serving.feedback", puid, base + 200 + idx), feedback))
    return messages
