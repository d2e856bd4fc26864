"""Ray Tune pieces of a hyperparameter search (imported only when a search runs; see ``tune_search``).

``SearchRecorder`` stores every trial's record, ``FinishingASHAScheduler`` is ASHA that lets a trial finish its
last epoch, and ``MetricOnlyOptunaSearch`` is OptunaSearch that ignores reports without the metric.
"""
from __future__ import annotations

import json
from typing import Callable

from optuna import logging as optuna_logging
from ray.tune import Callback
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search.optuna import OptunaSearch

from orchestrator.execution.callbacks import error_text as _error_text
from orchestrator.records import RunPaths, write_trial_record
from orchestrator.spec.schema import SearchSpec
from orchestrator.search.runner import _plain, _short, trial_for_sample

optuna_logging.set_verbosity(optuna_logging.WARNING)
EPOCH_KEYS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "val_f1_macro", "epoch_train_s", "val_s")
FINAL_STATUSES = ("completed", "stopped_early", "stopped_budget", "failed", "not_run")


class FinishingASHAScheduler(ASHAScheduler):
    """ASHA that never stops a trial on its last epoch: the trial then evaluates on the test split and
    reports its record (a plain ASHA with a rung at ``max_t`` would kill it just before that)."""

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if result.get(self._time_attr, 0) >= self._max_t:
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)


class MetricOnlyOptunaSearch(OptunaSearch):
    """OptunaSearch that skips results without the metric (a trial's final ``record`` report carries none)."""

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if self.metric in result:
            super().on_trial_result(trial_id, result)


class SearchRecorder(Callback):
    """Writes every search trial's record as it ends, including the ones no final report ever comes from.

    * a trial that runs all epochs reports its record (test metrics, history, timings): stored as is;
    * a trial the scheduler stops is stored from its last result: status ``stopped_early``;
    * a failed trial is stored as ``failed``; after the run, trials cut by the time budget become
      ``stopped_budget`` and trials still running when the search was interrupted ``interrupted``.

    It also copies the last epoch's metrics into the final record result, so the scheduler and the search
    algorithm see them when the trial completes.
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

    def _search_entry(self, trial, history: list[dict], last: dict) -> dict:
        return {
            "tune_trial_id": trial.trial_id,
            "hyperparameters": {k: _plain(v) for k, v in trial.config["hp"].items()},
            "epochs_completed": len(history), "epochs_max": self.max_epochs,
            "metric": self.metric, "last_result": last,
        }

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.trials = trials
        if "record" in result:
            record = json.loads(result["record"])
            history = record.get("history") or []
            last = {k: v for k, v in (history[-1] if history else {}).items() if isinstance(v, (int, float))}
            record["search"] = self._search_entry(trial, history, last)
            record["retries"] = self.retries.get(trial.trial_id, 0)
            write_trial_record(self.store, self.paths, record)
            self.written.add(trial.trial_id)
            # The final report carries no metrics; give the scheduler and the searcher the last epoch's.
            result.update(last)
            self._announce(record)
        elif "epoch" in result:
            row = {k: result[k] for k in EPOCH_KEYS if k in result}
            self.history.setdefault(trial.trial_id, {})[int(result["epoch"])] = row

    def _partial(self, trial, status: str, reason: str | None = None) -> dict:
        """A record built from the results the coordinator saw (plus an earlier interrupted record's)."""
        trial_cfg = trial_for_sample(trial.config["base"], trial.config["hp"], trial.trial_id)
        epochs = dict(self.history.get(trial.trial_id, {}))
        key = self.paths.trial(trial_cfg["trial_id"], "record.json")
        if self.store.exists(key):
            earlier = json.loads(self.store.get_text(key))
            for row in earlier.get("history") or []:
                epochs.setdefault(int(row["epoch"]), row)
        history = [epochs[e] for e in sorted(epochs)]
        last = {k: v for k, v in (history[-1] if history else {}).items() if isinstance(v, (int, float))}
        record = {"trial_id": trial_cfg["trial_id"], "config": trial_cfg, "status": status, "metrics": {},
                  "history": history, "search": self._search_entry(trial, history, last),
                  "retries": self.retries.get(trial.trial_id, 0)}
        if reason:
            record["reason"] = reason
        return record

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.trials = trials
        if trial.trial_id in self.written:
            return
        record = self._partial(trial, "stopped_early")
        n = record["search"]["epochs_completed"]
        if self.scheduler == "asha" and 0 < n < self.max_epochs:
            record["reason"] = (f"stopped by ASHA after epoch {n} of {self.max_epochs}: {self.metric} worse than "
                                "the rung cutoff")
        else:
            record.update(status="failed", reason="the trial ended without reporting its record")
        write_trial_record(self.store, self.paths, record)
        self.written.add(trial.trial_id)
        self._announce(record)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.trials = trials
        if trial.trial_id in self.written:
            return
        record = self._partial(trial, "failed", _error_text(trial))
        write_trial_record(self.store, self.paths, record)
        self.written.add(trial.trial_id)
        self._announce(record)

    def write_missing(self, time_budget_s: float | None) -> int:
        """Record trials Tune ended without a completion (time budget, interruption). Returns how many are
        still unfinished (``interrupted``: a ``--resume`` continues them)."""
        unfinished = 0
        for trial in self.trials:
            if trial.trial_id in self.written:
                continue
            trial_id = trial_for_sample(trial.config["base"], {}, trial.trial_id)["trial_id"]
            key = self.paths.trial(trial_id, "record.json")
            if self.store.exists(key) and json.loads(self.store.get_text(key)).get("status") in FINAL_STATUSES:
                continue  # finished before a resume
            ran = bool(self.history.get(trial.trial_id))
            tune_status = self.statuses.get(trial.trial_id, trial.status)
            if tune_status == "TERMINATED":
                reason = (f"the search's time budget ({time_budget_s:g} s) ran out" if time_budget_s
                          else "the search ended before this trial finished")
                record = self._partial(trial, "stopped_budget" if ran else "not_run", reason)
            elif tune_status == "ERROR":
                record = self._partial(trial, "failed", _error_text(trial))
            else:
                unfinished += 1
                record = self._partial(trial, "interrupted", "the search was interrupted; --resume continues it")
            write_trial_record(self.store, self.paths, record)
            self.written.add(trial.trial_id)
        return unfinished

    def _announce(self, record: dict) -> None:
        self.finished += 1
        s = record["search"]
        value = s["last_result"].get(self.metric)
        hp = ", ".join(f"{k}={_short(v)}" for k, v in s["hyperparameters"].items())
        self._say(f"[{self.finished}/{self.total}] {record['trial_id']}: {record['status']} after "
                  f"{s['epochs_completed']}/{self.max_epochs} epochs, {self.metric} "
                  f"{'-' if value is None else f'{value:.4f}'} ({hp})")
