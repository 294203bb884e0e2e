"""``feedback-stream demo``: the processor plus the iris traffic, in one process.

The traffic (:mod:`feedback_stream.demo.traffic`) is sent as real Seldon
CloudEvents: POSTed in binary mode to the processor's own ``POST /`` (the
default, no broker), or, with ``--kafka BOOTSTRAP``, produced unkeyed to a
topic the processor consumes, exactly as Seldon's executor would. The
sender sleeps until each event is due, so the page shows default and
shadow accuracy move at the pace of the schedule.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

import aiohttp
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from feedback_stream.service import Service, configure_logging, load_settings
from feedback_stream.settings import Settings, add_arguments

if TYPE_CHECKING:
    # scikit-learn is the demo extra: the traffic module is imported when a demo runs.
    from feedback_stream.demo.traffic import DemoConfig, IrisTraffic, ScheduledEvent

__all__ = ["DEMO_TOPIC", "DemoOptions", "add_demo_parser", "demo_settings", "run_demo"]

_log = logging.getLogger(__name__)

DEMO_TOPIC = "feedback-stream-demo"


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What the demo command adds to the service's settings."""

    traffic: DemoConfig
    kafka: str | None = None
    topic: str = DEMO_TOPIC
    duration_s: float | None = None
    traffic_only: bool = False
    """Only produce the traffic to Kafka, for a processor running elsewhere."""


def demo_settings(base: Settings, options: DemoOptions) -> Settings:
    """The service's settings for the demo: its own topic and group when on Kafka."""
    if options.kafka is None:
        return base.model_copy(update={"kafka_bootstrap_servers": "", "http_ingest": True})
    return base.model_copy(
        update={
            "kafka_bootstrap_servers": options.kafka,
            "kafka_topics": [options.topic],
            "kafka_topic_pattern": "",
            # A group of its own per run: the demo shows this run's traffic.
            "kafka_group_id": f"feedback-stream-demo-{uuid.uuid4().hex[:8]}",
            "kafka_auto_offset_reset": "latest",
        }
    )


async def _ensure_topic(settings: Settings, topic: str) -> None:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers, **settings.kafka_security_kwargs()
    )
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()


class _Sender:
    async def start(self) -> None:
        """Open the connection."""

    async def send(self, event: ScheduledEvent) -> None:
        """Send one event."""

    async def stop(self) -> None:
        """Close the connection."""


class _HttpSender(_Sender):
    def __init__(self, url: str) -> None:
        self.url = url
        self._session: aiohttp.ClientSession | None = None
        self.failures = 0

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()

    async def send(self, event: ScheduledEvent) -> None:
        assert self._session is not None
        async with self._session.post(
            self.url, headers=event.event.http_headers(), data=event.event.body
        ) as response:
            if response.status != 202:
                self.failures += 1
                _log.warning("ingest answered %d: %s", response.status, await response.text())

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()


class _KafkaSender(_Sender):
    def __init__(self, settings: Settings, topic: str) -> None:
        self._settings = settings
        self._topic = topic
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._settings.kafka_bootstrap_servers,
            **self._settings.kafka_security_kwargs(),
        )
        await self._producer.start()

    async def send(self, event: ScheduledEvent) -> None:
        assert self._producer is not None
        message = event.event.kafka_message()  # unkeyed, as Seldon's executor writes
        await self._producer.send(
            self._topic, value=message.value, key=message.key, headers=message.headers
        )

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()


async def _send_schedule(traffic: IrisTraffic, sender: _Sender) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    for event in traffic.schedule():
        delay = start + event.at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await sender.send(event)


def _local(settings: Settings) -> str:
    """Where this machine reaches the HTTP server (a wildcard bind is reached on loopback)."""
    host = settings.http_host
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def _print_urls(service: Service, options: DemoOptions, out: TextIO) -> None:
    base = f"http://{_local(service.settings)}:{service.http_port}"
    via = f"Kafka {options.kafka} topic {options.topic}" if options.kafka else "HTTP ingest"
    print(
        "feedback-stream demo: iris, LogisticRegression (default) vs Perceptron (shadow)\n"
        f"  events via   {via}\n"
        f"  live page    {base}/\n"
        f"  metrics      {base}/metrics\n"
        f"  JSON API     {base}/api/v1/metrics?window={service.settings.windows[0]}\n"
        "  Ctrl-C stops.",
        file=out,
        flush=True,
    )


