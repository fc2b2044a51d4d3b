"""A function cannot reach the platform's insides (issue 27): the attacks of the issue, run as a real
function on `kambda up` with the sandbox on, against a victim function that runs meanwhile.

The attacker lists every listening TCP port of the machine (as a port scan would find them), looks
for NATS (``INFO {``) and tries ``CONNECT {}`` + ``SUB > 1``; calls the gateway unsigned
(ListFunctions, DeleteFunction of the victim), and signed with its own execution role's
credentials; tries raw gRPC on every port and on the controller's Unix socket; reads the state
directory, the NATS credentials, the victim's /tmp, the victim environment's Runtime API and the
invoker's file descriptors (its private channels). Ports of other platforms on this machine may
answer too: the test judges only the ports of this platform's own processes, and that the victim's
secret payload never shows up anywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from kambda.aws import roles
from kambda.procs import service_pids
from tests.conftest import Platform, invoke_json, make_zip, unique

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox applies only when kambda runs as root")

VICTIM = """
import os, time
def handler(event, context):
    path = os.path.join(os.environ["TMPDIR"], "victim-secret.txt")
    with open(path, "w") as f:
        f.write(event.get("secret", ""))
    time.sleep(event.get("sleep", 0))
    return {"tmp": path, "api": os.environ["AWS_LAMBDA_RUNTIME_API"], "uid": os.getuid(),
            "keys": sorted(k for k in os.environ if k.startswith("AWS_") and "KEY" in k or k == "AWS_SESSION_TOKEN")}
