"""Every deployment pattern's manifests are wired: what sends events reaches a listening port.

Offline, as ``tests/test_deploy_static.py`` (which validates each document
against its schema): here the documents are read together, and every
address one of them names is resolved the way Kubernetes and Knative
resolve it:

* a Knative Trigger's ``subscriber.ref`` to a Service is that Service's
  port 80 (``http://NAME.NAMESPACE.svc.cluster.local/``), ``subscriber.uri``
  is the URL as written;
* a Service port leads to the container port its ``targetPort`` names;
* a SeldonDeployment's ``logger.url`` is a URL; its ``LOGGER_KAFKA_*``
  variables must name what a Kafka-consuming processor reads.

Patterns: the Knative trigger subscriber (feedback-stream.yaml +
knative-trigger.yaml), the request logger's sidecar (sidecar.yaml), the
Kafka consumer group (kafka-consumer.yaml), and the SeldonDeployments that
log to them (seldondeployment.yaml). The docs' URLs of the processor are
resolved too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S_DIR = ROOT / "deploy" / "k8s"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
INGEST_PATHS = ("/", "/events", "/api/v1.0/feedback")


def _documents() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                out.append((path.name, doc))
    return out


def _kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in _documents() if doc["kind"] == kind]


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: str(item["value"]) for item in container.get("env", [])}


def _processors() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(Deployment, its feedback-stream container) of every processor."""
    for deployment in _kind("Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            if container["image"].startswith("feedback-stream:"):
                yield deployment, container


def _selected_pods(service: dict[str, Any]) -> list[dict[str, Any]]:
    """The Deployments whose pods a Service selects."""
    selector = service["spec"]["selector"].items()
    return [
        deployment
        for deployment in _kind("Deployment")
        if deployment["metadata"]["namespace"] == service["metadata"]["namespace"]
        and selector <= deployment["spec"]["template"]["metadata"]["labels"].items()
    ]


def _resolve(host: str, port: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (Deployment, container) listening at ``host:port`` through a Service."""
    match = re.fullmatch(r"([a-z0-9-]+)\.([a-z0-9-]+)\.svc(\.cluster\.local)?", host)
    assert match, f"{host}: not a Service address (NAME.NAMESPACE.svc.cluster.local)"
    name, namespace = match.group(1), match.group(2)
    (service,) = [
        s
        for s in _kind("Service")
        if (s["metadata"]["name"], s["metadata"]["namespace"]) == (name, namespace)
    ]
    ports = [p for p in service["spec"]["ports"] if p["port"] == port]
    assert ports, f"Service {name} has no port {port}: {service['spec']['ports']}"
    target = ports[0]["targetPort"]
    (deployment,) = _selected_pods(service)
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        for container_port in container.get("ports", []):
            if target in (container_port["name"], container_port["containerPort"]):
                return deployment, container
    raise AssertionError(f"Service {name} port {port} targets {target!r}: no container has it")


def _resolve_url(url: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    parts = urlsplit(url)
    assert parts.scheme == "http", url
    assert parts.hostname is not None, url
    deployment, container = _resolve(parts.hostname, parts.port or 80)
    return deployment, container, parts.path or "/"


def _assert_ingest(container: dict[str, Any], path: str, where: str) -> None:
    assert container["image"].startswith("feedback-stream:"), f"{where} reaches {container}"
    env = _env(container)
    assert env.get("FEEDBACK_STREAM_HTTP_INGEST", "true") == "true", f"{where}: ingest is off"
    assert path in INGEST_PATHS, f"{where}: path {path}"
    # Ingest listens on its own port when FEEDBACK_STREAM_INGEST_PORT is set.
    name = "ingest" if "FEEDBACK_STREAM_INGEST_PORT" in env else "http"
    listening = int(env.get("FEEDBACK_STREAM_INGEST_PORT") or env["FEEDBACK_STREAM_HTTP_PORT"])
    assert {p["containerPort"] for p in container["ports"] if p["name"] == name} == {listening}


def test_every_pattern_is_shipped() -> None:
    names = {name for name, _ in _documents()}
    assert {
        "feedback-stream.yaml",
        "knative-trigger.yaml",
        "sidecar.yaml",
        "kafka-consumer.yaml",
        "seldondeployment.yaml",
    } <= names


def test_each_service_selects_the_pods_of_one_deployment() -> None:
    for service in _kind("Service"):
        assert len(_selected_pods(service)) == 1, service["metadata"]["name"]


@pytest.mark.parametrize("trigger", _kind("Trigger"), ids=lambda t: str(t["metadata"]["name"]))
def test_triggers_deliver_to_a_listening_port(trigger: dict[str, Any]) -> None:
    subscriber = trigger["spec"]["subscriber"]
    namespace = trigger["metadata"]["namespace"]
    ref = subscriber.get("ref")
    if ref is not None:
        assert ref["kind"] == "Service"
        host = f"{ref['name']}.{ref.get('namespace', namespace)}.svc.cluster.local"
        # Knative addresses a Service at port 80; `uri` is then a path.
        url = f"http://{host}{subscriber.get('uri', '/')}"
    else:
        url = subscriber["uri"]
    deployment, container, path = _resolve_url(url)
    if container["image"].startswith("feedback-stream:"):
        _assert_ingest(container, path, trigger["metadata"]["name"])
    else:  # the request logger's own trigger
        assert deployment["metadata"]["name"] == "seldon-request-logger"


def _predictors() -> Iterator[tuple[str, dict[str, Any]]]:
    for sdep in _kind("SeldonDeployment"):
        for predictor in sdep["spec"]["predictors"]:
            yield f"{sdep['metadata']['name']}/{predictor['name']}", predictor


def _graph_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("children", []):
        yield from _graph_nodes(child)


def test_seldon_deployments_log_every_predictor_with_a_shadow() -> None:
    deployments = _kind("SeldonDeployment")
    assert deployments
    for sdep in deployments:
        predictors = sdep["spec"]["predictors"]
        assert [p.get("shadow", False) for p in predictors].count(True) == 1
        for predictor in predictors:
            for node in _graph_nodes(predictor["graph"]):
                assert node["logger"]["mode"] == "all", node["name"]


@pytest.mark.parametrize(("where", "predictor"), list(_predictors()), ids=lambda v: str(v)[:40])
def test_seldon_loggers_reach_a_processor(where: str, predictor: dict[str, Any]) -> None:
    env = {item["name"]: item["value"] for item in predictor.get("svcOrchSpec", {}).get("env", [])}
    if "LOGGER_KAFKA_BROKER" in env:
        readers = [
            c
            for _, c in _processors()
            if _env(c).get("FEEDBACK_STREAM_KAFKA_BOOTSTRAP_SERVERS") == env["LOGGER_KAFKA_BROKER"]
        ]
        assert readers, f"{where}: no processor reads {env['LOGGER_KAFKA_BROKER']}"
        topics = {
            topic
            for reader in readers
            for topic in _env(reader).get("FEEDBACK_STREAM_KAFKA_TOPICS", "seldon").split(",")
        }
        assert env["LOGGER_KAFKA_TOPIC"] in topics
        return
    for node in _graph_nodes(predictor["graph"]):
        _, container, path = _resolve_url(node["logger"]["url"])
        _assert_ingest(container, path, where)


def test_replicas_are_safe_for_their_source() -> None:
    for deployment, container in _processors():
        env = _env(container)
        name = deployment["metadata"]["name"]
        if env.get("FEEDBACK_STREAM_HTTP_INGEST", "true") == "true":
            # A puid's HTTP events may reach any pod: one pod holds the whole join state.
            assert deployment["spec"]["replicas"] == 1, name
        elif deployment["spec"]["replicas"] > 1:
            keyed = env.get("FEEDBACK_STREAM_REPARTITION_TOPIC") or (
                env.get("FEEDBACK_STREAM_ROUTE") == "partition"
            )
            assert keyed, f"{name}: several replicas on unkeyed records need the repartition step"


def test_the_service_monitor_scrapes_every_processor_service() -> None:
    (monitor,) = _kind("ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"].items()
    for service in _kind("Service"):
        (deployment,) = _selected_pods(service)
        containers = deployment["spec"]["template"]["spec"]["containers"]
        if all(c["image"].startswith("feedback-stream:") for c in containers):
            assert selector <= service["metadata"]["labels"].items(), service["metadata"]["name"]
            assert "http" in {p["name"] for p in service["spec"]["ports"]}


_PROCESSOR_URL = re.compile(
    r"http://(?:feedback-stream|seldon-request-logger)[a-z0-9.:-]*[^\s`'\")]*"
)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_urls_of_the_processor_in_the_docs_resolve(doc: Path) -> None:
    for url in _PROCESSOR_URL.findall(doc.read_text(encoding="utf-8")):
        _, container, path = _resolve_url(url.rstrip(".,"))
        _assert_ingest(container, path, f"{doc.name}: {url}")
