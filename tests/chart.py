"""Rendering the Helm chart in helm/kambda offline, and reading the objects it makes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

CHART = Path(__file__).resolve().parent.parent / "helm" / "kambda"
RELEASE, NAMESPACE = "kambda", "kambda"
EXTERNAL_NATS = "nats://nats.messaging.svc.cluster.local:4222"

VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "nats-cluster": {"nats": {"replicas": 3}},
    "external-nats": {"nats": {"external": {"url": EXTERNAL_NATS}}},
    "ingress": {
        "gateway": {"ingress": {"enabled": True, "className": "nginx", "host": "lambda.example.org",
                                "tls": {"enabled": True}},
                    "autoscaling": {"enabled": True, "maxReplicas": 6}},
        "worker": {"autoscaling": {"enabled": True, "maxReplicas": 8}},
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
        "dashboard": {"enabled": True},
    },
    "functions-namespace": {
        "functions": {"namespace": "kambda-fn", "networkPolicy": {"extraEgressCIDRs": ["10.20.0.0/16"]}},
        "imagePullSecrets": [{"name": "registry"}],
        "nodeSelector": {"kubernetes.io/arch": "amd64"},
        "gateway": {"extraEnv": {"KAMBDA_QUEUE_TIMEOUT": "45"}},
    },
}


def render(values: dict[str, Any] | None = None, release: str = RELEASE) -> dict[str, str]:
    """Template path -> rendered text, as `helm install --dry-run` would make it."""
    with helm.Chart.load(CHART) as chart:
        return chart.render(values, name=release, namespace=NAMESPACE, is_install=True)


def objects_of(rendered: dict[str, str]) -> list[dict[str, Any]]:
    found = []
    for path, text in rendered.items():
        if path.endswith(".yaml"):
            found.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return found


def one(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} rendered"
    return matches[0]


def kinds(objs: list[dict[str, Any]]) -> set[str]:
    return {o["kind"] for o in objs}


def workloads(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] in ("Deployment", "StatefulSet")]


def container(obj: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in obj["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    return found


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels and the In/NotIn/Exists operators)."""
    if not all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        value, op = labels.get(expr["key"]), expr["operator"]
        if (op == "In" and value not in expr["values"]) or (op == "NotIn" and value in expr["values"]):
            return False
        if (op == "Exists" and value is None) or (op == "DoesNotExist" and value is not None):
            return False
    return True


def pod_labels(obj: dict[str, Any]) -> dict[str, str]:
    return obj["spec"]["template"]["metadata"]["labels"]
