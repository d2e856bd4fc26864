"""Tracking against the real thing: an ``mlflow server`` on 127.0.0.1 (SQLite backend, artifacts on the moto S3
endpoint), studies submitted through the CLI, checked through ``MlflowClient``; TensorBoard event files read
back with TensorBoard's own event reader."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from orchestrator.cli import main
from tests.conftest import tiny_spec_dict

mlflow = pytest.importorskip("mlflow")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """``mlflow server`` in its own process group: SQLite backend in ``workdir``, artifacts proxied to S3."""

    def __init__(self, workdir: Path, s3_endpoint: str, bucket: str):
        self.workdir, self.s3_endpoint, self.bucket = workdir, s3_endpoint, bucket
        self.process, self.uri = None, None

    def start(self, timeout_s: float = 90) -> str:
        port = _free_port()
        env = dict(os.environ, MLFLOW_S3_ENDPOINT_URL=self.s3_endpoint)
        env.pop("MLFLOW_TRACKING_URI", None)
        log = open(self.workdir / f"server-{port}.log", "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{self.workdir / 'mlflow.db'}",
             "--artifacts-destination", f"s3://{self.bucket}/mlflow"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.uri = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.uri}/health", timeout=2)
                return self.uri
            except OSError:
                assert self.process.poll() is None, (self.workdir / f"server-{port}.log").read_text()[-2000:]
                time.sleep(0.3)
        raise TimeoutError("mlflow server did not come up")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)  # an outage: the server and the worker it started
            self.process.wait(timeout=30)


def _bucket(s3_endpoint: str) -> str:
    import boto3

    name = f"mlflow-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def mlflow_server(s3_endpoint, tmp_path_factory):
    """A real MLflow tracking server for the session; yields (uri, artifact bucket)."""
    bucket = _bucket(s3_endpoint)
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"), s3_endpoint, bucket)
    server.start()
    yield server.uri, bucket
    server.stop()


def _submit(tmp_path, spec: dict) -> tuple[int, Path]:
    path = tmp_path / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    code = main(["submit", str(path)])
    runs = list((Path(spec["storage"]["uri"]) / spec["name"]).glob("*/run.json"))
    return code, runs[0].parent if runs else None


def _records(run_dir: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in run_dir.glob("trials/*/record.json")}


def _children(client, parent):
    return client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")


def _parent(client, experiment: str, run_id: str):
    exp = client.get_experiment_by_name(experiment)
    (parent,) = client.search_runs([exp.experiment_id], filter_string=f"tags.role = 'study' and tags.run_id = '{run_id}'")
    return parent


def _check_trial_run(client, run, record: dict, predictions: str) -> None:
    """One child run against its record: params, per-epoch history with steps, final metrics, tags, files."""
    data = run.data
    config = record["config"]
    assert data.params["architecture"] == config["architecture"] and data.params["epochs"] == str(config["epochs"])
    assert data.params["node_type"] == "cpu" and data.params["batch_size"] == "16"
    for row in record["history"]:
        assert row["epoch"] >= 1
    loss = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in sorted(loss, key=lambda m: m.step)] == [r["epoch"] for r in record["history"]]
    assert [m.value for m in sorted(loss, key=lambda m: m.step)] == pytest.approx([r["loss"] for r in record["history"]])
    finals = {k: v for k, v in record["metrics"].items() if isinstance(v, float)}
    assert finals and all(data.metrics[f"test_{k}"] == pytest.approx(v, rel=1e-12) for k, v in finals.items())
    assert data.tags["trial_id"] == record["trial_id"] and data.tags["status"] == "completed"
    assert data.tags["node_type"] == "cpu" and data.tags["device_used"].startswith("cpu")
    assert data.tags["simulated"] == "false" and data.tags["experiment"] == config["experiment"]
    assert run.info.status == "FINISHED"
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"predictions.csv", "confusion_matrix.png", "learning_curve.png"} <= names
    local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="predictions.csv",
                                                tracking_uri=client.tracking_uri)
    assert Path(local).read_text() == predictions


@pytest.mark.slow
def test_every_trial_is_an_mlflow_run_under_the_study_run(tmp_path, ray_session, mlflow_server, s3_endpoint, capsys,
                                                          monkeypatch):
    import boto3
    from mlflow import MlflowClient

    uri, bucket = mlflow_server
    token = f"tok-{uuid.uuid4().hex}"  # MLflow's standard credential variable: used, never written anywhere
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
    experiment = f"tracked-{uuid.uuid4().hex[:6]}"
    spec = tiny_spec_dict(name="tracked", store=str(tmp_path / "store"),
                          grid={"architectures": ["cnn"], "epochs": [1, 2], "node_types": ["cpu"]},
                          tracking={"mlflow": {"uri": uri, "experiment": experiment}})
    code, run_dir = _submit(tmp_path, spec)
    assert code == 0, capsys.readouterr().err
    client = MlflowClient(uri)
    parent = _parent(client, experiment, run_dir.name)
    assert parent.info.status == "FINISHED" and parent.data.tags["experiment"] == "tracked"
    assert "report/index.html" in {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    # the study run carries the summary: counts, and per node type the best setting's scores and cost
    summary = json.loads((run_dir / "report" / "summary.json").read_text())["summary_by_node_type"]
    assert parent.data.metrics["trials_completed"] == 2
    assert parent.data.metrics["cpu_best_validation"] == pytest.approx(summary[0]["validation"])
    assert parent.data.metrics["cpu_best_test_accuracy"] == pytest.approx(summary[0]["test_accuracy"])
    assert parent.data.metrics["cost_usd_total"] > 0
    # the best model by validation, kept in the store, is an MLflow logged model sourced from its trial's run
    best = json.loads((run_dir / "models.json").read_text())["best"]["trial_id"]
    (logged,) = client.search_logged_models([parent.info.experiment_id])
    assert str(logged.status).endswith("READY")
    assert logged.tags["trial_id"] == best and parent.data.tags["best_model_id"] == logged.model_id
    assert logged.source_run_id == _records(run_dir)[best]["tracking"]["mlflow_run_id"]
    files = mlflow.artifacts.download_artifacts(artifact_uri=logged.artifact_location, tracking_uri=uri,
                                                dst_path=str(tmp_path / "logged"))
    assert {"model.keras", "model.json"} <= {p.name for p in Path(files).iterdir()}

    records = _records(run_dir)
    children = {r.data.tags["trial_id"]: r for r in _children(client, parent)}
    assert set(children) == set(records) and len(children) == 2
    for trial_id, record in records.items():
        assert record["tracking"]["mlflow"] == "complete" and record["tracking"]["mlflow_run_id"] == \
            children[trial_id].info.run_id
        _check_trial_run(client, children[trial_id], record,
                         (run_dir / "trials" / trial_id / "predictions.csv").read_text())
    run_info = json.loads((run_dir / "run.json").read_text())
    assert run_info["tracking"]["complete"] is True and run_info["tracking"]["mlflow"]["trials_incomplete"] == 0
    assert run_info["tracking"]["mlflow"]["parent_run_id"] == parent.info.run_id
    assert not [p for p in run_dir.rglob("*") if p.is_file() and token.encode() in p.read_bytes()]
    assert token not in json.dumps([r.data.to_dictionary() for r in [parent, *children.values()]])
    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(
        Bucket=bucket, Prefix="mlflow/").get("Contents", [])]
    assert any(k.endswith("/predictions.csv") for k in keys)  # artifacts really went to the S3 artifact root

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for trial_id, record in records.items():
        events = EventAccumulator(str(run_dir / "tensorboard" / trial_id))
        events.Reload()
        loss = events.Scalars("loss")
        assert [e.step for e in loss] == [r["epoch"] for r in record["history"]]
        assert [e.value for e in loss] == pytest.approx([r["loss"] for r in record["history"]], rel=1e-6)
        assert events.Scalars("test_accuracy")[-1].value == pytest.approx(record["metrics"]["accuracy"], rel=1e-6)
        assert events.PluginTagToContent("hparams")  # the HParams view has this trial
    child = next(iter(children.values()))
    assert "test_isic_balanced_multiclass_accuracy" in child.data.metrics and "cost_usd" in child.data.metrics


@pytest.mark.slow
def test_a_tracking_outage_mid_study_fails_no_trial_and_the_run_can_be_published_later(
        tmp_path, ray_session, s3_endpoint, mlflow_server, capsys):
    from mlflow import MlflowClient

    server = MlflowServer(tmp_path, s3_endpoint, _bucket(s3_endpoint))
    uri = server.start()
    spec = tiny_spec_dict(name="outage", store=str(tmp_path / "store"),
                          grid={"architectures": ["cnn"], "epochs": [1], "node_types": ["cpu"], "repeats": 2},
                          tracking={"mlflow": {"uri": uri, "request_timeout_s": 5, "request_retries": 0}})

    def stop_once_the_study_run_exists():  # the outage starts after the submit-time check, before any trial ends
        client = MlflowClient(uri)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            exp = client.get_experiment_by_name("outage")
            if exp and client.search_runs([exp.experiment_id], filter_string="tags.role = 'study'"):
                break
            time.sleep(0.1)
        server.stop()

    stopper = threading.Thread(target=stop_once_the_study_run_exists)
    stopper.start()
    try:
        code, run_dir = _submit(tmp_path, spec)
    finally:
        stopper.join()
        server.stop()
    printed = capsys.readouterr()
    assert code == 0, printed.err
    records = _records(run_dir)
    assert len(records) == 2 and all(r["status"] == "completed" for r in records.values())
    run_info = json.loads((run_dir / "run.json").read_text())
    assert run_info["tracking"]["complete"] is False
    assert run_info["tracking"]["mlflow"]["trials_incomplete"] == 2
    assert "TRACKING INCOMPLETE" in (run_dir / "report" / "report.md").read_text()
    assert "MLflow" in printed.err

    published_uri, _ = mlflow_server  # the run published after the fact, complete
    assert main(["report", f"outage/{run_dir.name}", "--store", str(tmp_path / "store"), "--to-mlflow",
                 published_uri]) == 0
    client = MlflowClient(published_uri)
    parent = _parent(client, "outage", run_dir.name)
    children = {r.data.tags["trial_id"]: r for r in _children(client, parent)}
    assert set(children) == set(records)
    for trial_id, record in records.items():
        _check_trial_run(client, children[trial_id], record,
                         (run_dir / "trials" / trial_id / "predictions.csv").read_text())


def test_an_unreachable_tracking_server_refuses_the_study_before_anything_starts(tmp_path, capsys):
    store = tmp_path / "store"
    spec = tiny_spec_dict(name="unreachable", store=str(store),
                          tracking={"mlflow": {"uri": f"http://127.0.0.1:{_free_port()}", "request_retries": 0,
                                               "request_timeout_s": 2}})
    code, run_dir = _submit(tmp_path, spec)
    err = capsys.readouterr().err
    assert code == 2 and run_dir is None and not store.exists()
    assert "tracking.mlflow.uri" in err and "unreachable" in err and len(err.strip().splitlines()) == 1


def test_the_standard_tracking_uri_variable_is_used_when_the_spec_names_none(tmp_path, capsys, monkeypatch):
    dead = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dead)
    spec = tiny_spec_dict(name="from-env", store=str(tmp_path / "store"), tracking={"mlflow": {"request_retries": 0}})
    code, _ = _submit(tmp_path, spec)
    assert code == 2 and dead in capsys.readouterr().err
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    code, _ = _submit(tmp_path, spec)
    assert code == 2 and "MLFLOW_TRACKING_URI is empty" in capsys.readouterr().err


def test_credentials_in_a_tracking_uri_are_refused(tmp_path, capsys):
    spec = tiny_spec_dict(name="creds", store=str(tmp_path / "store"),
                          tracking={"mlflow": {"uri": "https://alice:s3cret@mlflow.example"}})
    code, _ = _submit(tmp_path, spec)
    err = capsys.readouterr().err
    assert code == 2 and "MLFLOW_TRACKING_PASSWORD" in err and "s3cret" not in err
    assert main(["report", "x/y", "--store", str(tmp_path), "--to-mlflow", "https://bob:pw@mlflow.example"]) == 2
    assert "pw@" not in capsys.readouterr().err


_READ_S3_EVENTS = """
import json, sys
sys.modules["tensorflow"] = None  # TensorBoard's own S3 reader is used where TensorFlow is not installed
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2
events = EventAccumulator(sys.argv[1])
events.Reload()
hparams = {}
for tag, raw in events.PluginTagToContent("hparams").items():
    data = plugin_data_pb2.HParamsPluginData.FromString(raw)
    if data.HasField("session_start_info"):
        for name, value in data.session_start_info.hparams.items():
            hparams[name] = value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind"))
    if data.HasField("experiment"):
        hparams["_metrics"] = sorted(m.name.tag for m in data.experiment.metric_infos)
