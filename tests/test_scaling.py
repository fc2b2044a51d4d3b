"""Scaling against a real platform: bursts from zero, reserved and provisioned concurrency."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator

import aiohttp
import pytest
from botocore.exceptions import ClientError

from tests.conftest import Platform, invoke_json, make_zip, unique, wait_for

SLOW = ("import os, time\ndef handler(event, context):\n    time.sleep(event.get('sleep', 0))\n"
        "    return {'pid': os.getpid(), 'id': event.get('id'),\n"
        "            'init': os.environ['AWS_LAMBDA_INITIALIZATION_TYPE']}\n")


@pytest.fixture(scope="module")
def quick_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """A platform whose idle environments stop after 1 s."""
    running = Platform(tmp_path_factory.mktemp("scaling"), ["--scale-to-zero-after", "1"]).start()
    yield running
    running.stop()


async def _burst(url: str, name: str, n: int, sleep: float) -> list[tuple[int, dict, dict]]:
    connector = aiohttp.TCPConnector(limit=n)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        async def one(i: int) -> tuple[int, dict, dict]:
            async with session.post(f"{url}/2015-03-31/functions/{name}/invocations",
                                    data=json.dumps({"id": i, "sleep": sleep})) as response:
                return response.status, dict(response.headers), json.loads(await response.read() or b"null")

        return await asyncio.gather(*(one(i) for i in range(n)))


def test_burst_of_200_from_zero_loses_nothing_and_runs_nothing_twice(platform, create, tmp_path) -> None:
    ledger = tmp_path / "ledger"
    name = create("import os, time\ndef handler(event, context):\n    time.sleep(0.05)\n"
                  f"    with open({str(ledger)!r}, 'a') as f:\n        f.write(str(event['id']) + '\\n')\n"
                  "    return {'id': event['id'], 'pid': os.getpid()}\n")
    assert platform.status(name)["environments"] == 0
    results = asyncio.run(_burst(platform.url, name, 200, 0))
    assert [status for status, _, _ in results] == [200] * 200
    assert sorted(body["id"] for _, _, body in results) == list(range(200))
    runs = Counter(int(line) for line in ledger.read_text().split())
    assert runs == Counter(range(200))  # every request ran exactly once
    assert 1 < len({body["pid"] for _, _, body in results}) <= 10
    assert any(headers.get("Kambda-Cold-Start") == "true" for _, headers, _ in results)


def test_reserved_concurrency_caps_environments_and_throttles_the_excess(quick_platform) -> None:
    lam = quick_platform.lambda_client()
    name = unique("reserved")
    lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role="r",
                        Code={"ZipFile": make_zip({"app.py": SLOW})})
    try:
        assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=name)
        answer = lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=2)
        assert answer["ReservedConcurrentExecutions"] == 2
        assert lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 2
        results = asyncio.run(_burst(quick_platform.url, name, 10, 2.5))
        ok = [body for status, _, body in results if status == 200]
        throttled = [(headers, body) for status, headers, body in results if status == 429]
        assert len(ok) + len(throttled) == 10
        assert len(ok) >= 2 and throttled
        assert len({body["pid"] for body in ok}) <= 2
        for headers, body in throttled:
            assert headers["x-amzn-ErrorType"] == "TooManyRequestsException"
            assert body["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
        assert quick_platform.status(name)["desired"] <= 2
        assert (f'kambda_throttles_total{{function="{name}",'
                f'reason="ReservedFunctionConcurrentInvocationLimitExceeded"}} {len(throttled)}.0'
                in quick_platform.metrics())
        lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
        with pytest.raises(ClientError) as excinfo:  # boto3 sees the same error
            lam.invoke(FunctionName=name)
        assert excinfo.value.response["Error"]["Code"] == "TooManyRequestsException"
        assert excinfo.value.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
        lam.delete_function_concurrency(FunctionName=name)
        assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=name)
        assert invoke_json(lam, name, {"id": 1})[1]["id"] == 1
    finally:
        lam.delete_function(FunctionName=name)


TIMED = ("import time\ndef handler(event, context):\n    started = time.time()\n"
         "    time.sleep(event['sleep'])\n    return {'started': started, 'ended': time.time()}\n")


def test_reserved_concurrency_is_shared_by_the_versions_of_a_function(quick_platform) -> None:
    """As on AWS, reserved concurrency bounds the function: its versions together never run more."""
    lam = quick_platform.lambda_client()
    name = unique("shared")
    lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role="r",
                        Code={"ZipFile": make_zip({"app.py": TIMED})}, Publish=True)
    try:
        lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=2)

        async def both() -> list[tuple[int, dict]]:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
                async def one(qualifier: str) -> tuple[int, dict]:
                    async with session.post(f"{quick_platform.url}/2015-03-31/functions/{name}/invocations",
                                            params={"Qualifier": qualifier}, data=json.dumps({"sleep": 1.5})) as r:
                        return r.status, json.loads(await r.read())

                return await asyncio.gather(*(one(q) for q in ("$LATEST", "1") * 4))

        results = asyncio.run(both())
        assert {status for status, _ in results} <= {200, 429}
        runs = [(body["started"], body["ended"]) for status, body in results if status == 200]
        assert len(runs) >= 2 and len(runs) < len(results)
        edges = sorted([(start, 1) for start, _ in runs] + [(end, -1) for _, end in runs])
        running = [0]
        for _, step in edges:
            running.append(running[-1] + step)
        assert max(running) <= 2, runs  # never more than 2 at once over both versions
    finally:
        lam.delete_function(FunctionName=name)


def test_provisioned_concurrency_stays_warm_through_idle_periods(quick_platform) -> None:
    lam = quick_platform.lambda_client()
    warm, idle = unique("provisioned"), unique("ondemand")
    for name in (warm, idle):
        lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role="r",
                            Code={"ZipFile": make_zip({"app.py": SLOW})})
    try:
        answer = lam.put_provisioned_concurrency_config(FunctionName=warm, Qualifier="$LATEST",
                                                        ProvisionedConcurrentExecutions=3)
        assert answer["RequestedProvisionedConcurrentExecutions"] == 3
        wait_for(lambda: quick_platform.status(warm)["environments"] == 3, what="3 provisioned environments")
        config = lam.get_provisioned_concurrency_config(FunctionName=warm, Qualifier="$LATEST")
        assert config["Status"] == "READY" and config["AvailableProvisionedConcurrentExecutions"] == 3
        response, body = invoke_json(lam, warm, {"id": 1})
        assert body["init"] == "provisioned-concurrency"
        assert "kambda-cold-start" not in response["ResponseMetadata"]["HTTPHeaders"]
        # Let an idle window pass, proven by an on-demand function scaling to zero meanwhile.
        assert invoke_json(lam, idle, {"id": 2})[1]["init"] == "on-demand"
        wait_for(lambda: quick_platform.status(idle)["desired"] == 0 and
                 quick_platform.status(idle)["environments"] == 0, what="the on-demand function to idle out")
        status = quick_platform.status(warm)
        assert status["environments"] == 3 and status["desired"] == 3
        lam.delete_provisioned_concurrency_config(FunctionName=warm, Qualifier="$LATEST")
        wait_for(lambda: quick_platform.status(warm)["desired"] == 0 and
                 quick_platform.status(warm)["environments"] == 0, what="scale to zero once released")
        with pytest.raises(ClientError) as excinfo:
            lam.get_provisioned_concurrency_config(FunctionName=warm, Qualifier="$LATEST")
        assert excinfo.value.response["Error"]["Code"] == "ProvisionedConcurrencyConfigNotFoundException"
    finally:
        for name in (warm, idle):
            lam.delete_function(FunctionName=name)


def test_more_than_a_thousand_functions(platform, lam) -> None:
    """Every function version has its own consumer on the sync stream; NATS's default cap is 1,000."""
    import base64

    package = base64.b64encode(make_zip({"app.py": SLOW})).decode()
    prefix = unique("many")

    async def deploy_all() -> list[int]:
        async with aiohttp.ClientSession() as session:
            sem = asyncio.Semaphore(16)

            async def one(i: int) -> int:
                body = {"FunctionName": f"{prefix}-{i}", "Runtime": "python3.12", "Handler": "app.handler",
                        "Role": "r", "Code": {"ZipFile": package}}
                async with sem, session.post(f"{platform.url}/2015-03-31/functions", json=body) as response:
                    return response.status

            return await asyncio.gather(*(one(i) for i in range(1050)))

    try:
        assert asyncio.run(deploy_all()) == [201] * 1050
        assert invoke_json(lam, f"{prefix}-1049", {"id": 7})[1]["id"] == 7
    finally:
        async def delete_all() -> None:
            async with aiohttp.ClientSession() as session:
                sem = asyncio.Semaphore(16)

                async def one(i: int) -> None:
                    async with sem, session.delete(f"{platform.url}/2015-03-31/functions/{prefix}-{i}"):
                        pass

                await asyncio.gather(*(one(i) for i in range(1050)))

        asyncio.run(delete_all())
