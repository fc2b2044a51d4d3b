"""The fake Kubernetes API server, checked with the official client's typed calls, and its kubelet.

Other tests trust this fake to behave like a real API server where a client can tell: JSON
shapes the client deserialises, optimistic concurrency, watch resumption and expiry, the scale
subresource, ownerReferences and what a ReplicaSet does with pods.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tests.conftest import alive, wait_for
from tests.fakekube import ApiError, FakeKube
from tests.fakekube.kubelet import Kubelet
from tests.fakekube.patches import json_patch, merge_patch
from tests.fakekube.podenv import ContainerConfigError, argv_of, resolve_env
from tests.fakekube.selectors import SelectorError, matches, parse_labels

NS = "fns"


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube() as fake:
        yield fake
    assert fake.errors == []


@pytest.fixture
def apps(kube: FakeKube) -> client.AppsV1Api:
    return client.AppsV1Api(kube.api_client())


@pytest.fixture
def core(kube: FakeKube) -> client.CoreV1Api:
    return client.CoreV1Api(kube.api_client())


def deployment(name: str, replicas: int = 1, labels: dict[str, str] | None = None) -> dict[str, Any]:
    labels = labels or {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": {"team": "a"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": dict(labels)},
                                  "spec": {"containers": [{"name": "main", "image": "kambda:1",
                                                           "command": ["kambda-invoker"]}]}}}}


def pod(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}},
            "spec": {"containers": [{"name": "main", "image": "kambda:1"}]}}


def error_of(call: Any, *args: Any, **kwargs: Any) -> tuple[ApiException, dict[str, Any]]:
    with pytest.raises(ApiException) as info:
        call(*args, **kwargs)
    return info.value, json.loads(info.value.body)


def names(kube: FakeKube, selector: str = "") -> set[str]:
    return {p["metadata"]["name"] for p in kube.pods(NS, selector)}


def make_ready(kube: FakeKube, name: str) -> None:
    def ready(p: dict[str, Any]) -> None:
        p["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    kube.store.mutate("pods", NS, name, ready)


# -- objects, versions, conflicts ----------------------------------------------------------------

def test_create_read_replace_and_the_errors_of_a_real_server(kube: FakeKube, apps: client.AppsV1Api) -> None:
    created = apps.create_namespaced_deployment(NS, deployment("web"))
    assert isinstance(created, client.V1Deployment)
    assert created.metadata.uid and created.metadata.generation == 1 and created.metadata.creation_timestamp
    assert created.spec.template.spec.containers[0].image_pull_policy == "IfNotPresent"  # a server default

    # Wait for the ReplicaSet controller's status write, which would make what we read stale.
    wait_for(lambda: apps.read_namespaced_deployment("web", NS).status.replicas == 1, what="status.replicas")
    read = apps.read_namespaced_deployment("web", NS)
    read.spec.template.spec.containers[0].image = "kambda:2"
    replaced = apps.replace_namespaced_deployment("web", NS, read)
    assert replaced.metadata.generation == 2
    assert int(replaced.metadata.resource_version) > int(read.metadata.resource_version)

    read.spec.replicas = 5  # still carries the resourceVersion before the replace: stale
    exc, status = error_of(apps.replace_namespaced_deployment, "web", NS, read)
    assert exc.status == 409 and status["kind"] == "Status" and status["reason"] == "Conflict"
    assert apps.read_namespaced_deployment("web", NS).spec.replicas == 1

    exc, status = error_of(apps.create_namespaced_deployment, NS, deployment("web"))
    assert exc.status == 409 and status["reason"] == "AlreadyExists"
    apps.delete_namespaced_deployment("web", NS)
    exc, status = error_of(apps.create_namespaced_deployment, NS, read)  # posting back what was read
    assert exc.status == 500 and "resourceVersion should not be set" in status["message"]
    exc, status = error_of(apps.read_namespaced_deployment, "nope", NS)
    assert exc.status == 404 and status["reason"] == "NotFound" and status["details"]["name"] == "nope"
    exc, status = error_of(apps.delete_namespaced_deployment, "nope", NS)
    assert exc.status == 404


def test_resource_versions_are_one_increasing_counter(kube: FakeKube, core: client.CoreV1Api) -> None:
    versions = [int(core.create_namespaced_pod(NS, {**pod(f"p{i}"), "status": {"phase": "Running"}})
                    .metadata.resource_version) for i in range(3)]
    assert {p.status.phase for p in core.list_namespaced_pod(NS).items} == {"Pending"}  # status is the server's
    versions.append(int(core.create_namespaced_service(NS, {
        "metadata": {"name": "svc"}, "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}}
    ).metadata.resource_version))
    assert versions == sorted(versions) and len(set(versions)) == 4
    listing = core.list_namespaced_pod(NS)
    assert int(listing.metadata.resource_version) >= versions[-1]


def test_invalid_objects_are_rejected_as_the_real_server_does(apps: client.AppsV1Api, core: client.CoreV1Api) -> None:
    bad = deployment("web")
    bad["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    exc, status = error_of(apps.create_namespaced_deployment, NS, bad)
    assert exc.status == 422 and status["reason"] == "Invalid"
    exc, _ = error_of(core.create_namespaced_pod, NS, pod("p", {"fn": "$LATEST"}))
    assert exc.status == 422
    exc, _ = error_of(core.create_namespaced_pod, NS, pod("Not_A_Name"))
    assert exc.status == 422
    apps.create_namespaced_deployment(NS, deployment("web"))
    exc, _ = error_of(apps.patch_namespaced_deployment, "web", NS,
                      {"spec": {"selector": {"matchLabels": {"app": "web", "x": "y"}}}})
    assert exc.status == 422  # a Deployment's selector is immutable


def test_patches_merge_json_and_strategic_with_resource_version_preconditions(apps: client.AppsV1Api) -> None:
    apps.create_namespaced_deployment(NS, deployment("web"))
    patched = apps.patch_namespaced_deployment("web", NS, {"metadata": {"labels": {"extra": "1", "team": None}}})
    assert patched.metadata.labels == {"extra": "1"}
    patched = apps.patch_namespaced_deployment(
        "web", NS, [{"op": "replace", "path": "/spec/replicas", "value": 3}])  # a list: JSON patch
    assert patched.spec.replicas == 3 and patched.metadata.generation == 2
    patched = apps.patch_namespaced_deployment("web", NS, {"spec": {"replicas": 2}},
                                               _content_type="application/merge-patch+json")
    assert patched.spec.replicas == 2
    exc, status = error_of(apps.patch_namespaced_deployment, "web", NS,
                           {"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 9}})
    assert exc.status == 409 and status["reason"] == "Conflict"
    # (The Deployment's status keeps changing under the ReplicaSet controller: a ConfigMap stays put.)
    core = client.CoreV1Api(apps.api_client)
    fresh = core.create_namespaced_config_map(NS, {"metadata": {"name": "cm"}, "data": {"a": "1"}})
    guarded = {"metadata": {"resourceVersion": fresh.metadata.resource_version}, "data": {"a": "2"}}
    assert core.patch_namespaced_config_map("cm", NS, guarded).data == {"a": "2"}
    exc, _ = error_of(core.patch_namespaced_config_map, "cm", NS, guarded)
    assert exc.status == 409
    exc, _ = error_of(apps.patch_namespaced_deployment, "web", NS, [{"op": "test", "path": "/spec/replicas",
                                                                     "value": 1}])
    assert exc.status == 422


def test_merge_and_json_patch_follow_the_rfcs() -> None:
    assert merge_patch({"a": {"b": 1, "c": 2}, "l": [1, 2]}, {"a": {"b": None, "d": 3}, "l": [3]}) == \
        {"a": {"c": 2, "d": 3}, "l": [3]}
    doc = {"a": [1, 2], "b": {"c": 1}}
    assert json_patch(doc, [{"op": "add", "path": "/a/-", "value": 3}, {"op": "remove", "path": "/b/c"},
                            {"op": "move", "from": "/a/0", "path": "/b/x"}, {"op": "copy", "from": "/b", "path": "/d"},
                            {"op": "add", "path": "/e~1f", "value": 0}]) == \
        {"a": [2, 3], "b": {"x": 1}, "d": {"x": 1}, "e/f": 0}
    assert doc == {"a": [1, 2], "b": {"c": 1}}  # the input is left alone


# -- selectors ---------------------------------------------------------------------------------

def test_label_and_field_selectors_on_lists(kube: FakeKube, core: client.CoreV1Api) -> None:
    core.create_namespaced_pod(NS, pod("a", {"app": "x", "tier": "web"}))
    core.create_namespaced_pod(NS, pod("b", {"app": "x", "tier": "db"}))
    core.create_namespaced_pod(NS, pod("c", {"app": "y"}))
    core.create_namespaced_pod("other", pod("d", {"app": "x"}))

    def listed(**kwargs: str) -> set[str]:
        return {p.metadata.name for p in core.list_namespaced_pod(NS, **kwargs).items}

    assert listed(label_selector="app=x") == {"a", "b"}
    assert listed(label_selector="app==x,tier!=db") == {"a"}
    assert listed(label_selector="tier in (web, db)") == {"a", "b"}
    assert listed(label_selector="tier notin (web)") == {"b", "c"}
    assert listed(label_selector="tier") == {"a", "b"}
    assert listed(label_selector="!tier") == {"c"}
    assert listed(field_selector="metadata.name=b") == {"b"}
    assert listed(field_selector="metadata.name!=b", label_selector="app=x") == {"a"}
    assert {p.metadata.name for p in core.list_pod_for_all_namespaces(label_selector="app=x").items} == \
        {"a", "b", "d"}
    exc, status = error_of(core.list_namespaced_pod, NS, label_selector="app in x")
    assert exc.status == 400 and status["reason"] == "BadRequest"
    exc, _ = error_of(core.list_namespaced_pod, NS, field_selector="spec.unknown=1")
    assert exc.status == 400


def test_selector_parsing() -> None:
    requirements = parse_labels("a in (1,2), b notin (3),c!=4,!d,e")
    assert matches(requirements, {"a": "1", "b": "5", "c": "5", "e": ""})
    assert not matches(requirements, {"a": "1", "e": "", "d": "x"})
    with pytest.raises(SelectorError):
        parse_labels("a=(b")


# -- the scale subresource and the ReplicaSet controller ------------------------------------------

def test_scale_subresource_drives_the_pods(kube: FakeKube, apps: client.AppsV1Api) -> None:
    apps.create_namespaced_deployment(NS, deployment("web", replicas=2))
    wait_for(lambda: len(kube.pods(NS, "app=web")) == 2, what="2 pods")
    scale = apps.read_namespaced_deployment_scale("web", NS)
    assert isinstance(scale, client.V1Scale) and scale.kind == "Scale" and scale.api_version == "autoscaling/v1"
    assert scale.spec.replicas == 2 and scale.status.selector == "app=web"
    wait_for(lambda: apps.read_namespaced_deployment_scale("web", NS).status.replicas == 2, what="status.replicas")

    scale = apps.read_namespaced_deployment_scale("web", NS)
    scale.spec.replicas = 4
    assert apps.replace_namespaced_deployment_scale("web", NS, scale).spec.replicas == 4
    wait_for(lambda: len(kube.pods(NS, "app=web")) == 4, what="4 pods")
    scale.spec.replicas = 1  # the Scale read before the update is stale now
    exc, status = error_of(apps.replace_namespaced_deployment_scale, "web", NS, scale)
    assert exc.status == 409 and status["reason"] == "Conflict"

    apps.patch_namespaced_deployment_scale("web", NS, {"spec": {"replicas": 0}})
    wait_for(lambda: not kube.pods(NS, "app=web"), what="no pods")
    d = apps.read_namespaced_deployment("web", NS)
    assert d.spec.replicas == 0 and d.metadata.generation == 3


def test_replicaset_names_labels_and_owns_its_pods(kube: FakeKube, apps: client.AppsV1Api,
                                                   core: client.CoreV1Api) -> None:
    created = apps.create_namespaced_deployment(NS, deployment("web", replicas=3))
    wait_for(lambda: len(kube.pods(NS, "app=web")) == 3, what="3 pods")
    pods = core.list_namespaced_pod(NS, label_selector="app=web").items
    hashes = {p.metadata.labels["pod-template-hash"] for p in pods}
    assert len(hashes) == 1
    (pod_hash,) = hashes
    for p in pods:
        assert p.metadata.name.startswith(f"web-{pod_hash}-") and len(p.metadata.name) == len(f"web-{pod_hash}-") + 5
        assert p.status.phase == "Pending"
        (ref,) = p.metadata.owner_references
        assert ref.uid == created.metadata.uid and ref.controller and ref.kind == "Deployment"

    for p in pods[:2]:
        make_ready(kube, p.metadata.name)

    def status() -> Any:
        return apps.read_namespaced_deployment("web", NS).status

    wait_for(lambda: status().ready_replicas == 2, what="readyReplicas 2")
    assert status().replicas == 3 and status().available_replicas == 2 and status().observed_generation == 1
    apps.patch_namespaced_deployment_scale("web", NS, {"spec": {"replicas": 2}})
    wait_for(lambda: len(kube.pods(NS, "app=web")) == 2, what="scale down to 2")
    assert names(kube, "app=web") == {p.metadata.name for p in pods[:2]}  # the not-ready pod went first

    newer = apps.patch_namespaced_deployment_scale("web", NS, {"spec": {"replicas": 3}})
    assert newer.spec.replicas == 3
    wait_for(lambda: len(kube.pods(NS, "app=web")) == 3, what="scale up to 3")
    (third,) = names(kube, "app=web") - {p.metadata.name for p in pods[:2]}
    make_ready(kube, third)
    apps.patch_namespaced_deployment_scale("web", NS, {"spec": {"replicas": 2}})
    wait_for(lambda: len(kube.pods(NS, "app=web")) == 2, what="scale down to 2 again")
    assert third not in names(kube, "app=web")  # all ready: the newest went first


def test_a_relabelled_pod_is_released_and_replaced(kube: FakeKube, apps: client.AppsV1Api,
                                                   core: client.CoreV1Api) -> None:
    apps.create_namespaced_deployment(NS, deployment("pool", replicas=2, labels={"pool": "python"}))
    wait_for(lambda: len(kube.pods(NS, "pool=python")) == 2, what="pool pods")
    claimed = sorted(names(kube, "pool=python"))[0]
    current = core.read_namespaced_pod(claimed, NS)
    core.patch_namespaced_pod(claimed, NS, {"metadata": {"resourceVersion": current.metadata.resource_version,
                                                         "labels": {"pool": None, "function": "hello"}}})
    wait_for(lambda: len(kube.pods(NS, "pool=python")) == 2 and claimed not in names(kube, "pool=python"),
             what="the pool refilled")
    released = core.read_namespaced_pod(claimed, NS)
    assert released.metadata.owner_references is None and released.metadata.labels["function"] == "hello"
    apps.delete_namespaced_deployment("pool", NS)
    wait_for(lambda: not kube.pods(NS, "pool=python"), what="pool pods deleted")
    assert names(kube) == {claimed}  # released pods are not the Deployment's to delete

    # A claim guarded by a resourceVersion loses to a claim that came first.
    exc, _ = error_of(core.patch_namespaced_pod, claimed, NS,
                      {"metadata": {"resourceVersion": current.metadata.resource_version,
                                    "labels": {"function": "other"}}})
    assert exc.status == 409


def test_a_changed_template_replaces_the_pods(kube: FakeKube, apps: client.AppsV1Api) -> None:
    apps.create_namespaced_deployment(NS, deployment("web", replicas=2))
    wait_for(lambda: len(kube.pods(NS, "app=web")) == 2, what="pods")
    before = names(kube, "app=web")
    apps.patch_namespaced_deployment("web", NS, {"spec": {"template": {"metadata": {"annotations": {"v": "2"}}}}})
    wait_for(lambda: len(kube.pods(NS, "app=web")) == 2 and not names(kube, "app=web") & before, what="new pods")
    assert all(p["metadata"]["annotations"] == {"v": "2"} for p in kube.pods(NS, "app=web"))


def test_deleting_a_deployment_cascades_unless_orphaned(kube: FakeKube, apps: client.AppsV1Api) -> None:
    apps.create_namespaced_deployment(NS, deployment("a", replicas=2))
    apps.create_namespaced_deployment(NS, deployment("b", replicas=1))
    wait_for(lambda: len(kube.pods(NS)) == 3, what="pods")
    apps.delete_namespaced_deployment("a", NS)
    assert names(kube, "app=a") == set()
    assert len(kube.pods(NS, "app=b")) == 1
    apps.delete_namespaced_deployment("b", NS, body=client.V1DeleteOptions(propagation_policy="Orphan"))
    (orphan,) = kube.pods(NS, "app=b")
    assert "ownerReferences" not in orphan["metadata"]
    exc, _ = error_of(apps.read_namespaced_deployment, "b", NS)
    assert exc.status == 404


def test_delete_preconditions(apps: client.AppsV1Api) -> None:
    created = apps.create_namespaced_deployment(NS, deployment("web", replicas=0))
    apps.patch_namespaced_deployment("web", NS, {"metadata": {"labels": {"x": "1"}}})
    stale = client.V1DeleteOptions(preconditions=client.V1Preconditions(
        resource_version=created.metadata.resource_version))
    exc, _ = error_of(apps.delete_namespaced_deployment, "web", NS, body=stale)
    assert exc.status == 409
    apps.delete_namespaced_deployment("web", NS, body=client.V1DeleteOptions(
        preconditions=client.V1Preconditions(uid=created.metadata.uid)))


# -- watches ----------------------------------------------------------------------------------

class Follower:
    """A watch of the pods of a namespace on a thread, resumed by hand from the last resourceVersion."""

    def __init__(self, core: client.CoreV1Api, resource_version: str, **kwargs: Any) -> None:
        self.core = core
        self.kwargs = kwargs
        self.resource_version = resource_version
        self.events: list[tuple[str, str]] = []
        self.failures: list[Exception] = []
        self.watch = watch.Watch()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping:
            self.watch = watch.Watch()
            try:
                for event in self.watch.stream(self.core.list_namespaced_pod, NS,
                                               resource_version=self.resource_version, **self.kwargs):
                    self.events.append((event["type"], event["object"].metadata.name))
                    self.resource_version = self.watch.resource_version
            except (urllib3.exceptions.HTTPError, ApiException) as exc:
                self.failures.append(exc)
                if isinstance(exc, ApiException):
                    return
            if self.watch.resource_version:
                self.resource_version = self.watch.resource_version

    def stop(self, kube: FakeKube) -> None:
        self.stopping = True
        kube.drop_watches()
        self.thread.join(10)


def test_a_dropped_watch_resumes_from_the_last_resource_version(kube: FakeKube, core: client.CoreV1Api) -> None:
    core.create_namespaced_pod(NS, pod("a"))
    start = core.list_namespaced_pod(NS).metadata.resource_version
    follower = Follower(core, start)
    try:
        core.create_namespaced_pod(NS, pod("b"))
        wait_for(lambda: ("ADDED", "b") in follower.events, what="b")
        wait_for(lambda: kube.open_watches() == 1, what="an open watch")
        assert kube.drop_watches() == 1
        core.create_namespaced_pod(NS, pod("c"))
        core.delete_namespaced_pod("b", NS)
        wait_for(lambda: ("DELETED", "b") in follower.events, what="events made while it was cut")
        assert follower.events == [("ADDED", "b"), ("ADDED", "c"), ("DELETED", "b")]  # none lost, none twice
        assert any(isinstance(f, urllib3.exceptions.ProtocolError) for f in follower.failures)
        watches = [path for method, path in kube.requests if "watch=true" in path]
        assert len(watches) >= 2 and f"resourceVersion={start}&" in watches[0] + "&"
    finally:
        follower.stop(kube)


def test_a_watch_from_a_compacted_resource_version_is_gone(kube: FakeKube, core: client.CoreV1Api) -> None:
    core.create_namespaced_pod(NS, pod("a"))
    old = core.list_namespaced_pod(NS).metadata.resource_version
    core.create_namespaced_pod(NS, pod("b"))
    kube.compact()
    response = core.list_namespaced_pod(NS, watch=True, resource_version=old, _preload_content=False)
    (line,) = [json.loads(raw) for raw in response.data.splitlines() if raw.strip()]
    assert line["type"] == "ERROR"
    assert line["object"]["kind"] == "Status" and line["object"]["code"] == 410
    assert line["object"]["reason"] == "Expired"
    with pytest.raises(ApiException) as info:
        for _ in watch.Watch().stream(core.list_namespaced_pod, NS, resource_version=old, timeout_seconds=5):
            pass
    assert info.value.status == 410
    # The current resourceVersion after the compaction still works.
    now = core.list_namespaced_pod(NS).metadata.resource_version
    core.create_namespaced_pod(NS, pod("c"))
    events = [(e["type"], e["object"].metadata.name) for e in
              watch.Watch().stream(core.list_namespaced_pod, NS, resource_version=now, timeout_seconds=1)]
    assert events == [("ADDED", "c")]


def test_history_is_bounded() -> None:
    with FakeKube(history=5) as kube:
        core = client.CoreV1Api(kube.api_client())
        first = core.create_namespaced_pod(NS, pod("p0")).metadata.resource_version
        for i in range(1, 8):
            core.create_namespaced_pod(NS, pod(f"p{i}"))
        response = core.list_namespaced_pod(NS, watch=True, resource_version=first, _preload_content=False)
        assert json.loads(response.data.splitlines()[0])["object"]["code"] == 410


def test_watch_without_resource_version_starts_with_the_current_objects(kube: FakeKube,
                                                                        core: client.CoreV1Api) -> None:
    core.create_namespaced_pod(NS, pod("a", {"app": "x"}))
    core.create_namespaced_pod(NS, pod("b", {"app": "y"}))
    events = [(e["type"], e["object"].metadata.name) for e in
              watch.Watch().stream(core.list_namespaced_pod, NS, label_selector="app=x", timeout_seconds=1)]
    assert events == [("ADDED", "a")]


def test_a_pod_leaving_a_watched_selector_is_deleted_for_that_watch(kube: FakeKube, core: client.CoreV1Api) -> None:
    core.create_namespaced_pod(NS, pod("a", {"pool": "py"}))
    start = core.list_namespaced_pod(NS).metadata.resource_version
    core.patch_namespaced_pod("a", NS, {"metadata": {"labels": {"pool": None}}})
    core.patch_namespaced_pod("a", NS, {"metadata": {"labels": {"pool": "py"}}})
    core.patch_namespaced_pod("a", NS, {"metadata": {"labels": {"x": "1"}}})
    events = [e["type"] for e in watch.Watch().stream(core.list_namespaced_pod, NS, label_selector="pool=py",
                                                      resource_version=start, timeout_seconds=1)]
    assert events == ["DELETED", "ADDED", "MODIFIED"]


def test_bookmarks_carry_the_latest_resource_version(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod(NS, pod("a"))
    start = core.list_namespaced_pod(NS).metadata.resource_version
    core.create_namespaced_service(NS, {"metadata": {"name": "svc"}, "spec": {"ports": [{"port": 80}]}})
    latest = core.list_namespaced_service(NS).metadata.resource_version
    response = core.list_namespaced_pod(NS, watch=True, resource_version=start, allow_watch_bookmarks=True,
                                        timeout_seconds=2, _preload_content=False)
    lines = [json.loads(raw) for raw in response.data.splitlines() if raw.strip()]
    assert lines and all(line["type"] == "BOOKMARK" for line in lines)
    assert lines[-1]["object"]["metadata"]["resourceVersion"] == latest


def test_all_namespaces_watch_and_changes_behind_the_clients_back(kube: FakeKube, apps: client.AppsV1Api) -> None:
    start = apps.list_deployment_for_all_namespaces().metadata.resource_version
    apps.create_namespaced_deployment("one", deployment("a", replicas=0))
    apps.create_namespaced_deployment("two", deployment("b", replicas=0))
    kube.store.mutate("deployments", "one", "a", lambda d: d["metadata"].setdefault("labels", {}).update(x="1"))
    kube.store.delete("deployments", "two", "b")
    events = [(e["type"], e["object"].metadata.namespace, e["object"].metadata.name) for e in watch.Watch().stream(
        apps.list_deployment_for_all_namespaces, resource_version=start, timeout_seconds=1)]
    assert ("ADDED", "one", "a") in events and ("ADDED", "two", "b") in events
    # The fake's Deployment controller may update a's status at any time (as a real one does), so
    # only the order of what the test itself did is fixed.
    assert ("MODIFIED", "one", "a") in events and ("DELETED", "two", "b") in events
    assert events.index(("ADDED", "two", "b")) < events.index(("DELETED", "two", "b"))
    assert {ns for _, ns, _ in events} == {"one", "two"}


def test_a_watch_of_one_object_by_field_selector(kube: FakeKube) -> None:
    coordination = client.CoordinationV1Api(kube.api_client())
    start = coordination.list_namespaced_lease(NS).metadata.resource_version
    for name in ("leader", "other"):
        coordination.create_namespaced_lease(NS, {"metadata": {"name": name}, "spec": {"holderIdentity": "a"}})
    coordination.patch_namespaced_lease("leader", NS, {"spec": {"holderIdentity": "b"}})
    events = [(e["type"], e["object"].spec.holder_identity) for e in watch.Watch().stream(
        coordination.list_namespaced_lease, NS, field_selector="metadata.name=leader", resource_version=start,
        timeout_seconds=1)]
    assert events == [("ADDED", "a"), ("MODIFIED", "b")]


def test_the_status_subresource_changes_only_the_status(kube: FakeKube, core: client.CoreV1Api) -> None:
    core.create_namespaced_pod(NS, pod("a", {"app": "x"}))
    patched = core.patch_namespaced_pod_status("a", NS, {"status": {"phase": "Running"},
                                                         "metadata": {"labels": {"app": "changed"}}})
    assert patched.status.phase == "Running" and patched.metadata.labels == {"app": "x"}
    current = core.read_namespaced_pod("a", NS)
    current.status.phase = "Pending"
    current.metadata.labels = {"app": "y"}
    replaced = core.replace_namespaced_pod("a", NS, current)  # the main resource: labels yes, status no
    assert replaced.status.phase == "Running" and replaced.metadata.labels == {"app": "y"}
    current = core.read_namespaced_pod("a", NS)
    current.spec.containers[0].name = "renamed"
    exc, status = error_of(core.replace_namespaced_pod, "a", NS, current)
    assert exc.status == 422 and status["reason"] == "Invalid"  # a pod's spec is immutable but for images


# -- injected faults ----------------------------------------------------------------------------

def test_injected_errors_answer_the_next_matching_requests(kube: FakeKube, apps: client.AppsV1Api,
                                                           core: client.CoreV1Api) -> None:
    kube.inject_errors(r"/deployments$", 429, count=1, method="POST")
    kube.inject_errors(r"/pods$", 500, count=1, method="POST")
    exc, status = error_of(apps.create_namespaced_deployment, NS, deployment("web", replicas=0))
    assert exc.status == 429 and exc.headers["Retry-After"] == "1" and status["reason"] == "TooManyRequests"
    assert apps.create_namespaced_deployment(NS, deployment("web", replicas=0)).metadata.name == "web"
    assert core.list_namespaced_pod(NS).items == []  # a GET is not a POST
    exc, status = error_of(core.create_namespaced_pod, NS, pod("a"))
    assert exc.status == 500 and status["reason"] == "InternalError"
    assert core.create_namespaced_pod(NS, pod("a")).metadata.name == "a"


def test_the_client_itself_retries_a_throttled_get_that_says_retry_after(kube: FakeKube,
                                                                         apps: client.AppsV1Api) -> None:
    """urllib3 (under the official client) honours Retry-After on 429 for idempotent verbs: callers never see it."""
    kube.inject_errors(r"/namespaces/fns/deployments$", 429, count=2, method="GET", retry_after=0)
    assert apps.list_namespaced_deployment(NS).items == []
    assert [m for m, path in kube.requests if path.startswith("/apis/apps/v1/namespaces/fns/deployments")] == \
        ["GET"] * 3


# -- leases, services, namespaces -----------------------------------------------------------------

def test_lease_create_renew_and_conflict(kube: FakeKube) -> None:
    import datetime

    coordination = client.CoordinationV1Api(kube.api_client())
    stamp = datetime.datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=datetime.UTC)
    lease = coordination.create_namespaced_lease(NS, client.V1Lease(
        metadata=client.V1ObjectMeta(name="leader"),
        spec=client.V1LeaseSpec(holder_identity="a", lease_duration_seconds=15, acquire_time=stamp,
                                renew_time=stamp, lease_transitions=0)))
    assert lease.spec.holder_identity == "a" and lease.spec.renew_time == stamp
    lease.spec.renew_time = stamp + datetime.timedelta(seconds=5)
    renewed = coordination.replace_namespaced_lease("leader", NS, lease)
    assert renewed.spec.renew_time == stamp + datetime.timedelta(seconds=5)
    lease.spec.holder_identity = "b"  # another candidate acting on what it read before the renewal
    exc, status = error_of(coordination.replace_namespaced_lease, "leader", NS, lease)
    assert exc.status == 409 and status["reason"] == "Conflict"
    assert coordination.read_namespaced_lease("leader", NS).spec.holder_identity == "a"
    exc, _ = error_of(coordination.create_namespaced_lease, NS, {"metadata": {"name": "leader"}, "spec": {}})
    assert exc.status == 409
    coordination.delete_namespaced_lease("leader", NS)
    exc, _ = error_of(coordination.read_namespaced_lease, "leader", NS)
    assert exc.status == 404


def test_the_kubeconfig_it_writes_works_for_the_official_client(kube: FakeKube, tmp_path: Path) -> None:
    from kubernetes import config

    api_client = config.new_client_from_config(config_file=str(kube.write_kubeconfig(tmp_path / "kubeconfig", NS)))
    try:
        created = client.CoreV1Api(api_client).create_namespaced_config_map(NS, {"metadata": {"name": "cm"}})
        assert created.metadata.namespace == NS
        assert ("POST", f"/api/v1/namespaces/{NS}/configmaps") in kube.requests
    finally:
        api_client.close()


def test_services_and_namespaces(kube: FakeKube, core: client.CoreV1Api) -> None:
    svc = core.create_namespaced_service(NS, {"metadata": {"name": "gw"},
                                              "spec": {"selector": {"app": "gw"}, "ports": [{"port": 80}]}})
    assert svc.spec.cluster_ip and svc.spec.type == "ClusterIP" and svc.spec.ports[0].target_port == 80
    without_ip = {"metadata": {"name": "gw"}, "spec": {"selector": {"app": "gw2"}, "ports": [{"port": 80}]}}
    replaced = core.replace_namespaced_service("gw", NS, without_ip)
    assert replaced.spec.cluster_ip == svc.spec.cluster_ip and replaced.spec.selector == {"app": "gw2"}
    assert core.read_namespace(NS).status.phase == "Active"  # created on first use
    assert {n.metadata.name for n in core.list_namespace().items} >= {"default", NS}
    core.delete_namespace(NS)
    assert core.list_namespaced_service(NS).items == []


# -- the kubelet ----------------------------------------------------------------------------------


def test_console_scripts_run_as_modules_of_this_checkout() -> None:
    assert argv_of({"command": ["kambda-invoker"], "args": ["--x"]}) == [sys.executable, "-m", "invoker", "--x"]
    assert argv_of({"command": ["kambda-gateway"]}) == [sys.executable, "-m", "gateway"]
    assert argv_of({"command": ["kambda-controller"]}) == [sys.executable, "-m", "controller"]
    assert argv_of({"command": ["python3", "-c", "1"]}) == [sys.executable, "-c", "1"]
    assert argv_of({"command": ["sleep"], "args": ["1"]}) == ["sleep", "1"]


def test_env_is_resolved_as_a_kubelet_does() -> None:
    pod_obj = {"metadata": {"name": "p-1", "namespace": "fns", "uid": "u", "labels": {"fn": "hello"}}, "spec": {}}
    container = {"resources": {"limits": {"memory": "512Mi", "cpu": "1500m"}}, "env": [
        {"name": "A", "value": "a"}, {"name": "B", "value": "$(A)-b-$(NOPE)"},
        {"name": "ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "FN", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['fn']"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
        {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
        {"name": "CM", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}},
        {"name": "SEC", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "none", "optional": True}}}]}
    container["envFrom"] = [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}, {"secretRef": {"name": "s"}},
                            {"configMapRef": {"name": "missing", "optional": True}}]
    objects = {("configmaps", "cfg"): {"data": {"k": "v"}}, ("secrets", "s"): {"data": {"k": "c2VjcmV0",
                                                                                       "A": "c2VjcmV0"}}}

    def lookup(plural: str, name: str) -> dict[str, Any]:
        if (plural, name) not in objects:
            raise ApiError(404, "not found")
        return objects[(plural, name)]

    env = resolve_env(pod_obj, container, lookup)
    assert env == {"A": "a", "B": "a-b-$(NOPE)", "ID": "p-1", "FN": "hello", "IP": "127.0.0.1", "MEM": "512",
                   "CPU": "2", "CM": "v", "SEC": "secret", "CFG_k": "v", "k": "secret"}
    container["env"].append({"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "absent"}}})
    with pytest.raises(ContainerConfigError):
        resolve_env(pod_obj, container, lookup)


def test_a_pod_whose_env_cannot_be_resolved_stays_pending(kube: FakeKube, core: client.CoreV1Api) -> None:
    body = pod("broken")
    body["spec"]["containers"][0].update(command=["python", "-c", "1"], env=[
        {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}])
    with Kubelet(kube, NS) as kubelet:
        core.create_namespaced_pod(NS, body)
        wait_for(lambda: core.read_namespaced_pod("broken", NS).status.container_statuses, what="a container status")
        status = core.read_namespaced_pod("broken", NS).status
        assert status.phase == "Pending"
        assert status.container_statuses[0].state.waiting.reason == "CreateContainerConfigError"
        assert kubelet.history() == []


SLEEPER = ("import os, subprocess, sys, time; child = subprocess.Popen(['sleep', '600']); "
           "print('ready', os.environ['POD'], os.environ['NS'], os.environ['GREETING'], os.environ['EXTRA'], "
           "child.pid, flush=True); time.sleep(600)")


def test_kubelet_runs_a_pod_as_a_process_and_kills_its_group_when_deleted(kube: FakeKube, core: client.CoreV1Api,
                                                                          tmp_path: Any) -> None:
    body = pod("sleeper")
    body["spec"]["containers"][0].update(command=["python", "-c"], args=[SLEEPER], env=[
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "WHO", "value": "world"}, {"name": "GREETING", "value": "hello-$(WHO)"},
        {"name": "EXTRA", "value": "from the pod"}])
    with Kubelet(kube, NS, {"EXTRA": "from the test"}, log_dir=tmp_path, ready_when=r"^ready ") as kubelet:
        core.create_namespaced_pod(NS, body)

        def ready() -> bool:
            status = core.read_namespaced_pod("sleeper", NS).status
            return status.phase == "Running" and any(c.type == "Ready" and c.status == "True"
                                                     for c in status.conditions or [])

        wait_for(ready, what=f"the pod Ready{kubelet.logs()}")
        process = kubelet.processes()["sleeper"]
        words = process.log().split()
        assert words[:5] == ["ready", "sleeper", NS, "hello-world", "from"] and " ".join(words[5:8]) == \
            "the test " + words[7]
        child = int(words[-1])
        assert alive(process.pid) and alive(child)
        status = core.read_namespaced_pod("sleeper", NS).status
        assert status.pod_ip == "127.0.0.1" and status.container_statuses[0].state.running is not None

        core.delete_namespaced_pod("sleeper", NS)
        wait_for(lambda: process.returncode is not None, what="the process ended")
        assert process.returncode == -signal.SIGTERM
        wait_for(lambda: not alive(child), what="the rest of the process group killed")
        assert kubelet.processes() == {}


STUBBORN = ("import signal, time\n"
            "signal.signal(signal.SIGTERM, lambda *_: print('got TERM', flush=True))\n"
            "print('ready', flush=True)\n"
            "time.sleep(600)")


def test_a_deleted_pod_terminates_gracefully_then_is_killed_and_removed(kube: FakeKube, core: client.CoreV1Api,
                                                                        tmp_path: Any) -> None:
    body = pod("stubborn")
    body["spec"]["terminationGracePeriodSeconds"] = 2
    body["spec"]["containers"][0]["command"] = ["python", "-c", STUBBORN]
    with Kubelet(kube, NS, log_dir=tmp_path, ready_when="^ready") as kubelet:
        core.create_namespaced_pod(NS, body)
        wait_for(lambda: "stubborn" in kubelet.processes() and kubelet.processes()["stubborn"].ready,
                 what=f"the pod ready{kubelet.logs()}")
        assert core.read_namespaced_pod("stubborn", NS).spec.node_name == kubelet.node_name
        start = core.list_namespaced_pod(NS).metadata.resource_version
        process = kubelet.processes()["stubborn"]

        deleted = core.delete_namespaced_pod("stubborn", NS)
        assert deleted.metadata.deletion_timestamp is not None
        assert deleted.metadata.deletion_grace_period_seconds == 2
        wait_for(lambda: process.returncode is not None, what="the process ended")
        assert "got TERM" in process.log() and process.returncode == -signal.SIGKILL  # it ignored SIGTERM
        wait_for(lambda: not kube.pods(NS), what="the pod deleted for good")
        events = [(e["type"], e["object"].metadata.deletion_timestamp is not None) for e in watch.Watch().stream(
            core.list_namespaced_pod, NS, resource_version=start, timeout_seconds=1)]
        assert events == [("MODIFIED", True), ("DELETED", True)]


def test_a_terminating_pod_is_replaced_at_once_and_stays_while_its_node_is_gone(
        kube: FakeKube, apps: client.AppsV1Api, core: client.CoreV1Api) -> None:
    apps.create_namespaced_deployment(NS, deployment("web"))
    wait_for(lambda: len(kube.pods(NS, "app=web")) == 1, what="a pod")
    (first,) = names(kube, "app=web")
    kube.store.mutate("pods", NS, first, lambda p: p["spec"].__setitem__("nodeName", "dead-node"),
                      bump_generation=False)  # bound to a node whose kubelet never confirms anything
    core.delete_namespaced_pod(first, NS)
    wait_for(lambda: len(kube.pods(NS, "app=web")) == 2, what="a replacement")
    terminating = kube.store.get("pods", NS, first)
    assert terminating["metadata"]["deletionTimestamp"]
    wait_for(lambda: apps.read_namespaced_deployment("web", NS).status.replicas == 1, what="status.replicas")
    exc, _ = error_of(core.delete_namespaced_pod, "nope", NS)
    assert exc.status == 404
    core.delete_namespaced_pod(first, NS, grace_period_seconds=0)  # a forced deletion
    wait_for(lambda: first not in names(kube), what="the forced deletion")


def test_pods_of_other_namespaces_are_not_run(kube: FakeKube, core: client.CoreV1Api) -> None:
    body = pod("elsewhere")
    body["spec"]["containers"][0]["command"] = ["python", "-c", "import time; time.sleep(600)"]
    with Kubelet(kube, NS) as kubelet:
        core.create_namespaced_pod("other", body)
        core.create_namespaced_pod(NS, {**body, "metadata": {"name": "here"}})
        wait_for(lambda: "here" in kubelet.processes(), what="the pod of its namespace started")
        assert set(kubelet.processes()) == {"here"}
        assert core.read_namespaced_pod("elsewhere", "other").status.phase == "Pending"
    assert not alive(kubelet.history()[0].pid)  # stopping the kubelet stops its processes


def test_a_process_that_exits_fails_its_pod_and_the_deployment_replaces_it(
        kube: FakeKube, apps: client.AppsV1Api, core: client.CoreV1Api, tmp_path: Any) -> None:
    marker = tmp_path / "crashed-once"
    script = (f"import pathlib, sys, time; m = pathlib.Path({str(marker)!r})\n"
              "if not m.exists(): m.touch(); sys.exit(3)\n"
              "time.sleep(600)")
    body = deployment("flaky")
    body["spec"]["template"]["spec"]["containers"][0]["command"] = ["python", "-c", script]
    with Kubelet(kube, NS) as kubelet:
        apps.create_namespaced_deployment(NS, body)
        def phases() -> list[str]:
            return sorted(p.status.phase for p in core.list_namespaced_pod(NS, label_selector="app=flaky").items)

        wait_for(lambda: phases() == ["Failed", "Running"] and
                 apps.read_namespaced_deployment("flaky", NS).status.ready_replicas == 1,
                 what=f"a failed pod and a ready replacement{kubelet.logs()}")
        pods = core.list_namespaced_pod(NS, label_selector="app=flaky").items
        (failed,) = [p for p in pods if p.status.phase == "Failed"]
        assert failed.status.container_statuses[0].state.terminated.exit_code == 3
        (running,) = [p for p in pods if p.status.phase == "Running"]
        assert set(kubelet.processes()) == {running.metadata.name}

        apps.patch_namespaced_deployment_scale("flaky", NS, {"spec": {"replicas": 0}})
        wait_for(lambda: not kubelet.processes(), what="scaled to zero: no process left")
        assert not alive(kubelet.history()[-1].pid)
