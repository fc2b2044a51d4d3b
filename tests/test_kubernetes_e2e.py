"""End to end on a fake cluster: real nats-server, real controller (KAMBDA_ORCHESTRATOR=kubernetes,
pointed at the fake API server by a kubeconfig), real gateway, boto3; the fake's kubelet turns each
pod into a real local invoker process. Deploy, invoke, warm-pool claim, scale up, scale to zero,
controller restart, delete.

The function answers the invoker id it runs under (the pod's name, found in its process tree),
which tells a claimed pool pod from one of the function's own Deployment.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from controller.orchestrators import k8s_objects as objects
from controller.settings import KubernetesSettings
from tests.conftest import REPO, free_port, make_zip, unique, wait_for
from tests.fakekube import FakeKube
from tests.fakekube.kubelet import Kubelet
from tests.k8s_harness import NatsProcess, Service, service_env, start_controller, start_gateway, write_kubeconfig

NAMESPACE = "kambda-fns"

HANDLER = '''
import os, time

def invoker_id():
    pid = os.getpid()
    while pid > 1:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                for item in f.read().split(b"\\0"):
                    if item.startswith(b"KAMBDA_INVOKER_ID="):
                        return item.split(b"=", 1)[1].decode()
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            return ""
    return ""

def handler(event, context):
    if event.get("mark"):
        with open(event["mark"], "a") as f:
            f.write(context.aws_request_id + "\\n")
    time.sleep(event.get("sleep", 0))
    return {"invoker": invoker_id()}
'''


@dataclass
class Platform:
    cluster: FakeKube
    kubelet: Kubelet
    nats: NatsProcess
    controller: Service
    gateway: Service
    controller_env: dict[str, str]
    url: str
    log_dir: Path

    def lambda_client(self):  # type: ignore[no-untyped-def]
        return boto3.client("lambda", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="x",
                            aws_secret_access_key="x",
                            config=Config(retries={"max_attempts": 1}, read_timeout=120, connect_timeout=10))

    def restart_controller(self, kill: bool = True) -> None:
        import signal

        self.controller.stop(signal.SIGKILL if kill else signal.SIGTERM)
        self.controller, _ = start_controller(self.controller_env, self.log_dir, name=f"controller-{unique('r')}")

    def logs(self) -> str:
        return "".join(f"\n== {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                       for p in sorted(self.log_dir.glob("*.log"))) + self.kubelet.logs()

    def status(self, name: str) -> tuple[int, dict]:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.url}/_kambda/v1/functions/{name}", timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, {}

    def deployments(self) -> list[dict]:
        return [d for d in self.cluster.store.list("deployments", NAMESPACE)[0]
                if (d["metadata"].get("labels") or {}).get(objects.ROLE) == objects.ROLE_FUNCTION]

    def deployment(self, function: str) -> dict | None:
        name = objects.deployment_name(function, "$LATEST")
        return next((d for d in self.deployments() if d["metadata"]["name"] == name), None)

    def pods(self, role: str, function: str | None = None) -> list[dict]:
        found = []
        for pod in self.cluster.store.list("pods", NAMESPACE)[0]:
            if (pod["metadata"].get("labels") or {}).get(objects.ROLE) != role:
                continue
            if function is None or objects.function_key(pod) == (function, "$LATEST"):
                found.append(pod)
        return found

    def ready(self, role: str, function: str | None = None) -> list[dict]:
        return [p for p in self.pods(role, function) if objects.pod_ready(p)]


@pytest.fixture(scope="module")
def k8s(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("k8s-e2e")
    log_dir = root / "logs"
    log_dir.mkdir()
    nats = NatsProcess(root / "nats")
    cluster = FakeKube().start()
    # Pods become Ready once their invoker says it is (connected to NATS, listening for assignments).
    # Pods run as uid 10001 on a cluster, where the invoker's own sandbox is off: here too (the handler
    # reads its invoker's id from the invoker's environment, which the sandbox would rightly hide).
    kubelet = Kubelet(cluster, NAMESPACE, {"PYTHONPATH": str(REPO), "GRPC_VERBOSITY": "ERROR",
                                           "KAMBDA_SANDBOX": "false"},
                      log_dir=log_dir / "pods", ready_when=r"invoker \S+ ready").start()
    kubeconfig = write_kubeconfig(root / "kubeconfig", cluster.url, NAMESPACE)
    controller_env = service_env(
        KAMBDA_ORCHESTRATOR="kubernetes", KAMBDA_KUBECONFIG=str(kubeconfig), KAMBDA_NATS_URL=nats.url,
        KAMBDA_STATE_DIR=str(root / "controller"), KAMBDA_K8S_NAMESPACE=NAMESPACE, KAMBDA_K8S_POOL_SIZE="1",
        KAMBDA_CONTROLLER_LISTEN=f"127.0.0.1:{free_port()}", KAMBDA_SCALE_TO_ZERO_AFTER="3",
        KAMBDA_STABLE_WINDOW="3", KAMBDA_PANIC_WINDOW="1",
        KAMBDA_K8S_POD_TEMPLATE=json.dumps({"containers": [{"name": "invoker", "env": [
            {"name": "KAMBDA_STATE_DIR", "value": str(root / "pods")}]}]}),
    )
    controller, address = start_controller(controller_env, log_dir)
    gateway, url = start_gateway(service_env(KAMBDA_NATS_URL=nats.url, KAMBDA_CONTROLLER=address, KAMBDA_PORT="0"),
                                 log_dir)
    running = Platform(cluster, kubelet, nats, controller, gateway, controller_env, url, log_dir)
    yield running
    gateway.stop()
    running.controller.stop()
    kubelet.stop()
    cluster.stop()
    nats.stop()
    assert not cluster.errors


def _invoke(lam, name: str, payload: dict | None = None) -> dict:  # type: ignore[no-untyped-def]
    response = lam.invoke(FunctionName=name, Payload=json.dumps(payload or {}))
    body = json.loads(response["Payload"].read())
    assert response["StatusCode"] == 200 and "FunctionError" not in response, body
    return body


def _create(lam, name: str) -> None:  # type: ignore[no-untyped-def]
    lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Timeout=30,
                        Role="arn:aws:iam::000000000000:role/test", Code={"ZipFile": make_zip({"app.py": HANDLER})})


def test_cold_start_claims_a_warm_pool_pod_then_the_deployment_takes_over(k8s: Platform) -> None:
    lam = k8s.lambda_client()
    pool_prefix = objects.pool_name("python3.12") + "-"
    (pool_pod, *_) = wait_for(lambda: k8s.ready(objects.ROLE_POOL), 60, what="a ready pool pod")  # type: ignore[misc]
    # The readiness probe the pods carry passes against a running invoker, with the pod's own env.
    probe = pool_pod["spec"]["containers"][0]["readinessProbe"]["exec"]["command"]
    env = k8s.kubelet.processes()[pool_pod["metadata"]["name"]].env
    assert subprocess.run(probe, env=env, check=False).returncode == 0
    assert subprocess.run(probe, env={**env, "KAMBDA_INVOKER_ID": "nobody"}, check=False).returncode != 0
    name = unique("k8s")
    _create(lam, name)
    first = _invoke(lam, name)
    assert first["invoker"].startswith(pool_prefix), (first, k8s.logs())
    deployment = wait_for(lambda: k8s.deployment(name), 30, what="the function's Deployment")
    assert isinstance(deployment, dict) and deployment["spec"]["replicas"] >= 1
    labels = deployment["metadata"]["labels"]
    assert labels[objects.PART_OF] == "kambda" and labels[objects.ROLE] == "function"
    # The pool refills, the function's own pod comes up, and the claimed pod is released.
    wait_for(lambda: k8s.ready(objects.ROLE_POOL), 60, what="the pool to refill")
    wait_for(lambda: not [p for p in k8s.pods(objects.ROLE_FUNCTION, name)
                          if p["metadata"]["name"].startswith(pool_prefix)], 60, what="the claimed pod to go")
    second = _invoke(lam, name)
    assert second["invoker"].startswith(deployment["metadata"]["name"] + "-"), second


def test_scale_up_under_load_and_down_to_zero(k8s: Platform) -> None:
    lam = k8s.lambda_client()
    name = unique("k8s")
    _create(lam, name)
    results: list[object] = []

    def call() -> None:
        try:
            results.append(_invoke(k8s.lambda_client(), name, {"sleep": 3}))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    wait_for(lambda: (k8s.deployment(name) or {}).get("spec", {}).get("replicas", 0) >= 2, 60,
             what="the Deployment to scale up")
    for thread in threads:
        thread.join(120)
    assert len(results) == 4 and all(isinstance(r, dict) for r in results), results
    assert len({r["invoker"] for r in results}) >= 2  # type: ignore[index]  # served by more than one pod
    wait_for(lambda: (k8s.deployment(name) or {}).get("spec", {}).get("replicas") == 0, 90,
             what="the Deployment to scale to zero")
    wait_for(lambda: not k8s.pods(objects.ROLE_FUNCTION, name), 60, what="no pod left")
    assert _invoke(lam, name)["invoker"]  # and it comes back from zero


def test_new_code_reaches_running_pods(k8s: Platform) -> None:
    lam = k8s.lambda_client()
    name = unique("k8s")
    _create(lam, name)
    assert "version" not in _invoke(lam, name)
    lam.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": HANDLER.replace(
        'return {"invoker": invoker_id()}', 'return {"invoker": invoker_id(), "version": 2}')}))
    wait_for(lambda: _invoke(lam, name).get("version") == 2, 60, interval=0.5, what="the new code to run")

    def reported() -> bool:  # by the pods' invokers; an idle function may scale to zero (after 3 s) at any time
        _invoke(lam, name)
        code, status = k8s.status(name)
        return code == 200 and status["environments"] >= 1

    wait_for(reported, 60, interval=0.5, what="the pods' invokers to report an environment")


def test_controller_restart_adopts_and_cleans_up(k8s: Platform) -> None:
    lam = k8s.lambda_client()
    name = unique("k8s")
    _create(lam, name)
    _invoke(lam, name)
    before = wait_for(lambda: k8s.deployment(name), 30, what="the function's Deployment")
    assert isinstance(before, dict)
    # A Deployment left behind by a function that no longer exists (deleted while no controller ran).
    stray = objects.function_deployment(KubernetesSettings(namespace=NAMESPACE), "gone-fn", "$LATEST", "python3.12", 1)
    k8s.cluster.store.create("deployments", NAMESPACE, stray)
    k8s.restart_controller(kill=True)
    wait_for(lambda: not [d for d in k8s.deployments() if d["metadata"]["name"] == stray["metadata"]["name"]],
             60, what="the stray Deployment to be removed")
    after = k8s.deployment(name)
    assert after is not None and after["metadata"]["uid"] == before["metadata"]["uid"]  # adopted, not recreated
    assert _invoke(lam, name)["invoker"]
    lam.delete_function(FunctionName=name)
    wait_for(lambda: k8s.deployment(name) is None, 60, what="the deleted function's Deployment to go")


def test_a_stopping_invoker_finishes_the_request_it_runs(platform, lam, create, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A pod is deleted whenever its Deployment scales down, busy or not: its invoker's SIGTERM
    must not cost the running request (shown on the embedded platform, same invoker)."""
    import os
    import signal

    from kambda import procs

    name = create(HANDLER)
    _invoke(lam, name)
    results: list[dict] = []
    mark = tmp_path / "runs"
    caller = threading.Thread(target=lambda: results.append(_invoke(lam, name, {"sleep": 2, "mark": str(mark)})))
    caller.start()
    wait_for(lambda: platform.status(name)["busy"] == 1, 30, what="the request to run")
    assert platform.proc is not None
    (invoker,) = procs.service_pids(platform.proc.pid, "invoker")
    os.kill(invoker, signal.SIGTERM)
    caller.join(60)
    assert results and results[0]["invoker"] == "local-0"
    assert len(mark.read_text().split()) == 1  # it ran to the end once, not killed and run again


