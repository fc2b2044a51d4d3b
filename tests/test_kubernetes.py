"""The Kubernetes orchestrator and leader election: pure parts first, then against the fake API server.

The fake (tests/fakekube) serves the real REST paths and JSON over HTTP, and the official client
talks to it; NATS is real where assignments travel.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from controller.leader import LeaderElector, label_pod
from controller.orchestrators import k8s_objects as objects
from controller.orchestrators.k8s_api import KubeApi, KubeError, KubeUnavailable, NotFound
from controller.orchestrators.kubernetes import KubernetesOrchestrator
from controller.settings import ControllerSettings, KubernetesSettings
from kambda import bus
from kambda.settings import SettingsError
from kambda.v1.function_pb2 import FunctionConfig
from kambda.v1.invoker_pb2 import Assignment, AssignmentAck, FunctionStats, InvokerStats, RoleCredentials
from tests.conftest import free_port, until
from tests.fakekube import ApiError, FakeKube
from tests.k8s_harness import NatsProcess

# -- names, labels and manifests ------------------------------------------------------------------

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"


def test_deployment_names_are_dns_labels_and_unique() -> None:
    import re

    names = {objects.deployment_name(f, v) for f, v in [
        ("hello", "$LATEST"), ("Hello", "$LATEST"), ("hello_", "$LATEST"), ("hello", "1"), ("x" * 64, "$LATEST"),
        ("_-_", "$LATEST"), ("a.b", "7")]}
    assert len(names) == 7
    for name in names:
        assert len(name) <= 63 and re.fullmatch(_DNS_LABEL, name), name
    assert objects.deployment_name("hello", "$LATEST") == objects.deployment_name("hello", "$LATEST")


def test_label_values_are_valid_for_any_function_name() -> None:
    import re

    for value in ["hello", "$LATEST", "_x_", "-", "a" * 64, "Fn-1_2"]:
        label = objects.label_value(value)
        assert len(label) <= 63 and re.fullmatch(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]", label), (value, label)
    assert objects.label_value("hello") == "hello"
    assert objects.label_value("$LATEST") != objects.label_value("LATEST")


def test_function_deployment_is_labelled_locked_down_and_selects_only_its_own_pods() -> None:
    settings = KubernetesSettings(namespace="fns", invoker_image="kambda:1", nats_url="nats://nats:4222")
    d = objects.function_deployment(settings, "hello", "$LATEST", "python3.12", 3)
    meta = d["metadata"]
    assert meta["namespace"] == "fns" and d["spec"]["replicas"] == 3
    assert meta["labels"][objects.PART_OF] == "kambda" and meta["labels"][objects.ROLE] == "function"
    assert objects.function_key(d) == ("hello", "$LATEST")
    template = d["spec"]["template"]
    selector = d["spec"]["selector"]["matchLabels"]
    assert all(template["metadata"]["labels"][k] == v for k, v in selector.items())
    assert objects.INSTANCE in selector  # claimed pool pods (which lack it) are never adopted by its ReplicaSet
    spec = template["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = spec["containers"]
    assert container["command"] == ["kambda-invoker"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {}} in spec["volumes"]
    env = {e["name"]: e for e in container["env"]}
    assert env["KAMBDA_INVOKER_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["KAMBDA_NATS_URL"]["value"] == "nats://nats:4222"


def test_pod_template_setting_merges_into_every_pod() -> None:
    template = {"nodeSelector": {"pool": "fn"},
                "containers": [{"name": "invoker", "resources": {"limits": {"memory": "512Mi"}},
                                "env": [{"name": "KAMBDA_ZYGOTE", "value": "false"}]}]}
    settings = KubernetesSettings(pod_template=template)
    for d in (objects.function_deployment(settings, "f", "$LATEST", "python3.12", 1),
              objects.pool_deployment(settings, "python3.12")):
        spec = d["spec"]["template"]["spec"]
        assert spec["nodeSelector"] == {"pool": "fn"}
        (container,) = spec["containers"]
        assert container["resources"]["limits"]["memory"] == "512Mi"
        names = [e["name"] for e in container["env"]]
        assert "KAMBDA_ZYGOTE" in names and "KAMBDA_INVOKER_ID" in names
        assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_a_changed_template_is_seen_through_server_defaults() -> None:
    settings = KubernetesSettings()
    wanted = objects.function_deployment(settings, "f", "$LATEST", "python3.12", 1)
    stored = objects.function_deployment(settings, "f", "$LATEST", "python3.12", 5)
    stored["spec"]["template"]["spec"]["dnsPolicy"] = "ClusterFirst"  # what an API server adds
    assert not objects.template_differs(stored, wanted)
    other = objects.function_deployment(KubernetesSettings(invoker_image="kambda:2"), "f", "$LATEST", "python3.12", 1)
    assert objects.template_differs(stored, other)


def test_claiming_moves_a_pod_out_of_the_pool_selector_and_into_the_function() -> None:
    from tests.fakekube.patches import merge_patch

    pool = objects.pool_deployment(KubernetesSettings(), "python3.12")
    pod = {"metadata": {"name": "kambda-pool-python3-12-abc", "resourceVersion": "7",
                        "labels": dict(pool["spec"]["template"]["metadata"]["labels"]),
                        "ownerReferences": [{"kind": "ReplicaSet", "name": "rs"}]}}
    patch = objects.claim_patch(pod, "hello", "$LATEST")
    assert patch["metadata"]["resourceVersion"] == "7"  # the update is guarded: a racing claim loses
    claimed = merge_patch(pod, patch)
    labels = claimed["metadata"]["labels"]
    assert any(labels.get(k) != v for k, v in pool["spec"]["selector"]["matchLabels"].items())
    assert labels[objects.ROLE] == "function" and labels[objects.CLAIMED] == "true"
    assert objects.function_key(claimed) == ("hello", "$LATEST")
    assert "ownerReferences" not in claimed["metadata"]


# -- backoff and settings ------------------------------------------------------------------------

def test_kubernetes_settings_from_env(tmp_path: Path) -> None:
    ns_file = tmp_path / "namespace"
    ns_file.write_text("kambda-fns\n")
    s = KubernetesSettings.from_env({"KAMBDA_K8S_POOL_RUNTIMES": "python3.12, python3.13",
                                     "KAMBDA_K8S_POD_TEMPLATE": '{"nodeSelector": {"a": "b"}}',
                                     "KAMBDA_K8S_POOL_SIZE": "0"}, "nats://x:4222", ns_file)
    assert s.namespace == "kambda-fns" and s.pod_namespace == "kambda-fns"
    assert s.pool_runtimes == ("python3.12", "python3.13") and s.pool_size == 0
    assert s.pod_template == {"nodeSelector": {"a": "b"}} and s.nats_url == "nats://x:4222"
    assert not s.leader_election and s.lease_name == "kambda-controller"
    s = KubernetesSettings.from_env({"KAMBDA_REGION": "eu-west-1", "KAMBDA_ORCHESTRATOR": "kubernetes"}, "nats://x")
    env = {e["name"]: e.get("value") for e in objects.pod_spec(s, "python3.12")["containers"][0]["env"]}
    assert env["KAMBDA_REGION"] == "eu-west-1" and "KAMBDA_ORCHESTRATOR" not in env  # only invoker settings
    s = KubernetesSettings.from_env({"KAMBDA_K8S_NATS_URL": "nats://pods:4222"}, "nats://x:4222",
                                    tmp_path / "missing")
    assert s.namespace == "default" and s.nats_url == "nats://pods:4222" and s.pool_size == 2
    assert ControllerSettings.from_env({"KAMBDA_ORCHESTRATOR": "kubernetes"}).orchestrator == "kubernetes"


@pytest.mark.parametrize("environ, key", [
    ({"KAMBDA_ORCHESTRATOR": "nomad"}, "KAMBDA_ORCHESTRATOR"),
    ({"KAMBDA_K8S_POD_TEMPLATE": "{nope"}, "KAMBDA_K8S_POD_TEMPLATE"),
    ({"KAMBDA_K8S_POD_TEMPLATE": "[1]"}, "KAMBDA_K8S_POD_TEMPLATE"),
    ({"KAMBDA_K8S_POOL_SIZE": "-1"}, "KAMBDA_K8S_POOL_SIZE"),
    ({"KAMBDA_LEADER_ELECTION": "true"}, "KAMBDA_POD_NAME"),
])
def test_bad_kubernetes_settings_name_the_key(environ: dict[str, str], key: str) -> None:
    with pytest.raises(SettingsError, match=key):
        ControllerSettings.from_env(environ)


# -- against the fake API server ------------------------------------------------------------------

NS = "fns"


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Sleeps:
    """An injected sleep that records what it was asked and yields without waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0.01)


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube() as fake:
        yield fake
        assert not fake.errors  # every 500 the controller saw was one the test injected


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = NatsProcess(tmp_path_factory.mktemp("nats"))
    yield server.url
    server.stop()


