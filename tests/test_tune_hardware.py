"""Hardware-aware, multi-objective search: node types and architectures as search dimensions (each trial on the
resources of the node type it sampled, infeasible samples recorded), objectives (time and cost to target), the
Pareto front, and resume of a multi-objective Optuna search with its searcher state.

Node types are simulated on the CPU: ``gpu_sim`` asks for the session Ray's custom ``simulated_gpu`` resource
(tests/conftest.py), and ``gpu`` asks for a real GPU the session Ray does not have.
"""
from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from orchestrator.spec.schema import SpecError, parse_spec
from tests.support.interrupt import interrupted_after_first_record
from tests.conftest import SIMULATED_GPU, tiny_spec_dict

LR = {"learning_rate": {"loguniform": [0.0001, 0.01]}}
OBJECTIVES = {"val_balanced_accuracy": "max", "cost_to_target_usd": "min", "time_to_target_s": "min"}


# ------------------------------------------------------------------------------------------------ pure parts
def test_pareto_front_holds_exactly_the_points_no_other_point_dominates():
    from orchestrator.search.pareto import dominates, pareto_mask

    objectives = {"acc": "max", "cost": "min", "time": "min"}
    rng = random.Random(0)
    points = [{"acc": rng.choice([0.2, 0.4, 0.6, 0.8]), "cost": rng.choice([0.1, 0.2, math.inf]),
               "time": rng.choice([5.0, 10.0, math.inf])} for _ in range(40)] + [{"acc": None, "cost": 0, "time": 0}]
    mask = pareto_mask(points, objectives)

    def oriented(p):
        return (p["acc"], -p["cost"], -p["time"])

    for i, (p, on_front) in enumerate(zip(points, mask)):
        if p["acc"] is None:
            assert not on_front  # a trial missing an objective is on no front
            continue
        dominated = any(dominates(oriented(q), oriented(p)) for j, q in enumerate(points) if j != i and q["acc"] is not None)
        assert on_front == (not dominated), p
    assert any(mask)
    # a small case by hand: (acc, cost) = (0.9, 2) and (0.5, 1) trade off; (0.5, 2) is dominated by both
    hand = [{"acc": 0.9, "cost": 2.0}, {"acc": 0.5, "cost": 1.0}, {"acc": 0.5, "cost": 2.0}]
    assert pareto_mask(hand, {"acc": "max", "cost": "min"}) == [True, True, False]


def test_objectives_are_time_and_cost_to_target_from_wall_time():
    from orchestrator.search.objectives import objective_values, trial_objectives

    history = [{"epoch": 1, "val_balanced_accuracy": 0.4, "wall_s": 10.0},
               {"epoch": 2, "val_balanced_accuracy": 0.8, "wall_s": 18.0},
               {"epoch": 3, "val_balanced_accuracy": 0.7, "wall_s": 26.0}]
    target = {"metric": "val_balanced_accuracy", "value": 0.75, "mode": "max"}
    assert objective_values(history, target, 3.6) == {"time_to_target_s": 18.0, "cost_to_target_usd": pytest.approx(0.018)}
    assert objective_values(history[:1], target, 3.6) == {"time_to_target_s": math.inf, "cost_to_target_usd": math.inf}
    record = {"history": history, "config": {"price_per_hour": 3.6}}
    got = trial_objectives(record, OBJECTIVES, target)
    assert got == {"val_balanced_accuracy": 0.7, "cost_to_target_usd": pytest.approx(0.018), "time_to_target_s": 18.0}
    assert trial_objectives({"history": []}, OBJECTIVES, target) == dict.fromkeys(OBJECTIVES)


@pytest.mark.parametrize("search, expected", [
    ({"space": LR, "node_types": ["cpu", "fpga"]}, "search.node_types[1]: unknown node type 'fpga'"),
    ({"space": LR, "architectures": ["cnn", "nope"]}, "search.architectures[1]: unknown architecture 'nope'"),
    ({"space": LR, "objectives": {"val_balanced_accuracy": "max"}}, "search.objectives: needs two or more"),
    ({"space": LR, "objectives": {"speed": "max", "time_to_target_s": "min"}}, "search.objectives"),
    ({"space": {"mixed_precision": {"choice": ["off", "fp8"]}}}, "search.space.mixed_precision: invalid value 'fp8'"),
    ({"space": {"lstm_units": {"choice": [16]}}, "architectures": ["cnn", "resnet_small"]},
     "unknown setting(s) lstm_units for architectures cnn, resnet_small"),
])
def test_hardware_search_block_errors_are_one_clear_line(search, expected):
    with pytest.raises(SpecError) as err:
        parse_spec(tiny_spec_dict(search=search), "exp.yaml")
    assert "\n" not in str(err.value) and expected in str(err.value), str(err.value)


