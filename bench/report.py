"""Writing a benchmark run down: JSON, a Markdown table, and PNG plots (matplotlib)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import tables
from bench.workers import markdown_rows

#: How the table names bench/floor.py's two buses.
FLOOR_LABELS = {"core": "core NATS", "jetstream": "JetStream work queue"}


def markdown(result: dict[str, Any]) -> str:
    w, b, t = result["warm"], result["baseline"], result["throughput"]
    c, f, burst, h = result["cold"], result["idle_fleet"], result["burst"], result["http_route"]
    floors = result["floors"]
    js = floors["jetstream"]
    return "\n".join([
        f"Machine: {result['machine']}",
        "",
        "| figure | kambda | baseline (bare aiohttp) | ratio |",
        "|---|---|---|---|",
        f"| warm invoke p50, 1 client | {w['p50_us']:.0f} us | {b['p50_us']:.0f} us "
        f"| {w['p50_us'] / b['p50_us']:.2f}x |",
        f"| warm invoke p99, 1 client | {w['p99_us']:.0f} us | {b['p99_us']:.0f} us "
        f"| {w['p99_us'] / b['p99_us']:.2f}x |",
        f"| throughput, 1 client | {t['kambda_1']:.0f} req/s | {t['baseline_1']:.0f} req/s | "
        f"{t['kambda_1'] / t['baseline_1']:.0%} |",
        f"| throughput, {t['clients']} clients | {t['kambda_n']:.0f} req/s | {t['baseline_n']:.0f} req/s | "
        f"{t['kambda_n'] / t['baseline_n']:.0%} |",
        f"| p99 at {t['clients']} clients | {t['kambda_n_p99_ms']:.1f} ms | {t['baseline_n_p99_ms']:.1f} ms | |",
        *(f"| floor ({label}): warm p50 / p99, 1 client | {floors[bus]['p50_us']:.0f} / {floors[bus]['p99_us']:.0f} us "
          f"| {b['p50_us']:.0f} / {b['p99_us']:.0f} us | {floors[bus]['p50_us'] / b['p50_us']:.2f}x |"
          for bus, label in FLOOR_LABELS.items()),
        *(f"| floor ({label}): throughput, {t['clients']} clients (p99) | {floors[bus]['throughput_n']:.0f} req/s "
          f"({floors[bus]['p99_n_ms']:.1f} ms) | {t['baseline_n']:.0f} req/s "
          f"| {floors[bus]['throughput_n'] / t['baseline_n']:.0%} |"
          for bus, label in FLOOR_LABELS.items()),
        f"| kambda against the JetStream floor: warm p50, throughput at {t['clients']} clients "
        f"| {w['p50_us'] / js['p50_us']:.2f}x, {t['kambda_n'] / js['throughput_n']:.0%} | | |",
        f"| HTTP route p50 / p99, 1 client | {h['p50_us']:.0f} / {h['p99_us']:.0f} us "
        f"| {b['p50_us']:.0f} / {b['p99_us']:.0f} us | {h['ratio_p50_to_baseline']:.2f}x |",
        f"| HTTP route throughput, {t['clients']} clients (p99) | {h['throughput_n']:.0f} req/s "
        f"({h['p99_n_ms']:.1f} ms) | {t['baseline_n']:.0f} req/s ({t['baseline_n_p99_ms']:.1f} ms) "
        f"| {h['ratio_throughput_to_baseline']:.0%} |",
        f"| cold start p50 / p99 (zygote) | {c['p50_ms']:.1f} / {c['p99_ms']:.1f} ms | | |",
        f"| cold start p50 / p99 (no zygote) | {c['no_zygote_p50_ms']:.1f} / {c['no_zygote_p99_ms']:.1f} ms | | |",
        f"| burst of {burst['requests']} from zero, all answered | {burst['seconds']:.2f} s "
        f"({burst['max_environments']} environments) | | |",
        f"| async: {result['async']['events']} Event invokes, run to completion | "
        f"{result['async']['events_per_second']:.0f} events/s | | |",
        f"| event source mapping: {result['event_source']['messages']} stream messages, batches of 100 | "
        f"{result['event_source']['messages_per_second']:.0f} messages/s | | |",
        f"| event bus: {result['event_bus']['events']} events, PutEvents to delivery | "
        f"{result['event_bus']['events_per_second']:.0f} events/s | | |",
        *(f"| event bus: matching one event against {n} rules (index / every rule) | "
          f"{us:.1f} us / {result['event_bus']['brute_force_us'][n]:.0f} us | | |"
          for n, us in result["event_bus"]["index_us"].items()),
        f"| idle fleet of {f['functions']} functions: controller | {f['controller_rss_mb']:.0f} MB RSS, "
        f"{f['controller_cpu_percent_of_a_core']:.2f}% of a core | | |",
        *(["", "| worker tier | rate | worker CPU | CPU ms per event, by part |", "|---|---|---|---|",
           *markdown_rows(result["workers"])] if "workers" in result else []),
        *(["", tables.markdown(result["tables"])] if "tables" in result else []),
        "",
    ])


def write(result: dict[str, Any], samples: dict[str, list[float]], timeline: list[tuple[float, int, int]],
          out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "result.md").write_text(markdown(result))
    written = [out / "result.json", out / "result.md"]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:  # plots are optional: pip install matplotlib (the test extra has it)
        return written
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, values in samples.items():
        ordered = sorted(v / 1000 for v in values)
        ax.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], label=label)
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("fraction of requests")
    ax.set_title("Warm sync invoke, 1 client: latency CDF")
    ax.set_xscale("log")
    plain = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}")  # 0.3, not 3x10^-1
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    _save(plt, fig, ax, out / "latency_cdf.png")
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.step([t for t, _, _ in timeline], [e for _, e, _ in timeline], where="post", label="environments")
    ax.step([t for t, _, _ in timeline], [a for _, _, a in timeline], where="post", label="requests answered / 10")
    ax.set_xlabel("seconds since the burst began")
    ax.set_title("Burst from zero: scale-up timeline")
    _save(plt, fig, ax, out / "scale_up.png")
    return [*written, out / "latency_cdf.png", out / "scale_up.png"]


def _save(plt: Any, fig: Any, ax: Any, path: Path) -> None:
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
