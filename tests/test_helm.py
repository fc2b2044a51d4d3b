"""The Helm chart in helm/kambda, rendered by Helm's own engine (helm-python-sdk, no binary, no cluster).

Each variant is rendered, linted and every object validated against the Kubernetes schemas of the
oldest and newest versions kubernetes-validate ships from 1.30 on; then the tests check what the
objects mean: pod security on every pod, RBAC that is exactly what the controller uses, selectors
that select the pods they are meant for, a NATS configuration the real nats-server accepts and that
carries a 6 MB payload, a credential that is random per install.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import nats
import nkeys
import pytest
import yaml
from packaging.version import Version

from controller.settings import ControllerSettings
from gateway.settings import GatewaySettings
from kambda.bus import callout, identities, natsserver
from tests.chart import (
    CHART,
    EXTERNAL_NATS,
    NAMESPACE,
    VARIANTS,
    container,
    env_of,
    kinds,
    objects_of,
    one,
    pod_labels,
    render,
    selects,
    workloads,
)
from tests.conftest import REPO, free_port, wait_for
from worker.settings import WorkerSettings

#: What the NATS pod's environment holds: its name, and the callout's issuer (from the callout key Secret).
NATS_ENV = {"SERVER_NAME": "kambda-nats-0",
            "KAMBDA_CALLOUT_ISSUER": nkeys.from_seed(bytearray(callout.new_account_seed())).public_key.decode()}
KUBE_VERSIONS = sorted({"1.30.0", kubernetes_validate.latest_version()}, key=Version)
CRDS = {"ServiceMonitor", "PodMonitor"}  # not core Kubernetes: no schema to validate against, checked by hand below


@pytest.fixture(scope="module")
def rendered() -> Iterator[dict[str, list[dict[str, Any]]]]:
    yield {name: objects_of(render(values)) for name, values in VARIANTS.items()}


# --- lint, schemas ---------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_chart_lints_clean_in_strict_mode(variant: str) -> None:
    report = helm.lint(CHART, VARIANTS[variant], strict=True, namespace=NAMESPACE, kube_version="v1.30.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_object_is_valid_kubernetes(rendered, variant: str, kube_version: str) -> None:
    objs = rendered[variant]
    assert len(objs) >= 15
    for obj in objs:
        if obj["kind"] in CRDS:
            continue
        kubernetes_validate.validate(obj, kube_version, strict=True)  # raises naming the bad field
        assert obj["metadata"]["namespace"] in (NAMESPACE, "kambda-fn"), obj["metadata"]["name"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "kambda"


def test_no_cluster_scoped_objects(rendered) -> None:
    for objs in rendered.values():
        assert not kinds(objs) & {"ClusterRole", "ClusterRoleBinding", "Namespace", "CustomResourceDefinition"}


def test_names_stay_valid_for_the_longest_release_name() -> None:
    release = "a-very-long-release-name-for-kambda-in-production-x"
    helm.validate_release_name(release)
    objs = objects_of(render(VARIANTS["nats-cluster"], release=release))
    for obj in objs:
        name = obj["metadata"]["name"]
        limit = 52 if obj["kind"] == "StatefulSet" else 63  # a StatefulSet's pods get a revision-hash label
        assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= limit, name
        assert all(len(value) <= 63 for value in obj["metadata"]["labels"].values())
    lease = env_of(container(one(objs, "Deployment", name_of(objs, "Deployment", "controller")), "controller"))
    assert len(lease["KAMBDA_LEADER_LEASE_NAME"]) <= 63


def name_of(objs: list[dict[str, Any]], kind: str, component: str) -> str:
    labelled = "app.kubernetes.io/component"
    (obj,) = [o for o in objs if o["kind"] == kind and o["metadata"]["labels"][labelled] == component]
    return obj["metadata"]["name"]


@pytest.mark.parametrize("typo", [
    {"gateway": {"replicaz": 3}},
    {"natz": {"replicas": 3}},
    {"nats": {"jetstream": {"storage": {"sise": "20Gi"}}}},
    {"functions": {"pool": {"size": 2, "runtimes": ["python3.12"], "runtime": "python3.11"}}},
    {"gateway": {"ingress": {"enabled": True, "host": "x.example.org", "tls": {"enable": True}}}},
])
def test_a_typo_in_a_key_is_rejected(typo: dict[str, Any]) -> None:
    with helm.Chart.load(CHART) as chart:
        with pytest.raises(helm.HelmValuesError, match="additional properties"):
            chart.validate_schema(typo)
    with pytest.raises(helm.HelmError, match="additional properties"):
        render(typo)
    assert helm.lint(CHART, typo)["errors"]


@pytest.mark.parametrize("bad", [
    {"nats": {"replicas": 2}},  # a JetStream cluster needs an odd quorum: 1 or 3
    {"nats": {"maxPayloadMB": 1}},  # too small for a 6 MB payload
    {"nats": {"external": {"url": "nats.example.org:4222"}}},
    {"accountId": "123"},
    {"gateway": {"extraEnv": {"not a name": "x"}}},
])
def test_out_of_range_values_are_rejected(bad: dict[str, Any]) -> None:
    with helm.Chart.load(CHART) as chart:
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema(bad)


@pytest.mark.parametrize("part", ["gateway", "worker"])
def test_autoscaling_bounds_must_be_ordered(part: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=f"minReplicas=5 is above {part}.autoscaling.maxReplicas=3"):
        render({part: {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 3}}})


def test_default_values_file_meets_the_schema() -> None:
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(yaml.safe_load((CHART / "values.yaml").read_text()))
        assert chart.schema is not None and chart.schema["additionalProperties"] is False


def test_every_object_in_the_schema_is_closed() -> None:
    """additionalProperties: false throughout, except free maps (labels, env) and Kubernetes types."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    open_defs = {"stringMap", "resourceList", "kubeObject", "envMap"}

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False, where
            for key, value in node.items():
                if not (where == "$defs" and key in open_defs):
                    walk(value, key)
        elif isinstance(node, list):
            for item in node:
                walk(item, where)

    walk(schema, "")


