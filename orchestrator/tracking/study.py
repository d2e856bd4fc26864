"""Tracking on the driver: check the MLflow server before anything starts, hold the study's parent run, count
what the trials could not log, publish the report to the parent run, and publish a finished run after the fact.

Credentials come only from MLflow's standard environment variables (``MLFLOW_TRACKING_TOKEN``,
``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``, ...); nothing here writes them anywhere.
"""
from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.errors import BadInput
from orchestrator.run_store import RunPaths
from orchestrator.tracking import content
from orchestrator.tracking.trial import INCOMPLETE, TrialTrackingContext, apply_http_settings
from workers.error_text import last_line

log = logging.getLogger(__name__)
URI_ENV = "MLFLOW_TRACKING_URI"


class TrackingError(BadInput):
    """Tracking cannot start (server unreachable, extra not installed), phrased for the user in one line."""


def _one_line(err: Exception) -> str:
    return last_line(err, type(err).__name__, 300)


def mlflow_client(uri: str, field_name: str = "tracking.mlflow.uri"):
    """An ``MlflowClient`` for ``uri`` once the server answers; ``TrackingError`` otherwise."""
    try:
        from mlflow import MlflowClient
    except ImportError:
        raise TrackingError("tracking.mlflow: MLflow is not installed; pip install -e '.[mlflow]'") from None
    from urllib.parse import urlsplit

    if urlsplit(uri).username or urlsplit(uri).password:
        raise TrackingError(f"{field_name}: must not hold credentials; set MLFLOW_TRACKING_USERNAME and "
                            "MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) in the environment instead")
    from orchestrator.spec.schema import check_tracking_uri

    try:
        check_tracking_uri(uri)
    except ValueError as err:
        raise TrackingError(f"{field_name}: {err}") from None
    if "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ:  # MLflow's own defaults wait minutes for a dead server
        from orchestrator.tracking.trial import apply_http_settings

        apply_http_settings(10, 2)
    client = MlflowClient(tracking_uri=uri)
    try:
        client.search_experiments(max_results=1)
    except Exception as err:
        raise TrackingError(f"{field_name}: the MLflow tracking server {uri} is unreachable ({_one_line(err)}); "
                            "nothing was started") from None
    return client


def experiment_id(client, name: str) -> str:
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found else client.create_experiment(name)


def _study_run(client, exp_id: str, paths: RunPaths, params: dict[str, str]) -> str:
    """The study's parent run: the existing one of this run id (a resumed run), else a new one."""
    found = client.search_runs([exp_id], filter_string=f"tags.{content.ROLE_TAG} = '{content.STUDY_ROLE}' and "
                                                       f"tags.run_id = '{paths.run_id}'", max_results=1)
    if found:
        client.update_run(found[0].info.run_id, status="RUNNING")
        return found[0].info.run_id
    tags = {**content.run_tags(paths.experiment, paths.run_id), content.ROLE_TAG: content.STUDY_ROLE}
    run = client.create_run(exp_id, run_name=f"{paths.experiment}/{paths.run_id}", tags=tags)
    from mlflow.entities import Param

    client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()])
    return run.info.run_id


@dataclass
class StudyTracking:
    """The tracking of one study run. ``open_study_tracking`` checks it; ``start`` creates the parent run."""

    paths: RunPaths
    tensorboard: bool
    mlflow_uri: str | None = None
    mlflow_experiment: str | None = None
    request_timeout_s: float = 10
    request_retries: int = 2
    client: Any = None
    experiment_id: str | None = None
    parent_run_id: str | None = None
    errors: list[str] = field(default_factory=list)

    def start(self, params: dict[str, Any], store_uri: str, notify=print) -> None:
        """Create (or, for a resumed run, reopen) the parent run and say where to look; an outage here is
        counted, not raised."""
        if self.tensorboard:
            # The folder holding one sub-folder per trial: TensorBoard names each run by its trial id.
            notify(f"TensorBoard: tensorboard --logdir {store_uri.rstrip('/')}/{self.paths.root}/tensorboard")
        if self.client is None:
            return
        try:
            self.experiment_id = experiment_id(self.client, self.mlflow_experiment)
            self.parent_run_id = _study_run(self.client, self.experiment_id, self.paths,
                                            {k: str(v) for k, v in params.items()})
            notify(f"MLflow: run {self.parent_run_id} in experiment '{self.mlflow_experiment}' at {self.mlflow_uri}")
        except Exception as err:
            self.errors.append(f"study run: {_one_line(err)}")
            notify(f"MLflow: the study's run could not be created ({_one_line(err)}); trials run untracked")

    def trial_context(self) -> dict[str, Any]:
        """What every trial needs to log itself (plain data, no credentials)."""
        return TrialTrackingContext(
            run_root=self.paths.root, experiment=self.paths.experiment, run_id=self.paths.run_id,
            tensorboard=self.tensorboard, mlflow_uri=self.mlflow_uri if self.experiment_id else None,
            mlflow_experiment_id=self.experiment_id, parent_run_id=self.parent_run_id,
            request_timeout_s=self.request_timeout_s, request_retries=self.request_retries).to_dict()

    def summary(self, records: list) -> dict[str, Any]:
        """run.json's ``tracking``: where it went and how many trials could not log everything."""
        records = [r.to_dict() for r in records]
        out: dict[str, Any] = {}
        if self.tensorboard:
            out["tensorboard"] = {"logdir": self.paths.root, "trials_incomplete": _incomplete(records, "tensorboard")}
        if self.mlflow_uri:
            incomplete = _incomplete(records, "mlflow")
            out["mlflow"] = {"uri": self.mlflow_uri, "experiment": self.mlflow_experiment,
                             "experiment_id": self.experiment_id, "parent_run_id": self.parent_run_id,
                             "trials_logged": sum(1 for r in records if (r.get("tracking") or {}).get("mlflow")),
                             "trials_incomplete": incomplete, "errors": (self.errors + _trial_errors(records))[:5]}
        out["complete"] = not self.errors and not any(v.get("trials_incomplete") for v in out.values()
                                                      if isinstance(v, dict))
        return out


