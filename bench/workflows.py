"""Step Functions' figures (issue #17), through the front door as boto3 sends them (JSON 1.0 over HTTP):

- state transitions per second of a 100-state Pass chain, STANDARD (durable: every transition an event appended
  to the execution's history on JetStream before it takes effect) and EXPRESS (in memory, StartSyncExecution);
- a Map over 1,000 items with MaxConcurrency 40 calling a Lambda function: seconds and items per second;
- StartSyncExecution p50 / p99 of a 3-state EXPRESS machine, one client;
- the time from kill -9 of the worker to the last of 100 running executions (each in a 1-second Wait) succeeding,
  which includes the supervisor's restart of the worker and what is left of the Wait.

There is no bare baseline for an interpreter of ASL; the issue's goals are absolute (STANDARD 2,000 and EXPRESS
20,000 transitions/s, the 3-state p50 under 5 ms, 100 executions resumed within 5 s) and printed beside each
figure. ``python -m bench.workflows`` runs these; ``--quick`` uses tiny counts (the smoke test's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.__main__ import deploy, percentile, start_kambda
from bench.tables import call, load
from kambda.procs import service_pids

TARGET = "AWSStepFunctions."
ROLE = "arn:aws:iam::000000000000:role/bench"
DOUBLE = "def handler(event, context):\n    return event * 2\n"
GOALS = {"standard_transitions_per_second": 2_000, "express_transitions_per_second": 20_000,
         "sync_3_state_p50_ms": 5.0, "resume_100_seconds": 5.0}


def chain(states: int) -> str:
    names = [f"S{i}" for i in range(states)]
    return json.dumps({"StartAt": names[0], "States": {
        name: {"Type": "Pass", **({"Next": names[i + 1]} if i + 1 < states else {"End": True})}
        for i, name in enumerate(names)}})


async def sfn(session: aiohttp.ClientSession, url: str, op: str, body: dict[str, Any]) -> dict[str, Any]:
    return await call(session, url, op, body, service=TARGET)


async def machine(session: aiohttp.ClientSession, url: str, name: str, definition: str,
                  kind: str = "STANDARD") -> str:
    made = await sfn(session, url, "CreateStateMachine", {"name": name, "definition": definition, "roleArn": ROLE,
                                                          "type": kind})
    return str(made["stateMachineArn"])


async def closed(session: aiohttp.ClientSession, url: str, arns: list[str], timeout: float) -> dict[str, int]:
    """Waits until every execution has left RUNNING; returns how many ended in each status."""
    left, ended = list(arns), dict[str, int]()
    deadline = time.monotonic() + timeout
    while left:
        if time.monotonic() > deadline:
            raise SystemExit(f"{len(left)} executions still running after {timeout:.0f} s")
        status = await asyncio.gather(*(sfn(session, url, "DescribeExecution", {"executionArn": a}) for a in left))
        still = []
        for arn, described in zip(left, status, strict=True):
            if described["status"] == "RUNNING":
                still.append(arn)
            else:
                ended[described["status"]] = ended.get(described["status"], 0) + 1
        left = still
        if left:
            await asyncio.sleep(0.02)
    return ended


async def standard_rate(session: aiohttp.ClientSession, url: str, executions: int, states: int) -> dict[str, Any]:
    arn = await machine(session, url, "bench-chain", chain(states))
    began = time.perf_counter()
    arns = [str((await sfn(session, url, "StartExecution", {"stateMachineArn": arn, "input": "{}"}))["executionArn"])
            for _ in range(executions)]
    ended = await closed(session, url, arns, timeout=600)
    seconds = time.perf_counter() - began
    return {"executions": executions, "states": states, "seconds": seconds, "ended": ended,
            "transitions_per_second": executions * states / seconds}


async def express_rate(session: aiohttp.ClientSession, url: str, clients: int, seconds: float,
                       states: int) -> dict[str, Any]:
    arn = await machine(session, url, "bench-chain-express", chain(states), "EXPRESS")

    async def one(i: int) -> None:
        done = await sfn(session, url, "StartSyncExecution", {"stateMachineArn": arn, "input": "{}"})
        if done["status"] != "SUCCEEDED":
            raise SystemExit(f"express execution {done['status']}: {done}")

    per_second, p50 = await load(one, clients, seconds)
    return {"clients": clients, "states": states, "executions_per_second": per_second, "p50_ms": p50,
            "transitions_per_second": per_second * states}


async def sync_latency(session: aiohttp.ClientSession, url: str, n: int) -> dict[str, Any]:
    arn = await machine(session, url, "bench-three", json.dumps({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Result": {"n": 1}, "Next": "B"},
        "B": {"Type": "Pass", "Parameters": {"m.$": "$.n"}, "Next": "C"},
        "C": {"Type": "Succeed"}}}), "EXPRESS")
    samples = []
    for _ in range(n):
        began = time.perf_counter()
        await sfn(session, url, "StartSyncExecution", {"stateMachineArn": arn, "input": "{}"})
        samples.append((time.perf_counter() - began) * 1000)
    return {"calls": n, "p50_ms": statistics.median(samples), "p99_ms": percentile(samples, 99)}


async def map_run(session: aiohttp.ClientSession, url: str, items: int) -> dict[str, Any]:
    await deploy(session, url, "bench-double", DOUBLE)
    function = "arn:aws:lambda:us-east-1:000000000000:function:bench-double"
    arn = await machine(session, url, "bench-map", json.dumps({"StartAt": "Each", "States": {"Each": {
        "Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 40, "End": True,
        "ItemProcessor": {"StartAt": "Double", "States": {
            "Double": {"Type": "Task", "Resource": function, "End": True}}}}}}))
    began = time.perf_counter()
    started = await sfn(session, url, "StartExecution", {"stateMachineArn": arn,
                                                         "input": json.dumps({"items": list(range(items))})})
    ended = await closed(session, url, [started["executionArn"]], timeout=600)
    seconds = time.perf_counter() - began
    described = await sfn(session, url, "DescribeExecution", {"executionArn": started["executionArn"]})
    if ended != {"SUCCEEDED": 1} or json.loads(described["output"]) != [i * 2 for i in range(items)]:
        raise SystemExit(f"the Map did not succeed with every item doubled: {ended} {described.get('error')}")
    return {"items": items, "max_concurrency": 40, "seconds": seconds, "items_per_second": items / seconds}


async def resume_after_kill(session: aiohttp.ClientSession, url: str, up_pid: int, executions: int) -> dict[str, Any]:
    arn = await machine(session, url, "bench-resume", json.dumps({"StartAt": "In", "States": {
        "In": {"Type": "Pass", "Next": "Pause"}, "Pause": {"Type": "Wait", "Seconds": 1, "Next": "Out"},
        "Out": {"Type": "Pass", "End": True}}}))
    arns = [str((await sfn(session, url, "StartExecution", {"stateMachineArn": arn, "input": "{}"}))["executionArn"])
            for _ in range(executions)]

    async def waiting(execution: str) -> bool:
        history = await sfn(session, url, "GetExecutionHistory", {"executionArn": execution, "maxResults": 1000})
        types = [e["type"] for e in history["events"]]
        return "WaitStateEntered" in types and "WaitStateExited" not in types

    deadline = time.monotonic() + 60
    while not all(await asyncio.gather(*(waiting(a) for a in arns))):
        if time.monotonic() > deadline:
            raise SystemExit("the executions did not all reach their Wait state")
        await asyncio.sleep(0.02)
    [worker] = service_pids(up_pid, "worker")
    killed = time.perf_counter()
    os.kill(worker, signal.SIGKILL)
    ended = await closed(session, url, arns, timeout=120)
    if ended != {"SUCCEEDED": executions}:
        raise SystemExit(f"not every execution succeeded after the kill: {ended}")
    return {"executions": executions, "seconds_from_kill": time.perf_counter() - killed}


async def figures(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kambda-bench-sfn-") as state:
        proc, url = start_kambda(Path(state), scale_to_zero_after=600)
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.clients * 2)) as session:
                await sync_latency(session, url, 20)  # warm: the first calls compile the definitions' paths
                return {
                    "standard": await standard_rate(session, url, args.executions, args.states),
                    "express": await express_rate(session, url, args.clients, args.seconds, args.states),
                    "sync_3_state": await sync_latency(session, url, args.sync_calls),
                    "map": await map_run(session, url, args.items),
                    "resume": await resume_after_kill(session, url, proc.pid, args.resume),
                    "goals": GOALS,
                }
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


def markdown(result: dict[str, Any]) -> str:
    s, e, y, m, r = (result[k] for k in ("standard", "express", "sync_3_state", "map", "resume"))
    return "\n".join([
        "| Step Functions | kambda | goal |", "|---|---|---|",
        f"| STANDARD, {s['states']}-state Pass chain, {s['executions']} executions: transitions per second "
        f"| {s['transitions_per_second']:,.0f} | {GOALS['standard_transitions_per_second']:,} |",
        f"| EXPRESS, {e['states']}-state Pass chain, StartSyncExecution from {e['clients']} clients: transitions "
        f"per second | {e['transitions_per_second']:,.0f} | {GOALS['express_transitions_per_second']:,} |",
        f"| StartSyncExecution of a 3-state EXPRESS machine, 1 client: p50 / p99 ms "
        f"| {y['p50_ms']:.2f} / {y['p99_ms']:.2f} | {GOALS['sync_3_state_p50_ms']} (p50) |",
        f"| Map over {m['items']:,} items, MaxConcurrency 40, a Lambda task each: seconds (items per second) "
        f"| {m['seconds']:.1f} ({m['items_per_second']:,.0f}) | - |",
        f"| kill -9 of the worker to {r['executions']} executions (in a 1 s Wait) succeeded: seconds "
        f"| {r['seconds_from_kill']:.2f} | {GOALS['resume_100_seconds']} |",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.workflows")
    parser.add_argument("--states", type=int, default=100)
    parser.add_argument("--executions", type=int, default=50)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--sync-calls", type=int, default=500)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--resume", type=int, default=100)
    parser.add_argument("--out", type=Path, help="write result.json and result.md here")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.states, args.executions, args.clients, args.seconds = 10, 3, 2, 0.5
        args.sync_calls, args.items, args.resume = 10, 20, 5
    result = asyncio.run(figures(args))
    table = markdown(result)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "result.json").write_text(json.dumps(result, indent=2))
        (args.out / "result.md").write_text(table + "\n")
    print(json.dumps(result, indent=2))
    print(table)


if __name__ == "__main__":
    main()