"""

ATTACKER = r'''
import datetime, hashlib, hmac, json, os, socket, urllib.error, urllib.parse, urllib.request

def listening_ports():
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] == "0A":  # LISTEN
                ports.add(int(f[1].rsplit(":", 1)[1], 16))
    return sorted(ports)

def recv_some(sock, timeout=1.0):
    sock.settimeout(timeout)
    try:
        return sock.recv(65536)
    except OSError:
        return b""

def nats_attack(port):
    out = {}
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        out["info"] = recv_some(s)[:5].decode(errors="replace")
        if out["info"] != "INFO ":
            return None
        s.sendall(b"CONNECT {\"verbose\":false}\r\nSUB > 1\r\nPING\r\n")
        seen = b""
        for _ in range(20):
            chunk = recv_some(s, 0.25)
            if not chunk:
                break
            seen += chunk
        out["answer"] = seen[:300].decode(errors="replace")
        out["captured"] = seen.decode(errors="replace")
    return out

def http(method, url, headers=None):
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read().decode(errors="replace")[:400]
    except urllib.error.HTTPError as exc:
        kind = exc.headers.get("x-amzn-ErrorType", "")
        return exc.code, kind + " " + exc.read().decode(errors="replace")[:400]
    except Exception as exc:  # refused, or not HTTP at all (NATS answers INFO)
        return 0, type(exc).__name__

def signed_headers(method, url):
    """SigV4 with this environment's own credentials (the execution role's)."""
    key, secret, token = (os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"))
    parts = urllib.parse.urlsplit(url)
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload = hashlib.sha256(b"").hexdigest()
    headers = {"host": parts.netloc, "x-amz-date": amz_date, "x-amz-content-sha256": payload,
               "x-amz-security-token": token}
    names = sorted(headers)
    canonical = "\n".join([method, parts.path, "", *(f"{n}:{headers[n]}" for n in names), "", ";".join(names), payload])
    scope = f"{day}/us-east-1/lambda/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    k = ("AWS4" + secret).encode()
    for part in (day, "us-east-1", "lambda", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={key}/{scope}, SignedHeaders={';'.join(names)}, "
                                f"Signature={signature}")
    del headers["host"]
    return headers

def grpc_attack(target):
    import grpc
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary("/kambda.v1.Controller/ListFunctions")  # an empty request: b""
        try:
            return "OK " + call(b"", timeout=2).hex()
        except grpc.RpcError as exc:
            return exc.code().name
        except Exception as exc:
            return type(exc).__name__

def attempt(action):
    try:
        action()
        return "allowed"
    except OSError as exc:
        return type(exc).__name__

def handler(event, context):
    out = {"ports": listening_ports(), "nats": {}, "grpc": {}, "http": {}}
    for port in out["ports"]:
        try:
            found = nats_attack(port)
        except OSError:
            found = None
        if found is not None:
            out["nats"][str(port)] = found
    gateway, victim = event["gateway"], event["victim"]
    out["http"]["list_unsigned"] = http("GET", f"{gateway}/2015-03-31/functions/")
    out["http"]["delete_unsigned"] = http("DELETE", f"{gateway}/2015-03-31/functions/{victim}")
    out["http"]["list_fake_signed"] = http("GET", f"{gateway}/2015-03-31/functions/", {
        "Authorization": "AWS4-HMAC-SHA256 Credential=x/20240101/us-east-1/lambda/aws4_request, "
                         "SignedHeaders=host;x-amz-date, Signature=00", "X-Amz-Date": "20240101T000000Z"})
    out["http"]["metrics"] = http("GET", f"{gateway}/metrics")
    url = f"{gateway}/2015-03-31/functions/"
    out["http"]["list_as_role"] = http("GET", url, signed_headers("GET", url))
    url = f"{gateway}/2015-03-31/functions/{victim}"
    out["http"]["delete_as_role"] = http("DELETE", url, signed_headers("DELETE", url))
    for port in out["ports"]:
        out["grpc"][str(port)] = grpc_attack(f"127.0.0.1:{port}")
    out["grpc"]["unix"] = grpc_attack("unix:" + event["controller_socket"])
    out["files"] = {
        "state_dir": attempt(lambda: os.listdir(event["state_dir"])),
        "nats_creds": attempt(lambda: open(event["nats_creds"]).read()),
        "role_key": attempt(lambda: open(event["role_key"]).read()),
        "victim_tmp": attempt(lambda: open(event["victim_tmp"]).read()),
        "invoker_fds": attempt(lambda: os.listdir(f"/proc/{event['invoker_pid']}/fd")),
    }
    out["victim_api"] = http("GET", f"http://{event['victim_api']}/2018-06-01/runtime/invocation/next")
    out["listeners"] = {str(port): {path: http("GET", f"http://127.0.0.1:{port}{path}")
                                    for path in ("/metrics", "/healthz")} for port in event["our_ports"]}
    out["own_keys"] = sorted(k for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
                             if os.environ.get(k))
    return out
'''


@pytest.fixture(scope="module")
def sandboxed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = Path(tempfile.mkdtemp(prefix="kambda-isolation-test-"))  # under /tmp: reachable by any uid
    running = Platform(tmp_path_factory.mktemp("kambda-isolation-state"), env={
        "KAMBDA_SANDBOX": "true", "KAMBDA_SANDBOX_DIR": str(root)}).start()
    yield running
    running.stop()
    shutil.rmtree(root, ignore_errors=True)


def _platform_ports(platform: Platform) -> set[int]:
    """The TCP ports this platform's own processes listen on (read as root from /proc)."""
    assert platform.proc is not None
    pids = {platform.proc.pid}
    for _ in range(4):  # children, grandchildren (the invoker), their children
        for pid in list(pids):
            try:
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                continue
            pids.update(int(c) for c in children)
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    return _listening(inodes)


def _listening(inodes: set[str]) -> set[int]:
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:
                ports.add(int(f[1].rsplit(":", 1)[1], 16))
    return ports


