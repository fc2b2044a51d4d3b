"""Per-function NATS credentials on Kubernetes (issue 27, part 5), end to end on the fake cluster:
nats-server admits only kambda's identities and asks the controller (auth callout) about anything
else; each function version's invoker pod gets, with its assignment, a credential of that version
alone. Whatever a function pod could steal sees only its own function's subjects."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import nkeys
import pytest
from botocore.config import Config
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from controller.orchestrators import k8s_objects as objects
from kambda import bus
from kambda.aws import roles
from kambda.bus import callout, chunks, identities
from kambda.bus.natsserver import find_binary, write_config
from kambda.v1.invoker_pb2 import InvokerStats
from tests.conftest import REPO, free_port, make_zip, unique, until, wait_for
from tests.fakekube import FakeKube
from tests.fakekube.kubelet import Kubelet
from tests.k8s_harness import service_env, start_controller, start_gateway, write_kubeconfig

NAMESPACE = "kambda-fns"
HANDLER = """
import os
def handler(event, context):
    if event.get('credentials'):
        return {k: os.environ.get(k) for k in ('AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN')}
    return {'ok': context.function_name, 'v': os.environ.get('VERSION')}
"""
#: Function pods' execution-role credentials are good for this long (sent again with half of it left).
ROLE_TTL_S = 20


@dataclass
class Cluster:
    url: str
    nats_url: str
    creds: dict[str, Path]
    seed: bytes
    role_key: bytes
    nats_log: Path
    kube: FakeKube

    def pod_of(self, function: str) -> str:
        for pod in self.kube.store.list("pods", NAMESPACE)[0]:
            if objects.function_key(pod) == (function, "$LATEST") and objects.pod_ready(pod):
                return str(pod["metadata"]["name"])
        raise AssertionError(f"no ready pod of {function}")

    def lambda_client(self):  # type: ignore[no-untyped-def]
        return boto3.client("lambda", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="x",
                            aws_secret_access_key="x",
                            config=Config(retries={"max_attempts": 1}, read_timeout=120, connect_timeout=10))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("k8s-nats-auth")
    log_dir = root / "logs"
    log_dir.mkdir()
    creds = identities.issue(root / "creds")
    seed = callout.new_account_seed()
    (root / "callout.seed").write_bytes(seed)
    roles.write_key(root / "roles.key")
    issuer = nkeys.from_seed(bytearray(seed)).public_key.decode()
    # Pods log in through the callout (pod:<id>:<key>), so "pod" is no static user; their file says so.
    logins = {n: identities.read(p) for n, p in creds.items() if n != "pod"}
    pod_creds = root / "creds" / "pod-bound.json"
    pod_creds.write_text(json.dumps({**identities.read(creds["pod"]), "bind": True}))
    config = write_config(root / "nats", port=free_port(), logins=logins, callout_issuer=issuer)
    nats_log = root / "nats" / "nats.log"
    with nats_log.open("ab") as out:
        server = subprocess.Popen([find_binary(), "-c", str(config)], stdout=out, stderr=out)
    ports = root / "nats" / "run" / f"nats-server_{server.pid}.ports"
    nats_url = str(wait_for(lambda: ports.exists() and json.loads(ports.read_text())["nats"][0], 15,
                            what="nats-server"))
    kube = FakeKube().start()
    kubelet = Kubelet(kube, NAMESPACE, {"PYTHONPATH": str(REPO), "GRPC_VERBOSITY": "ERROR", "KAMBDA_SANDBOX": "false",
                                        # What the chart's Secret volume gives every invoker pod.
                                        "KAMBDA_NATS_CREDS": str(pod_creds)},
                      log_dir=log_dir / "pods", ready_when=r"invoker \S+ ready").start()
    kubeconfig = write_kubeconfig(root / "kubeconfig", kube.url, NAMESPACE)
    controller, address = start_controller(service_env(
        KAMBDA_ORCHESTRATOR="kubernetes", KAMBDA_KUBECONFIG=str(kubeconfig), KAMBDA_NATS_URL=nats_url,
        KAMBDA_NATS_CREDS=str(creds["controller"]), KAMBDA_K8S_NATS_CALLOUT_SEED_FILE=str(root / "callout.seed"),
        KAMBDA_K8S_NATS_POD_CREDS=str(pod_creds),
        KAMBDA_ROLE_KEY_FILE=str(root / "roles.key"), KAMBDA_K8S_ROLE_TTL_S=str(ROLE_TTL_S),
        KAMBDA_STATE_DIR=str(root / "controller"), KAMBDA_K8S_NAMESPACE=NAMESPACE, KAMBDA_K8S_POOL_SIZE="0",
        KAMBDA_CONTROLLER_LISTEN=f"127.0.0.1:{free_port()}",
        KAMBDA_K8S_POD_TEMPLATE=json.dumps({"containers": [{"name": "invoker", "env": [
            {"name": "KAMBDA_STATE_DIR", "value": str(root / "pods")}]}]})), log_dir)
    gateway, url = start_gateway(service_env(KAMBDA_NATS_URL=nats_url, KAMBDA_NATS_CREDS=str(creds["gateway"]),
                                             KAMBDA_CONTROLLER=address, KAMBDA_PORT="0",
                                             KAMBDA_ROLE_KEY_FILE=str(root / "roles.key")), log_dir)
    yield Cluster(url, nats_url, {**creds, "pod": pod_creds}, seed, roles.read_key(str(root / "roles.key")),
                  nats_log, kube)
    gateway.stop()
    controller.stop()
    kubelet.stop()
    kube.stop()
    server.terminate()
    server.wait(10)
    assert not kube.errors


def _deploy_and_invoke(cluster: Cluster) -> str:
    lam = cluster.lambda_client()
    name = unique("k8sauth")
    lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Timeout=30,
                        Role=f"arn:aws:iam::000000000000:role/{name}-role", Code={"ZipFile": _package(name)})
    response = lam.invoke(FunctionName=name, Payload=b"{}")
    assert json.loads(response["Payload"].read()) == {"ok": name, "v": None}
    return name


def _package(name: str) -> bytes:
    """Each function's own package (its name in it), so no two share a code object."""
    return make_zip({"app.py": HANDLER, "name.txt": name})


