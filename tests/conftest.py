"""Fixtures that start the real platform: `kambda up` as a subprocess on free ports, and real clients."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

REPO = Path(__file__).resolve().parent.parent


def wait_for(condition: Callable[[], object], timeout: float = 30.0, interval: float = 0.05,
              what: str = "condition") -> object:
    """Poll ``condition`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


async def until(condition: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> object:
    """``wait_for`` for a test that runs on the event loop: polls without blocking what runs there."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.02)


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie, exited but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a server that must be told its port up front)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Platform:
    """A running `kambda up` (real nats-server, controller, invoker and gateway processes)."""

    def __init__(self, state_dir: Path, extra_args: list[str] | None = None,
                 env: dict[str, str] | None = None, own_session: bool = False) -> None:
        self.state_dir = state_dir
        #: Run in a session of its own, so that a test can signal its process group as a terminal's Ctrl-C does.
        self.own_session = own_session
        self.extra_args = extra_args or []
        # Run as root, kambda sandboxes functions (invoker/sandbox.py), and a sandboxed function cannot
        # reach pytest's private tmp_path where many tests keep the ledgers their functions write;
        # tests of the sandbox ask for it (KAMBDA_SANDBOX=true), and so may a whole run.
        self.env = {**os.environ, "KAMBDA_SANDBOX": os.environ.get("KAMBDA_SANDBOX", "false"), **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.output: list[str] = []

    def start(self, timeout: float = 60.0) -> Platform:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kambda.cli", "up", "--port", "0", "--state-dir", str(self.state_dir),
             *self.extra_args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env, cwd=REPO,
            start_new_session=self.own_session,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        for line in self.proc.stdout:
            self.output.append(line)
            if line.startswith("kambda is ready at "):
                self.url = line.split()[-1]
                return self
            if time.monotonic() > deadline:
                break
        self.stop()
        raise AssertionError("kambda up did not become ready:\n" + "".join(self.output) + self.logs())

    def logs(self) -> str:
        text = ""
        for path in sorted((self.state_dir / "logs").glob("*.log")):
            text += f"\n== {path.name}\n" + path.read_text(errors="replace")[-4000:]
        return text

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None and not self.proc.stdout.closed:
            self.output.extend(self.proc.stdout.readlines())
            self.proc.stdout.close()
        return self.proc.returncode

    def lambda_client(self, **config: object):  # type: ignore[no-untyped-def]
        return boto3.client(
            "lambda", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="x",
            aws_secret_access_key="x",
            config=Config(retries={"max_attempts": 1}, read_timeout=120, connect_timeout=10, **config),
        )

    def get_json(self, path: str) -> tuple[int, object]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read() or b"null")

    def nats_address(self) -> str:
        ports = next((self.state_dir / "nats" / "run").glob("*.ports"))
        return str(json.loads(ports.read_text())["nats"][0])

    def nats_creds(self, identity: str) -> str:
        """A component's NATS credentials file (kambda/bus/identities.py), for ``bus.connect``."""
        return str(self.state_dir / "nats" / "creds" / f"{identity}.json")

    def nats_url(self) -> str:
        """The platform's NATS address with the operator's (admin) credentials in it."""
        login = json.loads(Path(self.nats_creds("admin")).read_text())
        return self.nats_address().replace("nats://", f"nats://{login['user']}:{login['password']}@", 1)

    def metrics(self) -> str:
        """The gateway's /metrics text (public from loopback)."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=30) as response:
            return response.read().decode()

    def status(self, name: str) -> dict:
        code, body = self.get_json(f"/_kambda/v1/functions/{name}")
        assert code == 200, body
        assert isinstance(body, dict)
        return body


def make_zip(files: dict[str, str | bytes], modes: dict[str, int] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = ((modes or {}).get(name, 0o644) | 0o100000) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, content)
    return buf.getvalue()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """One platform for the tests that do not restart or reconfigure it."""
    running = Platform(tmp_path_factory.mktemp("kambda-state")).start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def lam(platform: Platform):  # type: ignore[no-untyped-def]
    return platform.lambda_client()


@pytest.fixture
def create(lam):  # type: ignore[no-untyped-def]
    """Create a function from source files; deleted again after the test."""
    made: list[str] = []

    def _create(code: str | dict[str, str | bytes], name: str | None = None, **params: object) -> str:
        fname = name or unique("fn")
        files = {"app.py": code} if isinstance(code, str) else code
        args: dict[str, object] = {"FunctionName": fname, "Runtime": "python3.12", "Handler": "app.handler",
                                   "Role": "arn:aws:iam::000000000000:role/test", **params}
        lam.create_function(Code={"ZipFile": make_zip(files)}, **args)
        made.append(fname)
        return fname

    yield _create
    for fname in made:
        try:
            lam.delete_function(FunctionName=fname)
        except lam.exceptions.ResourceNotFoundException:
            pass


def invoke_json(lam, name: str, payload: object = None, **params: object) -> tuple[dict, object]:  # type: ignore[no-untyped-def]
    response = lam.invoke(FunctionName=name, Payload=json.dumps(payload if payload is not None else {}),
                          **params)
    body = response["Payload"].read()
    return response, json.loads(body) if body else None