def _ports_of(pid: int) -> set[int]:
    """The TCP ports one process listens on."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").glob("*"):
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return _listening(inodes)


@as_root
def test_a_function_reaches_none_of_the_platform_s_insides(sandboxed: Platform) -> None:
    lam = sandboxed.lambda_client()
    victim, attacker = unique("victim"), unique("attacker")
    for name, code in ((victim, VICTIM), (attacker, ATTACKER)):
        lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role="r",
                            Code={"ZipFile": make_zip({"app.py": code})}, Timeout=120, MemorySize=512)
    secret = f"victim-secret-{uuid.uuid4().hex}"
    _, where = invoke_json(lam, victim, {"secret": secret})
    assert isinstance(where, dict) and where["uid"] >= 200_000
    assert any("sandbox: functions run as uids of their own" in line for line in sandboxed.output)
    assert where["keys"] == ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]
    ours = _platform_ports(sandboxed)
    nats_port = int(sandboxed.nats_url().rsplit(":", 1)[1])
    gateway_port = int(sandboxed.url.rsplit(":", 1)[1])
    assert {nats_port, gateway_port} <= ours
    invoker = service_pids(sandboxed.proc.pid, "invoker")  # type: ignore[union-attr]
    assert invoker, "the invoker process was not found"
    worker = service_pids(sandboxed.proc.pid, "worker")  # type: ignore[union-attr]
    assert worker, "the worker process was not found"
    (worker_port,) = _ports_of(worker[0])  # its /metrics and /healthz, on loopback

    # The victim keeps running with its secret while the attack goes on.
    stop = threading.Event()

    def keep_invoking() -> None:
        client = sandboxed.lambda_client()
        while not stop.is_set():
            invoke_json(client, victim, {"secret": secret, "sleep": 0.05})

    busy = threading.Thread(target=keep_invoking, daemon=True)
    busy.start()
    try:
        event = {"gateway": sandboxed.url, "victim": victim, "state_dir": str(sandboxed.state_dir),
                 "controller_socket": str(sandboxed.state_dir / "controller" / "grpc.sock"),
                 "nats_creds": str(sandboxed.state_dir / "nats" / "creds" / "invoker.json"),
                 "role_key": str(sandboxed.state_dir / "keys" / "roles.key"),
                 "victim_tmp": where["tmp"], "victim_api": where["api"], "invoker_pid": invoker[0],
                 "our_ports": sorted(ours)}
        response, out = invoke_json(lam, attacker, event)
    finally:
        stop.set()
        busy.join(60)
    assert "FunctionError" not in response, out
    assert isinstance(out, dict)
    assert secret not in json.dumps(out)  # no payload of another function, anywhere

    # NATS: found by the scan, and refused without credentials.
    assert str(nats_port) in out["nats"], (nats_port, out["nats"].keys())
    for port in ours & {int(p) for p in out["nats"]}:
        answer = out["nats"][str(port)]["answer"]
        assert "Authorization Violation" in answer and "MSG " not in answer, (port, answer)

    # The gateway: unsigned or falsely signed calls from a function are refused, as are calls with
    # its own role's credentials (kambda has no roles that grant anything yet).
    http = out["http"]
    for what in ("list_unsigned", "delete_unsigned", "list_fake_signed", "list_as_role", "delete_as_role"):
        status, body = http[what]
        assert status == 403 and "AccessDenied" in body, (what, status, body)
    assert "execution role" in http["list_as_role"][1]
    assert http["metrics"][0] == 403

    # gRPC: nothing of this platform answers a stranger (its controller has no TCP port at all).
    for port in ours:
        assert not out["grpc"][str(port)].startswith("OK"), (port, out["grpc"][str(port)])
    assert out["grpc"]["unix"] in ("UNAVAILABLE", "UNAUTHENTICATED"), out["grpc"]["unix"]

    # The worker's own listener (function names and counts in its /metrics) is not for functions;
    # no port of the platform hands a function its metrics or health.
    assert out["listeners"][str(worker_port)]["/metrics"][0] == 403
    assert out["listeners"][str(worker_port)]["/healthz"][0] == 403
    for port, answers in out["listeners"].items():
        assert all(status != 200 for status, _ in answers.values()), (port, answers)

    # Files and private channels.
    assert out["files"] == {k: "PermissionError" for k in out["files"]}, out["files"]
    assert out["victim_api"][0] == 403
    assert out["own_keys"] == ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]

    # Nothing deleted: the victim still answers, and the operator (the test, on loopback) is still admin.
    assert invoke_json(lam, victim, {"secret": "after"})[1]["uid"] == where["uid"]  # type: ignore[index]
    assert victim in {f["FunctionName"] for f in lam.list_functions()["Functions"]}


@as_root
def test_role_credentials_are_checked_and_grant_nothing_from_anywhere(sandboxed: Platform) -> None:
    """Stolen role credentials used from outside a sandbox act as the role, never as the owner; a
    changed token is not recognised."""
    key = roles.read_key(str(sandboxed.state_dir / "keys" / "roles.key"))
    session = roles.mint(key, "arn:aws:iam::000000000000:role/r", "fn", now=__import__("time").time())

    def call(token: str) -> tuple[int, str]:
        request = AWSRequest(method="GET", url=f"{sandboxed.url}/2015-03-31/functions/")
        SigV4Auth(Credentials(session.access_key, session.secret, token), "lambda", "us-east-1").add_auth(request)
        prepared = urllib.request.Request(request.url, headers=dict(request.headers), method="GET")
        try:
            with urllib.request.urlopen(prepared, timeout=30) as r:
                return r.status, ""
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("x-amzn-ErrorType", "")

    assert call(session.token) == (403, "AccessDeniedException")
    assert call(session.token[:-3] + "AAA") == (403, "UnrecognizedClientException")
