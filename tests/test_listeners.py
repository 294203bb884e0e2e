"""Locking ingest to its senders: separate listeners, a bearer token, TLS, secrets from files.

Also the bounded shutdown (clients holding half-sent bodies cannot hold it
up) and the status the live page shows (broker, pending, evictions).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import ssl
import subprocess
from pathlib import Path

import aiohttp
import orjson
import pytest

from feedback_stream.settings import Settings, add_arguments, markdown_table, settings_from_args
from tests._processor import get_json, get_text, parse_metrics, running, sample_sum, settings

ROOT = Path(__file__).resolve().parents[1]
_EVENT = {
    "specversion": "1.0",
    "id": "e1",
    "source": "s",
    "type": "io.seldon.serving.inference.response",
    "requestid": "p1",
    "modelid": "m",
    "data": {"predictions": [1]},
}
_STRUCTURED = {"Content-Type": "application/cloudevents+json"}


async def _post(url: str, headers: dict[str, str] | None = None) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{url}/",
            data=orjson.dumps(_EVENT),
            headers={**_STRUCTURED, **(headers or {})},
        ) as reply,
    ):
        return reply.status


async def test_ingest_on_its_own_listener_and_the_read_side_takes_no_events() -> None:
    async with running(settings(ingest_port=0, ingest_host="127.0.0.1")) as (service, url):
        assert service.ingest_port not in (None, service.http_port)
        ingest = f"http://127.0.0.1:{service.ingest_port}"
        assert await _post(url) == 405  # the read side's POST / is gone
        assert await _post(ingest) == 202
        assert (await get_text(f"{ingest}/metrics"))[0] == 404
        assert (await get_text(f"{ingest}/healthz"))[0] == 200
        assert (await get_text(f"{url}/metrics"))[0] == 200
        (model,) = (await get_json(f"{url}/api/v1/models"))["models"]
        assert model["responses"] == 1


async def test_a_bearer_token_guards_ingest_only() -> None:
    async with running(settings(ingest_token="s3cret-token")) as (_, url):
        assert await _post(url) == 401
        assert await _post(url, {"Authorization": "Bearer wrong"}) == 401
        assert await _post(url, {"Authorization": "Basic s3cret-token"}) == 401
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{url}/", data=b"{}", headers=_STRUCTURED) as reply,
        ):
            assert reply.headers["WWW-Authenticate"].startswith("Bearer")
        assert await _post(url, {"Authorization": "Bearer s3cret-token"}) == 202
        status, text = await get_text(f"{url}/metrics")  # reading needs no token
        assert status == 200
    assert sample_sum(parse_metrics(text), "feedback_stream_refused_requests_total",
                      reason="unauthorized") == 4  # fmt: skip


def test_every_secret_reads_from_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    token = tmp_path / "token"
    token.write_text("from-a-file\n")
    password = tmp_path / "password"
    password.write_text("kafka-pw")
    es_password = tmp_path / "es"
    es_password.write_text("es-pw\n")
    monkeypatch.setenv("FEEDBACK_STREAM_INGEST_TOKEN_FILE", str(token))
    monkeypatch.setenv("FEEDBACK_STREAM_ES__PASSWORD_FILE", str(es_password))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--kafka-sasl-password-file", str(password)])
    with caplog.at_level(logging.WARNING):
        loaded = settings_from_args(args)
    assert loaded.ingest_token.get_secret_value() == "from-a-file"
    assert loaded.kafka_sasl_password.get_secret_value() == "kafka-pw"
    assert loaded.es.password is not None
    assert loaded.es.password.get_secret_value() == "es-pw"
    assert not [r for r in caplog.records if "command line" in r.getMessage()]
    # A value in the environment wins over its file; a secret as a flag draws a warning.
    monkeypatch.setenv("FEEDBACK_STREAM_INGEST_TOKEN", "direct")
    with caplog.at_level(logging.WARNING):
        loaded = settings_from_args(parser.parse_args(["--kafka-sasl-password", "visible"]))
    assert loaded.ingest_token.get_secret_value() == "direct"
    assert loaded.kafka_sasl_password.get_secret_value() == "visible"
    (warning,) = [r for r in caplog.records if "command line" in r.getMessage()]
    assert "--kafka-sasl-password-file" in warning.getMessage()
    monkeypatch.setenv("FEEDBACK_STREAM_ES__PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="cannot read the secret file"):
        Settings()


def test_the_settings_table_lists_each_secret_file() -> None:
    table = markdown_table()
    for variable in (
        "FEEDBACK_STREAM_KAFKA_SASL_PASSWORD_FILE",
        "FEEDBACK_STREAM_KAFKA_SSL_PASSWORD_FILE",
        "FEEDBACK_STREAM_INGEST_TOKEN_FILE",
        "FEEDBACK_STREAM_ES__PASSWORD_FILE",
        "FEEDBACK_STREAM_ES__API_KEY_FILE",
    ):
        assert f"`{variable}`" in table


async def test_both_listeners_serve_tls(tmp_path: Path) -> None:
    make_certs = ROOT / "scripts" / "es-tls-proxy" / "make-certs.sh"
    await asyncio.to_thread(subprocess.run, ["bash", str(make_certs), str(tmp_path)], check=True)
    config = settings(
        ingest_port=0,
        http_tls_certfile=str(tmp_path / "server.crt"),
        http_tls_keyfile=str(tmp_path / "server.key"),
    )
    trust = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    async with running(config) as (service, _):
        read = f"https://127.0.0.1:{service.http_port}"
        ingest = f"https://127.0.0.1:{service.ingest_port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{read}/healthz", ssl=trust) as reply:
                assert reply.status == 200
            async with http.post(
                f"{ingest}/", data=orjson.dumps(_EVENT), headers=_STRUCTURED, ssl=trust
            ) as reply:
                assert reply.status == 202
            with pytest.raises(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{service.http_port}/healthz") as reply:
                    await reply.read()


async def test_shutdown_is_bounded_with_clients_holding_half_sent_bodies() -> None:
    config = settings(shutdown_timeout_s=1.0)
    async with running(config) as (service, url):
        port = int(url.rsplit(":", 1)[1])
        held = []
        for i in range(20):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100000\r\n\r\n" + b"{" * (i + 1)
            )
            await writer.drain()
            held.append((reader, writer))
        await asyncio.sleep(0.2)  # every request is in its handler, waiting for its body
        # Without a bound, aiohttp waits 60 s for these handlers; the bound is 1 s.
        await asyncio.wait_for(service.stop(), timeout=20)
        for _, writer in held:
            writer.close()


async def test_status_shows_pending_evictions_and_refusals() -> None:
    async with running(settings(max_pending=2)) as (_, url):
        for i in range(5):
            event = {**_EVENT, "id": f"e{i}", "requestid": f"p{i}"}
            async with (
                aiohttp.ClientSession() as http,
                http.post(f"{url}/", data=orjson.dumps(event), headers=_STRUCTURED) as reply,
            ):
                assert reply.status == 202
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{url}/", data=b"[", headers=_STRUCTURED) as reply,
        ):
            assert reply.status == 400
        status = await get_json(f"{url}/api/v1/status")
    assert status["broker"] is None
    assert (status["pending"], status["max_pending"]) == (2, 2)
    assert status["evicted"]["response"] == 3
    assert status["refused"] == {"bad_json": 1.0}
