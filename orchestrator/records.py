"""Where a run's files live in the store, and reading/writing trial records.

Layout: ``<experiment>/<run_id>/{spec.yaml, run.json, trials/<trial_id>/{record.json, predictions.csv,
history.csv}, report/..., tune/...}``; prepared data is shared under ``cache/prepared/<key>.npz``.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

from workers.storage import Store

TERMINAL_OK = "completed"


@dataclass(frozen=True)
class RunPaths:
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
    return f"cache/prepared/{key}.npz"


def write_trial_record(store: Store, paths: RunPaths, record: dict) -> None:
    """Persist one trial: predictions and history beside the record; the record is written last."""
    record = dict(record)
    tid = record["trial_id"]
    predictions = record.pop("predictions_csv", None)
    if predictions:
        store.put_text(paths.trial(tid, "predictions.csv"), predictions, "text/csv")
    history = record.get("history") or []
    if history:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=sorted({k for row in history for k in row}))
        writer.writeheader()
        writer.writerows(history)
        store.put_text(paths.trial(tid, "history.csv"), buf.getvalue(), "text/csv")
    store.put_text(paths.trial(tid, "record.json"), json.dumps(record, indent=1, default=str), "application/json")


def read_trial_records(store: Store, paths: RunPaths) -> list[dict]:
    keys = [k for k in store.list(f"{paths.root}/trials/") if k.endswith("/record.json")]
    return [json.loads(store.get_text(k)) for k in keys]


def completed_trial_ids(store: Store, paths: RunPaths) -> set[str]:
    return {r["trial_id"] for r in read_trial_records(store, paths) if r.get("status") == TERMINAL_OK}


def list_runs(store: Store) -> list[tuple[str, str]]:
    """(experiment, run_id) pairs that have a run.json."""
    out = []
    for key in store.list():
        parts = key.split("/")
        if len(parts) == 3 and parts[2] == "run.json":
            out.append((parts[0], parts[1]))
    return sorted(out, key=lambda p: p[1])
