"""Captured logger requests (Seldon's executor, KServe's agent) sent again byte for byte.

A capture is ``{"raw_headers": [[name, value], ...], "body_text" | "body_b64": ...}``
as recorded in front of the ingest. :func:`raw_request` rebuilds the HTTP/1.1
request with the headers in their order (``Content-Length`` fitted to the
body), and :func:`send_raw` sends it over a plain socket, so nothing in
between normalises it.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

CASES = Path(__file__).parent / "fixtures" / "cases"


def load(case: str, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CASES / case / name).read_text())
    return data


def body_of(capture: dict[str, Any]) -> bytes:
    if "body_b64" in capture:
        return base64.b64decode(capture["body_b64"])
    return str(capture.get("body_text", "")).encode()


def headers_of(capture: dict[str, Any]) -> dict[str, str]:
    return {str(name): str(value) for name, value in capture["raw_headers"]}


def raw_request(capture: dict[str, Any], path: str = "/") -> bytes:
    body = body_of(capture)
    lines = [f"{capture.get('method', 'POST')} {path} HTTP/1.1"]
    for name, value in capture["raw_headers"]:
        if name.lower() == "content-length":
            value = str(len(body))
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def send_raw(url: str, raw: bytes) -> tuple[int, bytes]:
    """Send raw HTTP/1.1 bytes to ``url`` (``http://host:port``); the status and body."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(raw)
        await writer.drain()
        status_line = await reader.readline()
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        return int(status_line.split()[1]), body
    finally:
        writer.close()
        await writer.wait_closed()
