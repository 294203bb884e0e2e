"""``POST /api/v1.0/feedback``: Seldon's feedback API on the processor, over real HTTP.

The bodies are what Seldon's client ``feedback(prediction_request,
prediction_response, reward, truth)`` posts; the puid comes in the
``Seldon-Puid`` header, or the embedded response's ``meta.puid``.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from tests._processor import get_json, running, settings

_PUID = "5c4e7e3a-1b2f-4c7d-9e1a-2b3c4d5e6f70"
_REQUEST = {"data": {"ndarray": [[5.1, 3.5, 1.4, 0.2]]}}
_RESPONSE = {
    "data": {"names": ["t:0", "t:1", "t:2"], "ndarray": [[0.1, 0.8, 0.1]]},
    "meta": {"puid": _PUID},
}
_LOGGED = {"data": {"names": ["t:0", "t:1", "t:2"], "ndarray": [[0.9, 0.05, 0.05]]}, "meta": {}}


async def _post(
    url: str, body: Any, headers: dict[str, str] | None = None, path: str = "/api/v1.0/feedback"
) -> tuple[int, Any, dict[str, str]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + path, json=body, headers=headers or {}) as reply,
    ):
        return reply.status, await reply.json(), dict(reply.headers)


async def _log_response(url: str, puid: str) -> None:
    headers = {
        "Ce-Specversion": "1.0",
        "Ce-Type": "io.seldon.serving.inference.response",
        "Ce-Id": "resp-" + puid,
        "Ce-Source": "http://:8000/",
        "Ce-Requestid": puid,
        "Ce-Namespace": "seldon",
        "Ce-Inferenceservicename": "iris",
        "Ce-Endpoint": "default",
        "Ce-Modelid": "clf",
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/", json=_LOGGED, headers=headers) as reply,
    ):
        assert reply.status == 202


def _total(document: dict[str, Any], model: str) -> dict[str, Any]:
    (found,) = [m for m in document["models"] if m["model"] == model]
    total: dict[str, Any] = found["windows"]["total"]
    return total


async def test_client_feedback_with_a_logged_response_scores_the_logged_one_once() -> None:
    async with running(settings()) as (_, url):
        await _log_response(url, _PUID)
        body = {"request": _REQUEST, "response": _RESPONSE, "reward": 1, "truth": _LOGGED}
        status, answer, headers = await _post(url, body, {"Seldon-Puid": _PUID})
        assert (status, answer, headers["Seldon-Puid"]) == (200, {"meta": {"puid": _PUID}}, _PUID)
        document = await get_json(f"{url}/api/v1/metrics?window=total")
    total = _total(document, "clf")
    assert (total["outcomes"], total["correct"]) == (1, 1)  # the logged t:0, not the embedded t:1
    assert [m["model"] for m in document["models"]] == ["clf"]


async def test_client_feedback_without_a_logged_response_uses_its_own() -> None:
    async with running(settings()) as (_, url):
        body = {"request": _REQUEST, "response": _RESPONSE, "reward": 0, "truth": _LOGGED}
        query = "?namespace=kserve&deployment=iris-v2&model=iris"
        status, answer, _ = await _post(url, body, path="/api/v1.0/feedback" + query)
        assert (status, answer) == (200, {"meta": {"puid": _PUID}})  # the embedded meta.puid
        document = await get_json(f"{url}/api/v1/metrics?window=total")
    (model,) = document["models"]
    assert (model["namespace"], model["deployment"], model["model"]) == (
        "kserve",
        "iris-v2",
        "iris",
    )
    total = model["windows"]["total"]
    assert (total["outcomes"], total["correct"], total["labels"]) == (1, 0, ["t:0", "t:1"])
    assert model["counters"]["responses"] == 0  # no logged prediction


async def test_model_key_from_seldon_headers_and_a_made_up_puid() -> None:
    async with running(settings()) as (_, url):
        await _log_response(url, "p-2")
        status, _, _ = await _post(
            url,
            {"reward": "1"},
            {"Seldon-Puid": "p-2", "Seldon-Predictor": "default", "Seldon-Model": "clf"},
        )
        assert status == 200
        orphan_status, orphan, orphan_headers = await _post(url, {"reward": 1})
        assert orphan_status == 200
        assert orphan["meta"]["puid"] == orphan_headers["Seldon-Puid"] != ""
        document = await get_json(f"{url}/api/v1/metrics?window=total")
    total = _total(document, "clf")
    assert (total["outcomes"], total["correct"], total["reward"]["mean"]) == (1, 1, 1.0)
    assert document["events"]["feedback"] == 2


async def test_a_bad_feedback_gets_400_with_the_reason() -> None:
    async with running(settings()) as (_, url):
        status, answer, _ = await _post(url, {"reward": "lots"}, {"Seldon-Puid": "p"})
        assert status == 400
        assert answer["error"] == "bad_reward"
        assert "reward" in answer["reason"]
