"""The steps every run takes, studies and searches alike: open the store, connect Ray, record the run's
start in ``run.json`` (the first start is kept, resumes are appended), keep its queue state there (what
``orchestrator list`` / ``status`` show), prepare the shared data, point Tune at its storage, and record the end
with the status counts."""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from orchestrator.cluster.nodes import only_node
from orchestrator.errors import StudyError
from orchestrator.run_store import QueueState, RunPaths, status_counts
from orchestrator.spec.node_types import NodeCapacity
from orchestrator.spec.schema import ExperimentSpec, spec_to_yaml
from workers.config import TrialConfig
from workers.records import TrialRecord
from workers.storage import LocalStore, StorageError, Store, open_store


def new_run_id() -> str:
    """A new run's id (UTC start time and 4 random hex digits); chosen where a run is started or submitted."""
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def store_settings(spec: ExperimentSpec) -> dict:
    """How workers open the run's store; a local directory is made absolute (workers run in other folders)."""
    uri = spec.storage.uri
    if "://" not in uri:
        uri = str(Path(uri).expanduser().resolve())
    return {"uri": uri, "endpoint_url": spec.storage.endpoint_url, "region": spec.storage.region}


def local_dir(spec: ExperimentSpec) -> Path:
    """Local directory for Tune state of embedded runs and for results a remote store could not take."""
    return Path(spec.storage.local_dir).expanduser().resolve()


def open_run_store(spec: ExperimentSpec) -> Store:
    """The run's store, checked reachable; remote stores fall back to local disk if they go down later."""
    from orchestrator.execution.fallback_store import FallbackStore

    store = open_store(**store_settings(spec))
    if isinstance(store, LocalStore):  # a disk that fills up or turns read-only mid-run: the rest goes local
        fallback = local_dir(spec)
        return store if fallback == store.root else FallbackStore(store, LocalStore(fallback), journal=False)
    try:
        store.list("__probe__/")
    except StorageError as err:
        raise StudyError(f"storage.uri: the store is unreachable ({err}); nothing was started") from None
    return FallbackStore(store, LocalStore(local_dir(spec)))


