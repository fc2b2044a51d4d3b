"""The kambda CLI against a real platform, run as a user would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from kambda.cli.main import parser
from tests.conftest import REPO, unique, wait_for


def kambda(platform, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run([sys.executable, "-m", "kambda.cli", "--endpoint", platform.url, *args],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, "COLUMNS": "200"})


def test_deploy_invoke_ls_logs_rm(platform) -> None:
    name = unique("cli")
    done = kambda(platform, "deploy", "examples/hello", "--name", name, "--env", "GREETING=hi")
    assert done.returncode == 0, done.stderr
    assert f"created {name}" in done.stdout
    done = kambda(platform, "invoke", name, "--payload", '{"name": "Ada"}')
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["message"] == "Hello, Ada!" and body["invocations"] == 1
    redeploy = kambda(platform, "deploy", "examples/hello", "--name", name, "--timeout", "9")
    assert redeploy.returncode == 0 and f"updated {name}" in redeploy.stdout
    listed = kambda(platform, "ls")
    assert name in listed.stdout and "9 s" in listed.stdout
    wait_for(lambda: body["request_id"] in kambda(platform, "logs", name).stdout, what="the log record")
    logs = kambda(platform, "logs", name).stdout
    assert f"START RequestId: {body['request_id']}" in logs and "REPORT RequestId:" in logs
    assert kambda(platform, "rm", name).returncode == 0
    gone = kambda(platform, "invoke", name)
    assert gone.returncode == 1
    assert gone.stderr.strip().splitlines() == [
        f"kambda: ResourceNotFoundException: Function not found: "
        f"arn:aws:lambda:us-east-1:000000000000:function:{name}:$LATEST"]


def test_payload_from_file_and_function_errors(platform, tmp_path) -> None:
    code = tmp_path / "fn"
    code.mkdir()
    (code / "app.py").write_text("def handler(event, context):\n    raise RuntimeError(event['why'])\n")
    name = unique("clierr")
    assert kambda(platform, "deploy", str(code), "--name", name).returncode == 0
    payload = tmp_path / "event.json"
    payload.write_text('{"why": "because"}')
    done = kambda(platform, "invoke", name, "--payload", f"@{payload}")
    assert done.returncode == 1
    assert json.loads(done.stdout)["errorMessage"] == "because"
    kambda(platform, "rm", name)


def test_user_mistakes_are_one_line_errors(platform, tmp_path) -> None:
    for args in (["deploy", str(tmp_path / "missing")], ["invoke", "bad name!"],
                 ["invoke", "x", "--payload", "@/nonexistent/file"]):
        done = kambda(platform, *args)
        assert done.returncode == 1, args
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr


def test_unreachable_endpoint(tmp_path) -> None:
    done = subprocess.run([sys.executable, "-m", "kambda.cli", "--endpoint", "http://127.0.0.1:9", "ls"],
                          capture_output=True, text=True, timeout=30, cwd=REPO)
    assert done.returncode == 1 and "is `kambda up` running?" in done.stderr


def test_top_shows_live_rates(platform, lam, create) -> None:
    import threading

    from tests.conftest import invoke_json

    name = create("def handler(event, context):\n    return 1\n")
    invoke_json(lam, name)
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            invoke_json(lam, name)

    loader = threading.Thread(target=load)
    loader.start()
    try:
        done = kambda(platform, "top", "--once", "--interval", "1")
    finally:
        stop.set()
        loader.join(30)
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if name in line)
    cells = [c.strip() for c in row.split("│") if c.strip()]
    assert cells[0] == name and float(cells[1]) > 0 and cells[4].endswith("ms")


def test_top_quantiles_from_histogram_deltas() -> None:
    from kambda.cli.top import quantile

    before = {0.001: 10.0, 0.01: 10.0, 0.1: 10.0, float("inf"): 10.0}
    after = {0.001: 10.0, 0.01: 60.0, 0.1: 110.0, float("inf"): 110.0}  # 50 in (1, 10] ms, 50 in (10, 100]
    assert quantile(0.5, before, after) == pytest.approx(0.01)
    assert 0.09 < quantile(0.99, before, after) <= 0.1
    assert quantile(0.5, after, after) is None  # nothing happened in between


def test_top_adds_up_the_versions_of_a_function() -> None:
    from kambda.cli.top import parse

    text = "\n".join([
        "# TYPE kambda_invocations counter",
        'kambda_invocations_total{function="f",outcome="success",version="1"} 3.0',
        'kambda_invocations_total{function="f",outcome="success",version="2"} 4.0',
        "# TYPE kambda_invocation_duration_seconds histogram",
        'kambda_invocation_duration_seconds_bucket{function="f",le="0.01",version="1"} 3.0',
        'kambda_invocation_duration_seconds_bucket{function="f",le="0.01",version="2"} 4.0',
        'kambda_invocation_duration_seconds_bucket{function="f",le="+Inf",version="1"} 3.0',
        'kambda_invocation_duration_seconds_bucket{function="f",le="+Inf",version="2"} 4.0',
        "",
    ])
    snap = parse(text, at=0.0)
    assert snap.invocations == {("f", "success"): 7.0}
    assert snap.buckets["f"] == {0.01: 7.0, float("inf"): 7.0}


def test_logs_of_an_unknown_function_is_resource_not_found(platform) -> None:
    done = kambda(platform, "logs", unique("nosuch"))
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kambda: ResourceNotFoundException: Function not found"), lines


def test_deploying_a_package_without_the_handler_module_warns(platform, tmp_path) -> None:
    code = tmp_path / "fn"
    code.mkdir()
    (code / "main.py").write_text("def handler(event, context):\n    return 1\n")
    name = unique("nohandler")
    done = kambda(platform, "deploy", str(code), "--name", name)  # the default handler is app.handler
    assert done.returncode == 0, done.stderr
    assert "warning: the package has no app.py" in done.stderr and "Runtime.ImportModuleError" in done.stderr
    good = kambda(platform, "deploy", str(code), "--name", name, "--handler", "main.handler")
    assert good.returncode == 0 and good.stderr == "", good.stderr
    assert kambda(platform, "invoke", name).stdout.strip() == "1"
    kambda(platform, "rm", name)


def test_a_refused_deploy_to_an_existing_function_changes_nothing(platform, tmp_path) -> None:
    code = tmp_path / "fn"
    code.mkdir()
    (code / "app.py").write_text("def handler(event, context):\n    return 'first'\n")
    name = unique("atomic")
    assert kambda(platform, "deploy", str(code), "--name", name).returncode == 0
    (code / "app.py").write_text("def handler(event, context):\n    return 'second'\n")
    refused = kambda(platform, "deploy", str(code), "--name", name, "--memory", "5")
    assert refused.returncode == 1 and "ValidationException" in refused.stderr, refused.stderr
    assert json.loads(kambda(platform, "invoke", name).stdout) == "first"
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"not a zip")
    refused = kambda(platform, "deploy", str(broken), "--name", name, "--timeout", "9")
    assert refused.returncode == 1, refused.stderr
    listed = json.loads(kambda(platform, "ls", "--output", "json").stdout)
    assert [f["Timeout"] for f in listed if f["FunctionName"] == name] == [3]
    kambda(platform, "rm", name)


def test_version_and_help_for_every_option_of_up(platform) -> None:
    done = subprocess.run([sys.executable, "-m", "kambda.cli", "--version"], capture_output=True, text=True,
                          timeout=30, cwd=REPO)
    assert done.returncode == 0 and done.stdout.startswith("kambda 0."), done
    up = next(action for action in parser()._actions if action.dest == "command").choices["up"]  # noqa: SLF001
    options = {action.option_strings[-1]: action.help for action in up._actions}  # noqa: SLF001
    assert "--port" in options and "--state-dir" in options
    assert [option for option, text in options.items() if not text] == []


def test_listings_are_whole_when_piped_and_json_on_request(platform, tmp_path) -> None:
    code = tmp_path / "fn"
    code.mkdir()
    (code / "app.py").write_text("def handler(event, context):\n    return 1\n")
    name = unique("a-function-named-long-enough-to-be-cut-at-80")

    def narrow(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kambda.cli", "--endpoint", platform.url, *args],
                              capture_output=True, text=True, timeout=60, cwd=REPO, env={**os.environ, "COLUMNS": "80"})

    deployed = narrow("deploy", str(code), "--name", name)
    assert deployed.returncode == 0
    assert len(deployed.stdout.splitlines()) == 1 and "sha256" in deployed.stdout, deployed.stdout
    assert json.loads(narrow("status", name).stdout)["function"] == name
    listing = narrow("ls")
    rows = [line.split() for line in listing.stdout.splitlines()]
    assert rows[0][:3] == ["Name", "Runtime", "Handler"] and "│" not in listing.stdout
    assert [name, "python3.12", "app.handler", "128", "MB", "3", "s"] in [row[:7] for row in rows], listing.stdout
    listed = json.loads(kambda(platform, "ls", "--output", "json").stdout)
    assert [f["Handler"] for f in listed if f["FunctionName"] == name] == ["app.handler"]
    kambda(platform, "rm", name)


def test_a_large_upload_says_how_it_goes(platform, tmp_path) -> None:
    code = tmp_path / "fn"
    code.mkdir()
    (code / "app.py").write_text("def handler(event, context):\n    return 1\n")
    (code / "blob.bin").write_bytes(os.urandom(5 * 1024 * 1024))
    name = unique("big")
    done = kambda(platform, "deploy", str(code), "--name", name)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0].startswith(f"kambda: uploading {name} (5.") and lines[1].startswith("kambda: uploaded 5."), lines
    kambda(platform, "rm", name)


def test_sfn_ls_start_describe_and_history(platform, tmp_path) -> None:
    from tests.test_sfn_api import ROLE, sfn_client

    sfn = sfn_client(platform)
    name = unique("cli-sfn")
    sfn.create_state_machine(name=name, roleArn=ROLE, definition=json.dumps({"StartAt": "Add", "States": {
        "Add": {"Type": "Pass", "Parameters": {"sum.$": "States.MathAdd($.a, $.b)"}, "Next": "Done"},
        "Done": {"Type": "Succeed"}}}))
    listed = kambda(platform, "sfn", "ls", "--output", "json")
    assert listed.returncode == 0 and name in [m["name"] for m in json.loads(listed.stdout)]
    (tmp_path / "in.json").write_text('{"a": 2, "b": 3}')
    started = kambda(platform, "sfn", "start", name, "--name", "run-1", "--input", f"@{tmp_path / 'in.json'}",
                     "--wait")
    assert started.returncode == 0, started.stderr
    assert started.stdout.splitlines()[-1] == '{"sum":5}' and "SUCCEEDED" in started.stdout
    described = json.loads(kambda(platform, "sfn", "describe", f"{name}/run-1", "--output", "json").stdout)
    assert described["status"] == "SUCCEEDED" and json.loads(described["input"]) == {"a": 2, "b": 3}
    history = kambda(platform, "sfn", "history", f"{name}/run-1")
    rows = [line.split() for line in history.stdout.splitlines()]
    assert rows[0][:3] == ["Id", "Type", "State"]
    assert [row[1] for row in rows[1:]] == ["ExecutionStarted", "PassStateEntered", "PassStateExited",
                                            "SucceedStateEntered", "SucceedStateExited", "ExecutionSucceeded"]
    assert rows[2][2] == "Add" and rows[4][2] == "Done" and rows[1] == ["1", "ExecutionStarted", "0", "ms"]
    missing = kambda(platform, "sfn", "start", unique("nowhere"))
    assert missing.returncode == 1 and "StateMachineDoesNotExist" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    bad = kambda(platform, "sfn", "describe", "no-slash")
    assert bad.returncode == 1 and "MACHINE/EXECUTION" in bad.stderr
