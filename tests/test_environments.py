"""Execution environments when things go wrong: custom bootstraps, crashes, limits, logs, isolation."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import threading

import pytest

from tests.conftest import REPO, invoke_json, make_zip, unique, wait_for

SHELL_BOOTSTRAP = """#!/bin/sh
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
if [ "${FAIL_INIT:-}" = "post" ]; then
  curl -sS -X POST "$API/init/error" -H "Lambda-Runtime-Function-Error-Type: Runtime.InitError" \\
    -d '{"errorMessage": "cannot start", "errorType": "Runtime.InitError"}' >/dev/null
  exit 1
fi
if [ "${FAIL_INIT:-}" = "exit" ]; then echo "dying during init"; exit 3; fi
while true; do
  HEADERS=$(mktemp)
  EVENT=$(curl -sS -D "$HEADERS" "$API/invocation/next")
  REQUEST_ID=$(grep -i '^Lambda-Runtime-Aws-Request-Id:' "$HEADERS" | cut -d' ' -f2 | tr -d '\\r')
  echo "shell handling $REQUEST_ID"
  curl -sS -X POST "$API/invocation/$REQUEST_ID/response" -H "Content-Type: application/json" \\
    -d "{\\"echo\\": $EVENT}" >/dev/null
  rm -f "$HEADERS"
