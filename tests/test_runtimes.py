"""One behaviour suite over every runtime: the built-in Python runtime (over kambda's private
channel, and over the HTTP Runtime API), the built-in Node.js runtime, and AWS's own runtime
interface clients (awslambdaric, aws-lambda-ric) run as a custom runtime's `bootstrap`.

The same events go to each; what comes back must be what AWS Lambda gives.
"""

from __future__ import annotations

import base64
import json
import os
import shutil

import pytest

from tests.conftest import REPO, Platform, invoke_json, make_zip, unique

#: AWS's Node.js runtime interface client, installed by scripts/install-aws-lambda-ric.sh (CI runs it).
NODE_RIC = REPO / ".cache" / "ric" / "node_modules" / "aws-lambda-ric" / "bin" / "index.mjs"

PYTHON_HANDLER = """
import os, sys, time

def handler(event, context):
    action = event.get("action")
    if action == "echo":
        return event["value"]
    if action == "context":
        return {"name": context.function_name, "memory": str(context.memory_limit_in_mb),
                "arn": context.invoked_function_arn, "request_id": context.aws_request_id,
                "remaining": context.get_remaining_time_in_millis(), "version": context.function_version}
    if action == "raise":
        raise ValueError(event["message"])
    if action == "sleep":
        time.sleep(event["seconds"])
        return "woke"
    if action == "alloc":
        blob = b"x" * (event["mb"] * 1024 * 1024)
        time.sleep(1)
        return len(blob)
    if action == "crash":
        os._exit(7)
    if action == "log":
        print(event["line"])
        return "logged"
    if action == "remaining":
        first = context.get_remaining_time_in_millis()
        time.sleep(0.2)
        return [first, context.get_remaining_time_in_millis()]
    return None
"""

NODE_HANDLER = """
class ValueError extends Error { constructor(m) { super(m); this.name = "ValueError"; } }
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
exports.handler = async (event, context) => {
  switch (event.action) {
    case "echo": return event.value;
    case "context": return { name: context.functionName, memory: String(context.memoryLimitInMB),
      arn: context.invokedFunctionArn, request_id: context.awsRequestId,
      remaining: context.getRemainingTimeInMillis(), version: context.functionVersion };
    case "raise": throw new ValueError(event.message);
    case "sleep": await sleep(event.seconds * 1000); return "woke";
    case "alloc": { const b = Buffer.alloc(event.mb * 1024 * 1024, 1); await sleep(1000); return b.length; }
    case "crash": process.exit(7);
    case "log": console.log(event.line); return "logged";
    case "remaining": { const first = context.getRemainingTimeInMillis(); await sleep(200);
      return [first, context.getRemainingTimeInMillis()]; }
    default: return null;
  }
};
"""

RIC_BOOTSTRAP = "#!/bin/sh\nexec python3 -m awslambdaric \"$_HANDLER\"\n"
NODE_RIC_BOOTSTRAP = "#!/bin/sh\nexec node \"$RIC_BIN\" \"$_HANDLER\"\n"

RUNTIMES = {
    "python": ({"app.py": PYTHON_HANDLER}, {"Runtime": "python3.12", "Handler": "app.handler"}),
    "python-http": ({"app.py": PYTHON_HANDLER}, {"Runtime": "python3.12", "Handler": "app.handler"}),
    "node": ({"index.js": NODE_HANDLER}, {"Runtime": "nodejs20.x", "Handler": "index.handler"}),
    "awslambdaric": ({"app.py": PYTHON_HANDLER, "bootstrap": RIC_BOOTSTRAP},
                     {"Runtime": "provided.al2023", "Handler": "app.handler"}),
    "aws-lambda-ric": ({"index.js": NODE_HANDLER, "bootstrap": NODE_RIC_BOOTSTRAP},
                       {"Runtime": "provided.al2023", "Handler": "index.handler",
                        "Environment": {"Variables": {"RIC_BIN": str(NODE_RIC)}}}),
}
BROKEN = {
    "python": ({"app.py": "import no_such_module\n"}, "Runtime.ImportModuleError", "no_such_module"),
    "python-http": ({"app.py": "import no_such_module\n"}, "Runtime.ImportModuleError", "no_such_module"),
    "node": ({"index.js": "require('no-such-module');\n"}, "Runtime.ImportModuleError", "no-such-module"),
    "awslambdaric": ({"app.py": "import no_such_module\n", "bootstrap": RIC_BOOTSTRAP},
                     "Runtime.ImportModuleError", "no_such_module"),
    "aws-lambda-ric": ({"index.js": "require('no-such-module');\n", "bootstrap": NODE_RIC_BOOTSTRAP},
                       "Runtime.ImportModuleError", "no-such-module"),
}


def _create(lam, kind: str, files: dict, **params) -> str:  # type: ignore[no-untyped-def]
    if kind in ("node", "aws-lambda-ric") and shutil.which("node") is None:
        pytest.fail("node is not installed: the Node.js runtime needs it (see the README)")
    if kind == "aws-lambda-ric" and not NODE_RIC.exists():
        if os.environ.get("CI"):
            pytest.fail("aws-lambda-ric is missing: .ci/run installs it with scripts/install-aws-lambda-ric.sh")
        pytest.skip("aws-lambda-ric is not installed (scripts/install-aws-lambda-ric.sh)")
    name = unique(kind)
    base = RUNTIMES[kind][1]
    lam.create_function(FunctionName=name, Role="r", Code={"ZipFile": make_zip(files, {"bootstrap": 0o755})},
                        **{**base, **params})
    return name


