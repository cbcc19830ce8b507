"""Smoke tests of the live benchmarks (`--quick`, media made on the fly): they run, print figures and end
with one JSON line, and what they measure holds at the loosest level (every audio chunk arrives, frames are
answered with results over the live connection). Their speed figures are the benchmarks' business."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
ROOT = Path(__file__).resolve().parent.parent


def run_bench(name: str, *args: str, timeout_s: float = 600) -> dict:
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1"}
    done = subprocess.run([sys.executable, "-m", f"bench.{name}", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout_s)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_bench_browser_quick(tmp_path):
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian's chromium is needed (make test installs it)")
    figures = run_bench("browser", "--data", str(tmp_path), "--quick")  # no data: a photo and espeak-ng
    assert figures["audio_chunks_lost"] == 0 and figures["audio_chunks_sent"] > 20
    assert figures["audio_seconds_received"] == pytest.approx(figures["audio_seconds_sent"], abs=0.01)
    assert figures["overlay_results_per_s"] > 1 and figures["display_fps"] > 5 and figures["camera_errors"] == 0
    assert figures["overlay_latency_median_ms"] > 0 and figures["first_text_after_sentence_s"] is not None


def test_bench_load_quick(tmp_path):
    figures = run_bench("load", "--data", str(tmp_path), "--quick")  # no data: a drawn face moving
    assert figures["transport"] == "live" and figures["clients"] == 2
    assert figures["live_2_results_per_s_per_client_min"] > 1 and figures["live_2_errors_total"] == 0
    assert figures["api_2_results_per_s_per_client_min"] > 0 and figures["api_2_errors_total"] == 0
    assert 0 < figures["latency_median_ms"] <= figures["latency_p95_ms"]
