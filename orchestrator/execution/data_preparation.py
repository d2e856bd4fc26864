"""Driver side of data preparation: every distinct data setting prepared once, its chunks (decode, augment,
gather) as Ray tasks across the cluster's CPUs, written as shards into the store's content-addressed cache
(``cache/prepared/<key>/``); and, on a trial's node, opening those shards (fetched once per node from a
remote store).

The pipeline itself, and the per-chunk work, are ``workers.data.prepare``; this module only runs them on Ray.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from orchestrator.run_store import cache_key_path
from workers.config import TrialConfig
from workers.error_text import last_line
from workers.settings import cache_root
from workers.storage import Store, open_store


class PreparationError(RuntimeError):
    """Data preparation that failed, phrased for the user in one line."""


class RayExecutor:
    """Runs the pipeline's per-chunk work as Ray tasks of ``cpus_per_task`` CPUs each (objects stay in Ray's
    object store; the driver receives only what it asks for). Work for this node (``here``: it writes to the
    driver's disk) runs as tasks pinned to the driver's node, or in the driver when that node has no CPUs."""

    def __init__(self, cpus_per_task: float = 1):
        import ray

        self.cpus_per_task = cpus_per_task
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1) // cpus_per_task))
        self.node_id = ray.get_runtime_context().get_node_id()
        node = next((n for n in ray.nodes() if n.get("NodeID") == self.node_id), {})
        self.node_cpus = float((node.get("Resources") or {}).get("CPU", 0))
        self._remote: dict[Callable, Any] = {}

    def submit(self, fn: Callable, *args, num_returns: int = 1, here: bool = False):
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        if here and not self.node_cpus:
            result = fn(*[ray.get(a) if isinstance(a, ray.ObjectRef) else a for a in args])
            return ray.put(result) if num_returns == 1 else [ray.put(r) for r in result]
        if fn not in self._remote:
            self._remote[fn] = ray.remote(fn)
        options = {"num_cpus": self.cpus_per_task, "num_returns": num_returns}
        if here:
            options = {"num_cpus": min(self.cpus_per_task, self.node_cpus), "num_returns": num_returns,
                       "scheduling_strategy": NodeAffinitySchedulingStrategy(self.node_id, soft=False)}
        return self._remote[fn].options(**options).remote(*args)

    def get(self, handles: list, progress: Callable[[int, int], None] | None = None) -> list:
        import ray

        remaining, total = list(handles), len(handles)
        while remaining and progress is not None:
            _, remaining = ray.wait(remaining, num_returns=max(1, min(len(remaining), total // 20)))
            progress(total - len(remaining), total)
        return ray.get(list(handles))


def _summary(meta: dict) -> dict:
    return {k: v for k, v in meta.items() if k != "skipped_images"} | {"skipped": len(meta.get("skipped_images") or [])}


def cached_index(store: Store, key: str) -> dict | None:
    """The index of ``key``'s prepared data when the store holds all of it and (on a local store) every
    checksum matches; else None (missing, incomplete or corrupt data is prepared again)."""
    from workers.data.shards import INDEX, ShardError, parse_index, read_index, verify_shards

    prefix = cache_key_path(key)
    local_path = getattr(store, "local_path", None)
    if local_path is not None:
        try:
            index = read_index(local_path(prefix))
        except ShardError:
            return None
        return None if verify_shards(local_path(prefix), index) else index
    if not store.exists(f"{prefix}/{INDEX}"):
        return None
    try:
        index = parse_index(store.get_text(f"{prefix}/{INDEX}"), store.url(f"{prefix}/{INDEX}"))
    except (ShardError, UnicodeDecodeError):
        return None
    present = set(store.list(f"{prefix}/"))
    return index if all(f"{prefix}/{name}" in present for name in index.get("files", {})) else None


def prepare_setting(store: Store, key: str, trial: TrialConfig, executor, notify: Callable[[str], None]) -> dict:
    """Prepare one setting into the store (unless a sound copy is cached); returns its cache summary."""
    from workers.data import prepare_shards
    from workers.data.shards import INDEX

    index = cached_index(store, key)
    if index is not None:
        meta = index.get("meta") or {}
        return {"key": key, "hit": True, "seconds": 0.0, "saved_s": meta.get("prepare_s"), "meta": _summary(meta)}
    notify(f"Preparing {key} ({trial.augmentation}) with {executor.workers} worker(s)")
    args = trial.preparation_args()
    t = time.perf_counter()
    local_path = getattr(store, "local_path", None)
    if local_path is not None:
        index = prepare_shards(*args, local_path(cache_key_path(key)), executor=executor, notify=notify)
    else:  # built on this node's disk (which keeps it as its fetched copy), then uploaded, index last
        target = cache_root() / "prepared" / key
        index = prepare_shards(*args, target, executor=executor, notify=notify)
        for name in sorted(index["files"]) + [INDEX]:
            store.put_file(f"{cache_key_path(key)}/{name}", target / name)
    seconds = time.perf_counter() - t
    notify(f"Prepared {key} in {seconds:.1f} s")
    return {"key": key, "hit": False, "seconds": seconds, "meta": _summary(index["meta"])}


def prepare_settings(trials: list[TrialConfig], store_settings: dict, notify: Callable[[str], None],
                     executor=None) -> dict[str, dict]:
    """Prepare each distinct data setting of ``trials`` once (chunks as Ray tasks); key -> cache summary.
    Raises ``PreparationError`` (one line) when a data set cannot be prepared."""
    import ray

    from workers.data import DatasetError, DiskSpaceError, preparation_key

    keys: dict[str, TrialConfig] = {}
    for trial in trials:
        keys.setdefault(preparation_key(*trial.preparation_args()), trial)
    notify(f"Preparing data: {len(keys)} distinct setting(s)")
    store = open_store(**store_settings)
    executor = executor or RayExecutor()
    try:
        return {key: prepare_setting(store, key, trial, executor, notify) for key, trial in keys.items()}
    except (DatasetError, DiskSpaceError) as err:
        raise PreparationError(str(err)) from None
    except ray.exceptions.RayTaskError as err:
        cause = getattr(err, "cause", None) or err
        raise PreparationError(f"data preparation failed: {last_line(cause)}") from None


# ---------------------------------------------------------------------------------------------------------
# On a trial's node.


def fetch_prepared(store: Store, key: str, target: Path) -> Path:
    """Copy ``key``'s shards from ``store`` to ``target`` on this node: into a temporary folder, checksums
    verified, then renamed into place (a concurrent fetch of the same key wins or loses whole)."""
    import json

    from workers.data.shards import INDEX, ShardError, check_free_space, verify_shards

    prefix = cache_key_path(key)
    index_text = store.get_text(f"{prefix}/{INDEX}")
    index = json.loads(index_text)
    target.parent.mkdir(parents=True, exist_ok=True)
    check_free_space(target.parent, sum(int(e["bytes"]) for e in index["files"].values()))
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=target.parent))
    try:
        for name in index["files"]:
            store.get_file(f"{prefix}/{name}", tmp / name)  # S3: managed, multipart-aware download
        problems = verify_shards(tmp, index)
        if problems:
            raise ShardError(f"prepared data in the store is corrupt: {problems[0]}; delete {store.uri}/{prefix}/ "
                             "and submit again to prepare it anew")
        (tmp / INDEX).write_text(index_text)
        try:
            os.replace(tmp, target)
        except OSError:  # another process on this node finished first
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def open_prepared(store_settings: dict, key: str):
    """``key``'s prepared data as a ``ShardedDataset`` (checksums verified): in place on a local store, else
    from this node's copy, fetched from the store the first time (and again if the copy is found corrupt)."""
    from workers.data.shards import INDEX, ShardError, open_sharded

    store = open_store(**store_settings)
    local_path = getattr(store, "local_path", None)
    if local_path is not None:
        return open_sharded(local_path(cache_key_path(key)))
    target = cache_root() / "prepared" / key
    if not (target / INDEX).is_file():
        fetch_prepared(store, key, target)
    try:
        return open_sharded(target)
    except ShardError:
        shutil.rmtree(target, ignore_errors=True)
        return open_sharded(fetch_prepared(store, key, target))
