"""Where a run's files live in the store, and reading/writing trial records.

Layout: ``<experiment>/<run_id>/{spec.yaml, run.json (the run's start, end, counts and queue state), trials/<trial_id>/{record.json,
predictions.csv, val_predictions.csv, history.csv}, report/..., tune/...}``; prepared data is shared under ``cache/prepared/<key>/``
(its shards and index, ``cache_key_path``).
"""
from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, Field

from workers.records import TrialRecord, TrialStatus
from workers.storage import Store

log = logging.getLogger(__name__)

class QueueState(BaseModel):
    """What a run's trials (or, before they start, its device probes) last waited for, as its driver saw it:
    run.json's ``queue``, which ``orchestrator list`` / ``status`` read (they read no logs)."""

    state: Literal["waiting", "running"]
    running: int = 0
    waiting: int = 0
    of: Literal["trials", "device probes"] = "trials"
    needs: list[str] = Field(default_factory=list)  # the resource requests that wait, e.g. "CPU=1, GPU=1"
    updated: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat())

    def describe(self) -> str:
        """One line: ``waiting for resources: 2 trial(s) need CPU=1 | CPU=1, GPU=1`` or ``running (...)``."""
        if self.state == "running":
            return f"running ({self.running} trial(s) running, {self.waiting} waiting)"
        if self.of == "device probes":
            return f"waiting for resources: {self.waiting} device probe(s) wait for a free node of their type"
        return f"waiting for resources: {self.waiting} trial(s) need {' | '.join(self.needs)}"

    def console_line(self) -> str:
        """The line the driver prints when the state changes (for people reading its output; nothing parses it)."""
        return f"Queue: {self.describe()}"


def run_state(info: dict | None) -> str | None:
    """A run's state in one line from its run.json: ``finished (completed: 3)`` (or ``interrupted (...)``), its
    queue state, or
    ``started (N trials)``; None without a run.json (the driver has not got that far)."""
    if not info:
        return None
    if info.get("finished"):
        counts = ", ".join(f"{k}: {v}" for k, v in sorted((info.get("counts") or {}).items()))
        ended = "interrupted" if info.get("interrupted") else "finished"
        if info.get("interrupted"):
            counts = ", ".join(filter(None, [counts, f"{len(info.get('unfinished') or [])} trial(s) unfinished"]))
        return f"{ended} ({counts})" if counts else ended
    if info.get("queue"):
        return QueueState.model_validate(info["queue"]).describe()
    if info.get("started"):
        return f"started ({info.get('n_trials', '?')} trials)"
    return None


@dataclass(frozen=True)
class RunPaths:
    """The store keys of one run."""

    experiment: str
    run_id: str

    @property
    def root(self) -> str:
        return f"{self.experiment}/{self.run_id}"

    def trial(self, trial_id: str, name: str) -> str:
        return f"{self.root}/trials/{trial_id}/{name}"

    def report(self, name: str) -> str:
        return f"{self.root}/report/{name}"

    @property
    def spec(self) -> str:
        return f"{self.root}/spec.yaml"

    @property
    def run_info(self) -> str:
        return f"{self.root}/run.json"


def cache_key_path(key: str) -> str:
    """Folder (key prefix) of a prepared setting's shards and index in the store."""
    return f"cache/prepared/{key}"


def history_csv(history: list[dict]) -> str:
    """Per-epoch rows as CSV (columns: every key any row has, sorted)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=sorted({k for row in history for k in row}))
    writer.writeheader()
    writer.writerows(history)
    return buf.getvalue()


def write_trial_record(store: Store, paths: RunPaths, record: TrialRecord,
                       predictions: str | dict[str, str] | None = None) -> None:
    """Persist one trial: predictions (the test ``predictions.csv`` text, or CSV texts by file name, e.g. also
    ``val_predictions.csv``) and history beside the record; the record is written last."""
    tid = record.trial_id
    files = {"predictions.csv": predictions} if isinstance(predictions, str) else dict(predictions or {})
    for name, text in sorted(files.items()):
        if text:
            store.put_text(paths.trial(tid, name), text, "text/csv")
    if record.history:
        store.put_text(paths.trial(tid, "history.csv"), history_csv(record.history), "text/csv")
    store.put_text(paths.trial(tid, "record.json"), json.dumps(record.to_dict(), indent=1), "application/json")


def read_trial_record(store: Store, paths: RunPaths, trial_id: str) -> TrialRecord | None:
    """The stored record of one trial; None when there is none or it cannot be read (it is then rewritten)."""
    key = paths.trial(trial_id, "record.json")
    if not store.exists(key):
        return None
    try:
        return TrialRecord.model_validate_json(store.get_text(key))
    except ValueError:
        return None


def scan_trial_records(store: Store, paths: RunPaths) -> tuple[list[TrialRecord], list[str]]:
    """Every readable record of a run, and one ``"<key> (why)"`` per ``record.json`` that is not a record
    (invalid JSON, empty, binary, an unknown status, ...)."""
    keys = [k for k in store.list(f"{paths.root}/trials/") if k.endswith("/record.json")]
    records, unreadable = [], []
    for key in keys:
        try:
            records.append(TrialRecord.model_validate_json(store.get_text(key)))
        except ValueError as err:  # pydantic's ValidationError and UnicodeDecodeError are ValueErrors
            why = "not UTF-8 text" if isinstance(err, UnicodeDecodeError) else "not a trial record"
            unreadable.append(f"{key} ({why})")
    return records, unreadable


def read_trial_records(store: Store, paths: RunPaths) -> list[TrialRecord]:
    """The readable records of a run; unreadable ones are left out with a warning (``scan_trial_records``)."""
    records, unreadable = scan_trial_records(store, paths)
    if unreadable:
        log.warning("run %s: %d unreadable record(s) left out, e.g. %s", paths.root, len(unreadable), unreadable[0])
    return records


def completed_trial_ids(store: Store, paths: RunPaths) -> set[str]:
    return {r.trial_id for r in read_trial_records(store, paths) if r.status is TrialStatus.COMPLETED}


def status_counts(records: list[TrialRecord]) -> dict[str, int]:
    """How many records end in each status."""
    counts: dict[str, int] = {}
    for r in records:
        counts[r.status.value] = counts.get(r.status.value, 0) + 1
    return counts


def list_runs(store: Store) -> list[tuple[str, str]]:
    """(experiment, run_id) pairs that have a run.json."""
    out = []
    for key in store.list():
        parts = key.split("/")
        if len(parts) == 3 and parts[2] == "run.json":
            out.append((parts[0], parts[1]))
    return sorted(out, key=lambda p: p[1])
