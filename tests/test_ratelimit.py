"""Log rate limits: a flood of one line shows as a burst and a count of what was dropped."""

from __future__ import annotations

import logging

from feedback_stream._ratelimit import RateLimitFilter


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _record(msg: str, *args: object, name: str = "aiokafka") -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_a_flood_of_one_template_passes_a_burst_then_reports_the_count() -> None:
    clock = _Clock()
    limit = RateLimitFilter(interval_s=60.0, burst=3, clock=clock)
    passed = [limit.filter(_record("Unable connect to node %s", n)) for n in range(2000)]
    assert passed.count(True) == 3
    assert limit.suppressed_total == 1997
    # Another kind of line is not held back by the flood.
    assert limit.filter(_record("Unable connect to node %s", 1, name="other"))
    assert limit.filter(_record("commit failed: %s", "x"))
    clock.now = 61.0
    record = _record("Unable connect to node %s", 9)
    assert limit.filter(record)
    assert record.getMessage() == (
        "Unable connect to node 9 (1,997 similar lines suppressed in 60 s)"
    )


def test_many_kinds_of_line_stay_bounded() -> None:
    clock = _Clock()
    limit = RateLimitFilter(interval_s=60.0, burst=1, clock=clock)
    for n in range(10_000):
        assert limit.filter(_record(f"distinct {n}"))
    assert len(limit._windows) <= 1024


def test_the_service_log_configuration_rate_limits_the_root_handler() -> None:
    from feedback_stream.service import configure_logging

    root = logging.getLogger()
    before = list(root.handlers)
    handler = logging.StreamHandler()
    root.handlers = [handler]
    try:
        configure_logging("INFO")
        assert any(isinstance(f, RateLimitFilter) for f in handler.filters)
    finally:
        root.handlers = before
