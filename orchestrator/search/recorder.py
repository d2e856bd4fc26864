"""The search's record writer: the run engine's ``TrialRecorder`` plus what a search records (imported only when
a search runs; see ``search.runner``)."""
from __future__ import annotations

from typing import Callable

from orchestrator.execution.engine import sample_of, trial_id_of, trial_task
from orchestrator.execution.recorder import TrialRecorder, error_text
from orchestrator.execution.trainable import FINAL_KEY, numeric
from orchestrator.run_store import RunPaths, read_trial_record, write_trial_record
from orchestrator.search.space import base_key, plain, short
from orchestrator.spec.schema import SearchSpec
from workers.records import FINAL_STATUSES, SearchInfo, TrialRecord, TrialStatus

EPOCH_KEYS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "val_f1_macro", "epoch_train_s", "val_s")


def _requested(trial) -> dict[str, float]:
    """The resources Tune requested for ``trial`` (its node type's bundle), without zero entries."""
    try:
        required = trial.placement_group_factory.required_resources
    except Exception:
        return {}
    return {k: float(v) for k, v in required.items() if v}


class SearchRecorder(TrialRecorder):
    """Writes every search trial's record as it ends, including the ones no final report ever comes from.

    * a trial that runs all epochs hands its record over in its final result: stored with its search entry;
    * a trial the scheduler stops is stored from its last result: status ``stopped_early``;
    * a sample of a node type no node can run is stored as ``infeasible`` (it returned without training);
    * a failed trial is stored as ``failed``; after the run, trials cut by the time budget become
      ``stopped_budget`` and trials still running when the search was interrupted ``interrupted``.
    """

    def __init__(self, store, paths: RunPaths, search: SearchSpec, total: int,
                 notify: Callable[[str], None] | None = None, local_node: tuple[str, str] | None = None,
                 infeasible: dict[str, str] | None = None):
        super().__init__(store, paths, local_node=local_node)
        self.infeasible = infeasible or {}  # base key (``search.space.base_key``) -> why no node can run it
        self.metric, self.scheduler, self.max_epochs = search.metric, search.scheduler, search.epochs
        self.total, self.notify = total, notify
        self.history: dict[str, dict[int, dict]] = {}  # trial id -> epoch -> result row
        self.finished = 0
        self.tune_trials: list = []
        self.statuses: dict[str, str] = {}

    def __getstate__(self):
        # Tune pickles its callbacks with the experiment; the store client and the live state stay here.
        state = dict(self.__dict__)
        state.update(store=None, tune_trials=[], statuses={}, notify=None)
        return state

    def on_step_begin(self, iteration, trials, **info):
        self.tune_trials = trials

    def on_step_end(self, iteration, trials, **info):
        # Statuses as the loop left them: after an interruption Tune saves this state, then marks live
        # trials TERMINATED while cleaning up; a resume continues the ones that were live here.
        self.tune_trials = trials
        self.statuses = {t.trial_id: t.status for t in trials}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        super().on_trial_result(iteration, trials, trial, result, **info)
        if "epoch" in result and not result.get(FINAL_KEY):
            row = {k: result[k] for k in EPOCH_KEYS if k in result}
            self.history.setdefault(trial_id_of(trial), {})[int(result["epoch"])] = row

    def _search_entry(self, trial, history: list[dict]) -> SearchInfo:
        return SearchInfo(tune_trial_id=trial.trial_id,
                          hyperparameters={k: plain(v) for k, v in sample_of(trial).items()},
                          epochs_completed=len(history), epochs_max=self.max_epochs, metric=self.metric,
                          last_result=numeric(history[-1]) if history else {},
                          resources=_requested(trial))

    def _partial(self, trial, status: TrialStatus, error: str | None = None) -> TrialRecord:
        """A record built from the results the coordinator saw (plus an earlier interrupted record's)."""
        task = trial_task(trial)
        epochs = dict(self.history.get(task.trial_id, {}))
        earlier = read_trial_record(self.store, self.paths, task.trial_id)
        for row in earlier.history if earlier else []:
            epochs.setdefault(int(row["epoch"]), row)
        history = [epochs[e] for e in sorted(epochs)]
        return TrialRecord(trial_id=task.trial_id, config=task.trial.to_dict(), status=status, error=error,
                           history=history, search=self._search_entry(trial, history),
                           **self.coordinator_fields(task.trial_id))

    def on_trial_complete(self, iteration, trials, trial, **info):
        reason = self.infeasible.get(base_key(trial_task(trial).trial.to_dict()))
        if reason is None:
            super().on_trial_complete(iteration, trials, trial, **info)
            return
        self._forget(trial_id_of(trial))
        if trial_id_of(trial) not in self.written:  # returned without training: no node can run its node type
            self.write(self._partial(trial, TrialStatus.INFEASIBLE, reason))

    def completed(self, trial, record: TrialRecord) -> TrialRecord:
        return super().completed(trial, record).model_copy(update={"search": self._search_entry(trial, record.history)})

    def without_final(self, trial) -> TrialRecord:
        record = self._partial(trial, TrialStatus.STOPPED_EARLY)
        n = record.search.epochs_completed
        if self.scheduler == "asha" and 0 < n < self.max_epochs:
            record.error = (f"stopped by ASHA after epoch {n} of {self.max_epochs}: {self.metric} worse than "
                            "the rung cutoff")
        else:
            record.status, record.error = TrialStatus.FAILED, "the trial ended without reporting its record"
        return record

    def failed(self, trial, error: str) -> TrialRecord:
        return self._partial(trial, TrialStatus.FAILED, error)

    def write_missing(self, time_budget_s: float | None) -> int:
        """Record trials Tune ended without a completion (time budget, interruption). Returns how many are
        still unfinished (``interrupted``: a ``--resume`` continues them)."""
        unfinished = 0
        for trial in self.tune_trials:
            tid = trial_id_of(trial)
            if tid in self.written:
                continue
            earlier = read_trial_record(self.store, self.paths, tid)
            if earlier is not None and earlier.status.value in FINAL_STATUSES:
                continue  # finished before a resume
            record = self._unfinished(trial, time_budget_s)
            unfinished += record.status is TrialStatus.INTERRUPTED
            write_trial_record(self.store, self.paths, record)
            self.written.add(tid)
        return unfinished

    def _unfinished(self, trial, time_budget_s: float | None) -> TrialRecord:
        tune_status = self.statuses.get(trial.trial_id, trial.status)
        if tune_status == "TERMINATED":
            reason = (f"the search's time budget ({time_budget_s:g} s) ran out" if time_budget_s
                      else "the search ended before this trial finished")
            ran = bool(self.history.get(trial_id_of(trial)))
            return self._partial(trial, TrialStatus.STOPPED_BUDGET if ran else TrialStatus.NOT_RUN, reason)
        if tune_status == "ERROR":
            return self._partial(trial, TrialStatus.FAILED, error_text(trial))
        return self._partial(trial, TrialStatus.INTERRUPTED, "the search was interrupted; --resume continues it")

    def announce(self, record: TrialRecord) -> None:
        self.finished += 1
        if not self.notify:
            return
        s = record.search
        value = s.last_result.get(self.metric)
        hp = ", ".join(f"{k}={short(v)}" for k, v in s.hyperparameters.items())
        self.notify(f"[{self.finished}/{self.total}] {record.trial_id}: {record.status.value} after "
                    f"{s.epochs_completed}/{self.max_epochs} epochs, {self.metric} "
                    f"{'-' if value is None else f'{value:.4f}'} ({hp})")
