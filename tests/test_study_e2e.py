"""End to end through Ray: ``orchestrator submit`` on tiny settings produces a stored report."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from orchestrator.cli import main
from tests.conftest import tiny_spec_dict


@pytest.mark.slow
def test_submit_runs_the_grid_and_writes_the_report(tmp_path, ray_session, capsys):
    store = tmp_path / "store"
    spec = tiny_spec_dict(name="e2e", store=str(store), grid={
        "architectures": ["cnn", "cnn_lstm"], "epochs": [1, 2], "node_types": ["cpu", "gpu", "tpu"],
        "augmentation": ["augmentor"]})
    path = tmp_path / "e2e.yaml"
    path.write_text(yaml.safe_dump(spec))

    assert main(["submit", str(path)]) == 0
    printed = capsys.readouterr()
    assert "Report:" in printed.out and "index.html" in printed.out

    (run_dir,) = (store / "e2e").iterdir()
    report = run_dir / "report"
    for name in ("index.html", "report.md", "results.csv", "results.parquet", "summary.json"):
        assert (report / name).is_file(), name
    results = pd.read_csv(report / "results.csv")
    assert len(results) == 2 * 2 * 3  # every trial has a row, runnable or not
    cpu = results[results["node_type"] == "cpu"]
    assert (cpu["status"] == "completed").all()
    assert cpu[["accuracy", "precision_macro", "recall_macro", "f1_macro", "train_s", "images_per_s"]].notna().all().all()
    accel = results[results["node_type"] != "cpu"]
    assert (accel["status"] == "infeasible").all()
    assert accel["reason"].str.contains("not runnable on this cluster").all()

    md = (report / "report.md").read_text()
    assert "Table I" in md and "| cnn_lstm |" in md and "SYNTHETIC" in md
    summary = json.loads((report / "summary.json").read_text())
    assert summary["counts"] == {"completed": 4, "infeasible": 8}

    for trial_id in cpu["trial_id"]:
        trial_dir = run_dir / "trials" / trial_id
        record = json.loads((trial_dir / "record.json").read_text())
        assert record["device"]["requested"] == "cpu" and record["device"]["used"]["kind"] == "cpu"
        assert (trial_dir / "predictions.csv").is_file() and (trial_dir / "history.csv").is_file()
        # one stack for cpu, gpu and tpu (jax, float32); what the node was doing while the trial ran
        assert record["device"]["backend"] == "jax" and record["precision_policy"] == "float32"
        assert isinstance(record["shared_with"], list) and record["timings"]["cpu_load_1m"] >= 0
    assert set(cpu["timing"]) <= {"isolated", "shared node"} and cpu["stack"].str.startswith("jax, float32").all()
    assert list((report / "plots").glob("confusion_*.png"))

    # the record reached the store through the final result; Tune's own stored state holds metrics only, and
    # finished trials (no model kept here) leave no checkpoint behind
    tune_files = [p for p in (run_dir / "tune").rglob("*") if p.is_file()]
    assert any(p.name.startswith("experiment_state") for p in tune_files)
    for p in tune_files:
        text = p.read_text(errors="replace")
        assert "trial_record" not in text and '"confusion_matrix"' not in text, p
    assert not list((run_dir / "tune").rglob("checkpoint_*"))


def test_strict_refuses_a_study_with_unrunnable_trials(tmp_path, ray_session, capsys):
    path = tmp_path / "strict.yaml"
    path.write_text(yaml.safe_dump(tiny_spec_dict(name="strict", store=str(tmp_path / "store"),
                                                  grid={"architectures": ["cnn"], "epochs": [1], "node_types": ["cpu", "gpu"]})))
    assert main(["submit", str(path), "--strict"]) == 2
    assert "cannot run on this cluster" in capsys.readouterr().err
    assert not list((tmp_path / "store").glob("strict/*/trials/*/record.json"))