def make_config(name: str, runtime: str = "python3.12") -> FunctionConfig:
    return FunctionConfig(name=name, version="$LATEST", runtime=runtime, handler="app.handler", timeout=3,
                          revision_id=name + "-r1")


def mark_ready(kube: FakeKube, selector: str) -> list[str]:
    """What a kubelet does, without running anything: every matching pod becomes Running and Ready."""
    names = []
    for pod in kube.pods(NS, selector):
        def ready(p: dict) -> None:
            p["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        kube.store.mutate("pods", NS, pod["metadata"]["name"], ready)
        names.append(pod["metadata"]["name"])
    return names


class Harness:
    def __init__(self, kube: FakeKube, nc: NATS, known: dict[str, FunctionConfig], **settings: object) -> None:
        self.kube = kube
        self.sleeps = Sleeps()
        self.api = KubeApi(kube.api_client(), sleep=self.sleeps, rng=random.Random(7))
        values: dict[str, Any] = {"namespace": NS, "pool_size": 0, "nats_url": "nats://pods:4222", **settings}
        self.settings = KubernetesSettings(**values)
        self.orchestrator = KubernetesOrchestrator(
            nc, self.api, self.settings, lambda f, v: known.get(f) if v == "$LATEST" else None)

    def deployment(self, function: str) -> dict | None:
        try:
            return self.kube.store.get("deployments", NS, objects.deployment_name(function, "$LATEST"))
        except ApiError:
            return None

    def replicas(self, function: str) -> int | None:
        d = self.deployment(function)
        return None if d is None else d["spec"]["replicas"]


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    conn = await nats.connect(nats_url)
    yield conn
    await conn.close()


async def test_apply_creates_scales_and_deletes_the_deployment(kube: FakeKube, nc: NATS) -> None:
    known = {"hello": make_config("hello")}
    h = Harness(kube, nc, known)
    await h.orchestrator.start()
    try:
        await h.orchestrator.apply(known["hello"], 2)
        d = h.deployment("hello")
        assert d is not None and d["spec"]["replicas"] == 2
        assert objects.function_key(d) == ("hello", "$LATEST")
        await until(lambda: len(kube.pods(NS, f"{objects.INSTANCE}={d['metadata']['name']}")) == 2, what="2 pods")
        await h.orchestrator.apply(known["hello"], 0)
        assert h.replicas("hello") == 0
        del known["hello"]  # the function is deleted
        await h.orchestrator.forget("hello", "$LATEST")
        assert h.deployment("hello") is None
        assert ("POST", f"/apis/apps/v1/namespaces/{NS}/deployments") in kube.requests
        assert any(m == "PUT" and p.endswith("/scale") for m, p in kube.requests)  # the scale subresource
    finally:
        await h.orchestrator.stop()


async def test_the_deployment_of_an_idle_function_goes_when_the_function_is_deleted(kube: FakeKube, nc: NATS
                                                                                      ) -> None:
    known = {"idle": make_config("idle")}
    h = Harness(kube, nc, known)
    await h.orchestrator.start()
    try:
        await h.orchestrator.apply(known["idle"], 0)
        assert h.replicas("idle") == 0
        del known["idle"]  # deleted while idle: the autoscaler has nothing to say about it
        await until(lambda: h.deployment("idle") is None, what="the Deployment to be removed")
    finally:
        await h.orchestrator.stop()


async def test_a_deployment_deleted_or_rescaled_behind_the_controllers_back_converges(kube: FakeKube, nc: NATS
                                                                                       ) -> None:
    known = {"hello": make_config("hello")}
    h = Harness(kube, nc, known)
    await h.orchestrator.start()
    try:
        await h.orchestrator.apply(known["hello"], 3)
        name = objects.deployment_name("hello", "$LATEST")
        kube.store.delete("deployments", NS, name)
        await until(lambda: h.replicas("hello") == 3, what="the Deployment to be recreated")
        kube.store.mutate("deployments", NS, name, lambda d: d["spec"].__setitem__("replicas", 7))
        await until(lambda: h.replicas("hello") == 3, what="replicas to converge back")
    finally:
        await h.orchestrator.stop()


async def test_a_watch_that_drops_resumes_from_its_resource_version_and_relists_on_410(kube: FakeKube, nc: NATS
                                                                                      ) -> None:
    known = {"hello": make_config("hello")}
    h = Harness(kube, nc, known)
    await h.orchestrator.start()
    try:
        await h.orchestrator.apply(known["hello"], 1)
        name = objects.deployment_name("hello", "$LATEST")
        await until(lambda: kube.open_watches() >= 2, what="the watches")
        seen = len(kube.requests)
        assert kube.drop_watches() >= 2
        resumed = await until(lambda: [p for m, p in kube.requests[seen:] if "watch=true" in p and "deployments" in p],
                              what="the watches to resume")
        assert all("resourceVersion=" in p and "resourceVersion=&" not in p for p in resumed)
        kube.store.delete("deployments", NS, name)  # seen only through the resumed watch
        await until(lambda: h.replicas("hello") == 1, what="the Deployment to be recreated")
        # The resourceVersion is too old to resume from (410 Gone): the informer lists afresh.
        kube.inject_errors(r"/deployments$", 410, count=1, method="GET")
        kube.drop_watches()
        await until(lambda: len([p for m, p in kube.requests if "deployments?" in p and "watch=true" not in p]) >= 2,
                    what="a relist after 410")
        await until(lambda: kube.open_watches() >= 2, what="the watches to resume after the relist")
        kube.store.delete("deployments", NS, name)
        await until(lambda: h.replicas("hello") == 1, what="the Deployment to be recreated after a relist")
    finally:
        await h.orchestrator.stop()


async def test_conflicts_are_re_read_and_retried(kube: FakeKube, nc: NATS) -> None:
    known = {"hello": make_config("hello")}
    first = Harness(kube, nc, known, invoker_image="kambda:1")
    await first.orchestrator.start()
    await first.orchestrator.apply(known["hello"], 1)
    await first.orchestrator.stop()
    # A new controller with a new image: its template update meets two 409s, re-reads, and wins.
    second = Harness(kube, nc, known, invoker_image="kambda:2")
    name = objects.deployment_name("hello", "$LATEST")
    kube.inject_errors(rf"/deployments/{name}$", 409, count=2, method="PUT")
    await second.orchestrator.start()
    try:
        await second.orchestrator.apply(known["hello"], 2)
        d = second.deployment("hello")
        assert d is not None and d["spec"]["template"]["spec"]["containers"][0]["image"] == "kambda:2"
        assert d["spec"]["replicas"] == 2
        puts = [p for m, p in kube.requests if m == "PUT" and p.endswith(f"/deployments/{name}")]
        assert len(puts) == 3
    finally:
        await second.orchestrator.stop()


async def test_throttling_is_retried_with_backoff_honouring_retry_after(kube: FakeKube, nc: NATS) -> None:
    known = {"hello": make_config("hello")}
    h = Harness(kube, nc, known)
    await h.orchestrator.start()
    try:
        kube.inject_errors(r"/deployments$", 429, count=3, method="POST", retry_after=2)
        kube.inject_errors(r"/scale$", 503, count=2, method="PUT")
        await h.orchestrator.apply(known["hello"], 1)
        await h.orchestrator.apply(known["hello"], 4)
        assert h.replicas("hello") == 4
        assert h.sleeps.delays[:3] == [2.0, 2.0, 2.0]  # Retry-After is a floor
        assert len(h.sleeps.delays) == 5 and h.sleeps.delays[3] < h.sleeps.delays[4] < 1.0  # growing, jittered
        kube.inject_errors(r"/scale$", 500, count=100, method="PUT")
        with pytest.raises(KubeUnavailable):
            await h.orchestrator.apply(known["hello"], 5)
    finally:
        await h.orchestrator.stop()


async def test_a_restarted_controller_adopts_what_runs_and_removes_deleted_functions(kube: FakeKube, nc: NATS
                                                                                     ) -> None:
    known = {"keep": make_config("keep"), "gone": make_config("gone")}
    first = Harness(kube, nc, known)
    await first.orchestrator.start()
    await first.orchestrator.apply(known["keep"], 3)
    await first.orchestrator.apply(known["gone"], 1)
    await first.orchestrator.stop()
    uid = first.deployment("keep")["metadata"]["uid"]  # type: ignore[index]
    del known["gone"]  # deleted while no controller ran
    second = Harness(kube, nc, known)
    await second.orchestrator.start()
    try:
        assert second.orchestrator.adopted() == {("keep", "$LATEST"): 3}
        assert second.deployment("gone") is None
        assert second.deployment("keep")["metadata"]["uid"] == uid  # type: ignore[index]
    finally:
        await second.orchestrator.stop()


async def test_a_cold_start_claims_a_ready_pool_pod_which_goes_once_the_deployment_is_ready(kube: FakeKube,
                                                                                            nc: NATS) -> None:
    known = {"hello": make_config("hello")}
    h = Harness(kube, nc, known, pool_size=1)
    await h.orchestrator.start()
    try:
        pool = objects.pool_name("python3.12")
        await until(lambda: kube.pods(NS, objects.POOL_SELECTOR), what="a pool pod")
        (pool_pod,) = mark_ready(kube, objects.POOL_SELECTOR)
        await until(lambda: objects.pod_ready(h.orchestrator.pods.cache.get(pool_pod, {})), what="the watch")
        kube.inject_errors(r"/pods/", 409, count=1, method="PATCH")  # a conflict: re-read, still claimable
        await h.orchestrator.apply(known["hello"], 1)
        claimed = kube.store.get("pods", NS, pool_pod)
        assert claimed["metadata"]["labels"][objects.CLAIMED] == "true"
        assert objects.function_key(claimed) == ("hello", "$LATEST")
        assert h.orchestrator.stats("hello", "$LATEST").function == "hello"
        # The pool refills with a new pod; the function's own pod comes up; the claimed pod goes.
        await until(lambda: [p for p in kube.pods(NS, objects.POOL_SELECTOR) if p["metadata"]["name"] != pool_pod],
                    what="the pool to refill")
        assert kube.store.get("deployments", NS, pool)["spec"]["replicas"] == 1
        instance = f"{objects.INSTANCE}={objects.deployment_name('hello', '$LATEST')}"
        await until(lambda: kube.pods(NS, instance), what="the function's own pod")
        mark_ready(kube, instance)
        await until(lambda: pool_pod not in {p["metadata"]["name"] for p in kube.pods(NS)},
                    what="the claimed pod to be released")
        # With no ready pod at all and an empty pool, a cold start simply waits for the Deployment.
        await h.orchestrator.apply(known["hello"], 0)
        assert h.replicas("hello") == 0
    finally:
        await h.orchestrator.stop()


# -- leader election -------------------------------------------------------------------------------

def elector(kube: FakeKube, identity: str, clock: Clock) -> LeaderElector:
    return LeaderElector(KubeApi(kube.api_client(), max_attempts=1), NS, "kambda-controller", identity, clock=clock)


async def test_leader_failover_with_an_injected_clock(kube: FakeKube) -> None:
    clock = Clock()
    a, b = elector(kube, "a", clock), elector(kube, "b", clock)
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    clock.t += 6
    assert await a.try_acquire_or_renew()  # renewed
    clock.t += 6
    assert not await b.try_acquire_or_renew()  # b saw the renewal 6 s ago... no: it sees it now
    # a stops renewing (it died): b takes over once the record stood still for the lease duration.
    clock.t += 9.9
    assert not await b.try_acquire_or_renew()
    clock.t += 0.2
    assert await b.try_acquire_or_renew()
    lease = kube.store.get("leases", NS, "kambda-controller")
    assert lease["spec"]["holderIdentity"] == "b" and lease["spec"]["leaseTransitions"] == 1
    assert not await a.try_acquire_or_renew()  # the old leader comes back: it lost


async def test_a_deposed_leader_stops_before_anyone_else_can_lead(kube: FakeKube) -> None:
    """a leads, then cannot reach the API; b keeps trying on the same (virtual) clock. a must have
    stepped down before b acquires, and b must lead within 15 s of a's last renewal."""
    clock = Clock()
    a, b = elector(kube, "a", clock), elector(kube, "b", clock)
    events: list[tuple[str, float]] = []

    async def tick(delay: float) -> None:  # a's sleep: time passes, and b tries every 0.5 s meanwhile
        end = clock.t + delay
        while clock.t < end:
            clock.t = min(end, clock.t + 0.5)
            if not any(who == "b" for who, _ in events) and await b.try_acquire_or_renew():
                events.append(("b", clock.t))

    async def started() -> None:
        events.append(("a-start", clock.t))
        a.api = KubeApi(unreachable_client(), max_attempts=1)  # a is cut off from the API from now on

    async def stopped() -> None:
        events.append(("a-stop", clock.t))

    await a.run(started, stopped, sleep=tick)
    a_stop = next(t for who, t in events if who == "a-stop")
    while not any(who == "b" for who, _ in events):
        await tick(0.5)
    b_start = next(t for who, t in events if who == "b")
    assert a_stop < b_start <= a.last_renew + 15, events


def unreachable_client() -> kubernetes.client.ApiClient:
    port = free_port()  # nothing listens there: connections are refused
    configuration = kubernetes.client.Configuration()
    configuration.host = f"http://127.0.0.1:{port}"
    configuration.retries = 0
    return kubernetes.client.ApiClient(configuration)


async def test_never_two_leaders_whatever_the_interleaving(kube: FakeKube) -> None:
    """Three candidates attempt in random order with random pauses; a candidate counts as leading
    while its last success is younger than the renew deadline (when it would step down). At no
    moment may two count as leading."""
    clock = Clock()
    rng = random.Random(5)
    candidates = [elector(kube, name, clock) for name in "abc"]
    last_win: dict[str, float] = {}
    stalled: dict[str, float] = {}
    leaders_seen = set()
    for _ in range(300):
        clock.t += rng.choice([0.5, 1.0, 2.0, 3.0])
        for candidate in rng.sample(candidates, 3):
            if clock.t < stalled.get(candidate.identity, 0.0):
                continue  # paused (a GC stop, a slow node, a partition)
            if rng.random() < 0.05:
                stalled[candidate.identity] = clock.t + rng.uniform(3.0, 20.0)
                continue
            if await candidate.try_acquire_or_renew():
                last_win[candidate.identity] = clock.t
                leaders_seen.add(candidate.identity)
            else:
                last_win.pop(candidate.identity, None)  # it learnt it does not lead
            leading = [n for n, t in last_win.items() if clock.t - t < candidates[0].renew_deadline]
            assert len(leading) <= 1, (clock.t, last_win)
    assert len(leaders_seen) >= 2  # leadership did move


async def test_the_leader_label_goes_on_and_off_the_own_pod(kube: FakeKube) -> None:
    api = KubeApi(kube.api_client())
    kube.store.create("pods", NS, {"metadata": {"name": "controller-0", "labels": {objects.PART_OF: "kambda"}},
                                   "spec": {"containers": [{"name": "c", "image": "kambda"}]}})
    await label_pod(api, NS, "controller-0", leading=True)
    assert kube.store.get("pods", NS, "controller-0")["metadata"]["labels"][objects.ROLE] == "leader"
    await label_pod(api, NS, "controller-0", leading=False)
    assert objects.ROLE not in kube.store.get("pods", NS, "controller-0")["metadata"]["labels"]


async def test_client_library_errors_never_leak(kube: FakeKube) -> None:
    sleeps = Sleeps()
    api = KubeApi(kube.api_client(), sleep=sleeps)
    with pytest.raises(KubeError) as invalid:  # the client's own model check (pydantic) refuses the body
        await api.call(api.apps.create_namespaced_deployment, NS, {"metadata": {"name": "x"}})
    assert invalid.value.status == 422 and not sleeps.delays
    with pytest.raises(NotFound):
        await api.call(api.apps.read_namespaced_deployment, "missing", NS)
    cut_off = KubeApi(unreachable_client(), max_attempts=3, sleep=sleeps)
    with pytest.raises(KubeUnavailable):  # no answer at all: retried, then one error of ours
        await cut_off.call(cut_off.core.list_namespaced_pod, NS)
    assert len(sleeps.delays) == 2


# -- credentials with assignments, and stats only from their own pod -----------------------------


async def test_assignments_carry_role_credentials_sent_again_at_half_life_and_forged_stats_are_ignored(
        kube: FakeKube, nc: NATS) -> None:
    known = {"hello": make_config("hello")}
    wall = Clock(5000.0)
    minted: list[RoleCredentials] = []

    def role_credentials(config: FunctionConfig) -> RoleCredentials:
        minted.append(RoleCredentials(access_key_id=f"ASIA{len(minted)}", session_token=f"token-{len(minted)}",
                                      expires=int(wall() + 100)))
        return minted[-1]

    h = Harness(kube, nc, known)
    h.orchestrator = KubernetesOrchestrator(nc, h.api, h.settings, lambda f, v: known.get(f),
                                            nats_token=lambda f, v: f"nats-{f}", role_credentials=role_credentials,
                                            wall=wall)
    await h.orchestrator.start()
    heard: list[Assignment] = []
    try:
        await h.orchestrator.apply(known["hello"], 1)
        instance = f"{objects.INSTANCE}={objects.deployment_name('hello', '$LATEST')}"
        await until(lambda: kube.pods(NS, instance), what="the function's pod")
        (pod,) = mark_ready(kube, instance)
        await until(lambda: objects.pod_ready(h.orchestrator.pods.cache.get(pod, {})), what="the watch")
        key = "k" * 32

        async def on_assignment(msg: Msg) -> None:
            heard.append(Assignment.FromString(msg.data))
            held = FunctionStats(function="hello", version="$LATEST", environments=1, idle=1)
            await msg.respond(AssignmentAck(invoker_id=pod, stats=held).SerializeToString())

        await nc.subscribe(bus.assign_subject(pod, key), cb=on_assignment)

        async def report(subject: str, **fields: Any) -> None:
            await nc.publish(subject, InvokerStats(**fields).SerializeToString())
            await nc.flush()

        held = [FunctionStats(function="hello", version="$LATEST", environments=1, idle=1),
                FunctionStats(function="other", version="$LATEST", environments=50)]
        await report(bus.stats_subject(pod, key), invoker_id=pod, assign_key=key, hello=True, functions=held)
        await until(lambda: heard, what="the assignment")
        first = heard[-1]
        assert first.nats_token == "nats-hello" and first.role_credentials == minted[-1]
        assert first.role_credentials.expires == 5100
        await until(lambda: h.orchestrator.stats("hello", "$LATEST").environments == 1, what="the pod's report")

        # Reports that are not the pod's own: no key (what a stolen function credential could send), a
        # subject of another pod's, a body naming another pod than its subject does. None is counted.
        empty = [FunctionStats(function="hello", version="$LATEST", environments=0)]
        # Each says the pod restarted (hello): one that was believed would have its assignment sent again.
        await report(bus.stats_subject(pod), invoker_id=pod, hello=True, functions=empty)
        await report(bus.stats_subject("someone-else", key), invoker_id=pod, assign_key=key, hello=True,
                     functions=empty)
        await report(bus.stats_subject(pod, "x" * 32), invoker_id=pod, assign_key="x" * 32, hello=True,
                     functions=empty)
        await report(bus.stats_subject(pod, key), invoker_id="someone-else", assign_key=key, hello=True,
                     functions=empty)
        beat = [FunctionStats(function="hello", version="$LATEST", environments=1, idle=1, cold_starts=1)]
        await report(bus.stats_subject(pod, key), invoker_id=pod, assign_key=key, functions=beat)  # after them
        await until(lambda: h.orchestrator.stats("hello", "$LATEST").cold_starts == 1, what="the heartbeat")
        assert h.orchestrator.stats("hello", "$LATEST").environments == 1
        assert len(heard) == 1  # it holds its assignment: nothing is sent again

        # Half the credentials' life later, its next heartbeat brings it new ones.
        wall.t += 51
        await report(bus.stats_subject(pod, key), invoker_id=pod, assign_key=key, functions=held)
        await until(lambda: len(heard) >= 2, what="the credentials sent again")
        assert len(heard) == 2
        assert heard[-1].role_credentials == minted[-1] != first.role_credentials
        assert heard[-1].role_credentials.expires == 5151
        assert heard[-1].config.revision_id == first.config.revision_id
    finally:
        await h.orchestrator.stop()
