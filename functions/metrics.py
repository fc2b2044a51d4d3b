"""The gateway's Prometheus metrics (served at /metrics with the process metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector


class Metrics:
    """The gateway's metrics. ``invoked`` is the hot path's entry: it caches the labelled children,
    which prometheus_client otherwise looks up under a lock on every call."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple[str, str, str], tuple] = {}  # type: ignore[type-arg]
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.invocations = Counter(
            "kambda_invocations", "Invocations answered by the gateway, by the version that ran (or was to "
            "run) and outcome (success, function_error, throttled, error, queued).", ["function", "version", "outcome"],
            registry=self.registry)
        self.duration = Histogram(
            "kambda_invocation_duration_seconds", "Time from request to answer at the gateway.",
            ["function", "version"], registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.cold_starts = Counter(
            "kambda_cold_starts", "Invocations that started a new execution environment.", ["function", "version"],
            registry=self.registry)
        self.throttles = Counter(
            "kambda_throttles", "Invocations answered 429, by reason.", ["function", "reason"],
            registry=self.registry)
        self.cold_start_duration = Histogram(
            "kambda_cold_start_duration_seconds", "Time from request to answer of invocations that "
            "started a new execution environment.", ["function", "version"], registry=self.registry,
            buckets=(0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.desired = Gauge(
            "kambda_function_desired_environments", "Environments the autoscaler wants.", ["function"],
            registry=self.registry)
        self.queue_depth = Gauge(
            "kambda_function_queue_depth", "Requests waiting for an environment.", ["function"],
            registry=self.registry)
        self.panic = Gauge(
            "kambda_autoscaler_panic", "1 while the autoscaler is in panic mode for the function.", ["function"],
            registry=self.registry)
        self.environments = Gauge(
            "kambda_function_environments", "Execution environments alive, as the invokers report.",
            ["function"], registry=self.registry)

        self.nats_disconnects = Counter(
            "kambda_nats_disconnects", "Times a NATS connection was lost: the gateway's, or the invokers' "
            "(as they report); a WARNING in that part's log says why.", ["connection"],
            registry=self.registry)
        for connection in ("gateway", "invokers"):
            self.nats_disconnects.labels(connection)

    def invoked(self, function: str, version: str, outcome: str, seconds: float, cold: bool) -> None:
        key = (function, version, outcome)
        children = self._children.get(key)
        if children is None:
            children = (self.invocations.labels(function, version, outcome), self.duration.labels(function, version),
                        self.cold_starts.labels(function, version),
                        self.cold_start_duration.labels(function, version))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)
        if cold:
            children[2].inc()
            children[3].observe(seconds)
