"""The built-in Python runtime (invoker/runtimes/kambda_runtime/), end to end.

Each test serves the Runtime API from a real aiohttp server on 127.0.0.1, writes handler code
to a temporary task root and runs the bootstrap as a real subprocess, then checks what arrives
at the Runtime API and what the process prints.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

BOOTSTRAP = Path(__file__).resolve().parent.parent / "invoker" / "runtimes" / "kambda_runtime" / "bootstrap.py"
PREFIX = "/2018-06-01/runtime"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:000000000000:function:fn"
TIMEOUT = 10.0
NBSP = "\u00a0"

_OMIT = object()


@dataclass
class Posted:
    """What the runtime POSTed for one invocation (or for init)."""

    kind: str  # "response", "error" or "init-error"
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class RuntimeApi:
    """A Runtime API serving queued events and recording what the runtime posts back."""

    queue: asyncio.Queue[tuple[str, bytes, dict[str, str]]] = field(default_factory=asyncio.Queue)
    outcomes: dict[str, asyncio.Future[Posted]] = field(default_factory=dict)
    init_error: asyncio.Future[Posted] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    unexpected: list[str] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    address: str = ""

    def invoke(
        self,
        event: Any,
        *,
        deadline_in: float = 30.0,
        trace_id: Any = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        client_context: Any = _OMIT,
        cognito_identity: Any = _OMIT,
        raw_body: bytes | None = None,
    ) -> str:
        """Queue one event; returns its request id."""
        request_id = str(uuid.uuid4())
        headers = {
            "Lambda-Runtime-Aws-Request-Id": request_id,
            "Lambda-Runtime-Deadline-Ms": str(int((time.time() + deadline_in) * 1000)),
            "Lambda-Runtime-Invoked-Function-Arn": FUNCTION_ARN,
            "Lambda-Runtime-Trace-Id": trace_id,
            "Lambda-Runtime-Client-Context": client_context,
            "Lambda-Runtime-Cognito-Identity": cognito_identity,
        }
        if client_context is _OMIT:
            client_context = {"custom": {"k": "v"}, "env": {}, "client": {}}
            headers["Lambda-Runtime-Client-Context"] = json.dumps(client_context)
        if cognito_identity is _OMIT:
            headers["Lambda-Runtime-Cognito-Identity"] = json.dumps(
                {"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool-1"}
            )
        headers = {k: v for k, v in headers.items() if v is not None}
        self.outcomes[request_id] = asyncio.get_running_loop().create_future()
        body = raw_body if raw_body is not None else json.dumps(event).encode()
        self.queue.put_nowait((request_id, body, headers))
        return request_id

    async def outcome(self, request_id: str) -> Posted:
        return await asyncio.wait_for(asyncio.shield(self.outcomes[request_id]), TIMEOUT)

    async def call(self, event: Any, **kwargs: Any) -> Posted:
        return await self.outcome(self.invoke(event, **kwargs))

    # ---- aiohttp handlers

    async def _next(self, request: web.Request) -> web.StreamResponse:
        get = asyncio.ensure_future(self.queue.get())
        stop = asyncio.ensure_future(self.stopping.wait())
        done, pending = await asyncio.wait({get, stop}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if get not in done:
            return web.Response(status=503, text="stopping")
        request_id, body, headers = get.result()
        return web.Response(body=body, headers={**headers, "Content-Type": "application/json"})

    async def _record(self, request: web.Request, kind: str, request_id: str | None) -> web.Response:
        posted = Posted(kind, dict(request.headers), await request.read())
        if request_id is None:
            target = self.init_error
        else:
            target = self.outcomes.get(request_id)
        if target is None or target.done():
            self.unexpected.append(f"{kind} {request_id}")
            return web.Response(status=400)
        target.set_result(posted)
        return web.json_response({"status": "OK"}, status=202)

    async def _response(self, request: web.Request) -> web.Response:
        return await self._record(request, "response", request.match_info["rid"])

    async def _error(self, request: web.Request) -> web.Response:
        return await self._record(request, "error", request.match_info["rid"])

    async def _init_error(self, request: web.Request) -> web.Response:
        return await self._record(request, "init-error", None)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(f"{PREFIX}/invocation/next", self._next)
        app.router.add_post(PREFIX + "/invocation/{rid}/response", self._response)
        app.router.add_post(PREFIX + "/invocation/{rid}/error", self._error)
        app.router.add_post(f"{PREFIX}/init/error", self._init_error)
        return app


@asynccontextmanager
async def serve_runtime_api(**runner_kwargs: Any) -> AsyncIterator[RuntimeApi]:
    api = RuntimeApi()
    runner = web.AppRunner(api.app(), handler_cancellation=True, **runner_kwargs)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        api.address = f"127.0.0.1:{port}"
        yield api
    finally:
        api.stopping.set()
        await runner.cleanup()
    assert api.unexpected == []


class Bootstrap:
    """A running bootstrap process and everything it printed so far."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.out = bytearray()
        self.err = bytearray()
        self._changed = asyncio.Event()
        assert proc.stdout is not None and proc.stderr is not None
        self._readers = [
            asyncio.ensure_future(self._pump(proc.stdout, self.out)),
            asyncio.ensure_future(self._pump(proc.stderr, self.err)),
        ]

    async def _pump(self, stream: asyncio.StreamReader, into: bytearray) -> None:
        while chunk := await stream.read(65536):
            into += chunk
            self._changed.set()

    @property
    def stdout(self) -> str:
        return self.out.decode()

    @property
    def stderr(self) -> str:
        return self.err.decode()

    async def wait_output(self, check: Callable[[], bool]) -> None:
        async def _wait() -> None:
            while not check():
                self._changed.clear()
                if all(r.done() for r in self._readers):
                    raise AssertionError("process output ended")
                await self._changed.wait()

        try:
            await asyncio.wait_for(_wait(), TIMEOUT)
        except (TimeoutError, AssertionError):
            pytest.fail(f"output condition not met\nstdout: {self.stdout!r}\nstderr: {self.stderr!r}")

    async def wait_exit(self) -> int:
        code = await asyncio.wait_for(self.proc.wait(), TIMEOUT)
        await asyncio.wait_for(asyncio.gather(*self._readers), TIMEOUT)
        return code

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.wait_exit()


