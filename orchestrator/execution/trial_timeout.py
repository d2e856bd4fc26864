"""``execution.trial_timeout_s``: a trial still running that long after it started is stopped and recorded.

Tune's stoppers see a trial only when it reports, so a trial stuck inside an epoch would never be stopped by
one. Tune asks its scheduler which trial to run on every step of the experiment loop and hands it the
controller, whose ``stop_trial`` ends a running trial; ``TimeoutScheduler`` is Tune's FIFO scheduler that, on
each of those calls, stops the running trials that are over time, after writing their ``failed`` record (the
error says it timed out and after how long) through the study's recorder.
"""
from __future__ import annotations

import time
from typing import Callable

from ray.tune.schedulers import FIFOScheduler


class TrialTimeout:
    """Mixin for a Tune scheduler: a trial RUNNING for more than ``timeout_s`` (one attempt, measured on the
    driver from when Tune first shows it running) is recorded failed with a "timed out" error and stopped.
    Everything else is the scheduler it is mixed into (FIFO for studies, ASHA for searches)."""

    def __init__(self, *args, timeout_s: float, write_failed: Callable[[object, str], None], **kwargs):
        super().__init__(*args, **kwargs)
        self.timeout_s, self.write_failed = timeout_s, write_failed
        self.running_since: dict[str, float] = {}
        self.timed_out: set[str] = set()

    def choose_trial_to_run(self, tune_controller):
        now = time.monotonic()
        for trial in tune_controller.get_trials():
            if trial.status != "RUNNING":
                self.running_since.pop(trial.trial_id, None)
                continue
            since = self.running_since.setdefault(trial.trial_id, now)
            if now - since > self.timeout_s and trial.trial_id not in self.timed_out:
                self.timed_out.add(trial.trial_id)
                self.write_failed(trial, f"timed out: still running {now - since:.0f} s after it "
                                  f"started (execution.trial_timeout_s: {self.timeout_s:g})")
                tune_controller.stop_trial(trial)
        return super().choose_trial_to_run(tune_controller)


class TimeoutScheduler(TrialTimeout, FIFOScheduler):
    """Tune's FIFO scheduler with ``execution.trial_timeout_s`` (studies)."""
