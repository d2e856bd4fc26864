"""What a run shows on the terminal while it runs (stderr), and the same as plain lines in a pipe.

* ``RunNotifier``: the ``notify`` of a run. Lines go out as they are; stage progress
  (``progress(what, done, total)``, e.g. data preparation's decode / augment / write stages) is one live bar
  per stage in a terminal and a line about every tenth of the way in a pipe.
* ``LiveTrials``: a Tune callback with the trials and epochs done and, per running trial, its epoch, loss
  and the metric that matters (the target's or the search's), and an ETA that keeps moving during long first
  epochs: remaining epochs x the mean measured epoch time, or, before any epoch has ended, at least the time
  the running first epochs have taken so far (shown as ``>=``).
"""
from __future__ import annotations

import time
from typing import Callable

from ray.tune import Callback
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from orchestrator.execution.engine import trial_id_of as _trial_id
from workers.config import TrialConfig


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def estimate_remaining(remaining_epochs: int, epoch_times: list[float], running_first_epochs: list[float],
                       slots: int) -> tuple[float | None, bool]:
    """(seconds left, lower bound?) for ``remaining_epochs`` run ``slots`` at a time: the mean of the measured
    ``epoch_times``; before any epoch has ended, the longest of the ``running_first_epochs`` (seconds they have
    run so far) is a lower bound for an epoch, so the estimate grows while they run."""
    if remaining_epochs <= 0:
        return 0.0, False
    slots = max(1, slots)
    if epoch_times:
        return remaining_epochs * (sum(epoch_times) / len(epoch_times)) / slots, False
    if running_first_epochs:
        return remaining_epochs * max(running_first_epochs) / slots, True
    return None, True


class RunNotifier:
    """A run's ``notify``: ``notify(line)`` prints a line on stderr; ``notify.progress(what, done, total)``
    shows a stage's progress (one bar per stage in a terminal, plain lines in a pipe)."""

    def __init__(self, say: Callable[[str], None] | None = None, console: Console | None = None):
        self.console = console or Console(stderr=True, highlight=False)
        self.say = say or (lambda line: self.console.print(line, soft_wrap=True, markup=False))
        self.live = self.console.is_terminal
        self.bars: Progress | None = None
        self.tasks: dict[str, int] = {}
        self.shown: dict[str, int] = {}

    def __call__(self, line: str) -> None:
        if self.bars is not None:
            self.bars.console.print(line, soft_wrap=True, markup=False, highlight=False)
        else:
            self.say(line)

    def progress(self, what: str, done: int, total: int) -> None:
        if not self.live:
            step = (10 * done) // max(total, 1)
            if step > self.shown.get(what, -1):
                self.shown[what] = step
                self.say(f"  {what}: {done}/{total}")
            return
        if self.bars is None:
            self.bars = Progress(TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=self.console, transient=False)
            self.bars.start()
        if what not in self.tasks:
            self.tasks[what] = self.bars.add_task(what, total=total)
        self.bars.update(self.tasks[what], completed=done, total=total)
        if all(t.finished for t in self.bars.tasks):
            self.bars.stop()
            self.bars, self.tasks = None, {}


