"""Trained models kept in a run's store (``storage.keep_models``), and using one.

``best`` (the default) keeps the model of the completed trial with the best validation score (the last
epoch's value of ``report.target.metric``; the test split never chooses), ``all`` keeps every completed
trial's model, ``none`` keeps nothing. A kept model is ``trials/<trial_id>/model/{model.keras, model.json}``
(``workers.model_files``); ``<run>/models.json`` says which are kept and which is best. The coordinator keeps
models as trials finish (``ModelKeeper``), so the best so far is always in the store.
"""
from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

from orchestrator.errors import BadInput, RunNotFound
from orchestrator.run_store import RunPaths
from workers.model_files import META_FILE, MODEL_FILES
from workers.records import TrialRecord, TrialStatus
from workers.storage import Store

KEEP_POLICIES = ("best", "all", "none")


def models_index_key(paths: RunPaths) -> str:
    return f"{paths.root}/models.json"


def model_key(paths: RunPaths, trial_id: str, name: str) -> str:
    return paths.trial(trial_id, f"model/{name}")


def validation_score(record: TrialRecord | dict, metric: str) -> float | None:
    """The last epoch's validation ``metric`` of a completed trial (None when it has none)."""
    data = record.to_dict() if isinstance(record, TrialRecord) else record
    if data.get("status") != TrialStatus.COMPLETED.value or not data.get("history"):
        return None
    value = data["history"][-1].get(metric)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def read_models_index(store: Store, paths: RunPaths) -> dict[str, Any]:
    """``models.json`` of a run ({} when it kept no model)."""
    key = models_index_key(paths)
    return json.loads(store.get_text(key)) if store.exists(key) else {}


class ModelKeeper:
    """Keeps trial models in the store as trials finish, by ``policy`` (see the module docstring)."""

    def __init__(self, store: Store, paths: RunPaths, policy: str, metric: str, mode: str):
        self.store, self.paths, self.policy, self.metric, self.mode = store, paths, policy, metric, mode
        earlier = read_models_index(store, paths)  # a resumed run goes on from what it kept
        self.index: dict[str, Any] = {"policy": policy, "metric": metric, "mode": mode,
                                      "best": earlier.get("best"), "kept": list(earlier.get("kept") or [])}

    def _better(self, value: float) -> bool:
        best = self.index["best"]
        if best is None:
            return True
        return value > best["value"] if self.mode == "max" else value < best["value"]

    def offer(self, record: TrialRecord, model_dir: Path) -> bool:
        """Store ``record``'s model from ``model_dir`` if the policy keeps it; True when it was kept."""
        if self.policy == "none" or not (model_dir / META_FILE).exists():
            return False
        value = validation_score(record, self.metric)
        better = value is not None and self._better(value)
        if self.policy == "best" and not better:
            return False
        for name in MODEL_FILES:
            self.store.put_file(model_key(self.paths, record.trial_id, name), model_dir / name,
                                "application/octet-stream" if name.endswith(".keras") else "application/json")
        tid = record.trial_id
        previous = (self.index["best"] or {}).get("trial_id")
        if tid not in self.index["kept"]:
            self.index["kept"].append(tid)
        if better:
            self.index["best"] = {"trial_id": tid, "value": value}
        if self.policy == "best" and previous and previous != tid:
            self.index["kept"] = [t for t in self.index["kept"] if t != previous]
        self.store.put_text(models_index_key(self.paths), json.dumps(self.index, indent=1), "application/json")
        if self.policy == "best" and previous and previous != tid:
            for name in MODEL_FILES:
                self.store.delete(model_key(self.paths, previous, name))
        return True


def kept_model_dir(store: Store, paths: RunPaths, trial_id: str | None = None,
                   dest: str | Path | None = None) -> Path:
    """Download a kept model (``trial_id``, default the best) into ``dest`` (default a new temporary folder)
    and return the folder; ``RunNotFound`` when the run kept no such model."""
    index = read_models_index(store, paths)
    tid = trial_id or (index.get("best") or {}).get("trial_id")
    if not tid or not store.exists(model_key(paths, tid, META_FILE)):
        kept = ", ".join(index.get("kept") or []) or "none (storage.keep_models: none, or no trial completed)"
        what = f"trial '{trial_id}'" if trial_id else "a best trial"
        raise RunNotFound(f"--trial: run {paths.root} kept no model of {what}; kept: {kept}")
    dest = Path(dest) if dest else Path(tempfile.mkdtemp(prefix=f"model-{tid}-"))
    return store.download_prefix(paths.trial(tid, "model"), dest)


def load_kept_model(store: Store, paths: RunPaths, trial_id: str | None = None):
    """A kept model of the run (default the best by validation) as ``workers.model_files.LoadedModel``."""
    from workers.model_files import load_model

    return load_model(kept_model_dir(store, paths, trial_id))


def predict_folder(store: Store, paths: RunPaths, folder: str | Path, trial_id: str | None = None) -> tuple[str, dict]:
    """Predictions of a kept model for every image under ``folder``: (CSV text ``image,predicted_class,p_<class>
    ...``, a summary with the trial, the count and the unreadable files)."""
    from workers.model_files import predictions_table

    if not Path(folder).is_dir():
        raise BadInput(f"FOLDER: '{folder}' is not a folder of images")
    loaded = load_kept_model(store, paths, trial_id)
    names, probs, unreadable = loaded.predict_folder(folder)
    return predictions_table(names, probs, loaded.class_names), {
        "trial_id": loaded.meta.get("trial_id"), "architecture": loaded.meta.get("architecture"),
        "n_images": len(names), "unreadable": unreadable, "class_names": loaded.class_names}
