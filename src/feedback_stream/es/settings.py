"""Settings of the Elasticsearch edge: connection + outcome sink, and history.

Two frozen models, nested by the service's settings under ``es`` and
``history``, so that (with its ``__`` nesting) the variables are
``FEEDBACK_STREAM_ES__HOSTS``, ``FEEDBACK_STREAM_HISTORY__SINCE``, ... and
the flags ``--es-hosts``, ``--history-since``, ...: the history bootstrap
has its own switch and bounds, while connection and credentials are shared
by the reader and the sink.

Secrets are :class:`~pydantic.SecretStr` (their ``repr`` and JSON dump show
``**********``) and host URLs with credentials in them are refused, so
neither a log line nor ``/api`` output can leak them.
"""

from __future__ import annotations

import string
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import NoDecode

from feedback_stream._lists import split_commas

__all__ = [
    "OUTCOME_INDEX_FIELDS",
    "ElasticsearchSettings",
    "HistorySettings",
]

OUTCOME_INDEX_FIELDS = frozenset({"namespace", "deployment", "predictor", "model"})


class ElasticsearchSettings(BaseModel):
    """Where Elasticsearch is, how to authenticate, and the outcome sink.

    The defaults write nothing: the sink is switched on by ``sink_enabled``,
    so a processor without Elasticsearch needs no configuration here.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    hosts: Annotated[list[str], NoDecode, Field(min_length=1)] = Field(
        default_factory=lambda: ["http://127.0.0.1:9200"],
        description="Elasticsearch URLs, comma separated (no credentials in them)",
    )
    username: str | None = Field(None, description="basic auth user")
    password: SecretStr | None = Field(None, description="basic auth password")
    api_key: SecretStr | None = Field(
        None, description="API key (the base64 'id:key' form), instead of basic auth"
    )
    ca_certs: Path | None = Field(None, description="PEM file of the CA that signed the server")
    verify_certs: bool = Field(True, description="verify the server certificate over https")
    request_timeout_s: float = Field(30.0, gt=0, description="seconds per request")
    max_retries: int = Field(
        3, ge=0, description="client retries of one request on connection errors and timeouts"
    )
    startup_wait_s: float = Field(
        60.0,
        ge=0,
        description="seconds to wait at start for the cluster to answer (backoff) before giving up",
    )

    sink_enabled: bool = Field(False, description="write joined outcomes to Elasticsearch")
    sink_index: str = Field(
        "feedback-outcomes-{namespace}-{deployment}",
        description="outcome index; may use {namespace} {deployment} {predictor} {model}",
    )
    sink_responses: bool = Field(
        True,
        description="also write predictions without feedback (has_feedback=false), for coverage",
    )
    sink_bulk_size: int = Field(500, ge=1, le=10_000, description="outcomes per bulk request")
    sink_flush_interval_s: float = Field(
        1.0, gt=0, description="seconds between flushes of a partly filled bulk"
    )
    sink_buffer_max: int = Field(
        100_000, ge=1, description="outcomes held while Elasticsearch is down; more are dropped"
    )
    sink_retry_initial_s: float = Field(0.5, gt=0, description="first retry delay, seconds")
    sink_retry_max_s: float = Field(30.0, gt=0, description="longest retry delay, seconds")

    @field_validator("hosts", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        return split_commas(value)

    @field_validator("hosts")
    @classmethod
    def _hosts_without_credentials(cls, hosts: list[str]) -> list[str]:
        for host in hosts:
            if "://" not in host:
                raise ValueError(
                    f"{host!r} is not a URL: write http://HOST:9200 or https://HOST:9200"
                )
            parts = urlsplit(host)
            if not parts.hostname:
                raise ValueError(f"{host!r} names no host")
            try:
                parts.port  # noqa: B018 (urlsplit checks the port only when asked)
            except ValueError:
                raise ValueError(f"{host!r} has a port that is not a number") from None
            if parts.username is not None or parts.password is not None:
                raise ValueError(
                    "Elasticsearch host URLs must not carry credentials; "
                    "set username/password or api_key instead"
                )
            if parts.scheme not in ("http", "https"):
                raise ValueError(f"Elasticsearch host scheme must be http or https, got {host!r}")
        return hosts

    @field_validator("sink_index")
    @classmethod
    def _known_placeholders(cls, template: str) -> str:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
        unknown = names - OUTCOME_INDEX_FIELDS
        if unknown:
            raise ValueError(
                f"sink_index may only use {sorted(OUTCOME_INDEX_FIELDS)}, not {sorted(unknown)}"
            )
        return template

    @property
    def hosts_text(self) -> str:
        """The hosts as one string for messages (safe: they carry no credentials)."""
        return ",".join(self.hosts)

    def redacted(self) -> dict[str, object]:
        """JSON-ready settings with secrets shown as set or unset, never their value."""
        data = self.model_dump(mode="json")
        for name in ("password", "api_key"):
            data[name] = "**********" if data[name] is not None else None
        return data


class HistorySettings(BaseModel):
    """The bootstrap from the request logger's indices (EVENTS.md §5)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(False, description="load the request logger's history at start")
    index_pattern: str = Field(
        "inference-log-*", description="indices to read (comma separated patterns)"
    )
    since: datetime | None = Field(
        None,
        description="only outcomes whose time (see time_basis) is at or after this; "
        "RFC 3339, UTC when no zone is given",
    )
    until: datetime | None = Field(
        None, description="only outcomes whose time (see time_basis) is before this"
    )
    required: bool = Field(
        True, description="fail at start when the history cannot be read; else serve without it"
    )
    page_size: int = Field(2_000, ge=1, le=10_000, description="documents per search page")
    keep_alive: str = Field("5m", description="point-in-time (or scroll) keep-alive between pages")
    progress_interval_s: float = Field(5.0, gt=0, description="seconds between progress logs")
    kserve_component: str = Field(
        "predictor",
        description="model label of KServe documents (the request logger drops `component`)",
    )

    @field_validator("since", "until")
    @classmethod
    def _utc_unless_zoned(cls, moment: datetime | None) -> datetime | None:
        """A bound without a zone (``2026-01-01``) is read as UTC, as Elasticsearch does."""
        if moment is not None and moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment

    @field_validator("until")
    @classmethod
    def _until_after_since(cls, until: datetime | None, info: ValidationInfo) -> datetime | None:
        since = info.data.get("since")
        if until is not None and since is not None and until <= since:
            raise ValueError("history until must be later than since")
        return until
