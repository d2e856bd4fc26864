"""The suite's own guard for two test processes (tests/support/machine.py): while one process runs a module
marked ``alone``, the other runs fast tests but no slow one."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parents[1]

RECORDING = '''
import os, time
import pytest
{marks}

@pytest.mark.parametrize("n", range({count}))
def test_sleeps(n):
    start = time.time()
    time.sleep({seconds})
    with open(os.environ["SPANS"], "a") as fh:
        fh.write(f"{{__name__}} {{start}} {{time.time()}}\\n")
'''


@pytest.mark.slow
def test_no_slow_test_runs_beside_a_module_that_needs_the_machine_alone(pytester, monkeypatch, tmp_path):
    spans_file = tmp_path / "spans.txt"
    monkeypatch.setenv("SPANS", str(spans_file))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makeini("[pytest]\nmarkers =\n    slow: slow\n    alone: alone\n")
    pytester.makepyfile(
        test_a_cluster=RECORDING.format(marks="pytestmark = [pytest.mark.slow, pytest.mark.alone]", count=3, seconds=1.5),
        test_b_fast=RECORDING.format(marks="", count=3, seconds=0.3),
        test_c_slow=RECORDING.format(marks="pytestmark = pytest.mark.slow", count=2, seconds=0.5),
        test_d_slow=RECORDING.format(marks="pytestmark = pytest.mark.slow", count=2, seconds=0.5),
    )
    result = pytester.runpytest_subprocess("-n", "2", "--dist", "loadfile", "--no-loadscope-reorder",
                                           "-p", "tests.support.machine", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=10)

    spans: dict[str, list[tuple[float, float]]] = {}
    for line in spans_file.read_text().splitlines():
        module, start, end = line.split()
        spans.setdefault(module, []).append((float(start), float(end)))
    alone_start = min(s for s, _ in spans["test_a_cluster"])
    alone_end = max(e for _, e in spans["test_a_cluster"])

    def beside(module: str) -> bool:
        return any(s < alone_end and e > alone_start for s, e in spans[module])

    assert beside("test_b_fast"), spans  # the other process went on with fast tests
    assert not beside("test_c_slow") and not beside("test_d_slow"), spans
