"""Seldon's feedback API on the processor itself: ``POST /api/v1.0/feedback``.

KServe has no feedback API and Seldon's executor has none for protocol v2,
so users of either can post feedback here in Seldon's shape: a JSON body
``{"request": ..., "response": ..., "reward": ..., "truth": ...}`` (any of
them; Seldon's ``SeldonClient.feedback`` sends exactly this), the puid in a
``Seldon-Puid`` header. The request becomes the CloudEvent Seldon's executor
would have logged (``io.seldon.serving.feedback``) and goes through the same
ingest, so it joins, dedupes and counts as any logged feedback.

Where the puid comes from, first found wins: the ``Seldon-Puid`` header, a
``puid`` query parameter, a ``Ce-Requestid`` header, the embedded
``response.meta.puid`` (read by the decoder), else a new one is made up, as
the executor does, and returned. Which model the feedback is for: query
parameters ``namespace``, ``deployment``, ``predictor``, ``model``, or the
headers ``Seldon-Namespace``, ``Seldon-Deployment``, ``Seldon-Predictor``,
``Seldon-Model`` (or their ``Ce-*`` attribute names); absent means any
(EVENTS.md §3). A ``Ce-Id`` header, when given, makes a client's retry a
duplicate; without one every post is a new feedback.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Final

__all__ = ["FEEDBACK_PATH", "feedback_event_headers"]

FEEDBACK_PATH: Final = "/api/v1.0/feedback"
"""Seldon Core's external feedback path (also the executor's)."""

_ATTRIBUTES: Final = (
    # (query parameter, Seldon-style header, CloudEvent header)
    ("namespace", "seldon-namespace", "ce-namespace"),
    ("deployment", "seldon-deployment", "ce-inferenceservicename"),
    ("predictor", "seldon-predictor", "ce-endpoint"),
    ("model", "seldon-model", "ce-modelid"),
)


def feedback_event_headers(
    headers: Mapping[str, str],
    query: Mapping[str, str],
    body_puid: str | None = None,
    new_puid: Callable[[], str] = lambda: str(uuid.uuid4()),
) -> tuple[dict[str, str], str]:
    """The binary-mode CloudEvent headers of one posted feedback, and its puid.

    Args:
        headers: the request's headers, names in lower case.
        query: the request's query parameters.
        body_puid: the puid the body's embedded ``response.meta.puid`` names.
        new_puid: makes a puid when none is given.

    Returns:
        The headers for :func:`feedback_stream.decode.decode_http` and the
        puid given or made up.
    """
    puid = (
        headers.get("seldon-puid")
        or query.get("puid")
        or headers.get("ce-requestid")
        or body_puid
        or new_puid()
    )
    event = {
        "ce-specversion": "1.0",
        "ce-type": "io.seldon.serving.feedback",
        "ce-source": "feedback-stream" + FEEDBACK_PATH,
        "content-type": "application/json",
    }
    event["ce-requestid"] = puid
    given_id = headers.get("ce-id")
    if given_id:
        event["ce-id"] = given_id
    for parameter, seldon, attribute in _ATTRIBUTES:
        value = query.get(parameter) or headers.get(seldon) or headers.get(attribute)
        if value:
            event[attribute] = value
    return event, puid
