"""Live console progress of a study on the coordinator (rich): trials, epochs with an ETA, one line per
running trial; plain lines when the output is not a terminal."""
from __future__ import annotations

from ray.tune import Callback
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from orchestrator.execution.engine import trial_id_of
from workers.config import TrialConfig


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
        tid = trial_id_of(trial)
        if tid not in self.running and self.live:
            self.running[tid] = self.progress.add_task(f"  {tid}", total=self.epochs_by_trial.get(tid, 1))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        tid = trial_id_of(trial)
        epoch = int(result.get("epoch", 0) or 0)
        if epoch:
            delta = max(0, epoch - self.seen_epochs.get(tid, 0))
            self.seen_epochs[tid] = max(epoch, self.seen_epochs.get(tid, 0))
            self.progress.advance(self.epochs_task, delta)
            if tid in self.running:
                self.progress.update(self.running[tid], completed=epoch)

    def _finish(self, trial, status: str) -> None:
        tid = trial_id_of(trial)
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
