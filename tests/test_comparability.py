"""A fair hardware comparison, from hand-made records: speed-ups only between trials differing in the node type
alone, shared-node timings marked and left out, MLPerf time-to-target rules, one cost clock, collapsed models."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from orchestrator.report import build_report
from orchestrator.report.comparability import mlperf_score
from orchestrator.report.tables import table_cost, table_hardware, table_time_to_target, trial_table
from tests.test_report import PRICES, RUN_INFO, make_record


def _pair(**gpu):
    return [make_record("cnn", 2, "cpu", 0, ips=100, framework="jax", precision="float32"),
            make_record("cnn", 2, "gpu", 0, ips=1000, **({"framework": "jax", "precision": "float32"} | gpu))]


def test_default_stack_gets_speedups_per_node_and_per_chip():
    records = [make_record("cnn", 2, "cpu", 0, ips=100, framework="jax", precision="float32", devices=1),
               make_record("cnn", 2, "gpu", 0, ips=1000, framework="jax", precision="float32", devices=4)]
    hw = table_hardware(trial_table(records)).set_index("node_type")
    assert hw.loc["gpu", "comparable"] == "yes"
    assert hw.loc["gpu", "speedup_vs_cpu"] == pytest.approx(10.0)
    assert hw.loc["gpu", "speedup_per_chip"] == pytest.approx(2.5)  # 1000 / 4 chips against 100 / 1
    assert hw.loc["gpu", "stack"] == "jax, float32, 4 x 8 per device"


@pytest.mark.parametrize("gpu, factor", [({"precision": "mixed_bfloat16"}, "precision (mixed_bfloat16 vs float32)"),
                                         ({"framework": "tensorflow"}, "backend (tensorflow vs jax)")])
def test_a_node_type_with_its_own_stack_is_not_comparable_and_the_factor_is_named(gpu, factor):
    df = trial_table(_pair(**gpu))
    for table, column in ((table_hardware(df), "speedup_vs_cpu"), (table_time_to_target(df), "speedup_images_per_s"),
                          (table_cost(df), "cost_vs_reference")):
        row = table.set_index("node_type").loc["gpu"]
        assert pd.isna(row[column])
        assert row["comparable"] == f"not comparable: {factor} differs from 'cpu'"
    html = build_report(_pair(**gpu), RUN_INFO)["index.html"].decode()
    assert "STACKS DIFFER" in html and f"not comparable: {factor}" in html


def test_shared_node_trials_are_marked_and_left_out_of_speedups_and_the_pareto_front():
    records = [make_record("cnn", 2, "cpu", 0, ips=100, framework="jax", sharing=1),
               make_record("cnn", 2, "gpu", 0, ips=1000, framework="jax", sharing=2),
               make_record("lstm", 2, "cpu", 0, ips=50, framework="jax", sharing=1),
               make_record("lstm", 2, "cpu", 1, ips=5, framework="jax", sharing=3),   # left out: its group has an isolated one
               make_record("lstm", 2, "gpu", 0, ips=500, framework="jax", sharing=1)]
    df = trial_table(records)
    assert df["timing"].tolist().count("shared node") == 2
    hw = table_hardware(df).set_index(["architecture", "node_type"])
    assert hw.loc[("cnn", "gpu"), "timing"] == "shared node" and pd.isna(hw.loc[("cnn", "gpu"), "speedup_vs_cpu"])
    assert hw.loc[("cnn", "gpu"), "comparable"].startswith("not comparable: shared node")
    assert hw.loc[("lstm", "cpu"), "images_per_s"] == pytest.approx(50.0)  # the shared repeat's 5 images/s left out
    assert hw.loc[("lstm", "cpu"), "shared_left_out"] == 1
    assert hw.loc[("lstm", "gpu"), "speedup_vs_cpu"] == pytest.approx(10.0)
    cost = table_cost(df).set_index(["architecture", "node_type"])
    assert not cost.loc[("cnn", "gpu"), "pareto"] and cost.loc[("cnn", "gpu"), "timing"] == "shared node"
    html = build_report(records, RUN_INFO)["index.html"].decode()
    assert "SHARED NODE: 2 of 5 completed trial(s)" in html


def test_mlperf_score_follows_the_rules_on_hand_made_run_tables():
    assert mlperf_score([5.0, 1.0, 3.0, 2.0, 4.0]) == (3.0, "MLPerf score over 5 runs (fastest and slowest dropped)")
    score, note = mlperf_score([5.0, 1.0, None, 2.0, 4.0])  # the miss is the slowest run: 1 and the miss dropped
    assert score == pytest.approx(np.mean([2.0, 4.0, 5.0])) and "missed the target" in note
    score, note = mlperf_score([5.0, None, None, 2.0, 4.0])
    assert np.isnan(score) and note.startswith("invalid under MLPerf rules: 2 runs missed")
    score, note = mlperf_score([1.0, 2.0, 3.0])
    assert np.isnan(score) and note.startswith("too few runs for an MLPerf score (3 of 5)")


def test_cost_per_trial_and_cost_to_target_use_one_clock():
    record = make_record("cnn", 3, "cpu", 0, total_s=40.0, framework="jax")
    record["history"] = [{"epoch": e, "val_balanced_accuracy": v, "wall_s": w}
                         for e, v, w in ((1, 0.5, 10.0), (2, 0.8, 20.0), (3, 0.9, 30.0))]
    row = trial_table([record]).iloc[0]
    # both are price x seconds since the trial's start: time to target 20 s of the trial's 40 s
    assert row["cost_usd"] == pytest.approx(PRICES["cpu"] * 40.0 / 3600)
    assert row["cost_to_target_usd"] == pytest.approx(PRICES["cpu"] * 20.0 / 3600)
    assert row["cost_to_target_usd"] / row["cost_usd"] == pytest.approx(row["time_to_target_s"] / row["total_s"])


def test_collapsed_models_are_flagged():
    collapsed = make_record("resnet50", 2, "cpu", 0, acc=0.1, framework="jax")
    collapsed["metrics"]["confusion_matrix"] = [[8, 0, 0], [6, 0, 0], [6, 0, 1]]  # 20 of 21 predicted as class 0
    fine = make_record("cnn", 2, "cpu", 0, acc=0.8, framework="jax")
    df = trial_table([collapsed, fine]).set_index("architecture")
    assert df.loc["resnet50", "collapsed"] and not df.loc["cnn", "collapsed"]
    assert df.loc["resnet50", "predicted_share"] == pytest.approx(20 / 21)
    assert table_cost(df.reset_index()).set_index("architecture").loc["resnet50", "collapsed"]
    html = build_report([collapsed, fine], RUN_INFO)["index.html"].decode()
    assert "COLLAPSED MODELS: 1 trial(s)" in html and collapsed["trial_id"] in html


def _spec(**execution):
    from orchestrator.spec.schema import parse_spec

    return parse_spec({"name": "hw", "grid": {"architectures": ["cnn"], "epochs": [1], "node_types": ["cpu", "gpu"]},
                       "execution": {"cpus_per_trial": 1, **execution}})


def test_a_one_machine_hardware_study_is_told_its_timings_will_be_shared_and_isolated_timing_prevents_it():
    from orchestrator.execution.timing import concurrency_limit, timing_notice
    from orchestrator.spec.grid import expand_grid
    from orchestrator.spec.node_types import NodeCapacity, placement_request

    laptop = [NodeCapacity("127.0.0.1:abcd", {"CPU": 2, "GPU": 1})]
    spec = _spec()
    trials = expand_grid(spec)
    assert timing_notice(spec, trials, laptop).startswith("Timings will be shared: up to 2 trials run at once "
                                                           "on this machine")
    assert concurrency_limit(spec, trials, laptop) is None
    isolated = _spec(isolated_timing=True)
    assert "one at a time" in timing_notice(isolated, trials, laptop)
    assert concurrency_limit(isolated, trials, laptop) == 1
    cluster = [NodeCapacity("a", {"CPU": 8, "node_kind_cpu": 1}), NodeCapacity("b", {"CPU": 8, "GPU": 1,
                                                                                     "node_kind_gpu": 1})]
    placed = [t.replace(resources=placement_request(t.resources, t.node_type, cluster, exclusive=True))
              for t in trials]
    assert timing_notice(isolated, placed, cluster) is None and concurrency_limit(isolated, placed, cluster) is None
    assert timing_notice(_spec(max_concurrent_trials=1), trials, laptop) is None


def test_a_node_busy_with_other_work_counts_as_shared():
    busy = make_record("cnn", 2, "cpu", 0, framework="jax", sharing=1)
    busy["timings"].update({"cpu_load_1m": 9.0, "node_cpus": 4})   # load above 2 x its CPUs: others ran there
    calm = make_record("cnn", 2, "gpu", 0, framework="jax", sharing=1)
    calm["timings"].update({"cpu_load_1m": 3.0, "node_cpus": 4})
    assert trial_table([busy, calm])["timing"].tolist() == ["shared node", "isolated"]
