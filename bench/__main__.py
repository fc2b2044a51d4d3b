"""``python -m bench``: kambda against the bare baseline on this machine, in one run.

Writes result.json, result.md and two PNG plots (latency CDF, scale-up timeline) to ``--out``.

The baseline is the same handler behind a plain aiohttp server (the physical limit of an HTTP
hop in Python here). This run measures, from this process as the client:

- warm sync invoke latency, sequential (p50 / p99), kambda vs baseline, and the ratio;
- throughput with 1 and 32 concurrent clients, kambda vs baseline;
- two floors (bench/floor.py: gateway, NATS, relay and environment process with none of the
  Lambda work; over core NATS, and over a JetStream work queue as ARCHITECTURE.md prescribes) on
  the same figures, so the ratios can be read against what a platform of this shape can reach on
  the machine;
- the same handler behind an HTTP API route (``POST /http/bench``, payload format 2.0): p50 / p99
  sequentially and throughput with 32 clients, against the bare baseline;
- a burst of 200 concurrent requests at a function scaled to zero: time until all are answered;
- async throughput: events per second from the first Event invoke until every event has run;
- an event source mapping over a JetStream stream: messages per second, in batches of 100;
- the event bus: events per second from PutEvents to delivery, and matching time per event with
  10, 1,000 and 10,000 rules (bench/events.py);
- cold start (request sent to response received, function scaled to zero before each call), with
  environments forked from the zygote and, on a second platform, started as fresh interpreters;
- the idle fleet: RSS and CPU of the controller with 1,000 deployed, idle functions;
- DynamoDB (bench/tables.py): PutItem, GetItem, a 100-item Query of a 100,000-item partition and a 10-item
  TransactWriteItems per second at 32 clients and p50, on SQLite and PostgreSQL, against the same statements
  issued straight to the engine, and the stream-to-function latency;
- the worker tier (bench/workers.py): async events/s and event-bus events/s with 1 and 2 worker
  replicas, each on a platform of its own, and the CPU milliseconds per event of the workers (and
  of every other part, which says what limits the rate).

Every loop is bounded in count and time. ``--quick`` uses tiny counts (for CI smoke runs).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import aiohttp

from bench import events, floor, report, tables, workers
from kambda.procs import service_pids

HANDLER = "def handler(event, context):\n    return {'hello': event.get('name', 'world')}\n"
#: Environments of each floor: kambda's default cap on one function's (KAMBDA_MAX_ENVIRONMENTS).
FLOOR_ENVIRONMENTS = 10
SLEEPY = "import time\ndef handler(event, context):\n    time.sleep(event.get('sleep', 0))\n    return 1\n"

BASELINE = """
import asyncio, json, sys
from aiohttp import web
def handler(event, context):
    return {'hello': event.get('name', 'world')}
async def invoke(request):
    return web.json_response(handler(json.loads(await request.read() or b'{}'), None))
