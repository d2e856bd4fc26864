"""Tracking from inside a trial's own process, so trials on remote nodes log directly (Ray issue #36257).

MLflow goes through Ray Tune's integration (``ray.air.integrations.mlflow.setup_mlflow``); TensorBoard event
files are written locally with tensorboardX and uploaded through the store layer after every epoch. Neither
ever fails a trial: a sink's first error is kept, that sink stops for the trial, and the record says so.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from orchestrator.tracking import content
from workers.error_text import last_line

log = logging.getLogger(__name__)
STATE_FILE = "tracking.json"  # beside a Tune checkpoint: the trial's MLflow run id, so a retry continues it
COMPLETE, INCOMPLETE = "complete", "incomplete"
# Final metrics beside the hparams (the columns of TensorBoard's HParams table; validation metrics are added)
HPARAM_METRICS = ("test_accuracy", "test_f1_macro", "test_balanced_accuracy", "test_isic_balanced_multiclass_accuracy",
                  "time_total_s", "cost_usd")


@dataclass(frozen=True)
class TrialTrackingContext:
    """What the driver hands every trial (plain data, never credentials)."""

    run_root: str
    experiment: str
    run_id: str
    tensorboard: bool = True
    mlflow_uri: str | None = None
    mlflow_experiment_id: str | None = None
    parent_run_id: str | None = None
    request_timeout_s: float = 10
    request_retries: int = 2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrialTrackingContext":
        return cls(**data)


def apply_http_settings(timeout_s: float, retries: int) -> None:
    """Bound how long one MLflow request may block (MLflow's own environment settings)."""
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(int(max(1, timeout_s)))
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(int(retries))


class _Sink:
    """Calls into one tracking backend; after its first failure later calls are skipped."""

    def __init__(self, name: str):
        self.name, self.error = name, None

    def call(self, fn: Callable, *args, **kwargs):
        if self.error is not None:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # a tracking outage must never fail the trial
            self.error = f"{type(err).__name__}: {last_line(err)}"[:300]
            log.warning("%s tracking stopped for this trial: %s", self.name, self.error)
            return None

    def status(self) -> dict[str, Any]:
        return {self.name: INCOMPLETE if self.error else COMPLETE} | ({f"{self.name}_error": self.error}
                                                                    if self.error else {})


class MlflowTrialLog:
    """One trial as one MLflow run (a child of the study's run), continued across retries."""

    def __init__(self, ctx: TrialTrackingContext, config: dict, resume_run_id: str | None = None):
        self.ctx, self.config, self.sink = ctx, config, _Sink("mlflow")
        self.mlflow, self.run_id = None, resume_run_id

    def start(self) -> None:
        self.mlflow = self.sink.call(self._start)
        if self.mlflow is not None:
            self.run_id = self.sink.call(lambda: self.mlflow.active_run().info.run_id)

    def _start(self):
        from ray.air.integrations.mlflow import setup_mlflow

        apply_http_settings(self.ctx.request_timeout_s, self.ctx.request_retries)
        if self.run_id:
            os.environ["MLFLOW_RUN_ID"] = self.run_id  # mlflow.start_run continues this run
        try:
            return setup_mlflow(
                content.trial_params(self.config), tracking_uri=self.ctx.mlflow_uri,
                experiment_id=self.ctx.mlflow_experiment_id, run_name=self.config["trial_id"],
                tags=content.trial_start_tags(self.config, self.ctx.experiment, self.ctx.run_id,
                                              self.ctx.parent_run_id))
        finally:
            os.environ.pop("MLFLOW_RUN_ID", None)

    def epoch(self, row: dict) -> None:
        if self.mlflow is not None:
            step, metrics = content.epoch_metrics(row)
            self.sink.call(self.mlflow.log_metrics, metrics, step=step)

    def finish(self, record: dict, predictions_csv: str | None = None) -> None:
        if self.mlflow is None:
            return
        self.sink.call(self.mlflow.log_metrics, content.final_metrics(record))
        self.sink.call(self.mlflow.set_tags, content.trial_tags(record))
        self.sink.call(self._log_files, content.trial_artifacts(record, predictions_csv))
        self.end("FINISHED" if record.get("status") == "completed" else "FAILED")

    def _log_files(self, files: dict[str, bytes]) -> None:
        with tempfile.TemporaryDirectory(prefix="mlflow-artifacts-") as tmp:
            for name, data in files.items():
                Path(tmp, name).write_bytes(data)
            self.mlflow.log_artifacts(tmp)

    def end(self, status: str, error: str | None = None) -> None:
        if self.mlflow is None:
            return
        if error:
            self.sink.call(self.mlflow.set_tags, {"status": "failed", "error": error[:500]})
        self.sink.call(self.mlflow.end_run, status)
        if self.sink.error:  # leave no half-open active run behind for the next trial of a reused actor
            try:
                self.mlflow.end_run(status)
            except Exception:
                pass

    def status(self) -> dict[str, Any]:
        return self.sink.status() | {"mlflow_run_id": self.run_id}


class TensorBoardTrialLog:
    """Per-epoch scalars in TensorBoard event files under ``<run>/tensorboard/<trial_id>/`` in the store.

    Written with tensorboardX's synchronous ``EventsWriter`` (its ``SummaryWriter`` queues events on a thread,
    so a flush does not guarantee they are on disk before the upload)."""

    def __init__(self, ctx: TrialTrackingContext, trial_id: str, store_settings: dict):
        self.sink = _Sink("tensorboard")
        self.prefix = f"{ctx.run_root}/tensorboard/{trial_id}"
        self.local_dir = tempfile.mkdtemp(prefix="tensorboard-")
        self.store_settings = store_settings
        self.writer = self.sink.call(self._open_writer)

    def _open_writer(self):
        from tensorboardX.event_file_writer import EventsWriter

        return EventsWriter(os.path.join(self.local_dir, "events"), filename_suffix=f".{os.getpid()}")

    def _scalars(self, step: int, metrics: dict[str, float]) -> None:
        import time

        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.summary import scalar

        for name, value in metrics.items():
            self.writer.write_event(Event(wall_time=time.time(), step=step, summary=scalar(name, value)))
        self.writer.flush()

    def epoch(self, row: dict) -> None:
        if self.writer is not None:
            self.sink.call(self._scalars, *content.epoch_metrics(row))
            self._upload()

    def _hparams(self, record: dict, final: dict[str, float]) -> None:
        """The trial's settings and final metrics for TensorBoard's HParams view (tensorboardX's hparams)."""
        import time

        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.summary import hparams

        metrics = {k: v for k, v in final.items() if k in HPARAM_METRICS}
        last = (record.get("history") or [{}])[-1]
        metrics.update({k: float(v) for k, v in last.items() if k.startswith("val_") and content._number(v) is not None})
        for summary in hparams(content.hparams(record.get("config") or {"trial_id": "?"}), metrics):
            self.writer.write_event(Event(wall_time=time.time(), summary=summary))
        self.writer.flush()

    def finish(self, record: dict) -> None:
        if self.writer is not None:
            final = {k: v for k, v in content.final_metrics(record).items() if k.startswith(("test_", "cost_"))}
            self.sink.call(self._scalars, len(record.get("history") or []), final)
            if record.get("config") and record.get("status") == "completed":
                self.sink.call(self._hparams, record, final)
            self._upload()
            self.sink.call(self.writer.close)
        shutil.rmtree(self.local_dir, ignore_errors=True)

    def status(self) -> dict[str, Any]:
        return self.sink.status()

    def _upload(self) -> None:
        from workers.storage import open_store

        def upload():
            store = open_store(**self.store_settings)
            for path in Path(self.local_dir).iterdir():
                store.put_bytes(f"{self.prefix}/{path.name}", path.read_bytes(), "application/octet-stream")

        self.sink.call(upload)


class TrialTracking:
    """Every tracking sink of one trial: ``epoch(row)`` after each epoch, ``save_state(dir)`` beside each
    checkpoint, then ``finish(record)`` (returns the record's ``tracking`` status) or ``fail(error)``."""

    def __init__(self, context: dict | None, config: dict, store_settings: dict, resume_dir: str | None = None):
        ctx = TrialTrackingContext.from_dict(context) if context else None
        resume_run_id = _saved_run_id(resume_dir)
        self.mlflow = MlflowTrialLog(ctx, config, resume_run_id) if ctx and ctx.mlflow_uri else None
        self.tensorboard = TensorBoardTrialLog(ctx, config["trial_id"], store_settings) \
            if ctx and ctx.tensorboard else None
        if self.mlflow:
            self.mlflow.start()

    def _sinks(self) -> list:
        return [s for s in (self.mlflow, self.tensorboard) if s is not None]

    def epoch(self, row: dict) -> None:
        for sink in self._sinks():
            sink.epoch(row)

    def save_state(self, checkpoint_dir: str) -> None:
        if self.mlflow and self.mlflow.run_id:
            Path(checkpoint_dir, STATE_FILE).write_text(json.dumps({"mlflow_run_id": self.mlflow.run_id}))

    def finish(self, record: dict, predictions_csv: str | None = None) -> dict[str, Any] | None:
        """Log the finished trial (its record as plain data); returns what each sink managed, None without sinks."""
        if self.mlflow:
            self.mlflow.finish(record, predictions_csv)
        if self.tensorboard:
            self.tensorboard.finish(record)
        status: dict[str, Any] = {}
        for sink in self._sinks():
            status.update(sink.status())
        return status or None

    def fail(self, error: str) -> None:
        if self.mlflow:
            self.mlflow.end("FAILED", error)
        if self.tensorboard:
            self.tensorboard.finish({})


def _saved_run_id(resume_dir: str | None) -> str | None:
    path = Path(resume_dir, STATE_FILE) if resume_dir else None
    if path is None or not path.exists():
        return None
    return json.loads(path.read_text()).get("mlflow_run_id")
