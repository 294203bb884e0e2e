"""Elasticsearch settings: defaults, validation, and secrets that never show."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from feedback_stream.es import ElasticsearchSettings, HistorySettings


def test_defaults_read_and_write_nothing() -> None:
    assert not HistorySettings().enabled
    assert not ElasticsearchSettings().sink_enabled
    assert HistorySettings().index_pattern == "inference-log-*"
    assert ElasticsearchSettings().sink_index == "feedback-outcomes-{namespace}-{deployment}"


def test_hosts_accept_commas_and_json() -> None:
    assert ElasticsearchSettings(hosts="http://a:9200, https://b:9243").hosts == [
        "http://a:9200",
        "https://b:9243",
    ]
    assert ElasticsearchSettings(hosts='["http://a:1"]').hosts == ["http://a:1"]


@pytest.mark.parametrize("host", ["https://elastic:changeme@es:9200", "http://user@es:9200"])
def test_credentials_in_urls_are_refused(host: str) -> None:
    with pytest.raises(ValidationError, match="must not carry credentials"):
        ElasticsearchSettings(hosts=[host])


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("not-a-url", "is not a URL"),
        ("es:9200", "is not a URL"),
        ("ftp://es:9200", "must be http or https"),
        ("http://:9200", "names no host"),
        ("http://es:port", "port that is not a number"),
    ],
)
def test_hosts_must_be_http_urls(host: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ElasticsearchSettings(hosts=[host])


def test_unknown_index_placeholders_are_refused() -> None:
    with pytest.raises(ValidationError, match="sink_index may only use"):
        ElasticsearchSettings(sink_index="outcomes-{cluster}")


def test_until_must_follow_since() -> None:
    with pytest.raises(ValidationError, match="later than since"):
        HistorySettings(since="2026-01-02T00:00:00Z", until="2026-01-01T00:00:00Z")


def test_bounds_without_a_zone_are_utc() -> None:
    settings = HistorySettings(since="2026-01-02", until="2026-01-03T12:00:00+02:00")
    assert settings.since == datetime(2026, 1, 2, tzinfo=UTC)
    assert settings.until is not None
    assert settings.until.timestamp() == datetime(2026, 1, 3, 10, tzinfo=UTC).timestamp()


def test_secrets_never_show() -> None:
    settings = ElasticsearchSettings(
        username="elastic",
        password="hunter2-password",
        api_key="c2VjcmV0LWFwaS1rZXk=",
    )
    for text in (
        repr(settings),
        str(settings),
        str(settings.redacted()),
        settings.model_dump_json(),
    ):
        assert "hunter2-password" not in text
        assert "c2VjcmV0LWFwaS1rZXk=" not in text
    assert settings.redacted()["password"] == "**********"
    assert ElasticsearchSettings().redacted()["api_key"] is None
