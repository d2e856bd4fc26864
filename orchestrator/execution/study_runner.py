"""Execute a study with Ray Tune: feasibility, shared data preparation, trials, retries, resume, records."""
from __future__ import annotations

import json
import logging
import os
import secrets
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from datetime import datetime, timezone
from typing import Callable

from orchestrator.spec.grid import expand_grid
from orchestrator.spec.node_types import (NodeCapacity, cluster_nodes, exclusive_unenforceable, feasibility_nodes,
                                     infeasibility_reason, placement_request, resource_request)
from orchestrator.records import (RunPaths, cache_key_path, completed_trial_ids, read_trial_records,
                                  write_trial_record)
from orchestrator.spec.schema import ExperimentSpec, spec_to_yaml
from workers.storage import Store, open_store
from workers.config import TrialConfig

class StudyError(RuntimeError):
    """A study that cannot start, phrased for the user in one line."""


@dataclass
class RunOutcome:
    paths: RunPaths
    store: Store
    records: list[dict]
    counts: dict[str, int] = field(default_factory=dict)


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def store_settings(spec: ExperimentSpec) -> dict:
    """How workers open the run's store; a local directory is made absolute (workers run in other folders)."""
    uri = spec.storage.uri
    if "://" not in uri:
        uri = str(Path(uri).expanduser().resolve())
    return {"uri": uri, "endpoint_url": spec.storage.endpoint_url, "region": spec.storage.region}


def connect_ray(address: str | None = None, num_cpus: int | None = None) -> str | None:
    """Join ``address`` or start an embedded local Ray with the dashboard on 127.0.0.1; returns its URL."""
    import ray

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if not ray.is_initialized():
        kwargs: dict = {"log_to_driver": False, "logging_level": logging.ERROR, "configure_logging": True}
        if address:
            kwargs["address"] = address
        else:
            kwargs.update(include_dashboard=True, dashboard_host="127.0.0.1", num_cpus=num_cpus)
        ctx = ray.init(**kwargs)
        url = getattr(ctx, "dashboard_url", None)
    else:
        url = ray.get_runtime_context().gcs_address and _dashboard_url()
    if url and not url.startswith("http"):
        url = f"http://{url}"
    return url


def _dashboard_url() -> str | None:
    try:
        from ray._private.worker import get_dashboard_url

        return get_dashboard_url()
    except Exception:
        return None


def check_feasibility(trials: list[TrialConfig], nodes: list[NodeCapacity]) -> dict[str, str]:
    """trial_id -> reason, for every trial no node of the cluster can ever run."""
    out = {}
    for trial in trials:
        reason = infeasibility_reason({k: float(v) for k, v in trial.resources.items()}, nodes)
        if reason:
            out[trial.trial_id] = f"node type '{trial.node_type}' is not runnable on this cluster: {reason}"
    return out


def place_trials(spec: ExperimentSpec, trials: list[TrialConfig], cluster_config: dict | None = None,
                 notify: Callable[[str], None] = print):
    """Nodes a trial may run on (live + autoscaler types), trials with their placement requests (node-kind
    pinning, exclusive nodes), and trial_id -> reason for trials no node can ever run. Needs ``connect_ray``."""
    nodes = feasibility_nodes(cluster_nodes(), cluster_config)
    placed = [replace(t, resources=placement_request(t.resources, t.node_type, nodes,
                                                     exclusive=spec.execution.exclusive_nodes)) for t in trials]
    if spec.execution.exclusive_nodes:
        for node_type in exclusive_unenforceable(sorted({t.node_type for t in placed}), nodes):
            notify(f"exclusive_nodes: nodes of type '{node_type}' carry no node_kind_{node_type} resource here, "
                   "so its trials may share a node (each record notes how many did)")
    return nodes, placed, check_feasibility(placed, nodes)


def trial_bundle(resources: dict) -> dict:
    """One trial's placement-group bundle ({"CPU": .., "GPU": .., custom: ..}, zero entries dropped)."""
    req = resource_request(resources)
    bundle = {"CPU": req.pop("cpu"), "GPU": req.pop("gpu"), **req}
    return {k: v for k, v in bundle.items() if v}


def trial_resources(trials: list[TrialConfig]):
    """What ``tune.with_resources`` gets: one static request when every trial asks for the same (which lets Tune
    reuse actors cheaply), else a function of the trial's config."""
    from ray import tune

    distinct = {json.dumps(trial_bundle(t.resources), sort_keys=True) for t in trials}
    if len(distinct) == 1:
        return tune.PlacementGroupFactory([json.loads(distinct.pop())])
    return lambda config: tune.PlacementGroupFactory([trial_bundle(config["trial"]["resources"])])


