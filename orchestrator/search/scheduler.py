"""The search's trial scheduler: ASHA that lets a trial finish its last epoch (with ``execution.trial_timeout_s``:
also stopping trials over time)."""
from __future__ import annotations

from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from orchestrator.execution.trial_timeout import TrialTimeout


class FinishingASHAScheduler(ASHAScheduler):
    """ASHA that never stops a trial on its last epoch: the trial then evaluates on the test split and
    reports its record (a plain ASHA with a rung at ``max_t`` would kill it just before that)."""

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if result.get(self._time_attr, 0) >= self._max_t:
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)


class TimeoutASHAScheduler(TrialTimeout, FinishingASHAScheduler):
    """``FinishingASHAScheduler`` that also stops and records trials over ``execution.trial_timeout_s``."""