async def _probe(nc: NATS, errors: list[Exception], subjects: dict[str, str]) -> dict[str, str]:
    """For each probe (name -> 'sub <subject>' or 'pub <subject>'): 'refused' or 'allowed'."""
    out = {}
    for what, action in subjects.items():
        verb, subject = action.split(" ", 1)
        before = len(errors)
        if verb == "sub":
            await nc.subscribe(subject)
        else:
            await nc.publish(subject, b"{}", reply=nc.new_inbox())
        await nc.flush()
        try:
            await until(lambda b=before: len(errors) > b, 2, "a violation")  # type: ignore[misc]
            out[what] = "refused"
        except AssertionError:
            out[what] = "allowed"
    return out


def test_function_pods_log_in_with_a_credential_of_their_own_function(cluster: Cluster) -> None:
    mine, other = _deploy_and_invoke(cluster), _deploy_and_invoke(cluster)  # served: the pods' credentials work
    # Neither the platform nor the pods ever hit a permission they lack.
    own = [line for line in cluster.nats_log.read_text().splitlines() if "Violation" in line]
    assert own == [], own

    stolen_token = callout.mint(callout.token_key(cluster.seed), mine, "$LATEST", time.time())
    probes = {
        "pull_mine": f"pub $JS.API.CONSUMER.MSG.NEXT.{bus.SYNC_STREAM}.{bus.consumer_name(mine, '$LATEST')}",
        "pull_other": f"pub $JS.API.CONSUMER.MSG.NEXT.{bus.SYNC_STREAM}.{bus.consumer_name(other, '$LATEST')}",
        "sub_everything": "sub >",
        "sub_invocations": "sub kambda.sync.>",
        "sub_gateway_inboxes": "sub _INBOX.gateway.>",
        "sub_other_logs": f"sub kambda.logs.{other}",
        "logs_as_other": f"pub kambda.logs.{other}",
        "purge_registry": f"pub $JS.API.STREAM.PURGE.KV_{bus.FUNCTIONS_BUCKET}",
        "create_consumer": f"pub $JS.API.CONSUMER.CREATE.{bus.SYNC_STREAM}",
        # Code comes with a credential of its own (the next test): this one reads none.
        "code_meta": f"pub $JS.API.DIRECT.GET.OBJ_{bus.CODE_BUCKET}.$O.{bus.CODE_BUCKET}.M.x",
        "code_consumer": f"pub $JS.API.CONSUMER.CREATE.OBJ_{bus.CODE_BUCKET}.x.$O.{bus.CODE_BUCKET}.C.x",
        "stats_of_any_pod": f"pub {bus.stats_subject('some-pod')}",
    }

    victim_pod = cluster.pod_of(other)
    guessed = secrets.token_hex(16)  # the victim pod's real key is never on a subject a pod may read
    probes_pod = {**probes, "sub_all_assignments": "sub kambda.invoker.>",
                  "sub_victim_assignments": f"sub kambda.invoker.{victim_pod}.*.assign",
                  "stats_of_victim": f"pub {bus.stats_subject(victim_pod)}",
                  "stats_of_victim_key": f"pub {bus.stats_subject(victim_pod, secrets.token_hex(16))}"}
    pod_password = identities.read(cluster.creds["pod"])["password"]

    async def attack() -> tuple[dict[str, str], dict[str, str], str, list[bytes]]:
        results = []
        for login, tries in (({"token": stolen_token, "inbox_prefix": callout.inbox_prefix(mine, "$LATEST")}, probes),
                             ({"user": callout.pod_user(victim_pod, guessed), "password": pod_password,
                               "inbox_prefix": callout.pod_inbox(guessed)}, probes_pod)):
            errors: list[Exception] = []

            async def on_error(exc: Exception, errors: list[Exception] = errors) -> None:
                errors.append(exc)

            nc = await bus.connect(cluster.nats_url, "test-stolen", error_cb=on_error, **login)
            try:
                results.append(await _probe(nc, errors, tries))
            finally:
                await nc.close()
        # A pod that claims to be the victim, with a key of its own, to have the victim's next
        # assignment (its function's credential) sent where it listens: the controller keeps the
        # key the victim's first report named.
        heard: list[bytes] = []

        async def on_assignment(msg: Msg) -> None:
            heard.append(msg.data)

        thief = await bus.connect(cluster.nats_url, "test-thief", user=callout.pod_user(victim_pod, guessed),
                                  password=pod_password, inbox_prefix=callout.pod_inbox(guessed))
        try:
            await thief.subscribe(bus.assign_subject(victim_pod, guessed), cb=on_assignment)
            forged_report = InvokerStats(invoker_id=victim_pod, assign_key=guessed, hello=True)
            await thief.publish(bus.stats_subject(victim_pod, guessed), forged_report.SerializeToString())
            await thief.flush()
            lam = cluster.lambda_client()
            lam.update_function_configuration(FunctionName=other, Environment={"Variables": {"VERSION": "2"}})
            lam.get_waiter("function_updated_v2").wait(FunctionName=other)
            wait_for(lambda: json.loads(lam.invoke(FunctionName=other, Payload=b"{}")["Payload"].read())
                     == {"ok": other, "v": "2"}, 60, what="the victim to run its new configuration")
        finally:
            await thief.close()
        forged = callout.mint(b"x" * 32, other, "$LATEST", time.time())  # not the controller's key
        host, port = cluster.nats_url.rsplit("//", 1)[-1].rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        assert (await reader.readline()).startswith(b"INFO {")
        writer.write(b"CONNECT " + json.dumps({"verbose": False, "auth_token": forged}).encode() + b"\r\nPING\r\n")
        answer = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        await writer.wait_closed()
        return results[0], results[1], answer.decode(), heard

    with_token, with_pod_creds, forged, heard = asyncio.run(attack())
    assert with_token == {**{k: "refused" for k in probes}, "pull_mine": "allowed"}, with_token
    assert with_pod_creds == {k: "refused" for k in probes_pod}, with_pod_creds
    assert "Authorization Violation" in forged
    assert heard == []  # the victim's new assignment went to the victim alone (it serves the new config)