class LiveTrials(Callback):
    """Live view of a study's trials (see the module docstring); ``metric`` is the column shown per trial."""

    def __init__(self, trials: list[TrialConfig], metric: str, enabled: bool = True, slots: int | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.console = Console(stderr=True, highlight=False)
        self.live_mode = enabled and self.console.is_terminal
        self.plain = enabled and not self.live_mode
        self.metric, self.clock = metric, clock
        self.epochs_by_trial = {t.trial_id: t.epochs for t in trials}
        self.total_epochs = sum(self.epochs_by_trial.values())
        self.n_trials, self.finished = len(trials), 0
        self.slots = slots
        self.rows: dict[str, dict] = {}  # running trial -> epoch, loss, metric, started, epoch_started
        self.seen_epochs: dict[str, int] = {}
        self.epoch_times: list[float] = []
        self.started = clock()
        self.live: Live | None = None

    def __getstate__(self):  # Tune pickles its callbacks with the experiment state; the display stays here
        return {"metric": self.metric, "epochs_by_trial": self.epochs_by_trial}

    def __setstate__(self, state):
        self.__init__([], state["metric"], enabled=False)
        self.epochs_by_trial = state["epochs_by_trial"]

    def __enter__(self):
        if self.live_mode:
            self.live = Live(self.render(), console=self.console, refresh_per_second=2, transient=False,
                             get_renderable=self.render)
            self.live.start()
        return self

    def __exit__(self, *exc):
        if self.live is not None:
            self.live.stop()
            self.live = None
        return False

    def epochs_done(self) -> int:
        return sum(self.seen_epochs.values())

    def eta(self) -> tuple[float | None, bool]:
        now = self.clock()
        first = [now - r["epoch_started"] for r in self.rows.values() if r["epoch"] == 0]
        slots = self.slots or max(1, len(self.rows))
        return estimate_remaining(self.total_epochs - self.epochs_done(), self.epoch_times, first, slots)

    def render(self):
        seconds, lower = self.eta()
        head = (f"Trials {self.finished}/{self.n_trials}   epochs {self.epochs_done()}/{self.total_epochs}   "
                f"elapsed {fmt_seconds(self.clock() - self.started)}   ETA "
                + ("?" if seconds is None else (">= " if lower else "") + fmt_seconds(seconds)))
        table = Table(box=None, pad_edge=False, show_edge=False)
        for col in ("running trial", "epoch", "loss", self.metric, "in trial"):
            table.add_column(col, justify="left" if col == "running trial" else "right",
                             overflow="fold" if col == "running trial" else "ellipsis")
        now = self.clock()
        for tid, r in sorted(self.rows.items()):
            table.add_row(tid, f"{r['epoch']}/{self.epochs_by_trial.get(tid, '?')}", _num(r.get("loss")),
                          _num(r.get("metric")), fmt_seconds(now - r["started"]))
        return Group(head, table) if self.rows else Group(head)

    def _line(self, text: str) -> None:
        if self.live is not None:
            self.live.console.print(text, soft_wrap=True, markup=False, highlight=False)
        elif self.plain:
            self.console.print(text, soft_wrap=True, markup=False, highlight=False)

    def on_trial_start(self, iteration, trials, trial, **info):
        now = self.clock()
        self.rows.setdefault(_trial_id(trial), {"epoch": 0, "started": now, "epoch_started": now})

    def on_trial_result(self, iteration, trials, trial, result, **info):
        tid, now = _trial_id(trial), self.clock()
        epoch = int(result.get("epoch", 0) or 0)
        if not epoch or epoch <= self.seen_epochs.get(tid, 0):
            return
        row = self.rows.setdefault(tid, {"epoch": 0, "started": now, "epoch_started": now})
        if isinstance(result.get("epoch_train_s"), (int, float)):
            self.epoch_times.append(float(result["epoch_train_s"]) + float(result.get("val_s") or 0.0))
        self.seen_epochs[tid] = epoch
        row.update(epoch=epoch, loss=result.get("loss"), metric=result.get(self.metric), epoch_started=now)
        if self.plain:
            self._line(f"  {tid}: epoch {epoch}/{self.epochs_by_trial.get(tid, '?')} loss {_num(result.get('loss'))} "
                       f"{self.metric} {_num(result.get(self.metric))}")

    def _finish(self, trial, status: str) -> None:
        tid = _trial_id(trial)
        self.rows.pop(tid, None)
        self.seen_epochs[tid] = self.epochs_by_trial.get(tid, 0)
        self.finished += 1
        self._line(f"[{self.finished}/{self.n_trials}] {tid}: {status}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finish(trial, "completed")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trial, "failed")


def _num(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"
