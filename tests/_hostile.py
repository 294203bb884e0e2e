"""Helpers for the hostile-input tests: raw HTTP, promtool, a valid scrape."""

from __future__ import annotations

import asyncio
import subprocess

import aiohttp

from tests._services import system_tool


async def send_raw(url: str, raw: bytes) -> tuple[int, bytes]:
    """Write ``raw`` bytes to the server of ``url`` and read one HTTP/1.1 answer."""
    host, port = url.removeprefix("http://").removeprefix("https://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(raw)
        await writer.drain()
        status_line = await reader.readline()
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        return int(status_line.split()[1]), body
    finally:
        writer.close()
        await writer.wait_closed()


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    """``promtool check metrics`` of one exposition page (lint problems are on stderr)."""
    return subprocess.run(
        [system_tool("promtool", "prometheus"), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def assert_read_side_healthy(url: str) -> str:
    """Every read endpoint answers 200 and /metrics passes promtool; returns the page."""
    async with aiohttp.ClientSession() as http:
        for path in ("/api/v1/models", "/api/v1/metrics", "/api/v1/history", "/healthz"):
            async with http.get(url + path) as reply:
                assert reply.status == 200, (path, await reply.text())
                await reply.json()
        async with http.get(url + "/metrics") as reply:
            assert reply.status == 200
            text = await reply.text()
    result = promtool_check(text)
    assert result.returncode == 0, result.stdout + result.stderr
    return text
