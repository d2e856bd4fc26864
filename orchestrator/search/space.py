"""A search's space and trials as data: Tune domains from the ``search:`` block, the trial config of a sample
(pure functions; Tune is imported only to build domains) and the task template (``SearchTask``) the run engine
resolves per sample."""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrator.execution.trainable import TrialTask
from orchestrator.spec.grid import expand_grid, trial_id
from workers.config import TrialConfig

if TYPE_CHECKING:
    from orchestrator.spec.schema import ExperimentSpec, SearchSpec


def whole_number(name: str, model_params: dict) -> bool:
    if name == "batch_size":
        return True
    default = model_params.get(name)
    return isinstance(default, int) and not isinstance(default, bool)


def tune_space(search: SearchSpec) -> dict:
    """The ``search.space`` block as Tune domains (whole-number settings sample whole numbers)."""
    from ray import tune

    from orchestrator.spec.schema import model_search_params

    model_params = model_search_params(search.architecture)
    space = {}
    for name in search.space:
        kind, values = search.resolved(name)
        if kind == "choice":
            space[name] = tune.choice(values)
        elif kind == "grid":
            space[name] = tune.grid_search(values)
        elif whole_number(name, model_params):
            lo, hi = int(math.ceil(values[0])), int(math.floor(values[1]))
            space[name] = (tune.randint if kind == "uniform" else tune.lograndint)(lo, hi + 1)
        else:
            space[name] = (tune.uniform if kind == "uniform" else tune.loguniform)(float(values[0]), float(values[1]))
    return space


def plain(value: Any) -> Any:
    """numpy scalars (what Tune's samplers return) -> plain Python values, so configs stay JSON."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value


def base_trial(spec: ExperimentSpec) -> TrialConfig:
    """The trial every sample starts from: the search's architecture, node type and epochs, grid defaults."""
    s = spec.search
    grid = spec.grid.model_copy(update={
        "architectures": [s.architecture], "epochs": [s.epochs], "node_types": [s.node_type],
        "augmentation": [spec.grid.augmentation[0]], "frameworks": [spec.grid.frameworks[0]], "repeats": 1})
    return expand_grid(spec.model_copy(update={"grid": grid}))[0]


def trial_for_sample(base: dict, hyperparameters: dict, tune_trial_id: str) -> dict:
    """A trial config (``TrialConfig.to_dict()``) with the sampled values applied.

    Training settings go to ``overrides``, builder arguments to ``overrides["model_params"]`` and
    ``augmentation`` to the trial's augmentation stage. The trial id (``spec.grid.trial_id``) is tagged with
    Tune's trial id, so the coordinator and the worker name a trial the same way.
    """
    from orchestrator.spec.schema import SEARCH_TRAINING_SETTINGS

    trial = copy.deepcopy(base)
    overrides = dict(trial.get("overrides") or {})
    model_params = dict(overrides.get("model_params") or {})
    for name, value in hyperparameters.items():
        value = plain(value)
        if name == "augmentation":
            trial["augmentation"] = value
        elif name in SEARCH_TRAINING_SETTINGS:
            overrides[name] = value
            if name == "dropout" and "dropout" in ((trial.get("model") or {}).get("params") or {}):
                model_params["dropout"] = value  # a per-model dropout would otherwise win over the searched one
        else:
            model_params[name] = value
    if model_params:
        overrides["model_params"] = model_params
    trial["overrides"] = overrides
    trial["trial_id"] = trial_id(trial, tune_trial_id)
    return trial


@dataclass(frozen=True)
class SearchTask(TrialTask):
    """A search's task template (the base trial): each Tune trial's task is the base with its sampled values
    applied (``trial_for_sample``) and the prepared data of its augmentation stage (``cache_keys``)."""

    cache_keys: dict[str, str] = field(default_factory=dict)

    def resolve(self, sample: dict, tune_trial_id: str) -> TrialTask:
        trial = TrialConfig.from_dict(trial_for_sample(self.trial.to_dict(), sample, tune_trial_id))
        return TrialTask(trial, self.store, self.cache_keys.get(trial.augmentation), self.tracking)


def asha_rungs(search: SearchSpec) -> list[int]:
    """Epochs at which ASHA compares trials (the last epoch never stops a trial)."""
    rungs, t = [], float(search.grace_period)
    while t < search.epochs:
        rungs.append(int(math.ceil(t)))
        t *= search.reduction_factor
    return sorted(set(rungs))


def short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def n_trials(search: SearchSpec) -> int:
    grid = 1
    for name in search.space:
        kind, values = search.resolved(name)
        if kind == "grid":
            grid *= len(values)
    return search.num_samples * grid
