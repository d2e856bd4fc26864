"""The one run engine of studies and searches: the Tune function that hands every trial its typed task, the
one Tuner builder (and its restore), and the task of a Tune trial as the coordinator's callbacks read it.

A run's ``param_space`` is ``{"trial": {"key": ..., "id": ..., "bundle": ...}}`` plus, for a search,
``{"sample": <Tune domains>}``: a study grid-searches over its tasks' keys (``grid_space``: one Tune trial per
``TrialTask``); a search has one task template whose ``resolve`` applies the sampled values (``sample_space``); a
search whose samples ask for different resources (over node types) gets a bundle per sample
(``sampled_resources``). The tasks themselves travel once, beside the configs (``tune.with_parameters`` to the
workers, pickled once and unpickled once per worker process: ``PackedTasks``; this module's table on the
coordinator), so Tune's per-trial state and every snapshot of it hold plain
values only. Worker and coordinator both get a trial's task from ``task_of`` (the same inputs, so the same trial
id), and the trainable is called with that ``TrialTask``, never with a dict. This module is the only reader of
these keys.
"""
from __future__ import annotations

import os
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from orchestrator.execution.trainable import FINAL_KEY, TrialTask

if TYPE_CHECKING:
    from orchestrator.execution.run_steps import RunSession

Trainable = Callable[[TrialTask], None]
TRIAL_KEY, SAMPLE_KEY = "trial", "sample"


# key -> task (a study trial's task, a search's template) of the param spaces built in this process; a later
# run's entry replaces an earlier one of the same key (runs of one driver process follow one another)
_KNOWN: dict[str, TrialTask] = {}


def task_of(config: dict, tune_trial_id: str, tasks: dict[str, TrialTask] | None = None) -> TrialTask:
    """The task of the Tune trial ``tune_trial_id`` whose resolved config is ``config`` (``tasks``: the run's
    tasks by key, as a worker gets them; by default the coordinator's table)."""
    entry = config[TRIAL_KEY]
    # a search stopped before the tasks moved out of the configs holds its task in each restored config
    task = entry["task"] if "task" in entry else (_KNOWN if tasks is None else tasks)[entry["key"]]
    return task.resolve(config.get(SAMPLE_KEY) or {}, tune_trial_id)


def sample_of(trial) -> dict:
    """The values Tune sampled for a search trial ({} for a study trial)."""
    return trial.config.get(SAMPLE_KEY) or {}


_TASKS: "weakref.WeakKeyDictionary[Any, TrialTask]" = weakref.WeakKeyDictionary()


def trial_task(trial) -> TrialTask:
    """The task of a Tune ``Trial`` (on the coordinator; cached beside the trial, not on it: Tune writes a trial's
    attributes into every snapshot of its experiment state)."""
    cached = _TASKS.get(trial)
    if cached is None:
        cached = _TASKS[trial] = task_of(trial.config, trial.trial_id)
    return cached


def trial_id_of(trial) -> str:
    """The trial id of a Tune ``Trial`` (``spec.grid.trial_id``)."""
    return trial_task(trial).trial_id


def tune_name(trial) -> str:
    """The name and folder of a Tune trial: the trial id of a study trial, Tune's id for a search sample."""
    return trial.config[TRIAL_KEY].get("id") or trial.trial_id


# Tune snapshots its whole experiment state (every trial's state: O(trials)) whenever a trial has saved
# ``num_to_keep`` checkpoints since the last snapshot; with 1 that is after every checkpoint, so every trial's final
# record alone cost a snapshot and a study's snapshots grew with the square of its trials. With 2, a trial that
# reports only a final checkpoint (its kept model) forces none, one reporting epochs forces one every second epoch, and the
# snapshot still never points at a deleted checkpoint. The recorder removes a finished trial's checkpoints once
# its record is stored (``TrialRecorder``), so finished trials keep none.
KEPT_CHECKPOINTS = 2
REUSE_WAIT_S = "120"  # how long a reused actor waits for a stopped trial's epoch to end (Tune's default: 2 s)


def tune_function(trainable: Trainable) -> Callable[[dict], None]:
    """Tune's function trainable: the trial's typed task, then ``trainable(task)``.

    A trial a scheduler stops (ASHA) ends at its next report, i.e. after its current epoch; Tune reuses its actor
    only if that happens within ``TUNE_FUNCTION_THREAD_TIMEOUT_S`` (read in the actor), else the next trial fails
    with "Trainable runner reuse requires reset_config()". The actor is told to wait for the epoch instead."""

    def run(config: dict, tasks: "PackedTasks") -> None:
        from ray import tune

        os.environ.setdefault("TUNE_FUNCTION_THREAD_TIMEOUT_S", REUSE_WAIT_S)
        trainable(task_of(config, tune.get_context().get_trial_id(), tasks.unpack()))

    run.__name__ = getattr(trainable, "__name__", "trial")
    return run


