"""Trainables handed to ``Study(..., trainable=...)`` by tests and benchmarks.

They follow the product's reporting contract (``orchestrator.execution.trainable``): per-epoch results with a
checkpoint, then ``report_trial_record``. Ray workers import this module by value (cloudpickle), so it needs
not be importable on the worker.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import cloudpickle

from orchestrator.execution.trainable import TrialTask, report_trial_record, trial_trainable
from workers.records import TrialRecord, TrialStatus

cloudpickle.register_pickle_by_value(__import__(__name__, fromlist=["_"]))


def crash_once_after_first_epoch(marker_dir: str):
    """The real trainable, except that each trial's first attempt dies right after its first checkpoint (a worker
    process killed mid-trial). ``marker_dir`` remembers which trials already crashed."""

    def trainable(task: TrialTask) -> None:
        from ray import tune

        marker = Path(marker_dir) / f"crashed-{task.trial_id}"
        report = tune.report

        def report_then_crash(metrics, *args, **kwargs):
            report(metrics, *args, **kwargs)
            if metrics.get("epoch") == 1 and not marker.exists():
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.touch()
                os._exit(1)

        tune.report = report_then_crash
        try:
            trial_trainable(task)
        finally:
            tune.report = report

    return trainable


def slow_epochs_trainable(task: TrialTask) -> None:
    """``models.<arch>.params.seconds`` per epoch (default 3 s) of sleeping instead of training, with the product's
    per-epoch checkpoints: a trial whose worker or node is lost resumes after its last finished epoch. The record's
    history holds each epoch once, with the pid and node that ran it (a recomputed epoch would show twice)."""
    import json
    import tempfile

    import ray
    from ray import tune

    seconds = float(task.trial.model.params.get("seconds", 3.0))
    history: list[dict] = []
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            history = json.loads((Path(folder) / "history.json").read_text())
    node_id = ray.get_runtime_context().get_node_id()
    for epoch in range(len(history) + 1, task.trial.epochs + 1):
        time.sleep(seconds)
        history.append({"epoch": epoch, "pid": os.getpid(), "node": node_id})
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "history.json").write_text(json.dumps(history))
            tune.report({"epoch": epoch}, checkpoint=tune.Checkpoint.from_directory(tmp))
    report_trial_record(TrialRecord(trial_id=task.trial.trial_id, config=task.trial.to_dict(),
                                    status=TrialStatus.COMPLETED, history=history, pid=os.getpid(), node_id=node_id,
                                    resumed_from_checkpoint=checkpoint is not None))


def store_refuses_trial_of(architecture: str, run_id: str):
    """``benchmarks.sleep_trainable``, except that a trial of ``architecture`` first makes the run's store unable to
    take its record (a file where its folder must go), as a disk that filled up or turned read-only would."""
    from benchmarks.sleep_trainable import sleep_trainable

    def trainable(task: TrialTask) -> None:
        if task.trial.architecture == architecture:
            folder = Path(task.store["uri"]) / task.trial.experiment / run_id / "trials"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / task.trial.trial_id).write_text("not a folder")
        sleep_trainable(task)

    return trainable


def counting_pending_placement_groups(out_dir: str):
    """A trial that, before completing, writes how many placement groups the cluster holds pending (requested,
    not yet placed: trials Tune keeps waiting for a slot) to ``out_dir/<trial_id>``."""

    def trainable(task: TrialTask) -> None:
        from ray.util import placement_group_table

        pending = sum(1 for pg in placement_group_table().values() if pg["state"] == "PENDING")
        Path(out_dir, task.trial_id).write_text(str(pending))
        time.sleep(0.3)
        report_trial_record(TrialRecord(trial_id=task.trial_id, config=task.trial.to_dict(),
                                        status=TrialStatus.COMPLETED, pid=os.getpid()))

    return trainable
