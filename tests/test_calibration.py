"""Calibration before a study (``submit --calibrate`` / ``plan.calibrate``): one short trial per distinct setting,
cached in the store by setting, and a plan estimated from those measurements with its error in the report."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from orchestrator.execution import plan
from orchestrator.execution.calibration import calibration_trials
from orchestrator.execution.calibration_cache import calibration_key
from orchestrator.spec.grid import expand_grid
from orchestrator.spec.schema import parse_spec
from tests.conftest import tiny_spec_dict


def test_one_calibration_trial_per_setting_whatever_the_epochs_and_repeats():
    spec = parse_spec(tiny_spec_dict(grid={"architectures": ["cnn", "cnn_lstm"], "epochs": [1, 3], "repeats": 2,
                                           "node_types": ["cpu", "gpu"]}))
    trials = expand_grid(spec)
    wanted = calibration_trials(trials, epochs=2, steps=50)
    assert len(trials) == 16 and len(wanted) == 4  # (architecture, node type); epochs and repeats do not matter
    assert {(t.architecture, t.node_type, t.epochs, t.repeat) for t in wanted.values()} == {
        (a, n, 2, 0) for a in ("cnn", "cnn_lstm") for n in ("cpu", "gpu")}
    assert all(t.overrides == {"steps_per_epoch": 50} for t in wanted.values())
    # the calibration trial's record is found again under its setting's key (the step bound is not part of it)
    assert {calibration_key(t) for t in wanted.values()} == set(wanted)
    cpu = next(t for t in trials if t.node_type == "cpu")
    pinned = cpu.replace(resources={**cpu.resources, "node_kind_cpu": 0.001})  # what placement adds on a cluster
    assert calibration_key(pinned) == calibration_key(cpu)
    assert calibration_key(cpu.replace(training={**cpu.training.model_dump(), "batch_size": 64})) != calibration_key(cpu)


def test_calibrated_figures_win_over_earlier_measurements_and_the_reference():
    spec = parse_spec(tiny_spec_dict(grid={"architectures": ["cnn"], "epochs": [4], "node_types": ["cpu"]}))
    trial = expand_grid(spec)[0]

    def record(ips, steady, total, walls, n_train=100):
        return {"status": "completed", "config": trial.replace(epochs=2).to_dict(), "data": {"n_train": n_train},
                "timings": {"images_per_s": ips, "steady_epoch_s": steady, "total_s": total},
                "history": [{"epoch": i + 1, "wall_s": w, "epoch_train_s": steady} for i, w in enumerate(walls)]}

    earlier = record(10.0, 10.0, 40.0, [25.0, 35.0])
    # calibration: training alone ran at 50 images/s (2 s an epoch), but an epoch with its validation and
    # checkpoint took 3 s of wall time (epoch 1 ended at 6 s, epoch 2 at 9 s; the trial took 11 s)
    calibration = record(50.0, 2.0, 11.0, [6.0, 9.0])
    pools = plan.local_pools()
    est = plan.estimate_study([trial], pools, [earlier], plan.load_reference(), calibration=[calibration])
    row = est["rows"][0]
    assert row["throughput_source"].startswith("calibrated")
    # start-up = 11 - 2 x 3 = 5 s, then 4 epochs of 3 s each
    assert row["trial_hours"] * 3600 == pytest.approx(5 + 4 * 3)
    assert row["cost_usd"] == pytest.approx(trial.price_per_hour * (5 + 12) / 3600)
    without = plan.estimate_study([trial], pools, [earlier], plan.load_reference())["rows"][0]
    assert without["throughput_source"].startswith("measured")


def test_a_calibration_cut_to_a_few_steps_estimates_the_whole_split_per_image():
    spec = parse_spec(tiny_spec_dict(grid={"architectures": ["cnn"], "epochs": [3], "node_types": ["cpu"]}))
    trial = expand_grid(spec)[0]
    # 64 images an epoch (the cut) trained in 2 s; validation and checkpoint took 1 s more; the split has 640
    calibration = {"status": "completed", "config": trial.replace(epochs=2, overrides={"steps_per_epoch": 2}).to_dict(),
                   "data": {"n_train": 64, "n_train_split": 640}, "timings": {"total_s": 10.0},
                   "history": [{"epoch": 1, "wall_s": 6.0, "epoch_train_s": 4.0},
                               {"epoch": 2, "wall_s": 9.0, "epoch_train_s": 2.0}]}
    est = plan.estimate_study([trial], plan.local_pools(), [], plan.load_reference(), calibration=[calibration])
    # start-up 10 - 2 x 3 = 4 s; each of 3 epochs: 640 images at 32 images/s + 1 s
    assert est["rows"][0]["trial_hours"] * 3600 == pytest.approx(4 + 3 * (640 / 32 + 1))


def test_estimate_vs_actual_shows_the_error_per_node_type():
    from orchestrator.report.tables import table_estimate_vs_actual

    estimate = {"rows": [{"node_type": "cpu", "trials": 2, "trial_hours": 1.1, "cost_usd": 0.22, "wall_hours": 0.6}],
                "total": {"trials": 2, "trial_hours": 1.1, "cost_usd": 0.22, "wall_hours": 0.6}}
    df = pd.DataFrame({"node_type": ["cpu", "cpu"], "total_s": [1800.0, 1800.0], "cost_usd": [0.1, 0.1]})
    table = table_estimate_vs_actual(estimate, df, 2400.0)
    cpu = table[table["node_type"] == "cpu"].iloc[0]
    assert cpu["trial_hours_error_pct"] == pytest.approx(10.0) and cpu["cost_usd_error_pct"] == pytest.approx(10.0)


@pytest.mark.slow
def test_calibrated_study_plans_from_its_calibration_and_caches_it(ray_session, tiny_spec):
    from orchestrator import Study

    spec = tiny_spec(name="calibrated", grid={"architectures": ["cnn"], "epochs": [3], "node_types": ["cpu"]},
                     plan={"calibrate": True})
    study = Study(spec)
    said: list[str] = []
    records = study.calibrate(notify=said.append)
    assert len(records) == 1 and records[0]["config"]["epochs"] == 2 and records[0]["status"] == "completed"
    assert any("1 to run" in m for m in said)
    said.clear()
    assert Study(spec).calibrate(notify=said.append) == records  # cached by setting: nothing runs again
    assert any("1 cached, 0 to run" in m for m in said)
    assert study.plan().estimate["rows"][0]["throughput_source"].startswith("calibrated")

    result = study.run(show_progress=False, notify=lambda m: None)
    assert result.counts == {"completed": 1}
    root = Path(spec.storage.uri) / spec.name / result.run_id
    info = json.loads((root / "run.json").read_text())
    assert info["estimate"]["rows"][0]["throughput_source"].startswith("calibrated")
    assert "trial_hours_error_pct" in (root / "report" / "report.md").read_text()
