"""NATS least privilege (issue 27, part 1): every component logs in as itself with the rights it
needs and no more; anonymous connections are refused; credentials are fresh at every start."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from kambda import bus
from kambda.bus import identities
from kambda.bus.natsserver import NatsServer, write_config
from tests.conftest import Platform, free_port, invoke_json, make_zip, unique, until, wait_for


def _logins() -> dict[str, dict[str, str]]:
    return {name: {"user": name, "password": f"pw-{name}", "inbox_prefix": i.inbox_prefix}
            for name, i in identities.IDENTITIES.items()}


def test_config_lists_every_identity_with_its_permissions_and_no_monitoring_port(tmp_path: Path) -> None:
    config = write_config(tmp_path, logins=_logins())
    text = config.read_text()
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    keys = {line.split(":")[0].strip() for line in text.splitlines()}
    assert not keys & {"no_auth_user", "http", "http_port", "https", "https_port", "monitor_port"}
    for name in identities.IDENTITIES:
        assert f'{{user: "{name}", password: "pw-{name}"' in text
    # Subjects with $ are quoted, or nats-server would read them as variables.
    assert '"$JS.API.CONSUMER.MSG.NEXT.KAMBDA_SYNC.>"' in text


def test_issue_writes_private_files_fresh_each_time(tmp_path: Path) -> None:
    first = identities.issue(tmp_path / "creds")
    assert set(first) == set(identities.IDENTITIES)
    assert stat.S_IMODE((tmp_path / "creds").stat().st_mode) == 0o700
    for path in first.values():
        st = path.stat()
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.geteuid()
    before = {n: identities.read(p)["password"] for n, p in first.items()}
    again = identities.issue(tmp_path / "creds")
    assert all(identities.read(again[n])["password"] != before[n] for n in before)
    assert identities.read(again["gateway"])["inbox_prefix"] == "_INBOX.gateway"


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    running = Platform(tmp_path_factory.mktemp("kambda-nats-auth")).start()
    yield running
    running.stop()


def _nats_address(platform: Platform) -> str:
    ports = next((platform.state_dir / "nats" / "run").glob("*.ports"))
    return str(json.loads(ports.read_text())["nats"][0])


def _violations(platform: Platform) -> list[str]:
    log = (platform.state_dir / "nats" / "nats.log").read_text(errors="replace")
    # The platform's own connections are named kambda-<component>; this file's are test-<identity>.
    return [line for line in log.splitlines() if "Violation" in line and ":kambda-" in line]


def _raw_login(address: str, connect: dict[str, object]) -> bytes:
    """What nats-server answers a client that sends CONNECT ``connect`` and PING over a plain socket."""
    host, port = address.rsplit("//", 1)[-1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        assert sock.recv(4096).startswith(b"INFO {")
        sock.sendall(b"CONNECT " + json.dumps({"verbose": False, **connect}).encode() + b"\r\nPING\r\n")
        return sock.recv(4096)


def test_anonymous_and_wrong_passwords_are_refused(up: Platform) -> None:
    address = _nats_address(up)
    assert b"Authorization Violation" in _raw_login(address, {})
    assert b"Authorization Violation" in _raw_login(address, {"user": "gateway", "pass": "guess"})
    login = identities.read(up.state_dir / "nats" / "creds" / "gateway.json")
    assert _raw_login(address, {"user": login["user"], "pass": login["password"]}).startswith(b"PONG")


def test_each_identity_is_held_to_its_subjects(up: Platform) -> None:
    """The invoker's and the gateway's credentials neither read invocations nor touch the registry."""

    async def check(identity: str) -> dict[str, str]:
        errors: list[Exception] = []

        async def on_error(exc: Exception) -> None:
            errors.append(exc)

        nc = await bus.connect(_nats_address(up), f"test-{identity}",
                               str(up.state_dir / "nats" / "creds" / f"{identity}.json"), error_cb=on_error)
        out: dict[str, str] = {}
        try:
            await nc.subscribe("kambda.sync.>")
            await nc.flush()
            refused = lambda: [str(e) for e in errors if "kambda.sync" in str(e)]  # noqa: E731
            await until(refused, 10, "the subscription to be refused")
            out["sub_sync"] = refused()[0]
            try:
                await nc.request(f"$JS.API.STREAM.PURGE.KV_{bus.FUNCTIONS_BUCKET}", b"", timeout=2)
                out["purge_registry"] = "answered"
            except NatsError as exc:
                out["purge_registry"] = type(exc).__name__
        finally:
            await nc.close()
        return out

    for identity in ("invoker", "gateway"):
        out = asyncio.run(check(identity))
        assert "permissions violation" in out["sub_sync"].lower(), (identity, out)
        assert out["purge_registry"] in ("TimeoutError", "NoRespondersError"), (identity, out)


def test_the_platform_works_with_permissions_on_and_violates_none(up: Platform) -> None:
    lam = up.lambda_client()
    name = unique("auth")
    code = "def handler(event, context):\n    print('ran', event)\n    return event\n"
    lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role="r",
                        Code={"ZipFile": make_zip({"app.py": code})})
    assert invoke_json(lam, name, {"n": 1})[1] == {"n": 1}
    assert lam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"n": 2}')["StatusCode"] == 202

    def logged() -> bool:
        with urllib.request.urlopen(f"{up.url}/_kambda/v1/functions/{name}/logs?limit=100", timeout=30) as r:
            return b"'n': 2" in r.read()

    wait_for(logged, 60, what="the async run's log line")
    location = lam.get_function(FunctionName=name)["Code"]["Location"]
    with urllib.request.urlopen(location, timeout=30) as r:
        assert r.read()[:2] == b"PK"
    url = lam.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.status == 200
    lam.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": code + "# v2\n"}))
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    version = lam.publish_version(FunctionName=name)["Version"]
    assert invoke_json(lam, name, {"n": 3}, Qualifier=version)[1] == {"n": 3}
    lam.delete_function(FunctionName=name)
    assert _violations(up) == []


def test_a_restart_rotates_every_credential_and_keeps_serving(tmp_path: Path) -> None:
    platform = Platform(tmp_path / "state").start()
    try:
        lam = platform.lambda_client()
        name = unique("rot")
        lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role="r",
                            Code={"ZipFile": make_zip({"app.py": "def handler(e, c):\n    return 1\n"})})
        assert invoke_json(lam, name)[1] == 1
        creds = platform.state_dir / "nats" / "creds"
        before = {p.name: json.loads(p.read_text())["password"] for p in creds.glob("*.json")}
    finally:
        platform.stop()
    platform = Platform(tmp_path / "state").start()
    try:
        after = {p.name: json.loads(p.read_text())["password"] for p in creds.glob("*.json")}
        assert set(after) == set(before) and all(after[n] != before[n] for n in before)
        assert invoke_json(platform.lambda_client(), name)[1] == 1
        assert _violations(platform) == []
    finally:
        platform.stop()


def test_components_log_in_again_after_nats_restarts(tmp_path: Path) -> None:
    """A restarted nats-server (same config, same port) takes the same credentials back."""

    async def scenario() -> None:
        files = identities.issue(tmp_path / "creds")
        logins = {n: identities.read(p) for n, p in files.items()}
        port = free_port()
        server = NatsServer(tmp_path / "nats", port=port, logins=logins)
        url = await server.start()
        reconnected = asyncio.Event()

        async def on_reconnect() -> None:
            reconnected.set()

        nc = await bus.connect(url, "test-gateway", str(files["gateway"]), reconnected_cb=on_reconnect)
        try:
            got: list[bytes] = []

            async def on_msg(msg: Msg) -> None:
                got.append(msg.data)

            sub = await nc.subscribe("kambda.scale.*", cb=on_msg)
            await server.stop()
            await server.start()
            await asyncio.wait_for(reconnected.wait(), 20)
            admin = await bus.connect(url, "test-admin", str(files["admin"]))
            await admin.publish("kambda.scale.f", b"after")
            await admin.flush()
            await until(lambda: got, 10, "the message after the restart")
            assert got == [b"after"]
            await sub.unsubscribe()
            await admin.close()
        finally:
            await nc.close()
            await server.stop()

    asyncio.run(scenario())


def test_invoker_pods_mount_the_invoker_credentials_secret() -> None:
    from controller.orchestrators.k8s_objects import pod_spec
    from controller.settings import KubernetesSettings

    spec = pod_spec(KubernetesSettings(nats_creds_secret="kambda-nats-invoker"), "python3.12")
    (c,) = spec["containers"]
    assert {"name": "KAMBDA_NATS_CREDS", "value": "/etc/kambda/nats/invoker.json"} in c["env"]
    assert {"name": "nats-credentials", "mountPath": "/etc/kambda/nats", "readOnly": True} in c["volumeMounts"]
    (volume,) = [v for v in spec["volumes"] if v["name"] == "nats-credentials"]
    assert volume["secret"]["secretName"] == "kambda-nats-invoker"
    plain = pod_spec(KubernetesSettings(), "python3.12")
    assert "KAMBDA_NATS_CREDS" not in {e["name"] for e in plain["containers"][0]["env"]}


def test_kambda_up_says_when_functions_are_trusted_code(up: Platform) -> None:
    """This platform runs with the sandbox off (tests/conftest.py): it says what that means."""
    assert any("sandbox: OFF: functions are trusted code" in line for line in up.output), up.output


def test_a_credentials_file_is_a_json_login_or_a_nats_creds_file(tmp_path: Path) -> None:
    """An external NATS's operator hands out .creds files (a user JWT and its nkey seed): those are
    passed to nats-py as they are; kambda's own JSON logins become user, password and inbox prefix."""
    files = identities.issue(tmp_path / "creds")
    login = identities.read(files["gateway"])
    assert bus.login_options(str(files["gateway"])) == {"user": "gateway", "password": login["password"],
                                                        "inbox_prefix": "_INBOX.gateway"}
    creds = tmp_path / "worker.creds"
    creds.write_text("-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QifQ.e30.x\n------END NATS USER JWT------\n\n"
                     "-----BEGIN USER NKEY SEED-----\nSUAEXAMPLE\n------END USER NKEY SEED------\n")
    assert bus.login_options(str(creds)) == {"user_credentials": str(creds)}
    garbage = tmp_path / "garbage"
    garbage.write_text("user=x")
    for path in (garbage, tmp_path / "missing"):
        with pytest.raises(ValueError, match=str(path)):
            bus.login_options(str(path))