def _trial_errors(records: list[dict]) -> list[str]:
    return [f"trial {r['trial_id']}: {r['tracking']['mlflow_error']}" for r in records
            if (r.get("tracking") or {}).get("mlflow_error")]


def _incomplete(records: list[dict], sink: str) -> int:
    return sum(1 for r in records if (r.get("tracking") or {}).get(sink) == INCOMPLETE)


def open_study_tracking(spec, paths: RunPaths) -> StudyTracking:
    """The study's tracking, with the MLflow server checked reachable (``TrackingError`` if it is not)."""
    tracking = StudyTracking(paths=paths, tensorboard=spec.tracking.tensorboard)
    settings = spec.tracking.mlflow
    if settings is None:
        return tracking
    uri = settings.uri or os.environ.get(URI_ENV)
    if not uri:
        raise TrackingError(f"tracking.mlflow.uri: not set and {URI_ENV} is empty (give the tracking server, "
                            "e.g. http://mlflow.example:5000)")
    apply_http_settings(settings.request_timeout_s, settings.request_retries)
    tracking.client = mlflow_client(uri)
    tracking.mlflow_uri, tracking.mlflow_experiment = uri, settings.experiment or spec.name
    tracking.request_timeout_s, tracking.request_retries = settings.request_timeout_s, settings.request_retries
    return tracking


def _log_files(client, run_id: str, files: dict[str, bytes], artifact_path: str | None = None) -> None:
    with tempfile.TemporaryDirectory(prefix="mlflow-artifacts-") as tmp:
        for name, data in files.items():
            Path(tmp, name).parent.mkdir(parents=True, exist_ok=True)
            Path(tmp, name).write_bytes(data)
        client.log_artifacts(run_id, tmp, artifact_path)


def log_study_results(client, parent_run_id: str, store, paths: RunPaths) -> None:
    """The study run's summary metrics (``content.study_metrics`` of the report's summary.json) and the best
    kept model (``orchestrator.models``) as an MLflow logged model, sourced from its trial's run."""
    import json
    import time

    from mlflow.entities import Metric

    from orchestrator.models import kept_model_dir, read_models_index

    key = paths.report("summary.json")
    if store.exists(key):
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, 0) for k, v in content.study_metrics(json.loads(store.get_text(key))).items()]
        for i in range(0, len(metrics), 100):
            client.log_batch(parent_run_id, metrics=metrics[i:i + 100])
    best = read_models_index(store, paths).get("best")
    if not best:
        return
    from orchestrator.run_store import read_trial_record

    record = read_trial_record(store, paths, best["trial_id"])
    source = ((record.tracking or {}).get("mlflow_run_id") if record else None) or parent_run_id
    index = read_models_index(store, paths)
    with tempfile.TemporaryDirectory(prefix="mlflow-model-") as tmp:
        folder = kept_model_dir(store, paths, best["trial_id"], Path(tmp) / "model")
        experiment = client.get_run(parent_run_id).info.experiment_id
        model = client.create_logged_model(
            experiment, name=str((record.config if record else {}).get("architecture") or "model"),
            source_run_id=source, model_type="keras",
            tags={"trial_id": best["trial_id"], "run_id": paths.run_id, "experiment": paths.experiment,
                  "selected_by": f"validation {index.get('metric')} ({index.get('mode')})"},
            params={"trial_id": best["trial_id"], "validation_metric": str(index.get("metric")),
                    "validation_value": str(best.get("value"))})
        client.log_model_artifacts(model.model_id, str(folder))
        client.finalize_logged_model(model.model_id, "READY")
    client.set_tag(parent_run_id, "best_model_id", model.model_id)