StartFn = Callable[..., Awaitable[Bootstrap]]


@pytest.fixture
async def api() -> AsyncIterator[RuntimeApi]:
    async with serve_runtime_api() as api:
        yield api


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Bootstrap]]]:
    """start(api, files, handler="app.handler", env=None): a bootstrap serving ``api``."""
    started: list[Bootstrap] = []

    async def _start(
        api: RuntimeApi,
        files: dict[str, str],
        handler: str = "app.handler",
        env: dict[str, str] | None = None,
    ) -> Bootstrap:
        task_root = tmp_path / f"task{len(started)}"
        for name, code in files.items():
            path = task_root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(code))
        task_root.mkdir(exist_ok=True)
        full_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "AWS_LAMBDA_RUNTIME_API": api.address,
            "_HANDLER": handler,
            "LAMBDA_TASK_ROOT": str(task_root),
            "AWS_LAMBDA_FUNCTION_NAME": "fn",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
            "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/fn",
            "AWS_LAMBDA_LOG_STREAM_NAME": "2024/01/01/[$LATEST]abcdef",
            **(env or {}),
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(BOOTSTRAP),
            env=full_env,
            cwd="/",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        bootstrap = Bootstrap(proc)
        started.append(bootstrap)
        return bootstrap

    try:
        yield _start
    finally:
        for bootstrap in started:
            await bootstrap.close()


ECHO = {
    "app.py": """
        def handler(event, context):
            return event
    """
}


def assert_no_runtime_frames(stack_trace: list[str]) -> None:
    assert not [f for f in stack_trace if "kambda_runtime" in f], stack_trace


# --------------------------------------------------------------------------- invocations


async def test_echo(api: RuntimeApi, start: StartFn) -> None:
    await start(api, ECHO)
    event = {"a": 1, "b": [1, 2.5, None, True], "s": "h\u00e9llo"}
    posted = await api.call(event)
    assert posted.kind == "response"
    assert posted.headers["Content-Type"] == "application/json"
    assert posted.json() == event


