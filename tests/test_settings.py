"""Settings: one model, read from flags, the environment and defaults, in that order."""

from __future__ import annotations

import argparse

import pytest
from pydantic import ValidationError

from feedback_stream.settings import (
    Settings,
    add_arguments,
    env_table,
    settings_from_args,
    usage_errors,
)


def _parse(argv: list[str]) -> Settings:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return settings_from_args(parser.parse_args(argv))


def test_defaults_need_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, *_ in env_table():
        monkeypatch.delenv(name, raising=False)
    settings = _parse([])
    assert settings.kafka_enabled is False
    assert settings.windows == ["total", "5m", "1h", "1000"]
    assert settings.time_basis == "feedback"
    assert settings.http_port == 8080


def test_environment_is_read_with_prefix_and_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEEDBACK_STREAM_KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("FEEDBACK_STREAM_KAFKA_TOPICS", "seldon-a, seldon-b")
    monkeypatch.setenv("FEEDBACK_STREAM_WINDOWS", '["total", "30s"]')
    monkeypatch.setenv("FEEDBACK_STREAM_TTL_S", "120")
    monkeypatch.setenv("FEEDBACK_STREAM_HTTP_INGEST", "false")
    monkeypatch.setenv("FEEDBACK_STREAM_ES__HOSTS", "http://es-a:9200,http://es-b:9200")
    settings = _parse([])
    assert settings.kafka_enabled
    assert settings.kafka_topics == ["seldon-a", "seldon-b"]
    assert settings.windows == ["total", "30s"]
    assert settings.ttl_s == 120.0
    assert settings.http_ingest is False
    assert settings.es.hosts == ["http://es-a:9200", "http://es-b:9200"]


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEEDBACK_STREAM_HTTP_PORT", "9000")
    monkeypatch.setenv("FEEDBACK_STREAM_KAFKA_GROUP_ID", "from-env")
    settings = _parse(
        [
            "--http-port",
            "9100",
            "--windows",
            "total,1000",
            "--no-http-ingest",
            "--history-enabled",
            "--es-sink-index",
            "out-{model}",
        ]
    )
    assert settings.http_port == 9100
    assert settings.kafka_group_id == "from-env"
    assert settings.windows == ["total", "1000"]
    assert settings.http_ingest is False
    assert settings.history.enabled is True
    assert settings.es.sink_index == "out-{model}"


def test_choices_and_bounds_are_checked() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    # Choices are the model's to check, so a flag and a variable fail alike.
    with pytest.raises(ValidationError) as bad_choice:
        settings_from_args(parser.parse_args(["--time-basis", "response"]))
    assert usage_errors(bad_choice.value) == [
        "--time-basis / FEEDBACK_STREAM_TIME_BASIS: Input should be 'feedback' or 'request'"
    ]
    with pytest.raises(ValidationError) as bad_ttl:
        _parse(["--ttl-s", "0"])
    assert usage_errors(bad_ttl.value) == [
        "--ttl-s / FEEDBACK_STREAM_TTL_S: '0': a duration must be positive"
    ]


def test_usage_errors_name_nested_flags_and_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEEDBACK_STREAM_ES__SINK_BULK_SIZE", "0")
    with pytest.raises(ValidationError) as error:
        _parse([])
    (line,) = usage_errors(error.value)
    assert line.startswith("--es-sink-bulk-size / FEEDBACK_STREAM_ES__SINK_BULK_SIZE: ")


def test_durations_and_log_levels_are_read_as_people_write_them() -> None:
    settings = _parse(["--ttl", "30m", "--log-level", "debug"])
    assert settings.ttl_s == 1800.0
    assert settings.log_level == "DEBUG"


def test_security_fields_reach_aiokafka_arguments() -> None:
    settings = _parse(
        [
            "--kafka-security-protocol",
            "SASL_PLAINTEXT",
            "--kafka-sasl-mechanism",
            "SCRAM-SHA-512",
            "--kafka-sasl-username",
            "u",
            "--kafka-sasl-password",
            "s3cr3t-pw",
        ]
    )
    kwargs = settings.kafka_security_kwargs()
    assert kwargs == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "u",
        "sasl_plain_password": "s3cr3t-pw",
    }
    assert "s3cr3t-pw" not in repr(settings)
    tls = _parse(["--kafka-security-protocol", "SSL", "--no-kafka-ssl-check-hostname"])
    context = tls.kafka_security_kwargs()["ssl_context"]
    assert context.check_hostname is False


def test_every_field_has_a_flag_an_env_var_and_a_description() -> None:
    rows = env_table()
    names = [row[0] for row in rows]
    assert len(names) == len(set(names))
    assert all(name.startswith("FEEDBACK_STREAM_") for name in names)
    assert all(description for *_, description in rows)
    flags = {flag for row in rows for flag in row[1].split(", ")}
    assert {"--kafka-bootstrap-servers", "--dlq-topic", "--ttl-s", "--es-hosts"} <= flags


def test_readme_table_lists_every_setting() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    missing = [name for name, *_ in env_table() if f"| `{name}` |" not in readme]
    assert not missing, f"README.md lacks {missing}: run python -m feedback_stream.settings"


def test_the_short_port_flag() -> None:
    assert _parse(["--port", "9999"]).http_port == 9999
