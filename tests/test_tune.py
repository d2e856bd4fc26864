"""Hyperparameter search (``orchestrator tune``): search-block validation, an ASHA search on tiny data that
stops poor trials early and reports the best configuration, and stop/resume of a search."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from orchestrator.spec.schema import SpecError, parse_spec
from tests.support.interrupt import interrupted_after_first_record
from tests.conftest import tiny_spec_dict

REPO = Path(__file__).resolve().parent.parent
LR = {"learning_rate": {"loguniform": [0.0001, 0.01]}}


def _search(**fields) -> dict:
    return {"space": LR, **fields}


@pytest.mark.parametrize("search, expected", [
    (_search(space={"dropout": {"uniform": [0.5, 0.1]}}),
     "search.space.dropout: uniform needs lo < hi, got [0.5, 0.1]"),
    (_search(space={"learning_rate": {"loguniform": [0, 0.01]}}),
     "search.space.learning_rate: loguniform needs lo > 0, got [0, 0.01]"),
    (_search(space={"learning_rate": {"uniform": [0.01]}}), "search.space.learning_rate: uniform needs [lo, hi]"),
    (_search(space={"lstm_unit": {"choice": [16]}, "filterz": {"choice": [8]}}, architecture="cnn_lstm"),
     "search.space: unknown setting(s) lstm_unit, filterz for architecture 'cnn_lstm' (valid: learning_rate, "
     "batch_size, dropout, optimizer, augmentation, class_weights, mixed_precision, filters, lstm_units"),
    (_search(space={"lstm_units": {"choice": [16]}}), "unknown setting(s) lstm_units for architecture 'cnn'"),
    (_search(space={"learning_rate": {"normal": [0.1, 0.2]}}),
     "search.space.learning_rate: unknown distribution 'normal' (valid: choice, uniform, loguniform, grid)"),
    (_search(space={"learning_rate": 0.01}), "search.space.learning_rate: expected one of {choice: [...]}"),
    (_search(space={"optimizer": {"choice": ["adam", "adagrad"]}}), "search.space.optimizer: invalid value 'adagrad'"),
    (_search(space={"optimizer": {"uniform": [1, 2]}}), "search.space.optimizer: takes choice or grid of values"),
    (_search(space={"batch_size": {"choice": [16, 24.5]}}),
     "search.space.batch_size: batch sizes must be whole numbers"),
    (_search(space={"dropout": {"choice": [0.2, 1.5]}}), "search.space.dropout: dropout must be in [0, 1)"),
    (_search(space={"batch_size": {"grid": [16, 32]}}, algorithm="optuna"),
     "search.space.batch_size: grid is not supported with algorithm: optuna"),
    (_search(space={}), "search.space: needs at least one setting"),
    (_search(grace_period=3), "search.grace_period: must not exceed the epochs per trial (1), got 3"),
    (_search(node_type="fpga"), "search.node_type: unknown node type 'fpga'"),
    (_search(architecture="nope"), "search.architecture: unknown architecture 'nope'"),
    (_search(sampler="tpe"), "search.sampler: unknown key"),
])
def test_search_block_errors_are_one_clear_line(search, expected):
    with pytest.raises(SpecError) as err:
        parse_spec(tiny_spec_dict(search=search), "exp.yaml")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("exp.yaml: ")
    assert expected in message, message


def test_search_block_defaults_come_from_the_grid():
    spec = parse_spec(tiny_spec_dict(
        grid={"architectures": ["cnn_lstm", "cnn"], "epochs": [2, 6]},
        search={"space": {**LR, "lstm_units": {"choice": [16, 32]}}, "metric": "val_loss"}))
    s = spec.search
    assert (s.architecture, s.epochs, s.node_type) == ("cnn_lstm", 6, "cpu")
    assert (s.algorithm, s.scheduler, s.mode) == ("random", "asha", "min")  # a loss is minimised
    assert parse_spec(tiny_spec_dict(search={"space": LR})).search.metric == "val_f1_macro"


def test_sampled_values_become_trial_overrides():
    from orchestrator.search.space import base_trial, trial_for_sample, tune_space
    from workers.config import TrialConfig

    spec = parse_spec(tiny_spec_dict(grid={"architectures": ["cnn_lstm"], "epochs": [3]}, search={"space": {
        **LR, "lstm_units": {"loguniform": [8, 64]}, "augmentation": {"choice": ["none", "augmentor"]},
        "batch_size": {"choice": [16, 32]}}}))
    space = tune_space(spec.search)
    assert type(space["lstm_units"]).__name__ == "Integer"  # a whole-number builder argument samples integers
    trial = TrialConfig.from_dict(trial_for_sample(base_trial(spec).to_dict(), {
        "learning_rate": 0.003, "lstm_units": 24, "augmentation": "augmentor", "batch_size": 32}, "abc_00001"))
    assert trial.trial_id.startswith("cnn_lstm-abc_00001-e3-") and trial.epochs == 3 and trial.augmentation == "augmentor"
    assert trial.hparam("learning_rate") == 0.003 and trial.hparam("batch_size") == 32
    assert trial.overrides["model_params"] == {"lstm_units": 24}


def test_one_trial_id_function_names_study_search_and_best_trials():
    from orchestrator.search.runner import best_trials
    from orchestrator.search.space import base_trial, trial_for_sample
    from orchestrator.spec.grid import expand_grid, trial_id

    spec = parse_spec(tiny_spec_dict(grid={"architectures": ["cnn"], "epochs": [2]}, search={"space": LR}))
    (study,) = expand_grid(spec)
    assert trial_id(study.to_dict()) == study.trial_id  # the grid's id is the function of the trial's settings
    base = base_trial(spec).to_dict()
    a, b = (trial_for_sample(base, {"learning_rate": 0.001}, tid)["trial_id"] for tid in ("t_00000", "t_00001"))
    assert a.startswith("cnn-t_00000-e2-") and b.startswith("cnn-t_00001-e2-") and a[-8:] != b[-8:]
    assert trial_for_sample(base, {"learning_rate": 0.001}, "t_00000")["trial_id"] == a  # worker and coordinator agree
    best = best_trials(spec, {"hyperparameters": {"learning_rate": 0.001}})
    assert [t.trial_id.rsplit("-", 1)[0] for t in best] == ["cnn-best-e2-cpu-none-tensorflow-r0"]
    assert best[0].trial_id == trial_id(best[0].to_dict(), "best")


def test_cli_tune_dry_run_and_bad_input(tmp_path, capsys):
    from orchestrator.cli import main

    assert main(["tune", str(REPO / "experiments" / "tune_cnn_lstm.yaml"), "--dry-run"]) == 0
    shown = capsys.readouterr().out
    assert "tune.loguniform" in shown and "rungs at epochs [2, 4]" in shown

    no_search = tmp_path / "plain.yaml"
    no_search.write_text(yaml.safe_dump(tiny_spec_dict()))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(tiny_spec_dict(search={"space": {"dropout": {"uniform": [0.4, 0.2]}}})))
    for path, expected in ((no_search, "no 'search:' block"), (bad, "search.space.dropout: uniform needs lo < hi")):
        assert main(["tune", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err, err


@pytest.mark.slow
def test_asha_search_stops_poor_trials_and_reports_the_best(ray_session, tiny_spec):
    from orchestrator import Search

    # Validation loss rather than macro-F1: on a ~20-image validation split several trials tie on F1, and a
    # tie never falls below ASHA's cutoff. The learning-rate range is wide enough that some trials are bad.
    spec = tiny_spec(name="tune-asha", dataset={"samples_per_class": 30}, search={
        "architecture": "cnn", "epochs": 4, "grace_period": 1, "reduction_factor": 2, "num_samples": 6,
        "metric": "val_loss",
        "space": {"learning_rate": {"loguniform": [0.00001, 1.0]}, "batch_size": {"choice": [8, 16]}}})
    outcome = Search(spec).run(notify=lambda m: None)

    by_status: dict[str, list] = {}
    for r in outcome.records:
        by_status.setdefault(r.status.value, []).append(r)
    assert len(outcome.records) == 6 and set(by_status) <= {"completed", "stopped_early"}, outcome.counts
    assert by_status.get("stopped_early"), f"ASHA stopped no trial: {outcome.counts}"
    assert by_status.get("completed"), outcome.counts
    for r in by_status["stopped_early"]:
        ran = r.search.epochs_completed
        assert 1 <= ran < 4 and len(r.history) == ran and "val_loss" in r.search.last_result
        assert "stopped by ASHA" in r.error
    for r in by_status["completed"]:
        assert r.search.epochs_completed == 4 and r.metrics["accuracy"] is not None

    report = Path(spec.storage.uri) / spec.name / outcome.paths.run_id / "report"
    assert outcome.report_url.endswith("report/search.html")
    table = pd.read_csv(report / "trials.csv")
    assert len(table) == 6 and set(table["status"]) == {"completed", "stopped_early"}
    assert (table.loc[table["status"] == "stopped_early", "epochs_run"] < 4).all()
    best = json.loads((report / "best.json").read_text())
    winner = table.loc[table["val_loss"].idxmin()]
    assert best["trial_id"] == winner["trial_id"] and best["value"] == pytest.approx(winner["val_loss"])
    assert best["mode"] == "min" and best == outcome.best_trial
    assert best["hyperparameters"]["learning_rate"] == pytest.approx(winner["learning_rate"])
    for name in ("search.html", "search.md", "plots/search_parallel_coordinates.png",
                 "plots/search_val_loss_vs_learning_rate.png", "plots/search_val_loss_vs_batch_size.png"):
        assert (report / name).stat().st_size > 0, name
    assert best["trial_id"] in (report / "search.md").read_text()
    # tracked like a study (TensorBoard event files per trial) and shaped like a StudyResult
    tensorboard = report.parent / "tensorboard"
    assert {p.name for p in tensorboard.iterdir()} == {r.trial_id for r in outcome.records}
    assert list((tensorboard / best["trial_id"]).glob("events.out.tfevents.*"))
    assert outcome.best().trial_id == best["trial_id"] and len(outcome.dataframe()) == 6
    assert outcome.run_id == outcome.paths.run_id and outcome.counts == {"completed": len(by_status["completed"]),
                                                                         "stopped_early": len(by_status["stopped_early"])}


@pytest.mark.slow
def test_stopped_search_resumes_without_losing_finished_trials(ray_session, tiny_spec):
    from orchestrator import Search
    from orchestrator.run_store import read_trial_records

    spec = tiny_spec(name="tune-resume", search={
        "architecture": "cnn", "epochs": 2, "scheduler": "fifo", "num_samples": 4, "max_concurrent_trials": 2,
        "space": {"learning_rate": {"loguniform": [0.0001, 0.01]}}})
    root = Path(spec.storage.uri) / spec.name

    first = interrupted_after_first_record(lambda: Search(spec).run(notify=lambda m: None), root, deadline_s=120)
    assert first.interrupted and first.counts.get("completed", 0) < 4, first.counts
    kept = {r.trial_id: r for r in first.records if r.completed}
    assert kept and first.counts.get("interrupted"), first.counts

    second = Search(spec).resume(first.paths.run_id, notify=lambda m: None)
    assert not second.interrupted and second.counts == {"completed": 4}, second.counts
    records = {r.trial_id: r for r in read_trial_records(second.store, second.paths)}
    assert len(records) == 4
    for tid, record in kept.items():  # finished before the stop: kept as they were, not run again
        assert records[tid].timings == record.timings and records[tid].pid == record.pid
    assert second.best_trial["trial_id"] in records


@pytest.mark.slow
def test_optuna_search_runs_and_saves_its_searcher_state(ray_session, tiny_spec):
    from orchestrator import Search

    spec = tiny_spec(name="tune-optuna", search={
        "architecture": "cnn", "epochs": 2, "algorithm": "optuna", "scheduler": "fifo", "num_samples": 3,
        "space": {"learning_rate": {"loguniform": [0.0001, 0.01]}, "optimizer": {"choice": ["adam", "rmsprop"]}}})
    outcome = Search(spec).run(notify=lambda m: None)
    assert outcome.counts == {"completed": 3}
    assert outcome.best_trial["hyperparameters"]["optimizer"] in ("adam", "rmsprop")
    tune_dir = Path(spec.storage.uri) / spec.name / outcome.paths.run_id / "tune"
    assert list(tune_dir.glob("searcher-state-*.pkl"))  # what --resume restores Optuna's study from


def test_a_search_stopped_before_tasks_left_the_configs_still_finds_its_tasks():
    """Tune state written by the earlier engine holds the task object in each trial's config; a restored trial
    reads it from there (the current engine's configs name a task by key)."""
    from orchestrator.execution import engine
    from orchestrator.execution.trainable import TrialTask
    from orchestrator.spec.grid import expand_grid
    from tests.support.tune_trials import FakeTrial, study_trial

    trial = expand_grid(parse_spec(tiny_spec_dict()))[0]
    old = FakeTrial(trial_id="tune_0", config={"trial": {"task": TrialTask(trial, {}), "id": None}})
    assert engine.trial_id_of(old) == trial.trial_id
    assert engine.trial_id_of(study_trial(trial, "tune_1")) == trial.trial_id


def test_workers_unpickle_a_runs_task_table_once_however_often_it_is_handed_over():
    """``tune.with_parameters`` hands every trial the run's tasks afresh; what a worker gets is bytes, and the
    table itself is unpickled once per worker process (a new run's table replaces it)."""
    import pickle

    from orchestrator.execution import engine
    from orchestrator.execution.trainable import TrialTask
    from orchestrator.spec.grid import expand_grid

    trials = expand_grid(parse_spec(tiny_spec_dict()))
    packed = engine.PackedTasks.of({t.trial_id: TrialTask(t, {"uri": "/tmp/store"}) for t in trials})
    first, second = (pickle.loads(pickle.dumps(packed)).unpack() for _ in range(2))
    assert first is second and sorted(first) == sorted(t.trial_id for t in trials)
    assert first[trials[0].trial_id].trial == trials[0]
    other = engine.PackedTasks.of({trials[0].trial_id: TrialTask(trials[0], {"uri": "/tmp/elsewhere"})})
    assert other.unpack()[trials[0].trial_id].store == {"uri": "/tmp/elsewhere"}