def report_files(store, paths: RunPaths) -> dict[str, bytes]:
    prefix = paths.report("")
    return {key[len(prefix):]: store.get_bytes(key) for key in store.list(prefix)}


def log_report(store, paths: RunPaths, run_info: dict) -> str | None:
    """Attach the written report to the study's parent run and close it; returns a one-line problem or None."""
    settings = (run_info.get("tracking") or {}).get("mlflow") or {}
    if not settings.get("parent_run_id"):
        return None
    try:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=settings["uri"])
        _log_files(client, settings["parent_run_id"], report_files(store, paths), "report")
        log_study_results(client, settings["parent_run_id"], store, paths)
        failed = (run_info.get("counts") or {}).get("failed")
        client.set_terminated(settings["parent_run_id"], "FAILED" if failed else "FINISHED")
    except Exception as err:
        return f"MLflow: the report could not be attached to run {settings['parent_run_id']} ({_one_line(err)})"
    return None


def attach_report(store, paths: RunPaths, notify=print) -> str | None:
    """``log_report`` for a stored run whose report was just written. If MLflow cannot take it, say so, note it
    in run.json and rebuild the report (which then says tracking was incomplete); returns the rebuilt report's
    URL, or None when nothing changed."""
    import json

    from orchestrator.report import write_report

    if not store.exists(paths.run_info):
        return None
    run_info = json.loads(store.get_text(paths.run_info))
    problem = log_report(store, paths, run_info)
    if not problem:
        return None
    notify(f"warning: {problem}")
    tracking = run_info["tracking"]
    tracking["mlflow"]["errors"] = [*tracking["mlflow"].get("errors", []), problem][:5]
    tracking["complete"] = False
    store.put_text(paths.run_info, json.dumps(run_info, indent=1))
    return write_report(store, paths)


def _publish_trial(client, exp_id: str, parent_run_id: str, paths: RunPaths, store, record: dict) -> None:
    """One stored trial record as a finished child run: params, per-epoch metrics, final metrics, tags, files."""
    import time

    from mlflow.entities import Metric, Param, RunTag

    config = record.get("config") or {"trial_id": record["trial_id"]}
    tags = {**content.trial_start_tags(config, paths.experiment, paths.run_id, parent_run_id),
            **content.trial_tags(record)}
    run_id = client.create_run(exp_id, run_name=record["trial_id"], tags=tags).info.run_id
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, step) for step, row in map(content.epoch_metrics, record.get("history") or [])
               for k, v in row.items()]
    metrics += [Metric(k, v, now, 0) for k, v in content.final_metrics(record).items()]
    params = [Param(k, v) for k, v in content.trial_params(config).items()]
    for i in range(0, max(len(metrics), len(params), 1), 100):  # MLflow's log_batch limits
        client.log_batch(run_id, metrics=metrics[i:i + 100], params=params[i:i + 100],
                         tags=[RunTag(k, v) for k, v in tags.items()] if i == 0 else [])
    key = paths.trial(record["trial_id"], "predictions.csv")
    predictions = store.get_text(key) if store.exists(key) else None
    _log_files(client, run_id, content.trial_artifacts(record, predictions))
    client.set_terminated(run_id, "FINISHED" if record.get("status") == "completed" else "FAILED")


def publish_to_mlflow(store, paths: RunPaths, client, experiment: str | None = None) -> str:
    """Publish a finished run after the fact through ``client`` (see ``mlflow_client``): a parent run holding
    the report and one child run per trial that ran. Trials already logged in full from inside the study are
    kept; runs an outage left incomplete are replaced. Returns the parent run's id."""
    import json

    from orchestrator.run_store import read_trial_records

    run_info = json.loads(store.get_text(paths.run_info)) if store.exists(paths.run_info) else {}
    exp_id = experiment_id(client, experiment or paths.experiment)
    parent = _study_run(client, exp_id, paths, {"n_trials": str(run_info.get("n_trials", "")),
                                                "dataset": str(run_info.get("dataset_source", ""))})
    logged = {run.data.tags.get("trial_id"): run for run in client.search_runs(
        [exp_id], filter_string=f"tags.{content.PARENT_TAG} = '{parent}'", max_results=50000)}
    records = [r.to_dict() for r in read_trial_records(store, paths)]
    for record in records:
        if record.get("status") not in ("completed", "failed"):
            continue
        old = logged.get(record["trial_id"])
        if old is not None and old.info.status != "RUNNING" and (record.get("tracking") or {}).get("mlflow") == "complete":
            continue  # logged in full from inside the trial
        if old is not None:
            client.delete_run(old.info.run_id)  # an incomplete run is replaced by one from the stored record
        _publish_trial(client, exp_id, parent, paths, store, record)
    _log_files(client, parent, report_files(store, paths), "report")
    log_study_results(client, parent, store, paths)
    failed = any(r.get("status") == "failed" for r in records)
    client.set_terminated(parent, "FAILED" if failed else "FINISHED")
    return parent