async def test_handler_in_subdirectory(api: RuntimeApi, start: StartFn) -> None:
    files = {
        "pkg/__init__.py": "",
        "pkg/app.py": "def handler(event, context):\n    return {'mod': __name__}\n",
    }
    await start(api, files, handler="pkg/app.handler")
    assert (await api.call({})).json() == {"mod": "pkg.app"}


async def test_context(api: RuntimeApi, start: StartFn, tmp_path: Path) -> None:
    code = """
        import os, time

        def handler(event, context):
            first = context.get_remaining_time_in_millis()
            time.sleep(0.05)
            second = context.get_remaining_time_in_millis()
            identity = context.identity
            cc = context.client_context
            return {
                "function_name": context.function_name,
                "function_version": context.function_version,
                "memory_limit_in_mb": context.memory_limit_in_mb,
                "invoked_function_arn": context.invoked_function_arn,
                "aws_request_id": context.aws_request_id,
                "log_group_name": context.log_group_name,
                "log_stream_name": context.log_stream_name,
                "identity": [identity.cognito_identity_id, identity.cognito_identity_pool_id],
                "client_context": cc and [cc.custom, cc.env, cc.client.installation_id],
                "remaining": [first, second],
                "trace": os.environ.get("_X_AMZN_TRACE_ID"),
                "cwd": os.getcwd(),
            }
    """
    await start(api, {"app.py": code})
    task_root = tmp_path / "task0"
    request_id = api.invoke({}, deadline_in=20.0)
    got = (await api.outcome(request_id)).json()
    first, second = got.pop("remaining")
    assert 0 < second < first <= 20_000
    assert first - second >= 45  # the handler slept 50 ms between the two calls
    assert got == {
        "function_name": "fn",
        "function_version": "$LATEST",
        "memory_limit_in_mb": "256",  # a string, as on AWS
        "invoked_function_arn": FUNCTION_ARN,
        "aws_request_id": request_id,
        "log_group_name": "/aws/lambda/fn",
        "log_stream_name": "2024/01/01/[$LATEST]abcdef",
        "identity": ["id-1", "pool-1"],
        "client_context": [{"k": "v"}, {}, None],
        "trace": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        "cwd": str(task_root),
    }

    # Without the optional headers: no trace id in the environment, identity fields None,
    # no client context; and the deadline is read at call time (past deadline -> 0).
    posted = await api.call({}, trace_id=None, client_context=None, cognito_identity=None, deadline_in=-1)
    got = posted.json()
    assert got["trace"] is None
    assert got["identity"] == [None, None]
    assert got["client_context"] is None
    assert got["remaining"] == [0, 0]


async def test_warm_reuse(api: RuntimeApi, start: StartFn) -> None:
    code = """
        import os
        count = 0

        def handler(event, context):
            global count
            count += 1
            return {"count": count, "pid": os.getpid()}
    """
    await start(api, {"app.py": code})
    results = [(await api.call({})).json() for _ in range(3)]
    assert [r["count"] for r in results] == [1, 2, 3]
    assert len({r["pid"] for r in results}) == 1


async def test_handler_exception_and_loop_goes_on(api: RuntimeApi, start: StartFn) -> None:
    code = """
        def fail(x):
            raise ValueError("bad input " + x)

        def handler(event, context):
            if event.get("fail"):
                fail("here")
            return "ok"
    """
    proc = await start(api, {"app.py": code})
    request_id = api.invoke({"fail": True})
    posted = await api.outcome(request_id)
    assert posted.kind == "error"
    assert posted.headers["Lambda-Runtime-Function-Error-Type"] == "ValueError"
    body = posted.json()
    assert list(body) == ["errorMessage", "errorType", "requestId", "stackTrace"]
    assert body["errorType"] == "ValueError"
    assert body["errorMessage"] == "bad input here"
    assert body["requestId"] == request_id
    trace = body["stackTrace"]
    assert len(trace) == 2
    assert_no_runtime_frames(trace)
    assert re.fullmatch(r'  File ".*/app\.py", line 7, in handler\n    fail\("here"\)\n', trace[0]), trace
    assert re.fullmatch(r'  File ".*/app\.py", line 3, in fail\n    raise ValueError\(.*\)\n', trace[1])
    xray = json.loads(posted.headers["Lambda-Runtime-Function-XRay-Error-Cause"])
    assert xray["exceptions"][0]["type"] == "ValueError"

    # Logged like awslambdaric: "[ERROR] Type: message", then the traceback (NBSP-indented).
    await proc.wait_output(lambda: "[ERROR] ValueError: bad input here\n" in proc.stderr)
    await proc.wait_output(lambda: f'{NBSP * 4}raise ValueError("bad input " + x)\n' in proc.stderr)
    assert "[ERROR] ValueError: bad input here\nTraceback (most recent call last):\n" in proc.stderr
    assert "kambda_runtime" not in proc.stderr

    # The loop goes on.
    posted = await api.call({"fail": False})
    assert (posted.kind, posted.json()) == ("response", "ok")


