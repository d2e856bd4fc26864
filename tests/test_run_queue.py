"""A submitted run's id and queue state: chosen at submission, kept by its driver in the store's run.json, read
back by ``orchestrator list`` / ``status`` without any job log (no Ray here: the Jobs client is replaced)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from orchestrator.run_store import QueueState, RunPaths, run_state
from tests.conftest import tiny_spec_dict


def test_run_state_reads_queue_and_end_from_run_json():
    waiting = QueueState(state="waiting", waiting=2, needs=["CPU=1", "CPU=1, GPU=1"])
    assert run_state({"started": "t", "n_trials": 3, "queue": waiting.model_dump()}) == \
        "waiting for resources: 2 trial(s) need CPU=1 | CPU=1, GPU=1"
    running = QueueState(state="running", running=1, waiting=0)
    assert run_state({"started": "t", "queue": running.model_dump()}) == "running (1 trial(s) running, 0 waiting)"
    probes = QueueState(state="waiting", waiting=1, of="device probes")
    assert run_state({"queue": probes.model_dump()}) == \
        "waiting for resources: 1 device probe(s) wait for a free node of their type"
    assert run_state({"started": "t", "n_trials": 3}) == "started (3 trials)"
    assert run_state({"started": "t", "finished": "u", "counts": {"failed": 1, "completed": 2},
                      "queue": running.model_dump()}) == "finished (completed: 2, failed: 1)"
    assert run_state({"started": "t", "finished": "u", "counts": {"completed": 1}, "interrupted": True,
                      "unfinished": ["a", "b"]}) == "interrupted (completed: 1, 2 trial(s) unfinished)"
    assert run_state(None) is None and run_state({}) is None
    assert waiting.console_line() == "Queue: waiting for resources: 2 trial(s) need CPU=1 | CPU=1, GPU=1"


def _session(tmp_path):
    from orchestrator.execution.run_steps import RunSession
    from orchestrator.spec.schema import parse_spec
    from workers.storage import open_store

    spec = parse_spec(tiny_spec_dict(store=str(tmp_path)))
    return RunSession(spec, RunPaths(spec.name, "20260101-000000-abcd"), open_store(str(tmp_path)), lambda _: None)


def test_driver_keeps_queue_state_in_run_json(tmp_path):
    session = _session(tmp_path)
    info_file = tmp_path / session.paths.run_info
    # device probes wait before the run has begun: run.json says so, and begin() does not take it for a resume
    session.set_queue(QueueState(state="waiting", waiting=1, of="device probes"))
    assert run_state(json.loads(info_file.read_text())).endswith("device probe(s) wait for a free node of their type")
    session.begin("study", [], 2)
    info = json.loads(info_file.read_text())
    assert "resumed" not in info and "queue" not in info and run_state(info) == "started (2 trials)"
    session.set_queue(QueueState(state="waiting", waiting=2, needs=["CPU=1"]))
    info = json.loads(info_file.read_text())
    assert info["n_trials"] == 2 and run_state(info) == "waiting for resources: 2 trial(s) need CPU=1"
    session.finish([])
    info = json.loads(info_file.read_text())
    assert run_state(info) == "finished" and "queue" not in info
    # a resume starts a fresh queue state and is counted as a resume
    again = _session(tmp_path)
    again.begin("study", [], 2)
    info = json.loads(info_file.read_text())
    assert len(info["resumed"]) == 1 and "queue" not in info and "finished" not in info


def test_run_info_of_reads_the_store_the_job_metadata_names(tmp_path):
    from orchestrator.cluster.jobs import run_info_of

    session = _session(tmp_path)
    session.begin("study", [], 2)
    meta = {"experiment": session.spec.name, "run_id": session.paths.run_id, "store": str(tmp_path)}
    assert run_info_of(meta)["run_id"] == session.paths.run_id
    assert run_info_of({**meta, "store_on": "head node"}) is None  # a directory on another machine
    assert run_info_of({**meta, "run_id": "20260101-000000-ffff"}) is None  # the driver has not begun yet
    assert run_info_of({}) is None and run_info_of(None) is None  # a job not submitted by orchestrator
    # a resume submitted without knowing the experiment finds the run by its id
    resume = {"experiment": "resume", "resumes": session.paths.run_id, "run_id": session.paths.run_id,
              "store": str(tmp_path)}
    assert run_info_of(resume)["experiment"] == session.spec.name


@pytest.fixture
def cluster_jobs(tmp_path, monkeypatch):
    """The Jobs client replaced by two jobs of a study waiting for resources; reading a log fails the test."""
    from orchestrator.cluster import jobs

    session = _session(tmp_path)
    session.begin("study", [], 2)
    session.set_queue(QueueState(state="waiting", waiting=2, needs=["CPU=1, GPU=1"]))
    meta = {"experiment": session.spec.name, "run_id": session.paths.run_id, "store": str(tmp_path)}
    job = SimpleNamespace(submission_id="tiny-job-1", job_id=None, status="RUNNING", metadata=meta,
                          start_time=1_700_000_000_000, end_time=None, entrypoint="orchestrator submit x.yaml",
                          message="", driver_node_id=None)
    other = SimpleNamespace(**{**vars(job), "submission_id": "other-job", "metadata": {}, "status": "SUCCEEDED"})

    def no_logs(*_):
        raise AssertionError("list/status read a job log")

    monkeypatch.setattr(jobs, "list_jobs", lambda address: [job, other])
    monkeypatch.setattr(jobs, "job_info", lambda address, job_id, **kw: job)
    monkeypatch.setattr(jobs, "job_logs", no_logs)
    return session


def test_list_and_status_show_the_queue_state_from_run_json_without_logs(cluster_jobs, capsys):
    from orchestrator.cli import main

    assert main(["list", "--address", "http://127.0.0.1:1"]) == 0
    listed = capsys.readouterr().out
    assert "RUNNING (waiting for resources: 2 trial(s) need CPU=1, GPU=1)" in listed, listed
    assert cluster_jobs.paths.run_id in listed and "other-job" in listed
    assert main(["status", "tiny-job-1", "--address", "http://127.0.0.1:1"]) == 0
    status = capsys.readouterr().out
    assert f"run:        {cluster_jobs.paths.run_id} (waiting for resources: 2 trial(s) need CPU=1, GPU=1)" \
        in status, status


def test_list_and_status_json_carry_the_run_and_its_state_without_logs(cluster_jobs, capsys):
    import json

    from orchestrator.cli import main

    assert main(["list", "--address", "http://127.0.0.1:1", "--json"]) == 0
    listed = {j["job_id"]: j for j in json.loads(capsys.readouterr().out)["jobs"]}
    job = listed["tiny-job-1"]
    assert job["run_id"] == cluster_jobs.paths.run_id and job["shown_status"].startswith("RUNNING (waiting")
    assert main(["status", "tiny-job-1", "--address", "http://127.0.0.1:1", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["run_id"] == cluster_jobs.paths.run_id and status["run_state"].startswith("waiting for resources")
    assert status["log_tail"] == []
