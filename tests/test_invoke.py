"""Invoke semantics through boto3, raw HTTP and the AWS CLI against a real `kambda up`."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from tests.conftest import invoke_json, wait_for

ECHO = "def handler(event, context):\n    return event\n"
COUNTER = "count = 0\ndef handler(event, context):\n    global count\n    count += 1\n    return count\n"


def test_echo_and_headers(lam, create) -> None:
    name = create(ECHO)
    response, body = invoke_json(lam, name, {"name": "Ada", "nested": [1, {"x": None}]})
    assert body == {"name": "Ada", "nested": [1, {"x": None}]}
    assert response["StatusCode"] == 200
    assert response["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in response


def test_empty_payload_is_an_empty_object(lam, create) -> None:
    name = create(ECHO)
    assert json.loads(lam.invoke(FunctionName=name)["Payload"].read()) == {}


def test_none_result_is_null(lam, create) -> None:
    name = create("def handler(event, context):\n    return None\n")
    assert lam.invoke(FunctionName=name)["Payload"].read() == b"null"


def test_context_and_environment(lam, create) -> None:
    code = (
        "import os\n"
        "def handler(event, context):\n"
        "    return {k: getattr(context, k) for k in ('function_name', 'function_version',\n"
        "            'invoked_function_arn', 'memory_limit_in_mb', 'aws_request_id', 'log_group_name',\n"
        "            'log_stream_name')} | {'remaining': context.get_remaining_time_in_millis(),\n"
        "            'env': {k: os.environ.get(k) for k in ('_HANDLER', 'AWS_REGION', 'AWS_DEFAULT_REGION',\n"
        "            'AWS_EXECUTION_ENV', 'AWS_LAMBDA_FUNCTION_NAME', 'AWS_LAMBDA_FUNCTION_VERSION',\n"
        "            'AWS_LAMBDA_FUNCTION_MEMORY_SIZE', 'AWS_LAMBDA_INITIALIZATION_TYPE',\n"
        "            'AWS_LAMBDA_LOG_GROUP_NAME', 'AWS_LAMBDA_LOG_STREAM_NAME', 'AWS_LAMBDA_RUNTIME_API',\n"
        "            'LAMBDA_TASK_ROOT', 'LAMBDA_RUNTIME_DIR', 'TZ', 'MY_VAR', 'KAMBDA_NATS_URL')}}\n"
    )
    name = create(code, MemorySize=256, Timeout=10, Environment={"Variables": {"MY_VAR": "mine"}})
    response, body = invoke_json(lam, name)
    assert body["function_name"] == name and body["function_version"] == "$LATEST"
    assert body["invoked_function_arn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    assert str(body["memory_limit_in_mb"]) == "256"
    assert body["aws_request_id"] == response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert body["log_group_name"] == f"/aws/lambda/{name}"
    assert "[$LATEST]" in body["log_stream_name"]
    assert 5000 < body["remaining"] <= 10000
    env = body["env"]
    assert env["_HANDLER"] == "app.handler" and env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.12"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == name and env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
    assert env["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")
    assert env["LAMBDA_TASK_ROOT"] and env["LAMBDA_RUNTIME_DIR"] and env["TZ"] == ":UTC"
    assert env["MY_VAR"] == "mine"
    assert env["KAMBDA_NATS_URL"] is None  # the platform's own settings never reach a function


def test_boto3_in_a_function_reaches_kambda_through_its_endpoint_variables(platform, lam, create) -> None:
    """Every environment gets AWS_ENDPOINT_URL_<SERVICE> for kambda's services and its role's credentials, so
    boto3 in a handler calls kambda unchanged; a variable of the function's own wins, and its own global
    AWS_ENDPOINT_URL means kambda adds none."""
    code = (
        "import os, boto3, botocore\n"
        "def handler(event, context):\n"
        "    lam = boto3.client('lambda', config=botocore.config.Config(retries={'max_attempts': 1}))\n"
        "    try:\n"
        "        lam.get_function(FunctionName=context.function_name)\n"
        "        answer = 'allowed'\n"
        "    except botocore.exceptions.ClientError as exc:\n"
        "        answer = exc.response['Error']['Code']\n"
        "    except botocore.exceptions.EndpointConnectionError as exc:\n"
        "        answer = 'unreachable'\n"
        "    return {'answer': answer, 'endpoint': lam.meta.endpoint_url,\n"
        "            'env': {k: v for k, v in os.environ.items() if k.startswith('AWS_ENDPOINT_URL')}}\n"
    )
    name = create(code, Timeout=20, Environment={"Variables": {"AWS_ENDPOINT_URL_STS": "http://mine.example"}})
    body = invoke_json(lam, name)[1]
    assert body["endpoint"] == platform.url
    # Signed with the execution role's credentials, which grant nothing until kambda has IAM roles: the
    # gateway answered (AccessDenied), so the call went to kambda and not to AWS.
    assert body["answer"] == "AccessDeniedException", body
    assert body["env"]["AWS_ENDPOINT_URL_LAMBDA"] == body["env"]["AWS_ENDPOINT_URL_EVENTBRIDGE"] == platform.url
    assert body["env"]["AWS_ENDPOINT_URL_STS"] == "http://mine.example"
    assert "AWS_ENDPOINT_URL" not in body["env"]

    own = create(code, Timeout=20, Environment={"Variables": {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}})
    body = invoke_json(lam, own)[1]
    assert body["env"] == {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    assert body["answer"] == "unreachable"


def test_the_status_view_shows_the_environment_an_invoke_just_used(platform, lam, create) -> None:
    """Asked of the invoker, not taken from its last report, which may not have arrived yet."""
    name = create(ECHO)
    for _ in range(3):
        invoke_json(lam, name, {"n": 1})
        assert platform.status(name)["environments"] >= 1


def test_warm_reuse_keeps_module_state(lam, create) -> None:
    name = create(COUNTER)
    assert [invoke_json(lam, name)[1] for _ in range(3)] == [1, 2, 3]


def test_function_error_shape(lam, create) -> None:
    code = "def handler(event, context):\n    raise ValueError('bad input: ' + event['x'])\n"
    name = create(code)
    response, body = invoke_json(lam, name, {"x": "42"})
    assert response["StatusCode"] == 200 and response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "ValueError" and body["errorMessage"] == "bad input: 42"
    assert body["requestId"] == response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert body["stackTrace"] and any("app.py" in line for line in body["stackTrace"])
    assert invoke_json(lam, name, {"x": "1"})[1]["errorMessage"] == "bad input: 1"  # still serving


@pytest.mark.parametrize(("files", "handler", "error_type", "message"), [
    ({"app.py": "import no_such_module\n"}, "app.handler", "Runtime.ImportModuleError",
     "Unable to import module 'app': No module named 'no_such_module'"),
    ({"app.py": "def handler(:\n"}, "app.handler", "Runtime.UserCodeSyntaxError", None),
    ({"app.py": "x = 1\n"}, "app.handler", "Runtime.HandlerNotFound", "Handler 'handler' missing on module 'app'"),
    ({"app.py": "def handler(e, c):\n    return {1, 2}\n"}, "app.handler", "Runtime.MarshalError", None),
])
def test_runtime_errors(lam, create, files, handler, error_type, message) -> None:
    name = create(files, Handler=handler)
    for _ in range(2):  # the second call proves the error is reported again, not swallowed
        response, body = invoke_json(lam, name)
        assert response["FunctionError"] == "Unhandled"
        assert body["errorType"] == error_type
        if message:
            assert body["errorMessage"] == message


def test_handler_in_a_subfolder(lam, create) -> None:
    name = create({"pkg/__init__.py": "", "pkg/mod.py": "def go(event, context):\n    return 'deep'\n"},
                  Handler="pkg/mod.go")
    assert invoke_json(lam, name)[1] == "deep"


def test_crash_costs_only_its_request(lam, create) -> None:
    crash = create("import os\ndef handler(event, context):\n    if event.get('die'):\n        os._exit(3)\n"
                   "    return 'alive'\n")
    other = create(ECHO)
    response, body = invoke_json(lam, crash, {"die": True})
    assert response["FunctionError"] == "Unhandled" and body["errorType"] == "Runtime.ExitError"
    assert "exit status 3" in body["errorMessage"]
    assert invoke_json(lam, crash)[1] == "alive"
    assert invoke_json(lam, other, {"ok": 1})[1] == {"ok": 1}


def test_timeout_is_reported_and_the_environment_replaced(lam, create) -> None:
    name = create("import time\ncount = 0\ndef handler(event, context):\n    global count\n    count += 1\n"
                  "    if event.get('sleep'):\n        time.sleep(30)\n    return count\n", Timeout=1)
    response, body = invoke_json(lam, name, {"sleep": True})
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Sandbox.Timedout"
    assert body["errorMessage"].endswith("Task timed out after 1.00 seconds")
    assert invoke_json(lam, name)[1] == 1  # a fresh environment


def test_tail_log(lam, create) -> None:
    name = create("def handler(event, context):\n    print('hello from the handler')\n    return 1\n")
    response = lam.invoke(FunctionName=name, LogType="Tail")
    tail = base64.b64decode(response["LogResult"]).decode()
    rid = response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert f"START RequestId: {rid} Version: $LATEST" in tail
    assert "hello from the handler" in tail
    assert f"END RequestId: {rid}" in tail
    report = next(line for line in tail.splitlines() if line.startswith("REPORT"))
    fields = report.split("\t")
    assert fields[0] == f"REPORT RequestId: {rid}"
    assert fields[1].startswith("Duration: ") and fields[2].startswith("Billed Duration: ")
    assert fields[3] == "Memory Size: 128 MB" and fields[4].startswith("Max Memory Used: ")


def test_output_of_one_request_never_lands_in_another(lam, create) -> None:
    name = create("def handler(event, context):\n    print('marker-' + event['m'])\n    return event['m']\n")
    for m in ("a", "b", "c"):
        tail = base64.b64decode(lam.invoke(FunctionName=name, LogType="Tail",
                                           Payload=json.dumps({"m": m}))["LogResult"]).decode()
        assert f"marker-{m}" in tail
        assert [x for x in ("a", "b", "c") if f"marker-{x}" in tail] == [m]


def test_dry_run(lam, create) -> None:
    name = create(COUNTER)
    assert lam.invoke(FunctionName=name, InvocationType="DryRun")["StatusCode"] == 204
    assert invoke_json(lam, name)[1] == 1  # the dry run ran nothing


def test_event_invocation_runs_once(lam, create, tmp_path) -> None:
    marker = tmp_path / "ran.txt"
    name = create("def handler(event, context):\n    open(event['path'], 'a').write('x')\n")
    response = lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"path": str(marker)}))
    assert response["StatusCode"] == 202
    wait_for(lambda: marker.exists() and marker.read_text() == "x", what="the event to run")
    assert invoke_json(lam, name, {"path": str(marker)})[0]["StatusCode"] == 200
    assert marker.read_text() == "xx"


def test_invalid_json_payload(lam, create) -> None:
    name = create(ECHO)
    for payload in (b"{not json", b"\xff\xfe", b'{"a": "\xc3\x28"}'):
        with pytest.raises(ClientError) as excinfo:
            lam.invoke(FunctionName=name, Payload=payload)
        assert excinfo.value.response["Error"]["Code"] == "InvalidRequestContentException"
        assert excinfo.value.response["Error"]["Message"].startswith("Could not parse request body into json")


def test_payload_over_6mb_is_refused_and_just_under_works(lam, create) -> None:
    name = create("def handler(event, context):\n    return len(event['s'])\n", MemorySize=512)
    overhead = len(json.dumps({"s": ""}))
    with pytest.raises(ClientError) as excinfo:
        lam.invoke(FunctionName=name, Payload=json.dumps({"s": "x" * (6291456 - overhead + 1)}))
    assert excinfo.value.response["Error"]["Code"] == "RequestEntityTooLargeException"
    assert excinfo.value.response["Error"]["Message"] == \
        "Request must be smaller than 6291456 bytes for the InvokeFunction operation"
    assert invoke_json(lam, name, {"s": "x" * (6291456 - overhead)})[1] == 6291456 - overhead


def test_bad_invocation_type_and_client_context(platform, create) -> None:
    name = create(ECHO)
    url = f"{platform.url}/2015-03-31/functions/{name}/invocations"
    for headers, code in (({"X-Amz-Invocation-Type": "Sometimes"}, "ValidationException"),
                          ({"X-Amz-Client-Context": "%%%"}, "InvalidRequestContentException")):
        request = urllib.request.Request(url, data=b"{}", method="POST", headers=headers)
        with pytest.raises(urllib.error.HTTPError) as excinfo:
            urllib.request.urlopen(request, timeout=10)
        excinfo.value.close()
        assert excinfo.value.code == 400
        assert excinfo.value.headers["x-amzn-ErrorType"] == code


def test_client_context_reaches_the_handler(lam, create) -> None:
    name = create("def handler(event, context):\n    return context.client_context.custom\n")
    context = base64.b64encode(json.dumps({"custom": {"k": "v"}, "client": {}, "env": {}}).encode()).decode()
    assert invoke_json(lam, name, ClientContext=context)[1] == {"k": "v"}


def test_twenty_concurrent_calls_to_a_cold_function(lam, create, platform) -> None:
    name = create("import time\ndef handler(event, context):\n    time.sleep(0.2)\n    return event['i']\n")
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda i: invoke_json(lam, name, {"i": i}), range(20)))
    assert sorted(body for _, body in results) == list(range(20))
    assert all("FunctionError" not in response for response, _ in results)
    wait_for(lambda: 2 <= platform.status(name)["environments"] <= 10, what="several environments, at most 10")
    assert platform.status(name)["desired"] <= 10


def test_aws_cli_invoke(platform, create, tmp_path) -> None:
    name = create(ECHO)
    out = tmp_path / "out.json"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}
    done = subprocess.run(
        [sys.executable, "-m", "awscli", "lambda", "invoke", "--endpoint-url", platform.url,
         "--function-name", name, "--payload", '{"via": "cli"}',
         str(out)], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["StatusCode"] == 200
    assert json.loads(out.read_text()) == {"via": "cli"}
    listed = subprocess.run([sys.executable, "-m", "awscli", "lambda", "list-functions", "--endpoint-url",
                             platform.url], capture_output=True, text=True, env=env, timeout=60)
    assert name in [f["FunctionName"] for f in json.loads(listed.stdout)["Functions"]]


def test_trace_id_reaches_the_function(platform, create) -> None:
    name = create("import os\ndef handler(event, context):\n    return os.environ.get('_X_AMZN_TRACE_ID')\n")
    trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    request = urllib.request.Request(f"{platform.url}/2015-03-31/functions/{name}/invocations", data=b"{}",
                                     method="POST", headers={"X-Amzn-Trace-Id": trace})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert json.loads(response.read()) == trace
    request = urllib.request.Request(f"{platform.url}/2015-03-31/functions/{name}/invocations", data=b"{}",
                                     method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert json.loads(response.read()) is None  # not left over from the previous request
