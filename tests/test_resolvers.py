"""Orphan feedback resolved by the model's own prediction URL, end to end over HTTP.

Seldon's second seed example posts ``{"reward": 0, "request": ..., "truth": ...}``
without a ``Seldon-Puid``: the executor logs it under a puid no response
has. A stub model service (a real aiohttp server running real scikit-learn
models: LogisticRegression as the default predictor, Perceptron as the
shadow, trained on iris) stands in for the predictors' own microservices.
The captured executor request is sent byte for byte, with its shadow twin
and more iris rows in the same shape; the page's API and ``/metrics`` must
then show each model's accuracy exactly as scikit-learn computes it, and
LogisticRegression ahead of Perceptron.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import orjson
from aiohttp import web
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression, Perceptron
from sklearn.metrics import accuracy_score

from feedback_stream.decode import decode_http
from feedback_stream.engine import Engine
from feedback_stream.events import Event, SourcePosition
from tests._captured import body_of, headers_of, load, raw_request, send_raw
from tests._processor import get_json, parse_metrics, running, settings

_CASE = "seed-second-example-feedback"
_X, _Y = load_iris(return_X_y=True)
_MODELS: dict[str, Any] = {
    "default": LogisticRegression(max_iter=1000).fit(_X, _Y),
    "shadow": Perceptron(random_state=0).fit(_X, _Y),
}


@asynccontextmanager
async def _model_service(delay_s: float = 0.0) -> AsyncIterator[tuple[str, list[str]]]:
    """The predictors' own microservices, as Seldon's Python wrapper answers ``/predict``."""
    calls: list[str] = []

    async def predict(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        calls.append(name)
        await asyncio.sleep(delay_s)
        rows = np.asarray((await request.json())["data"]["ndarray"], dtype=float)
        model = _MODELS[name]
        if hasattr(model, "predict_proba"):
            data = {"names": ["t:0", "t:1", "t:2"], "ndarray": model.predict_proba(rows).tolist()}
        else:
            data = {"ndarray": [[int(c)] for c in model.predict(rows)]}
        return web.json_response({"data": data, "meta": {}})

    app = web.Application()
    app.router.add_post("/{name}/predict", predict)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", calls
    finally:
        await runner.cleanup()


def _as_logged(capture: dict[str, Any], predictor: str, row: list[float], truth: int) -> bytes:
    """The seed's feedback for ``row`` as the executor of ``predictor`` logs it (fresh ids)."""
    replaced = {
        "Ce-Id": str(uuid.uuid4()),
        "Ce-Requestid": str(uuid.uuid4()),
        "Ce-Endpoint": predictor,
        "Ce-Modelid": f"irisclassifier-{predictor}",
    }
    body = {
        "reward": 0,
        "request": {"data": {"ndarray": [row]}},
        "truth": {"data": {"ndarray": [[truth]]}},
    }
    return raw_request(
        {
            "raw_headers": [(n, replaced.get(n, v)) for n, v in capture["raw_headers"]],
            "body_text": orjson.dumps(body).decode(),
        }
    )


def _urls(base: str) -> list[str]:
    return [f"sklearn/default={base}/default/predict", f"sklearn/shadow={base}/shadow/predict"]


async def _settled(url: str, outcomes: int) -> dict[str, Any]:
    for _ in range(200):
        document: dict[str, Any] = await get_json(f"{url}/api/v1/metrics?window=total")
        if sum(m["windows"]["total"]["outcomes"] for m in document["models"]) >= outcomes:
            return document
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {outcomes} outcomes: {document}")


async def test_seed_second_example_shows_logistic_regression_ahead_of_perceptron() -> None:
    capture = load(_CASE, "captured-request.json")
    rows = np.random.default_rng(0).choice(len(_X), 29, replace=False)
    sent_x = [[4.6, 3.1, 1.5, 0.2], *(_X[i].tolist() for i in rows)]
    sent_y = [0, *(int(_Y[i]) for i in rows)]
    async with _model_service() as (base, calls):
        config = settings(prediction_urls=_urls(base), windows=["total", "5m"])
        async with running(config) as (_, url):
            # The captured request exactly as the executor sent it, then its shadow twin.
            assert await send_raw(url, raw_request(capture)) == (202, b"")
            assert await send_raw(url, _as_logged(capture, "shadow", sent_x[0], 0)) == (202, b"")
            for x, y in zip(sent_x[1:], sent_y[1:], strict=True):
                for predictor in ("default", "shadow"):
                    assert await send_raw(url, _as_logged(capture, predictor, x, y)) == (202, b"")
            document = await _settled(url, 2 * len(sent_x))
            models = (await get_json(f"{url}/api/v1/models?window=5m"))["models"]
            status_text = await _metrics_text(url)
    expected = {
        name: float(accuracy_score(sent_y, model.predict(np.asarray(sent_x))))
        for name, model in _MODELS.items()
    }
    assert expected["default"] > expected["shadow"]
    total = {m["predictor"]: m["windows"]["total"] for m in document["models"]}
    assert {p: w["accuracy"] for p, w in total.items()} == expected
    assert {p: w["outcomes"] for p, w in total.items()} == {"default": 30, "shadow": 30}
    page = {m["predictor"]: m["current"]["accuracy"] for m in models}
    assert page == expected
    assert page["default"] > page["shadow"]
    samples = parse_metrics(status_text)
    gauge = {
        dict(labels)["predictor"]: value
        for (name, labels), value in samples.items()
        if name == "feedback_stream_accuracy" and dict(labels)["window"] == "total"
    }
    assert gauge == expected
    resolved = samples[
        (
            "feedback_stream_orphan_feedback_total",
            frozenset({("resolver", "prediction_url"), ("result", "resolved"), ("reason", "")}),
        )
    ]
    assert resolved == 60
    assert sorted(set(calls)) == ["default", "shadow"]
    assert len(calls) == 60


