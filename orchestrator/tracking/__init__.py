"""Where researchers already look: MLflow runs (optional extra) and TensorBoard event files per trial.

Driver side (``study``): ``open_study_tracking(spec, paths)`` checks the server before anything starts,
``StudyTracking.start`` / ``trial_context`` / ``summary`` hold the study's parent run and count what trials could
not log, ``attach_report`` puts the report on the parent run, ``publish_to_mlflow`` publishes a stored run later.
In-trial side (``trial``): ``TrialTracking`` logs one trial from its own process.
"""
from orchestrator.tracking.study import (StudyTracking, TrackingError, attach_report, mlflow_client,
                                         open_study_tracking, publish_to_mlflow)
from orchestrator.tracking.trial import TrialTracking

__all__ = ["StudyTracking", "TrackingError", "TrialTracking", "attach_report", "mlflow_client", "open_study_tracking",
           "publish_to_mlflow"]
