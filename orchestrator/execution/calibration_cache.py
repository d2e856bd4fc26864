"""The calibration cache in the store (``calibration/<key>.json``) and its key by setting; read by the plan
(``execution/plan.py``) and written by ``execution/calibration.py``."""
from __future__ import annotations

import hashlib
import json
from importlib import metadata

from orchestrator.spec.node_types import NODE_KIND_PREFIX
from workers.config import STEPS_PER_EPOCH, TrialConfig
from workers.storage import StorageError

CACHE_PREFIX = "calibration"
_BACKEND_PACKAGES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def stack(framework: str) -> dict[str, str | None]:
    """The software stack a trial's speed depends on, as installed where the driver runs."""
    out = {}
    for name in ("keras", _BACKEND_PACKAGES.get(framework)):
        if name:
            try:
                out[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                out[name] = None
    return {"framework": framework, **out}


def calibration_key(trial: TrialConfig) -> str:
    """The cache key of a trial's setting: every field that sets its speed, not its epochs, repeat or seed (nor
    the node-kind share placement adds to its resources, nor a calibration trial's cut of its epochs)."""
    cfg = trial.to_dict()
    setting = {k: cfg[k] for k in ("architecture", "node_type", "dataset", "split", "augmentation",
                                   "augmentation_settings", "training", "model")}
    setting["overrides"] = {k: v for k, v in cfg["overrides"].items() if k != STEPS_PER_EPOCH}  # not the cut
    setting["resources"] = {k: v for k, v in cfg["resources"].items() if not k.startswith(NODE_KIND_PREFIX)}
    setting["stack"] = stack(trial.framework)
    return hashlib.sha256(json.dumps(setting, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cache_path(key: str) -> str:
    return f"{CACHE_PREFIX}/{key}.json"


def cached_calibrations(store, trials: list[TrialConfig]) -> list[dict]:
    """The cached calibration records of the settings of ``trials`` (completed ones only)."""
    records = []
    for key in dict.fromkeys(calibration_key(t) for t in trials):
        try:
            if store.exists(cache_path(key)):
                record = json.loads(store.get_text(cache_path(key)))
                if record.get("status") == "completed":
                    records.append(record)
        except (StorageError, OSError, ValueError):
            continue
    return records
