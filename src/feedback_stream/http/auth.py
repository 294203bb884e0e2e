"""Who may post events: an optional bearer token on ingest, and TLS for the listeners.

With ``ingest_token`` set (from ``FEEDBACK_STREAM_INGEST_TOKEN_FILE``, the
variable or the flag), every ingest request (``POST``) must carry
``Authorization: Bearer <token>``; anything else is answered ``401`` with
``WWW-Authenticate: Bearer``, counted as ``unauthorized`` and logged as one
line. The comparison is constant-time (:func:`hmac.compare_digest`), so the
answer's timing does not reveal how much of a guess was right. Read
endpoints (``GET``) are never asked for the token: lock them down with the
listener's address and a NetworkPolicy instead.

:func:`server_tls` builds the TLS context of a listener from a PEM
certificate chain and key.
"""

from __future__ import annotations

import hmac
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

__all__ = ["bearer_auth", "server_tls"]

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def bearer_auth(token: str) -> Callable[..., Any]:
    """An aiohttp middleware asking ``POST`` requests for ``Authorization: Bearer token``.

    Raises:
        ValueError: the token is empty.
    """
    if not token:
        raise ValueError("an ingest token must not be empty")
    expected = token.encode("utf-8")

    @web.middleware
    async def authenticate(request: web.Request, handler: _Handler) -> web.StreamResponse:
        if request.method == "POST":
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            presented = given.strip().encode("utf-8", "surrogateescape")
            if scheme.lower() != "bearer" or not hmac.compare_digest(presented, expected):
                raise web.HTTPUnauthorized(
                    text="ingest needs 'Authorization: Bearer <token>' with the ingest token",
                    headers={"WWW-Authenticate": 'Bearer realm="feedback-stream ingest"'},
                )
        return await handler(request)

    return authenticate


def server_tls(certfile: str, keyfile: str = "") -> ssl.SSLContext:
    """A server TLS context (TLS 1.2 at least) from PEM files.

    Raises:
        ValueError: a file cannot be read or the key does not match.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile, keyfile or None)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load the TLS certificate {certfile!r}: {exc}") from None
    return context