app = web.Application()
app.router.add_post('/invoke', invoke)
async def main():
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, '127.0.0.1', 0)
    await site.start()
    print(site._server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def sequential(session: aiohttp.ClientSession, url: str, n: int, budget_s: float,
                     headers: dict[str, str] | None = None, cold: bool | None = None) -> list[float]:
    samples: list[float] = []
    deadline = time.monotonic() + budget_s
    body = b'{"name": "bench"}'
    for _ in range(n):
        started = time.perf_counter()
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()
            assert response.status == 200, response.status
            if cold is not None:
                assert (response.headers.get("Kambda-Cold-Start") == "true") == cold, "not the start expected"
        samples.append((time.perf_counter() - started) * 1e6)
        if time.monotonic() > deadline:
            break
    return samples


def start_kambda(state: Path, scale_to_zero_after: float, zygote: bool = True) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "KAMBDA_ZYGOTE": "true" if zygote else "false"}
    proc = subprocess.Popen([sys.executable, "-m", "kambda.cli", "up", "--port", "0", "--state-dir", str(state),
                             "--scale-to-zero-after", str(scale_to_zero_after)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("kambda is ready at "):
            return proc, line.split()[-1]
    raise SystemExit("kambda up did not start")


async def deploy(session: aiohttp.ClientSession, url: str, name: str, code: str = HANDLER) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", code)
    body = {"FunctionName": name, "Runtime": "python3.12", "Handler": "app.handler", "Role": "r",
            "Code": {"ZipFile": base64.b64encode(buf.getvalue()).decode()}}
    async with session.post(f"{url}/2015-03-31/functions", json=body) as response:
        assert response.status == 201, await response.text()


async def add_route(session: aiohttp.ClientSession, url: str, route_key: str, function: str) -> str:
    """An HTTP API route to a function (payload format 2.0); returns the URL that reaches it."""
    body = {"RouteKey": route_key, "FunctionName": function}
    async with session.post(f"{url}/_kambda/v1/http/routes", json=body) as r:
        assert r.status == 201, await r.text()
    return f"{url}/http{route_key.split(' ', 1)[1]}"


async def scaled_to_zero(session: aiohttp.ClientSession, url: str, name: str) -> bool:
    async with session.get(f"{url}/_kambda/v1/functions/{name}") as response:
        status = await response.json()
    return status["desired"] == 0 and status["environments"] == 0


async def cold_starts(session: aiohttp.ClientSession, url: str, name: str, n: int) -> list[float]:
    samples: list[float] = []
    for _ in range(n):
        deadline = time.monotonic() + 30
        while not await scaled_to_zero(session, url, name) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        samples.extend(await sequential(session, f"{url}/2015-03-31/functions/{name}/invocations", 1, 30,
                                        cold=True))
    return samples


def _controller_pid(up_pid: int) -> int:
    pids = service_pids(up_pid, "controller")
    if not pids:
        raise SystemExit("controller process not found")
    return pids[0]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def idle_fleet(session: aiohttp.ClientSession, url: str, up_pid: int, n: int, seconds: float) -> dict[str, float]:
    """Deploy ``n`` functions, leave them idle, and measure what the controller costs meanwhile."""
    sem = asyncio.Semaphore(8)

    async def one(i: int) -> None:
        async with sem:
            await deploy(session, url, f"idle-{i:05d}")

    started = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(n)))
    deploy_s = time.monotonic() - started
    pid = _controller_pid(up_pid)
    await asyncio.sleep(2)  # let the deploys' own work settle before sampling the idle cost
    cpu0, t0 = _cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    cpu = (_cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
    return {"functions": n, "deploy_seconds": deploy_s, "controller_rss_mb": _rss_mb(pid),
            "controller_cpu_percent_of_a_core": cpu * 100}


async def concurrent(url: str, clients: int, seconds: float, body: bytes = b'{"name": "bench"}'
                     ) -> tuple[float, list[float]]:
    """``clients`` loops sending requests for ``seconds``: (requests per second, latencies in us)."""
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def loop() -> None:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                async with session.post(url, data=body) as response:
                    await response.read()
                    assert response.status == 200, response.status
                latencies.append((time.perf_counter() - started) * 1e6)

        began = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(clients)))
        elapsed = time.monotonic() - began
    return len(latencies) / elapsed, latencies