def test_each_sample_starts_from_its_architecture_and_node_type():
    from orchestrator.search.space import base_key, base_trials, select_base, trial_for_sample, tune_space

    spec = parse_spec(tiny_spec_dict(node_types={"gpu_sim": SIMULATED_GPU}, search={
        "architectures": ["cnn", "cnn_lstm"], "node_types": ["cpu", "gpu_sim"], "objectives": OBJECTIVES,
        "space": {**LR, "lstm_units": {"choice": [8, 16]}, "mixed_precision": {"choice": ["off", "bfloat16"]}}}))
    space = tune_space(spec.search)
    assert space["node_type"].categories == ["cpu", "gpu_sim"] and space["architecture"].categories == ["cnn", "cnn_lstm"]
    bases = {base_key(b.to_dict()): b.to_dict() for b in base_trials(spec)}
    assert set(bases) == {"cnn@cpu", "cnn@gpu_sim", "cnn_lstm@cpu", "cnn_lstm@gpu_sim"}
    hp = {"architecture": "cnn", "node_type": "gpu_sim", "learning_rate": 0.002, "lstm_units": 16,
          "mixed_precision": "off"}
    trial = trial_for_sample(select_base(bases, hp), hp, "t_00001")
    assert (trial["architecture"], trial["node_type"]) == ("cnn", "gpu_sim")
    assert trial["resources"] == {"CPU": 1, "simulated_gpu": 1} and trial["price_per_hour"] == 2.48
    assert "model_params" not in trial["overrides"]  # cnn's builder takes no lstm_units
    assert trial["overrides"]["mixed_precision"] == "off"
    lstm = trial_for_sample(select_base(bases, {**hp, "architecture": "cnn_lstm"}), {**hp, "architecture": "cnn_lstm"}, "t")
    assert lstm["overrides"]["model_params"] == {"lstm_units": 16}


def test_tune_dry_run_lists_the_hardware_dimensions_and_objectives(capsys):
    from orchestrator.cli import main

    assert main(["tune", str(Path(__file__).parents[1] / "experiments" / "tune_hardware.yaml"), "--dry-run"]) == 0
    shown = capsys.readouterr().out
    assert "node_type" in shown and "tune.choice" in shown and "objectives" in shown, shown


# ------------------------------------------------------------------------------------------------ end to end
def _records(outcome):
    return {r.trial_id: r for r in outcome.records}


@pytest.mark.slow
def test_hardware_search_places_each_trial_on_its_node_type_and_reports_the_front(ray_session, tiny_spec):
    from orchestrator import Search

    spec = tiny_spec(name="tune-hw", node_types={"gpu_sim": SIMULATED_GPU}, report={"target": {"value": 0.0}},
                     search={"architecture": "cnn", "node_types": ["cpu", "gpu_sim", "gpu"], "epochs": 1,
                             "scheduler": "fifo", "num_samples": 6, "max_concurrent_trials": 2,
                             "objectives": {"val_balanced_accuracy": "max", "cost_to_target_usd": "min"},
                             "space": {"batch_size": {"choice": [8, 16]}}})
    from orchestrator.search.space import base_trials

    prices = {b.node_type: b.price_per_hour for b in base_trials(spec)}  # the price table's, or the file's own
    assert prices["gpu_sim"] == 2.48
    outcome = Search(spec).run(notify=lambda m: None)
    records = list(outcome.records)
    kinds = {r.config["node_type"] for r in records}
    assert len(records) == 6 and kinds == {"cpu", "gpu_sim", "gpu"}, kinds  # every kind sampled (seed 0)
    for r in records:
        sampled = r.search.hyperparameters["node_type"]
        assert r.config["node_type"] == sampled
        if sampled == "gpu":  # no GPU on the session Ray: recorded, never left pending
            assert r.status.value == "infeasible" and "GPU" in r.error and not r.history
            continue
        assert r.status.value == "completed", r.error
        want = {"cpu": {"CPU": 1.0}, "gpu_sim": {"CPU": 1.0, "simulated_gpu": 1.0}}[sampled]
        assert r.search.resources == want and r.config["resources"] == want
        assert r.config["price_per_hour"] == prices[sampled]

    report = Path(spec.storage.uri) / spec.name / outcome.paths.run_id / "report"
    front = json.loads((report / "front.json").read_text())
    assert front == outcome.front and front
    from orchestrator.report.comparability import TIMING_SHARED, trial_columns

    done = [r for r in records if r.completed]
    alone = [r for r in done if trial_columns(r.to_dict())["timing"] != TIMING_SHARED]
    done = alone or done  # the front leaves out shared-node timings unless every trial has them
    values = {r.trial_id: (r.history[-1]["val_balanced_accuracy"], r.config["price_per_hour"] * r.history[0]["wall_s"] / 3600)
              for r in done}
    on_front = {p["trial_id"] for p in front}
    for tid, (acc, cost) in values.items():  # target 0: reached at epoch 1, so cost = price x first epoch's wall_s
        dominated = any(a >= acc and c <= cost and (a > acc or c < cost) for other, (a, c) in values.items() if other != tid)
        assert (tid in on_front) == (not dominated), (tid, values, on_front)
    for p in front:
        assert p["objectives"]["cost_to_target_usd"] == pytest.approx(values[p["trial_id"]][1])
    page = (report / "search.md").read_text()
    assert "Pareto front" in page and (report / "plots" / "search_pareto_front.png").stat().st_size > 0