async def test_none_is_null(api: RuntimeApi, start: StartFn) -> None:
    await start(api, {"app.py": "def handler(event, context):\n    return None\n"})
    posted = await api.call({})
    assert (posted.kind, posted.body) == ("response", b"null")


async def test_unserialisable_result(api: RuntimeApi, start: StartFn) -> None:
    await start(api, {"app.py": "def handler(event, context):\n    return {1, 2}\n"})
    request_id = api.invoke({})
    posted = await api.outcome(request_id)
    assert posted.kind == "error"
    assert posted.headers["Lambda-Runtime-Function-Error-Type"] == "Runtime.MarshalError"
    assert posted.json() == {
        "errorMessage": "Unable to marshal response: Object of type set is not JSON serializable",
        "errorType": "Runtime.MarshalError",
        "requestId": request_id,
        "stackTrace": [],
    }


async def test_decimal_result(api: RuntimeApi, start: StartFn) -> None:
    code = """
        from decimal import Decimal

        def handler(event, context):
            return {"i": Decimal("42"), "f": Decimal("1.5"), "b": b"raw"}
    """
    await start(api, {"app.py": code})
    assert (await api.call({})).json() == {"i": 42, "f": 1.5, "b": "raw"}


async def test_handler_not_found_fails_every_invocation(api: RuntimeApi, start: StartFn) -> None:
    await start(api, {"app.py": "def other(event, context):\n    return 1\n"})
    for _ in range(2):
        request_id = api.invoke({})
        posted = await api.outcome(request_id)
        assert posted.kind == "error"
        assert posted.headers["Lambda-Runtime-Function-Error-Type"] == "Runtime.HandlerNotFound"
        assert posted.json() == {
            "errorMessage": "Handler 'handler' missing on module 'app'",
            "errorType": "Runtime.HandlerNotFound",
            "requestId": request_id,
            "stackTrace": [],
        }
    assert not api.init_error.done()


async def test_logging_and_print(api: RuntimeApi, start: StartFn) -> None:
    code = """
        import logging

        def handler(event, context):
            logging.info("hidden")  # the root logger is at WARNING, as on AWS
            logging.getLogger().setLevel(logging.INFO)
            logging.info("hi")
            print("printed", end="")
            return 1
    """
    proc = await start(api, {"app.py": code})
    request_id = api.invoke({})
    await api.outcome(request_id)
    await proc.wait_output(lambda: "printed" in proc.stdout)
    timestamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    assert re.search(rf"^\[INFO\]\t{timestamp}\t{re.escape(request_id)}\thi\n", proc.stdout, re.M)
    assert "hidden" not in proc.stdout


async def test_log_level_from_environment(api: RuntimeApi, start: StartFn) -> None:
    code = "import logging\n\ndef handler(event, context):\n    logging.debug('dbg')\n    return 1\n"
    proc = await start(api, {"app.py": code}, env={"AWS_LAMBDA_LOG_LEVEL": "DEBUG"})
    request_id = api.invoke({})
    await api.outcome(request_id)
    await proc.wait_output(lambda: f"\t{request_id}\tdbg\n" in proc.stdout)
    assert proc.stdout.startswith("[DEBUG]\t")