def _entry(task: TrialTask, key: str, trial_id: str | None) -> dict:
    from orchestrator.execution.placement import trial_bundle

    _KNOWN[key] = task
    return {"key": key, "id": trial_id, "bundle": trial_bundle(task.trial.resources)}


def study_config(task: TrialTask) -> dict:
    """The Tune config of the study trial of ``task`` (what each point of ``grid_space`` resolves to)."""
    return {TRIAL_KEY: _entry(task, task.trial_id, task.trial_id)}


def grid_space(tasks: list[TrialTask]) -> dict:
    """A study's param space: one Tune trial per task."""
    from ray import tune

    return {TRIAL_KEY: tune.grid_search([study_config(t)[TRIAL_KEY] for t in tasks])}


def sample_space(template: TrialTask, domains: dict) -> dict:
    """A search's param space: ``template.resolve(sampled values)`` is each trial's task."""
    return {TRIAL_KEY: _entry(template, f"search:{template.trial_id}", None), SAMPLE_KEY: domains}


def _tasks_in(param_space: dict) -> dict[str, TrialTask]:
    """The tasks a param space's trials name, by key (what the workers get)."""
    entry = param_space[TRIAL_KEY]
    entries = entry["grid_search"] if "grid_search" in entry else [entry]
    return {e["key"]: _KNOWN[e["key"]] for e in entries}


_UNPACKED: dict[str, dict[str, TrialTask]] = {}  # in a worker: the tasks of the run it serves, by their digest


@dataclass(frozen=True)
class PackedTasks:
    """A run's tasks as the workers get them (through ``tune.with_parameters``): pickled once on the driver and
    unpickled once per worker process. ``with_parameters`` hands every trial its value afresh, and unpickling a
    study's whole table (200 tasks: 15 ms on a 2-core machine) on a reused actor before each trial cost every trial
    time in proportion to the size of the study; bytes cost nothing to hand over."""

    digest: str
    payload: bytes

    @classmethod
    def of(cls, tasks: dict[str, TrialTask]) -> "PackedTasks":
        import hashlib

        import cloudpickle

        payload = cloudpickle.dumps(tasks)
        return cls(hashlib.sha256(payload).hexdigest(), payload)

    def unpack(self) -> dict[str, TrialTask]:
        tasks = _UNPACKED.get(self.digest)
        if tasks is None:
            import pickle

            _UNPACKED.clear()  # a worker serves one run at a time
            tasks = _UNPACKED[self.digest] = pickle.loads(self.payload)
        return tasks


def trial_resources(tasks: list[TrialTask]):
    """What ``tune.with_resources`` gets: one static request when every trial asks for the same (which lets Tune
    reuse actors cheaply), else a function of the trial's config."""
    import json

    from ray import tune

    from orchestrator.execution.placement import trial_bundle

    distinct = {json.dumps(trial_bundle(t.trial.resources), sort_keys=True) for t in tasks}
    if len(distinct) == 1:
        return tune.PlacementGroupFactory([json.loads(distinct.pop())])
    return lambda config: tune.PlacementGroupFactory([config[TRIAL_KEY]["bundle"]])


def sampled_resources(bundle_of: Callable[[dict], dict]):
    """What ``tune.with_resources`` gets for a search whose samples ask for different resources (e.g. a search
    over node types): the bundle ``bundle_of(sampled values)`` per trial."""
    from ray import tune

    return lambda config: tune.PlacementGroupFactory([bundle_of(config.get(SAMPLE_KEY) or {})])


def _tune_trainable(session: RunSession, trainable: Trainable, param_space: dict, resources):
    from ray import tune

    from orchestrator.execution.trainable import named_trial_class

    with_tasks = tune.with_parameters(tune_function(trainable), tasks=PackedTasks.of(_tasks_in(param_space)))
    return named_trial_class(tune.with_resources(with_tasks, resources), session.spec.name)


def _ending_at_final_report(stop):
    """Tune's stopper of a run: a trial ends at its final report (``report_trial_record``), without another round
    trip for the function's return, and when ``stop`` says so."""
    from ray.tune.stopper import CombinedStopper, FunctionStopper

    final = FunctionStopper(lambda trial_id, result: bool(result.get(FINAL_KEY)))
    return final if stop is None else CombinedStopper(final, stop)


