"""Ray Tune hyperparameter search over an experiment file's ``search:`` block.

The block (``orchestrator.spec.schema.SearchSpec``) becomes a Tune search space, architectures and node types
among its dimensions when the block lists several; random search (``BasicVariantGenerator``) or ``OptunaSearch``
(one metric, or several objectives: Optuna's multi-objective TPE through Tune) samples it and an
``ASHAScheduler`` (or FIFO) stops poor trials early. Each trial asks Ray for the resources of the node type it
sampled (``engine.sampled_resources``), so CPU and GPU trials run side by side; samples of a node type no node
can run are recorded ``infeasible`` without training. Each trial is the study's own trainable with the sampled
values as ``TrialConfig.overrides``, so it reports per-epoch metrics and checkpoints exactly like a study trial.

Every trial is recorded in the store like a study trial, with a ``search`` entry (sampled hyperparameters,
epochs run, last metrics); trials the scheduler stops are recorded from their last result (``stopped_early``).
The report (``search.html``, ``search.md``, ``trials.csv``, ``best.json``, plots) lands in the run's
``report/``. Tune's own state lives in ``<experiment>/<run_id>/tune``; a stopped search continues with
``resume=True`` (``Tuner.restore``), finished trials kept.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Callable

from orchestrator.errors import StudyError
from orchestrator.execution.run_steps import RunSession
from orchestrator.run_store import read_trial_records
from orchestrator.results import SearchResult
from orchestrator.search.space import (SearchTask, base_key, base_trials, n_trials, select_base, trial_for_sample,
                                       tune_space)
from orchestrator.spec.grid import trial_id
from orchestrator.spec.schema import ExperimentSpec
from workers.config import TrialConfig
from workers.records import FINAL_STATUSES

if TYPE_CHECKING:
    from orchestrator.execution.engine import Trainable


class SearchError(StudyError):
    """A search that cannot start or resume."""


def _stored_spec(session: RunSession) -> ExperimentSpec:
    from orchestrator.spec.schema import parse_spec, parse_yaml

    store, paths = session.store, session.paths
    if not store.exists(paths.spec):
        raise SearchError(f"no search run '{paths.run_id}' of experiment '{paths.experiment}' in store {store.uri}")
    source = store.url(paths.spec)
    return parse_spec(parse_yaml(store.get_text(paths.spec), source), source)


def _scheduler(spec: ExperimentSpec, recorder):
    """ASHA (``search.scheduler: asha``) or FIFO, stopping and recording trials over
    ``execution.trial_timeout_s`` when it is set (as a study does)."""
    from orchestrator.search.scheduler import FinishingASHAScheduler, TimeoutASHAScheduler

    search, timeout_s = spec.search, spec.execution.trial_timeout_s
    timeout = {} if timeout_s is None else {
        "timeout_s": timeout_s, "write_failed": lambda trial, error: recorder.write(recorder.failed(trial, error))}
    if search.scheduler != "asha":
        if not timeout:
            return None
        from orchestrator.execution.trial_timeout import TimeoutScheduler

        return TimeoutScheduler(**timeout)
    return (TimeoutASHAScheduler if timeout else FinishingASHAScheduler)(
        time_attr="epoch", metric=search.metric, mode=search.mode, max_t=search.epochs,
        grace_period=search.grace_period, reduction_factor=search.reduction_factor, **timeout)


def _algorithm_and_concurrency(spec: ExperimentSpec, bases: list[TrialConfig], nodes):
    from ray.tune.search import BasicVariantGenerator

    from orchestrator.execution.placement import trial_bundle
    from orchestrator.execution.plan import slots_on

    search = spec.search
    concurrency = search.max_concurrent_trials or spec.execution.max_concurrent_trials
    if search.algorithm != "optuna":
        return BasicVariantGenerator(random_state=spec.seed), concurrency
    from optuna import logging as optuna_logging
    from ray.tune.search.optuna import OptunaSearch

    optuna_logging.set_verbosity(optuna_logging.WARNING)
    if concurrency is None:  # a model-based searcher needs results before it suggests more
        slots = 0
        for base in bases:
            slots = max(slots, sum(slots_on(trial_bundle(base.resources), n) for n in nodes))
        concurrency = max(1, min(slots, search.num_samples))
    metrics, modes = search.objective_metrics, search.objective_modes
    if len(metrics) == 1:
        return OptunaSearch(metric=metrics[0], mode=modes[0], seed=spec.seed), concurrency
    return OptunaSearch(metric=metrics, mode=modes, seed=spec.seed), concurrency


def _resources(task: SearchTask):
    """One static request when the search samples one node type, else each sample's node type's bundle."""
    from orchestrator.execution import engine

    return engine.sampled_resources(task.bundle) if len(task.bases) > 1 else engine.trial_resources([task])


def _skipping_infeasible(trainable: Trainable, infeasible: dict[str, str]) -> Trainable:
    """The trainable, except that a sample of a node type no node can run returns at once without reporting
    (the recorder stores it ``infeasible``)."""

    def search_trial(task) -> None:
        if base_key(task.trial.to_dict()) not in infeasible:
            trainable(task)

    search_trial.__name__ = getattr(trainable, "__name__", "search_trial")
    return search_trial


def _new_tuner(session: RunSession, trainable: Trainable, task: SearchTask, nodes, recorder):
    from orchestrator.execution import engine

    spec, search = session.spec, session.spec.search
    runnable = [TrialConfig.from_dict(b) for k, b in task.bases.items() if k not in task.infeasible]
    algorithm, concurrency = _algorithm_and_concurrency(spec, runnable or [task.trial], nodes)
    return engine.build_tuner(
        session, trainable, engine.sample_space(task, tune_space(search)), _resources(task),
        callbacks=[recorder], search_alg=algorithm, scheduler=_scheduler(spec, recorder), num_samples=search.num_samples,
        max_concurrent_trials=concurrency, time_budget_s=search.time_budget_s, reuse_actors=True)


def _restored_tuner(session: RunSession, trainable: Trainable, task: SearchTask, recorder):
    from orchestrator.execution import engine

    tuner = engine.restore_tuner(session, trainable, engine.sample_space(task, tune_space(session.spec.search)),
                                 _resources(task), callbacks=[recorder])
    if tuner is None:
        raise SearchError(f"run '{session.paths.run_id}' has no Tune state to resume at "
                          f"{session.tune_storage()[0]}/tune")
    done = sum(1 for r in read_trial_records(session.store, session.paths) if r.status.value in FINAL_STATUSES)
    recorder.finished = done
    session.notify(f"Resuming: {done} finished trial(s) are kept")
    return tuner


def _prepare(session: RunSession, base: TrialConfig) -> dict[str, str]:
    """Prepared data for every augmentation stage the search samples; stage -> cache key (prepared data does not
    depend on the architecture or node type)."""
    from orchestrator.execution.data_cache import preparation_key_of

    search = session.spec.search
    stages = list(dict.fromkeys(search.resolved("augmentation")[1])) if "augmentation" in search.space \
        else [base.augmentation]
    trials = [base.replace(augmentation=a) for a in stages]
    session.prepare_data(trials)
    return {t.augmentation: preparation_key_of(t) for t in trials}


def _open_session(spec: ExperimentSpec, run_id, address, resume, notify) -> tuple[RunSession, ExperimentSpec]:
    if spec.search is None:
        raise SearchError(f"experiment '{spec.name}' has no 'search:' block (see experiments/tune_cnn_lstm.yaml)")
    if resume and not run_id:
        raise SearchError("resume needs the run id of the search to continue")
    session = RunSession.open(spec, run_id=run_id, address=address, notify=notify)
    if resume:
        stored = _stored_spec(session)
        if stored.search != spec.search:
            notify("The file's search block differs from the stored run's; continuing with the stored one")
        session.spec = stored.model_copy(update={"storage": spec.storage})
    return session, session.spec


def run_search(spec: ExperimentSpec, *, run_id: str | None = None, address: str | None = None, resume: bool = False,
               notify: Callable[[str], None] = print, num_cpus: int | None = None,
               trainable: Trainable | None = None) -> SearchResult:
    """Run (or, with ``resume=True``, continue) the hyperparameter search of ``spec.search``; an embedded Ray
    started here is shut down on every exit path. ``trainable`` replaces the trial trainable, as for a study."""
    from orchestrator.execution.trainable import trial_trainable
    from orchestrator.tracking import open_study_tracking

    session, spec = _open_session(spec, run_id, address, resume, notify)
    tracking = open_study_tracking(spec, session.paths)  # an unreachable tracking server stops here
    try:
        session.connect(num_cpus)
        return _search(session, resume, trainable or trial_trainable, tracking)
    finally:
        session.close()


def _search(session: RunSession, resume: bool, trainable: Trainable, tracking) -> SearchResult:
    from orchestrator.execution import engine
    from orchestrator.execution.placement import place_trials
    from orchestrator.report.search import write_search_report
    from orchestrator.search.recorder import SearchRecorder

    spec, notify = session.spec, session.notify
    search, total = spec.search, n_trials(spec.search)
    nodes, bases, unrunnable = place_trials(spec, base_trials(spec), notify=notify)
    infeasible = {base_key(b.to_dict()): unrunnable[b.trial_id] for b in bases if b.trial_id in unrunnable}
    if len(infeasible) == len(bases):
        field = "search.node_types" if search.node_types else "search.node_type"
        raise SearchError(f"{field}: {next(iter(infeasible.values()))}")
    session.begin("search", nodes, total, search=search.model_dump(mode="json"))
    tracking.start({"n_trials": total, "dataset": spec.dataset.source, "address": session.info["address"]},
                   session.store.uri, notify)
    archs, kinds = search.architecture_choices(), search.node_type_choices()
    objectives = ", ".join(f"{m} ({d})" for m, d in zip(search.objective_metrics, search.objective_modes))
    notify(f"Search {session.paths.run_id}: {', '.join(archs)} on {', '.join(kinds)}, {search.algorithm} search, "
           f"{search.scheduler} scheduler, {total} trials of up to {search.epochs} epochs, {objectives}; "
           f"store {session.store.uri}")
    for key, reason in infeasible.items():
        notify(f"Samples of {key} are recorded infeasible: {reason}")
    target = spec.report.target
    task = SearchTask(bases[0], session.settings, tracking=tracking.trial_context(),
                      target={"metric": target.metric, "value": target.value, "mode": target.mode},
                      cache_keys=_prepare(session, bases[0]), bases={base_key(b.to_dict()): b.to_dict() for b in bases},
                      infeasible=infeasible)
    recorder = SearchRecorder(session.store, session.paths, search, total, notify, session.single_node(), infeasible)
    if infeasible:
        trainable = _skipping_infeasible(trainable, infeasible)
    tuner = _restored_tuner(session, trainable, task, recorder) if resume else \
        _new_tuner(session, trainable, task, nodes, recorder)
    engine.fit(tuner)
    unfinished = recorder.write_missing(search.time_budget_s)
    records = [r for r in read_trial_records(session.store, session.paths) if r.search]
    counts = session.finish(records, tracking=tracking.summary(records))
    url = write_search_report(session.store, session.paths, search)
    best = json.loads(session.store.get_text(session.paths.report("best.json")))
    front_path = session.paths.report("front.json")
    front = json.loads(session.store.get_text(front_path)) \
        if search.objectives and session.store.exists(front_path) else []
    return SearchResult(session.paths, session.store, records, counts, url, best_trial=best,
                        interrupted=unfinished > 0, front=front or [])


def _study_trials(spec: ExperimentSpec, point: dict, label: str) -> list[TrialConfig]:
    """One searched configuration (its sampled values, architecture and node type included) as full-length study
    trials, ``search.then_study_repeats`` repeats, ``label`` in their trial ids."""
    bases = {base_key(b.to_dict()): b.to_dict() for b in base_trials(spec)}
    hp = point["hyperparameters"]
    trials = []
    for repeat in range(spec.search.then_study_repeats):
        trial = trial_for_sample(select_base(bases, hp), hp, label)
        trial.update(epochs=spec.search.epochs, repeat=repeat, seed=spec.seed * 1000 + repeat)
        trial["trial_id"] = trial_id(trial, label)
        trials.append(TrialConfig.from_dict(trial))
    return trials


def best_trials(spec: ExperimentSpec, best: dict) -> list[TrialConfig]:
    """The best configuration as full-length study trials, ``search.then_study_repeats`` repeats."""
    return _study_trials(spec, best, "best")


def front_trials(spec: ExperimentSpec, front: list[dict]) -> list[TrialConfig]:
    """Every configuration on the Pareto front (``front.json``'s points) as full-length study trials, with
    repeats; ``front<i>`` in the trial id is the point's place in the front."""
    return [t for i, point in enumerate(front) for t in _study_trials(spec, point, f"front{i}")]


def then_study(spec: ExperimentSpec, outcome: SearchResult, *, address: str | None = None,
               notify: Callable[[str], None] = print) -> SearchResult:
    """Re-run the best configuration (a multi-objective search: every point of its Pareto front) as a full-length
    study with repeats (run id ``<search run id>-best`` / ``-front``) and report it."""
    from orchestrator.execution.study_runner import execute_study
    from orchestrator.report import write_report

    if spec.search.objectives:
        if not outcome.front:
            raise SearchError("no trial of the search reported every objective, so there is no Pareto front to study")
        trials, suffix = front_trials(spec, outcome.front), "front"
        notify(f"Study of the Pareto front ({len(outcome.front)} configuration(s)): {len(trials)} trial(s) of "
               f"{spec.search.epochs} epochs")
    else:
        if not outcome.best_trial:
            raise SearchError("no trial of the search reported its metric, so there is no best configuration to study")
        trials, suffix = best_trials(spec, outcome.best_trial), "best"
        notify(f"Study of the best configuration ({outcome.best_trial['trial_id']}): {len(trials)} trial(s) of "
               f"{spec.search.epochs} epochs")
    study = execute_study(spec, trials=trials, run_id=f"{outcome.paths.run_id}-{suffix}", address=address,
                          notify=notify)
    outcome.study = study
    outcome.study_report_url = write_report(study.store, study.paths)
    return outcome