async def test_sys_exit_ends_the_process(api: RuntimeApi, start: StartFn) -> None:
    code = "import sys\n\ndef handler(event, context):\n    print('bye')\n    sys.exit(3)\n"
    proc = await start(api, {"app.py": code})
    request_id = api.invoke({})
    assert await proc.wait_exit() == 3
    assert "bye" in proc.stdout
    assert not api.outcomes[request_id].done()


async def test_reconnects_after_the_server_closes_an_idle_connection(start: StartFn) -> None:
    # The server drops keep-alive connections idle for 50 ms; the handler takes longer than
    # that, so every POST of a result starts on a connection the server has already closed.
    code = "import time\n\ndef handler(event, context):\n    time.sleep(0.2)\n    return event\n"
    async with serve_runtime_api(keepalive_timeout=0.05) as api:
        proc = await start(api, {"app.py": code})
        for i in range(2):
            assert (await api.call(i)).json() == i
        await proc.close()


# --------------------------------------------------------------------------- init errors


@pytest.mark.parametrize(
    ("files", "handler", "error_type", "message"),
    [
        pytest.param(
            {"app.py": "import no_such_module_xyz\n"},
            "app.handler",
            "Runtime.ImportModuleError",
            "Unable to import module 'app': No module named 'no_such_module_xyz'",
            id="import-error",
        ),
        pytest.param(
            {},
            "missing.handler",
            "Runtime.ImportModuleError",
            "Unable to import module 'missing': No module named 'missing'",
            id="missing-module",
        ),
        pytest.param(
            ECHO,
            "app",
            "Runtime.MalformedHandlerName",
            "Bad handler 'app': not enough values to unpack (expected 2, got 1)",
            id="malformed",
        ),
    ],
)
async def test_init_error(
    api: RuntimeApi, start: StartFn, files: dict[str, str], handler: str, error_type: str, message: str
) -> None:
    proc = await start(api, files, handler=handler)
    assert await proc.wait_exit() == 1
    posted = await asyncio.wait_for(api.init_error, TIMEOUT)
    assert posted.headers["Lambda-Runtime-Function-Error-Type"] == error_type
    assert posted.headers["Content-Type"] == "application/json"
    expected = {"errorMessage": message, "errorType": error_type, "requestId": "", "stackTrace": []}
    assert posted.json() == expected
    assert f"[ERROR] {error_type}: {message}\n" in proc.stderr


async def test_syntax_error(api: RuntimeApi, start: StartFn) -> None:
    proc = await start(api, {"app.py": "x = 1\ndef handler(event, context)\n    return 1\n"})
    assert await proc.wait_exit() == 1
    posted = await asyncio.wait_for(api.init_error, TIMEOUT)
    body = posted.json()
    assert posted.headers["Lambda-Runtime-Function-Error-Type"] == "Runtime.UserCodeSyntaxError"
    assert body["errorType"] == "Runtime.UserCodeSyntaxError"
    assert body["errorMessage"] == "Syntax error in module 'app': expected ':' (app.py, line 2)"
    assert body["requestId"] == ""
    assert len(body["stackTrace"]) == 1
    assert re.fullmatch(
        r'  File ".*/app\.py" Line 2\n    def handler\(event, context\)\n', body["stackTrace"][0]
    ), body["stackTrace"]
    assert "[ERROR] Runtime.UserCodeSyntaxError: Syntax error in module 'app'" in proc.stderr


async def test_exception_at_import(api: RuntimeApi, start: StartFn) -> None:
    proc = await start(api, {"app.py": "def handler(e, c):\n    pass\n\nraise RuntimeError('no config')\n"})
    assert await proc.wait_exit() == 1
    posted = await asyncio.wait_for(api.init_error, TIMEOUT)
    body = posted.json()
    assert posted.headers["Lambda-Runtime-Function-Error-Type"] == "RuntimeError"
    assert (body["errorType"], body["errorMessage"], body["requestId"]) == ("RuntimeError", "no config", "")
    assert_no_runtime_frames(body["stackTrace"])
    assert re.fullmatch(r'  File ".*/app\.py", line 4, in <module>\n.*\n', body["stackTrace"][-1])
