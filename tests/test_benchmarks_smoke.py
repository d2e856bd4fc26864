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


def test_overhead_timeline_splits_slot_time_per_actor():
    sys.path.insert(0, ".")
    from benchmarks.bench_overhead import timeline

    # two actors (pids 1, 2), 1 s sleeps from t0 = 0: actor 1 starts at 2 s, hands over in 0.1 s, ends at 4.1 s;
    # actor 2 starts at 3 s, one trial whose sleep ran 0.5 s late, ends at 4.5 s; the makespan ends at 5 s
    line = timeline([(2.0, 3.0, 1), (3.1, 4.1, 1), (3.0, 4.5, 2)], t0=0.0, end=5.0, sleep=1.0)
    assert line["actors"] == 2
    assert line["lead"] == pytest.approx(2.0 + 3.0) and line["gaps"] == pytest.approx(0.1)
    assert line["gap_ms"] == pytest.approx(100.0) and line["end"] == pytest.approx(0.9 + 0.5)
    assert line["late"] == pytest.approx(0.5)
    # slot time = lead + sleeps + gaps + late + end on each actor
    assert line["lead"] + 3 * 1.0 + line["gaps"] + line["late"] + line["end"] == pytest.approx(2 * 5.0)
