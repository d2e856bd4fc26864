"""The plan before a run: estimated wall time and cost per node type on the cluster it would run on, from
earlier measurements in the store or the reference figures; a budget below the estimate refuses the study."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from orchestrator.cli import main
from orchestrator.execution import plan
from orchestrator.run_store import RunPaths, write_trial_record
from orchestrator.spec.grid import expand_grid
from orchestrator.spec.node_types import NodeCapacity, load_cluster_config
from orchestrator.spec.schema import load_spec, parse_spec
from tests.conftest import tiny_spec_dict
from workers.records import TrialRecord
from workers.storage import LocalStore

ROOT = Path(__file__).resolve().parents[1]
STUDY, CLUSTER = ROOT / "experiments" / "hardware_study.yaml", ROOT / "ray-cluster.yaml"


def _hardware_estimate(records=()):
    spec = load_spec(STUDY)
    pools = plan.cluster_pools([], load_cluster_config(str(CLUSTER)))
    return plan.estimate_study(expand_grid(spec), pools, list(records), plan.load_reference(),
                               exclusive=spec.execution.exclusive_nodes)


def test_dry_run_of_the_hardware_study_prints_time_and_cost_per_node_type(tmp_path, capsys):
    store = tmp_path / "store"
    assert main(["submit", str(STUDY), "--dry-run", "--cluster-config", str(CLUSTER), "--store", str(store)]) == 0
    printed = capsys.readouterr().out
    for node_type, slots in (("cpu", 4), ("gpu", 2), ("tpu", 1)):  # exclusive nodes x max_workers of ray-cluster.yaml
        line = next(ln for ln in printed.splitlines() if ln.startswith(f"{node_type} "))
        assert re.match(rf"{node_type}\s+60\s+{slots}\s+[\d,.]+\s+[\d,.]+\s+\$[\d,.]+\s+reference \(60 trials\)", line), line
    assert re.search(r"^total\s+180\s+[\d,.]+\s+[\d,.]+\s+\$[\d,.]+", printed, re.M)
    assert "orchestrator/data/reference_throughput.json" in printed
    assert not store.exists()


def test_estimate_by_hand_for_one_node_type():
    est = _hardware_estimate()
    gpu = next(r for r in est["rows"] if r["node_type"] == "gpu")
    spec = load_spec(STUDY)
    trials = [t for t in expand_grid(spec) if t.node_type == "gpu"]
    reference = plan.load_reference()
    seconds = [plan.trial_seconds(t, plan.reference_throughput(t, reference), plan.train_images(t, {}))
               for t in trials]
    assert gpu["trial_hours"] == pytest.approx(sum(seconds) / 3600)
    assert gpu["cost_usd"] == pytest.approx(spec.resolved_node_types()["gpu"].price_per_hour * sum(seconds) / 3600)
    assert gpu["wall_hours"] == pytest.approx(plan.makespan(seconds, 2) / 3600)
    assert sum(seconds) / 2 <= plan.makespan(seconds, 2) <= sum(seconds) / 2 + max(seconds)
    resnet = next(t for t in trials if t.architecture == "resnet50" and t.augmentation == "augmentor_random")
    plain = resnet.replace(augmentation="none")
    # seed 000's Augmentor stage adds 500 images to each of the 9 classes
    assert plan.train_images(resnet, {}) == plan.train_images(plain, {}) + 9 * 500
    assert est["total"]["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in est["rows"]))
    assert est["total"]["wall_hours"] == pytest.approx(max(r["wall_hours"] for r in est["rows"]))


def test_measurements_in_the_store_win_over_the_reference():
    spec = load_spec(STUDY)
    trial = next(t for t in expand_grid(spec) if t.node_type == "cpu" and t.architecture == "cnn")
    earlier = {"status": "completed", "config": trial.to_dict(), "data": {"n_train": 1000},
               "timings": {"images_per_s": 50.0, "steady_epoch_s": 20.0, "total_s": 10 * 20.0 + 7.0}}
    est = _hardware_estimate([earlier | {"config": {**trial.to_dict(), "epochs": 10}}])
    cpu = next(r for r in est["rows"] if r["node_type"] == "cpu")
    # the 15 cpu trials of cnn (5 epoch budgets x 3 repeats) use the measurement, the rest the reference
    assert cpu["throughput_source"] == "measured (15 trials), reference (45 trials)"
    rate = plan.measured_throughput([earlier | {"config": {**trial.to_dict(), "epochs": 10}}])
    assert rate[("cnn", "cpu", "120x120")].images_per_s == 50.0
    assert rate[("cnn", "cpu", "120x120")].startup_s == pytest.approx(7.0)


def test_a_node_type_no_node_fits_has_no_wall_time():
    spec = load_spec(STUDY)
    small = [plan.NodePool("laptop", {"CPU": 2.0}, 1, "this machine")]
    est = plan.estimate_study(expand_grid(spec), small, [], plan.load_reference())
    assert all(r["wall_hours"] is None and r["nodes"] == "none fits" for r in est["rows"])
    assert est["total"]["wall_hours"] is None and est["total"]["cost_usd"] is not None


def test_cluster_pools_count_autoscaler_types_less_live_nodes():
    config = load_cluster_config(str(CLUSTER))
    live = [NodeCapacity("10.0.0.2:abc", {"CPU": 8.0, "node_kind_cpu": 1.0})]
    pools = {p.name: p for p in plan.cluster_pools(live, config)}
    assert pools["cpu"].count == 3 and pools["10.0.0.2:abc"].source == "live"
    assert pools["gpu"].count == 2 and "head" not in pools  # max_workers 0 -> no pool


def test_budget_below_the_estimate_refuses_and_writes_nothing(tmp_path, capsys):
    store = tmp_path / "store"
    code = main(["submit", str(STUDY), "--cluster-config", str(CLUSTER), "--store", str(store), "--max-cost", "5",
                 "--yes"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "--max-cost" in err[0] and "exceeds the budget of $5.00" in err[0]
    assert not store.exists()


def test_spec_budget_refuses_too(tmp_path, capsys):
    data = tiny_spec_dict(store=str(tmp_path / "store"), execution={"budget_usd": 1e-9})
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["submit", str(path)]) == 2
    assert "execution.budget_usd: the study's estimated cost" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()
    assert plan.budget_refusal({"rows": [], "total": {"cost_usd": 3.0}}, 5.0) is None


def test_an_unknown_price_cannot_be_checked_against_a_budget():
    spec = parse_spec(tiny_spec_dict(node_types={"cpu": {"resources": {"CPU": 1}}}))
    est = plan.plan_study(spec, expand_grid(spec), LocalStore(Path("/nonexistent-store")))
    assert est["total"]["cost_usd"] is None
    assert "cannot be estimated" in plan.budget_refusal(est, 10.0)


def test_plan_study_reads_earlier_measurements_from_the_store(tmp_path):
    store, paths = LocalStore(tmp_path), RunPaths("tiny", "r1")
    spec = parse_spec(tiny_spec_dict(store=str(tmp_path)))
    earlier = {"trial_id": "t0", "status": "completed", "config": expand_grid(spec)[0].to_dict(),
               "timings": {"images_per_s": 400.0, "steady_epoch_s": 0.1, "total_s": 3.0}}
    write_trial_record(store, paths, TrialRecord.model_validate(earlier))
    est = plan.plan_study(spec, expand_grid(spec), store)
    assert est["rows"][0]["throughput_source"].startswith("measured")
    assert json.loads(json.dumps(est)) == est  # JSON-ready: execute_study stores it in run.json


@pytest.mark.slow
def test_execute_study_refuses_over_budget_before_writing(ray_session, tiny_spec, tmp_path):
    from orchestrator.errors import OverBudget
    from orchestrator.execution.study_runner import execute_study

    spec = tiny_spec(execution={"budget_usd": 1e-9})
    with pytest.raises(OverBudget, match=r"execution\.budget_usd: the study's estimated cost"):
        execute_study(spec, show_progress=False, notify=lambda m: None)
    assert not [p for p in (tmp_path / "store").rglob("*") if p.is_file()]  # no spec.yaml, no run.json
