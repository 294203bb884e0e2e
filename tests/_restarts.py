"""One ``feedback-stream run`` fed in two parts, SIGKILLed and restarted between them
(or not, for the uninterrupted run to compare with): the shape of the restart tests."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests._processor import create_topic, produce, unique
from tests.test_kafka_durable_state import FAST_GROUP, _args, _caught_up, _Processor, _wait_ready

__all__ = ["run_across_a_restart"]


async def run_across_a_restart(
    bootstrap: str,
    log: Path,
    first: list[Any],
    second: list[Any],
    *extra: str,
    restart: bool = True,
    before_second_s: float = 0.0,
    more_first: Sequence[list[Any]] = (),
) -> tuple[Any, dict[Any, float]]:
    """Feed ``first`` (one partition), then each part of ``more_first`` after 1.5 s of
    the ticker's reads, wait until it is committed, SIGKILL the process and start it
    again (when ``restart``), wait ``before_second_s``, feed ``second``; return the JSON
    API's document and the metric samples once that is committed too.

    The records name their topic; ``extra`` are further ``run`` arguments.
    """
    topic, group = first[0]["topic"], unique("restart")
    await create_topic(bootstrap, topic, partitions=1)
    await produce(bootstrap, topic, first)
    args = _args(bootstrap, topic, group, *extra, *FAST_GROUP)
    processor = _Processor(args, log)
    try:
        await _wait_ready(processor, 60)
        await _caught_up(bootstrap, group, topic, 1, 60)
        for part in more_first:
            await asyncio.sleep(1.5)
            await produce(bootstrap, topic, part)
            await _caught_up(bootstrap, group, topic, 1, 60)
        await asyncio.sleep(1.0)
        if restart:
            processor.kill()
            processor = _Processor(args, log)
            await _wait_ready(processor, 60)
        await asyncio.sleep(before_second_s)
        await produce(bootstrap, topic, second)
        await _caught_up(bootstrap, group, topic, 1, 60)
        await asyncio.sleep(1.0)
        return await processor.document(), await processor.metrics()
    finally:
        processor.terminate()