def prepare_shared_data(trials: list[TrialConfig], settings: dict, notify: Callable[[str], None]) -> dict[str, dict]:
    """Prepare each distinct data setting once, as Ray tasks, cached content-addressed in the store."""
    import ray

    from workers.data import preparation_key

    @ray.remote(num_cpus=1)
    def prepare_task(store_cfg, key, dataset, split, augmentation, aug_settings):
        from workers.storage import open_store as _open
        from workers.data import prepare_data

        def summary(meta: dict) -> dict:
            return {k: v for k, v in meta.items() if k != "skipped_images"} | {"skipped": len(meta.get("skipped_images") or [])}

        store = _open(**store_cfg)
        if store.exists(cache_key_path(key)):
            meta = {}
            local_path = getattr(store, "local_path", None)
            if local_path is not None:  # the header is read alone; the arrays stay on disk
                import numpy as np

                with np.load(local_path(cache_key_path(key))) as z:
                    meta = json.loads(z["header"].tobytes().decode())["meta"]
            return {"key": key, "hit": True, "seconds": 0.0, "saved_s": meta.get("prepare_s"), "meta": summary(meta)}
        t = time.perf_counter()
        data = prepare_data(dataset, split, augmentation, aug_settings)
        data.meta["prepare_s"] = time.perf_counter() - t
        store.put_bytes(cache_key_path(key), data.to_bytes(), "application/octet-stream")
        return {"key": key, "hit": False, "seconds": data.meta["prepare_s"], "meta": summary(data.meta)}

    keys: dict[str, TrialConfig] = {}
    for trial in trials:
        keys.setdefault(preparation_key(trial.dataset, trial.split, trial.augmentation, trial.augmentation_settings), trial)
    notify(f"Preparing data: {len(keys)} distinct setting(s)")
    refs = [prepare_task.remote(settings, k, t.dataset, t.split, t.augmentation, t.augmentation_settings) for k, t in keys.items()]
    try:
        results = ray.get(refs)
    except ray.exceptions.RayTaskError as err:
        cause = getattr(err, "cause", None) or err
        raise StudyError(f"data preparation failed: {str(cause).strip().splitlines()[-1]}") from None
    return {r["key"]: r for r in results}


def local_work_dir() -> Path:
    """Local directory for Tune state of embedded runs and for results a remote store could not take."""
    return Path(os.environ.get("ORCHESTRATOR_LOCAL_DIR", "results-local")).expanduser().resolve()


def tune_storage(spec: ExperimentSpec, paths: RunPaths, address: str | None):
    """Tune's storage path and, for S3 endpoints, a pyarrow filesystem.

    Beside the run's records in the store; except for an embedded (single-machine) run with a remote store,
    where Tune's checkpoints stay on local disk so an object-store outage cannot fail running trials.
    """
    store = open_store(**store_settings(spec))
    if spec.storage.uri.startswith("s3://") and address:
        import pyarrow.fs

        # the same endpoint the records go to (spec setting or AWS_ENDPOINT_URL[_S3], resolved by S3Store)
        fs = pyarrow.fs.S3FileSystem(endpoint_override=store.endpoint_url, region=spec.storage.region or "us-east-1") \
            if store.endpoint_url else None
        base = f"{store.bucket}/{store.prefix}".strip("/") if fs else store.uri
        return f"{base}/{paths.root}", fs
    if spec.storage.uri.startswith("s3://"):
        return str(local_work_dir() / paths.root), None
    return str(store.root / paths.root), None


def open_run_store(spec: ExperimentSpec) -> Store:
    """The run's store, checked reachable; remote stores fall back to local disk if they go down later."""
    from orchestrator.execution.fallback_store import FallbackStore
    from workers.storage import LocalStore, StorageError

    store = open_store(**store_settings(spec))
    if isinstance(store, LocalStore):
        return store
    try:
        store.list("__probe__/")
    except StorageError as err:
        raise StudyError(f"storage.uri: the store is unreachable ({err}); nothing was started") from None
    return FallbackStore(store, LocalStore(local_work_dir()))


