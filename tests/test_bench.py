"""A smoke run of the benchmark (tiny counts), so bench/ never rots. Figures are printed, not asserted."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO


def test_bench_quick_reports_every_figure(tmp_path) -> None:
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)], capture_output=True,
                          text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    figures = [result["warm"]["p50_us"], result["warm"]["p99_us"], result["baseline"]["p50_us"],
               result["throughput"]["kambda_1"], result["throughput"]["kambda_n"], result["throughput"]["baseline_n"],
               result["cold"]["p50_ms"], result["cold"]["no_zygote_p50_ms"], result["burst"]["seconds"],
               result["async"]["events_per_second"], result["event_source"]["messages_per_second"],
               result["http_route"]["p50_us"], result["http_route"]["throughput_n"],
               result["http_route"]["ratio_throughput_to_baseline"], result["event_bus"]["events_per_second"],
               *(result["floors"][bus][figure] for bus in ("core", "jetstream")
                 for figure in ("p50_us", "throughput_n"))]
    assert all(isinstance(f, float) and f > 0 for f in figures), figures
    assert result["burst"]["requests"] == 10 and result["idle_fleet"]["functions"] == 10
    markdown = (tmp_path / "result.md").read_text()
    assert "| warm invoke p50, 1 client |" in markdown and "| idle fleet of 10 functions" in markdown
    assert "| HTTP route p50 / p99, 1 client |" in markdown and "| floor (JetStream work queue): warm p50" in markdown
    for plot in ("latency_cdf.png", "scale_up.png"):
        assert (tmp_path / plot).read_bytes().startswith(b"\x89PNG")
