"""The trial of the overhead benchmark: a fixed sleep under the product's reporting contract, so only orchestration
is measured (handed to ``Study(trainable=...)`` / ``Search(trainable=...)``)."""
from __future__ import annotations

import os
import time

import cloudpickle

from orchestrator.execution.trainable import TrialTask, report_trial_record
from workers.records import Timings, TrialRecord, TrialStatus

cloudpickle.register_pickle_by_value(__import__(__name__, fromlist=["_"]))  # workers need not import benchmarks/


def sleep_trainable(task: TrialTask) -> None:
    """Sleeps ``models.<arch>.params.seconds`` (default 1 s) and completes with its record, whose timings hold
    the sleep's wall-clock start and end (``started``, ``ended``: the benchmark's timeline)."""
    started = time.time()
    time.sleep(float(task.trial.model.params.get("seconds", 1.0)))
    report_trial_record(TrialRecord(trial_id=task.trial_id, config=task.trial.to_dict(),
                                    status=TrialStatus.COMPLETED, pid=os.getpid(),
                                    timings=Timings(started=started, ended=time.time())))
