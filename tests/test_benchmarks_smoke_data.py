"""The data benchmark runs end to end in its smoke mode and appends a dated Markdown section."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_data_smoke(tmp_path):
    out = tmp_path / "results" / "data.md"
    env = {**os.environ, "SKINLESION_CACHE": str(tmp_path / "cache"), "RAY_ADDRESS": "local"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_data.py"), "--smoke", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    text = out.read_text()
    assert "## Data at scale" in text and "SMOKE" in text and "Machine:" in text
    for needle in ("| 1 Ray CPU(s) |", "| 2 Ray CPU(s) |", "identical for every CPU count (sha256 of every file): **True**",
                   "| ISIC-2019-shaped |", "| quick-start data |", "Peak RSS difference:", "shard writing s |",
                   "stage / bare (draft) |", "stage first on a fresh Ray / bare (draft, kept) |"):
        assert needle in text, needle
