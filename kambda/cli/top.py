"""``kambda top``: a live table of every function's rate, errors, latency, environments and queue.

It reads the gateway's /metrics like Prometheus would, and computes rates and latency quantiles
from the difference between two scrapes (so the numbers cover the last refresh interval).
"""

from __future__ import annotations

import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families
from rich.live import Live
from rich.table import Table


@dataclass
class Snapshot:
    at: float
    invocations: dict[tuple[str, str], float] = field(default_factory=dict)  # (function, outcome)
    buckets: dict[str, dict[float, float]] = field(default_factory=lambda: defaultdict(dict))
    gauges: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))  # metric -> fn -> v


GAUGES = ("kambda_function_environments", "kambda_function_desired_environments", "kambda_function_queue_depth")


def parse(text: str, at: float) -> Snapshot:
    snap = Snapshot(at)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            fn = sample.labels.get("function")
            if fn is None:
                continue
            # Invocations and latency come per version: a function's row adds its versions up.
            if sample.name == "kambda_invocations_total":
                key = (fn, sample.labels.get("outcome", ""))
                snap.invocations[key] = snap.invocations.get(key, 0.0) + sample.value
            elif sample.name == "kambda_invocation_duration_seconds_bucket":
                le = float(sample.labels["le"])
                snap.buckets[fn][le] = snap.buckets[fn].get(le, 0.0) + sample.value
            elif sample.name in GAUGES:
                snap.gauges[sample.name][fn] = sample.value
    return snap


def quantile(q: float, before: dict[float, float], after: dict[float, float]) -> float | None:
    """The q-quantile (seconds) of the observations between two cumulative histogram scrapes."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower, previous = 0.0, 0.0
    for bound, cumulative in zip(bounds, counts, strict=True):
        if cumulative >= rank:
            if bound == float("inf"):
                return lower
            share = (rank - previous) / (cumulative - previous) if cumulative > previous else 1.0
            return lower + (bound - lower) * share
        lower, previous = bound, cumulative
    return lower


def table(before: Snapshot, after: Snapshot) -> Table:
    seconds = max(1e-6, after.at - before.at)
    functions = sorted({fn for fn, _ in after.invocations} | set(after.gauges["kambda_function_environments"]))
    view = Table("function", "req/s", "errors/s", "throttled/s", "p50", "p99", "envs", "desired", "queued",
                 title=f"kambda top: last {seconds:.1f} s")
    for fn in functions:
        def rate(outcome: str, fn: str = fn) -> float:
            return (after.invocations.get((fn, outcome), 0.0) - before.invocations.get((fn, outcome), 0.0)) / seconds

        total = sum(rate(o) for f, o in after.invocations if f == fn)
        p50 = quantile(0.5, before.buckets.get(fn, {}), after.buckets.get(fn, {}))
        p99 = quantile(0.99, before.buckets.get(fn, {}), after.buckets.get(fn, {}))
        view.add_row(
            fn, f"{total:.1f}", f"{rate('function_error') + rate('error'):.1f}", f"{rate('throttled'):.1f}",
            "-" if p50 is None else f"{p50 * 1000:.1f} ms", "-" if p99 is None else f"{p99 * 1000:.1f} ms",
            f"{after.gauges['kambda_function_environments'].get(fn, 0):.0f}",
            f"{after.gauges['kambda_function_desired_environments'].get(fn, 0):.0f}",
            f"{after.gauges['kambda_function_queue_depth'].get(fn, 0):.0f}",
        )
    return view


def scrape(endpoint: str) -> Snapshot:
    with urllib.request.urlopen(endpoint.rstrip("/") + "/metrics", timeout=10) as response:
        return parse(response.read().decode(), time.monotonic())


def run(endpoint: str, interval: float, iterations: int | None = None,
        fetch: Callable[[str], Snapshot] = scrape) -> Table:
    """Refresh every ``interval`` seconds, ``iterations`` times (forever when None)."""
    before = fetch(endpoint)
    view = table(before, before)
    with Live(view, refresh_per_second=4, screen=iterations is None) as live:
        done = 0
        while iterations is None or done < iterations:
            time.sleep(interval)
            after = fetch(endpoint)
            view = table(before, after)
            live.update(view)
            before, done = after, done + 1
    return view
