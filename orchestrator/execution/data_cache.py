"""Prepared data and weights on the nodes: prepared once per distinct setting (Ray tasks, cached
content-addressed in the store), fetched once per node, loaded by trials."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

from orchestrator.errors import StudyError
from orchestrator.records import cache_key_path
from workers.config import TrialConfig
from workers.settings import cache_root
from workers.storage import open_store


def preparation_key_of(trial: TrialConfig) -> str:
    """The content-addressed key of a trial's prepared data."""
    from workers.data import preparation_key

    return preparation_key(*trial.preparation_args())


def _cached_summary(store, key: str) -> dict:
    meta = {}
    local_path = getattr(store, "local_path", None)
    if local_path is not None:  # the header is read alone; the arrays stay on disk
        import numpy as np

        with np.load(local_path(cache_key_path(key))) as z:
            meta = json.loads(z["header"].tobytes().decode())["meta"]
    return {"key": key, "hit": True, "seconds": 0.0, "saved_s": meta.get("prepare_s"), "meta": _summary(meta)}


def _summary(meta: dict) -> dict:
    return {k: v for k, v in meta.items() if k != "skipped_images"} | {"skipped": len(meta.get("skipped_images") or [])}


def _prepare_one(store_settings: dict, key: str, args: tuple) -> dict:
    """Prepare one setting into the store's cache (a hit returns at once)."""
    from workers.data import prepare_data

    store = open_store(**store_settings)
    if store.exists(cache_key_path(key)):
        return _cached_summary(store, key)
    t = time.perf_counter()
    data = prepare_data(*args)
    data.meta["prepare_s"] = time.perf_counter() - t
    store.put_bytes(cache_key_path(key), data.to_bytes(), "application/octet-stream")
    return {"key": key, "hit": False, "seconds": data.meta["prepare_s"], "meta": _summary(data.meta)}


def prepare_shared_data(trials: list[TrialConfig], store_settings: dict, notify: Callable[[str], None]) -> dict[str, dict]:
    """Prepare each distinct data setting of ``trials`` once, as Ray tasks; key -> summary (hit, seconds, meta)."""
    import ray

    by_key = {}
    for trial in trials:
        by_key.setdefault(preparation_key_of(trial), trial)
    notify(f"Preparing data: {len(by_key)} distinct setting(s)")
    task = ray.remote(num_cpus=1)(_prepare_one)
    refs = [task.remote(store_settings, key, trial.preparation_args()) for key, trial in by_key.items()]
    try:
        results = ray.get(refs)
    except ray.exceptions.RayTaskError as err:
        cause = getattr(err, "cause", None) or err
        raise StudyError(f"data preparation failed: {str(cause).strip().splitlines()[-1]}") from None
    return {r["key"]: r for r in results}


def fetch_once(store, key: str, target: Path) -> Path:
    """``target`` on this node's disk, downloaded from ``store`` the first time (atomically: temp file, rename)."""
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.{os.getpid()}.part")
        tmp.write_bytes(store.get_bytes(key))
        os.replace(tmp, target)
    return target


def load_prepared(store_settings: dict, key: str):
    """Prepared arrays for ``key``: from this node's disk cache, else from the store (then cached on disk),
    so a node fetches each prepared setting once and an object-store outage does not stop later trials."""
    from workers.data import PreparedData

    store = open_store(**store_settings)
    local_path = getattr(store, "local_path", None)
    if local_path is not None:
        return PreparedData.from_file(local_path(cache_key_path(key)))
    return PreparedData.from_file(fetch_once(store, cache_key_path(key), cache_root() / "prepared" / f"{key}.npz"))


def resolve_weights(trial: TrialConfig, store_settings: dict) -> str | None:
    """ImageNet weights from a local file or an s3:// URI (downloaded once to the node's cache)."""
    path = trial.model.weights_path if trial.model.weights == "imagenet" else None
    if not path or not path.startswith("s3://"):
        return path
    bucket_uri, _, name = path.rpartition("/")
    store = open_store(bucket_uri, endpoint_url=store_settings.get("endpoint_url"))
    return str(fetch_once(store, name, cache_root() / "weights" / name))
