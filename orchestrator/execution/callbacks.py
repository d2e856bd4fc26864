"""Tune callbacks on the coordinator: writing each trial's record as it finishes, and watching what waiting
trials wait for (the live console view is ``orchestrator.execution.console``)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from ray.tune import Callback
from ray.tune.stopper import Stopper

from orchestrator.run_lines import QUEUE_PREFIX
from orchestrator.records import RunPaths, write_trial_record
from orchestrator.spec.node_types import NodeCapacity, infeasibility_reason
from workers.storage import Store
from orchestrator.execution.trainable import MODEL_DIR, NODE_ID_KEY, read_checkpoint_record
from workers.config import TrialConfig
from workers.records import DeviceInfo, TrialRecord, TrialStatus
from workers.error_text import last_line


def _trial_id(trial) -> str:
    return trial.config["trial"]["trial_id"]


class TrialRecorder(Callback):
    """Stores every finished or failed trial at once, so no finished work is lost if the driver dies.

    A completed trial's record comes from its final checkpoint (``report_trial_record``); the recorder adds
    what only the coordinator knows (retries, the Ray node of every attempt, how many trials shared the node)
    and writes it. Nodes are told apart by their Ray node id (several nodes can share one IP address)."""

    def __init__(self, store: Store, paths: RunPaths, trials: dict[str, TrialConfig], keeper=None):
        self.store, self.paths, self.trials = store, paths, trials
        self.keeper = keeper  # an ``orchestrator.models.ModelKeeper``: offered each completed trial's model
        self.retries: dict[str, int] = {}
        self.written: set[str] = set()
        self.running_on: dict[str, set[str]] = {}  # node id -> trial ids running there
        self.max_sharing: dict[str, int] = {}  # trial id -> most trials seen on its node at once (itself included)
        self.node_ip: dict[str, str] = {}
        self.attempt_nodes: dict[str, list[str]] = {}  # trial id -> node id of each attempt, in order

    def _note_node(self, tid: str, node_id: str | None, node_ip: str | None = None) -> None:
        if not node_id:
            return
        if node_ip:
            self.node_ip[tid] = node_ip
        attempts = self.attempt_nodes.setdefault(tid, [])
        if tid in self.running_on.get(node_id, ()):
            return
        self._forget(tid)
        attempts.append(node_id)
        here = self.running_on.setdefault(node_id, set())
        here.add(tid)
        for other in here:
            self.max_sharing[other] = max(self.max_sharing.get(other, 1), len(here))

    def _forget(self, tid: str) -> None:
        for others in self.running_on.values():
            others.discard(tid)

    def on_trial_start(self, iteration, trials, trial, **info):
        located = actor_location(trial)
        self._note_node(_trial_id(trial), located.get(NODE_ID_KEY), located.get("node_ip"))

    def on_trial_recover(self, iteration, trials, trial, **info):
        tid = _trial_id(trial)
        self._forget(tid)
        self.retries[tid] = self.retries.get(tid, 0) + 1

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._note_node(_trial_id(trial), result.get(NODE_ID_KEY), result.get("node_ip"))

    def on_trial_complete(self, iteration, trials, trial, **info):
        tid = _trial_id(trial)
        self._forget(tid)
        if tid in self.written:
            return
        final = read_checkpoint_record(trial.checkpoint)
        if final is None:
            self.write_failed(tid, "the trial ended without reporting its record")
            return
        record, predictions = final
        record = record.model_copy(update={"retries": self.retries.get(tid, 0), "node_ip": self.node_ip.get(tid),
                                           "attempt_nodes": self.attempt_nodes.get(tid, []),
                                           "trials_sharing_node": self.max_sharing.get(tid, 1)})
        if self.keeper is not None and record.status is TrialStatus.COMPLETED:
            with trial.checkpoint.as_directory() as folder:  # the model first: a record means all is stored
                self.keeper.offer(record, Path(folder) / MODEL_DIR)
        write_trial_record(self.store, self.paths, record, predictions)
        self.written.add(tid)

    def on_trial_error(self, iteration, trials, trial, **info):
        tid = _trial_id(trial)
        self._forget(tid)
        if tid not in self.written:
            self.write_failed(tid, error_text(trial))

    def unfinished(self) -> list[str]:
        """Trials Tune left without an ending (the run was interrupted): nothing is recorded for them, so a
        resume runs them."""
        return [tid for tid in self.trials
                if tid not in self.written and not self.store.exists(self.paths.trial(tid, "record.json"))]

    def write_failed(self, tid: str, error: str) -> None:
        """A ``failed`` record: the error line, retries, the node of every attempt and the device asked for."""
        trial, attempts = self.trials[tid], self.attempt_nodes.get(tid, [])
        write_trial_record(self.store, self.paths, TrialRecord(
            trial_id=tid, config=trial.to_dict(), status=TrialStatus.FAILED, error=error,
            retries=self.retries.get(tid, 0), node_id=attempts[-1] if attempts else None,
            node_ip=self.node_ip.get(tid), attempt_nodes=attempts, device=requested_device(trial)))
        self.written.add(tid)


WAITING_NOTE_S = 15.0  # trials pending this long with none running wait for resources (not for actors to start)


class ResourceWatch(Callback):
    """What the study's trials wait for, checked every few seconds on the driver.

    * On a cluster, a line in the driver's output when trials wait while none has run for ``WAITING_NOTE_S``
      (``Queue: waiting for resources: ...``) and one when they run again (``Queue: running ...``);
      ``orchestrator status`` and ``list`` show the last one.
    * Trials waiting for resources no live node (nor an autoscaler node type) offers any more, e.g. a retry whose
      node was the only one of its kind, are recorded failed with the reason after ``timeout_s``; once every
      unfinished trial is such a trial, ``stop_all`` ends the study instead of letting it hang.
    """

    def __init__(self, recorder: TrialRecorder, nodes: Callable[[], list[NodeCapacity]], timeout_s: float,
                 notify: Callable[[str], None] | None, check_every_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        self.recorder, self.nodes, self.timeout_s, self.clock = recorder, nodes, timeout_s, clock
        self.notify = notify or (lambda line: None)
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
        now = self.clock()
        if self.recorder is None or now - self.last_check < self.check_every_s:
            return
        self.last_check = now
        open_trials = [t for t in trials if t.status not in ("TERMINATED", "ERROR") and _trial_id(t) not in self.given_up]
        pending = [t for t in open_trials if t.status == "PENDING"]
        if pending:
            self._give_up_unrunnable(pending, now)
        remaining = [t for t in open_trials if _trial_id(t) not in self.given_up]
        self.stop = bool(self.given_up) and not remaining
        self._report_queue(remaining, now)

    def _give_up_unrunnable(self, pending: list, now: float) -> None:
        nodes = self.nodes()
        for trial in pending:
            tid = _trial_id(trial)
            reason = infeasibility_reason({k: float(v) for k, v in trial.config["trial"]["resources"].items()}, nodes)
            if reason is None:
                self.unrunnable_since.pop(tid, None)
                continue
            since = self.unrunnable_since.setdefault(tid, now)
            if now - since >= self.timeout_s:
                lost = self.recorder.attempt_nodes.get(tid, [])
                where = f"its node {lost[-1][:12]} was lost and " if lost else ""
                self.recorder.write_failed(tid, f"{where}no node of type '{trial.config['trial']['node_type']}' "
                                                f"is left to run it (waited {self.timeout_s:g}s): {reason}")
                self.given_up.add(tid)

    def _report_queue(self, open_trials: list, now: float) -> None:
        """A line when no trial has run for ``WAITING_NOTE_S`` while some wait (starting actors are not waiting),
        and one when trials run again."""
        running = sum(1 for t in open_trials if t.status == "RUNNING")
        pending = [t for t in open_trials if t.status == "PENDING"]
        if running or not pending:
            self.waiting_since = None
            if running and self.last_state == "waiting":
                self.notify(f"{QUEUE_PREFIX} running ({running} trial(s) running, {len(pending)} waiting)")
                self.last_state = "running"
            return
        self.waiting_since = self.waiting_since or now
        if self.last_state != "waiting" and now - self.waiting_since >= WAITING_NOTE_S:
            needs = sorted({", ".join(f"{k}={v:g}" for k, v in sorted(t.config["trial"]["resources"].items()))
                            for t in pending})
            self.notify(f"{QUEUE_PREFIX} waiting for resources: {len(pending)} trial(s) need "
                                        f"{' | '.join(needs)}")
            self.last_state = "waiting"


class WatchStopper(Stopper):
    """Tune's stopper for ``ResourceWatch``: ends the experiment once only unrunnable trials are left."""

    def __init__(self, watch: ResourceWatch):
        self.watch = watch

    def __call__(self, trial_id, result) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.watch.stop


def requested_device(trial: TrialConfig) -> DeviceInfo:
    """The device a trial asked for, for a record of a trial that never reported its own."""
    from workers.device import expected_kind

    return DeviceInfo(requested=trial.node_type, expected_kind=expected_kind(trial.resources), used={},
                      backend=trial.framework)


def actor_location(trial) -> dict:
    """Tune's auto-filled result of the trial's live actor (``node_id``, ``node_ip``, ``pid``); {} if there is
    none or it does not answer within seconds."""
    import ray

    actor = getattr(trial.temporary_state, "ray_actor", None)
    if actor is None:
        return {}
    try:
        return ray.get(actor.get_auto_filled_metrics.remote(debug_metrics_only=True), timeout=10)
    except Exception:
        return {}


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
    return last_line(text, "the trial failed without an error message (see the Tune logs)", 500)

