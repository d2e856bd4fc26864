"""The data benchmark runs end to end in its smoke mode and appends a dated Markdown table."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_data_smoke(tmp_path):
    out = tmp_path / "results" / "data.md"
    env = {**os.environ, "SKINLESION_CACHE": str(tmp_path / "cache")}
    for _ in range(2):  # the second run appends to the same file
        proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_data.py"), "--smoke", "--out", str(out)],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("# Data benchmarks")
    assert text.count("## Data preparation") == 2 and "SMOKE" in text
    for needle in ("Machine:", "Augmentor 0.2.12", "| Augmentor rebalance, 1 process |",
                   "| Augmentor rebalance, 2 processes over classes |", "| Load the cached .npz"):
        assert needle in text
    assert "samples/s" in proc.stdout
