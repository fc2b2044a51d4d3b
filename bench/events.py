"""The event bus's figures: events per second from PutEvents to delivery, and the matching time per
event with 10, 1,000 and 10,000 rules (the index against trying every rule)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import random
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

import aiohttp

from events import patterns

RULE_COUNTS = (10, 1000, 10000)
COUNTER = "import os\ndef handler(event, context):\n    open(os.environ['OUT'], 'a').write('x')\n"


def _rule(rng: random.Random, i: int) -> dict:
    """Rules shaped like real ones: a source, often a detail-type, conditions on detail fields;
    one in a hundred has no exact value to be filed under (a prefix and a numeric range only)."""
    if i % 100 == 99:
        return {"detail": {"sku": [{"prefix": f"sku-{rng.randrange(1000)}"}], "amount": [{"numeric": [">", 10]}]}}
    pattern: dict = {"source": [f"app.{rng.randrange(200)}"],
                     "detail": {"status": [rng.choice(["new", "paid", "shipped", "lost"])],
                                "amount": [{"numeric": [">=", rng.randrange(100)]}]}}
    if rng.random() < 0.5:
        pattern["detail-type"] = [f"type-{rng.randrange(20)}"]
    return pattern


def _event(rng: random.Random) -> dict:
    return {"version": "0", "id": "x", "source": f"app.{rng.randrange(200)}",
            "detail-type": f"type-{rng.randrange(20)}",
            "account": "0", "time": "2024-01-01T00:00:00Z", "region": "us-east-1", "resources": [],
            "detail": {"status": rng.choice(["new", "paid", "shipped", "lost"]), "amount": rng.randrange(200),
                       "sku": f"sku-{rng.randrange(1000)}", "customer": {"tier": "gold", "id": rng.randrange(10**6)}}}


def matching_times(events: int, brute_force_events: int) -> dict[str, dict[str, float]]:
    """Microseconds per event, by rule count, through the index and by trying every rule."""
    rng = random.Random(7)
    indexed: dict[str, float] = {}
    brute: dict[str, float] = {}
    for count in RULE_COUNTS:
        rules = [(f"r{i}", patterns.parse(_rule(rng, i))) for i in range(count)]
        index = patterns.RuleIndex(rules)
        sample = [_event(rng) for _ in range(events)]
        began = time.perf_counter()
        for event in sample:
            index.match(event)
        indexed[str(count)] = (time.perf_counter() - began) / events * 1e6
        began = time.perf_counter()
        for event in sample[:brute_force_events]:
            [name for name, node in rules if patterns.matches(node, event)]
        brute[str(count)] = (time.perf_counter() - began) / brute_force_events * 1e6
    return {"index_us": indexed, "brute_force_us": brute}


async def put_events_rate(session: aiohttp.ClientSession, url: str, n: int) -> float:
    """Events per second from the first PutEvents until every event has run its target function.

    The function counts its runs in a file of a directory anyone may write: when kambda runs as
    root, functions run sandboxed as users of their own and cannot reach kambda's state directory."""
    shared = Path(tempfile.mkdtemp(prefix="kambda-bench-bus-"))
    try:
        shared.chmod(0o777)
        out = shared / "counter"
        out.touch()
        out.chmod(0o666)
        return await _put_events_rate(session, url, n, out)
    finally:
        shutil.rmtree(shared, ignore_errors=True)


async def _put_events_rate(session: aiohttp.ClientSession, url: str, n: int, out: Path) -> float:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", COUNTER)
    async with session.post(f"{url}/2015-03-31/functions", json={
            "FunctionName": "bench-bus", "Runtime": "python3.12", "Handler": "app.handler", "Role": "r",
            "Environment": {"Variables": {"OUT": str(out)}},
            "Code": {"ZipFile": base64.b64encode(buf.getvalue()).decode()}}) as response:
        assert response.status == 201, await response.text()
    await _call(session, url, "PutRule", {"Name": "bench-bus", "EventPattern": json.dumps({"source": ["bench"]})})
    await _call(session, url, "PutTargets", {"Rule": "bench-bus", "Targets": [
        {"Id": "fn", "Arn": "arn:aws:lambda:us-east-1:000000000000:function:bench-bus"}]})
    sem = asyncio.Semaphore(16)
    began = time.monotonic()

    async def batch(start: int) -> None:
        entries = [{"Source": "bench", "DetailType": "t", "Detail": json.dumps({"i": i})}
                   for i in range(start, min(n, start + 10))]
        async with sem:
            answer = await _call(session, url, "PutEvents", {"Entries": entries})
        assert answer["FailedEntryCount"] == 0, answer

    await asyncio.gather(*(batch(start) for start in range(0, n, 10)))
    deadline = time.monotonic() + 120
    while (ran := out.stat().st_size) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {ran} of {n} events ran their target within 120 s")
        await asyncio.sleep(0.01)
    return n / (time.monotonic() - began)


async def _call(session: aiohttp.ClientSession, url: str, operation: str, body: dict) -> dict:
    async with session.post(f"{url}/", data=json.dumps(body), headers={
            "X-Amz-Target": f"AWSEvents.{operation}", "Content-Type": "application/x-amz-json-1.1"}) as response:
        answer = await response.json(content_type=None)
        assert response.status == 200, answer
        return answer