@pytest.fixture(scope="module")
def http_channel_platform(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A platform whose Python environments speak the HTTP Runtime API instead of the private channel."""
    running = Platform(tmp_path_factory.mktemp("http-channel"), env={"KAMBDA_RUNTIME_CHANNEL": "http"}).start()
    yield running
    running.stop()


def client_for(request, kind: str, lam):  # type: ignore[no-untyped-def]
    return request.getfixturevalue("http_channel_platform").lambda_client() if kind == "python-http" else lam


class Fn:
    def __init__(self, kind: str, name: str, lam) -> None:  # type: ignore[no-untyped-def]
        self.kind, self.name, self.lam = kind, name, lam


@pytest.fixture(scope="module", params=sorted(RUNTIMES))
def fn(request, lam):  # type: ignore[no-untyped-def]
    kind = request.param
    client = client_for(request, kind, lam)
    name = _create(client, kind, RUNTIMES[kind][0], Timeout=2, MemorySize=160)
    yield Fn(kind, name, client)
    client.delete_function(FunctionName=name)


def call(fn: Fn, **event):  # type: ignore[no-untyped-def]
    return invoke_json(fn.lam, fn.name, event)


def test_echo(fn) -> None:
    response, body = call(fn, action="echo", value={"k": [1, 2, "three"], "n": None})
    assert body == {"k": [1, 2, "three"], "n": None} and "FunctionError" not in response


def test_context(fn) -> None:
    response, body = call(fn, action="context")
    assert body["name"] == fn.name and body["memory"] == "160" and body["version"] == "$LATEST"
    assert body["arn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{fn.name}"
    assert body["request_id"] == response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert 0 < body["remaining"] <= 2000


def test_remaining_time_decreases(fn) -> None:
    _, (first, second) = call(fn, action="remaining")
    assert 150 <= first - second <= 1500


def test_error_shape(fn) -> None:
    response, body = call(fn, action="raise", message="no good")
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "ValueError" and body["errorMessage"] == "no good"
    trace = body.get("trace") if fn.kind in ("node", "aws-lambda-ric") else body.get("stackTrace")
    assert trace, body
    assert call(fn, action="echo", value=1)[1] == 1  # the environment keeps serving


def test_timeout(fn) -> None:
    response, body = call(fn, action="sleep", seconds=10)
    assert response["FunctionError"] == "Unhandled" and body["errorType"] == "Sandbox.Timedout"
    assert body["errorMessage"].endswith("Task timed out after 2.00 seconds")
    assert call(fn, action="echo", value="after")[1] == "after"


def test_memory_limit_kills_the_environment(fn) -> None:
    response, body = call(fn, action="alloc", mb=400)
    assert response["FunctionError"] == "Unhandled" and body["errorType"] == "Runtime.ExitError"
    assert "memory limit of 160 MB exceeded" in body["errorMessage"]
    assert call(fn, action="alloc", mb=10)[1] == 10 * 1024 * 1024


def test_crash(fn) -> None:
    response, body = call(fn, action="crash")
    assert response["FunctionError"] == "Unhandled" and body["errorType"] == "Runtime.ExitError"
    assert "Runtime exited with error: exit status 7" in body["errorMessage"]
    assert call(fn, action="echo", value="again")[1] == "again"


def test_tail_logs(fn) -> None:
    response = fn.lam.invoke(FunctionName=fn.name, LogType="Tail",
                             Payload=json.dumps({"action": "log", "line": "hi-tail"}))
    assert json.loads(response["Payload"].read()) == "logged"
    tail = base64.b64decode(response["LogResult"]).decode()
    rid = response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert "hi-tail" in tail and f"START RequestId: {rid}" in tail and f"REPORT RequestId: {rid}" in tail


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_init_error(request, lam, kind: str) -> None:
    files, error_type, fragment = BROKEN[kind]
    lam = client_for(request, kind, lam)
    name = _create(lam, kind, files)
    try:
        for _ in range(2):  # every request retries the init, and reports the failure
            response, body = invoke_json(lam, name, {})
            assert response["FunctionError"] == "Unhandled"
            assert body["errorType"] == error_type and fragment in body["errorMessage"]
        assert lam.get_function_configuration(FunctionName=name)["State"] == "Active"
    finally:
        lam.delete_function(FunctionName=name)


@pytest.mark.parametrize(("files", "handler"), [
    ({"index.js": "exports.handler = (event, context, callback) => {\n"
                  "  setTimeout(() => callback(null, {cb: event.v}), 10);\n};\n"}, "index.handler"),
    ({"index.mjs": "export const handler = async (event) => ({cb: event.v});\n"}, "index.handler"),
    ({"lib/util.cjs": "exports.go = async (event) => ({cb: event.v});\n"}, "lib/util.go"),
])
def test_node_handler_styles(lam, files: dict, handler: str) -> None:
    name = _create(lam, "node", files, Handler=handler)
    try:
        assert invoke_json(lam, name, {"v": 5})[1] == {"cb": 5}
    finally:
        lam.delete_function(FunctionName=name)


def test_node_callback_error(lam) -> None:
    name = _create(lam, "node", {"index.js": "exports.handler = (e, c, cb) => cb(new TypeError('nope'));\n"})
    try:
        response, body = invoke_json(lam, name, {})
        assert response["FunctionError"] == "Unhandled"
        assert body["errorType"] == "TypeError" and body["errorMessage"] == "nope"
    finally:
        lam.delete_function(FunctionName=name)