async def _send_only(
    settings: Settings, options: DemoOptions, traffic: IrisTraffic, out: TextIO
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sender = _KafkaSender(settings, options.topic)
    send_task: asyncio.Task[None] | None = None
    try:
        await sender.start()
        print(
            f"feedback-stream demo: sending iris traffic to Kafka {options.kafka} topic "
            f"{options.topic} (no processor here). Ctrl-C stops.",
            file=out,
            flush=True,
        )
        send_task = asyncio.create_task(_send_schedule(traffic, sender), name="traffic")
        if options.duration_s is not None:
            loop.call_later(options.duration_s, stop.set)
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({send_task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if send_task.done() and send_task.exception() is not None:
            waiter.cancel()
            print(f"feedback-stream demo: traffic failed: {send_task.exception()}", file=sys.stderr)
            return 1
        await waiter
        return 0
    finally:
        if send_task is not None:
            send_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await send_task
        await sender.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def run_demo(settings: Settings, options: DemoOptions, out: TextIO = sys.stdout) -> int:
    """Run the processor and the traffic until Ctrl-C (or ``duration_s``)."""
    from feedback_stream.demo.traffic import IrisTraffic

    settings = demo_settings(settings, options)
    traffic = IrisTraffic(options.traffic)
    if options.kafka is not None:
        await _ensure_topic(settings, options.topic)
    if options.traffic_only:
        if options.kafka is None:
            raise ValueError("--traffic-only needs --kafka: over HTTP, traffic needs a processor")
        return await _send_only(settings, options, traffic, out)
    service = Service(settings)
    sender: _Sender
    if options.kafka is not None:
        sender = _KafkaSender(settings, options.topic)
    else:
        sender = _HttpSender("http://{host}:{port}/")
    send_task: asyncio.Task[None] | None = None
    with service.stop_on_signals():
        try:
            await service.start()
            if service.kafka is not None:
                # Traffic starts once the demo's fresh group reads the topic's end.
                await asyncio.wait_for(service.kafka.assigned_once.wait(), timeout=60)
            if isinstance(sender, _HttpSender):
                sender.url = sender.url.format(host=_local(settings), port=service.http_port)
            _print_urls(service, options, out)
            await sender.start()
            send_task = asyncio.create_task(_send_schedule(traffic, sender), name="traffic")
            if options.duration_s is not None:
                loop = asyncio.get_running_loop()
                loop.call_later(options.duration_s, service.request_stop)
            # A finite schedule ends; the processor keeps serving until Ctrl-C.
            await service.serve()
        finally:
            if send_task is not None:
                send_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await send_task
            await service.stop()
            await sender.stop()
    if send_task is not None and not send_task.cancelled() and send_task.exception() is not None:
        print(f"feedback-stream demo: traffic failed: {send_task.exception()}", file=sys.stderr)
        return 1
    return 0


# -- the command line ---------------------------------------------------------

_DEMO_WINDOWS = "total,1m,100"


def _run_command(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if "fs__windows" not in args and "FEEDBACK_STREAM_WINDOWS" not in os.environ:
        overrides["windows"] = _DEMO_WINDOWS
    if "fs__http_host" not in args and "FEEDBACK_STREAM_HTTP_HOST" not in os.environ:
        overrides["http_host"] = "127.0.0.1"
    settings = load_settings(args, "demo", **overrides)
    if settings is None:
        return 2
    configure_logging(settings.log_level)
    try:
        from feedback_stream.demo.traffic import DemoConfig
    except ImportError as exc:
        print(
            f"feedback-stream demo: {exc}; the demo needs the demo extra "
            "(pip install 'feedback-stream[demo]')",
            file=sys.stderr,
        )
        return 2
    try:
        traffic = DemoConfig(
            seed=args.seed,
            request_interval_s=args.request_interval,
            feedback_share=args.feedback_share,
            feedback_delay_s=args.feedback_delay,
            feedback_delay_jitter_s=args.feedback_jitter,
            n_requests=args.requests,
        )
    except ValueError as exc:
        print(f"feedback-stream demo: {exc}", file=sys.stderr)
        return 2
    options = DemoOptions(
        traffic,
        kafka=args.kafka,
        topic=args.topic,
        duration_s=args.duration,
        traffic_only=args.traffic_only,
    )
    try:
        return asyncio.run(run_demo(settings, options))
    except Exception as exc:
        _log.error("feedback-stream demo: %s", exc)
        return 1


def add_demo_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``feedback-stream demo``: Seldon's iris default-vs-shadow example, live."""
    parser = subparsers.add_parser(
        "demo",
        usage="%(prog)s [options]",
        help="run the processor with live iris default-vs-shadow traffic (no broker needed)",
        description=(
            "Start the processor and send it Seldon CloudEvents for an iris deployment with a "
            "LogisticRegression default and a Perceptron shadow predictor; open the printed "
            "page to watch their accuracy. Runs until Ctrl-C."
        ),
    )
    parser.add_argument(
        "--kafka", metavar="BOOTSTRAP", help="go through this Kafka broker instead of HTTP"
    )
    parser.add_argument("--topic", default=DEMO_TOPIC, help=f"demo topic (default {DEMO_TOPIC})")
    parser.add_argument(
        "--feedback-share", type=float, default=1.0, help="share of requests with feedback"
    )
    parser.add_argument(
        "--feedback-delay", type=float, default=2.0, help="seconds from request to feedback"
    )
    parser.add_argument(
        "--feedback-jitter", type=float, default=1.0, help="up to this many seconds more"
    )
    parser.add_argument(
        "--request-interval", type=float, default=0.5, help="mean seconds between requests"
    )
    parser.add_argument("--requests", type=int, default=None, help="stop sending after N")
    parser.add_argument("--seed", type=int, default=0, help="traffic and training seed")
    parser.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    parser.add_argument(
        "--traffic-only",
        action="store_true",
        help="with --kafka: only produce the traffic, for a processor running elsewhere",
    )
    add_arguments(parser)
    parser.set_defaults(handler=_run_command, format_usage=parser.format_usage)