def test_a_pods_code_credential_reads_its_own_package_and_no_other(cluster: Cluster) -> None:
    mine, other = _deploy_and_invoke(cluster), _deploy_and_invoke(cluster)  # their pods read their code with it
    sha_mine, sha_other = (hashlib.sha256(_package(name)).hexdigest() for name in (mine, other))

    async def attack() -> tuple[bytes, dict[str, str]]:
        admin = await bus.connect(cluster.nats_url, "test-admin", str(cluster.creds["admin"]))
        try:
            info_mine = await chunks.object_info(admin.jetstream(), bus.CODE_BUCKET, sha_mine)
            info_other = await chunks.object_info(admin.jetstream(), bus.CODE_BUCKET, sha_other)
        finally:
            await admin.close()
        # What the controller sends a pod of `mine` with its assignment.
        token = callout.mint_code(callout.token_key(cluster.seed), sha_mine, info_mine.nuid or "", time.time())
        grant = callout.code_grant_of(token)
        assert grant is not None
        errors: list[Exception] = []

        async def on_error(exc: Exception) -> None:
            errors.append(exc)

        nc = await bus.connect(cluster.nats_url, "test-stolen-code", token=token,
                               inbox_prefix=callout.code_inbox(grant.reader), error_cb=on_error)
        try:
            js = nc.jetstream(timeout=2)
            own = await chunks.read_object(js, bus.CODE_BUCKET, sha_mine, consumer=grant.reader)
            attempts = {
                "meta_other": chunks.object_info(js, bus.CODE_BUCKET, sha_other),
                "chunks_other": _drain(chunks.object_chunks(js, bus.CODE_BUCKET, info_other, consumer=grant.reader)),
                "chunks_mine_another_consumer": _drain(chunks.object_chunks(js, bus.CODE_BUCKET, info_mine)),
            }
            outcome = {}
            for what, attempt in attempts.items():
                before = len(errors)
                try:
                    await attempt
                    outcome[what] = "allowed"
                except Exception:  # noqa: BLE001 - refused: the request goes unanswered
                    outcome[what] = "refused" if len(errors) > before else "failed otherwise"
            return own, outcome
        finally:
            await nc.close()

    own, outcome = asyncio.run(attack())
    assert own == _package(mine)
    assert outcome == {"meta_other": "refused", "chunks_other": "refused", "chunks_mine_another_consumer": "refused"}


