"""One execution environment: a runtime process that runs one request at a time.

The process speaks the Runtime API to this invoker (see runtime_api.py). Its stdout and stderr
share one pipe that the invoker reads without blocking; everything written while a request runs
belongs to that request's log, and because runtimes flush before they post a result, draining the
pipe when the result arrives attributes every byte correctly.

An environment that times out, crashes, or fails to initialise is dead: the pool replaces it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import math
import os
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from invoker import runtime_api, runtimes
from invoker.runtime_api import RuntimeApi
from invoker.runtimes import privileges
from invoker.sandbox import Identity, Sandbox
from invoker.zygote import Zygote, ZygoteChild
from kambda import memory, procs
from kambda.aws import endpoints, roles
from kambda.v1.function_pb2 import FunctionConfig
from kambda.v1.invocation_pb2 import Invocation

#: How long initialisation may take beyond the function's timeout before the request fails.
INIT_TIMEOUT_S = 10.0
_FRAME = struct.Struct("!II")  # the private channel's frame header: meta length, body length
#: How often the memory watchdog samples the environment's resident memory while it works.
MEMORY_POLL_S = memory.POLL_S
#: Go's names for signals, which AWS quotes in Runtime.ExitError messages.
SIGNAL_NAMES = {
    signal.SIGKILL: "killed", signal.SIGSEGV: "segmentation fault", signal.SIGABRT: "aborted",
    signal.SIGTERM: "terminated", signal.SIGBUS: "bus error", signal.SIGFPE: "floating point exception",
    signal.SIGILL: "illegal instruction", signal.SIGINT: "interrupt",
}
#: The most log output kept for one request (the tail is what matters); a runaway printer is cut.
LOG_CAP = 1024 * 1024
TAIL_BYTES = 4096


@dataclass
class Outcome:
    payload: bytes
    function_error: bool = False
    #: The environment cannot serve again and must be replaced.
    dead: bool = False
    #: Death came from a failed initialisation: respawn only when the next request comes.
    init_failed: bool = False


@dataclass
class _Event:
    request_id: str
    payload: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Credentials:
    """An environment's execution-role credentials (its AWS_* variables), and when they were
    issued and expire (unix seconds): an environment is started afresh, with newer ones, once half
    their life is gone (as AWS recycles environments long before their credentials expire)."""

    env: Mapping[str, str] = field(default_factory=dict)
    issued: float = 0.0
    expires: float = math.inf

    @property
    def renew_at(self) -> float:
        return self.issued + (self.expires - self.issued) / 2


NO_CREDENTIALS = Credentials()


def role_credentials(role_key: bytes, config: FunctionConfig, function_arn: str,
                     now: float | None = None) -> Credentials:
    """The execution role's short-lived credentials (kambda/aws/roles.py); none without a role key."""
    if not role_key:
        return NO_CREDENTIALS
    now = time.time() if now is None else now
    session = roles.mint(role_key, config.role, function_arn, now)
    return Credentials(session_env(session.access_key, session.secret, session.token), now, session.expires)


def session_env(access_key: str, secret: str, token: str) -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret, "AWS_SESSION_TOKEN": token}


def function_environment(config: FunctionConfig, code_dir: Path, region: str, tmp: str,
                         initialization_type: str, log_stream: str, runtime_api: str,
                         python: str | None = sys.executable,
                         credentials: Mapping[str, str] | None = None, endpoint: str = "") -> dict[str, str]:
    """The environment variables a function's process sees (LAMBDA_CONTRACT.md section 3), and
    nothing of the platform's own: built from scratch, never copied from the invoker's. ``endpoint`` is the
    gateway as the function reaches it: its SDKs' endpoints for kambda's services, unless it set its own."""
    c = config
    env = {
        **endpoints.for_function(endpoint, dict(c.environment)),
        "PATH": f"{Path(python or sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TZ": ":UTC",
        "PYTHONDONTWRITEBYTECODE": "1",
        "TMPDIR": tmp,
        **dict(c.environment),
        "_HANDLER": c.handler,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_LAMBDA_FUNCTION_NAME": c.name,
        "AWS_LAMBDA_FUNCTION_VERSION": c.version,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(c.memory_size),
        "AWS_LAMBDA_INITIALIZATION_TYPE": initialization_type,
        "AWS_LAMBDA_LOG_GROUP_NAME": c.log_group or f"/aws/lambda/{c.name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
        "AWS_LAMBDA_RUNTIME_API": runtime_api,
        "LAMBDA_TASK_ROOT": str(code_dir),
        "LAMBDA_RUNTIME_DIR": str(runtimes.RUNTIME_DIR),
        **(credentials or {}),  # the execution role's, after the function's own: never overridden
    }
    if not runtimes.is_custom(c.runtime):
        env["AWS_EXECUTION_ENV"] = f"AWS_Lambda_{c.runtime}"
    return env


