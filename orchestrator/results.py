"""What a run leaves, studies and searches alike: ``StudyResult`` and ``SearchResult`` share ``RunResult``
(records, status counts, report, ``dataframe()``, ``best()``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from orchestrator.run_store import RunPaths
    from workers.records import TrialRecord
    from workers.storage import Store


@dataclass
class RunResult:
    """A finished (or resumed) run: its records, status counts and report."""

    paths: "RunPaths"
    store: "Store"
    records: list["TrialRecord"]
    counts: dict[str, int] = field(default_factory=dict)
    report_url: str | None = None

    @property
    def run_id(self) -> str:
        return self.paths.run_id

    @property
    def experiment(self) -> str:
        return self.paths.experiment

    @property
    def num_failed(self) -> int:
        return self.counts.get("failed", 0)

    def dataframe(self) -> "pd.DataFrame":
        """One row per trial: settings, status, metrics, timings, device (the report's results table)."""
        from orchestrator.report.tables import trial_table

        return trial_table([r.to_dict() for r in self.records])

    def best(self, metric: str = "f1_macro", mode: str = "max") -> "TrialRecord | None":
        """The completed trial with the best test ``metric`` (None if no completed trial has it)."""
        scored = [r for r in self.records if r.completed and isinstance(r.metrics.get(metric), (int, float))]
        if not scored:
            return None
        pick = max if mode == "max" else min
        return pick(scored, key=lambda r: r.metrics[metric])


@dataclass
class StudyResult(RunResult):
    """A study run (``Study.run``)."""

    store_problem: str | None = None  # set when a remote store went down and results were kept locally
    unfinished: list[str] = field(default_factory=list)  # trials an interruption left for ``Study.resume``


@dataclass
class SearchResult(RunResult):
    """A search run (``Search.run``): ``best_trial`` is the report's ``best.json`` (the trial chosen by the search's
    validation metric: trial id, metric, value, hyperparameters); ``best()`` without a metric is its record;
    ``front`` a multi-objective search's ``front.json``."""

    best_trial: dict | None = None
    interrupted: bool = False
    study: Any = None  # the best configuration's (or the Pareto front's) study (``Search.study_best``)
    study_report_url: str | None = None
    front: list[dict] = field(default_factory=list)  # Pareto front of a multi-objective search (``front.json``)

    def best(self, metric: str | None = None, mode: str = "max") -> "TrialRecord | None":
        if metric is not None:
            return super().best(metric, mode)
        chosen = (self.best_trial or {}).get("trial_id")
        return next((r for r in self.records if r.trial_id == chosen), None)