async def _metrics_text(url: str) -> str:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as reply:
        return await reply.text()


async def test_a_logged_response_wins_and_the_model_is_not_asked() -> None:
    capture = load(_CASE, "captured-request.json")
    headers = headers_of(capture)
    response = {
        "raw_headers": [(n, v) for n, v in capture["raw_headers"] if n not in ("Ce-Type", "Ce-Id")]
        + [("Ce-Type", "io.seldon.serving.inference.response"), ("Ce-Id", "logged")],
        # The logged prediction is class 2 (wrong): the model would have said 0.
        "body_text": '{"data":{"names":["t:0","t:1","t:2"],"ndarray":[[0.1,0.1,0.8]]},"meta":{}}',
    }
    async with (
        _model_service() as (base, calls),
        running(settings(prediction_urls=_urls(base))) as (_, url),
    ):
        assert await send_raw(url, raw_request(response)) == (202, b"")
        assert await send_raw(url, raw_request(capture)) == (202, b"")
        document = await _settled(url, 1)
    (model,) = document["models"]
    assert model["model"] == headers["Ce-Modelid"]
    assert (model["windows"]["total"]["outcomes"], model["windows"]["total"]["correct"]) == (1, 0)
    assert calls == []


async def test_unresolved_feedback_is_counted_by_reason_and_goes_on_without() -> None:
    capture = load(_CASE, "captured-request.json")
    async with _model_service(delay_s=1.0) as (base, _):
        urls = [f"sklearn/default={base}/default/predict", "shadow=http://127.0.0.1:9/predict"]
        config = settings(prediction_urls=urls, prediction_timeout_s=0.2)
        async with running(config) as (service, url):
            assert await send_raw(url, raw_request(capture)) == (202, b"")
            shadow = _as_logged(capture, "shadow", [4.6, 3.1, 1.5, 0.2], 0)
            assert await send_raw(url, shadow) == (202, b"")
            for _ in range(100):
                assert service.resolver is not None
                if sum(service.resolver.unresolved.values()) == 2:
                    break
                await asyncio.sleep(0.05)
            samples = parse_metrics(await _metrics_text(url))
            document = await get_json(f"{url}/api/v1/metrics?window=total")
    unresolved = {
        dict(labels)["reason"]: value
        for (name, labels), value in samples.items()
        if name == "feedback_stream_orphan_feedback_total"
        and dict(labels)["result"] == "unresolved"
    }
    assert unresolved == {"timeout": 1, "unreachable": 1}
    # Both feedbacks went on without a prediction: accepted and pending, visible.
    assert (document["events"]["feedback"], document["events"]["pending"]) == (2, 2)


def test_without_a_resolver_the_orphan_is_visible_as_pending_then_expired() -> None:
    capture = load(_CASE, "captured-request.json")
    event = decode_http(headers_of(capture), body_of(capture), 100.0, SourcePosition("http", 0, 0))
    assert isinstance(event, Event)
    assert event.embedded is None  # the seed's feedback carries a request, not a response
    engine = Engine(("total",), ttl=60.0)
    engine.process_event(event)
    assert engine.report()["events"]["pending"] == 1
    engine.expire(161.0)
    report = engine.report()
    assert (report["events"]["pending"], report["events"]["expired"]["feedback"]) == (0, 1)


async def test_kafka_records_are_resolved_in_read_order_before_the_batch_commits() -> None:
    """The executor logging straight to Kafka (unprefixed headers), read by the source's batch."""
    from aiokafka.structs import ConsumerRecord

    def record(offset: int, predictor: str, row: list[float], truth: int) -> Any:
        headers = [
            ("type", b"io.seldon.serving.feedback"),
            ("requestid", str(uuid.uuid4()).encode()),
            ("modelid", f"irisclassifier-{predictor}".encode()),
            ("inferenceservicename", b"sklearn"),
            ("namespace", b"seldon"),
            ("endpoint", predictor.encode()),
            ("content-type", b"application/json"),
        ]
        body = {
            "reward": 0,
            "request": {"data": {"ndarray": [row]}},
            "truth": {"data": {"ndarray": [[truth]]}},
        }
        value = orjson.dumps(body)
        return ConsumerRecord(
            "seldon",
            offset % 3,
            offset,
            1_795_978_609_000 + offset,
            0,
            None,
            value,
            None,
            -1,
            len(value),
            headers,
        )

    rows = [(_X[i].tolist(), int(_Y[i])) for i in (0, 60, 120, 140)]
    records = [
        record(n * 2 + k, predictor, x, y)
        for n, (x, y) in enumerate(rows)
        for k, predictor in enumerate(("default", "shadow"))
    ]
    async with (
        _model_service() as (base, calls),
        running(settings(prediction_urls=_urls(base))) as (service, url),
    ):
        await service.apply(records)
        document = await get_json(f"{url}/api/v1/metrics?window=total")
    assert len(calls) == 8
    expected = {
        name: float(accuracy_score([y for _, y in rows], model.predict([x for x, _ in rows])))
        for name, model in _MODELS.items()
    }
    got = {m["predictor"]: m["windows"]["total"]["accuracy"] for m in document["models"]}
    assert got == expected
