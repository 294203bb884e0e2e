"""The service's configuration: one pydantic-settings model, three spellings.

Every field is read, in order of precedence, from a CLI flag
(``--kafka-bootstrap-servers``), an environment variable
(``FEEDBACK_STREAM_KAFKA_BOOTSTRAP_SERVERS``) and its default. The flags are
generated from the fields (:func:`add_arguments`), so the README's table, the
environment and ``--help`` cannot drift apart. List fields take a comma
separated string in both places (``5m,1h,1000``), because that is what people
type into a Kubernetes manifest; JSON lists are accepted too.

Nested models (the Elasticsearch history settings, when that package is
present) use ``__`` in the environment (``FEEDBACK_STREAM_ES__URL``) and a
``-`` joined prefix on the command line (``--es-url``).
"""

from __future__ import annotations

import argparse
import logging
import re
import types
import typing
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from feedback_stream._lists import split_commas
from feedback_stream._secret_files import (
    SecretFilesSource,
    WithoutFileNames,
    apply_file_flags,
    secret_fields,
)
from feedback_stream.core2.experiments import Experiments
from feedback_stream.core2.topics import DEFAULT_FEEDBACK_TOPIC, DEFAULT_PREFIX, topic_pattern
from feedback_stream.es.settings import ElasticsearchSettings, HistorySettings
from feedback_stream.model_kinds import ModelKinds
from feedback_stream.paired import parse_pair_rules
from feedback_stream.resolvers.prediction import parse_prediction_urls
from feedback_stream.windows import WindowSpec, parse_duration

__all__ = [
    "ENV_PREFIX",
    "SecurityProtocol",
    "Settings",
    "TimeBasis",
    "add_arguments",
    "env_table",
    "markdown_table",
    "settings_from_args",
    "usage_errors",
]