async def _drain(reader: AsyncIterator[bytes]) -> None:
    async for _chunk in reader:
        pass


def test_function_pods_get_execution_role_credentials_from_the_controller_renewed_before_they_expire(
        cluster: Cluster) -> None:
    name = _deploy_and_invoke(cluster)
    lam = cluster.lambda_client()

    def credentials() -> dict[str, str]:
        got = json.loads(lam.invoke(FunctionName=name, Payload=b'{"credentials": true}')["Payload"].read())
        assert isinstance(got, dict) and all(got.values()), got
        return got

    first = credentials()
    session = roles.verify(cluster.role_key, first["AWS_ACCESS_KEY_ID"], first["AWS_SESSION_TOKEN"], time.time())
    assert session is not None and session.role == f"arn:aws:iam::000000000000:role/{name}-role"
    assert session.function.endswith(f":function:{name}") and session.expires <= time.time() + ROLE_TTL_S
    # The gateway knows them for what they are: the role's (which grants nothing yet), not unknown keys.
    as_function = boto3.client("lambda", endpoint_url=cluster.url, region_name="us-east-1",
                               aws_access_key_id=first["AWS_ACCESS_KEY_ID"],
                               aws_secret_access_key=first["AWS_SECRET_ACCESS_KEY"],
                               aws_session_token=first["AWS_SESSION_TOKEN"], config=Config(retries={"max_attempts": 1}))
    with pytest.raises(as_function.exceptions.ClientError) as denied:
        as_function.list_functions()
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
    # Before they expire the controller sends newer ones, and the environment starts afresh with them.
    renewed = wait_for(lambda: (c := credentials())["AWS_SESSION_TOKEN"] != first["AWS_SESSION_TOKEN"] and c,
                       3 * ROLE_TTL_S, what="renewed credentials")
    assert isinstance(renewed, dict)
    again = roles.verify(cluster.role_key, renewed["AWS_ACCESS_KEY_ID"], renewed["AWS_SESSION_TOKEN"], time.time())
    assert again is not None and again.expires > session.expires and again.role == session.role
