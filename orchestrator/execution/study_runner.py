"""Execute a study with Ray Tune: feasibility, shared data preparation, trials, retries, resume, records."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from orchestrator.errors import OverBudget, StudyError
from orchestrator.execution.device_probe import preflight
from orchestrator.execution.run_steps import RunSession
from orchestrator.run_store import RunPaths, completed_trial_ids, read_trial_records, write_trial_record
from orchestrator.execution import plan
from orchestrator.spec.grid import expand_grid
from orchestrator.cluster.nodes import cluster_nodes, feasibility_nodes
from orchestrator.spec.schema import ExperimentSpec
from workers.config import TrialConfig
from workers.records import TrialRecord, TrialStatus
from workers.storage import Store

if TYPE_CHECKING:
    from orchestrator.execution.engine import Trainable
    from orchestrator.tracking import StudyTracking


@dataclass
class RunOutcome:
    """What a finished (or resumed) run left in the store."""

    paths: RunPaths
    store: Store
    records: list[TrialRecord]
    counts: dict[str, int] = field(default_factory=dict)
    unfinished: list[str] = field(default_factory=list)  # trials an interruption left to a resume


def _pending_trials(session: RunSession, trials: list[TrialConfig],
                    not_run: dict[str, tuple[TrialStatus, str]]) -> list[TrialConfig]:
    """Trials still to run; infeasible and misconfigured ones get their record now, completed ones (a resume)
    are kept."""
    done = completed_trial_ids(session.store, session.paths)
    for trial in trials:
        if trial.trial_id in not_run and trial.trial_id not in done:
            status, error = not_run[trial.trial_id]
            write_trial_record(session.store, session.paths, TrialRecord(
                trial_id=trial.trial_id, config=trial.to_dict(), status=status, error=error))
    pending = [t for t in trials if t.trial_id not in not_run and t.trial_id not in done]
    if done:
        session.notify(f"Resuming: {len(done)} trial(s) already completed are kept, {len(pending)} to run")
    return pending


def _run_trials(session: RunSession, pending: list[TrialConfig], cache_keys: dict[str, str], trainable: Trainable,
                show_progress: bool, tracking: dict | None = None, cluster_config: dict | None = None) -> list[str]:
    """One Tune run over ``pending``; every trial's record is stored as it ends. Returns the trials an
    interruption (Ctrl-C) left unfinished."""
    from orchestrator.execution import engine
    from orchestrator.execution.console import LiveTrials
    from orchestrator.execution.metrics_export import MetricsExportCallback
    from orchestrator.execution.recorder import TrialRecorder
    from orchestrator.execution.resource_watch import ResourceWatch, WatchStopper
    from orchestrator.execution.timing import concurrency_limit
    from orchestrator.execution.trainable import TrialTask
    from orchestrator.models import ModelKeeper

    spec = session.spec
    keep = spec.storage.keep_models
    tasks = [TrialTask(t, session.settings, cache_keys[t.trial_id], tracking, keep) for t in pending]
    keeper = ModelKeeper(session.store, session.paths, keep, spec.report.target.metric, spec.report.target.mode)
    recorder = TrialRecorder(session.store, session.paths, {t.trial_id: t for t in pending}, session.single_node(),
                             keeper=keeper)
    progress = LiveTrials(pending, spec.report.target.metric, enabled=show_progress,
                          slots=spec.execution.max_concurrent_trials)
    watch = ResourceWatch(recorder, lambda: feasibility_nodes(cluster_nodes(), cluster_config),
                          spec.execution.lost_node_timeout_s, session.notify if session.address else None,
                          on_queue=session.set_queue)
    tuner = engine.build_tuner(
        session, trainable, engine.grid_space(tasks), engine.trial_resources(tasks),
        callbacks=[recorder, progress, watch, MetricsExportCallback(spec.name, session.paths.run_id, pending)],
        stop=WatchStopper(watch),
        max_concurrent_trials=concurrency_limit(spec, pending, feasibility_nodes(cluster_nodes(), cluster_config)),
        scheduler=_timeout_scheduler(spec, recorder),
        # On a cluster every trial gets its own actor, named by its trial in Ray's views (a reused actor keeps
        # the name of its first trial); an embedded run reuses actors to save the framework's start-up.
        reuse_actors=len({t.framework for t in pending}) == 1 and not session.address)
    with progress:
        engine.fit(tuner)
    return recorder.unfinished()


def _timeout_scheduler(spec: ExperimentSpec, recorder):
    """Tune's FIFO scheduler, stopping and recording trials over ``execution.trial_timeout_s`` when it is set."""
    if spec.execution.trial_timeout_s is None:
        return None
    from orchestrator.execution.trial_timeout import TimeoutScheduler

    return TimeoutScheduler(timeout_s=spec.execution.trial_timeout_s,
                            write_failed=lambda trial, error: recorder.write(recorder.failed(trial, error)))


