"""History bootstrap docs/s per search server: point in time vs scroll where both exist.

Each server of the test rig (Elasticsearch 7.6, 8.19, 9.2, OpenSearch 2.19)
is started in turn, given the same generated request-logger documents (the
logger's own upserts, ``tests/_request_logger.py``), and read back by
:class:`HistoryBootstrap` into an engine, as ``--history-enabled`` does.
Where the server has a point in time (Elasticsearch 7.12+), it is read both
ways, and the point-in-time figure's baseline is the scroll on the same
server in the same run. The reads are the processor's whole path: search
pages, document conversion, join and windows.
"""

from __future__ import annotations

import asyncio
import time

from bench.result import Context, Figure
from feedback_stream.engine import Engine
from feedback_stream.es import (
    ElasticsearchSettings,
    HistoryBootstrap,
    HistorySettings,
    Paging,
    SearchClient,
    connect,
)
from feedback_stream.generator import (
    DeploymentSpec,
    GeneratorConfig,
    PredictorSpec,
    generate_records,
)

__all__ = ["measure", "run"]

SERVERS = ("elasticsearch-7", "elasticsearch-8", "elasticsearch-9", "opensearch-2")
FULL_REQUESTS = 10_000
ROUNDS = 2


def _config(n_requests: int, namespace: str) -> GeneratorConfig:
    return GeneratorConfig(
        seed=5,
        n_requests=n_requests,
        deployments=(
            DeploymentSpec(
                name="iris",
                namespace=namespace,
                predictors=(
                    PredictorSpec("default", 0.9),
                    PredictorSpec("shadow", 0.7, shadow=True),
                ),
            ),
        ),
        request_rate=50.0,
        feedback_share=0.6,
    )


async def _read(client: SearchClient, paging: Paging, pattern: str) -> tuple[int, float]:
    engine = Engine(("total",))
    loader = HistoryBootstrap(
        client,
        HistorySettings(enabled=True, index_pattern=pattern, page_size=2000),
        hosts="bench",
        time_basis=engine.time_basis,
        join_ttl_s=engine.ttl,
        paging=paging,
    )
    started = time.perf_counter()
    progress = await loader.run(engine.process_event)
    elapsed = time.perf_counter() - started
    if progress.state != "done":
        raise RuntimeError(f"history read failed: {progress.error}")
    return progress.documents, elapsed


async def measure(
    url: str, n_requests: int, namespace: str = "bench"
) -> tuple[str, dict[Paging, float], int]:
    """Write ``n_requests`` requests' documents to the server at ``url``, read them back.

    Returns the server's name, the best docs/s of each paging it has, and
    the number of documents read.
    """
    from tests._request_logger import log_messages, messages_from_records

    pattern = f"inference-log-*-{namespace}-*"
    client = await connect(ElasticsearchSettings(hosts=[url], request_timeout_s=120), wait_s=60)
    try:
        records = generate_records(_config(n_requests, namespace))
        await log_messages(client, messages_from_records(records))
        pagings = [Paging.SCROLL] + ([Paging.PIT] if client.paging is Paging.PIT else [])
        rates: dict[Paging, float] = {}
        documents = 0
        for paging in pagings:
            best = 0.0
            for _ in range(ROUNDS):
                documents, elapsed = await _read(client, paging, pattern)
                best = max(best, documents / elapsed)
            rates[paging] = best
        return str(client.server), rates, documents
    finally:
        await client.close()


def run(ctx: Context) -> list[Figure]:
    from tests import _services

    n_requests = ctx.size(FULL_REQUESTS, minimum=100)
    figures: list[Figure] = []
    for key in SERVERS:
        service = _services.start_search_server(key)
        try:
            server, rates, documents = asyncio.run(measure(service.address, n_requests))
        finally:
            service.stop()
        detail = {"documents": documents, "rounds": ROUNDS, "best_of": ROUNDS}
        scroll = rates[Paging.SCROLL]
        figures.append(
            Figure("history", f"{server}, scroll", round(scroll), "docs/s", detail=detail)
        )
        if Paging.PIT in rates:
            figures.append(
                Figure(
                    "history",
                    f"{server}, point in time",
                    round(rates[Paging.PIT]),
                    "docs/s",
                    baseline_name=f"{server}, scroll",
                    baseline_value=round(scroll),
                    detail=detail,
                )
            )
    return figures
