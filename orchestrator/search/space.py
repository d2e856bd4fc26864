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


# Search dimensions that pick the trial itself rather than a setting of it: each value of them has its own base
# trial (``base_trials``), with that architecture's model settings and that node type's resources and price.
DIMENSIONS = ("architecture", "node_type")


def dimensions(search: SearchSpec) -> dict[str, list[str]]:
    """The architecture and node type choices a search samples (only those with more than one value)."""
    choices = {"architecture": search.architecture_choices(), "node_type": search.node_type_choices()}
    return {name: values for name, values in choices.items() if len(values) > 1}


def searched_model_params(search: SearchSpec) -> dict:
    """Builder arguments any searched architecture takes, with their defaults."""
    from orchestrator.spec.schema import model_search_params

    params: dict = {}
    for arch in reversed(search.architecture_choices()):
        params.update(model_search_params(arch))
    return params


def tune_space(search: SearchSpec) -> dict:
    """The ``search.space`` block as Tune domains (whole-number settings sample whole numbers), plus a
    ``tune.choice`` over architectures and node types when the search lists several."""
    from ray import tune

    model_params = searched_model_params(search)
    space = {name: tune.choice(values) for name, values in dimensions(search).items()}
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


def base_trials(spec: ExperimentSpec) -> list[TrialConfig]:
    """The trials samples start from, one per (architecture, node type) the search may sample: the search's
    epochs, grid defaults, each node type's resources, stack and price."""

    s = spec.search
    grid = spec.grid.model_copy(update={
        "architectures": s.architecture_choices(), "epochs": [s.epochs], "node_types": s.node_type_choices(),
        "augmentation": [spec.grid.augmentation[0]], "frameworks": [spec.grid.frameworks[0]], "repeats": 1})
    return expand_grid(spec.model_copy(update={"grid": grid}))


def base_trial(spec: ExperimentSpec) -> TrialConfig:
    """The first base trial (the search's architecture on its node type)."""
    return base_trials(spec)[0]


def base_key(trial: dict) -> str:
    """``<architecture>@<node type>``: how a base trial is looked up for a sample."""
    return f"{trial['architecture']}@{trial['node_type']}"


def select_base(bases: dict[str, dict], hyperparameters: dict) -> dict:
    """The base trial (``base_key`` -> ``TrialConfig.to_dict()``) of a sample's architecture and node type."""
    wanted = {d: plain(hyperparameters[d]) for d in DIMENSIONS if d in hyperparameters}
    for base in bases.values():
        if all(base[d] == v for d, v in wanted.items()):
            return base
    raise KeyError(f"no base trial for {wanted}")


def trial_for_sample(base: dict, hyperparameters: dict, tune_trial_id: str) -> dict:
    """A trial config (``TrialConfig.to_dict()``) with the sampled values applied.

    Training settings go to ``overrides``, builder arguments to ``overrides["model_params"]`` and
    ``augmentation`` to the trial's augmentation stage; ``architecture`` and ``node_type`` were chosen with the
    base (``select_base``). The trial id (``spec.grid.trial_id``) is tagged with Tune's trial id, so the
    coordinator and the worker name a trial the same way.
    """
    from orchestrator.spec.schema import SEARCH_TRAINING_SETTINGS, model_search_params

    trial = copy.deepcopy(base)
    overrides = dict(trial.get("overrides") or {})
    model_params = dict(overrides.get("model_params") or {})
    takes = model_search_params(trial["architecture"])
    for name, value in hyperparameters.items():
        value = plain(value)
        if name in DIMENSIONS:
            continue  # chose the base trial already
        if name == "augmentation":
            trial["augmentation"] = value
        elif name in SEARCH_TRAINING_SETTINGS:
            overrides[name] = value
            if name == "dropout" and "dropout" in ((trial.get("model") or {}).get("params") or {}):
                model_params["dropout"] = value  # a per-model dropout would otherwise win over the searched one
        elif name in takes:  # a builder argument of another searched architecture is left out
            model_params[name] = value
    if model_params:
        overrides["model_params"] = model_params
    trial["overrides"] = overrides
    trial["trial_id"] = trial_id(trial, tune_trial_id)
    return trial


# A sample of an infeasible node type still becomes a Tune trial (Tune samples before it places).
INFEASIBLE_BUNDLE = {"CPU": 0.01}


@dataclass(frozen=True)
class SearchTask(TrialTask):
    """A search's task template: each Tune trial's task is the base trial of its sampled architecture and node
    type (``bases``: ``base_key`` -> ``TrialConfig.to_dict()``, ``select_base``) with its sampled values applied
    (``trial_for_sample``), the prepared data of its augmentation stage (``cache_keys``) and the objectives'
    ``target``. ``infeasible`` maps the base keys no node can run to why."""

    cache_keys: dict[str, str] = field(default_factory=dict)
    bases: dict[str, dict] = field(default_factory=dict)
    infeasible: dict[str, str] = field(default_factory=dict)

    def base_of(self, sample: dict) -> dict:
        """The base trial of a sample (the template's own trial when the search has one base)."""
        return select_base(self.bases, sample) if self.bases else self.trial.to_dict()

    def bundle(self, sample: dict) -> dict:
        """The placement bundle of a sample: its node type's (a sliver of a CPU for an infeasible node type, whose
        trial returns at once and is recorded ``infeasible`` instead of waiting forever for resources)."""
        from orchestrator.execution.placement import trial_bundle

        base = self.base_of(sample)
        return INFEASIBLE_BUNDLE if base_key(base) in self.infeasible else trial_bundle(base["resources"])

    def resolve(self, sample: dict, tune_trial_id: str) -> TrialTask:
        trial = TrialConfig.from_dict(trial_for_sample(self.base_of(sample), sample, tune_trial_id))
        return TrialTask(trial, self.store, self.cache_keys.get(trial.augmentation), self.tracking,
                         keep_models=self.keep_models, target=self.target)


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
