"""Stand-ins for the Tune ``Trial`` objects the coordinator's callbacks are given, their configs made by the run
engine (the one writer and reader of a trial config's keys)."""
from __future__ import annotations

from types import SimpleNamespace

from orchestrator.execution import engine
from orchestrator.execution.trainable import TrialTask
from workers.config import TrialConfig


class FakeTrial(SimpleNamespace):
    """A Tune trial: ``trial_id``, ``config`` and whatever else a test sets (``status``, ...); equal only to
    itself, as Tune's trials are."""

    __eq__ = object.__eq__
    __hash__ = object.__hash__


def study_trial(trial: TrialConfig, tune_trial_id: str, **attrs) -> FakeTrial:
    """The Tune trial of a study's ``trial`` as the engine configures it."""
    return FakeTrial(trial_id=tune_trial_id, config=engine.study_config(TrialTask(trial, {})), **attrs)