out = {tag: [[e.step, e.value] for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
print(json.dumps({"scalars": out, "hparams": hparams}))
"""


def test_tensorboard_event_files_reach_an_s3_store_and_tensorboard_reads_them_there(s3_endpoint, s3_bucket):
    from orchestrator.tracking.trial import TrialTracking

    context = {"run_root": "tb/run1", "experiment": "tb", "run_id": "run1", "tensorboard": True}
    settings = {"uri": f"s3://{s3_bucket}/store", "endpoint_url": s3_endpoint, "region": None}
    config = {"trial_id": "t1", "architecture": "cnn", "epochs": 2, "node_type": "cpu", "price_per_hour": 0.36,
              "training": {"learning_rate": 0.001, "optimizer": "adam"}}
    tracking = TrialTracking(context, config, settings)
    history = [{"epoch": 1, "loss": 1.5, "val_accuracy": 0.25}, {"epoch": 2, "loss": 0.75, "val_accuracy": 0.5}]
    for row in history:
        tracking.epoch(row)
    status = tracking.finish({"trial_id": "t1", "status": "completed", "history": history, "config": config,
                              "timings": {"total_s": 100.0},
                              "metrics": {"accuracy": 0.625, "per_class": {},
                                          "isic": {"balanced_multiclass_accuracy": 0.5, "macro": {"auc": 0.75}}}})
    assert status == {"tensorboard": "complete"}

    read = subprocess.run([sys.executable, "-c", _READ_S3_EVENTS, f"s3://{s3_bucket}/store/tb/run1/tensorboard/t1"],
                          env=dict(os.environ, S3_ENDPOINT=s3_endpoint), capture_output=True, text=True, timeout=120)
    assert read.returncode == 0, read.stderr[-2000:]
    read_back = json.loads(read.stdout.strip().splitlines()[-1])
    scalars, hparams = read_back["scalars"], read_back["hparams"]
    assert scalars["loss"] == [[1, 1.5], [2, 0.75]] and scalars["val_accuracy"] == [[1, 0.25], [2, 0.5]]
    assert scalars["test_accuracy"] == [[2, 0.625]] and scalars["test_isic_auc_macro"] == [[2, 0.75]]
    assert scalars["cost_usd"] == [[2, pytest.approx(0.01)]]
    # TensorBoard's HParams view: the trial's settings (numbers as numbers) and the metrics it compares
    assert hparams["architecture"] == "cnn" and hparams["learning_rate"] == pytest.approx(0.001)
    assert hparams["epochs"] == 2 and hparams["optimizer"] == "adam"
    assert {"test_accuracy", "cost_usd", "val_accuracy"} <= set(hparams["_metrics"])


def test_a_store_that_cannot_take_event_files_marks_tensorboard_incomplete_without_failing(tmp_path):
    from orchestrator.tracking.trial import TrialTracking

    blocked = tmp_path / "store"
    blocked.write_text("a file where the store's directory should be")
    context = {"run_root": "tb/run1", "experiment": "tb", "run_id": "run1", "tensorboard": True}
    tracking = TrialTracking(context, {"trial_id": "t1"}, {"uri": str(blocked), "endpoint_url": None, "region": None})
    tracking.epoch({"epoch": 1, "loss": 1.0})
    status = tracking.finish({"trial_id": "t1", "status": "completed", "history": [{"epoch": 1, "loss": 1.0}]})
    assert status["tensorboard"] == "incomplete" and status["tensorboard_error"]
