"""The record of one trial: one schema, written by whoever ends the trial and read by the report.

A record is stored as ``record.json`` beside ``predictions.csv`` and ``history.csv``. Every record has a
``status`` and, unless it completed cleanly, one ``error`` line saying why.
"""
from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class TrialStatus(str, Enum):
    """How a trial ended."""

    COMPLETED = "completed"            # trained, evaluated and timed
    FAILED = "failed"                  # every attempt raised; ``error`` holds the last one's message
    INFEASIBLE = "infeasible"          # no node of the cluster can ever run it; nothing was started
    MISCONFIGURED = "misconfigured"    # its node cannot give it the device it asked for; nothing was trained
    STOPPED_EARLY = "stopped_early"    # a search scheduler (ASHA) stopped it
    STOPPED_BUDGET = "stopped_budget"  # a search's time budget ran out while it ran
    NOT_RUN = "not_run"                # a search ended before it started
    INTERRUPTED = "interrupted"        # the run was interrupted; ``resume`` continues it


FINAL_STATUSES = frozenset(s.value for s in TrialStatus if s is not TrialStatus.INTERRUPTED)


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeviceInfo(BaseModel):
    """The device a trial asked for next to the one that really ran (backend-specific details allowed)."""

    model_config = ConfigDict(extra="allow")

    requested: str
    expected_kind: str | None = None
    used: dict[str, Any]
    backend: str
    simulated: str | None = None
    mismatch: bool = False
    host: str | None = None


class Timings(BaseModel):
    """Seconds spent per phase; throughput from steady-state epochs only (the first epoch holds compile time)."""

    model_config = ConfigDict(extra="allow")

    data_load_s: float | None = None
    prepare_s: float | None = None
    augment_s: float | None = None
    build_s: float | None = None
    fit_s: float | None = None
    eval_s: float | None = None
    first_epoch_s: float | None = None
    steady_epoch_s: float | None = None
    images_per_s: float | None = None
    throughput_includes_warmup: bool = False
    total_s: float | None = None


class SearchInfo(_Record):
    """What a search trial sampled and how far it got."""

    tune_trial_id: str
    hyperparameters: dict[str, Any]
    epochs_completed: int
    epochs_max: int
    metric: str
    last_result: dict[str, Any] = Field(default_factory=dict)
    resources: dict[str, float] = Field(default_factory=dict)  # what Tune asked Ray for (the sampled node type's)


class TrialRecord(_Record):
    """Everything stored about one trial."""

    trial_id: str
    config: dict[str, Any]
    status: TrialStatus
    error: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    history: list[dict[str, Any]] = Field(default_factory=list)
    timings: Timings | None = None
    device: DeviceInfo | None = None
    precision_policy: str | None = None
    class_names: list[str] = Field(default_factory=list)
    n_params: int | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    retries: int = 0
    resumed_from_checkpoint: bool = False
    node_id: str | None = None
    node_ip: str | None = None
    attempt_nodes: list[str] = Field(default_factory=list)  # Ray node id of every attempt, in order (retries)
    tune_trial_id: str | None = None
    trials_sharing_node: int | None = None  # most trials on its node at once, itself included (1: isolated)
    shared_with: list[str] = Field(default_factory=list)  # the trials that ran on its node while it ran
    pid: int | None = None
    search: SearchInfo | None = None
    tracking: dict[str, Any] | None = None  # per sink (mlflow, tensorboard): complete | incomplete, first error

    @property
    def completed(self) -> bool:
        return self.status is TrialStatus.COMPLETED

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data, as stored in ``record.json``."""
        return self.model_dump(mode="json")