@dataclass
class RunSession:
    """One run's store, paths, Ray connection and ``run.json``, shared by studies and searches."""

    spec: ExperimentSpec
    paths: RunPaths
    store: Store
    notify: Callable[[str], None]
    address: str | None = None
    dashboard: str | None = None
    info: dict = field(default_factory=dict)
    started_ray: bool = False
    lock: object | None = None  # run_lock.RunLock while this driver holds the run

    @classmethod
    def open(cls, spec: ExperimentSpec, *, run_id: str | None, address: str | None,
             notify: Callable[[str], None]) -> "RunSession":
        return cls(spec, RunPaths(spec.name, run_id or new_run_id()), open_run_store(spec), notify, address)

    @property
    def settings(self) -> dict:
        return store_settings(self.spec)

    def connect(self, num_cpus: int | None = None) -> None:
        """Hold the run (one driver at a time: ``run_lock``), then join or start Ray."""
        import ray

        from orchestrator.execution.ray_runtime import connect_ray
        from orchestrator.execution.run_lock import RunLock

        self.lock = RunLock(self.store, self.paths).acquire()
        self.started_ray = not ray.is_initialized()
        self.dashboard = connect_ray(self.address, num_cpus=num_cpus)

    def single_node(self) -> tuple[str, str] | None:
        """(node id, address) of the only node of an embedded run, so the recorder needs no per-trial node
        lookup; None on a cluster or when the connected Ray has several nodes."""
        return None if self.address else only_node()

    def close(self) -> None:
        """Shut down the Ray this run started (an embedded one ends with the run, on every exit path) and give
        the run's lock back."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        if self.started_ray:
            import ray

            from orchestrator.execution.ray_runtime import release_token_auth

            ray.shutdown()
            release_token_auth()
            self.started_ray = False

    def begin(self, kind: str, nodes: list[NodeCapacity], n_trials: int, **extra) -> None:
        """Write spec.yaml (a new run) and run.json: the first start is kept, every later start is a resume."""
        from orchestrator.report import environment_info

        started = _now()
        earlier = self._stored_info()
        if not self.store.exists(self.paths.spec):
            self.store.put_text(self.paths.spec, spec_to_yaml(self.spec))
        self.info = {**earlier, "experiment": self.spec.name, "run_id": self.paths.run_id, "kind": kind,
                     "started": earlier.get("started", started), "address": self.cluster_address(),
                     "dashboard": self.dashboard, "nodes": [{"name": n.name, "resources": n.resources} for n in nodes],
                     "n_trials": n_trials, "dataset_source": self.spec.dataset.source,
                     "environment": environment_info(), **extra}
        if earlier.get("started"):  # not a queue state written while the device probes waited
            self.info["resumed"] = earlier.get("resumed", []) + [started]
        for stale in ("finished", "interrupted", "unfinished", "queue"):
            self.info.pop(stale, None)
        self.write_info()
        if self.dashboard:
            self.notify(f"Ray dashboard: {self.dashboard}")

    def cluster_address(self) -> str:
        """Where the run runs: the address a Ray Job was submitted to, else the cluster joined (``auto`` resolved
        to its GCS address), else ``local``."""
        from workers.settings import submitted_to

        if submitted_to():
            return submitted_to()
        if self.address == "auto":
            import ray

            return ray.get_runtime_context().gcs_address
        return self.address or "local"

    def write_info(self) -> None:
        self.store.put_text(self.paths.run_info, json.dumps(self.info, indent=1))

    def _stored_info(self) -> dict:
        return json.loads(self.store.get_text(self.paths.run_info)) if self.store.exists(self.paths.run_info) else {}

    def set_queue(self, queue: QueueState) -> None:
        """Keep the run's queue state in run.json. Before ``begin`` (device probes waiting) it is merged into the
        stored run.json, or starts one holding the run's name and its queue state only."""
        if self.info:
            self.info["queue"] = queue.model_dump()
            self.write_info()
            return
        stub = {**self._stored_info(), "experiment": self.spec.name, "run_id": self.paths.run_id,
                "queue": queue.model_dump()}
        self.store.put_text(self.paths.run_info, json.dumps(stub, indent=1))

    def prepare_data(self, trials: list[TrialConfig]) -> dict[str, dict]:
        """Prepare every distinct data setting of ``trials`` once (cached); key -> summary."""
        from orchestrator.execution.data_cache import prepare_shared_data

        if not trials:
            return {}
        cache = prepare_shared_data(trials, self.settings, self.notify)
        hits = sum(1 for c in cache.values() if c["hit"])
        saved = sum(c.get("saved_s") or 0 for c in cache.values())
        self.notify(f"Data cache: {hits} hit(s), {len(cache) - hits} prepared" + (f", {saved:.1f} s saved" if saved else ""))
        self.info["data_cache"] = cache
        return cache

    def tune_storage(self):
        """Tune's storage path and, for S3 endpoints, a pyarrow filesystem.

        Beside the run's records in the store; except for an embedded (single-machine) run with a remote store,
        where Tune's checkpoints stay on local disk so an object-store outage cannot fail running trials.
        """
        spec, store = self.spec, open_store(**self.settings)
        if spec.storage.uri.startswith("s3://") and self.address:
            import pyarrow.fs

            fs = pyarrow.fs.S3FileSystem(endpoint_override=store.endpoint_url,
                                         region=spec.storage.region or "us-east-1") if store.endpoint_url else None
            base = f"{store.bucket}/{store.prefix}".strip("/") if fs else store.uri
            return f"{base}/{self.paths.root}", fs
        if spec.storage.uri.startswith("s3://"):
            return str(local_dir(spec) / self.paths.root), None
        return str(store.root / self.paths.root), None

    def finish(self, records: list[TrialRecord], **extra) -> dict[str, int]:
        """Record the end of the run in run.json; returns the status counts."""
        counts = status_counts(records)
        self.info.pop("queue", None)
        self.info.update({"finished": _now(), "counts": counts, **extra})
        self.write_info()
        return counts