# Tuner -> how many trials its run keeps pending (``pending_trials``), read by ``fit``
_PENDING: "weakref.WeakKeyDictionary[Any, int]" = weakref.WeakKeyDictionary()
PENDING_ENV = "TUNE_MAX_PENDING_TRIALS_PG"


def pending_trials(address: str | None, resources) -> int | None:
    """How many trials Tune keeps pending (a placement group requested ahead of a free slot) in a run joined to
    ``address`` (None: the embedded Ray) whose trials ask for ``resources`` (what ``tune.with_resources`` gets).

    Tune's default for grid and random search, max(200, 1.1 x the cluster's CPUs), lets an autoscaler see the
    demand; an embedded run has no autoscaler, and its 200 trials' placement groups, requested at once, cost every
    actor's start (100 trials of 0.2 s on 2 slots: 0.4 s per actor, about 4 % of the run). When every trial asks
    for the same bundle, as many pending trials as fit on the machine at once fill each slot as it frees (a reused
    actor takes the next pending trial). None, Tune's default, on a cluster and for trials of different bundles
    (a few pending trials of a busy kind could then hold back another kind's free slots)."""
    import ray
    from ray import tune

    if address or not isinstance(resources, tune.PlacementGroupFactory) or len(resources.bundles) != 1:
        return None
    total = ray.cluster_resources()
    asked = {k: v for k, v in resources.bundles[0].items() if v > 0}
    return max(1, min((int(total.get(k, 0) // v) for k, v in asked.items()), default=1))


def build_tuner(session: RunSession, trainable: Trainable, param_space: dict, resources, *, callbacks: list,
                stop=None, **tune_config: Any):
    """The Tuner of a run: the run's Tune storage, retries (``execution.max_retries``), one checkpoint kept,
    trials named by their trial id (a search sample by its Tune id), ``callbacks`` on the coordinator; ``tune_config``
    holds what differs (searcher, scheduler, samples, concurrency, actor reuse)."""
    from ray import tune

    storage_path, fs = session.tune_storage()
    tuner = tune.Tuner(
        _tune_trainable(session, trainable, param_space, resources),
        param_space=param_space,
        tune_config=tune.TuneConfig(trial_name_creator=tune_name, trial_dirname_creator=tune_name, **tune_config),
        run_config=tune.RunConfig(
            name="tune", storage_path=storage_path, storage_filesystem=fs,
            failure_config=tune.FailureConfig(max_failures=session.spec.execution.max_retries),
            stop=_ending_at_final_report(stop),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=KEPT_CHECKPOINTS), callbacks=callbacks, verbose=0,
            log_to_file=True,
        ),
    )
    _PENDING[tuner] = pending_trials(session.address, resources)
    return tuner


def restore_tuner(session: RunSession, trainable: Trainable, param_space: dict, resources, *, callbacks: list):
    """The Tuner of a stopped run, from its Tune state (unfinished and errored trials continue); None when the
    run has no Tune state. ``param_space`` is the run's, given again for the objects Tune does not store."""
    from ray import tune

    storage_path, fs = session.tune_storage()
    path = f"{storage_path}/tune"
    if not tune.Tuner.can_restore(path, storage_filesystem=fs):
        return None
    tuner = tune.Tuner.restore(path, _tune_trainable(session, trainable, param_space, resources),
                               resume_unfinished=True, resume_errored=True, storage_filesystem=fs,
                               param_space=param_space)
    local = getattr(tuner, "_local_tuner", None)  # the restored config holds unpickled copies of old callbacks
    if local is not None:
        local.get_run_config().callbacks = callbacks
    _PENDING[tuner] = pending_trials(session.address, resources)
    return tuner


def fit(tuner):
    """Run the Tuner with the driver's cloud credentials kept out of the trial actors' runtime_env, keeping as
    many trials pending as ``pending_trials`` says (unless ``TUNE_MAX_PENDING_TRIALS_PG`` is set: the user's)."""
    from orchestrator.execution.ray_runtime import credentials_kept_out_of_runtime_env

    pending = _PENDING.get(tuner)
    own = pending is not None and PENDING_ENV not in os.environ
    if own:
        os.environ[PENDING_ENV] = str(pending)  # Tune reads it when the run's controller starts
    try:
        with credentials_kept_out_of_runtime_env():
            return tuner.fit()
    finally:
        if own:
            os.environ.pop(PENDING_ENV, None)