async def burst_from_zero(session: aiohttp.ClientSession, url: str, name: str, n: int
                          ) -> tuple[float, list[tuple[float, int, int]], int]:
    """``n`` concurrent requests at a function with no environment: seconds until all are answered,
    and a timeline of (seconds, environments, answered / 10)."""
    answered = 0
    timeline: list[tuple[float, int, int]] = []
    began = time.monotonic()
    connector = aiohttp.TCPConnector(limit=n)
    async with aiohttp.ClientSession(connector=connector) as burst:
        async def one() -> None:
            nonlocal answered
            async with burst.post(f"{url}/2015-03-31/functions/{name}/invocations", data=b'{"sleep": 0.05}') as r:
                await r.read()
                assert r.status == 200, r.status
            answered += 1

        async def watch() -> None:
            while True:
                async with session.get(f"{url}/_kambda/v1/functions/{name}") as response:
                    environments = (await response.json())["environments"]
                timeline.append((time.monotonic() - began, environments, answered // 10))
                await asyncio.sleep(0.05)

        watcher = asyncio.create_task(watch())
        await asyncio.gather(*(one() for _ in range(n)))
        seconds = time.monotonic() - began
        await asyncio.sleep(0.3)
        watcher.cancel()
    return seconds, timeline, max((e for _, e, _ in timeline), default=0)


async def async_throughput(session: aiohttp.ClientSession, url: str, name: str, n: int) -> float:
    """Events per second from the first Event invoke to the last event run (queue and running empty)."""
    began = time.monotonic()
    sem = asyncio.Semaphore(32)

    async def one() -> None:
        async with sem, session.post(f"{url}/2015-03-31/functions/{name}/invocations", data=b"{}",
                                     headers={"X-Amz-Invocation-Type": "Event"}) as response:
            assert response.status == 202, response.status

    await asyncio.gather(*(one() for _ in range(n)))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        async with session.get(f"{url}/_kambda/v1/functions/{name}") as response:
            status = await response.json()
        if status["queued"] == 0 and status["busy"] == 0:
            break
        await asyncio.sleep(0.01)
    return n / (time.monotonic() - began)


async def event_source_rate(session: aiohttp.ClientSession, url: str, state: Path, n: int) -> float:
    """Messages per second through an event source mapping over a JetStream stream (batches of 100)."""
    import nats

    ports = next((state / "nats" / "run").glob("*.ports"))
    admin = json.loads((state / "nats" / "creds" / "admin.json").read_text())  # kambda/bus/identities.py
    nc = await nats.connect(json.loads(ports.read_text())["nats"][0], user=admin["user"], password=admin["password"])
    try:
        js = nc.jetstream()
        await js.add_stream(name="BENCH_ESM", subjects=["bench.esm"])
        for start in range(0, n, 500):
            await asyncio.gather(*(js.publish("bench.esm", b'{"n": 1}') for _ in range(start, min(n, start + 500))))
        await deploy(session, url, "bench-esm", "def handler(event, context):\n    return len(event['Records'])\n")
        began = time.monotonic()
        body = {"FunctionName": "bench-esm", "EventSourceArn": "arn:kambda:nats:::stream/BENCH_ESM", "BatchSize": 100}
        async with session.post(f"{url}/2015-03-31/event-source-mappings/", json=body) as response:
            assert response.status == 202, await response.text()
            uid = (await response.json())["UUID"]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            info = await js.consumer_info("BENCH_ESM", f"esm-{uid}")
            if info.num_pending == 0 and info.num_ack_pending == 0 and (info.delivered.stream_seq or 0) >= n:
                break
            await asyncio.sleep(0.01)
        return n / (time.monotonic() - began)
    finally:
        await nc.close()


async def run(args: argparse.Namespace) -> dict[str, object]:
    baseline = subprocess.Popen([sys.executable, "-c", BASELINE], stdout=subprocess.PIPE, text=True)
    assert baseline.stdout is not None
    baseline_url = f"http://127.0.0.1:{baseline.stdout.readline().strip()}/invoke"
    with tempfile.TemporaryDirectory() as tmp:
        try:
            kambda, url = start_kambda(Path(tmp), scale_to_zero_after=1.0)
        except BaseException:
            baseline.kill()
            raise
        try:
            async with aiohttp.ClientSession() as session:
                await deploy(session, url, "bench-warm")
                invoke_url = f"{url}/2015-03-31/functions/bench-warm/invocations"
                await sequential(session, invoke_url, args.warmup, 30)
                await sequential(session, baseline_url, args.warmup, 30)
                warm = await sequential(session, invoke_url, args.calls, 120)
                base = await sequential(session, baseline_url, args.calls, 120)
                kambda_1, _ = await concurrent(invoke_url, 1, args.seconds)
                baseline_1, _ = await concurrent(baseline_url, 1, args.seconds)
                route_url = await add_route(session, url, "POST /bench", "bench-warm")
                kambda_n, kambda_n_lat = await concurrent(invoke_url, args.clients, args.seconds)
                # Right after the direct invokes, so that both find the same environments warm.
                route_n, route_n_lat = await concurrent(route_url, args.clients, args.seconds)
                baseline_n, baseline_n_lat = await concurrent(baseline_url, args.clients, args.seconds)
                await sequential(session, route_url, args.warmup, 30)
                route = await sequential(session, route_url, args.calls, 120)
                await deploy(session, url, "bench-async")
                events_per_s = await async_throughput(session, url, "bench-async", args.events)
                esm_per_s = await event_source_rate(session, url, Path(tmp), args.messages)
                bus_per_s = await events.put_events_rate(session, url, args.bus_events)
                await deploy(session, url, "bench-burst", SLEEPY)
                burst_s, timeline, burst_envs = await burst_from_zero(session, url, "bench-burst", args.burst)
                await deploy(session, url, "bench-cold")
                cold = await cold_starts(session, url, "bench-cold", args.cold)
                fleet = await idle_fleet(session, url, kambda.pid, args.fleet, args.fleet_seconds)
        finally:
            kambda.terminate()
            kambda.wait(30)
            baseline.terminate()
            baseline.wait(10)
    floors: dict[str, dict[str, float]] = {}
    floor_samples: dict[str, list[float]] = {}
    for bus in floor.BUSES:
        with tempfile.TemporaryDirectory() as tmp:
            async with floor.Floor(tmp, FLOOR_ENVIRONMENTS, bus) as bare, aiohttp.ClientSession() as session:
                await sequential(session, bare.url, args.warmup, 30)
                samples = floor_samples[bus] = await sequential(session, bare.url, args.calls, 120)
                rps, latencies = await concurrent(bare.url, args.clients, args.seconds)
        floors[bus] = {"p50_us": statistics.median(samples), "p99_us": percentile(samples, 99),
                       "calls": len(samples), "throughput_n": rps, "p99_n_ms": percentile(latencies, 99) / 1000}
    with tempfile.TemporaryDirectory() as tmp:
        kambda, url = start_kambda(Path(tmp), scale_to_zero_after=1.0, zygote=False)
        try:
            async with aiohttp.ClientSession() as session:
                await deploy(session, url, "bench-cold")
                cold_no_zygote = await cold_starts(session, url, "bench-cold", args.cold)
        finally:
            kambda.terminate()
            kambda.wait(30)
    scaling = await workers.scaling(args.worker_events, args.worker_bus_events)
    tables_result = await tables.figures(args.clients, args.table_seconds, args.table_partition, args.table_records,
                                         args.table_transfers)
    result: dict[str, object] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                   f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
                   f"Python {platform.python_version()}, {platform.system()} {platform.release()}",
        "warm": {"p50_us": statistics.median(warm), "p99_us": percentile(warm, 99), "calls": len(warm)},
        "baseline": {"p50_us": statistics.median(base), "p99_us": percentile(base, 99), "calls": len(base)},
        "throughput": {"clients": args.clients, "seconds": args.seconds, "kambda_1": kambda_1,
                       "baseline_1": baseline_1, "kambda_n": kambda_n, "baseline_n": baseline_n,
                       "kambda_n_p99_ms": percentile(kambda_n_lat, 99) / 1000,
                       "baseline_n_p99_ms": percentile(baseline_n_lat, 99) / 1000},
        "floors": {"environments": FLOOR_ENVIRONMENTS, **floors},
        "http_route": {"p50_us": statistics.median(route), "p99_us": percentile(route, 99), "calls": len(route),
                       "throughput_n": route_n, "p99_n_ms": percentile(route_n_lat, 99) / 1000,
                       "ratio_p50_to_baseline": statistics.median(route) / statistics.median(base),
                       "ratio_throughput_to_baseline": route_n / baseline_n},
        "cold": {"p50_ms": statistics.median(cold) / 1000, "p99_ms": percentile(cold, 99) / 1000,
                 "calls": len(cold), "no_zygote_p50_ms": statistics.median(cold_no_zygote) / 1000,
                 "no_zygote_p99_ms": percentile(cold_no_zygote, 99) / 1000},
        "burst": {"requests": args.burst, "seconds": burst_s, "max_environments": burst_envs},
        "async": {"events": args.events, "events_per_second": events_per_s},
        "event_source": {"messages": args.messages, "messages_per_second": esm_per_s},
        "idle_fleet": fleet,
        "event_bus": {"events": args.bus_events, "events_per_second": bus_per_s,
                      **events.matching_times(args.match_events, max(1, args.match_events // 10))},
        "workers": scaling,
        "tables": tables_result,
    }
    written = report.write(result, {"kambda": warm, "floor, JetStream queue": floor_samples["jetstream"],
                                    "floor, core NATS": floor_samples["core"], "baseline (bare aiohttp)": base},
                           timeline, Path(args.out))
    result["files"] = [str(p) for p in written]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--calls", type=int, default=1000, help="sequential calls for the warm latency")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each throughput run")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients of the throughput run")
    parser.add_argument("--burst", type=int, default=200, help="requests of the burst from zero")
    parser.add_argument("--cold", type=int, default=10, help="cold starts to time")
    parser.add_argument("--events", type=int, default=5000, help="Event invokes for the async throughput")
    parser.add_argument("--messages", type=int, default=20000, help="messages through an event source mapping")
    parser.add_argument("--bus-events", type=int, default=5000, help="events through PutEvents to delivery")
    parser.add_argument("--match-events", type=int, default=2000, help="events matched per rule count")
    parser.add_argument("--worker-events", type=int, default=3000,
                        help="Event invokes per worker count (1 and 2 replicas)")
    parser.add_argument("--worker-bus-events", type=int, default=3000, help="PutEvents events per worker count")
    parser.add_argument("--fleet", type=int, default=1000, help="idle functions for the idle-fleet figure")
    parser.add_argument("--fleet-seconds", type=float, default=20.0)
    parser.add_argument("--table-seconds", type=float, default=5.0, help="length of each DynamoDB load run")
    parser.add_argument("--table-partition", type=int, default=100_000, help="items of the queried partition")
    parser.add_argument("--table-records", type=int, default=100, help="records timed from PutItem to function")
    parser.add_argument("--table-transfers", type=int, default=10_000, help="bank transfers (TransactWriteItems)")
    parser.add_argument("--out", default="bench/results", help="where result.json, result.md and plots go")
    parser.add_argument("--quick", action="store_true", help="tiny counts, for a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.warmup, args.cold, args.fleet, args.fleet_seconds = 20, 5, 2, 10, 1.0
        args.seconds, args.clients, args.burst, args.events, args.messages = 0.5, 4, 10, 50, 200
        args.bus_events, args.match_events = 50, 20
        args.worker_events, args.worker_bus_events = 50, 50
        args.table_seconds, args.table_partition, args.table_records, args.table_transfers = 0.3, 300, 3, 30
    result = asyncio.run(run(args))
    print(json.dumps(result, indent=2))
    print()
    print(report.markdown(result))


if __name__ == "__main__":
    main()
