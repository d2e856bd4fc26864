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


# ------------------------------------------------------------------------------------------------ import cycles
def _module_name(path: Path) -> str:
    name = ".".join(path.relative_to(REPO).with_suffix("").parts)
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


def _import_graph() -> dict[str, set[str]]:
    """Module -> the product modules it imports, at module level or inside functions. A function-level import of
    a module that itself imports a deep-learning framework or Ray at module level is not counted: that import is
    lazy so that the commands that do not train load no framework (the test above), not to dodge a cycle."""
    paths = {_module_name(p): p for pkg in ("orchestrator", "workers") for p in (REPO / pkg).rglob("*.py")}
    edges: dict[str, list[tuple[str, bool]]] = {}
    heavy = set()
    for name, path in paths.items():
        tree = ast.parse(path.read_text())
        top = set(map(id, tree.body))
        found = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in paths else base for a in node.names]
            else:
                continue
            at_top = id(node) in top
            for target in targets:
                if at_top and target.split(".")[0] in FRAMEWORKS + ("ray",):
                    heavy.add(name)
                while target and target not in paths:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    found.append((target, at_top))
        edges[name] = found
    return {n: {t for t, at_top in found if at_top or t not in heavy} for n, found in edges.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_between_modules_counting_imports_inside_functions():
    assert _cycles(_import_graph()) == []


def test_the_cycle_check_finds_a_cycle_made_of_function_level_imports():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
