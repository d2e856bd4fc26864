"""A scriptable command line: ``--version``, and ``--json`` output that parses for ``runs`` (status, start, trial
counts, best validation score, cost), the dry run's plan, ``list`` and ``status`` (against a cluster that does not
answer, exit 1)."""
from __future__ import annotations

import json
import socket

import pytest
import yaml

from orchestrator.cli import main
from tests.conftest import tiny_spec_dict
from tests.test_report import RUN_INFO, make_record


def _store_with_run(tmp_path):
    from orchestrator.run_store import RunPaths, write_trial_record
    from workers.records import TrialRecord
    from workers.storage import LocalStore

    store = LocalStore(tmp_path / "store")
    paths = RunPaths("study", RUN_INFO["run_id"])
    store.put_text(paths.run_info, json.dumps({**RUN_INFO, "n_trials": 3, "kind": "study",
                                               "target": {"metric": "val_balanced_accuracy", "value": 0.75,
                                                          "mode": "max"}}))
    for record in (make_record("cnn", acc=0.6, total_s=36), make_record("vgg16", acc=0.8, total_s=72),
                   make_record("cnn", node="gpu", status="infeasible", reason="no gpu")):
        write_trial_record(store, paths, TrialRecord.model_validate(record))
    return store, paths


def test_version_is_printed(capsys):
    from orchestrator import __version__

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"orchestrator {__version__}"


def test_runs_json_has_status_counts_best_validation_and_cost(tmp_path, capsys):
    store, paths = _store_with_run(tmp_path)
    assert main(["runs", "--store", str(tmp_path / "store"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (run,) = data["runs"]
    assert run["run_id"] == paths.run_id and run["status"] == "finished" and run["started"] == RUN_INFO["started"]
    assert run["counts"] == {"completed": 2, "infeasible": 1} and run["n_trials"] == 3
    best = run["best_validation"]
    assert best["metric"] == "val_balanced_accuracy" and best["value"] == pytest.approx(0.8)
    assert best["trial_id"].startswith("vgg16-")
    assert run["cost_usd"] == pytest.approx(1.0 * (36 + 72) / 3600)

    assert main(["runs", "--store", str(tmp_path / "store")]) == 0
    table = capsys.readouterr().out
    assert "finished" in table and "0.8000" in table and "2 completed" in table


def test_report_json_gives_the_url_and_the_summary(tmp_path, capsys):
    store, paths = _store_with_run(tmp_path)
    assert main(["report", paths.run_id, "--store", str(tmp_path / "store"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["report"].endswith("report/index.html") and data["mlflow_run"] is None
    assert {row["node_type"]: row["best_architecture"] for row in data["summary"]["summary_by_node_type"]} == \
        {"cpu": "vgg16"}


def test_dry_run_plan_as_json(tmp_path, capsys):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(tiny_spec_dict(store=str(tmp_path / "store"), grid={
        "architectures": ["cnn"], "epochs": [1, 2], "node_types": ["cpu", "gpu"]})))
    assert main(["submit", str(path), "--dry-run", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["n_trials"] == 4 and len(plan["trials"]) == 4
    assert {t["node_type"] for t in plan["trials"]} == {"cpu", "gpu"}
    assert any(t["resources"].get("GPU") == 1 for t in plan["trials"])
    assert {r["node_type"] for r in plan["estimate"]["rows"]} == {"cpu", "gpu"}
    assert not (tmp_path / "store").exists()


def test_cluster_commands_with_json_say_when_no_cluster_answers(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for argv in (["list", "--json"], ["status", "some-job", "--json"], ["dashboard"]):
        assert main(argv + ["--address", f"http://127.0.0.1:{port}"]) == 1
        captured = capsys.readouterr()
        assert captured.out == "" and "no Ray cluster answers" in captured.err


def test_positional_arguments_have_help(capsys):
    with pytest.raises(SystemExit):
        main(["submit", "--help"])
    assert "experiment file (YAML)" in capsys.readouterr().out
