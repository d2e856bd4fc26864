"""The command line: bad input is refused with one line and exit code 2, and nothing starts."""
from __future__ import annotations

import subprocess
import sys

import yaml

from orchestrator.cli import main
from tests.conftest import tiny_spec_dict


def _spec_file(tmp_path, **overrides):
    data = tiny_spec_dict(store=str(tmp_path / "store"), **overrides)
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_invalid_spec_exits_2_with_one_line_and_starts_nothing(tmp_path):
    path = _spec_file(tmp_path, grid={"architectures": ["nope"], "epochs": [1]})
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "submit", str(path)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "grid.architectures[0]: unknown architecture 'nope'" in lines[0]
    assert not (tmp_path / "store").exists()


def test_missing_dataset_path_is_reported_before_anything_starts(tmp_path, capsys):
    path = _spec_file(tmp_path, dataset={"source": "isic_folder", "path": str(tmp_path / "no-such-data")})
    assert main(["submit", str(path)]) == 2
    assert "dataset.path" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()


def test_huge_grid_needs_confirmation(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    path = _spec_file(tmp_path, grid={"architectures": ["cnn"], "epochs": list(range(1, 200)), "repeats": 3})
    assert main(["submit", str(path)]) == 2
    assert "--yes" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()


def test_dry_run_prints_trials_and_resources_without_running(tmp_path, capsys):
    path = _spec_file(tmp_path, dataset={"image_size": [32, 32]},
                      grid={"architectures": ["cnn", "resnet50"], "epochs": [1, 2], "node_types": ["cpu", "gpu"]})
    assert main(["submit", str(path), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "8 trials" in printed and "GPU=1" in printed.replace("gpu=1", "GPU=1")
    assert not (tmp_path / "store").exists()


def test_dry_run_of_the_hardware_study_prints_each_node_types_stack_and_price_source(capsys):
    assert main(["submit", "experiments/hardware_study.yaml", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    for line in ("cpu: jax, float32, XLA, 1 device x 32 per device (global batch 32), 1 steps/execution",
                 "gpu: jax, float32, XLA, 1 device x 32 per device (global batch 32), 1 steps/execution",
                 "tpu: jax, float32, XLA, 8 devices x 4 per device (global batch 32), 1 steps/execution"):
        assert line in printed
    assert "own stack" not in printed
    assert "tpu $9.6/h (v5litepod-8, gcp us-central1, on-demand list price of 2024-06-01)" in printed


def test_unknown_run_is_a_clear_error(tmp_path, capsys):
    assert main(["report", "nope", "--store", str(tmp_path)]) == 2
    assert "run 'nope' not found" in capsys.readouterr().err
