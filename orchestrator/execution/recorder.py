"""The one record writer of studies and searches: a Tune callback on the coordinator that stores every trial's
record the moment the trial ends, so no finished work is lost if the driver dies."""
from __future__ import annotations

from pathlib import Path

from ray.tune import Callback

from orchestrator.execution.engine import trial_id_of, trial_task
from orchestrator.execution.trainable import MODEL_DIR, NODE_ID_KEY, take_final_record
from orchestrator.run_store import RunPaths, write_trial_record
from workers.config import TrialConfig
from workers.error_text import last_line
from workers.records import DeviceInfo, TrialRecord, TrialStatus
from workers.storage import Store


class TrialRecorder(Callback):
    """Stores every finished or failed trial at once.

    A completed trial's record comes in its final result (``report_trial_record``), which the recorder takes out
    before Tune stores the result (Tune lets callbacks change a result in place; the recorder is the run's first
    callback), and its kept model in its final checkpoint; the recorder adds
    what only the coordinator knows (retries, the Ray node of every attempt, how many trials shared the node)
    and writes it. Nodes are told apart by their Ray node id (several nodes can share one IP address). On a
    single-node (embedded) run ``local_node`` = (node id, address) names the node without asking each actor.

    Searches extend it (``orchestrator.search.recorder``) through ``completed``, ``without_final``,
    ``failed`` and ``announce``."""

    def __init__(self, store: Store, paths: RunPaths, trials: dict[str, TrialConfig] | None = None,
                 local_node: tuple[str, str] | None = None, keeper=None):
        self.store, self.paths, self.trials, self.local_node = store, paths, trials or {}, local_node
        self.keeper = keeper  # an ``orchestrator.models.ModelKeeper``: offered each completed trial's model
        self.retries: dict[str, int] = {}
        self.written: set[str] = set()
        self.running_on: dict[str, set[str]] = {}  # node id -> trial ids running there
        self.max_sharing: dict[str, int] = {}  # trial id -> most trials seen on its node at once (itself included)
        self.shared_with: dict[str, set[str]] = {}  # trial id -> other trials seen on its node while it ran
        self.node_ip: dict[str, str] = {}
        self.attempt_nodes: dict[str, list[str]] = {}  # trial id -> node id of each attempt, in order
        self.finals: dict[str, tuple[TrialRecord, dict[str, str]]] = {}  # trial id -> its final result's record

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
            self.shared_with.setdefault(other, set()).update(here - {other})

    def _forget(self, tid: str) -> None:
        for others in self.running_on.values():
            others.discard(tid)

    def on_trial_start(self, iteration, trials, trial, **info):
        located = {NODE_ID_KEY: self.local_node[0], "node_ip": self.local_node[1]} if self.local_node \
            else actor_location(trial)
        self._note_node(trial_id_of(trial), located.get(NODE_ID_KEY), located.get("node_ip"))

    def on_trial_recover(self, iteration, trials, trial, **info):
        tid = trial_id_of(trial)
        self._forget(tid)
        self.retries[tid] = self.retries.get(tid, 0) + 1

    def on_trial_result(self, iteration, trials, trial, result, **info):
        tid = trial_id_of(trial)
        self._note_node(tid, result.get(NODE_ID_KEY), result.get("node_ip"))
        final = take_final_record(result)
        if final is not None:
            self.finals[tid] = final

    def on_trial_complete(self, iteration, trials, trial, **info):
        tid = trial_id_of(trial)
        self._forget(tid)
        if tid in self.written:
            return
        final = self.finals.pop(tid, None)
        if final is None:
            self.write(self.without_final(trial))
            return
        record, predictions = final
        record = self.completed(trial, record)
        if self.keeper is not None and record.status is TrialStatus.COMPLETED and trial.checkpoint is not None:
            with trial.checkpoint.as_directory() as folder:  # the model first: a record means all is stored
                self.keeper.offer(record, Path(folder) / MODEL_DIR)
        self.write(record, predictions)
        if trial.checkpoint is not None:
            remove_checkpoints(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        tid = trial_id_of(trial)
        self._forget(tid)
        self.finals.pop(tid, None)
        if tid not in self.written:
            self.write(self.failed(trial, error_text(trial)))

    def coordinator_fields(self, tid: str) -> dict:
        """What only the coordinator knows about a trial: retries and the node of every attempt."""
        attempts = self.attempt_nodes.get(tid, [])
        return {"retries": self.retries.get(tid, 0), "node_ip": self.node_ip.get(tid), "attempt_nodes": attempts,
                "trials_sharing_node": self.max_sharing.get(tid, 1),
                "shared_with": sorted(self.shared_with.get(tid, ()))}

    def completed(self, trial, record: TrialRecord) -> TrialRecord:
        """The record of a trial that reported its own, with the coordinator's fields added."""
        return record.model_copy(update=self.coordinator_fields(record.trial_id))

    def without_final(self, trial) -> TrialRecord:
        """The record of a trial that ended without reporting its record."""
        return self.failed(trial, "the trial ended without reporting its record")

    def failed(self, trial, error: str) -> TrialRecord:
        """A ``failed`` record: the error line, retries, the node of every attempt and the device asked for."""
        task = trial_task(trial)
        attempts = self.attempt_nodes.get(task.trial_id, [])
        return TrialRecord(trial_id=task.trial_id, config=task.trial.to_dict(), status=TrialStatus.FAILED, error=error,
                           retries=self.retries.get(task.trial_id, 0), node_id=attempts[-1] if attempts else None,
                           node_ip=self.node_ip.get(task.trial_id), attempt_nodes=attempts,
                           device=requested_device(task.trial))

    def write(self, record: TrialRecord, predictions: str | dict[str, str] | None = None) -> None:
        """Store ``record`` (and its predictions: test, and validation where given by file name) now."""
        write_trial_record(self.store, self.paths, record, predictions)
        self.written.add(record.trial_id)
        self.announce(record)

    def announce(self, record: TrialRecord) -> None:
        """Called after each record is stored (a search prints a line)."""

    def unfinished(self) -> list[str]:
        """Trials Tune left without an ending (the run was interrupted): nothing is recorded for them, so a
        resume runs them."""
        return [tid for tid in self.trials
                if tid not in self.written and not self.store.exists(self.paths.trial(tid, "record.json"))]


def remove_checkpoints(trial) -> None:
    """Delete the Tune checkpoints of a finished trial whose record (and kept model) is stored: nothing reads
    them again (a study resumes from its records, a search's restore skips finished trials)."""
    import pyarrow.fs

    try:
        fs, folder = trial.storage.storage_filesystem, trial.storage.trial_fs_path
        for info in fs.get_file_info(pyarrow.fs.FileSelector(folder, allow_not_found=True)):
            if info.type == pyarrow.fs.FileType.Directory and info.base_name.startswith("checkpoint_"):
                fs.delete_dir(info.path)
    except Exception:  # storage trouble here loses nothing: the record is stored
        pass


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