done
"""


def create_shell(lam, env: dict[str, str] | None = None) -> str:  # type: ignore[no-untyped-def]
    name = unique("shell")
    lam.create_function(FunctionName=name, Runtime="provided.al2023", Role="r",
                        Code={"ZipFile": make_zip({"bootstrap": SHELL_BOOTSTRAP}, {"bootstrap": 0o755})},
                        Environment={"Variables": env or {}})
    return name


def test_shell_script_bootstrap(lam) -> None:
    name = create_shell(lam)
    try:
        response = lam.invoke(FunctionName=name, Payload=json.dumps({"a": 1}), LogType="Tail")
        assert json.loads(response["Payload"].read()) == {"echo": {"a": 1}}
        rid = response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
        assert f"shell handling {rid}" in base64.b64decode(response["LogResult"]).decode()
        for mode, error_type, fragment in (("post", "Runtime.InitError", "cannot start"),
                                           ("exit", "Runtime.ExitError", "exit status 3")):
            lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"FAIL_INIT": mode}})
            response, body = invoke_json(lam, name, {"b": 2})
            assert response["FunctionError"] == "Unhandled"
            assert body["errorType"] == error_type and fragment in body["errorMessage"]
            assert lam.get_function_configuration(FunctionName=name)["State"] == "Active"
        lam.update_function_configuration(FunctionName=name, Environment={"Variables": {}})
        assert invoke_json(lam, name, {"c": 3})[1] == {"echo": {"c": 3}}
    finally:
        lam.delete_function(FunctionName=name)


def test_missing_bootstrap_is_an_invalid_entrypoint(lam, create) -> None:
    name = create({"README": "no bootstrap here"}, Runtime="provided.al2023")
    response, body = invoke_json(lam, name)
    assert response["FunctionError"] == "Unhandled" and body["errorType"] == "Runtime.InvalidEntrypoint"
    assert "bootstrap" in body["errorMessage"]


@pytest.mark.parametrize(("code", "fragment"), [
    ("import ctypes\n    ctypes.string_at(0)", "Runtime exited with error: signal: segmentation fault"),
    ("import sys\n    sys.exit(2)", "Runtime exited with error: exit status 2"),
    ("import sys\n    sys.exit()", "Runtime exited without providing a reason"),
    ("import os\n    os.kill(os.getpid(), 9)", "Runtime exited with error: signal: killed"),
])
def test_crash_kinds(lam, create, code: str, fragment: str) -> None:
    name = create("n = 0\ndef handler(event, context):\n    global n\n    n += 1\n    if event.get('crash'):\n"
                  f"        {code.replace(chr(10) + '    ', chr(10) + '        ')}\n    return n\n")
    response, body = invoke_json(lam, name, {"crash": True})
    assert response["FunctionError"] == "Unhandled" and body["errorType"] == "Runtime.ExitError"
    assert re.fullmatch(r"RequestId: [0-9a-f-]{36} Error: .*", body["errorMessage"]), body
    assert fragment in body["errorMessage"]
    assert invoke_json(lam, name)[1] == 1  # a new environment


def test_children_of_a_crashed_environment_are_cleaned_up(lam, create) -> None:
    name = create("import os, subprocess\ndef handler(event, context):\n"
                  "    child = subprocess.Popen(['sleep', '300'])\n"
                  "    if os.fork() == 0:\n        import time\n        time.sleep(300)\n"
                  "    print('child', child.pid)\n    os._exit(1)\n")
    response = lam.invoke(FunctionName=name, LogType="Tail")
    assert json.loads(response["Payload"].read())["errorType"] == "Runtime.ExitError"
    pid = int(re.search(r"child (\d+)", base64.b64decode(response["LogResult"]).decode()).group(1))

    def gone() -> bool:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            return True

    wait_for(gone, timeout=10, what="the stray child to be killed")


def test_response_over_6mb_is_a_function_error(lam, create) -> None:
    name = create("def handler(event, context):\n    return 'x' * event['n']\n", MemorySize=512)
    response, body = invoke_json(lam, name, {"n": 7 * 1024 * 1024})
    assert response["FunctionError"] == "Unhandled"
    assert body == {"errorMessage": "Response payload size exceeded maximum allowed payload size (6291556 bytes).",
                    "errorType": "Function.ResponseSizeTooLarge"}
    assert len(invoke_json(lam, name, {"n": 6 * 1024 * 1024 - 10})[1]) == 6 * 1024 * 1024 - 10


def test_python_logging_format(lam, create) -> None:
    name = create("import logging\nlogging.getLogger().setLevel(logging.INFO)\n"
                  "def handler(event, context):\n    logging.info('hello %s', 'log')\n    return 1\n")
    response = lam.invoke(FunctionName=name, LogType="Tail")
    rid = response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    tail = base64.b64decode(response["LogResult"]).decode()
    assert re.search(rf"^\[INFO\]\t\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{{3}}Z\t{rid}\thello log$", tail, re.M), tail


def test_tmp_is_private_and_kept_while_warm(lam, create) -> None:
    name = create("import os, tempfile\ndef handler(event, context):\n"
                  "    path = os.path.join(tempfile.gettempdir(), 'state')\n"
                  "    n = int(open(path).read()) + 1 if os.path.exists(path) else 1\n"
                  "    open(path, 'w').write(str(n))\n    return [tempfile.gettempdir(), n]\n")
    (tmp1, n1), (tmp2, n2) = invoke_json(lam, name)[1], invoke_json(lam, name)[1]
    assert tmp1 == tmp2 and (n1, n2) == (1, 2) and tmp1 != "/tmp"


def test_logs_follow_shows_new_records_live(platform, lam, create) -> None:
    name = create("def handler(event, context):\n    print('live-' + event['m'])\n    return 1\n")
    invoke_json(lam, name, {"m": "before"})
    follower = subprocess.Popen([sys.executable, "-m", "kambda.cli", "--endpoint", platform.url, "logs", name, "-f"],
                                stdout=subprocess.PIPE, text=True, cwd=REPO)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(follower.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        # The backlog arrives first, so once it shows the follower is subscribed to new records.
        wait_for(lambda: any("live-before" in line for line in lines), timeout=30, what="the backlog")
        invoke_json(lam, name, {"m": "now"})
        wait_for(lambda: any("live-now" in line for line in lines), timeout=30, what="the live record")
    finally:
        follower.terminate()
        follower.wait(10)
        reader.join(10)
        assert follower.stdout is not None
        follower.stdout.close()


def test_a_misbehaving_function_costs_only_its_own_requests(lam, create) -> None:
    bad = create("import os, time\ndef handler(event, context):\n"
                 "    if event['do'] == 'sleep':\n        time.sleep(10)\n"
                 "    if event['do'] == 'crash':\n        os._exit(1)\n"
                 "    if event['do'] == 'alloc':\n        blob = b'x' * (400 * 1024 * 1024)\n        time.sleep(1)\n"
                 "    return 'ok'\n", Timeout=1)
    good = create("def handler(event, context):\n    return event['i']\n")
    failures: list[object] = []
    stop = threading.Event()

    def abuse() -> None:
        for do in ("sleep", "crash", "alloc") * 3:
            response, body = invoke_json(lam, bad, {"do": do})
            if response.get("FunctionError") != "Unhandled":
                failures.append(("bad function did not fail", do, body))
        stop.set()

    abuser = threading.Thread(target=abuse)
    abuser.start()
    served = 0
    while not stop.is_set():
        response, body = invoke_json(lam, good, {"i": served})
        if body != served or "FunctionError" in response:
            failures.append(("good function failed", served, body))
        served += 1
    abuser.join(120)
    assert not failures
    assert served >= 10


def test_forked_environments_do_not_share_random_state(lam, create) -> None:
    """Environments forked from the zygote must not all draw the same 'random' numbers."""
    from concurrent.futures import ThreadPoolExecutor

    name = create("import random, time, os\nSEED = random.random()\n"
                  "def handler(event, context):\n    time.sleep(0.5)\n"
                  "    return [os.getpid(), SEED, random.random()]\n")
    with ThreadPoolExecutor(3) as pool:
        results = [body for _, body in pool.map(lambda _: invoke_json(lam, name), range(3))]
    assert len({pid for pid, _, _ in results}) == 3  # three environments
    assert len({seed for _, seed, _ in results}) == 3 and len({r for _, _, r in results}) == 3


def test_snap_start_initialises_the_module_once_for_every_environment(lam, create, tmp_path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    ledger = tmp_path / "inits"
    code = ("import os, time\n"
            f"open({str(ledger)!r}, 'a').write(os.environ['AWS_LAMBDA_INITIALIZATION_TYPE'] + '\\n')\n"
            "INIT_PID = os.getpid()\n"
            "def handler(event, context):\n    time.sleep(0.5)\n"
            "    return [INIT_PID, os.getpid(), os.environ['AWS_LAMBDA_INITIALIZATION_TYPE']]\n")
    name = create(code, SnapStart={"ApplyOn": "PublishedVersions"})
    assert lam.get_function_configuration(FunctionName=name)["SnapStart"] == {
        "ApplyOn": "PublishedVersions", "OptimizationStatus": "On"}
    with ThreadPoolExecutor(2) as pool:
        results = [body for _, body in pool.map(lambda _: invoke_json(lam, name), range(2))]
    assert len({pid for _, pid, _ in results}) == 2  # two environments...
    assert len({init_pid for init_pid, _, _ in results}) == 1  # ...from one initialisation
    assert all(init_pid != pid and kind == "snap-start" for init_pid, pid, kind in results)
    assert ledger.read_text().split() == ["snap-start"]
    lam.update_function_configuration(FunctionName=name, SnapStart={"ApplyOn": "None"})
    init_pid, pid, kind = invoke_json(lam, name)[1]
    assert init_pid == pid and kind == "on-demand"  # initialised in its own process again
    first, *after = ledger.read_text().split()
    assert first == "snap-start" and after and set(after) == {"on-demand"}


def test_snap_start_is_refused_where_it_cannot_apply(lam) -> None:
    from botocore.exceptions import ClientError

    for runtime, files in (("nodejs20.x", {"index.js": "exports.handler = async () => 1;"}),):
        with pytest.raises(ClientError) as excinfo:
            lam.create_function(FunctionName=unique("snap"), Runtime=runtime, Handler="index.handler", Role="r",
                                Code={"ZipFile": make_zip(files)}, SnapStart={"ApplyOn": "PublishedVersions"})
        assert excinfo.value.response["Error"]["Code"] == "InvalidParameterValueException"
