"""``kambda up``: the whole platform on one machine (the embedded default).

Starts, in order, nats-server with JetStream (state under the state directory), the controller
with the local orchestrator, the workers (one, or KAMBDA_WORKERS / ``--workers``), and the
gateway; prints ``kambda is ready at http://HOST:PORT`` once the gateway's health check answers.
Each part runs in a process group of its own (a Ctrl-C in the terminal reaches this supervisor
only), and dies with it if the supervisor is killed.
SIGINT or SIGTERM stop everything in reverse order within 10 s.

A part that dies is restarted with backoff (kambda/cli/supervise.py), on the address it had, so
its clients reconnect: nats-server on the same store and port (the controller, and with it the
invoker, is restarted after it: the sync queue lives in the server's memory and the controller
makes it again), the controller on its gRPC address, the gateway on its port. A part that keeps
failing within a short window stops the platform with exit code 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from kambda import procs, rpc
from kambda.aws import roles
from kambda.bus import identities
from kambda.bus.natsserver import NatsServer, NatsServerError
from kambda.cli.statelock import StateDirBusy, StateLock
from kambda.cli.supervise import supervise
from kambda.settings import SettingsError, bind_refusal, env_bool, env_int, sandbox_enabled


class UpError(RuntimeError):
    """A start-up failure with a one-line explanation."""


@dataclass(frozen=True)
class UpOptions:
    host: str
    port: int
    state_dir: Path
    scale_to_zero_after: float | None = None
    routes_file: Path | None = None
    #: The gateway's credentials file (see kambda/aws/auth.py); None: KAMBDA_CREDENTIALS_FILE or none.
    credentials: Path | None = None
    #: Serve unsigned requests from anywhere when there are no credentials.
    insecure: bool = False
    #: Worker replicas (python -m worker); None: KAMBDA_WORKERS or 1.
    workers: int | None = None
    #: nats-server's port on 127.0.0.1; None: any free one.
    nats_port: int | None = None


#: Under the state dir: the URL nats-server listens on, for programs that publish to kambda's bus.
NATS_URL_FILE = "nats.url"


@dataclass
class _Part:
    name: str
    proc: asyncio.subprocess.Process
    #: How it started (a restart starts it the same way, on the address it got the first time).
    env: Mapping[str, str]
    ready_prefix: str
    #: The module it runs (``python -m MODULE``): its name, but for worker replicas.
    module: str
    pump: asyncio.Task[None] | None = None


def check_state_dir(state_dir: Path) -> None:
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        probe = state_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise UpError(f"state directory {state_dir} is not writable: {exc.strerror or exc}") from None


def check_port(host: str, port: int) -> int:
    """The port, if it is free on host (UpError if not); for 0, a port free right now, so that functions can
    be told the gateway's address before the gateway starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise UpError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        return int(sock.getsockname()[1])


