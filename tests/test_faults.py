"""Fault injection: killed workers, failing trials, a killed driver, an object store that goes down."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest
import yaml

from orchestrator import Study
from orchestrator.cli import main
from tests.conftest import _free_port, tiny_spec_dict
from tests.support.trainables import crash_once_after_first_epoch, slow_epochs_trainable


def _records(store: Path, experiment: str) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in store.glob(f"{experiment}/*/trials/*/record.json")}


@pytest.mark.slow
def test_killed_worker_is_retried_from_its_checkpoint(tiny_spec, ray_session, tmp_path):
    spec = tiny_spec(name="crash", grid={"architectures": ["cnn"], "epochs": [3]}, execution={"max_retries": 2})
    study = Study(spec, trainable=crash_once_after_first_epoch(str(tmp_path / "markers")))
    (record,) = study.run(show_progress=False, notify=lambda m: None).records
    assert record.status.value == "completed"
    assert record.retries == 1
    assert record.resumed_from_checkpoint is True
    assert [row["epoch"] for row in record.history] == [1, 2, 3]


def test_finished_trials_leave_no_tune_checkpoints_behind(tiny_spec, ray_session, tmp_path):
    """Epoch checkpoints serve a trial while it runs; once its record is stored they are removed."""
    spec = tiny_spec(name="pruned", grid={"architectures": ["cnn"], "epochs": [3], "repeats": 2},
                     models={"cnn": {"params": {"seconds": 0.05}}})
    outcome = Study(spec, trainable=slow_epochs_trainable).run(show_progress=False, notify=lambda m: None)
    assert [r.status.value for r in outcome.records] == ["completed", "completed"]
    assert all([h["epoch"] for h in r.history] == [1, 2, 3] for r in outcome.records)
    tune_dir = tmp_path / "store" / "pruned" / outcome.paths.run_id / "tune"
    assert len([d for d in tune_dir.iterdir() if d.is_dir()]) == 2  # the trials' folders are there
    assert list(tune_dir.glob("*/checkpoint_*")) == []


@pytest.mark.slow
def test_deterministic_failure_is_reported_and_the_rest_completes(tiny_spec, ray_session):
    spec = tiny_spec(name="broken", grid={"architectures": ["cnn", "cnn_lstm"], "epochs": [1]},
                     models={"cnn": {"params": {"filters": -3}}}, execution={"max_retries": 1})
    outcome = Study(spec).run(show_progress=False, notify=lambda m: None)
    by_arch = {r.config["architecture"]: r for r in outcome.records}
    assert by_arch["cnn_lstm"].status.value == "completed"
    assert by_arch["cnn"].status.value == "failed"
    assert by_arch["cnn"].retries == 1
    assert "filters" in by_arch["cnn"].error or "positive" in by_arch["cnn"].error.lower()


@pytest.mark.slow
def test_killed_driver_resumes_without_rerunning_finished_trials(tmp_path, ray_session):
    store = tmp_path / "store"
    spec = tiny_spec_dict(name="resumable", store=str(store), grid={"architectures": ["cnn"], "epochs": [1, 2, 3, 4]},
                          execution={"max_concurrent_trials": 1})
    spec["storage"]["local_dir"] = str(tmp_path / "local")
    path = tmp_path / "resumable.yaml"
    path.write_text(yaml.safe_dump(spec))
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "submit", str(path)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not _records(store, "resumable"):
            time.sleep(0.5)
            assert proc.poll() is None, "the driver ended before any trial finished"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = {tid: r for tid, r in _records(store, "resumable").items() if r["status"] == "completed"}
    assert 1 <= len(before) < 4
    mtimes = {tid: next(store.glob(f"resumable/*/trials/{tid}/record.json")).stat().st_mtime for tid in before}
    (run_dir,) = (store / "resumable").iterdir()

    assert main(["resume", run_dir.name, "--store", str(store)]) == 0
    after = _records(store, "resumable")
    assert len(after) == 4 and all(r["status"] == "completed" for r in after.values())
    for tid, mtime in mtimes.items():  # finished trials were kept, not recomputed
        assert next(store.glob(f"resumable/*/trials/{tid}/record.json")).stat().st_mtime == mtime
        assert after[tid]["pid"] == before[tid]["pid"]
    results = (run_dir / "report" / "results.csv").read_text().splitlines()
    assert len(results) == 1 + 4


@pytest.mark.slow
def test_store_going_down_keeps_results_locally_and_upload_publishes_them(tmp_path, ray_session, s3_endpoint, s3_bucket,
                                                                          monkeypatch, capsys):
    from moto.server import ThreadedMotoServer

    port = _free_port()
    flaky = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    flaky.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="flaky")
    spec = tiny_spec_dict(name="outage", grid={"architectures": ["cnn"], "epochs": [1, 3]},
                          execution={"max_concurrent_trials": 1})
    spec["storage"] = {"uri": "s3://flaky/studies", "endpoint_url": endpoint, "local_dir": str(tmp_path / "local")}
    path = tmp_path / "outage.yaml"
    path.write_text(yaml.safe_dump(spec))

    submitted = threading.Event()

    def stop_after_first_record():  # however long the first trial takes on a loaded machine
        client = boto3.client("s3", endpoint_url=endpoint)
        while not submitted.is_set():
            keys = [o["Key"] for o in client.list_objects_v2(Bucket="flaky").get("Contents", [])]
            if any(k.endswith("record.json") for k in keys):
                flaky.stop()
                return
            time.sleep(0.2)

    watcher = threading.Thread(target=stop_after_first_record, daemon=True)
    watcher.start()
    try:
        code = main(["submit", str(path)])
    finally:
        submitted.set()
    watcher.join(timeout=5)
    err = capsys.readouterr().err
    assert code == 1
    assert "became unreachable" in err and "--upload" in err
    local = tmp_path / "local"
    (run_dir,) = (local / "outage").iterdir()
    assert (run_dir / "report" / "index.html").is_file()

    assert main(["report", run_dir.name, "--store", str(local), "--upload", f"s3://{s3_bucket}/published",
                 "--endpoint-url", s3_endpoint]) == 0
    keys = {o["Key"] for o in boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket=s3_bucket)["Contents"]}
    root = f"published/outage/{run_dir.name}"
    assert f"{root}/report/index.html" in keys and f"{root}/spec.yaml" in keys
    assert sum(1 for k in keys if k.startswith(f"{root}/trials/") and k.endswith("record.json")) == 2


def test_unreachable_store_at_start_starts_nothing(tmp_path, capsys):
    spec = tiny_spec_dict(name="nostore")
    spec["storage"] = {"uri": "s3://nowhere/x", "endpoint_url": f"http://127.0.0.1:{_free_port()}"}
    path = tmp_path / "nostore.yaml"
    path.write_text(yaml.safe_dump(spec))
    t = time.time()
    assert main(["submit", str(path)]) == 2
    assert "unreachable" in capsys.readouterr().err
    assert time.time() - t < 60
