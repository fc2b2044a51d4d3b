"""Metric names, the Grafana dashboard that queries them, and structured logs with request ids."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

from tests.conftest import REPO, Platform, invoke_json, make_zip, unique, wait_for

AGREED = {  # the names the issues and the README promise, with their Prometheus types
    "kambda_invocations_total": "counter", "kambda_invocation_duration_seconds": "histogram",
    "kambda_cold_starts_total": "counter", "kambda_cold_start_duration_seconds": "histogram",
    "kambda_function_environments": "gauge", "kambda_function_desired_environments": "gauge",
    "kambda_function_queue_depth": "gauge", "kambda_autoscaler_panic": "gauge", "kambda_throttles_total": "counter",
    "process_resident_memory_bytes": "gauge", "process_cpu_seconds_total": "counter",
    "kambda_async_queue_depth": "gauge", "kambda_async_retries_total": "counter",
    "kambda_async_dropped_total": "counter",
}
#: The sample names a family of each type yields (prometheus_client names counters with _total).
SUFFIXES = {"counter": ("",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def exported(platform: Platform) -> set[str]:
    """Every sample name the gateway's /metrics can produce, from its # TYPE lines."""
    text = platform.metrics()
    names: set[str] = set()
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        names.update(family + suffix for suffix in SUFFIXES.get(kind, ("",)))
    return names


def test_every_agreed_metric_is_exported(platform) -> None:
    names = exported(platform)
    missing = [f"{name} ({kind})" for name, kind in AGREED.items()
               if not all(name + suffix in names for suffix in SUFFIXES[kind])]
    assert not missing


def test_the_dashboard_queries_only_exported_metrics(platform) -> None:
    dashboard = json.loads((REPO / "helm" / "kambda" / "dashboards" / "kambda.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(exprs) >= 10
    queried = {name for expr in exprs for name in re.findall(r"\b((?:kambda|process)_[a-z_]+)\b", expr)}
    assert queried >= {"kambda_invocations_total", "kambda_function_queue_depth", "kambda_throttles_total"}
    assert queried <= exported(platform), queried - exported(platform)


def test_json_logs_of_one_invocation_carry_its_request_id(tmp_path: Path) -> None:
    platform = Platform(tmp_path / "state", env={"KAMBDA_LOG_LEVEL": "DEBUG", "KAMBDA_LOG_FORMAT": "json"}).start()
    try:
        lam = platform.lambda_client()
        name = unique("logged")
        lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role="r",
                            Code={"ZipFile": make_zip({"app.py": "def handler(e, c):\n    return 1\n"})})
        response, _ = invoke_json(lam, name)
        rid = response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]

        def lines(function: str = name) -> list[dict]:
            found = []
            for path in (platform.state_dir / "logs").glob("*.log"):
                for line in path.read_text().splitlines():
                    try:
                        entry = json.loads(line)  # every line is one JSON object
                    except ValueError:
                        raise AssertionError(f"not a JSON log line in {path.name}: {line!r}") from None
                    if entry.get("function") == function and entry.get("event", "").startswith(("invoke.", "run.")):
                        found.append(entry)
            return found

        wait_for(lambda: len(lines()) >= 4, what="the invocation's log lines")
        events = {entry["event"]: entry for entry in lines()}
        assert set(events) == {"invoke.received", "invoke.answered", "run.started", "run.finished"}
        assert {entry["request_id"] for entry in lines()} == {rid}
        assert {entry["component"] for entry in lines()} == {"gateway", "invoker"}

        # A request through an HTTP route logs the same way, under the request id of its invocation.
        routed = unique("routed")
        lam.create_function(FunctionName=routed, Runtime="python3.12", Handler="app.handler", Role="r",
                            Code={"ZipFile": make_zip({"app.py": "def handler(e, c):\n    return 1\n"})})
        lam.get_waiter("function_active_v2").wait(FunctionName=routed)
        route = urllib.request.Request(f"{platform.url}/_kambda/v1/http/routes", method="POST",
                                       data=json.dumps({"RouteKey": f"GET /{routed}", "FunctionName": routed}).encode(),
                                       headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(route, timeout=30) as answer:
            assert answer.status == 201
        with urllib.request.urlopen(f"{platform.url}/http/{routed}", timeout=30) as answer:
            assert answer.status == 200
        wait_for(lambda: len(lines(routed)) >= 4, what="the routed invocation's log lines")
        assert {entry["event"] for entry in lines(routed)} == {"invoke.received", "invoke.answered", "run.started",
                                                               "run.finished"}
        assert len({entry["request_id"] for entry in lines(routed)}) == 1
        assert {entry["component"] for entry in lines(routed)} == {"gateway", "invoker"}
    finally:
        platform.stop()
