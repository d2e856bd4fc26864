"""Ray Tune pieces of a hyperparameter search (imported only when a search runs; see ``search.runner``).

``SearchRecorder`` stores every trial's record; ``FinishingASHAScheduler`` is ASHA that lets a trial finish its
last epoch.
"""
from __future__ import annotations

from typing import Callable

from optuna import logging as optuna_logging
from ray.tune import Callback
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from orchestrator.execution.callbacks import error_text
from orchestrator.execution.trainable import FINAL_KEY, NODE_ID_KEY, numeric, read_checkpoint_record
from orchestrator.records import RunPaths, read_trial_record, write_trial_record
from orchestrator.search.space import base_key, plain, select_base, short, trial_for_sample
from orchestrator.spec.schema import SearchSpec
from workers.records import FINAL_STATUSES, SearchInfo, TrialRecord, TrialStatus

optuna_logging.set_verbosity(optuna_logging.WARNING)
EPOCH_KEYS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "val_f1_macro", "epoch_train_s", "val_s")


def _requested(trial) -> dict[str, float]:
    """The resources Tune requested for ``trial`` (its node type's bundle), without zero entries."""
    try:
        required = trial.placement_group_factory.required_resources
    except Exception:
        return {}
    return {k: float(v) for k, v in required.items() if v}


class FinishingASHAScheduler(ASHAScheduler):
    """ASHA that never stops a trial on its last epoch: the trial then evaluates on the test split and
    reports its record (a plain ASHA with a rung at ``max_t`` would kill it just before that)."""

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if result.get(self._time_attr, 0) >= self._max_t:
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)