ENV_PREFIX = "FEEDBACK_STREAM_"

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "OAUTHBEARER"]
TimeBasis = Literal["feedback", "request"]
Route = Literal["puid", "partition"]
OffsetReset = Literal["earliest", "latest"]
Source = Literal["cloudevents", "seldon-core-2"]
CommaList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """Everything ``feedback-stream run`` and ``demo`` can be told."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="ignore",
        frozen=True,
    )

    # -- Kafka source ------------------------------------------------------
    kafka_bootstrap_servers: str = Field(
        "", description="Kafka bootstrap servers, comma separated; empty: no Kafka source"
    )
    kafka_topics: CommaList = Field(
        default_factory=lambda: ["seldon"], description="topics to consume, comma separated"
    )
    kafka_topic_pattern: str = Field(
        "", description="regex of topics to consume; overrides kafka_topics when set"
    )
    kafka_group_id: str = Field("feedback-stream", description="consumer group id")
    kafka_client_id: str = Field("feedback-stream", description="client id sent to the broker")
    kafka_auto_offset_reset: OffsetReset = Field(
        "earliest", description="where a group without committed offsets starts"
    )
    kafka_max_batch: int = Field(500, ge=1, description="records per getmany batch, at most")
    kafka_poll_timeout_ms: int = Field(200, ge=1, description="getmany wait for records, ms")
    kafka_metadata_max_age_ms: int = Field(
        5000,
        ge=100,
        description="topic metadata refresh, ms: a topic created after start (or newly "
        "matching kafka_topic_pattern) is consumed within about this long",
    )
    kafka_session_timeout_ms: int = Field(
        45000,
        ge=1000,
        description="consumer group session timeout, ms: a member silent this long is "
        "expelled (the broker's group.min/max.session.timeout.ms bound it)",
    )
    kafka_heartbeat_interval_ms: int = Field(
        3000,
        ge=100,
        description="consumer heartbeat interval, ms; below kafka_session_timeout_ms "
        "(a third of it or less)",
    )
    kafka_rebalance_timeout_ms: int = Field(
        30000,
        ge=1000,
        description="how long the broker waits for members to rejoin a rebalance, ms (a "
        "state restore runs after the rebalance, not within it)",
    )
    kafka_security_protocol: SecurityProtocol = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
    )
    kafka_sasl_mechanism: SaslMechanism = Field(
        "PLAIN", description="PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, GSSAPI or OAUTHBEARER"
    )
    kafka_sasl_username: str = Field("", description="SASL username")
    kafka_sasl_password: SecretStr = Field(SecretStr(""), description="SASL password")
    kafka_ssl_cafile: str = Field("", description="CA bundle (PEM) that signs the brokers")
    kafka_ssl_certfile: str = Field("", description="client certificate (PEM) for mutual TLS")
    kafka_ssl_keyfile: str = Field("", description="client key (PEM) for mutual TLS")
    kafka_ssl_password: SecretStr = Field(SecretStr(""), description="password of the client key")
    kafka_ssl_check_hostname: bool = Field(True, description="verify the brokers' host names")
    repartition_topic: str = Field(
        "",
        description="re-key the topics' records by puid into this topic and process that "
        "(route=partition), so a group of processors joins Seldon's unkeyed records",
    )
    dlq_topic: str = Field(
        "", description="dead-letter topic for invalid records; empty: count them only"
    )

    # -- Seldon Core 2 ----------------------------------------------------
    source: Source = Field(
        "cloudevents",
        description="what the topics hold: cloudevents (Seldon Core v1 and KServe loggers) or "
        "seldon-core-2 (Core 2's model topics; sets kafka_topic_pattern unless given)",
    )
    seldon_topic_prefix: str = Field(
        DEFAULT_PREFIX, description="Seldon Core 2's topicPrefix (seldon-core-2 source)"
    )
    seldon_namespace: str = Field(
        "", description="namespace whose Core 2 model topics are read; empty: every namespace"
    )
    seldon_read_inputs: bool = Field(
        False, description="also read Core 2 model inputs topics (request time)"
    )
    seldon_feedback_topic: str = Field(
        DEFAULT_FEEDBACK_TOPIC,
        description="JSON feedback topic read with the seldon-core-2 source (x-request-id "
        "header or key, Seldon feedback body); empty: none",
    )
    seldon_experiments: CommaList = Field(
        default_factory=list,
        description="Core 2 experiments to label as one deployment, NAME=DEFAULT:OTHER[:OTHER]",
    )

    # -- HTTP ------------------------------------------------------------
    http_host: str = Field("0.0.0.0", description="address the HTTP server listens on")
    http_port: int = Field(8080, ge=0, le=65535, description="HTTP port (0: any free port)")
    http_ingest: bool = Field(
        True, description="accept CloudEvents on POST / and /events (sidecar, Knative)"
    )
    http_max_body: int = Field(
        16 * 1024 * 1024, ge=1024, description="largest CloudEvent body accepted, bytes"
    )
    ingest_host: str = Field(
        "", description="address of the separate ingest listener; empty: http_host"
    )
    ingest_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="serve ingest (POST / and /events) on this port only, apart from /metrics, "
        "the API and the page (0: any free port); unset: ingest on http_port",
    )
    ingest_token: SecretStr = Field(
        SecretStr(""),
        description="bearer token every ingest request must carry (Authorization: Bearer); "
        "empty: none",
    )
    http_tls_certfile: str = Field(
        "", description="PEM certificate chain: serve HTTPS on every listener; empty: HTTP"
    )
    http_tls_keyfile: str = Field("", description="PEM private key of http_tls_certfile")
    shutdown_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="longest wait for in-flight HTTP requests at shutdown, then they are cut",
    )

    # -- orphan feedback -----------------------------------------------
    prediction_urls: CommaList = Field(
        default_factory=list,
        description="feedback no logged response answers: ask the model, KEY=URL comma "
        "separated (KEY: predictor, deployment/predictor or namespace/deployment/predictor; "
        "URL: the model's own prediction endpoint, sent the feedback's request)",
    )
    prediction_timeout_s: float = Field(
        2.0, gt=0, description="the longest one prediction URL call may take, seconds"
    )
    prediction_concurrency: int = Field(
        8, ge=1, description="prediction URL calls in flight at most"
    )
    orphan_lookup: bool = Field(
        False,
        description="look the response of feedback no logged response answers up by puid in "
        "the request logger's indices (es hosts, history index pattern)",
    )
    orphan_lookup_cache: int = Field(
        10_000, ge=1, description="puids whose lookup answer is remembered, at most"
    )

    # -- state and metrics -----------------------------------------------
    windows: CommaList = Field(
        default_factory=lambda: ["total", "5m", "1h", "1000"],
        description="metric windows: total, a width (30s, 5m, 1h) or a count (1000)",
    )
    ttl_s: float = Field(
        3600.0,
        gt=0,
        description="seconds an unmatched event waits for its partner (a duration: 90, 30m, 1h)",
    )
    route: Route = Field(
        "puid",
        description="puid: one state joins every partition this processor reads (Seldon's "
        "unkeyed records); partition: a state per partition, for topics keyed by puid "
        "(several processors in one group)",
    )
    time_basis: TimeBasis = Field(
        "feedback", description="an outcome's time: its feedback's or its request's"
    )
    tick_interval_s: float = Field(
        1.0, gt=0, description="wall-clock tick that moves windows and expires joins"
    )
    class_allowlist: CommaList = Field(
        default_factory=list,
        description="classes exported as `class` labels; empty: any, up to max_classes",
    )
    max_classes: int = Field(
        50,
        ge=1,
        description="classes tracked and exported per model (besides the allowlist); "
        "later ones are counted as `__other__`",
    )
    max_models: int = Field(
        1000,
        ge=1,
        description="models tracked and exported; later ones are counted as model=`__overflow__`",
    )
    max_pending: int = Field(
        200_000,
        ge=1,
        description="puids waiting to join, every source together; past it the oldest are "
        "evicted (feedback_stream_evicted_total)",
    )
    history_points: int = Field(
        600, ge=2, description="accuracy samples per model kept for the live page's chart"
    )
    models_config: str = Field(
        "",
        description="TOML file declaring model kinds (classification, binary with threshold, "
        "regression) by namespace/deployment/predictor/model globs; empty: detect",
    )
    comparisons: CommaList = Field(
        default_factory=list,
        description="baseline->candidate predictor pairs to compare (default->shadow), comma "
        "separated; empty: every two predictors of a deployment, `default` as the baseline",
    )
    comparison_alpha: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="error rate of the always-valid comparison test (a false 'better' or "
        "'worse' at most this often, however often it is watched)",
    )
    comparison_effect: float = Field(
        0.02,
        gt=0,
        le=1,
        description="accuracy difference the 'labelled pairs needed' estimate is for",
    )
    state_dir: str = Field(
        "",
        description="folder for per-partition state checkpoints taken on revoke and shutdown, "
        "restored on assignment within ttl_s, when state_changelog is off; empty: none",
    )
    state_changelog: bool = Field(
        True,
        description="keep partition state in a compacted Kafka topic, committed in one "
        "transaction with the input offsets, restored on assignment (exact after a kill, "
        "a rebalance or any downtime); off: state lives only in memory (and state_dir)",
    )
    state_topic: str = Field(
        "",
        description="the state topic (created compacted when missing); empty: "
        "<kafka_group_id>-state",
    )
    state_topic_replication_factor: int = Field(
        0,
        ge=0,
        description="replication factor of the state topic when it is created; 0: 3, or "
        "the number of brokers if fewer",
    )
    state_topic_partitions: int = Field(
        0,
        ge=0,
        description="partitions of the state topic when it is created; 0: as many as the "
        "input topic with the most",
    )
    state_commit_timeout_s: float = Field(
        60.0,
        gt=0,
        description="a state commit (transaction) not complete after this long stops the "
        "processor (exit 1) with the reason logged; its restart restores the last commit",
    )
    state_accept_empty: bool = Field(
        False,
        description="start a partition's state empty when the state topic holds nothing "
        "for it although the group has committed offsets (the records before them are "
        "not counted); off: refuse to start (see docs/state.md)",
    )
    log_level: str = Field(
        "INFO", description="Python log level: DEBUG, INFO, WARNING, ERROR or CRITICAL"
    )

    # -- Elasticsearch (the ES engineer's models) ------------------------
    es: ElasticsearchSettings = Field(
        default_factory=ElasticsearchSettings, description="Elasticsearch connection and sink"
    )
    history: HistorySettings = Field(
        default_factory=HistorySettings, description="history bootstrap from the request logger"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags, then the environment, then secrets from ``*_FILE`` files."""
        return (
            init_settings,
            WithoutFileNames(settings_cls, env_settings),
            SecretFilesSource(settings_cls, ENV_PREFIX),
            dotenv_settings,
            file_secret_settings,
        )

    @field_validator(
        "kafka_topics",
        "windows",
        "class_allowlist",
        "seldon_experiments",
        "prediction_urls",
        "comparisons",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: object) -> object:
        return split_commas(value)

    @field_validator("models_config")
    @classmethod
    def _models_config(cls, value: str) -> str:
        if value:
            ModelKinds.load(value)  # ModelKindsError (a ValueError) names the rule and field
        return value

    @field_validator("kafka_topic_pattern")
    @classmethod
    def _topic_pattern(cls, value: str) -> str:
        if value:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"{value!r} is not a regular expression: {exc}") from None
        return value

    @field_validator("prediction_urls")
    @classmethod
    def _prediction_urls(cls, value: list[str]) -> list[str]:
        parse_prediction_urls(value)  # ValueError says which entry is wrong
        return value

    @field_validator("seldon_experiments")
    @classmethod
    def _experiments(cls, value: list[str]) -> list[str]:
        Experiments.parse(value)  # ValueError says which entry is wrong
        return value

    @model_validator(mode="before")
    @classmethod
    def _core2_topics(cls, data: Any) -> Any:
        """The seldon-core-2 source subscribes to Core 2's topics unless a pattern is given."""
        if not isinstance(data, dict) or data.get("source") != "seldon-core-2":
            return data
        if data.get("repartition_topic"):
            raise ValueError(
                "repartition_topic re-keys CloudEvents by puid; the seldon-core-2 source "
                "reads Core 2's records as they are (run one processor, route=puid)"
            )
        if data.get("kafka_topic_pattern"):
            return data
        pattern = topic_pattern(
            str(data.get("seldon_topic_prefix") or DEFAULT_PREFIX),
            str(data.get("seldon_namespace") or ""),
            inputs=TypeAdapter(bool).validate_python(data.get("seldon_read_inputs", False)),
            feedback_topic=str(data.get("seldon_feedback_topic", DEFAULT_FEEDBACK_TOPIC)),
        )
        return {**data, "kafka_topic_pattern": pattern}

    @field_validator("windows")
    @classmethod
    def _parse_windows(cls, value: list[str]) -> list[str]:
        names = [WindowSpec.parse(text).name for text in value]
        if not names:
            raise ValueError("at least one window is needed")
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"window {', '.join(repeated)} is given twice")
        return names

    @field_validator("ttl_s", mode="before")
    @classmethod
    def _ttl_duration(cls, value: object) -> object:
        # "1h" as well as "3600": the same spelling replay's --ttl takes.
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in logging.getLevelNamesMapping() or level == "NOTSET":
            raise ValueError(
                f"{value!r} is not a log level: use DEBUG, INFO, WARNING, ERROR or CRITICAL"
            )
        return level

    @model_validator(mode="after")
    def _check_heartbeat(self) -> Settings:
        if self.kafka_heartbeat_interval_ms >= self.kafka_session_timeout_ms:
            raise ValueError(
                f"kafka_heartbeat_interval_ms ({self.kafka_heartbeat_interval_ms}) must be "
                f"below kafka_session_timeout_ms ({self.kafka_session_timeout_ms})"
            )
        return self

    @field_validator("comparisons")
    @classmethod
    def _check_comparisons(cls, value: list[str]) -> list[str]:
        parse_pair_rules(value)
        return value

    @property
    def kafka_enabled(self) -> bool:
        """Whether a Kafka source runs: it is optional, HTTP ingest alone is a service."""
        return bool(self.kafka_bootstrap_servers.strip())

    def kafka_security_kwargs(self) -> dict[str, Any]:
        """The aiokafka keyword arguments for the configured security protocol."""
        kwargs: dict[str, Any] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            kwargs["ssl_context"] = create_ssl_context(
                cafile=self.kafka_ssl_cafile or None,
                certfile=self.kafka_ssl_certfile or None,
                keyfile=self.kafka_ssl_keyfile or None,
                password=self.kafka_ssl_password.get_secret_value() or None,
            )
            kwargs["ssl_context"].check_hostname = self.kafka_ssl_check_hostname
        if self.kafka_security_protocol.startswith("SASL"):
            kwargs["sasl_mechanism"] = self.kafka_sasl_mechanism
            kwargs["sasl_plain_username"] = self.kafka_sasl_username or None
            kwargs["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value() or None
        return kwargs


# -- the command line ------------------------------------------------------


_ALIASES: dict[str, tuple[str, ...]] = {
    "http_port": ("--port",),
    "history_enabled": ("--history",),
    "windows": ("--window",),
    "ttl_s": ("--ttl",),
}
"""Short flags people type most, besides the generated ones (``replay`` spells these)."""


def _flag(prefix: str, name: str) -> str:
    return "--" + (prefix + name).replace("_", "-")


def _dest(prefix: str, name: str) -> str:
    return "fs__" + (prefix + name).replace("-", "_")


def _is_model(annotation: object) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _strip_optional(annotation: object) -> object:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _add_model(
    parser: argparse._ArgumentGroup | argparse.ArgumentParser,
    model: type[BaseModel],
    prefix: str,
    env: str,
) -> None:
    for name, field in model.model_fields.items():
        annotation = _strip_optional(field.annotation)
        if _is_model(annotation):
            nested = typing.cast(type[BaseModel], annotation)
            _add_model(parser, nested, f"{prefix}{name}_", f"{env}{name}__")
            continue
        env_name = (env + name).upper()
        help_text = f"{field.description or name} (env {env_name})"
        kwargs: dict[str, Any] = {"dest": _dest(prefix, name), "default": argparse.SUPPRESS}
        if annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif get_origin(annotation) is list:
            # Repeating the flag adds to the list: --window total --window 5m.
            kwargs.update(action="extend", type=_comma_items, metavar=name.upper())
        else:
            choices = get_args(annotation) if get_origin(annotation) is Literal else ()
            # Choices are checked by the model, so that a bad flag and a bad variable
            # get the same usage error (usage_errors).
            kwargs["metavar"] = "{" + ",".join(choices) + "}" if choices else name.upper()
        flags = [_flag(prefix, name), *_ALIASES.get(prefix + name, ())]
        parser.add_argument(*flags, help=help_text, **kwargs)


def _comma_items(text: str) -> list[str]:
    items = split_commas(text)
    return [str(item) for item in items] if isinstance(items, list) else [str(items)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per settings field; values given override the environment."""
    group = parser.add_argument_group("settings (flags override FEEDBACK_STREAM_* variables)")
    _add_model(group, Settings, "", ENV_PREFIX)
    for secret in secret_fields(Settings, ENV_PREFIX):
        group.add_argument(
            secret.file_flag,
            dest=secret.dest,
            metavar="PATH",
            default=argparse.SUPPRESS,
            help=f"file holding the {secret.description} (env {secret.file_env})",
        )


def _nest(values: dict[str, Any], model: type[BaseModel], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        annotation = _strip_optional(field.annotation)
        if _is_model(annotation):
            inner = _nest(values, typing.cast(type[BaseModel], annotation), f"{prefix}{name}_")
            if inner:
                out[name] = inner
        elif _dest(prefix, name) in values:
            out[name] = values[_dest(prefix, name)]
    return out


def settings_from_args(args: argparse.Namespace, **overrides: Any) -> Settings:
    """Build the settings from parsed flags, the environment and the defaults."""
    given = {key: value for key, value in vars(args).items() if key.startswith("fs__")}
    values = _nest(given, Settings, "")
    files = {key: value for key, value in vars(args).items() if key.startswith("fsfile__")}
    apply_file_flags(files, values, list(secret_fields(Settings, ENV_PREFIX)))
    values.update(overrides)
    return Settings(**values)


def _names_of(loc: tuple[int | str, ...]) -> tuple[str, str] | None:
    """The (flag, environment variable) of the field an error location points at."""
    model: type[BaseModel] = Settings
    prefix, env = "", ENV_PREFIX
    for part in loc:
        if not isinstance(part, str) or part not in model.model_fields:
            return None
        annotation = _strip_optional(model.model_fields[part].annotation)
        if _is_model(annotation):
            model = typing.cast(type[BaseModel], annotation)
            prefix, env = f"{prefix}{part}_", f"{env}{part}__"
            continue
        return _flag(prefix, part), (env + part).upper()
    return None


def usage_errors(exc: ValidationError) -> list[str]:
    """One line per problem, naming the flag and the variable the user may have set.

    ``--ttl-s / FEEDBACK_STREAM_TTL_S: Input should be greater than 0``: the
    user typed one of the two, never the field name ``ttl_s``.
    """
    lines = []
    for error in exc.errors():
        names = _names_of(tuple(error["loc"]))
        where = f"{names[0]} / {names[1]}" if names else ".".join(map(str, error["loc"]))
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{where}: {message}")
    return lines


def env_table() -> list[tuple[str, str, str, str]]:
    """(env var, flag, default, description) rows: the README table is made from these."""
    rows: list[tuple[str, str, str, str]] = []

    def walk(model: type[BaseModel], prefix: str, env: str) -> None:
        for name, field in model.model_fields.items():
            annotation = _strip_optional(field.annotation)
            if _is_model(annotation):
                walk(typing.cast(type[BaseModel], annotation), f"{prefix}{name}_", f"{env}{name}__")
                continue
            default = field.get_default(call_default_factory=True)
            if isinstance(default, SecretStr) or default is None:
                shown = ""
            elif isinstance(default, bool):
                shown = str(default).lower()
            elif isinstance(default, list):
                shown = ",".join(str(item) for item in default)
            else:
                shown = str(default)
            flags = ", ".join([_flag(prefix, name), *_ALIASES.get(prefix + name, ())])
            rows.append(((env + name).upper(), flags, shown, field.description or ""))
            if isinstance(default, SecretStr) or "SecretStr" in str(field.annotation):
                rows.append(
                    (
                        (env + name).upper() + "_FILE",
                        _flag(prefix, name) + "-file",
                        "",
                        f"file holding the {field.description or name} (Docker/Kubernetes "
                        "secrets); the flag itself is visible in `ps`",
                    )
                )

    walk(Settings, "", ENV_PREFIX)
    return rows


def markdown_table() -> str:
    """The README's settings table, generated so that it cannot drift from the model."""
    lines = [
        "| environment variable | flag | default | meaning |",
        "|---|---|---|---|",
    ]
    for env, flag, default, description in env_table():
        shown = f"`{default}`" if default else ""
        meaning = description.replace("|", "\\|")
        flags = ", ".join(f"`{one}`" for one in flag.split(", "))
        lines.append(f"| `{env}` | {flags} | {shown} | {meaning} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
