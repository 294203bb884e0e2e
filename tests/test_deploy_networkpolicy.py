"""The NetworkPolicy admits only the senders to ingest and only readers to the read side.

Checked offline against the other manifests of the pattern it guards
(feedback-stream.yaml; every manifest's schema is checked in
test_deploy_static.py): the policy selects that Deployment's pods only, names
ports its container declares, and the port ingest is served on is the one
only the broker, the request logger and Seldon executors may reach.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

K8S = Path(__file__).resolve().parents[1] / "deploy" / "k8s"


def _documents(name: str | None = None) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if name is None or path.name == name:
            docs.extend(d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d)
    return docs


def _one(kind: str, name: str | None = None) -> dict[str, Any]:
    (doc,) = [d for d in _documents(name) if d["kind"] == kind]
    return doc


def test_the_policy_selects_the_http_processor_only() -> None:
    policy = _one("NetworkPolicy")
    selector = policy["spec"]["podSelector"]["matchLabels"].items()
    selected = [
        d["metadata"]["name"]
        for d in _documents()
        if d["kind"] == "Deployment"
        and selector <= d["spec"]["template"]["metadata"]["labels"].items()
    ]
    assert selected == ["feedback-stream"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]


def test_ingest_is_admitted_from_the_senders_only() -> None:
    policy = _one("NetworkPolicy")
    deployment = _one("Deployment", "feedback-stream.yaml")
    assert policy["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["ingest"] == int(env["FEEDBACK_STREAM_INGEST_PORT"])
    assert ports["http"] == int(env["FEEDBACK_STREAM_HTTP_PORT"])
    assert ports["ingest"] != ports["http"]
    rules = {
        tuple(p["port"] for p in rule["ports"]): rule["from"] for rule in policy["spec"]["ingress"]
    }
    # Every rule names its port: nothing is open on every port.
    assert set(rules) == {("ingest",), ("http",)}
    senders = rules[("ingest",)]
    namespaces = [
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for peer in senders
        if peer.get("namespaceSelector", {}).get("matchLabels")
    ]
    assert namespaces == ["knative-eventing"]
    # Any namespace only together with a pod selector that picks Seldon executors.
    for peer in senders:
        if peer.get("namespaceSelector") == {}:
            assert peer["podSelector"]["matchExpressions"] == [
                {"key": "seldon-deployment-id", "operator": "Exists"}
            ]
        if "podSelector" in peer:
            assert peer["podSelector"], "an empty pod selector would admit every pod"
    loggers = [
        p["podSelector"]["matchLabels"]
        for p in senders
        if "matchLabels" in p.get("podSelector", {})
    ]
    assert loggers == [{"app.kubernetes.io/name": "seldon-request-logger"}]


def test_events_reach_the_ingest_port_and_scrapes_the_read_port() -> None:
    service = _one("Service", "feedback-stream.yaml")
    by_port = {p["port"]: p["targetPort"] for p in service["spec"]["ports"]}
    assert by_port[80] == "ingest"  # the Trigger's ref and the loggers' URLs use port 80
    monitor = _one("ServiceMonitor")
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["http"]
