"""The layering the code promises (ARCHITECTURE.md): workers never import the driver, nothing imports the CLI,
and the commands that do not train load no deep-learning framework and print one line on bad input."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("tensorflow", "keras", "jax", "torch")


def _imports(package: str) -> list[tuple[Path, str]]:
    found = []
    for path in (REPO / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found += [(path, a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found += [(path, node.module)] + [(path, f"{node.module}.{a.name}") for a in node.names]
    return found


def test_workers_import_nothing_from_the_driver():
    bad = [(str(p.relative_to(REPO)), m) for p, m in _imports("workers") if m.split(".")[0] == "orchestrator"]
    assert bad == []


def test_no_module_outside_the_cli_imports_it():
    for package in ("orchestrator", "workers", "benchmarks"):
        bad = [(str(p.relative_to(REPO)), m) for p, m in _imports(package)
               if m.startswith("orchestrator.cli") and "orchestrator/cli" not in p.as_posix()]
        assert bad == [], package


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)


def test_the_library_api_imports_no_framework():
    proc = _run("import orchestrator, sys; orchestrator.Study; orchestrator.Search; "
                "assert 'tensorflow' not in sys.modules and 'ray' not in sys.modules, sorted(sys.modules)")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("argv", [
    ["submit", "experiments/hardware_study.yaml", "--dry-run"],
    ["tune", "experiments/tune_cnn_lstm.yaml", "--dry-run"],
    ["runs", "--store", "results-that-do-not-exist"],
])
def test_commands_that_do_not_train_load_no_framework(argv):
    code = (f"import sys; from orchestrator.cli import main; code = main({argv!r}); "
            f"loaded = [m for m in {FRAMEWORKS!r} if m in sys.modules]; "
            "assert not loaded, loaded; sys.exit(code)")
    proc = _run(code)
    assert proc.returncode in (0, 2), proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_input_is_exactly_one_line_on_stderr(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ngrid: {architectures: [nope], epochs: [1]}\n")
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "submit", str(bad)], capture_output=True,
                          text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "grid.architectures[0]" in lines[0], proc.stderr
