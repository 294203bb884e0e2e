"""The live page in headless Chromium: both predictors' lines, the tables, the comparison.

Chromium is Debian's package (``scripts/install-system-deps.sh``). The page
polls the processor's own API; ``--virtual-time-budget`` lets its scripts
and fetches finish before the screenshot. The PNG is decoded here with
zlib (no imaging library) and the chart area searched for the two series'
colours.
"""

from __future__ import annotations

import asyncio
import re
import struct
import zlib
from pathlib import Path

import aiohttp
import pytest

from feedback_stream.demo.traffic import DemoConfig, IrisTraffic
from tests._processor import running, settings
from tests._services import system_tool

pytestmark = pytest.mark.timeout(120)

WIDTH, HEIGHT = 1200, 900
DEFAULT_BLUE = (0x09, 0x69, 0xDA)  # COLORS[0] in page.js: the first series (default)
SHADOW_RED = (0xCF, 0x22, 0x2E)  # COLORS[1]: the second series (shadow)
CHART_TOP, CHART_BOTTOM = 90, 380  # the first deployment's chart in a 1200x900 window


def _chromium() -> str:
    return system_tool("chromium", "chromium")


async def _chromium_run(url: str, profile: Path, *mode: str) -> bytes:
    process = await asyncio.create_subprocess_exec(
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={WIDTH},{HEIGHT}",
        "--virtual-time-budget=5000",
        *mode,
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0
    return stdout


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB bytes) of an 8-bit RGB/RGBA, non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    width = height = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert (depth, interlace) == (8, 0)
            assert colour in (2, 6)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        method, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if method == 1:
                line[i] = (line[i] + left) & 0xFF
            elif method == 2:
                line[i] = (line[i] + up) & 0xFF
            elif method == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif method == 4:
                line[i] = (line[i] + _paeth(left, up, corner)) & 0xFF
        previous = line
        rgb = bytes(line) if channels == 3 else bytes(b for j, b in enumerate(line) if j % 4 != 3)
        rows.append(rgb)
    return width, height, rows


def _count_colour(rows: list[bytes], colour: tuple[int, int, int], top: int, bottom: int) -> int:
    count = 0
    for row in rows[top:bottom]:
        for x in range(0, len(row), 3):
            r, g, b = row[x], row[x + 1], row[x + 2]
            if abs(r - colour[0]) + abs(g - colour[1]) + abs(b - colour[2]) < 60:
                count += 1
    return count


async def test_the_page_draws_default_and_shadow_accuracy(tmp_path: Path) -> None:
    traffic = IrisTraffic(DemoConfig(n_requests=60, seed=2))
    config = settings(windows=["total", "1m"], tick_interval_s=0.05)
    async with running(config) as (_, url), aiohttp.ClientSession() as http:
        for scheduled in traffic.schedule():
            async with http.post(
                f"{url}/", headers=scheduled.event.http_headers(), data=scheduled.event.body
            ) as reply:
                assert reply.status == 202
            await asyncio.sleep(0.005)  # spread the outcomes over several ticks
        await asyncio.sleep(0.5)
        shot = tmp_path / "page.png"
        await _chromium_run(f"{url}/", tmp_path / "profile", f"--screenshot={shot}")
        dom = (await _chromium_run(f"{url}/", tmp_path / "profile2", "--dump-dom")).decode()

    width, height, rows = decode_png(shot.read_bytes())
    assert (width, height) == (WIDTH, HEIGHT)
    blue = _count_colour(rows, DEFAULT_BLUE, CHART_TOP, CHART_BOTTOM)
    red = _count_colour(rows, SHADOW_RED, CHART_TOP, CHART_BOTTOM)
    assert blue > 300, f"the default predictor's line is missing ({blue} px)"
    assert red > 300, f"the shadow predictor's line is missing ({red} px)"
    background = sum(
        1
        for row in rows[CHART_TOP:CHART_BOTTOM]
        for x in range(0, len(row), 3)
        if row[x : x + 3] == b"\xff\xff\xff"
    )
    chart_pixels = (CHART_BOTTOM - CHART_TOP) * WIDTH
    assert background < chart_pixels, "the chart area is blank"

    assert 'data-deployment="seldon/iris-perf"' in dom
    assert 'data-series="default / classifier"' in dom
    assert 'data-series="shadow / classifier"' in dom
    for text in ("precision", "recall", "F1", "label coverage", "setosa", "macro avg"):
        assert text in dom
    # The paired comparison: with seed 2 the Perceptron (shadow) is wrong on
    # many rows the LogisticRegression (default) gets right, and 60 requests
    # are enough pairs for the always-valid test to say so.
    assert 'data-comparison="default / classifier-&gt;shadow / classifier"' in dom
    assert 'data-decision="worse"' in dom
    assert "shadow / classifier is worse than default / classifier" in dom
    assert "paired answers disagree" in dom
    # What the labels do not say yet: every request got feedback, so nothing awaits it,
    # and the label delays are shown.
    assert "awaiting feedback" in dom
    assert "label delay p50 / p90 / p99" in dom


