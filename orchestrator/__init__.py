"""Hardware and architecture studies for skin-lesion classification on a Ray cluster: the coordinator library.

Public API (imported lazily, so ``import orchestrator`` loads no deep-learning framework and no Ray)::

    from orchestrator import Study, StudyResult, Search, SearchResult, OrchestratorError

Subpackages: ``spec`` (experiment files, grid, node types), ``execution`` (Ray Tune runs of studies),
``search`` (hyperparameter search), ``report`` (reports, comparisons, ensembles), ``cluster`` (Ray Jobs),
``cli`` (the ``orchestrator`` command, a thin layer over this API). Worker-side code lives in ``workers``.
"""
from __future__ import annotations

__version__ = "0.1.0"

_EXPORTS = {
    "Study": "orchestrator.study", "StudyResult": "orchestrator.study", "StudyPlan": "orchestrator.study",
    "Search": "orchestrator.search.api", "SearchResult": "orchestrator.search.api",
    "OrchestratorError": "orchestrator.errors", "BadInput": "orchestrator.errors", "SpecError": "orchestrator.errors",
    "StudyError": "orchestrator.errors",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
