"""Each benchmark runs end to end on tiny settings and appends its table to the results file."""
from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("script, extra", [
    ("benchmarks/bench_trial.py", ["--smoke"]),
    pytest.param("benchmarks/bench_overhead.py", ["--smoke"], marks=pytest.mark.slow),  # starts Ray
    pytest.param("benchmarks/bench_cache_study.py", ["--smoke"], marks=pytest.mark.slow),  # a study, twice
    ("benchmarks/estimate_scale.py", ["--cpu-nodes", "2", "--gpu-nodes", "1"]),
])
def test_benchmark_smoke(tmp_path, script, extra):
    out = tmp_path / "result.md"
    proc = subprocess.run([sys.executable, script, *extra, "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    assert text.startswith("\n## ") and "Machine:" in text and "|---|" in text


def test_scale_estimate_schedules_longest_first():
    sys.path.insert(0, ".")
    from benchmarks.estimate_scale import makespan

    assert makespan([3, 3, 2, 2, 2], 2) == 7  # 3|3, then 2|2, then 2 on either node
    assert makespan([5, 1, 1, 1], 2) == 5
    assert makespan([1.0] * 10, 0) == float("inf")