def execute_study(
    spec: ExperimentSpec,
    *,
    run_id: str | None = None,
    address: str | None = None,
    strict: bool = False,
    show_progress: bool = True,
    notify: Callable[[str], None] = print,
    num_cpus: int | None = None,
    trials: list[TrialConfig] | None = None,
    cluster_config: dict | None = None,
) -> RunOutcome:
    """Run every trial of ``spec`` (skipping ones already completed under ``run_id``) and store records.

    ``trials`` replaces the spec's grid (benchmarks and searches pass their own trial configs);
    ``cluster_config`` (a ``ray up`` config) adds the node types an autoscaler may still launch."""
    from ray import tune

    from orchestrator.execution.metrics_export import MetricsExportCallback
    from orchestrator.execution.callbacks import StudyProgress, TrialRecorder
    from orchestrator.report import environment_info
    from workers.data import preparation_key

    for noisy in ("ray.tune", "ray.train", "ray.air"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    store = open_run_store(spec)
    paths = RunPaths(spec.name, run_id or new_run_id())
    trials = expand_grid(spec) if trials is None else trials

    dashboard = connect_ray(address, num_cpus=num_cpus)
    nodes, trials, infeasible = place_trials(spec, trials, cluster_config, notify)
    if infeasible and strict:
        first = next(iter(infeasible.values()))
        raise StudyError(f"{len(infeasible)} trial(s) cannot run on this cluster (--strict): {first}")

    started = datetime.now(timezone.utc).isoformat()
    store.put_text(paths.spec, spec_to_yaml(spec))
    info = {
        "experiment": spec.name, "run_id": paths.run_id, "started": started, "address": address or "local",
        "dashboard": dashboard, "nodes": [{"name": n.name, "resources": n.resources} for n in nodes],
        "n_trials": len(trials), "dataset_source": spec.dataset.source, "environment": environment_info(),
    }
    store.put_text(paths.run_info, json.dumps(info, indent=1))
    if dashboard:
        notify(f"Ray dashboard: {dashboard}")
    notify(f"Run {paths.run_id}: {len(trials)} trials ({len(infeasible)} not runnable here), store {store.uri}")

    done = completed_trial_ids(store, paths)
    for trial in trials:
        if trial.trial_id in infeasible and trial.trial_id not in done:
            write_trial_record(store, paths, {"trial_id": trial.trial_id, "config": trial.to_dict(), "status": "infeasible",
                                              "reason": infeasible[trial.trial_id]})
    pending = [t for t in trials if t.trial_id not in infeasible and t.trial_id not in done]
    if done:
        notify(f"Resuming: {len(done)} trial(s) already completed are kept, {len(pending)} to run")

    settings = store_settings(spec)
    from orchestrator.execution.trainable import SLEEP_ARCHITECTURE

    needs_data = [t for t in pending if t.architecture != SLEEP_ARCHITECTURE]
    cache = prepare_shared_data(needs_data, settings, notify) if needs_data else {}
    if cache:
        hits = sum(1 for c in cache.values() if c["hit"])
        saved = sum(c.get("saved_s") or 0 for c in cache.values())
        notify(f"Data cache: {hits} hit(s), {len(cache) - hits} prepared" + (f", {saved:.1f} s saved" if saved else ""))

    if pending:
        storage_path, fs = tune_storage(spec, paths, address)
        backends = {t.framework for t in pending}
        param_space = {
            "trial": tune.grid_search([t.to_dict() for t in pending]),
            "store": settings,
        }
        keys = {t.trial_id: preparation_key(t.dataset, t.split, t.augmentation, t.augmentation_settings) for t in pending}
        param_space["cache_keys"] = keys

        from orchestrator.execution.trainable import trial_trainable

        def trainable(config):
            trial_trainable({"trial": config["trial"], "store": config["store"], "cache_key": config["cache_keys"][config["trial"]["trial_id"]]})

        resources = trial_resources(pending)

        recorder = TrialRecorder(store, paths, {t.trial_id: t for t in pending})
        progress = StudyProgress(pending, enabled=show_progress)
        tuner = tune.Tuner(
            tune.with_resources(trainable, resources),
            param_space=param_space,
            tune_config=tune.TuneConfig(
                max_concurrent_trials=spec.execution.max_concurrent_trials,
                reuse_actors=len(backends) == 1,
                trial_name_creator=lambda t: t.config["trial"]["trial_id"],
                trial_dirname_creator=lambda t: t.config["trial"]["trial_id"],
            ),
            run_config=tune.RunConfig(
                name="tune",
                storage_path=storage_path,
                storage_filesystem=fs,
                failure_config=tune.FailureConfig(max_failures=spec.execution.max_retries),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                callbacks=[recorder, progress, MetricsExportCallback(spec.name, paths.run_id, pending)],
                verbose=0,
                log_to_file=True,
            ),
        )
        with progress:
            tuner.fit()
        recorder.write_missing()

    records = read_trial_records(store, paths)
    counts: dict[str, int] = {}
    for r in records:
        counts[r.get("status", "?")] = counts.get(r.get("status", "?"), 0) + 1
    info.update({"finished": datetime.now(timezone.utc).isoformat(), "counts": counts,
                 "data_cache": cache})
    store.put_text(paths.run_info, json.dumps(info, indent=1))
    return RunOutcome(paths=paths, store=store, records=records, counts=counts)