class SearchRecorder(Callback):
    """Writes every search trial's record as it ends, including the ones no final report ever comes from.

    * a trial that runs all epochs leaves its record in its final checkpoint: stored with its search entry;
    * a trial the scheduler stops is stored from its last result: status ``stopped_early``;
    * a failed trial is stored as ``failed``; after the run, trials cut by the time budget become
      ``stopped_budget`` and trials still running when the search was interrupted ``interrupted``.
    """

    def __init__(self, store, settings: dict, paths: RunPaths, search: SearchSpec, total: int,
                 notify: Callable[[str], None] | None = None):
        self._store, self.settings, self.paths = store, settings, paths
        self.metric, self.scheduler, self.max_epochs = search.metric, search.scheduler, search.epochs
        self.total, self.notify = total, notify
        self.history: dict[str, dict[int, dict]] = {}
        self.retries: dict[str, int] = {}
        self.written: set[str] = set()
        self.finished = 0
        self.trials: list = []
        self.statuses: dict[str, str] = {}
        self.running_on: dict[str, set[str]] = {}  # Ray node id -> Tune trial ids running there
        self.sharing: dict[str, int] = {}  # Tune trial id -> most trials seen on its node at once (itself included)

    def __getstate__(self):
        # Tune pickles its callbacks with the experiment; the store client and the live state stay here.
        state = dict(self.__dict__)
        state.update(_store=None, trials=[], statuses={}, notify=None)
        return state

    @property
    def store(self):
        if self._store is None:
            from workers.storage import open_store

            self._store = open_store(**self.settings)
        return self._store

    def _say(self, message: str) -> None:
        if self.notify:
            self.notify(message)

    def on_step_begin(self, iteration, trials, **info):
        self.trials = trials

    def on_step_end(self, iteration, trials, **info):
        # Statuses as the loop left them: after an interruption Tune saves this state, then marks live
        # trials TERMINATED while cleaning up; a resume continues the ones that were live here.
        self.trials = trials
        self.statuses = {t.trial_id: t.status for t in trials}

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.retries[trial.trial_id] = self.retries.get(trial.trial_id, 0) + 1

    def _search_entry(self, trial, history: list[dict]) -> SearchInfo:
        return SearchInfo(tune_trial_id=trial.trial_id, hyperparameters={k: plain(v) for k, v in trial.config["hp"].items()},
                          epochs_completed=len(history), epochs_max=self.max_epochs, metric=self.metric,
                          last_result=numeric(history[-1]) if history else {},
                          resources=_requested(trial))

    def _note_node(self, tid: str, node_id: str | None) -> None:
        """Which trials run on the same node at once: their timings (and objectives) are shared-node figures."""
        if not node_id or tid in self.running_on.get(node_id, ()):
            return
        self._forget(tid)
        here = self.running_on.setdefault(node_id, set())
        here.add(tid)
        for other in here:
            self.sharing[other] = max(self.sharing.get(other, 1), len(here))

    def _forget(self, tid: str) -> None:
        for others in self.running_on.values():
            others.discard(tid)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.trials = trials
        self._note_node(trial.trial_id, result.get(NODE_ID_KEY))
        if "epoch" in result and not result.get(FINAL_KEY):
            row = {k: result[k] for k in EPOCH_KEYS if k in result}
            self.history.setdefault(trial.trial_id, {})[int(result["epoch"])] = row

    def _partial(self, trial, status: TrialStatus, error: str | None = None) -> TrialRecord:
        """A record built from the results the coordinator saw (plus an earlier interrupted record's)."""
        trial_cfg = trial_for_sample(select_base(trial.config["bases"], trial.config["hp"]), trial.config["hp"],
                                     trial.trial_id)
        epochs = dict(self.history.get(trial.trial_id, {}))
        earlier = read_trial_record(self.store, self.paths, trial_cfg["trial_id"])
        for row in earlier.history if earlier else []:
            epochs.setdefault(int(row["epoch"]), row)
        history = [epochs[e] for e in sorted(epochs)]
        return TrialRecord(trial_id=trial_cfg["trial_id"], config=trial_cfg, status=status, error=error,
                           history=history, search=self._search_entry(trial, history),
                           retries=self.retries.get(trial.trial_id, 0))

    def _write(self, trial, record: TrialRecord, predictions: str | None = None) -> None:
        self._forget(trial.trial_id)
        if trial.trial_id in self.sharing:
            record = record.model_copy(update={"trials_sharing_node": self.sharing[trial.trial_id]})
        write_trial_record(self.store, self.paths, record, predictions)
        self.written.add(trial.trial_id)
        self._announce(record)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.trials = trials
        if trial.trial_id in self.written:
            return
        base = select_base(trial.config["bases"], trial.config["hp"])
        reason = (trial.config.get("infeasible") or {}).get(base_key(base))
        if reason:
            self._write(trial, self._partial(trial, TrialStatus.INFEASIBLE, reason))
            return
        final = read_checkpoint_record(trial.checkpoint)
        if final is not None:
            record, predictions = final
            record = record.model_copy(update={"search": self._search_entry(trial, record.history),
                                               "retries": self.retries.get(trial.trial_id, 0)})
            self._write(trial, record, predictions)
            return
        record = self._partial(trial, TrialStatus.STOPPED_EARLY)
        n = record.search.epochs_completed
        if self.scheduler == "asha" and 0 < n < self.max_epochs:
            record.error = (f"stopped by ASHA after epoch {n} of {self.max_epochs}: {self.metric} worse than "
                            "the rung cutoff")
        else:
            record.status, record.error = TrialStatus.FAILED, "the trial ended without reporting its record"
        self._write(trial, record)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.trials = trials
        if trial.trial_id not in self.written:
            self._write(trial, self._partial(trial, TrialStatus.FAILED, error_text(trial)))

    def write_missing(self, time_budget_s: float | None) -> int:
        """Record trials Tune ended without a completion (time budget, interruption). Returns how many are
        still unfinished (``interrupted``: a ``--resume`` continues them)."""
        unfinished = 0
        for trial in self.trials:
            if trial.trial_id in self.written:
                continue
            base = select_base(trial.config["bases"], trial.config["hp"])
            trial_id = trial_for_sample(base, {}, trial.trial_id)["trial_id"]
            earlier = read_trial_record(self.store, self.paths, trial_id)
            if earlier is not None and earlier.status.value in FINAL_STATUSES:
                continue  # finished before a resume
            record = self._unfinished(trial, time_budget_s)
            unfinished += record.status is TrialStatus.INTERRUPTED
            write_trial_record(self.store, self.paths, record)
            self.written.add(trial.trial_id)
        return unfinished

    def _unfinished(self, trial, time_budget_s: float | None) -> TrialRecord:
        tune_status = self.statuses.get(trial.trial_id, trial.status)
        if tune_status == "TERMINATED":
            reason = (f"the search's time budget ({time_budget_s:g} s) ran out" if time_budget_s
                      else "the search ended before this trial finished")
            ran = bool(self.history.get(trial.trial_id))
            return self._partial(trial, TrialStatus.STOPPED_BUDGET if ran else TrialStatus.NOT_RUN, reason)
        if tune_status == "ERROR":
            return self._partial(trial, TrialStatus.FAILED, error_text(trial))
        return self._partial(trial, TrialStatus.INTERRUPTED, "the search was interrupted; --resume continues it")

    def _announce(self, record: TrialRecord) -> None:
        self.finished += 1
        s = record.search
        value = s.last_result.get(self.metric)
        hp = ", ".join(f"{k}={short(v)}" for k, v in s.hyperparameters.items())
        self._say(f"[{self.finished}/{self.total}] {record.trial_id}: {record.status.value} after "
                  f"{s.epochs_completed}/{self.max_epochs} epochs, {self.metric} "
                  f"{'-' if value is None else f'{value:.4f}'} ({hp})")
