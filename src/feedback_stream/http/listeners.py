"""The HTTP listeners: the read side, and ingest with it or on a listener of its own.

By default one listener (``http_host:http_port``) serves everything. With
``ingest_port`` set, ingest (``POST /`` and ``/events``) moves to its own
listener on ``ingest_host`` (default ``http_host``), and the read side
(``/metrics``, the API, the page, the probes) no longer accepts events, so
each can be bound and firewalled apart: ingest on ``127.0.0.1`` for a
sidecar logger, say, while Prometheus scrapes the pod's address. The ingest
listener also answers ``GET /healthz``.

Both use TLS when ``http_tls_certfile`` is set, and ingest asks for the
bearer token when ``ingest_token`` is set (:mod:`feedback_stream.http.auth`).
Stopping waits at most ``shutdown_timeout_s`` for requests in flight, then
closes their connections, so clients holding half-sent bodies cannot hold up
a shutdown.
"""

from __future__ import annotations

import logging
import ssl

from aiohttp import web

from feedback_stream.http.app import Backend, create_app
from feedback_stream.http.auth import bearer_auth, server_tls
from feedback_stream.http.refusals import Refusals
from feedback_stream.settings import Settings

__all__ = ["Listeners"]

_log = logging.getLogger(__name__)


class Listeners:
    """The service's HTTP listeners, started and stopped together."""

    def __init__(self, backend: Backend, settings: Settings, refusals: Refusals) -> None:
        self._backend = backend
        self._settings = settings
        self._refusals = refusals
        self._runners: list[web.AppRunner] = []
        self.read_runner: web.AppRunner | None = None
        self.read_port: int | None = None
        self.ingest_port: int | None = None
        """Where ingest is served (the read port when it shares the listener); None: off."""

    @property
    def separate_ingest(self) -> bool:
        s = self._settings
        return s.http_ingest and s.ingest_port is not None

    async def start(self) -> None:
        """Bind and serve; raises ``OSError`` if a port is taken, ``ValueError`` for bad TLS."""
        s = self._settings
        tls = server_tls(s.http_tls_certfile, s.http_tls_keyfile) if s.http_tls_certfile else None
        token = s.ingest_token.get_secret_value()
        auth = [bearer_auth(token)] if token else []
        scheme = "https" if tls is not None else "http"
        shared = s.http_ingest and not self.separate_ingest
        read = create_app(
            self._backend,
            ingest=shared,
            read=True,
            max_body=s.http_max_body,
            refusals=self._refusals,
            middlewares=auth if shared else [],
        )
        self.read_runner = await self._serve(
            read, s.http_host, s.http_port, tls, "--http-port / FEEDBACK_STREAM_HTTP_PORT"
        )
        self.read_port = _bound_port(self.read_runner, s.http_port)
        _log.info("HTTP on %s://%s:%d", scheme, s.http_host, self.read_port)
        if shared:
            self.ingest_port = self.read_port
        if self.separate_ingest:
            assert s.ingest_port is not None
            host = s.ingest_host or s.http_host
            ingest = create_app(
                self._backend,
                ingest=True,
                read=False,
                max_body=s.http_max_body,
                refusals=self._refusals,
                middlewares=auth,
            )
            runner = await self._serve(
                ingest, host, s.ingest_port, tls, "--ingest-port / FEEDBACK_STREAM_INGEST_PORT"
            )
            self.ingest_port = _bound_port(runner, s.ingest_port)
            _log.info("ingest on %s://%s:%d", scheme, host, self.ingest_port)
        if token:
            _log.info("ingest asks for the bearer token")

    async def _serve(
        self,
        app: web.Application,
        host: str,
        port: int,
        tls: ssl.SSLContext | None,
        setting: str,
    ) -> web.AppRunner:
        runner = web.AppRunner(
            app,
            access_log=None,
            logger=self._refusals.server_logger(),
            shutdown_timeout=self._settings.shutdown_timeout_s,
            auto_decompress=False,  # ingest undoes content codings itself (http/content_coding.py)
        )
        await runner.setup()
        self._runners.append(runner)
        try:
            await web.TCPSite(runner, host, port, ssl_context=tls).start()
        except OSError as exc:
            # Say which setting to change, not only the socket's errno.
            raise OSError(
                exc.errno, f"cannot listen on {host}:{port} ({exc.strerror}); set {setting}"
            ) from exc
        return runner

    async def stop(self) -> None:
        """Stop listening, wait (boundedly) for requests in flight, close; idempotent."""
        runners, self._runners = self._runners, []
        for runner in reversed(runners):
            await runner.cleanup()
        self.read_runner = None


def _bound_port(runner: web.AppRunner, configured: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return configured
