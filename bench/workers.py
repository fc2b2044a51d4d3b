"""The worker tier's figures: async events/s and event-bus events/s with 1 and 2 worker replicas,
and the CPU seconds each part of the platform spends per event (read from /proc/<pid>/stat).

Each replica count gets a platform of its own (``kambda up --workers N``). An async event is
counted done when its function has run (it appends one byte to a file), so the figure covers the
whole path: the gateway stores the event, a worker pulls it, queues the sync invocation, an
environment runs it. The CPU split by part (gateway, controller, workers, invoker with its
environments, nats-server, and this process as the client) says what limits the rate on this
machine.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import aiohttp

from bench import events
from kambda.procs import descendants

COUNTER = "import os\ndef handler(event, context):\n    open(os.environ['OUT'], 'a').write('x')\n"
#: Which part of the platform a process is, by what runs in it (environments count as the invoker's).
PARTS = ("gateway", "controller", "worker", "invoker")


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def part_of(pid: int, parents: dict[int, int]) -> str:
    """The part a process belongs to: the service it or its nearest ancestor runs, or nats-server."""
    while pid in parents:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return "gone"
        if argv[1:2] == [b"-m"] and argv[2:3] and argv[2].decode() in PARTS:
            return argv[2].decode()
        if argv and argv[0].endswith(b"nats-server"):
            return "nats-server"
        pid = parents[pid]
    return "other"


def cpu_by_part(up_pid: int) -> dict[str, float]:
    """CPU seconds used so far by each part's live processes (environments under their invoker)."""
    pids = descendants(up_pid)
    parents = {}
    for pid in pids:
        try:
            parents[pid] = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    totals: dict[str, float] = {}
    for pid in parents:
        part = part_of(pid, parents)
        totals[part] = totals.get(part, 0.0) + cpu_seconds(pid)
    return totals


def spent(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    """CPU milliseconds per event by part (an environment that came or went in between is counted
    from zero or not at all: the figure is a floor for the invoker's part)."""
    return {part: max(0.0, after.get(part, 0.0) - before.get(part, 0.0)) / n * 1000
            for part in sorted(set(before) | set(after)) if part != "gone"}


def start(state: Path, workers: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "kambda.cli", "up", "--port", "0", "--state-dir", str(state),
                             "--workers", str(workers)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("kambda is ready at "):
            return proc, line.split()[-1]
    raise SystemExit("kambda up did not start")


async def deploy_counter(session: aiohttp.ClientSession, url: str, name: str, out: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", COUNTER)
    async with session.post(f"{url}/2015-03-31/functions", json={
            "FunctionName": name, "Runtime": "python3.12", "Handler": "app.handler", "Role": "r",
            "Environment": {"Variables": {"OUT": str(out)}},
            "Code": {"ZipFile": base64.b64encode(buf.getvalue()).decode()}}) as response:
        assert response.status == 201, await response.text()


async def async_rate(session: aiohttp.ClientSession, url: str, name: str, out: Path, n: int) -> float:
    """Events per second from the first Event invoke until the function has run every event."""
    sem = asyncio.Semaphore(32)
    began = time.monotonic()

    async def one() -> None:
        async with sem, session.post(f"{url}/2015-03-31/functions/{name}/invocations", data=b"{}",
                                     headers={"X-Amz-Invocation-Type": "Event"}) as response:
            assert response.status == 202, response.status

    await asyncio.gather(*(one() for _ in range(n)))
    deadline = time.monotonic() + 300
    while (ran := out.stat().st_size) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {ran} of {n} async events ran within 300 s")
        await asyncio.sleep(0.01)
    return n / (time.monotonic() - began)


async def one_platform(workers: int, async_events: int, bus_events: int) -> dict[str, object]:
    shared = Path(tempfile.mkdtemp(prefix="kambda-bench-workers-"))
    shared.chmod(0o777)  # sandboxed functions (kambda as root) run as users of their own
    out = shared / "async-counter"
    out.touch()
    out.chmod(0o666)
    try:
        proc, url = start(shared / "state", workers)
        try:
            async with aiohttp.ClientSession() as session:
                await deploy_counter(session, url, "bench-workers-async", out)
                await async_rate(session, url, "bench-workers-async", out, min(200, async_events))  # warm up
                out.write_text("")
                before = {**cpu_by_part(proc.pid), "client": time.process_time()}
                async_per_s = await async_rate(session, url, "bench-workers-async", out, async_events)
                async_cpu = spent(before, {**cpu_by_part(proc.pid), "client": time.process_time()}, async_events)
                before = {**cpu_by_part(proc.pid), "client": time.process_time()}
                bus_per_s = await events.put_events_rate(session, url, bus_events)
                bus_cpu = spent(before, {**cpu_by_part(proc.pid), "client": time.process_time()}, bus_events)
        finally:
            proc.terminate()
            proc.wait(30)
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    return {"workers": workers, "async_events": async_events, "async_events_per_second": async_per_s,
            "async_cpu_ms_per_event": async_cpu, "bus_events": bus_events, "bus_events_per_second": bus_per_s,
            "bus_cpu_ms_per_event": bus_cpu}


async def scaling(async_events: int, bus_events: int, replica_counts: tuple[int, ...] = (1, 2)) -> dict[str, object]:
    runs = [await one_platform(n, async_events, bus_events) for n in replica_counts]
    first, last = runs[0], runs[-1]
    return {"runs": runs, "cores": os.cpu_count(),
            "async_scaling": float(last["async_events_per_second"]) / float(first["async_events_per_second"]),
            "bus_scaling": float(last["bus_events_per_second"]) / float(first["bus_events_per_second"])}


def markdown_rows(result: dict[str, object]) -> list[str]:
    rows = []
    for run in result["runs"]:  # type: ignore[attr-defined]
        n = run["workers"]
        for kind, label in (("async", "async events"), ("bus", "event-bus events")):
            cpu = run[f"{kind}_cpu_ms_per_event"]
            split = ", ".join(f"{part} {ms:.2f}" for part, ms in cpu.items() if ms >= 0.005)
            rows.append(f"| {n} worker{'s' if n > 1 else ''}: {run[f'{kind}_events']} {label} | "
                        f"{run[f'{kind}_events_per_second']:.0f} events/s | worker {cpu.get('worker', 0.0):.2f} ms "
                        f"CPU/event | {split} |")
    rows.append(f"| 2 workers against 1 ({result['cores']} cores) | async {result['async_scaling']:.2f}x, "
                f"event bus {result['bus_scaling']:.2f}x | | |")
    return rows


def main() -> None:
    """``python -m bench.workers [ASYNC_EVENTS [BUS_EVENTS]]``: only these figures."""
    args = [int(a) for a in sys.argv[1:3]]
    result = asyncio.run(scaling(*(args + [3000, 3000][len(args):])))  # type: ignore[arg-type]
    print(json.dumps(result, indent=2))
    print("\n| figure | rate | worker CPU | CPU ms per event, by part |\n|---|---|---|---|")
    print("\n".join(markdown_rows(result)))


if __name__ == "__main__":
    main()
