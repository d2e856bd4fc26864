"""``Search``: a Ray Tune hyperparameter search over an experiment file's ``search:`` block, as a library call.

    from orchestrator import Search
    result = Search.from_file("experiments/tune_cnn_lstm.yaml").run()
    result.best_trial      # {"trial_id", "metric", "value", "hyperparameters", ...}; result.best() is its record
    result.dataframe(); result.counts; result.report_url   # as for a StudyResult
    Search.from_file(path).resume(result.paths.run_id)   # continue a stopped search
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from orchestrator.results import SearchResult
from orchestrator.search.runner import SearchError

if TYPE_CHECKING:
    from orchestrator.execution.engine import Trainable
    from orchestrator.spec.schema import ExperimentSpec

__all__ = ["Search", "SearchError", "SearchPlanRow", "SearchResult"]


@dataclass(frozen=True)
class SearchPlanRow:
    """One setting of the space: its distribution, values and the Tune domain it becomes."""

    setting: str
    distribution: str
    values: list
    tune_domain: str


class Search:
    """A hyperparameter search of an experiment spec with a ``search:`` block."""

    def __init__(self, spec: "ExperimentSpec", *, address: str | None = None, num_cpus: int | None = None,
                 trainable: "Trainable | None" = None):
        """``trainable`` replaces the trial trainable, as for ``Study`` (called with each trial's ``TrialTask``)."""
        if spec.search is None:
            raise SearchError(f"experiment '{spec.name}': no 'search:' block; add one (see experiments/tune_cnn_lstm.yaml)")
        self.spec, self.address, self.num_cpus, self.trainable = spec, address, num_cpus, trainable

    @classmethod
    def from_file(cls, path: str | Path, *, store: str | None = None, **kwargs: Any) -> "Search":
        from orchestrator.spec.schema import load_spec
        from orchestrator.study import with_store

        return cls(with_store(load_spec(path), store), **kwargs)

    def plan(self) -> list[SearchPlanRow]:
        """The space as Tune will sample it (starts nothing)."""
        from orchestrator.search.space import dimensions, searched_model_params, whole_number

        s = self.spec.search
        params = searched_model_params(s)
        rows = [SearchPlanRow(name, "choice", values, "tune.choice") for name, values in dimensions(s).items()]
        for name in s.space:
            kind, values = s.resolved(name)
            domain = {"choice": "choice", "grid": "grid_search"}.get(kind) or (
                {"uniform": "randint", "loguniform": "lograndint"}[kind] if whole_number(name, params) else kind)
            rows.append(SearchPlanRow(name, kind, values, f"tune.{domain}"))
        return rows

    def run(self, *, notify: Callable[[str], None] = print) -> SearchResult:
        """Run the search; every trial's record is stored as it ends, the report is written at the end."""
        from orchestrator.search.runner import run_search

        return run_search(self.spec, address=self.address, notify=notify, num_cpus=self.num_cpus,
                          trainable=self.trainable)

    def resume(self, run_id: str, *, notify: Callable[[str], None] = print) -> SearchResult:
        """Continue a stopped search; finished trials are kept."""
        from orchestrator.runs import check_run_name
        from orchestrator.search.runner import run_search

        check_run_name(run_id, "--resume")
        return run_search(self.spec, run_id=run_id, address=self.address, resume=True, notify=notify,
                          num_cpus=self.num_cpus, trainable=self.trainable)

    def study_best(self, result: SearchResult, *, notify: Callable[[str], None] = print) -> SearchResult:
        """Re-run the best configuration full-length (``search.then_study_repeats`` repeats) and report it."""
        from orchestrator.search.runner import then_study

        return then_study(self.spec, result, address=self.address, notify=notify)