@pytest.mark.slow
def test_multi_objective_search_resumes_with_its_searcher_state(ray_session, tiny_spec):
    from ray.tune.search.optuna import OptunaSearch

    from orchestrator import Search

    spec = tiny_spec(name="tune-mo-resume", node_types={"gpu_sim": SIMULATED_GPU}, search={
        "architecture": "cnn", "node_types": ["cpu", "gpu_sim"], "epochs": 1, "algorithm": "optuna",
        "scheduler": "fifo", "num_samples": 4, "max_concurrent_trials": 1, "objectives": OBJECTIVES, "space": LR})
    root = Path(spec.storage.uri) / spec.name

    first = interrupted_after_first_record(lambda: Search(spec).run(notify=lambda m: None), root)
    assert first.interrupted, first.counts
    kept = {r.search.tune_trial_id: r for r in first.records if r.completed}
    assert kept, first.counts

    second = Search(spec).resume(first.paths.run_id, notify=lambda m: None)
    assert second.counts == {"completed": 4}, second.counts
    state = sorted((root / second.paths.run_id / "tune").glob("searcher-state-*.pkl"))[-1]
    searcher = OptunaSearch()
    searcher.restore(str(state))
    told = {t.user_attrs.get("ray_trial_id", t.number): t for t in searcher._ot_study.trials}
    assert len(searcher._ot_study.trials) == 4 and all(t.values and len(t.values) == 3 for t in told.values())
    assert searcher._ot_study.directions[0].name == "MAXIMIZE"
    # the trial finished before the stop is still in the restored study, with the values it reported then
    accs = sorted(t.values[0] for t in searcher._ot_study.trials)
    for record in kept.values():
        assert any(math.isclose(a, record.history[-1]["val_balanced_accuracy"]) for a in accs)
    assert second.front and {p["trial_id"] for p in second.front} <= {r.trial_id for r in second.records}


def test_the_front_leaves_out_shared_node_trials_unless_all_shared():
    from orchestrator.report.search import front_points
    from orchestrator.search.pareto import pareto_mask

    objectives = {"val_balanced_accuracy": "max", "time_to_target_s": "min"}
    rows = [{"objective_val_balanced_accuracy": 0.9, "objective_time_to_target_s": 1.0, "timing": "shared node"},
            {"objective_val_balanced_accuracy": 0.5, "objective_time_to_target_s": 5.0, "timing": "isolated"}]
    assert pareto_mask(front_points(rows, objectives), objectives) == [False, True]
    rows[1]["timing"] = "shared node"  # nothing isolated: the front is taken over all (the report warns)
    assert pareto_mask(front_points(rows, objectives), objectives) == [True, False]


def test_then_study_of_the_front_repeats_every_point_on_its_own_node_type():
    from orchestrator.search.runner import front_trials

    spec = parse_spec(tiny_spec_dict(node_types={"gpu_sim": SIMULATED_GPU}, search={
        "architectures": ["cnn", "cnn_lstm"], "node_types": ["cpu", "gpu_sim"], "objectives": OBJECTIVES,
        "then_study_repeats": 2, "epochs": 3, "space": LR}))
    front = [{"trial_id": "a", "hyperparameters": {"architecture": "cnn", "node_type": "gpu_sim", "learning_rate": 0.002}},
             {"trial_id": "b", "hyperparameters": {"architecture": "cnn_lstm", "node_type": "cpu", "learning_rate": 0.005}}]
    trials = front_trials(spec, front)
    assert [(t.architecture, t.node_type, t.repeat) for t in trials] == [
        ("cnn", "gpu_sim", 0), ("cnn", "gpu_sim", 1), ("cnn_lstm", "cpu", 0), ("cnn_lstm", "cpu", 1)]
    assert all(t.epochs == 3 for t in trials) and len({t.trial_id for t in trials}) == 4
    assert trials[0].resources == {"CPU": 1, "simulated_gpu": 1} and trials[2].hparam("learning_rate") == 0.005
    assert trials[0].seed != trials[1].seed
