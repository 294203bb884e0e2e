"""History bootstrap against a real Elasticsearch, with documents the request logger's way."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from typing import Any

import pytest
from elasticsearch import AsyncElasticsearch
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from feedback_stream.decode import DecodeError
from feedback_stream.encode import ReplayRecord
from feedback_stream.engine import Engine
from feedback_stream.es import (
    ElasticsearchSettings,
    EsRequestError,
    EsUnavailableError,
    HistoryBootstrap,
    HistoryOverlap,
    HistoryProgress,
    HistorySettings,
    create_client,
)
from feedback_stream.events import Event, ModelKey, SourcePosition
from feedback_stream.generator import (
    DeploymentSpec,
    GeneratorConfig,
    PredictorSpec,
    generate_records,
    intended_outcomes,
)
from feedback_stream.outcomes import Outcome
from tests._es_helpers import delete_indices, seed_messages
from tests._request_logger import log_messages, messages_from_records

pytestmark = pytest.mark.elasticsearch

WINDOWS = ("total", "5m")


@pytest.fixture
async def namespace(es: AsyncElasticsearch) -> AsyncIterator[str]:
    """A namespace of this test's own, so its indices are its own."""
    ns = f"t{uuid.uuid4().hex[:10]}"
    yield ns
    await delete_indices(es, f"inference-log-*-{ns}-*")


def pattern(ns: str) -> str:
    return f"inference-log-*-{ns}-*"


async def bootstrap(client: AsyncElasticsearch, engine: Engine, **history: Any) -> HistoryProgress:
    settings = HistorySettings(enabled=True, progress_interval_s=0.05, **history)
    loader = HistoryBootstrap(
        client,
        settings,
        hosts="test",
        time_basis=engine.time_basis,
        join_ttl_s=engine.ttl,
    )
    return await loader.run(engine.process_event)


def stream(engine: Engine, records: Iterable[ReplayRecord]) -> None:
    for r in records:
        position = SourcePosition(r["topic"], r["partition"], r["offset"])
        engine.process_record(r["headers"], r["value"], r["timestamp"], position)


# -- the seed's run --------------------------------------------------------------------


async def test_seed_run_loads_to_the_oracle(es: AsyncElasticsearch, namespace: str) -> None:
    await log_messages(es, seed_messages(namespace))
    index = f"inference-log-seldon-{namespace}-sklearn-default"
    # The seed's own aggregations, on the documents as the logger stored them.
    found = await es.search(
        index=index,
        size=0,
        aggregations={
            "reward_sum": {"sum": {"field": "feedback.reward"}},
            "reward_count": {"filter": {"exists": {"field": "feedback.reward"}}},
        },
    )
    assert found["aggregations"]["reward_sum"]["value"] == 46.0
    assert found["aggregations"]["reward_count"]["doc_count"] == 63
    assert (await es.count(index=index))["count"] == 100

    engine = Engine(WINDOWS)
    progress = await bootstrap(es, engine, index_pattern=pattern(namespace))
    assert progress.state == "done"
    assert (progress.documents, progress.events, sum(progress.invalid.values())) == (100, 263, 0)

    key = ModelKey(namespace, "sklearn", "default", "irisclassifier-default")
    assert engine.model_keys() == [key]
    # Oracle: 46 "reward true, no truth" rows are right by definition (truth :=
    # prediction); 17 carry the truth t:2, which is what the model predicted.
    y_true = ["t:2"] * 63
    y_pred = ["t:2"] * 63
    metrics = engine.metrics(key, "total")
    assert metrics.outcomes == metrics.known == 63
    assert metrics.accuracy == accuracy_score(y_true, y_pred)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=["t:2"], zero_division=0
    )
    assert metrics.per_class["t:2"].precision == precision[0]
    assert metrics.per_class["t:2"].recall == recall[0]
    assert metrics.per_class["t:2"].f1 == f1[0]
    assert metrics.per_class["t:2"].support == support[0]
    assert (metrics.reward_count, metrics.reward_sum) == (63, 46.0)
    counters = engine.model_counters(key)
    assert (counters.responses, counters.labelled, counters.conflicts) == (100, 63, 17)


