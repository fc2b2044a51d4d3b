"""A smoke run of the benchmark (tiny counts), so bench/ never rots. Figures are printed, not asserted."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO


def test_bench_quick_reports_every_figure() -> None:
    done = subprocess.run([sys.executable, "-m", "bench", "--quick"], capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout[: done.stdout.index("\n}\n") + 2])
    for key in ("warm_p50_us", "warm_p99_us", "baseline_p50_us", "warm_p50_ratio", "cold_p50_ms",
                "cold_no_zygote_p50_ms"):
        assert isinstance(result[key], float) and result[key] > 0, key
    assert result["idle_fleet"]["functions"] == 10
    assert "warm p50 ratio kambda/baseline" in done.stdout
