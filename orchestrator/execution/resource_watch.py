"""What a study's trials wait for, watched on the coordinator: the run's queue state (run.json's ``queue``, read
by ``orchestrator status`` / ``list``) and the lost-node policy (trials no node can run any more are recorded failed, and the study ends)."""
from __future__ import annotations

import time
from typing import Callable

from ray.tune import Callback
from ray.tune.stopper import Stopper

from orchestrator.execution.engine import trial_id_of, trial_task
from orchestrator.execution.recorder import TrialRecorder
from orchestrator.run_store import QueueState
from orchestrator.spec.node_types import NodeCapacity, infeasibility_reason


WAITING_NOTE_S = 15.0  # trials pending this long with none running wait for resources (not for actors to start)


class ResourceWatch(Callback):
    """What the study's trials wait for, checked every few seconds on the driver.

    * The run's queue state (``QueueState``, passed to ``on_queue``: run.json's ``queue``, which ``orchestrator
      status`` and ``list`` show) whenever it changes: waiting once trials wait while none has run for
      ``WAITING_NOTE_S``, running with the counts otherwise. On a cluster also a line in the driver's output when
      trials start waiting (``Queue: waiting for resources: ...``) and one when they run again.
    * Trials waiting for resources no live node (nor an autoscaler node type) offers any more, e.g. a retry whose
      node was the only one of its kind, are recorded failed with the reason after ``timeout_s``; once every
      unfinished trial is such a trial, ``stop_all`` ends the study instead of letting it hang.
    """

    def __init__(self, recorder: TrialRecorder, nodes: Callable[[], list[NodeCapacity]], timeout_s: float,
                 notify: Callable[[str], None] | None, check_every_s: float = 5.0,
                 on_queue: Callable[[QueueState], None] | None = None):
        self.recorder, self.nodes, self.timeout_s = recorder, nodes, timeout_s
        self.notify = notify or (lambda line: None)
        self.on_queue = on_queue or (lambda queue: None)
        self.last_queue: tuple | None = None
        self.check_every_s, self.last_check, self.last_state = check_every_s, 0.0, ""
        self.waiting_since: float | None = None
        self.unrunnable_since: dict[str, float] = {}
        self.given_up: set[str] = set()
        self.stop = False

    def __getstate__(self):  # Tune pickles its callbacks with the experiment state; the watch stays here
        return {}

    def __setstate__(self, state):
        self.__init__(None, list, 0.0, None)

    def on_step_begin(self, iteration, trials, **info):
        now = time.monotonic()
        if self.recorder is None or now - self.last_check < self.check_every_s:
            return
        self.last_check = now
        self.check(trials, now)

    def check(self, trials: list, now: float) -> None:
        """One look at ``trials`` (Tune's trials) at monotonic time ``now``: give up on unrunnable trials, say
        what the queue waits for, and decide whether the study must stop."""
        open_trials = [t for t in trials if t.status not in ("TERMINATED", "ERROR") and trial_id_of(t) not in self.given_up]
        pending = [t for t in open_trials if t.status == "PENDING"]
        if pending:
            self._give_up_unrunnable(pending, now)
        remaining = [t for t in open_trials if trial_id_of(t) not in self.given_up]
        self.stop = bool(self.given_up) and not remaining
        self._report_queue(remaining, now)

    def _give_up_unrunnable(self, pending: list, now: float) -> None:
        nodes = self.nodes()
        for trial in pending:
            task = trial_task(trial)
            tid = task.trial_id
            reason = infeasibility_reason({k: float(v) for k, v in task.trial.resources.items()}, nodes)
            if reason is None:
                self.unrunnable_since.pop(tid, None)
                continue
            since = self.unrunnable_since.setdefault(tid, now)
            if now - since >= self.timeout_s:
                lost = self.recorder.attempt_nodes.get(tid, [])
                where = f"its node {lost[-1][:12]} was lost and " if lost else ""
                self.recorder.write(self.recorder.failed(trial, f"{where}no node of type '{task.trial.node_type}' "
                                                         f"is left to run it (waited {self.timeout_s:g}s): {reason}"))
                self.given_up.add(tid)

    def _report_queue(self, open_trials: list, now: float) -> None:
        """The queue state when it changed; a line when no trial has run for ``WAITING_NOTE_S`` while some wait
        (starting actors are not waiting), and one when trials run again."""
        running = sum(1 for t in open_trials if t.status == "RUNNING")
        pending = [t for t in open_trials if t.status == "PENDING"]
        if running or not pending:
            self.waiting_since = None
            queue = QueueState(state="running", running=running, waiting=len(pending))
            if running and self.last_state == "waiting":
                self.notify(queue.console_line())
                self.last_state = "running"
            self._set_queue(queue)
            return
        self.waiting_since = self.waiting_since or now
        if now - self.waiting_since >= WAITING_NOTE_S:
            needs = sorted({", ".join(f"{k}={v:g}" for k, v in sorted(trial_task(t).trial.resources.items()))
                            for t in pending})
            queue = QueueState(state="waiting", waiting=len(pending), needs=needs)
            if self.last_state != "waiting":
                self.notify(queue.console_line())
                self.last_state = "waiting"
            self._set_queue(queue)

    def _set_queue(self, queue: QueueState) -> None:
        key = (queue.state, queue.running, queue.waiting, tuple(queue.needs))
        if key != self.last_queue:
            self.last_queue = key
            self.on_queue(queue)


class WatchStopper(Stopper):
    """Tune's stopper for ``ResourceWatch``: ends the experiment once only unrunnable trials are left."""

    def __init__(self, watch: ResourceWatch):
        self.watch = watch

    def __call__(self, trial_id, result) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.watch.stop