# -- a generated stream, loaded from history vs streamed ----------------------------------


def generated(ns: str, n_requests: int = 400, **overrides: Any) -> GeneratorConfig:
    options: dict[str, Any] = {
        "seed": 7,
        "n_requests": n_requests,
        "deployments": (
            DeploymentSpec(
                name="iris",
                namespace=ns,
                predictors=(
                    PredictorSpec("default", 0.85, model="clf"),
                    PredictorSpec("shadow", 0.6, shadow=True, model="clf"),
                ),
            ),
            DeploymentSpec(
                name="flowers",
                namespace=ns,
                predictors=(PredictorSpec("default", 0.7),),
                encoding="kserve",
                payload="tf",
                output="label",
                n_classes=4,
            ),
            DeploymentSpec(
                name="v2-model",
                namespace=ns,
                predictors=(PredictorSpec("default", 0.8, model="xgb"),),
                payload="v2",
            ),
        ),
        "batch_min": 1,
        "batch_max": 3,
        "request_rate": 5.0,
        "feedback_share": 0.7,
        "truth_share": 0.6,
        "feedback_delay_mean_s": 20.0,
        "amendment_share": 0.15,
    }
    options.update(overrides)
    return GeneratorConfig(**options)


def window_view(engine: Engine, window: str) -> dict[ModelKey, tuple[Any, ...]]:
    view = {}
    for key in engine.model_keys():
        m = engine.metrics(key, window)
        view[key] = (
            m.outcomes,
            m.known,
            m.correct,
            m.confusion_matrix,
            m.labels,
            m.reward_count,
            round(m.reward_sum, 9),
        )
    return view


async def test_history_equals_the_streamed_run(es: AsyncElasticsearch, namespace: str) -> None:
    config = generated(namespace)
    records = list(generate_records(config))
    await log_messages(es, messages_from_records(records))

    streamed = Engine(WINDOWS)
    stream(streamed, records)
    loaded = Engine(WINDOWS)
    progress = await bootstrap(es, loaded, index_pattern=pattern(namespace))
    assert progress.state == "done"
    assert sum(progress.invalid.values()) == 0
    assert progress.repeats > 0  # batches were split into item documents

    assert loaded.clock == streamed.clock
    # default + shadow, a KServe model, a V2 model; hundreds of outcomes.
    assert len(streamed.model_keys()) == 4
    assert sum(streamed.metrics(k, "total").outcomes for k in streamed.model_keys()) > 300
    for window in WINDOWS:
        assert window_view(loaded, window) == window_view(streamed, window)
    for key in streamed.model_keys():
        s, h = streamed.model_counters(key), loaded.model_counters(key)
        assert (h.responses, h.labelled) == (s.responses, s.labelled)
    intended = intended_outcomes(config)
    assert sum(loaded.metrics(k, "total").outcomes for k in loaded.model_keys()) == len(intended)
    y_true = [o.truth for o in intended if o.truth is not None]
    y_pred = [o.predicted for o in intended if o.truth is not None]
    known_right = sum(o.correct for o in intended)
    total = loaded_totals(loaded)
    assert total["correct"] == known_right
    assert total["with_truth"] == len(y_true)
    assert sum(t == p for t, p in zip(y_true, y_pred, strict=True)) <= known_right


def loaded_totals(engine: Engine) -> dict[str, int]:
    correct = with_truth = 0
    for key in engine.model_keys():
        m = engine.metrics(key, "total")
        correct += m.correct
        with_truth += sum(sum(row) for row in m.confusion_matrix)
    return {"correct": correct, "with_truth": with_truth}