def execute_study(
    spec: ExperimentSpec,
    *,
    run_id: str | None = None,
    address: str | None = None,
    strict: bool = False,
    show_progress: bool = True,
    notify: Callable[[str], None] = print,
    num_cpus: int | None = None,
    trials: list[TrialConfig] | None = None,
    cluster_config: dict | None = None,
    trainable: Trainable | None = None,
) -> RunOutcome:
    """Run every trial of ``spec`` (skipping ones already completed under ``run_id``) and store records.

    ``trials`` replaces the spec's grid (a search's best configuration); ``cluster_config`` (a ``ray up``
    config) adds the node types an autoscaler may still launch; ``trainable`` replaces the trial trainable
    (``orchestrator.execution.trainable.trial_trainable``: called with a ``TrialTask``, it must follow that
    module's reporting contract). An
    embedded Ray started here is shut down on every exit path."""
    from orchestrator.execution.trainable import trial_trainable
    from orchestrator.tracking import open_study_tracking

    session = RunSession.open(spec, run_id=run_id, address=address, notify=notify)
    tracking = open_study_tracking(spec, session.paths)  # an unreachable tracking server stops here
    trials = expand_grid(spec) if trials is None else trials
    try:
        session.connect(num_cpus)
        return _execute(session, trials, strict, show_progress, cluster_config, trainable or trial_trainable,
                        tracking)
    finally:
        session.close()


def _execute(session: RunSession, trials: list[TrialConfig], strict: bool, show_progress: bool,
             cluster_config: dict | None, trainable: Trainable, tracking: StudyTracking) -> RunOutcome:
    from orchestrator.execution.data_cache import preparation_key_of
    from orchestrator.execution.placement import place_trials

    spec, notify = session.spec, session.notify
    nodes, trials, infeasible = place_trials(spec, trials, cluster_config, notify)
    if infeasible and strict:
        raise StudyError(f"{len(infeasible)} trial(s) cannot run on this cluster (--strict): {next(iter(infeasible.values()))}")
    estimate = plan.plan_study(spec, trials, session.store, plan.pools_from_nodes(nodes, cluster_config))
    refusal = plan.budget_refusal(estimate, spec.execution.budget_usd)
    if refusal:
        raise OverBudget(refusal)
    probed = preflight([t for t in trials if t.trial_id not in infeasible], cluster_nodes(), notify,
                       single_machine=session.single_node() is not None, on_queue=session.set_queue)
    if probed.misconfigured and strict:
        raise StudyError(f"{len(probed.misconfigured)} trial(s) failed the device probe (--strict): "
                         f"{next(iter(probed.misconfigured.values()))}")
    not_run = {tid: (TrialStatus.INFEASIBLE, why) for tid, why in infeasible.items()} | \
        {tid: (TrialStatus.MISCONFIGURED, why) for tid, why in probed.misconfigured.items()}
    session.begin("study", nodes, len(trials), device_probes=probed.probes, estimate=estimate,
                  target=spec.report.target.model_dump() | {"mode": spec.report.target.mode})
    tracking.start({"n_trials": len(trials), "dataset": spec.dataset.source, "address": session.info["address"]},
                   session.store.uri, notify)
    notify(f"Run {session.paths.run_id}: {len(trials)} trials ({len(not_run)} not runnable here), "
           f"store {session.store.uri}")
    pending = _pending_trials(session, trials, not_run)
    session.prepare_data(pending)
    unfinished = _run_trials(session, pending, {t.trial_id: preparation_key_of(t) for t in pending}, trainable,
                             show_progress, tracking.trial_context(), cluster_config) if pending else []
    records = read_trial_records(session.store, session.paths)
    counts = session.finish(records, tracking=tracking.summary(records),
                            **({"interrupted": True, "unfinished": unfinished} if unfinished else {}))
    return RunOutcome(paths=session.paths, store=session.store, records=records, counts=counts, unfinished=unfinished)
