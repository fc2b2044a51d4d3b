"""Merging several processes' Prometheus texts into one scrape (kambda/scrape.py), without a server."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kambda.scrape import merge


def replica(retries: int, depth: int) -> bytes:
    registry = CollectorRegistry()
    Counter("kambda_async_retries", "Retried.", ["function"], registry=registry).labels("f").inc(retries)
    Gauge("kambda_async_queue_depth", 'Depth "now"\nper function.', ["function"], registry=registry) \
        .labels("f").set(depth)
    return generate_latest(registry)


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(s.labels.items())): s.value
            for family in text_string_to_metric_families(text.decode()) for s in family.samples}


def test_one_text_passes_unchanged() -> None:
    text = replica(3, 4)
    assert merge([text]) == text


def test_counters_add_up_and_gauges_take_the_largest() -> None:
    merged = merge([replica(3, 4), replica(5, 2), replica(0, 1)])
    found = samples(merged)
    assert found[("kambda_async_retries_total", (("function", "f"),))] == 8
    assert found[("kambda_async_queue_depth", (("function", "f"),))] == 4
    assert merged.decode().count('kambda_async_retries_total{function="f"} ') == 1  # one series per name
    assert "# TYPE kambda_async_retries counter" in merged.decode()


def test_nothing_to_merge_is_empty() -> None:
    assert merge([]) == b""