def _columns_with_colour(
    rows: list[bytes], colour: tuple[int, int, int], top: int, bottom: int
) -> list[int]:
    """The x of every column of the band [top, bottom) holding a pixel of ``colour``."""
    found = set()
    for row in rows[top:bottom]:
        for x in range(0, len(row), 3):
            r, g, b = row[x], row[x + 1], row[x + 2]
            if abs(r - colour[0]) + abs(g - colour[1]) + abs(b - colour[2]) < 60:
                found.add(x // 3)
    return sorted(found)


async def test_a_window_that_empties_shows_a_gap_up_to_now(tmp_path: Path) -> None:
    # Three iris requests answered and labelled at once, then nothing: the 2 s window
    # empties after 2 s; the chart must not carry the last accuracy on to the right edge.
    traffic = IrisTraffic(DemoConfig(n_requests=3, seed=2))
    config = settings(windows=["2s", "total"], tick_interval_s=0.1)
    async with running(config) as (_, url), aiohttp.ClientSession() as http:
        for scheduled in traffic.schedule():
            async with http.post(
                f"{url}/", headers=scheduled.event.http_headers(), data=scheduled.event.body
            ) as reply:
                assert reply.status == 202
        await asyncio.sleep(6.0)
        shot = tmp_path / "page.png"
        await _chromium_run(f"{url}/", tmp_path / "profile", f"--screenshot={shot}")
        dom = (await _chromium_run(f"{url}/", tmp_path / "profile2", "--dump-dom")).decode()
        async with http.get(f"{url}/api/v1/history") as reply:
            history = await reply.json()

    assert history["window"] == "2s"
    points = history["models"][0]["points"]
    assert points[-1][1] is None
    assert any(a is not None for _, a in points)
    assert abs(history["now"] - points[-1][0]) < 1.0

    _, _, rows = decode_png(shot.read_bytes())
    (tmp_path.parent / "emptied-window.png").write_bytes(shot.read_bytes())
    columns = _columns_with_colour(rows, DEFAULT_BLUE, CHART_TOP, CHART_BOTTOM)
    assert columns, "the default predictor's accuracy while its window held outcomes"
    plot_left, plot_right = 24 + 62, 24 + 960 - 12  # page padding + the chart's margins
    # About 2 s of 6+ s of samples hold outcomes: the right half of the plot is a gap.
    assert max(columns) < plot_left + (plot_right - plot_left) * 0.6, max(columns)

    assert 'data-window="2s"' in dom
    assert "accuracy in the sliding 2s window" in dom
    assert re.search(r'<text [^>]*data-axis="y"[^>]*>accuracy</text>', dom)
    assert ">now " in dom  # the time axis ends at the processor's now
    assert "(no outcome in the 2s window now)" in dom
    assert "label coverage (all time)" in dom
    assert 'data-note="shadow-reward"' in dom
    assert "Seldon passes the same reward to every predictor" in dom


async def test_the_page_shows_the_panels_of_each_model_kind(tmp_path: Path) -> None:
    """Binary: ROC AUC and log loss; regression: MAE and RMSE, no class table; needs_kind said."""
    from tests.test_prometheus_scores import (
        BINARY,
        BINARY_ROWS,
        MODELS_TOML,
        REGRESSION,
        REGRESSION_ROWS,
        UNDECLARED,
        _post,
    )

    models = tmp_path / "models.toml"
    models.write_text(MODELS_TOML)
    config = settings(windows=["total"], tick_interval_s=0.05, models_config=str(models))
    async with running(config) as (_, url):
        for i, (score, truth) in enumerate(BINARY_ROWS):
            await _post(url, BINARY, "response", f"b{i}", {"data": {"ndarray": [[score]]}})
            await _post(
                url, BINARY, "feedback", f"b{i}", {"truth": {"data": {"ndarray": [[truth]]}}}
            )
        for i, (prediction, target) in enumerate(REGRESSION_ROWS):
            await _post(url, REGRESSION, "response", f"r{i}", {"predictions": [prediction]})
            await _post(
                url, REGRESSION, "feedback", f"r{i}", {"truth": {"data": {"ndarray": [target]}}}
            )
        await _post(url, UNDECLARED, "response", "u0", {"predictions": [0.42]})
        await asyncio.sleep(0.2)
        dom = (await _chromium_run(f"{url}/", tmp_path / "profile", "--dump-dom")).decode()

    fraud = dom[dom.index('data-deployment="prod/fraud"') :]
    fraud = fraud[: fraud.index("</section>")]
    assert 'data-kind="binary"' in fraud
    assert "ROC AUC" in fraud
    assert "log loss" in fraud
    # roc_auc_score([1, 0, 1, 0, 1], [0.9, 0.8, 0.3, 0.2, 0.6]) = 4/6
    assert 'data-field="roc_auc">0.667<' in fraud
    price = dom[dom.index('data-deployment="prod/price"') :]
    price = price[: price.index("</section>")]
    assert 'data-kind="regression"' in price
    assert "RMSE" in price
    assert "MAE" in price
    assert 'class="prf"' not in price  # no precision / recall table for a regression model
    assert 'data-note="needs-kind"' in dom


async def test_the_page_says_when_the_history_failed_and_the_sink_is_down(tmp_path: Path) -> None:
    from feedback_stream.es.settings import ElasticsearchSettings, HistorySettings
    from tests._services import free_port

    config = settings(
        windows=["total"],
        es=ElasticsearchSettings(
            hosts=[f"http://127.0.0.1:{free_port()}"],
            max_retries=0,
            startup_wait_s=0.2,
            sink_enabled=True,
        ),
        history=HistorySettings(enabled=True, required=False),
    )
    async with running(config) as (_, url):
        dom = (await _chromium_run(f"{url}/", tmp_path / "profile", "--dump-dom")).decode()
    line = dom[dom.index('id="search-state"') :]
    line = line[: line.index("</span>")]
    assert 'class="error"' in line
    assert "history failed:" in line
    assert "unreachable" in line
    assert "outcome sink DOWN: 0 written, 0 failed, 0 buffered, 0 dropped, last write never" in line