# --- pods -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_pod_is_locked_down(rendered, variant: str) -> None:
    pods = workloads(rendered[variant])
    assert len(pods) == (3 if variant == "external-nats" else 4)  # gateway, controller, worker (, NATS)
    for obj in pods:
        spec = obj["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not spec.get("hostNetwork") and not spec.get("hostPID")
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
            assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
            assert c["resources"]["limits"]["memory"]
            assert "readinessProbe" in c and "livenessProbe" in c
        # Only the controller talks to the Kubernetes API.
        assert (spec.get("automountServiceAccountToken", True) is True) == ("serviceAccountName" in spec)


def test_function_pods_get_the_same_security_through_the_controller(rendered) -> None:
    objs = rendered["functions-namespace"]
    env = env_of(container(one(objs, "Deployment", "kambda-controller"), "controller"))
    template = json.loads(env["KAMBDA_K8S_POD_TEMPLATE"])
    gateway = one(objs, "Deployment", "kambda-gateway")["spec"]["template"]["spec"]
    assert template["securityContext"] == gateway["securityContext"]
    (invoker,) = template["containers"]
    assert invoker["securityContext"] == gateway["containers"][0]["securityContext"]
    assert invoker["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}}
    assert template["imagePullSecrets"] == [{"name": "registry"}]
    assert template["nodeSelector"] == {"kubernetes.io/arch": "amd64"}
    assert gateway["imagePullSecrets"] == [{"name": "registry"}]
    # The controller brings the volumes (an emptyDir at /tmp); a second mount there would be refused.
    assert "volumes" not in template and "volumeMounts" not in invoker
    # Completed with what the controller adds, the template is a valid Pod.
    image = env["KAMBDA_K8S_INVOKER_IMAGE"]
    writable = {"volumes": [{"name": "tmp", "emptyDir": {}}]}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "fn-hello-abc12", "namespace": "kambda-fn"},
           "spec": {**template, **writable, "containers": [{
               **invoker, "image": image, "command": ["kambda-invoker"],
               "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]}]}}
    for kube_version in KUBE_VERSIONS:
        kubernetes_validate.validate(pod, kube_version, strict=True)


def test_gateway_contract(rendered) -> None:
    objs = rendered["default"]
    gateway = one(objs, "Deployment", "kambda-gateway")
    c = container(gateway, "gateway")
    assert c["command"] == ["kambda-gateway"]
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    env = env_of(c)
    assert env["KAMBDA_HOST"] == "0.0.0.0" and env["KAMBDA_PORT"] == "8080"
    assert env["KAMBDA_NATS_URL"] == "nats://kambda-nats:4222"
    assert env["KAMBDA_CONTROLLER"] == "kambda-controller:50051"
    assert env["KAMBDA_CREDENTIALS_FILE"] == "/etc/kambda/auth/credentials.json"
    assert env["KAMBDA_METRICS_PUBLIC"] == "true"  # the scraper cannot sign
    assert (env["KAMBDA_REGION"], env["KAMBDA_ACCOUNT_ID"]) == ("us-east-1", "000000000000")
    assert c["readinessProbe"]["httpGet"] == {"path": "/_kambda/health", "port": "http"}
    annotations = gateway["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
    assert annotations["prometheus.io/port"] == "8080"
    # The credential directory is mounted whole (a subPath mount would never see a rotated Secret).
    (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == "/etc/kambda/auth"]
    assert "subPath" not in mount and mount["readOnly"] is True
    (volume,) = [v for v in gateway["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == "kambda-credentials"
    one(objs, "Secret", "kambda-credentials")
    assert env_of(container(one(rendered["functions-namespace"], "Deployment", "kambda-gateway"),
                            "gateway"))["KAMBDA_QUEUE_TIMEOUT"] == "45"


def test_gateway_settings_read_the_environment_the_chart_gives(rendered) -> None:
    env = env_of(container(one(rendered["functions-namespace"], "Deployment", "kambda-gateway"), "gateway"))
    settings = GatewaySettings.from_env({k: v for k, v in env.items() if isinstance(v, str)})
    assert (settings.host, settings.port, settings.queue_timeout) == ("0.0.0.0", 8080, 45.0)
    assert (settings.controller, settings.nats_url) == ("kambda-controller:50051", "nats://kambda-nats:4222")


def test_controller_contract(rendered) -> None:
    for variant, functions_ns in (("default", NAMESPACE), ("functions-namespace", "kambda-fn")):
        controller = one(rendered[variant], "Deployment", "kambda-controller")
        assert controller["spec"]["replicas"] == 2
        c = container(controller, "controller")
        assert c["command"] == ["kambda-controller"]
        env = env_of(c)
        assert env["KAMBDA_ORCHESTRATOR"] == "kubernetes"
        assert env["KAMBDA_CONTROLLER_LISTEN"] == "0.0.0.0:50051"
        assert env["KAMBDA_K8S_NAMESPACE"] == functions_ns
        assert env["KAMBDA_K8S_INVOKER_IMAGE"] == c["image"]
        assert (env["KAMBDA_K8S_POOL_SIZE"], env["KAMBDA_K8S_POOL_RUNTIMES"]) == ("2", "python3.12")
        assert env["KAMBDA_K8S_NATS_URL"] == "nats://kambda-nats.kambda.svc:4222"
        assert env["KAMBDA_LEADER_ELECTION"] == "true"
        assert env["KAMBDA_LEADER_LEASE_NAME"] == "kambda-controller"
        assert env["KAMBDA_POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        assert env["KAMBDA_POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
        assert c["readinessProbe"]["tcpSocket"]["port"] == "grpc"
        assert c["ports"][0] == {"name": "grpc", "containerPort": 50051, "protocol": "TCP"}
        assert controller["spec"]["template"]["spec"]["serviceAccountName"] == "kambda-controller"


def test_controller_settings_read_the_environment_the_chart_gives(rendered) -> None:
    env = env_of(container(one(rendered["functions-namespace"], "Deployment", "kambda-controller"), "controller"))
    downward = {"KAMBDA_POD_NAME": "kambda-controller-abc12", "KAMBDA_POD_NAMESPACE": "kambda"}  # the kubelet's part
    settings = ControllerSettings.from_env({**{k: v for k, v in env.items() if isinstance(v, str)}, **downward})
    k8s = settings.kubernetes
    assert (settings.orchestrator, settings.listen) == ("kubernetes", "0.0.0.0:50051")
    assert (k8s.namespace, k8s.pool_size, k8s.pool_runtimes) == ("kambda-fn", 2, ("python3.12",))
    assert (k8s.leader_election, k8s.lease_name, k8s.pod_name) == (True, "kambda-controller", "kambda-controller-abc12")
    assert k8s.nats_url == env["KAMBDA_K8S_NATS_URL"] and k8s.invoker_image == env["KAMBDA_K8S_INVOKER_IMAGE"]
    assert k8s.pod_template == json.loads(env["KAMBDA_K8S_POD_TEMPLATE"])


def test_worker_contract(rendered) -> None:
    objs = rendered["default"]
    worker = one(objs, "Deployment", "kambda-worker")
    assert worker["spec"]["replicas"] == 2
    c = container(worker, "worker")
    assert c["command"] == ["kambda-worker"]
    assert c["ports"] == [{"name": "metrics", "containerPort": 9102, "protocol": "TCP"}]
    env = env_of(c)
    assert env["KAMBDA_NATS_URL"] == "nats://kambda-nats:4222"
    assert env["KAMBDA_CONTROLLER"] == "kambda-controller:50051"
    assert env["KAMBDA_WORKER_LISTEN"] == "0.0.0.0:9102"
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    annotations = worker["spec"]["template"]["metadata"]["annotations"]
    assert (annotations["prometheus.io/scrape"], annotations["prometheus.io/port"]) == ("true", "9102")
    assert not worker["spec"]["template"]["spec"]["automountServiceAccountToken"]  # it never calls the API
    settings = WorkerSettings.from_env({k: v for k, v in env.items() if isinstance(v, str)})
    assert (settings.listen, settings.controller, settings.concurrency) == ("0.0.0.0:9102", "kambda-controller:50051",
                                                                           64)
    assert settings.stream_replicas == 1
    cluster = env_of(container(one(rendered["nats-cluster"], "Deployment", "kambda-worker"), "worker"))
    assert WorkerSettings.from_env(cluster).stream_replicas == 3  # as the controller's

    scaled = rendered["ingress"]
    hpa = one(scaled, "HorizontalPodAutoscaler", "kambda-worker")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "kambda-worker"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 8)
    assert "replicas" not in one(scaled, "Deployment", "kambda-worker")["spec"]  # the HPA owns it
    three = objects_of(render({"worker": {"replicas": 3, "concurrency": 16}}))
    deployment = one(three, "Deployment", "kambda-worker")
    assert deployment["spec"]["replicas"] == 3
    assert env_of(container(deployment, "worker"))["KAMBDA_WORKER_CONCURRENCY"] == "16"


def test_streams_are_replicated_on_every_bundled_nats_server(rendered) -> None:
    def replicas(objs: list[dict[str, Any]]) -> int:
        env = env_of(container(one(objs, "Deployment", "kambda-controller"), "controller"))
        downward = {"KAMBDA_POD_NAME": "kambda-controller-abc12", "KAMBDA_POD_NAMESPACE": "kambda"}
        given = {k: v for k, v in env.items() if isinstance(v, str)}
        return ControllerSettings.from_env({**given, **downward}).stream_replicas

    assert replicas(rendered["default"]) == 1
    assert replicas(rendered["nats-cluster"]) == 3
    assert replicas(rendered["external-nats"]) == 1  # one cannot know how many servers it has...
    external_cluster = {"nats": {"external": {"url": EXTERNAL_NATS}, "streamReplicas": 3}}
    assert replicas(objects_of(render(external_cluster))) == 3  # ...so one says


def test_controller_service_reaches_only_the_leader(rendered) -> None:
    objs = rendered["default"]
    service = one(objs, "Service", "kambda-controller")
    labels = pod_labels(one(objs, "Deployment", "kambda-controller"))
    assert service["spec"]["selector"]["kambda.dev/role"] == "leader"
    assert not selects({"matchLabels": service["spec"]["selector"]}, labels)  # no pod is leader by itself
    assert selects({"matchLabels": service["spec"]["selector"]}, {**labels, "kambda.dev/role": "leader"})


@pytest.mark.parametrize("variant", VARIANTS)
def test_services_and_budgets_select_their_pods(rendered, variant: str) -> None:
    objs = rendered[variant]
    pods = {o["metadata"]["name"]: pod_labels(o) for o in workloads(objs)}
    for service in (o for o in objs if o["kind"] == "Service" and o["metadata"]["name"] != "kambda-controller"):
        chosen = [n for n, labels in pods.items() if selects({"matchLabels": service["spec"]["selector"]}, labels)]
        assert len(chosen) == 1, service["metadata"]["name"]
        ports = {p["name"] for c in objs_containers(objs, chosen[0]) for p in c.get("ports", [])}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
    budgets = [o for o in objs if o["kind"] == "PodDisruptionBudget"]
    assert len(budgets) == len(pods)
    for pdb in budgets:
        chosen = [n for n, labels in pods.items() if selects(pdb["spec"]["selector"], labels)]
        assert chosen == [pdb["metadata"]["name"]]
        assert pdb["spec"]["maxUnavailable"] == 1


def objs_containers(objs: list[dict[str, Any]], workload: str) -> list[dict[str, Any]]:
    (obj,) = [o for o in workloads(objs) if o["metadata"]["name"] == workload]
    return obj["spec"]["template"]["spec"]["containers"]


# --- RBAC -----------------------------------------------------------------------------------------

FUNCTIONS_RULES = {
    ("apps", "deployments", verb) for verb in ("get", "list", "watch", "create", "update", "patch", "delete")
} | {("apps", "deployments/scale", verb) for verb in ("get", "update", "patch")} | {
    ("", "pods", verb) for verb in ("get", "list", "watch", "patch", "delete")}
LEADER_RULES = {("coordination.k8s.io", "leases", verb) for verb in ("get", "create", "update")} | {
    ("", "pods", "get"), ("", "pods", "patch")}


def granted(objs: list[dict[str, Any]], account: str) -> dict[str, set[tuple[str, str, str]]]:
    """Namespace -> (apiGroup, resource, verb) the service account may use, through RoleBindings."""
    roles = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objs if o["kind"] == "Role"}
    result: dict[str, set[tuple[str, str, str]]] = {}
    for binding in (o for o in objs if o["kind"] == "RoleBinding"):
        if not any(s["kind"] == "ServiceAccount" and s["name"] == account and s["namespace"] == NAMESPACE
                   for s in binding["subjects"]):
            continue
        namespace = binding["metadata"]["namespace"]
        role = roles[(namespace, binding["roleRef"]["name"])]
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
            result.setdefault(namespace, set()).update(
                (g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"])
    return result


def test_controller_role_is_exactly_what_it_uses(rendered) -> None:
    split = granted(rendered["functions-namespace"], "kambda-controller")
    assert split == {"kambda-fn": FUNCTIONS_RULES, NAMESPACE: LEADER_RULES}
    same = granted(rendered["default"], "kambda-controller")
    assert same == {NAMESPACE: FUNCTIONS_RULES | LEADER_RULES}
    # The Lease may be read and renewed by name only; creating cannot be limited by name in RBAC.
    leader = one(rendered["default"], "Role", "kambda-controller-leader")
    (by_name,) = [r for r in leader["rules"] if "resourceNames" in r]
    assert by_name["resourceNames"] == ["kambda-controller"] and sorted(by_name["verbs"]) == ["get", "update"]


# --- network policies ------------------------------------------------------------------------------


def policy_ports(rule: dict[str, Any]) -> set[tuple[int, str]]:
    return {(p["port"], p.get("protocol", "TCP")) for p in rule.get("ports", [])}


def test_network_policies(rendered) -> None:
    objs = rendered["functions-namespace"]
    labels = {o["metadata"]["name"]: pod_labels(o) for o in workloads(objs)}
    policies = {o["metadata"]["name"]: o["spec"] for o in objs if o["kind"] == "NetworkPolicy"}
    assert set(policies) == {"kambda-gateway", "kambda-controller", "kambda-worker", "kambda-nats",
                             "kambda-functions"}

    gateway = policies["kambda-gateway"]
    assert selects(gateway["podSelector"], labels["kambda-gateway"])
    (rule,) = gateway["ingress"]
    assert "from" not in rule and policy_ports(rule) == {(8080, "TCP")}

    controller = policies["kambda-controller"]
    assert selects(controller["podSelector"], labels["kambda-controller"])
    (rule,) = controller["ingress"]
    assert policy_ports(rule) == {(50051, "TCP")}
    admitted = sorted(n for n, pod in labels.items() if any(selects(p["podSelector"], pod) for p in rule["from"]))
    assert admitted == ["kambda-gateway", "kambda-worker"]  # the workers call Activate

    worker = policies["kambda-worker"]
    assert selects(worker["podSelector"], labels["kambda-worker"])
    (rule,) = worker["ingress"]
    assert "from" not in rule and policy_ports(rule) == {(9102, "TCP")}  # its metrics, for any scraper

    nats_policy = policies["kambda-nats"]
    assert selects(nats_policy["podSelector"], labels["kambda-nats"])
    clients, routes = nats_policy["ingress"]
    assert policy_ports(clients) == {(4222, "TCP")} and policy_ports(routes) == {(6222, "TCP")}
    assert all(selects(clients["from"][0]["podSelector"], pod) for pod in labels.values())  # the workers too
    function_pod = {"app.kubernetes.io/part-of": "kambda", "kambda.dev/role": "function"}
    (from_functions,) = [p for p in clients["from"] if "namespaceSelector" in p]
    assert from_functions["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "kambda-fn"}
    assert selects(from_functions["podSelector"], function_pod)
    assert [n for n, pod in labels.items() if selects(routes["from"][0]["podSelector"], pod)] == ["kambda-nats"]

    functions = one(objs, "NetworkPolicy", "kambda-functions")
    assert functions["metadata"]["namespace"] == "kambda-fn"
    spec = functions["spec"]
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"] and not spec.get("ingress")
    assert selects(spec["podSelector"], function_pod)
    assert not any(selects(spec["podSelector"], pod) for pod in labels.values())
    to_nats, dns, to_gateway, extra = spec["egress"]
    assert policy_ports(to_nats) == {(4222, "TCP")}
    assert to_nats["to"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": NAMESPACE}
    assert selects(to_nats["to"][0]["podSelector"], labels["kambda-nats"])
    assert policy_ports(dns) == {(53, "UDP"), (53, "TCP")}
    assert policy_ports(to_gateway) == {(8080, "TCP")}
    assert to_gateway["to"][0]["namespaceSelector"] == to_nats["to"][0]["namespaceSelector"]
    assert [n for n, pod in labels.items() if selects(to_gateway["to"][0]["podSelector"], pod)] == ["kambda-gateway"]
    assert extra == {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}]}

    default_functions = one(rendered["default"], "NetworkPolicy", "kambda-functions")["spec"]["egress"]
    assert len(default_functions) == 3  # NATS, DNS and the gateway only, unless asked
    external = one(rendered["external-nats"], "NetworkPolicy", "kambda-functions")["spec"]["egress"]
    assert [policy_ports(r) for r in external] == [{(53, "UDP"), (53, "TCP")}, {(8080, "TCP")}]
    closed = objects_of(render({"functions": {"networkPolicy": {"allowGateway": False}}}))
    assert [policy_ports(r) for r in one(closed, "NetworkPolicy", "kambda-functions")["spec"]["egress"]] == [
        {(4222, "TCP")}, {(53, "UDP"), (53, "TCP")}]


# --- NATS -----------------------------------------------------------------------------------------


def nats_conf(objs: list[dict[str, Any]]) -> str:
    return one(objs, "ConfigMap", "kambda-nats")["data"]["nats.conf"]


def nats_secret(objs: list[dict[str, Any]], key: str) -> str:
    return base64.b64decode(one(objs, "Secret", "kambda-nats-credentials")["data"][key]).decode()


def write_nats_conf(objs: list[dict[str, Any]], folder: Path, text: str | None = None) -> Path:
    """nats.conf and the auth.conf it includes, side by side as the pod's projected volume has them."""
    (folder / "auth.conf").write_text(nats_secret(objs, "auth.conf"))
    conf = folder / "nats.conf"
    conf.write_text(nats_conf(objs) if text is None else text)
    return conf


def test_bundled_nats_statefulset(rendered) -> None:
    for variant, replicas in (("default", 1), ("nats-cluster", 3)):
        objs = rendered[variant]
        sts = one(objs, "StatefulSet", "kambda-nats")
        assert sts["spec"]["replicas"] == replicas
        assert sts["spec"]["serviceName"] == "kambda-nats-headless"
        one(objs, "Service", "kambda-nats-headless")
        (claim,) = sts["spec"]["volumeClaimTemplates"]
        assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
        c = container(sts, "nats")
        assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in c["volumeMounts"]
        assert re.search(r"^\s*store_dir: /data$", nats_conf(objs), re.M)
        routes = re.findall(r"nats://([\w.-]+):6222", nats_conf(objs))
        expected = [f"kambda-nats-{i}.kambda-nats-headless.{NAMESPACE}.svc" for i in range(replicas)]
        assert routes == (expected if replicas > 1 else [])


def test_nats_max_payload_carries_a_6mb_payload(rendered) -> None:
    for variant in ("default", "nats-cluster"):
        (value,) = re.findall(r"^max_payload: (\d+)$", nats_conf(rendered[variant]), re.M)
        assert int(value) >= 8 * 1024 * 1024


@pytest.mark.parametrize("variant", ["default", "nats-cluster"])
def test_real_nats_server_accepts_the_rendered_config(rendered, tmp_path: Path, variant: str) -> None:
    conf = write_nats_conf(rendered[variant], tmp_path)
    result = subprocess.run([natsserver.find_binary(), "-c", str(conf), "-t"], capture_output=True, text=True,
                            env=NATS_ENV, timeout=30)
    assert result.returncode == 0, result.stderr
    conf.write_text(nats_conf(rendered[variant]).replace("max_payload:", "max_payloadd:"))
    broken = subprocess.run([natsserver.find_binary(), "-c", str(conf), "-t"], capture_output=True, text=True,
                            env=NATS_ENV, timeout=30)
    assert broken.returncode != 0  # the check above would notice a config the server refuses


def accepting(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


async def test_real_nats_server_with_the_rendered_config_stores_a_6mb_payload(rendered, tmp_path: Path) -> None:
    objs = rendered["default"]
    conf = write_nats_conf(objs, tmp_path, nats_conf(objs).replace("store_dir: /data", f"store_dir: {tmp_path / 'js'}"))
    port, log = free_port(), tmp_path / "nats.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [natsserver.find_binary(), "-c", str(conf), "-a", "127.0.0.1", "-p", str(port), "-m", str(free_port())],
            env=NATS_ENV, stdout=out, stderr=out)
    try:
        wait_for(lambda: accepting(port) or server.poll() is not None, timeout=30, what="nats-server")
        assert server.poll() is None, log.read_text()
        url = f"nats://127.0.0.1:{port}"
        with socket.create_connection(("127.0.0.1", port), timeout=10) as anonymous:
            assert anonymous.recv(4096).startswith(b"INFO {")
            anonymous.sendall(b"CONNECT {}\r\nPING\r\n")
            assert b"Authorization Violation" in anonymous.recv(4096)
        login = json.loads(nats_secret(objs, "controller.json"))
        nc = await nats.connect(url, user=login["user"], password=login["password"])
        try:
            assert nc.max_payload >= 8 * 1024 * 1024
            js = nc.jetstream()
            await js.add_stream(name="big", subjects=["big.>"], storage="memory")
            payload = bytes(range(256)) * (6 * 1024 * 1024 // 256) + b"{}" * 2048  # 6 MB plus an envelope
            ack = await js.publish("big.one", payload)
            stored = await js.get_msg("big", ack.seq)
            assert stored.data == payload
        finally:
            await nc.close()
    finally:
        server.terminate()
        server.wait(timeout=15)


def test_chart_identities_are_the_code_s(rendered) -> None:
    shipped = json.loads((CHART / "files" / "nats-permissions.json").read_text())
    assert shipped == identities.permissions_document(), \
        "stale: python -m kambda.bus.identities > helm/kambda/files/nats-permissions.json"
    auth = nats_secret(rendered["default"], "auth.conf")
    for name, identity in identities.IDENTITIES.items():
        login = json.loads(nats_secret(rendered["default"], f"{name}.json"))
        assert login["user"] == name and login["inbox_prefix"] == identity.inbox_prefix
        assert re.fullmatch(r"[A-Za-z0-9]{40}", login["password"])
        # Pods log in through the auth callout (pod:<id>:<key>), not as a user of their own.
        assert (f'{{user: "{name}", password: "{login["password"]}"' in auth) == (name != "pod")
    assert "no_auth_user" not in auth


@pytest.mark.parametrize("variant", ["default", "functions-namespace"])
def test_each_component_mounts_only_its_own_nats_credentials(rendered, variant: str) -> None:
    objs = rendered[variant]
    for name in ("gateway", "controller", "worker"):
        deployment = one(objs, "Deployment", f"kambda-{name}")
        c = container(deployment, name)
        assert env_of(c)["KAMBDA_NATS_CREDS"] == f"/etc/kambda/nats/{name}.json"
        (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "nats-credentials"]
        # The controller also reads the pods' password: it answers their logins (the auth callout).
        files = [f"{name}.json", *(["pod.json"] if name == "controller" else [])]
        assert volume["secret"] == {"secretName": "kambda-nats-credentials",
                                    "items": [{"key": f, "path": f} for f in files]}
    namespace = "kambda-fn" if variant == "functions-namespace" else NAMESPACE
    invoker = one(objs, "Secret", "kambda-nats-invoker")
    assert invoker["metadata"]["namespace"] == namespace and set(invoker["data"]) == {"invoker.json"}
    assert json.loads(base64.b64decode(invoker["data"]["invoker.json"])) == {
        **json.loads(nats_secret(objs, "pod.json")), "bind": True}  # per-function credentials: the pods' identity
    env = env_of(container(one(objs, "Deployment", "kambda-controller"), "controller"))
    settings = ControllerSettings.from_env(env)
    assert settings.nats_creds == "/etc/kambda/nats/controller.json"
    assert settings.kubernetes.nats_creds_secret == "kambda-nats-invoker"
    volumes = one(objs, "StatefulSet", "kambda-nats")["spec"]["template"]["spec"]["volumes"]
    (config,) = [v for v in volumes if v["name"] == "config"]
    assert {"secret": {"name": "kambda-nats-credentials", "items": [{"key": "auth.conf", "path": "auth.conf"}]}} \
        in config["projected"]["sources"]
    assert re.search(r"^\s*include auth.conf$", nats_conf(objs), re.M)


def test_upgrades_keep_the_nats_passwords_through_lookup() -> None:
    template = (CHART / "templates" / "nats-credentials.yaml").read_text()
    assert 'lookup "v1" "Secret" .Release.Namespace $name' in template
    assert template.index("lookup") < template.index("randAlphaNum")
    assert "b64dec | fromJson).password" in template


def test_external_nats_replaces_the_bundled_one(rendered) -> None:
    objs = rendered["external-nats"]
    assert not [o for o in objs if o["metadata"]["labels"]["app.kubernetes.io/component"] == "nats"]
    assert not [o for o in objs if o["metadata"]["name"] == "kambda-nats-invoker"]
    for workload in workloads(objs):
        for c in workload["spec"]["template"]["spec"]["containers"]:
            env = env_of(c)
            assert env["KAMBDA_NATS_URL"] == EXTERNAL_NATS
            assert env.get("KAMBDA_K8S_NATS_URL", EXTERNAL_NATS) == EXTERNAL_NATS
            assert "KAMBDA_NATS_CREDS" not in env and "KAMBDA_K8S_NATS_CREDS_SECRET" not in env  # none given


def test_an_external_nats_gets_the_credentials_its_secrets_hold() -> None:
    objs = objects_of(render({"nats": {"external": {"url": EXTERNAL_NATS, "credentialsSecret": "ext-nats",
                                                    "functionsCredentialsSecret": "ext-nats-invoker"}},
                              "functions": {"namespace": "kambda-fn"}}))
    for name in ("gateway", "controller", "worker"):
        deployment = one(objs, "Deployment", f"kambda-{name}")
        assert env_of(container(deployment, name))["KAMBDA_NATS_CREDS"] == f"/etc/kambda/nats/{name}.json"
        (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "nats-credentials"]
        assert volume["secret"] == {"secretName": "ext-nats",
                                    "items": [{"key": f"{name}.json", "path": f"{name}.json"}]}
    controller = container(one(objs, "Deployment", "kambda-controller"), "controller")
    settings = ControllerSettings.from_env(env_of(controller))
    assert settings.kubernetes.nats_creds_secret == "ext-nats-invoker"  # function pods mount its invoker.json
    assert settings.kubernetes.callout_seed_file == "" and "Job" not in kinds(objs)


def test_the_role_key_is_shared_by_the_gateway_the_controller_and_the_workers_and_kept_on_upgrades(rendered) -> None:
    objs = rendered["default"]
    secret = one(objs, "Secret", "kambda-role-key")
    assert len(base64.b64decode(secret["data"]["key"])) == 64
    gateway = one(objs, "Deployment", "kambda-gateway")
    assert GatewaySettings.from_env(env_of(container(gateway, "gateway"))).role_key_file == "/etc/kambda/roles/key"
    controller = one(objs, "Deployment", "kambda-controller")
    settings = ControllerSettings.from_env(env_of(container(controller, "controller")))
    assert settings.kubernetes.role_key_file == "/etc/kambda/roles/key"
    worker = one(objs, "Deployment", "kambda-worker")  # it mints state machines' role credentials (SDK tasks)
    worker_settings = WorkerSettings.from_env(env_of(container(worker, "worker")))
    assert worker_settings.role_key_file == "/etc/kambda/roles/key"
    assert worker_settings.endpoint_url == "http://kambda-gateway.kambda.svc:80"  # the gateway Service
    for deployment in (gateway, controller, worker):
        assert {"name": "role-key", "secret": {"secretName": "kambda-role-key"}} in \
            deployment["spec"]["template"]["spec"]["volumes"]
    template = (CHART / "templates" / "role-key-secret.yaml").read_text()
    assert template.index("lookup") < template.index("randAlphaNum")


# --- gateway extras --------------------------------------------------------------------------------


def test_ingress_autoscaling_and_monitoring(rendered) -> None:
    objs = rendered["ingress"]
    ingress = one(objs, "Ingress", "kambda-gateway")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "lambda.example.org"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    service = one(objs, "Service", backend["name"])
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    assert ingress["spec"]["tls"][0]["hosts"] == ["lambda.example.org"]
    body = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert int(body.rstrip("m")) >= 6

    hpa = one(objs, "HorizontalPodAutoscaler", "kambda-gateway")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "kambda-gateway"}
    assert hpa["spec"]["maxReplicas"] == 6
    assert "replicas" not in one(objs, "Deployment", "kambda-gateway")["spec"]  # the HPA owns it
    assert one(rendered["default"], "Deployment", "kambda-gateway")["spec"]["replicas"] == 2
    assert not kinds(rendered["default"]) & {"Ingress", "HorizontalPodAutoscaler", "ServiceMonitor", "PodMonitor"}

    monitor = one(objs, "ServiceMonitor", "kambda-gateway")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert selects(monitor["spec"]["selector"], service["metadata"]["labels"])
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
    workers = one(objs, "PodMonitor", "kambda-worker")  # the workers' own figures, per pod
    assert workers["metadata"]["labels"]["release"] == "prometheus"
    assert selects(workers["spec"]["selector"], pod_labels(one(objs, "Deployment", "kambda-worker")))
    assert workers["spec"]["podMetricsEndpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]

    dashboard = one(objs, "ConfigMap", "kambda-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((CHART / "dashboards" / "kambda.json").read_text())
    assert json.loads(dashboard["data"]["kambda.json"]) == shipped


# --- the credential and NOTES ----------------------------------------------------------------------


def credentials(objs: list[dict[str, Any]]) -> dict[str, Any]:
    secret = one(objs, "Secret", "kambda-credentials")
    return json.loads(base64.b64decode(secret["data"]["credentials.json"]))


def test_generated_credential_is_random_per_install(rendered) -> None:
    first, second = credentials(rendered["default"]), credentials(objects_of(render()))
    for doc in (first, second):
        (admin,) = doc["credentials"]
        assert set(admin) == {"accessKeyId", "secretAccessKey", "role"} and admin["role"] == "admin"
        assert re.fullmatch(r"AKIA[A-Z0-9]{16}", admin["accessKeyId"])
        assert re.fullmatch(r"[A-Za-z0-9]{40}", admin["secretAccessKey"])
    assert first["credentials"][0]["secretAccessKey"] != second["credentials"][0]["secretAccessKey"]
    assert first["credentials"][0]["accessKeyId"] != second["credentials"][0]["accessKeyId"]


def test_an_existing_secret_replaces_the_generated_one() -> None:
    objs = objects_of(render({"auth": {"existingSecret": "my-keys"}}))
    assert not [o for o in objs if o["kind"] == "Secret" and o["metadata"]["name"] == "kambda-credentials"]
    gateway = one(objs, "Deployment", "kambda-gateway")["spec"]["template"]["spec"]
    assert {"name": "credentials", "secret": {"secretName": "my-keys"}} in gateway["volumes"]


def test_upgrades_keep_the_credential_through_lookup() -> None:
    """Offline, `lookup` finds nothing; the template must still ask for the live Secret first."""
    template = (CHART / "templates" / "credentials-secret.yaml").read_text()
    assert 'lookup "v1" "Secret" .Release.Namespace $name' in template
    assert template.index("lookup") < template.index("randAlphaNum")


def test_notes_tell_how_to_reach_the_gateway_and_read_the_credential() -> None:
    notes = render()["kambda/templates/NOTES.txt"]
    assert "kubectl -n kambda port-forward svc/kambda-gateway 8080:80" in notes
    assert "kubectl -n kambda get secret kambda-credentials -o jsonpath='{.data.credentials\\.json}'" in notes
    assert "--endpoint-url $KAMBDA_URL" in notes and "boto3.client(\"lambda\", endpoint_url=" in notes
    ingress = render(VARIANTS["ingress"])["kambda/templates/NOTES.txt"]
    assert "export KAMBDA_URL=https://lambda.example.org" in ingress and "port-forward" not in ingress


# --- docs -----------------------------------------------------------------------------------------


def leaves(values: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and not path.endswith(("resources", "SecurityContext", "annotations")):
            yield from leaves(value, path + ".")
        else:
            yield path


def test_readme_values_table_matches_values_yaml() -> None:
    readme = (CHART / "README.md").read_text()
    table = readme[readme.index("## Values"):]
    documented = {key for row in table.splitlines() if row.startswith("| `")
                  for key in re.findall(r"`([\w.]+)`", row.split("|")[1])}
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    for key in documented:
        node: Any = defaults
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"README documents {key}, which values.yaml lacks"
            node = node[part]
    missing = [leaf for leaf in leaves(defaults) if not any(leaf == d or leaf.startswith(d + ".") for d in documented)]
    assert missing == []


def test_gateway_workers_and_controller_share_the_controller_token(rendered) -> None:
    objs = rendered["default"]
    secret = one(objs, "Secret", "kambda-controller-token")
    assert re.fullmatch(r"[A-Za-z0-9]{48}", base64.b64decode(secret["data"]["token"]).decode())
    for name in ("gateway", "controller", "worker"):
        deployment = one(objs, "Deployment", f"kambda-{name}")
        c = container(deployment, name)
        assert env_of(c)["KAMBDA_CONTROLLER_TOKEN_FILE"] == "/etc/kambda/controller/token"
        (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == "/etc/kambda/controller"]
        (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
        assert volume["secret"]["secretName"] == "kambda-controller-token"
    env = env_of(container(one(objs, "Deployment", "kambda-gateway"), "gateway"))
    assert GatewaySettings.from_env(env).controller_token_file == "/etc/kambda/controller/token"
    env = env_of(container(one(objs, "Deployment", "kambda-worker"), "worker"))
    worker = WorkerSettings.from_env(env)
    assert (worker.controller_token_file, worker.nats_creds) == ("/etc/kambda/controller/token",
                                                                 "/etc/kambda/nats/worker.json")
    template = (CHART / "templates" / "controller-token-secret.yaml").read_text()
    assert template.index("lookup") < template.index("randAlphaNum")


def test_per_function_nats_credentials_are_on_by_default_with_a_key_the_hook_makes(tmp_path: Path) -> None:
    objs = objects_of(render())
    auth = nats_secret(objs, "auth.conf")
    assert "auth_callout { issuer: $KAMBDA_CALLOUT_ISSUER, auth_users: [" in auth
    for name in set(identities.IDENTITIES) - {"pod"}:  # kambda's own identities bypass the callout
        assert f'"{name}"' in auth.split("auth_users:", 1)[1]
    conf = write_nats_conf(objs, tmp_path)
    result = subprocess.run([natsserver.find_binary(), "-c", str(conf), "-t"], capture_output=True, text=True,
                            env=NATS_ENV, timeout=30)
    assert result.returncode == 0, result.stderr
    # nats-server reads the issuer from the Secret the hook makes; the controller mounts its seed.
    nats_env = env_of(container(one(objs, "StatefulSet", "kambda-nats"), "nats"))
    assert nats_env["KAMBDA_CALLOUT_ISSUER"] == {"secretKeyRef": {"name": "kambda-nats-callout", "key": "issuer"}}
    job = one(objs, "Job", "kambda-callout-key")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    hook = container(job, "callout-key")
    assert hook["command"] == ["python", "-m", "controller.callout_key", "--secret", "kambda-nats-callout",
                               "--namespace", NAMESPACE]
    role = one(objs, "Role", "kambda-callout-key")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["kambda-nats-callout"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}]
    assert one(objs, "RoleBinding", "kambda-callout-key")["subjects"][0]["name"] == "kambda-callout-key"
    spec = job["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True and hook["securityContext"]["readOnlyRootFilesystem"]
    # Function pods hold only the identity that hears assignments; the controller holds the seed.
    invoker = one(objs, "Secret", "kambda-nats-invoker")
    login = json.loads(base64.b64decode(invoker["data"]["invoker.json"]))
    assert login["user"] == "pod" and login["bind"] is True  # pod:<id>:<key> through the callout
    assert '{user: "pod"' not in auth and '"pod"' not in auth.split("auth_users:", 1)[1]
    controller = one(objs, "Deployment", "kambda-controller")
    settings = ControllerSettings.from_env(env_of(container(controller, "controller")))
    assert settings.kubernetes.callout_seed_file == "/etc/kambda/callout/seed"
    assert settings.kubernetes.pod_creds_file == "/etc/kambda/nats/pod.json"
    volumes = controller["spec"]["template"]["spec"]["volumes"]
    assert {"name": "nats-callout", "secret": {"secretName": "kambda-nats-callout",
                                               "items": [{"key": "seed", "path": "seed"}]}} in volumes


def test_a_callout_key_of_ones_own_replaces_the_hook_and_off_means_the_invoker_identity() -> None:
    seed = callout.new_account_seed()
    issuer = nkeys.from_seed(bytearray(seed)).public_key.decode()
    objs = objects_of(render({"nats": {"functionCredentials": {"existingSecret": "kambda-callout", "issuer": issuer}}}))
    assert f'auth_callout {{ issuer: "{issuer}", auth_users: [' in nats_secret(objs, "auth.conf")
    assert "Job" not in kinds(objs)
    assert "KAMBDA_CALLOUT_ISSUER" not in env_of(container(one(objs, "StatefulSet", "kambda-nats"), "nats"))
    volumes = one(objs, "Deployment", "kambda-controller")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "nats-callout", "secret": {"secretName": "kambda-callout",
                                               "items": [{"key": "seed", "path": "seed"}]}} in volumes
    off = objects_of(render({"nats": {"functionCredentials": {"enabled": False}}}))
    assert "auth_callout" not in nats_secret(off, "auth.conf") and "Job" not in kinds(off)
    assert json.loads(base64.b64decode(one(off, "Secret", "kambda-nats-invoker")["data"]["invoker.json"])
                      )["user"] == "invoker"
    external = objects_of(render({"nats": {"external": {"url": EXTERNAL_NATS}}}))
    assert "Job" not in kinds(external)  # an external NATS's authorization is its operator's


def test_the_hook_makes_the_callout_key_once_and_keeps_it(tmp_path: Path) -> None:
    from tests.fakekube import FakeKube
    from tests.k8s_harness import write_kubeconfig

    with FakeKube() as kube:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url, NAMESPACE)

        def run() -> str:
            done = subprocess.run([sys.executable, "-m", "controller.callout_key", "--secret", "kambda-nats-callout",
                                   "--namespace", NAMESPACE, "--kubeconfig", str(kubeconfig)],
                                  capture_output=True, text=True, timeout=60, cwd=REPO)
            assert done.returncode == 0, done.stderr
            return done.stdout

        first = run()
        secret = kube.store.get("secrets", NAMESPACE, "kambda-nats-callout")
        seed = base64.b64decode(secret["data"]["seed"])
        issuer = base64.b64decode(secret["data"]["issuer"]).decode()
        assert nkeys.from_seed(bytearray(seed)).public_key.decode() == issuer
        assert first.startswith("made") and issuer in first
        again = run()  # an upgrade: the key stays (tokens minted with it stay good)
        assert again.startswith("kept") and issuer in again
        assert kube.store.get("secrets", NAMESPACE, "kambda-nats-callout")["data"] == secret["data"]
