"""A smoke run of the benchmark (tiny counts), so bench/ never rots. Figures are printed, not asserted."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.timeout(480)  # three platforms, two floors and two more for the worker tier's figures
def test_bench_quick_reports_every_figure(tmp_path) -> None:
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)], capture_output=True,
                          text=True, timeout=450, cwd=REPO)
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
    runs = result["workers"]["runs"]
    assert [run["workers"] for run in runs] == [1, 2]
    figures += [run[figure] for run in runs for figure in ("async_events_per_second", "bus_events_per_second")]
    assert all(isinstance(f, float) and f > 0 for f in figures), figures
    assert all("worker" in run["async_cpu_ms_per_event"] for run in runs)
    assert result["burst"]["requests"] == 10 and result["idle_fleet"]["functions"] == 10
    markdown = (tmp_path / "result.md").read_text()
    assert "| warm invoke p50, 1 client |" in markdown and "| idle fleet of 10 functions" in markdown
    assert "| 2 workers against 1 (" in markdown and "| 1 worker: 50 async events |" in markdown
    assert "| HTTP route p50 / p99, 1 client |" in markdown and "| floor (JetStream work queue): warm p50" in markdown
    for plot in ("latency_cdf.png", "scale_up.png"):
        assert (tmp_path / plot).read_bytes().startswith(b"\x89PNG")


@pytest.mark.timeout(240)
def test_bench_workflows_quick_reports_every_figure(tmp_path) -> None:
    done = subprocess.run([sys.executable, "-m", "bench.workflows", "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=220, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    figures = [result["standard"]["transitions_per_second"], result["express"]["transitions_per_second"],
               result["sync_3_state"]["p50_ms"], result["map"]["seconds"], result["resume"]["seconds_from_kill"]]
    assert all(isinstance(f, float) and f > 0 for f in figures), figures
    assert result["standard"]["ended"] == {"SUCCEEDED": result["standard"]["executions"]}
    assert "| kill -9 of the worker to 5 executions" in (tmp_path / "result.md").read_text()


@pytest.mark.timeout(240)
def test_bench_s3_quick_reports_every_figure(tmp_path) -> None:
    done = subprocess.run([sys.executable, "-m", "bench.s3", "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=220, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    figures = [result["small"]["put_per_second"], result["small"]["get_per_second"], result["list"]["p50_ms"],
               *(result["large"]["4mb"][f] for f in ("put_mb_s", "get_mb_s")),
               result["disk"]["small"]["put_per_second"], result["disk"]["list"]["p50_ms"]]
    assert all(isinstance(f, float) and f > 0 for f in figures), figures
    assert "| ListObjectsV2 of 100 keys from 300" in (tmp_path / "result.md").read_text()


@pytest.mark.timeout(240)
def test_bench_objects_engine_small_run_reports_every_figure() -> None:
    done = subprocess.run([sys.executable, "-m", "bench.objects", "--objects", "64", "--mb", "2"],
                          capture_output=True, text=True, timeout=220, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout)["sqlite"]
    figures = [*result["small"].values(), *result["large"].values()]
    assert figures and all(isinstance(f, float) and f > 0 for f in figures), result
