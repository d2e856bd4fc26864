"""Tune callbacks on the coordinator: live rich progress, and writing each trial's record as it finishes."""
from __future__ import annotations

from pathlib import Path

from ray.tune import Callback
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from orchestrator.records import RunPaths, write_trial_record
from workers.storage import Store
from orchestrator.execution.trainable import read_checkpoint_record
from workers.config import TrialConfig
from workers.records import TrialRecord, TrialStatus


def _trial_id(trial) -> str:
    return trial.config["trial"]["trial_id"]


class TrialRecorder(Callback):
    """Stores every finished or failed trial at once, so no finished work is lost if the driver dies.

    A completed trial's record comes from its final checkpoint (``report_trial_record``); the recorder adds
    what only the coordinator knows (retries, node address, how many trials shared the node) and writes it."""

    def __init__(self, store: Store, paths: RunPaths, trials: dict[str, TrialConfig]):
        self.store, self.paths, self.trials = store, paths, trials
        self.retries: dict[str, int] = {}
        self.written: set[str] = set()
        self.running_on: dict[str, set[str]] = {}  # node ip -> trial ids running there
        self.max_sharing: dict[str, int] = {}  # trial id -> most trials seen on its node at once (itself included)
        self.node_ip: dict[str, str] = {}

    def _note_node(self, tid: str, node_ip: str | None) -> None:
        if not node_ip:
            return
        self._forget(tid)
        self.node_ip[tid] = node_ip
        here = self.running_on.setdefault(node_ip, set())
        here.add(tid)
        for other in here:
            self.max_sharing[other] = max(self.max_sharing.get(other, 1), len(here))

    def _forget(self, tid: str) -> None:
        for others in self.running_on.values():
            others.discard(tid)

    def on_trial_recover(self, iteration, trials, trial, **info):
        tid = _trial_id(trial)
        self.retries[tid] = self.retries.get(tid, 0) + 1

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._note_node(_trial_id(trial), result.get("node_ip"))

    def on_trial_complete(self, iteration, trials, trial, **info):
        tid = _trial_id(trial)
        self._forget(tid)
        final = read_checkpoint_record(trial.checkpoint)
        if final is None:
            self._write_failed(tid, "the trial ended without reporting its record")
            return
        record, predictions = final
        record = record.model_copy(update={"retries": self.retries.get(tid, 0), "node_ip": self.node_ip.get(tid),
                                           "trials_sharing_node": self.max_sharing.get(tid, 1)})
        write_trial_record(self.store, self.paths, record, predictions)
        self.written.add(tid)

    def on_trial_error(self, iteration, trials, trial, **info):
        tid = _trial_id(trial)
        self._forget(tid)
        if tid not in self.written:
            self._write_failed(tid, error_text(trial))

    def unfinished(self) -> list[str]:
        """Trials Tune left without an ending (the run was interrupted): nothing is recorded for them, so a
        resume runs them."""
        return [tid for tid in self.trials
                if tid not in self.written and not self.store.exists(self.paths.trial(tid, "record.json"))]

    def _write_failed(self, tid: str, error: str) -> None:
        write_trial_record(self.store, self.paths, TrialRecord(
            trial_id=tid, config=self.trials[tid].to_dict(), status=TrialStatus.FAILED, error=error,
            retries=self.retries.get(tid, 0), node_ip=self.node_ip.get(tid)))
        self.written.add(tid)


def error_text(trial) -> str:
    """The last line of a failed trial's error (e.g. ``TypeError: cnn() got an unexpected keyword argument``).

    Tune writes the trace to the trial's local folder first and syncs it to storage later, so at
    ``on_trial_error`` time the local file is read when ``get_error`` has nothing yet."""
    text = ""
    try:
        err = trial.get_error()
        text = str(err) if err is not None else ""
        if not text and trial.error_file and Path(trial.error_file).is_file():
            text = Path(trial.error_file).read_text(errors="replace")
    except Exception:
        pass
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:500] if lines else "the trial failed without an error message (see the Tune logs)"


class StudyProgress(Callback):
    """Rich progress: trials done, epochs done with an ETA, and one line per running trial."""

    def __init__(self, trials: list[TrialConfig], enabled: bool = True):
        self.console = Console(stderr=True)
        self.live = enabled and self.console.is_terminal
        self.plain = enabled and not self.live
        self.total_epochs = sum(t.epochs for t in trials)
        self.epochs_by_trial = {t.trial_id: t.epochs for t in trials}
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), console=self.console, transient=False, disable=not self.live,
        )
        self.trials_task = self.progress.add_task("Trials", total=len(trials))
        self.epochs_task = self.progress.add_task("Epochs", total=self.total_epochs)
        self.running: dict[str, int] = {}
        self.seen_epochs: dict[str, int] = {}

    def __getstate__(self):
        # Tune pickles its callbacks with the experiment state; the live display stays in this process.
        return {"total_epochs": self.total_epochs, "epochs_by_trial": self.epochs_by_trial}

    def __setstate__(self, state):
        self.__init__([], enabled=False)
        self.__dict__.update(state)

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def on_trial_start(self, iteration, trials, trial, **info):
        tid = _trial_id(trial)
        if tid not in self.running and self.live:
            self.running[tid] = self.progress.add_task(f"  {tid}", total=self.epochs_by_trial.get(tid, 1))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        tid = _trial_id(trial)
        epoch = int(result.get("epoch", 0) or 0)
        if epoch:
            delta = max(0, epoch - self.seen_epochs.get(tid, 0))
            self.seen_epochs[tid] = max(epoch, self.seen_epochs.get(tid, 0))
            self.progress.advance(self.epochs_task, delta)
            if tid in self.running:
                self.progress.update(self.running[tid], completed=epoch)

    def _finish(self, trial, status: str) -> None:
        tid = _trial_id(trial)
        left = self.epochs_by_trial.get(tid, 0) - self.seen_epochs.get(tid, 0)
        if left > 0:
            self.progress.advance(self.epochs_task, left)
            self.seen_epochs[tid] = self.epochs_by_trial.get(tid, 0)
        self.progress.advance(self.trials_task)
        if tid in self.running:
            self.progress.remove_task(self.running.pop(tid))
        if self.plain:
            done = int(self.progress.tasks[self.trials_task].completed)
            self.console.print(f"[{done}/{self.progress.tasks[self.trials_task].total}] {tid}: {status}", highlight=False)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finish(trial, "completed")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trial, "failed")
