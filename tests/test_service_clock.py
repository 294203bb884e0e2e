"""The service's clocks: windows on the wall clock, join expiry on the stream's clock."""

from __future__ import annotations

import orjson
from aiokafka.structs import ConsumerRecord

from feedback_stream.encode import JSON, SELDON_FEEDBACK, SELDON_RESPONSE, kafka_binary_headers
from feedback_stream.service import Service
from tests._processor import settings

DAY = 86_400.0


class _Wall:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _record(offset: int, ce_type: str, puid: str, time_s: float, body: object) -> ConsumerRecord:
    attributes = {
        "id": f"{puid}-{offset}",
        "type": ce_type,
        "source": "test",
        "specversion": "1.0",
        "requestid": puid,
        "modelid": "classifier",
        "inferenceservicename": "iris",
        "namespace": "seldon",
        "endpoint": "default",
    }
    headers = [(k, v.encode()) for k, v in kafka_binary_headers(attributes, JSON).items()]
    value = orjson.dumps(body)
    return ConsumerRecord(
        "seldon", 0, offset, round(time_s * 1000), 0, None, value, None, 0, len(value), headers
    )


_RESPONSE = {"data": {"names": ["a", "b"], "ndarray": [[0.9, 0.1]]}}
_FEEDBACK = {"reward": 1}


async def test_old_records_join_although_the_wall_clock_is_far_ahead() -> None:
    """Re-reading a retained topic: the TTL runs on the topic's time, not today's."""
    wall = _Wall(1_800_000_000.0)
    service = Service(settings(ttl_s=60.0, windows=["total", "5m"]), clock=wall)
    old = wall.now - 3 * DAY
    await service.apply([_record(0, SELDON_RESPONSE, "p1", old, _RESPONSE)])
    service.tick()
    assert service.engine.pending == 1  # still waiting: its stream time is 'old'
    wall.now += 5.0  # a few seconds later the consumer reads the feedback, 30 s of topic time on
    await service.apply([_record(1, SELDON_FEEDBACK, "p1", old + 30.0, _FEEDBACK)])
    service.tick()
    (model,) = service.models("total")
    assert model["current"]["known"] == 1
    # The 5m window is read on the wall clock: a 3-day-old outcome is not in it.
    assert service.models("5m")[0]["current"]["known"] == 0


async def test_unmatched_events_expire_after_the_ttl_of_idle_time() -> None:
    wall = _Wall(1_800_000_000.0)
    service = Service(settings(ttl_s=60.0), clock=wall)
    await service.apply([_record(0, SELDON_RESPONSE, "lonely", wall.now - DAY, _RESPONSE)])
    wall.now += 30.0
    service.tick()
    assert service.engine.pending == 1
    wall.now += 31.0  # 61 s with nothing newer: the stream clock has moved past the TTL
    service.tick()
    assert service.engine.pending == 0
    document = service.metrics_document(None)
    assert document["events"]["expired"]["response"] == 1


async def test_live_events_expire_on_the_wall_clock() -> None:
    wall = _Wall(1_800_000_000.0)
    service = Service(settings(ttl_s=10.0), clock=wall)
    await service.apply([_record(0, SELDON_RESPONSE, "live", wall.now, _RESPONSE)])
    assert service.expiry_clock() == wall.now
    wall.now += 11.0
    service.tick()
    assert service.engine.pending == 0


async def test_future_timestamps_do_not_run_the_clock_ahead() -> None:
    wall = _Wall(1_800_000_000.0)
    service = Service(settings(ttl_s=10.0), clock=wall)
    await service.apply([_record(0, SELDON_RESPONSE, "ahead", wall.now + DAY, _RESPONSE)])
    assert service.expiry_clock() == wall.now