def test_two_controllers_one_leads_and_the_standby_takes_over(tmp_path: Path) -> None:
    """Leader election between two real controller processes: the leader carries the Service's
    label and serves; the standby answers only Ping; killing the leader hands over to the standby."""
    import signal

    import grpc

    from kambda.v1 import controller_pb2 as pb
    from kambda.v1.controller_pb2_grpc import ControllerStub

    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    nats = NatsProcess(tmp_path / "nats")
    kube = FakeKube().start()
    controllers: dict[str, Service] = {}
    try:
        for pod in ("ctrl-a", "ctrl-b"):
            kube.store.create("pods", "kambda", {"metadata": {"name": pod, "labels": {objects.PART_OF: "kambda"}},
                                                 "spec": {"containers": [{"name": "controller", "image": "kambda"}]}})
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        addresses = {}

        def start(pod: str) -> None:
            env = service_env(
                KAMBDA_ORCHESTRATOR="kubernetes", KAMBDA_KUBECONFIG=str(kubeconfig), KAMBDA_NATS_URL=nats.url,
                KAMBDA_STATE_DIR=str(tmp_path / pod), KAMBDA_K8S_NAMESPACE="fns", KAMBDA_K8S_POOL_SIZE="1",
                KAMBDA_LEADER_ELECTION="true", KAMBDA_POD_NAME=pod, KAMBDA_POD_NAMESPACE="kambda",
                KAMBDA_CONTROLLER_LISTEN=f"127.0.0.1:{free_port()}")
            controllers[pod], addresses[pod] = start_controller(env, log_dir, name=pod)

        def role(pod: str) -> str | None:
            return (kube.store.get("pods", "kambda", pod)["metadata"].get("labels") or {}).get(objects.ROLE)

        def holder() -> str | None:
            try:
                return kube.store.get("leases", "kambda", "kambda-controller")["spec"].get("holderIdentity")
            except Exception:  # noqa: BLE001 - no lease yet
                return None

        def call(pod: str, method: str, request: object) -> grpc.StatusCode:
            with grpc.insecure_channel(addresses[pod]) as channel:
                try:
                    getattr(ControllerStub(channel), method)(request, timeout=10)
                    return grpc.StatusCode.OK
                except grpc.RpcError as exc:
                    return exc.code()  # type: ignore[no-any-return]

        start("ctrl-a")
        wait_for(lambda: role("ctrl-a") == "leader", 30, what="ctrl-a to lead")
        start("ctrl-b")
        assert holder() == "ctrl-a" and role("ctrl-b") is None
        assert call("ctrl-b", "Ping", pb.PingRequest()) == grpc.StatusCode.OK
        assert call("ctrl-b", "ListFunctions", pb.ListFunctionsRequest()) == grpc.StatusCode.UNAVAILABLE
        assert call("ctrl-a", "ListFunctions", pb.ListFunctionsRequest()) == grpc.StatusCode.OK
        # Only the leader acts: one warm pool Deployment, created once.
        creates = [p for m, p in kube.requests if m == "POST" and p.endswith("/namespaces/fns/deployments")]
        assert len(creates) == 1

        controllers["ctrl-a"].stop(signal.SIGKILL)  # no clean hand-over: the lease must run out
        wait_for(lambda: role("ctrl-b") == "leader", 30, what="ctrl-b to take over")
        assert holder() == "ctrl-b"
        assert call("ctrl-b", "ListFunctions", pb.ListFunctionsRequest()) == grpc.StatusCode.OK
        assert len([p for m, p in kube.requests if m == "POST" and p.endswith("/namespaces/fns/deployments")]) == 1

        controllers["ctrl-b"].stop(signal.SIGTERM)  # a clean stop gives the lease and the label up
        assert controllers["ctrl-b"].proc.returncode == 0, controllers["ctrl-b"].log()
        assert not holder() and role("ctrl-b") is None
    finally:
        for service in controllers.values():
            service.stop()
        kube.stop()
        nats.stop()