def endpoint_for_functions(host: str, port: int) -> str:
    """The gateway as a function on this machine reaches it (a wildcard address is reached on loopback)."""
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class Platform:
    def __init__(self, options: UpOptions, environ: Mapping[str, str]) -> None:
        self.options = options
        self._environ = dict(environ)
        self._nats = NatsServer(options.state_dir / "nats", port=-1 if options.nats_port is None else options.nats_port)
        self._lock = StateLock(options.state_dir)
        self._parts: list[_Part] = []
        self.url = ""
        self.nats_url = ""
        self.log_dir = options.state_dir / "logs"
        #: Each component's NATS credentials file (kambda/bus/identities.py), fresh at every start.
        self.nats_creds: dict[str, Path] = {}

    @property
    def credentials_file(self) -> str:
        if self.options.credentials is not None:
            return str(self.options.credentials.resolve())
        return self._environ.get("KAMBDA_CREDENTIALS_FILE", "")

    @property
    def workers(self) -> int:
        if self.options.workers is not None:
            return self.options.workers
        return env_int(self._environ, "KAMBDA_WORKERS", 1, 1, 64)

    @property
    def insecure(self) -> bool:
        return self.options.insecure or env_bool(self._environ, "KAMBDA_INSECURE", False)

    def auth_summary(self) -> str:
        """The line ``kambda up`` prints about who may call the gateway."""
        if self.credentials_file:
            return f"auth: SigV4-signed requests only, credentials from {self.credentials_file} (re-read on change)"
        if self.insecure:
            return (f"auth: INSECURE: no credentials, anyone who can reach {self.options.host} can deploy and run "
                    "code")
        return "auth: no credentials: unsigned requests accepted from this machine only (--credentials FILE to sign)"

    def sandbox_summary(self) -> str:
        """The line ``kambda up`` prints about what functions can reach."""
        if sandbox_enabled(self._environ, os.geteuid() == 0):
            return ("sandbox: functions run as uids of their own and act only with their execution role's "
                    "credentials")
        return ("sandbox: OFF: functions are trusted code: they run as this user and can reach the state "
                "directory, the platform's credentials and every other function (run as root to sandbox them)")

    async def start(self) -> str:
        try:
            workers = self.workers
        except SettingsError as exc:
            raise UpError(str(exc)) from None
        if not 1 <= workers <= 64:
            raise UpError(f"--workers {workers} is out of range (expected 1..64)")
        refusal = bind_refusal(self.options.host, self.credentials_file, self.insecure)
        if refusal is not None:
            raise UpError(refusal)
        if self.credentials_file and not Path(self.credentials_file).is_file():
            raise UpError(f"credentials file {self.credentials_file} does not exist")
        check_state_dir(self.options.state_dir)
        try:
            self._lock.acquire()
        except StateDirBusy as exc:
            raise UpError(str(exc)) from None
        gateway_port = check_port(self.options.host, self.options.port)
        if self.options.nats_port is not None:
            check_port("127.0.0.1", self.options.nats_port)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.nats_creds = identities.issue(self.options.state_dir / "nats" / "creds")
        controller_listen, token_file = self._controller_door()
        keys = self.options.state_dir / "keys"
        keys.mkdir(exist_ok=True)
        keys.chmod(0o700)
        roles.write_key(keys / "roles.key")  # signs functions' execution-role credentials
        self._nats.logins = {name: identities.read(path) for name, path in self.nats_creds.items()}
        try:
            nats_url = await self._nats.start()
        except NatsServerError as exc:
            raise UpError(str(exc)) from None
        self._nats.port = int(nats_url.rsplit(":", 1)[1])  # a restart comes back on the same port
        self.nats_url = nats_url
        (self.options.state_dir / NATS_URL_FILE).write_text(nats_url + "\n")
        env = {k: v for k, v in self._environ.items() if not k.startswith("KAMBDA_")}
        env.update({
            # gRPC's C core logs in its own format (a fork warning, say); only its errors matter here.
            "GRPC_VERBOSITY": self._environ.get("GRPC_VERBOSITY", "ERROR"),
            "KAMBDA_NATS_URL": nats_url,
            "KAMBDA_STATE_DIR": str(self.options.state_dir),
            "KAMBDA_NATS_INVOKER_CREDS": str(self.nats_creds["invoker"]),
            "KAMBDA_CONTROLLER_LISTEN": controller_listen,
            **{k: v for k, v in self._environ.items() if k.startswith("KAMBDA_")
               and k not in ("KAMBDA_NATS_URL", "KAMBDA_STATE_DIR", "KAMBDA_HOST", "KAMBDA_PORT",
                             identities.CREDS_ENV, "KAMBDA_NATS_INVOKER_CREDS", "KAMBDA_CONTROLLER_TOKEN_FILE",
                             "KAMBDA_ROLE_KEY_FILE")},
            "KAMBDA_CONTROLLER_TOKEN_FILE": str(token_file),
            "KAMBDA_ROLE_KEY_FILE": str(keys / "roles.key"),
            "KAMBDA_ENDPOINT_URL": self._environ.get("KAMBDA_ENDPOINT_URL")
            or endpoint_for_functions(self.options.host, gateway_port),
        })
        if self.options.scale_to_zero_after is not None:
            env["KAMBDA_SCALE_TO_ZERO_AFTER"] = str(self.options.scale_to_zero_after)
        if self.options.routes_file is not None:
            env["KAMBDA_ROUTES_FILE"] = str(self.options.routes_file.resolve())
        controller_line = await self._start_part("controller", env, "kambda-controller ready grpc=")
        controller = controller_line.rsplit("=", 1)[1].split()[0]
        self._part("controller").env = {**env, "KAMBDA_CONTROLLER_LISTEN": controller}
        worker_metrics = []
        worker_env = {**env, "KAMBDA_CONTROLLER": controller, "KAMBDA_WORKER_LISTEN": "127.0.0.1:0"}
        for i in range(workers):
            name = f"worker-{i + 1}" if workers > 1 else "worker"
            worker_line = await self._start_part(name, worker_env, "kambda-worker ready ", module="worker")
            metrics = worker_line.rsplit("=", 1)[1].split()[0]
            # A restarted worker comes back on the same address, where the gateway scrapes it.
            self._part(name).env = {**worker_env, "KAMBDA_WORKER_LISTEN": metrics.removeprefix("http://")}
            worker_metrics.append(metrics + "/metrics")
        gateway_env = {**env, "KAMBDA_CONTROLLER": controller, "KAMBDA_WORKER_METRICS": ",".join(worker_metrics),
                       "KAMBDA_HOST": self.options.host,
                       "KAMBDA_PORT": str(gateway_port), "KAMBDA_CREDENTIALS_FILE": self.credentials_file,
                       "KAMBDA_INSECURE": "true" if self.insecure else "false"}
        gateway_line = await self._start_part("gateway", gateway_env, "kambda-gateway ready ")
        self.url = gateway_line.rsplit(" ", 1)[1]
        self._part("gateway").env = {**gateway_env, "KAMBDA_PORT": self.url.rsplit(":", 1)[1]}
        await self._wait_healthy()
        return self.url

    def _controller_door(self) -> tuple[str, Path]:
        """Where the controller serves gRPC, and the file of the token its callers present (fresh at
        every start). The door is a Unix socket in a directory only this user enters, unless
        KAMBDA_CONTROLLER_LISTEN says otherwise or the path is too long for a socket."""
        folder = self.options.state_dir / "controller"
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        token_file = folder / "token"
        rpc.write_token(token_file)
        socket_path = folder / "grpc.sock"
        default = f"unix:{socket_path}" if len(str(socket_path)) <= 100 else "127.0.0.1:0"
        return self._environ.get("KAMBDA_CONTROLLER_LISTEN") or default, token_file

    async def _start_part(self, name: str, env: Mapping[str, str], ready_prefix: str,
                          timeout: float = 60.0, module: str = "") -> str:
        identity = module or name
        if identity in self.nats_creds:  # every component logs in to NATS as itself (replicas share one)
            env = {**env, identities.CREDS_ENV: str(self.nats_creds[identity])}
        with open(self.log_dir / f"{name}.log", "ab") as log_file:
            proc = await procs.spawn(procs.python_argv(module or name), env=env, own_group=True,
                                     stdout=asyncio.subprocess.PIPE, stderr=log_file.fileno())
        part = _Part(name, proc, env, ready_prefix, module or name)
        old = next((i for i, p in enumerate(self._parts) if p.name == name), None)
        if old is None:
            self._parts.append(part)
        else:  # a restart: it keeps its place in the stopping order
            self._parts[old] = part
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            try:
                raw = await asyncio.wait_for(proc.stdout.readline(), max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                raise UpError(f"the {name} did not start within {timeout:.0f} s "
                              f"(see {self.log_dir / (name + '.log')})") from None
            if not raw:
                await proc.wait()
                raise UpError(f"the {name} exited during start-up with code {proc.returncode}: "
                              f"{self._last_log_line(name)}")
            line = raw.decode(errors="replace").strip()
            if line.startswith(ready_prefix):
                part.pump = asyncio.create_task(self._pump(proc.stdout))
                return line

    def _part(self, name: str) -> _Part:
        return next(p for p in self._parts if p.name == name)

    async def restart(self, name: str) -> None:
        """Start a part that died again, the way it started the first time (UpError if it cannot)."""
        if name == "nats-server":
            await self._nats.stop(1.0)  # reaps it and removes its ports file
            try:
                await self._nats.start()
            except NatsServerError as exc:
                raise UpError(str(exc)) from None
            name = "controller"  # the sync queue and its consumers were in the old server's memory
            await procs.stop(self._part(name).proc, 6.0)
        part = self._part(name)
        if part.pump is not None:
            part.pump.cancel()
        await self._start_part(name, part.env, part.ready_prefix, module=part.module)

    def _last_log_line(self, name: str) -> str:
        try:
            lines = (self.log_dir / f"{name}.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""

    @staticmethod
    async def _pump(stream: asyncio.StreamReader) -> None:
        """Keep reading a child's stdout so it never blocks on a full pipe."""
        while await stream.readline():
            pass

    async def _wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(f"{self.url}/_kambda/health") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise UpError("the platform did not become healthy within 30 s")
                await asyncio.sleep(0.05)

    async def wait_for_failure(self) -> tuple[str, int]:
        """The name and exit code of the first part that exits on its own."""
        waits = {asyncio.create_task(p.proc.wait()): p.name for p in self._parts}
        assert self._nats.proc is not None
        waits[asyncio.create_task(self._nats.proc.wait())] = "nats-server"
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        finished = next(iter(done))
        return waits[finished], finished.result()

    def log_of(self, name: str) -> Path:
        return self.options.state_dir / "nats" / "nats.log" if name == "nats-server" else self.log_dir / f"{name}.log"

    def why(self, name: str) -> str:
        """The last line a part logged (nats-server's log is its own: not read)."""
        return self._last_log_line(name) if name != "nats-server" else ""

    async def stop(self) -> None:
        """Gateway, workers and controller first (they drain; signalled in reverse order of their
        start), then NATS; everything within 10 s."""
        await asyncio.gather(*(procs.stop(p.proc, 6.0) for p in reversed(self._parts)))
        for part in self._parts:
            if part.pump is not None:
                part.pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await part.pump
        await self._nats.stop(3.0)
        if self.nats_url:  # ours (a refused second kambda up must not remove the first one's)
            (self.options.state_dir / NATS_URL_FILE).unlink(missing_ok=True)
        self._lock.release()


async def run(options: UpOptions, environ: Mapping[str, str]) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    platform = Platform(options, environ)
    starting = asyncio.create_task(platform.start())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if stopping.done():
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError, UpError):
            await starting
        await platform.stop()
        return 0
    try:
        url = starting.result()
    except UpError as exc:
        stopping.cancel()
        await platform.stop()
        print(f"kambda: {exc}", file=sys.stderr, flush=True)
        return 1
    print(f"kambda: {platform.auth_summary()}", flush=True)
    print(f"kambda: {platform.sandbox_summary()}", flush=True)
    print(f"kambda is ready at {url}", flush=True)
    print(f"  state: {options.state_dir}   logs: {platform.log_dir}", flush=True)
    print(f"  nats: {platform.nats_url}   (also in {options.state_dir / NATS_URL_FILE}; log in with "
          f"{platform.nats_creds['admin']})", flush=True)
    stopping.cancel()
    code = await supervise(platform, stop)
    print("kambda: stopping", flush=True)
    await platform.stop()
    return code


def main(options: UpOptions) -> int:
    return asyncio.run(run(options, os.environ))