@pytest.mark.parametrize("basis", ["feedback", "request"])
async def test_bounds_keep_exactly_the_outcomes_whose_basis_time_is_inside(
    es: AsyncElasticsearch, namespace: str, basis: str
) -> None:
    config = generated(namespace, n_requests=300)
    records = list(generate_records(config))
    await log_messages(es, messages_from_records(records))
    streamed = Engine(WINDOWS, time_basis=basis)
    live: dict[tuple[ModelKey, str, int], Outcome] = {}

    def keep(retracted: Iterable[Outcome], applied: Iterable[Outcome]) -> None:
        for o in retracted:
            live.pop((o.key, o.puid, o.row), None)
        for o in applied:
            live[(o.key, o.puid, o.row)] = o

    streamed.add_outcome_listener(keep)
    stream(streamed, records)
    times = sorted(o.time for o in live.values())
    since = datetime.fromtimestamp(times[len(times) // 4], UTC)
    until = datetime.fromtimestamp(times[3 * len(times) // 4], UTC)
    expected = [o for o in live.values() if since.timestamp() <= o.time < until.timestamp()]

    loaded = Engine(WINDOWS, time_basis=basis)
    progress = await bootstrap(
        es, loaded, index_pattern=pattern(namespace), since=since, until=until
    )
    assert progress.out_of_bounds > 0
    got = {k: loaded.metrics(k, "total") for k in loaded.model_keys()}
    assert sum(m.outcomes for m in got.values()) == len(expected)
    assert sum(m.correct for m in got.values()) == sum(1 for o in expected if o.correct)
    assert sum(m.reward_count for m in got.values()) == sum(
        1 for o in expected if o.reward is not None
    )


async def test_history_and_live_topic_count_each_outcome_once(
    es: AsyncElasticsearch, namespace: str
) -> None:
    """The topic still holds what the logger wrote before the bootstrap: no double count."""
    config = generated(namespace, n_requests=300)
    records = list(generate_records(config))
    cut = records[len(records) // 2]["timestamp"]
    await log_messages(es, messages_from_records(r for r in records if r["timestamp"] < cut))

    streamed = Engine(WINDOWS)
    stream(streamed, records)

    engine = Engine(WINDOWS)
    overlap = HistoryOverlap()
    loader = HistoryBootstrap(
        es,
        HistorySettings(enabled=True, index_pattern=pattern(namespace)),
        hosts="test",
        join_ttl_s=engine.ttl,
        overlap=overlap,
    )
    await loader.run(engine.process_event)
    for r in records:  # the live consumer reads the whole topic
        position = SourcePosition(r["topic"], r["partition"], r["offset"])
        item = _decode(r, position)
        if isinstance(item, Event) and overlap.is_duplicate(item):
            continue
        engine.process_event(item)
    assert overlap.dropped > 0
    for window in WINDOWS:
        assert window_view(engine, window) == window_view(streamed, window)
    for key in streamed.model_keys():
        s, e = streamed.model_counters(key), engine.model_counters(key)
        net_s = {r: s.applied[r] - s.retracted[r] for r in ("correct", "incorrect", "unknown")}
        net_e = {r: e.applied[r] - e.retracted[r] for r in ("correct", "incorrect", "unknown")}
        assert net_e == net_s
        assert e.responses == s.responses
        assert e.labelled == s.labelled
        # Nothing was applied twice: at most the amendments the stream itself made.
        assert sum(e.applied.values()) <= sum(s.applied.values())


def _decode(record: ReplayRecord, position: SourcePosition) -> Event | DecodeError:
    from feedback_stream.decode import decode_kafka_record

    return decode_kafka_record(record["headers"], record["value"], record["timestamp"], position)


# -- scale, progress, readiness ---------------------------------------------------------


async def test_bootstrap_of_100k_documents(
    es: AsyncElasticsearch, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = GeneratorConfig(
        seed=11,
        n_requests=50_000,
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
    await log_messages(es, messages_from_records(generate_records(config)))
    engine = Engine(("total",))
    started = time.perf_counter()
    progress = await bootstrap(es, engine, index_pattern=pattern(namespace), page_size=5000)
    elapsed = time.perf_counter() - started
    assert progress.documents == progress.total == 100_000
    intended = intended_outcomes(config)
    metrics = [engine.metrics(k, "total") for k in engine.model_keys()]
    assert sum(m.outcomes for m in metrics) == len(intended)
    assert sum(m.correct for m in metrics) == sum(o.correct for o in intended)
    with capsys.disabled():
        print(
            f"\n[history bootstrap] {progress.documents} documents, {progress.events} events "
            f"in {elapsed:.2f}s: {progress.documents / elapsed:,.0f} docs/s"
        )


async def test_progress_is_logged_and_ready_only_at_the_end(
    es: AsyncElasticsearch, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    await log_messages(es, seed_messages(namespace))
    engine = Engine(("total",))
    loader = HistoryBootstrap(
        es,
        HistorySettings(
            enabled=True, index_pattern=pattern(namespace), page_size=10, progress_interval_s=1e-9
        ),
        hosts="test",
    )
    seen_ready: list[bool] = []

    def process(item: Event | DecodeError) -> None:
        seen_ready.append(loader.progress.ready)
        engine.process_event(item)

    assert not loader.progress.ready
    with caplog.at_level(logging.INFO, logger="feedback_stream.es.history"):
        await loader.run(process)
    assert loader.progress.ready
    assert not any(seen_ready)
    assert "docs/s, ETA" in caplog.text
    assert "history: done, 100 documents" in caplog.text
    view = loader.progress.as_dict(time.monotonic())
    assert view["state"] == "done"
    assert view["total"] == 100


async def test_unreachable_elasticsearch_fails_fast_when_required() -> None:
    client = create_client(ElasticsearchSettings(hosts=["http://127.0.0.1:9"], max_retries=0))
    try:
        loader = HistoryBootstrap(
            client, HistorySettings(enabled=True, required=True), hosts="http://127.0.0.1:9"
        )
        started = time.monotonic()
        with pytest.raises(EsUnavailableError, match=r"http://127\.0\.0\.1:9 is unreachable"):
            await loader.run(lambda item: None)
        assert time.monotonic() - started < 10
        assert loader.progress.state == "failed"
        assert not loader.progress.ready
    finally:
        await client.close()


async def test_unreachable_elasticsearch_serves_without_history_when_not_required(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = create_client(ElasticsearchSettings(hosts=["http://127.0.0.1:9"], max_retries=0))
    try:
        loader = HistoryBootstrap(
            client, HistorySettings(enabled=True, required=False), hosts="http://127.0.0.1:9"
        )
        with caplog.at_level(logging.WARNING, logger="feedback_stream.es.history"):
            progress = await loader.run(lambda item: None)
        assert progress.state == "skipped"
        assert progress.ready
        assert "serving without it" in caplog.text
    finally:
        await client.close()


async def test_no_matching_index_is_an_empty_history(
    es: AsyncElasticsearch, caplog: pytest.LogCaptureFixture
) -> None:
    engine = Engine(("total",))
    with caplog.at_level(logging.WARNING, logger="feedback_stream.es.history"):
        progress = await bootstrap(es, engine, index_pattern="inference-log-none-such-*")
    assert (progress.state, progress.documents, progress.total) == ("done", 0, 0)
    assert "no documents in inference-log-none-such-*" in caplog.text


async def test_a_rejected_query_is_a_clear_error(es: AsyncElasticsearch) -> None:
    loader = HistoryBootstrap(
        es, HistorySettings(enabled=True, index_pattern="_not-an-index"), hosts="the-cluster"
    )
    with pytest.raises(EsRequestError, match="HTTP 400 invalid_index_name_exception") as caught:
        await loader.run(lambda item: None)
    assert not caught.value.retriable
    assert "the-cluster" in str(caught.value)
