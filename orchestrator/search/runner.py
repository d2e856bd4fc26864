"""Ray Tune hyperparameter search: ``orchestrator tune FILE [--dry-run] [--then-study] [--resume RUN_ID]``.

The file's ``search:`` block (``orchestrator.spec.schema.SearchSpec``) becomes a Tune search space over one
architecture on one node type; random search (``BasicVariantGenerator``) or ``OptunaSearch`` samples it and
an ``ASHAScheduler`` (or FIFO) stops poor trials early. Each trial is the study's own trainable
(``orchestrator.execution.trainable.trial_trainable``) with the sampled values as ``TrialConfig.overrides``, so it
reports per-epoch metrics and checkpoints exactly like a study trial.

Every trial is recorded in the store like a study trial (``<experiment>/<run_id>/trials/<id>/record.json``)
with a ``search`` entry holding its sampled hyperparameters, epochs run and last metrics. Trials the scheduler
stops never report a final record, so ``SearchRecorder`` writes them from their last result with status
``stopped_early``. The report (``search.html``, ``search.md``, ``trials.csv``, ``best.json``, plots) lands in
``<experiment>/<run_id>/report/``. Tune's own state lives in ``<experiment>/<run_id>/tune`` and a stopped
search continues with ``--resume RUN_ID`` (``Tuner.restore``); finished trials are kept.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # the command-line parser imports this module: keep Ray, pydantic and Keras out of its import
    from orchestrator.records import RunPaths
    from orchestrator.spec.schema import ExperimentSpec, SearchSpec
    from workers.config import TrialConfig

log = logging.getLogger(__name__)


class SearchError(RuntimeError):
    """A search that cannot start or resume, phrased for the user in one line."""


@dataclass
class SearchOutcome:
    paths: RunPaths
    store: Any
    records: list[dict]
    best: dict | None
    report_uri: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False
    study: Any = None
    study_report_uri: str | None = None


# ------------------------------------------------------------------------------------ space and trials

def _whole(name: str, model_params: dict) -> bool:
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
        elif _whole(name, model_params):
            lo, hi = int(math.ceil(values[0])), int(math.floor(values[1]))
            space[name] = (tune.randint if kind == "uniform" else tune.lograndint)(lo, hi + 1)
        else:
            space[name] = (tune.uniform if kind == "uniform" else tune.loguniform)(float(values[0]), float(values[1]))
    return space


def _plain(value: Any) -> Any:
    """numpy scalars (what Tune's samplers return) -> plain Python values, so configs stay JSON."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value


def base_trial(spec: ExperimentSpec) -> TrialConfig:
    """The trial every sample starts from: the search's architecture, node type and epochs, grid defaults."""
    from orchestrator.spec.grid import expand_grid

    s = spec.search
    grid = spec.grid.model_copy(update={
        "architectures": [s.architecture], "epochs": [s.epochs], "node_types": [s.node_type],
        "augmentation": [spec.grid.augmentation[0]], "frameworks": [spec.grid.frameworks[0]], "repeats": 1})
    return expand_grid(spec.model_copy(update={"grid": grid}))[0]


def trial_for_sample(base: dict, hyperparameters: dict, tune_trial_id: str) -> dict:
    """A trial config (``TrialConfig.to_dict()``) with the sampled values applied.

    Training settings go to ``overrides``, builder arguments to ``overrides["model_params"]`` and
    ``augmentation`` to the trial's augmentation stage. The trial id carries Tune's trial id, so the
    coordinator and the worker name a trial the same way.
    """
    from orchestrator.spec.schema import SEARCH_TRAINING_SETTINGS

    trial = copy.deepcopy(base)
    overrides = dict(trial.get("overrides") or {})
    model_params = dict(overrides.get("model_params") or {})
    for name, value in hyperparameters.items():
        value = _plain(value)
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
    trial["trial_id"] = f"{trial['architecture']}-{tune_trial_id}"
    return trial


def search_trainable(config: dict) -> None:
    """Tune function trainable of a search: the study trainable, with the sampled values applied."""
    from ray import tune

    from orchestrator.execution.trainable import trial_trainable

    trial = trial_for_sample(config["base"], config["hp"], tune.get_context().get_trial_id())
    cache_key = config["cache_keys"][trial["augmentation"]]
    trial_trainable({"trial": trial, "store": config["store"], "cache_key": cache_key})


def _trial_dirname(trial) -> str:
    return trial.trial_id


def asha_rungs(search: SearchSpec) -> list[int]:
    """Epochs at which ASHA compares trials (the last epoch never stops a trial)."""
    rungs, t = [], float(search.grace_period)
    while t < search.epochs:
        rungs.append(int(math.ceil(t)))
        t *= search.reduction_factor
    return sorted(set(rungs))


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


# ------------------------------------------------------------------------------------ running

def _augmentations(spec: ExperimentSpec, base: TrialConfig) -> list[str]:
    if "augmentation" in spec.search.space:
        return list(dict.fromkeys(spec.search.resolved("augmentation")[1]))
    return [base.augmentation]


def _n_trials(search: SearchSpec) -> int:
    grid = 1
    for name in search.space:
        kind, values = search.resolved(name)
        if kind == "grid":
            grid *= len(values)
    return search.num_samples * grid


def _stored_spec(store, paths: RunPaths) -> ExperimentSpec:
    import yaml

    from orchestrator.spec.schema import SpecError, parse_spec

    if not store.exists(paths.spec):
        raise SearchError(f"no search run '{paths.run_id}' of experiment '{paths.experiment}' in store {store.uri}")
    try:
        return parse_spec(yaml.safe_load(store.get_text(paths.spec)), store.url(paths.spec))
    except SpecError as err:
        raise SearchError(str(err)) from None


def run_search(
    spec: ExperimentSpec,
    *,
    run_id: str | None = None,
    address: str | None = None,
    resume: bool = False,
    notify: Callable[[str], None] = print,
    num_cpus: int | None = None,
) -> SearchOutcome:
    """Run (or, with ``resume=True``, continue) the hyperparameter search of ``spec.search``.

    Returns the stored trial records, the best configuration and the report's URL."""
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    from orchestrator.records import RunPaths, read_trial_records
    from orchestrator.report import environment_info
    from orchestrator.report.search import write_search_report
    from orchestrator.execution.study_runner import (StudyError, connect_ray, new_run_id, open_run_store, place_trials,
                                  prepare_shared_data, store_settings, trial_bundle, trial_resources, tune_storage)
    from orchestrator.search.callbacks import (FINAL_STATUSES, FinishingASHAScheduler, MetricOnlyOptunaSearch,
                                               SearchRecorder)
    from orchestrator.spec.schema import spec_to_yaml
    from workers.data import preparation_key

    if spec.search is None:
        raise SearchError(f"experiment '{spec.name}' has no 'search:' block (see experiments/tune_cnn_lstm.yaml)")
    if resume and not run_id:
        raise SearchError("resume needs the run id of the search to continue")
    for noisy in ("ray.tune", "ray.train", "ray.air"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    # The trainable's final report (the trial record) carries no metrics; the recorder adds them afterwards.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"

    settings = store_settings(spec)
    try:
        store = open_run_store(spec)
    except StudyError as err:
        raise SearchError(str(err)) from None
    paths = RunPaths(spec.name, run_id or new_run_id())
    if resume:
        stored = _stored_spec(store, paths)
        if stored.search != spec.search:
            notify("The file's search block differs from the stored run's; continuing with the stored one")
        spec = stored.model_copy(update={"storage": spec.storage})
    search = spec.search
    base = base_trial(spec)

    dashboard = connect_ray(address, num_cpus=num_cpus)
    # Placement as execute_study does it: node-kind pinning where the cluster labels its nodes, and node types
    # the autoscaler can still launch count as runnable.
    nodes, (base,), infeasible = place_trials(spec, [base], notify=notify)
    if infeasible:
        raise SearchError(f"search.node_type: {next(iter(infeasible.values()))}")
    storage_path, fs = tune_storage(spec, paths, address)
    experiment_path = f"{storage_path}/tune"
    if resume and not tune.Tuner.can_restore(experiment_path, storage_filesystem=fs):
        raise SearchError(f"run '{paths.run_id}' has no Tune state to resume at {experiment_path}")

    started = datetime.now(timezone.utc).isoformat()
    info = json.loads(store.get_text(paths.run_info)) if resume and store.exists(paths.run_info) else {}
    info.update({"experiment": spec.name, "run_id": paths.run_id, "kind": "search", "address": address or "local",
                 "dashboard": dashboard, "nodes": [{"name": n.name, "resources": n.resources} for n in nodes],
                 "n_trials": _n_trials(search), "dataset_source": spec.dataset.source,
                 "environment": environment_info(), "search": search.model_dump(mode="json")})
    info.setdefault("started", started)
    if resume:
        info["resumed"] = info.get("resumed", []) + [started]
    else:
        store.put_text(paths.spec, spec_to_yaml(spec))
    store.put_text(paths.run_info, json.dumps(info, indent=1))
    if dashboard:
        notify(f"Ray dashboard: {dashboard}")
    notify(f"Search {paths.run_id}: {search.architecture} on {search.node_type}, {search.algorithm} search, "
           f"{search.scheduler} scheduler, {_n_trials(search)} trials of up to {search.epochs} epochs, "
           f"{search.metric} ({search.mode}); store {store.uri}")

    prep = [replace(base, augmentation=a) for a in _augmentations(spec, base)]
    cache = prepare_shared_data(prep, settings, notify)
    cache_keys = {t.augmentation: preparation_key(t.dataset, t.split, t.augmentation, t.augmentation_settings)
                  for t in prep}
    hits = sum(1 for c in cache.values() if c["hit"])
    notify(f"Data cache: {hits} hit(s), {len(cache) - hits} prepared")

    trainable = tune.with_resources(search_trainable, trial_resources([base]))
    recorder = SearchRecorder(store, settings, paths, search, _n_trials(search), notify)
    if resume:
        tuner = tune.Tuner.restore(experiment_path, trainable, resume_unfinished=True, resume_errored=True,
                                   storage_filesystem=fs)
        # The restored run config holds unpickled copies of the old callbacks: use live ones.
        local = getattr(tuner, "_local_tuner", None)
        if local is not None:
            local.get_run_config().callbacks = [recorder]
        done = sum(1 for r in read_trial_records(store, paths) if r.get("status") in FINAL_STATUSES)
        recorder.finished = done
        notify(f"Resuming: {done} finished trial(s) are kept")
    else:
        scheduler = None
        if search.scheduler == "asha":
            scheduler = FinishingASHAScheduler(time_attr="epoch", metric=search.metric, mode=search.mode,
                                               max_t=search.epochs, grace_period=search.grace_period,
                                               reduction_factor=search.reduction_factor)
        concurrency = search.max_concurrent_trials or spec.execution.max_concurrent_trials
        if search.algorithm == "optuna":
            algorithm = MetricOnlyOptunaSearch(metric=search.metric, mode=search.mode, seed=spec.seed)
            if concurrency is None:  # a model-based searcher needs results before it suggests more
                wanted = trial_bundle(base.resources)
                slots = sum(int(min(n.resources.get(k, 0) // v for k, v in wanted.items())) for n in nodes)
                concurrency = max(1, min(slots, search.num_samples))
        else:
            algorithm = BasicVariantGenerator(random_state=spec.seed)
        tuner = tune.Tuner(
            trainable,
            param_space={"hp": tune_space(search), "base": base.to_dict(), "store": settings, "cache_keys": cache_keys},
            tune_config=tune.TuneConfig(
                search_alg=algorithm, scheduler=scheduler, num_samples=search.num_samples,
                max_concurrent_trials=concurrency, time_budget_s=search.time_budget_s, reuse_actors=True,
                trial_dirname_creator=_trial_dirname,
            ),
            run_config=tune.RunConfig(
                name="tune", storage_path=storage_path, storage_filesystem=fs,
                failure_config=tune.FailureConfig(max_failures=spec.execution.max_retries),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                callbacks=[recorder], verbose=0, log_to_file=True,
            ),
        )
    tuner.fit()
    unfinished = recorder.write_missing(search.time_budget_s)

    records = [r for r in read_trial_records(store, paths) if r.get("search")]
    counts: dict[str, int] = {}
    for r in records:
        counts[r.get("status", "?")] = counts.get(r.get("status", "?"), 0) + 1
    info = json.loads(store.get_text(paths.run_info))
    info.update({"finished": datetime.now(timezone.utc).isoformat(), "counts": counts,
                 "data_cache": {k: {kk: vv for kk, vv in v.items() if kk != "meta"} for k, v in cache.items()}})
    store.put_text(paths.run_info, json.dumps(info, indent=1))
    url = write_search_report(store, paths, search)
    best = json.loads(store.get_text(paths.report("best.json")))
    return SearchOutcome(paths=paths, store=store, records=records, best=best, report_uri=url, counts=counts,
                         interrupted=unfinished > 0)


def best_trials(spec: ExperimentSpec, best: dict) -> list[TrialConfig]:
    """The best configuration as full-length study trials, ``search.then_study_repeats`` repeats."""
    from workers.config import TrialConfig

    base = base_trial(spec).to_dict()
    trials = []
    for repeat in range(spec.search.then_study_repeats):
        trial = trial_for_sample(base, best["hyperparameters"], "best")
        trial.update(epochs=spec.search.epochs, repeat=repeat, seed=spec.seed * 1000 + repeat)
        digest = hashlib.sha256(json.dumps({k: v for k, v in trial.items() if k != "trial_id"}, sort_keys=True,
                                           default=str).encode()).hexdigest()[:8]
        trial["trial_id"] = (f"{trial['architecture']}-best-e{trial['epochs']}-{trial['node_type']}-"
                             f"{trial['augmentation']}-{trial['framework']}-r{repeat}-{digest}")
        trials.append(TrialConfig.from_dict(trial))
    return trials


def then_study(spec: ExperimentSpec, outcome: SearchOutcome, *, address: str | None = None,
               notify: Callable[[str], None] = print) -> SearchOutcome:
    """Re-run the best configuration as a full-length study (run id ``<search run id>-best``) and report it."""
    from orchestrator.report import write_report
    from orchestrator.execution.study_runner import execute_study

    if not outcome.best:
        raise SearchError("no trial of the search reported its metric, so there is no best configuration to study")
    trials = best_trials(spec, outcome.best)
    notify(f"Study of the best configuration ({outcome.best['trial_id']}): {len(trials)} trial(s) of "
           f"{spec.search.epochs} epochs")
    study = execute_study(spec, trials=trials, run_id=f"{outcome.paths.run_id}-best", address=address, notify=notify)
    outcome.study = study
    outcome.study_report_uri = write_report(study.store, study.paths)
    return outcome


# ------------------------------------------------------------------------------------ command line

def _print_plan(spec: ExperimentSpec) -> None:
    from rich.table import Table

    from orchestrator.cli import out
    from orchestrator.spec.node_types import resource_request
    from orchestrator.spec.schema import model_search_params

    s = spec.search
    base = base_trial(spec)
    model_params = model_search_params(s.architecture)
    table = Table(title=f"{spec.name}: search space (dry run, nothing started)")
    for col in ("setting", "distribution", "values", "Tune domain"):
        table.add_column(col)
    for name in s.space:
        kind, values = s.resolved(name)
        domain = {"choice": "choice", "grid": "grid_search"}.get(kind) or (
            {"uniform": "randint", "loguniform": "lograndint"}[kind] if _whole(name, model_params) else kind)
        table.add_row(name, kind, json.dumps(values), f"tune.{domain}")
    out.print(table)
    req = resource_request(base.resources)
    resources = ", ".join(f"{k}={v:g}" for k, v in req.items() if v)
    out.print(f"architecture {s.architecture}, node type {s.node_type} ({resources}, {base.framework}), "
              f"{_n_trials(s)} trials of up to {s.epochs} epochs")
    out.print(f"algorithm {s.algorithm}, scheduler {s.scheduler}"
              + (f" (grace period {s.grace_period}, reduction factor {s.reduction_factor:g}, rungs at epochs "
                 f"{asha_rungs(s) or 'none'})" if s.scheduler == "asha" else "")
              + f", metric {s.metric} ({s.mode}), max concurrent {s.max_concurrent_trials or 'auto'}, "
              f"time budget {f'{s.time_budget_s:g} s' if s.time_budget_s else 'none'}, "
              f"then-study repeats {s.then_study_repeats}")


def cmd_tune(args) -> int:
    from orchestrator.cli import UserError, _check_resources, _fail, _load, _override_storage, console, out
    from orchestrator.execution.study_runner import StudyError
    from workers.storage import StorageError

    spec = _override_storage(_load(args.file), args.store)
    if spec.search is None:
        raise UserError(f"{args.file}: no 'search:' block; add one (see experiments/tune_cnn_lstm.yaml)")
    if args.dry_run:
        _print_plan(spec)
        return 0
    _check_resources(spec)
    say = lambda m: console.print(m, soft_wrap=True)  # noqa: E731
    try:
        outcome = run_search(spec, run_id=args.resume, address=args.address, resume=bool(args.resume), notify=say)
    except SearchError as err:
        raise UserError(str(err)) from None
    except StudyError as err:  # e.g. data preparation failed (shared helpers of orchestrator.execution.study_runner)
        return _fail(str(err))
    except StorageError as err:
        return _fail(str(err), 1)
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(outcome.counts.items()))
    out.print(f"Search {outcome.paths.run_id} {'stopped' if outcome.interrupted else 'finished'} ({counts}).")
    if outcome.best:
        b = outcome.best
        out.print(f"Best: {b['trial_id']} {b['metric']}={b['value']:.4f} after {b['epochs_run']} epochs, "
                  + ", ".join(f"{k}={_short(v)}" for k, v in b["hyperparameters"].items()))
    out.print(f"Report: {outcome.report_uri}")
    if outcome.interrupted:
        return _fail(f"the search was interrupted; continue it with 'orchestrator tune {args.file} --resume "
                     f"{outcome.paths.run_id}'", 130)
    if args.then_study:
        try:
            then_study(spec, outcome, address=args.address, notify=say)
        except (SearchError, StudyError) as err:
            return _fail(str(err))
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(outcome.study.counts.items()))
        out.print(f"Study of the best configuration {outcome.study.paths.run_id} finished ({counts}).")
        out.print(f"Report: {outcome.study_report_uri}")
        if outcome.study.counts.get("failed"):
            return 1
    return 1 if outcome.counts.get("failed") or not outcome.best else 0


def add_commands(subparsers) -> None:
    """``orchestrator tune FILE [--dry-run] [--then-study] [--resume RUN_ID] [--store URI] [--address ADDR]``."""
    t = subparsers.add_parser("tune", help="hyperparameter search over an experiment file's 'search:' block (Ray Tune)")
    t.add_argument("file")
    t.add_argument("--dry-run", action="store_true", help="validate, print the search space and plan, run nothing")
    t.add_argument("--then-study", action="store_true",
                   help="afterwards re-run the best configuration full-length (search.then_study_repeats repeats)")
    t.add_argument("--resume", metavar="RUN_ID", help="continue a stopped search; finished trials are kept")
    t.add_argument("--store", help="override storage.uri (a directory or s3://bucket/prefix)")
    t.add_argument("--address", help="Ray cluster to join as the driver (ray://HOST:10001 or auto)")
    t.set_defaults(func=cmd_tune)