def _either(*futures: asyncio.Future[Any]) -> set[asyncio.Future[Any]]:
    return set(futures)


def _crashed(settled: asyncio.Future[Outcome | None]) -> Outcome:
    """The outcome an environment that died before its timer started settled the request with."""
    outcome = settled.result()
    assert outcome is not None, "only the request's timer settles it with None"
    return outcome


def error_body(error_type: str, message: str) -> bytes:
    return json.dumps({"errorMessage": message, "errorType": error_type}).encode()


class Environment:
    def __init__(self, env_id: str, config: FunctionConfig, code_dir: Path, api: RuntimeApi,
                 work_dir: Path, region: str, invoked_arn: str, initialization_type: str = "on-demand",
                 zygote: Zygote | None = None, channel: bool = False, sandbox: Sandbox | None = None,
                 identity: Identity | None = None, credentials: Mapping[str, str] | None = None,
                 endpoint: str = "") -> None:
        self.env_id = env_id
        self._credentials = credentials
        self._endpoint = endpoint
        self.config = config
        self.code_dir = code_dir
        self._api = api
        self._work_dir = work_dir
        self._region = region
        self._arn = invoked_arn
        self._initialization_type = initialization_type
        self._zygote = zygote
        #: Run as the function's own unprivileged uid (invoker/sandbox.py), when both are given.
        self._sandbox = sandbox if identity is not None else None
        self._identity = identity
        self._python = self._sandbox.python if self._sandbox is not None else sys.executable
        #: Only processes of this uid may use this environment's Runtime API (runtime_api.py).
        self.owner_uid = identity.uid if self._sandbox is not None and identity is not None else None
        #: Talk to the built-in Python runtime over a private socket instead of HTTP.
        self._use_channel = channel and config.runtime.startswith("python3")
        self._channel: socket.socket | None = None
        self._channel_task: asyncio.Task[None] | None = None
        self.proc: asyncio.subprocess.Process | ZygoteChild | None = None
        self.port = 0
        self.served = 0
        self.init_duration_ms = 0.0
        #: The last request waited for this environment's initialisation: a cold start.
        self.cold = False
        self._tmp: Path | None = None
        self._fd = -1
        self._spawned_at = 0.0
        self._ready = asyncio.Event()
        self._next: asyncio.Future[_Event | None] | None = None
        self._next_posted = asyncio.Event()
        self._outcome: asyncio.Future[Outcome | None] | None = None  # None: the timeout fired
        self._current: Invocation | None = None
        self._init_error: tuple[bytes, str] | None = None
        self._output = bytearray()
        self._log_stream = ""
        self._exit_task: asyncio.Task[None] | None = None
        self._memory_exceeded = False
        self._peak_kb = 0
        self._hwm_read_at = -1.0
        self._watchdog: asyncio.TimerHandle | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def log_stream(self) -> str:
        return self._log_stream

    # -- lifecycle ---------------------------------------------------------------------------

    async def spawn(self) -> None:
        loop = asyncio.get_running_loop()
        self.port = await self._api.open(self)
        if self._sandbox is not None and self._identity is not None:
            self._tmp = await asyncio.to_thread(self._sandbox.tmp_dir, self._identity, f"env-{self.env_id}-")
        else:
            self._tmp = Path(tempfile.mkdtemp(prefix=f"env-{self.env_id}-", dir=self._work_dir))
        read_fd, write_fd = os.pipe()
        child_channel: socket.socket | None = None
        if self._use_channel:
            self._channel, child_channel = socket.socketpair()
        try:
            self._spawned_at = time.monotonic()
            argv = runtimes.argv(self.config, self.code_dir, self._python)
            env = self._environment()
            channel_fd = child_channel.fileno() if child_channel is not None else None
            confine = self._confinement()
            if self._zygote is not None and self.config.runtime.startswith("python3"):
                self.proc = await self._zygote.fork(env, self.code_dir, write_fd, channel_fd, confine)
            else:
                if channel_fd is not None:
                    env["_KAMBDA_RUNTIME_FD"] = str(channel_fd)
                pass_fds = (channel_fd,) if channel_fd else ()
                if confine is None:
                    self.proc = await procs.spawn(argv, env=env, cwd=self.code_dir, own_group=True, stdout=write_fd,
                                                  stderr=write_fd, pass_fds=pass_fds)
                else:
                    self.proc = await _spawn_confined(argv, env, self.code_dir, write_fd, pass_fds, confine)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
            if child_channel is not None:
                child_channel.close()
        flags = fcntl.fcntl(read_fd, fcntl.F_GETFL)
        fcntl.fcntl(read_fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        self._fd = read_fd
        loop.add_reader(read_fd, self._drain)
        self._exit_task = asyncio.create_task(self._watch_exit())
        if self._channel is not None:
            self._channel_task = asyncio.create_task(self._serve_channel(self._channel))

    def _confinement(self) -> dict[str, object] | None:
        if self._sandbox is None or self._identity is None:
            return None
        return self._sandbox.confinement(self._identity)

    def _environment(self) -> dict[str, str]:
        day = time.strftime("%Y/%m/%d", time.gmtime())
        self._log_stream = f"{day}/[{self.config.version}]{self.env_id}"
        return function_environment(
            self.config, self.code_dir, self._region, tmp=str(self._tmp),
            initialization_type=self._initialization_type, log_stream=self._log_stream,
            runtime_api=f"127.0.0.1:{self.port}", python=self._python, credentials=self._credentials,
            endpoint=self._endpoint)

    async def _serve_channel(self, sock: socket.socket) -> None:
        """The Runtime API over the private channel: the same operations as runtime_api.py."""
        reader, writer = await asyncio.open_connection(sock=sock)
        try:
            while True:
                meta_len, body_len = _FRAME.unpack(await reader.readexactly(_FRAME.size))
                meta = orjson.loads(await reader.readexactly(meta_len))
                too_large = body_len > runtime_api.MAX_RESPONSE
                if too_large:
                    while body_len:  # read past it in chunks, never holding it
                        body_len -= len(await reader.readexactly(min(body_len, 1 << 20)))
                    body = b""
                else:
                    body = await reader.readexactly(body_len) if body_len else b""
                op = meta.get("op")
                if op == "next":
                    event = await self.next_event()
                    if event is None:
                        return
                    raw = orjson.dumps(event.headers)
                    writer.write(_FRAME.pack(len(raw), len(event.payload)) + raw + event.payload)
                elif op == "response":
                    self.post_response(str(meta.get("id")), body, too_large)
                elif op == "error":
                    self.post_error(str(meta.get("id")), body, str(meta.get("type", "")))
                elif op == "init_error":
                    self.post_init_error(body, str(meta.get("type", "")))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            return  # the runtime closed the channel or sent garbage: its exit tells the rest
        finally:
            writer.close()

    async def _watch_exit(self) -> None:
        assert self.proc is not None
        code = await self.proc.wait()
        self._drain()
        if self._channel_task is not None:
            # What the runtime wrote before it exited (an init error, say) is read first.
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._channel_task), 1.0)
        if self._outcome is not None and not self._outcome.done():
            if self._init_error is not None and not self._ready.is_set():
                body, _ = self._init_error
                self._outcome.set_result(Outcome(body, function_error=True, dead=True, init_failed=True))
            else:
                self._outcome.set_result(Outcome(self._exit_error(code), function_error=True, dead=True,
                                                 init_failed=not self._ready.is_set()))

    def _exit_error(self, code: int) -> bytes:
        rid = self._current.request_id if self._current else ""
        if code == 0:
            reason = "Runtime exited without providing a reason"
        elif code < 0:
            name = SIGNAL_NAMES.get(-code, f"signal {-code}")  # type: ignore[call-overload]
            reason = f"Runtime exited with error: signal: {name}"
            if self._memory_exceeded:
                reason += f" (memory limit of {self.config.memory_size} MB exceeded)"
        else:
            reason = f"Runtime exited with error: exit status {code}"
        return error_body("Runtime.ExitError", f"RequestId: {rid} Error: {reason}")

    async def stop(self) -> None:
        """Kill the process group (stray children included) and free everything."""
        if self._next is not None and not self._next.done():
            self._next.set_result(None)
        if self.proc is not None:
            procs.kill_group(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                await self.proc.wait()
        if self._exit_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._exit_task
        if self._channel_task is not None:
            self._channel_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._channel_task
            self._channel_task = None
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._fd >= 0:
            asyncio.get_running_loop().remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
        if self.port:
            await self._api.close(self.port)
            self.port = 0
        if self._tmp is not None:
            await asyncio.to_thread(shutil.rmtree, self._tmp, True)
            self._tmp = None

    # -- output ------------------------------------------------------------------------------

    def _drain(self) -> None:
        """Read everything the pipe holds now (called by the loop, and before a result is final)."""
        if self._fd < 0:
            return
        while True:
            try:
                chunk = os.read(self._fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                asyncio.get_running_loop().remove_reader(self._fd)
                return
            self._output += chunk
            if len(self._output) > LOG_CAP:
                del self._output[: len(self._output) - LOG_CAP]

    def take_output(self) -> bytes:
        self._drain()
        data = bytes(self._output)
        self._output.clear()
        return data

    # -- the Runtime API side ------------------------------------------------------------------

    async def next_event(self) -> _Event | None:
        if not self._ready.is_set():
            self.init_duration_ms = (time.monotonic() - self._spawned_at) * 1000
            self._ready.set()
        if self._next is not None and not self._next.done():
            self._next.set_result(None)  # a second concurrent /next: the first one is dropped
        self._next = asyncio.get_running_loop().create_future()
        self._next_posted.set()
        return await self._next

    def post_response(self, request_id: str, body: bytes, too_large: bool) -> bool:
        if not self._is_current(request_id):
            return False
        if too_large:
            payload = error_body("Function.ResponseSizeTooLarge", "Response payload size exceeded maximum "
                                  "allowed payload size (6291556 bytes).")
            self._settle(Outcome(payload, function_error=True))
        else:
            self._settle(Outcome(body))
        return True

    def post_error(self, request_id: str, body: bytes, error_type: str) -> bool:
        if not self._is_current(request_id):
            return False
        self._settle(Outcome(body or error_body(error_type or "Unhandled", ""), function_error=True))
        return True

    def post_init_error(self, body: bytes, error_type: str) -> None:
        self._init_error = (body or error_body(error_type, ""), error_type)
        if self._outcome is not None and not self._ready.is_set():
            self._settle(Outcome(self._init_error[0], function_error=True, dead=True, init_failed=True))

    def _is_current(self, request_id: str) -> bool:
        return self._current is not None and self._current.request_id == request_id

    def _settle(self, outcome: Outcome) -> None:
        if self._outcome is not None and not self._outcome.done():
            self._outcome.set_result(outcome)

    # -- the pool side -----------------------------------------------------------------------

    async def invoke(self, inv: Invocation) -> tuple[Outcome, float]:
        """Run one invocation; returns the outcome and the handler's duration in ms."""
        loop = asyncio.get_running_loop()
        self._current = inv
        settled: asyncio.Future[Outcome | None] = loop.create_future()
        self._outcome = settled
        timeout = float(self.config.timeout)
        watchdog = loop.call_later(MEMORY_POLL_S, self._check_memory)
        self.cold = self.served == 0 and not self._ready.is_set()
        try:
            if not self._ready.is_set():
                ready = asyncio.ensure_future(self._ready.wait())
                await asyncio.wait(_either(ready, settled), timeout=INIT_TIMEOUT_S + timeout,
                                   return_when=asyncio.FIRST_COMPLETED)
                ready.cancel()
                if settled.done():
                    return _crashed(settled), 0.0
                if not self._ready.is_set():
                    return self._timed_out(timeout), timeout * 1000
            # Let the runtime's /next arrive (it may still be on its way after a previous run).
            while self._next is None or self._next.done():
                self._next_posted.clear()
                waiter = asyncio.ensure_future(self._next_posted.wait())
                await asyncio.wait(_either(waiter, settled), return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if settled.done():
                    return _crashed(settled), 0.0
            self.take_output()  # what came before START is not this request's
            started = time.monotonic()
            deadline_ms = int(time.time() * 1000 + timeout * 1000)
            self._next.set_result(_Event(inv.request_id, inv.payload, self._headers(inv, deadline_ms)))
            def time_up() -> None:
                if not settled.done():
                    settled.set_result(None)

            timer = loop.call_later(timeout, time_up)
            outcome = await settled
            timer.cancel()
            if outcome is None:  # the timer, not the runtime, settled it
                return self._timed_out(timeout), (time.monotonic() - started) * 1000
            return outcome, (time.monotonic() - started) * 1000
        finally:
            watchdog.cancel()
            if self._watchdog is not None:
                self._watchdog.cancel()
                self._watchdog = None
            self.served += 1
            self._current = None
            self._outcome = None  # its payload goes with the caller, not held here until the next run

    def _timed_out(self, timeout: float) -> Outcome:
        if self.proc is not None:
            procs.kill_group(self.proc.pid, signal.SIGKILL)
        rid = self._current.request_id if self._current else ""
        return Outcome(error_body("Sandbox.Timedout", f"RequestId: {rid} Error: Task timed out after "
                                   f"{timeout:.2f} seconds"), function_error=True, dead=True)

    def _headers(self, inv: Invocation, deadline_ms: int) -> dict[str, str]:
        headers = {
            "Lambda-Runtime-Aws-Request-Id": inv.request_id,
            "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": inv.invoked_arn or self._arn,
        }
        if inv.trace_id:
            headers["Lambda-Runtime-Trace-Id"] = inv.trace_id
        if inv.client_context:
            headers["Lambda-Runtime-Client-Context"] = inv.client_context
        if inv.cognito_identity:
            headers["Lambda-Runtime-Cognito-Identity"] = inv.cognito_identity
        return headers

    def _check_memory(self) -> None:
        """Kill the environment when its processes together hold more than MemorySize resident.

        An RSS watchdog rather than a cgroup: it needs no privileges and works on cgroup v1
        hosts too. It samples every MEMORY_POLL_S while a request runs, first after one interval
        (a short request never pays for /proc reads), so a process can overshoot for that long.
        """
        if self.proc is None or self.proc.returncode is not None or self._current is None:
            return
        rss = memory.tree_rss_kb(self.proc.pid)
        self._peak_kb = max(self._peak_kb, rss)
        if rss > self.config.memory_size * 1024:
            self._memory_exceeded = True
            procs.kill_group(self.proc.pid, signal.SIGKILL)
            return
        self._watchdog = asyncio.get_running_loop().call_later(MEMORY_POLL_S, self._check_memory)

    def max_memory_mb(self) -> int:
        """Peak resident memory, as REPORT's Max Memory Used (VmHWM, or the watchdog's peak).

        /proc is read at most once a second: a warm request should not pay for it every time."""
        now = time.monotonic()
        if self.proc is not None and now - self._hwm_read_at >= 1.0:
            self._hwm_read_at = now
            self._peak_kb = max(self._peak_kb, memory.status_kb(self.proc.pid, "VmHWM:"))
        return math.ceil(self._peak_kb / 1024)


async def _spawn_confined(argv: list[str], env: dict[str, str], cwd: Path, out_fd: int, pass_fds: tuple[int, ...],
                          confine: dict[str, object]) -> asyncio.subprocess.Process:
    """Start a runtime that drops root (to the function's uid, under its limits) before exec."""

    def become_function() -> None:
        os.setpgid(0, 0)
        privileges.drop(confine["uid"], confine["gid"], confine["limits"], confine.get("mask"))

    return await asyncio.create_subprocess_exec(*argv, env=env, cwd=str(cwd), stdin=asyncio.subprocess.DEVNULL,
                                                stdout=out_fd, stderr=out_fd, pass_fds=pass_fds,
                                                preexec_fn=become_function)
