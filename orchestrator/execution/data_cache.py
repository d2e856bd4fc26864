"""Prepared data and weights on the nodes: prepared once per distinct setting (Ray tasks, cached
content-addressed in the store), fetched once per node, loaded by trials."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from orchestrator.errors import StudyError
from workers.config import TrialConfig
from workers.settings import cache_root
from workers.storage import open_store


def preparation_key_of(trial: TrialConfig) -> str:
    """The content-addressed key of a trial's prepared data."""
    from workers.data import preparation_key

    return preparation_key(*trial.preparation_args())


def prepare_shared_data(trials: list[TrialConfig], store_settings: dict, notify: Callable[[str], None]) -> dict[str, dict]:
    """Prepare each distinct data setting of ``trials`` once, its chunks as Ray tasks, into sharded cache
    entries; key -> summary (hit, seconds, meta)."""
    from orchestrator.execution.data_preparation import PreparationError, prepare_settings

    try:
        return prepare_settings(trials, store_settings, notify)
    except PreparationError as err:
        raise StudyError(str(err)) from None


def fetch_once(store, key: str, target: Path) -> Path:
    """``target`` on this node's disk, downloaded from ``store`` the first time (atomically: temp file, rename)."""
    if not target.exists():
        store.get_file(key, target)
    return target


def load_prepared(store_settings: dict, key: str):
    """Prepared data for ``key``, streamed from its shards (checksums verified): in place on a local store, else
    from this node's disk cache, fetched once from the store, so an object-store outage does not stop later trials."""
    from orchestrator.execution.data_preparation import open_prepared

    return open_prepared(store_settings, key)


def resolve_weights(trial: TrialConfig, store_settings: dict) -> str | None:
    """ImageNet weights from a local file or an s3:// URI (downloaded once to the node's cache)."""
    path = trial.model.weights_path if trial.model.weights == "imagenet" else None
    if not path or not path.startswith("s3://"):
        return path
    bucket_uri, _, name = path.rpartition("/")
    store = open_store(bucket_uri, endpoint_url=store_settings.get("endpoint_url"))
    return str(fetch_once(store, name, cache_root() / "weights" / name))
