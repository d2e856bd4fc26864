"""The Ray Tune function trainable: loads cached prepared data and runs ``workers.train.run_trial``.

Per epoch it reports metrics and a checkpoint to Tune (so a killed worker resumes from its last epoch);
at the end it reports the trial's full record under the key ``record`` for the coordinator to store.
"""
from __future__ import annotations

import json
import os
import tempfile
import time

from orchestrator.records import cache_key_path
from workers.storage import open_store

SLEEP_ARCHITECTURE = "_sleep"  # used by the orchestration-overhead benchmark and the fault tests


def load_prepared(store_settings: dict, key: str):
    """Prepared arrays for ``key``: from this node's disk cache, else from the store (then cached on disk),
    so a node fetches each prepared setting once and an object-store outage does not stop later trials."""
    from workers.data import PreparedData
    from workers.data.synthetic import default_cache_root

    store = open_store(**store_settings)
    local_path = getattr(store, "local_path", None)
    if local_path is not None:
        return PreparedData.from_file(local_path(cache_key_path(key)))
    return PreparedData.from_file(_fetch_once(store, cache_key_path(key), default_cache_root() / "prepared" / f"{key}.npz"))


def _fetch_once(store, key: str, target):
    """``target`` on this node's disk, downloaded from ``store`` the first time (atomically: temp file, rename)."""
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.{os.getpid()}.part")
        tmp.write_bytes(store.get_bytes(key))
        os.replace(tmp, target)
    return target


def _limit_threads(cpus: float) -> None:
    n = str(max(1, int(cpus)))
    for var in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
        os.environ[var] = n
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")


def _crash_injected(trial_id: str) -> bool:
    """Fault-injection hook for the test suite: while the file ``<cache>/fault-injection/crash_after_first_epoch``
    exists, the first attempt of every trial dies right after its first checkpoint (once per trial)."""
    from workers.data.synthetic import default_cache_root

    flag = default_cache_root() / "fault-injection" / "crash_after_first_epoch"
    if not flag.exists():
        return False
    marker = flag.parent / f"crashed-{trial_id}"
    if marker.exists():
        return False
    marker.touch()
    return True


def trial_trainable(config: dict) -> None:
    from ray import tune

    trial = config["trial"]
    context = tune.get_context()
    attempt_info = {"node_id": None}
    try:
        import ray

        attempt_info["node_id"] = ray.get_runtime_context().get_node_id()
    except Exception:
        pass

    if trial["architecture"] == SLEEP_ARCHITECTURE:
        time.sleep(float(trial["model"].get("params", {}).get("seconds", 1.0)))
        tune.report({"done": True, "record": json.dumps({"trial_id": trial["trial_id"], "status": "completed"})})
        return

    _limit_threads(trial.get("resources", {}).get("CPU", 1))
    from workers.config import TrialConfig
    from workers.train import run_trial

    tc = TrialConfig.from_dict(trial)
    t = time.perf_counter()
    data = load_prepared(config["store"], config["cache_key"])
    data_load_s = time.perf_counter() - t

    checkpoint = tune.get_checkpoint()
    resume_dir = checkpoint.to_directory() if checkpoint else None
    def on_epoch(row: dict, save) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            save(tmp)
            tune.report({k: v for k, v in row.items() if isinstance(v, (int, float))}, checkpoint=tune.Checkpoint.from_directory(tmp))
        if row["epoch"] == 1 and _crash_injected(tc.trial_id):
            os._exit(1)  # a worker process killed in the middle of a trial

    weights_path = _resolve_weights(tc, config["store"])
    record = run_trial(
        tc, data=data, on_epoch=on_epoch, resume_dir=resume_dir, weights_path=weights_path,
        data_timings={"data_load_s": data_load_s, "prepare_s": 0.0, "augment_s": float(data.meta.get("augment_s", 0.0))},
    )
    record["node_id"] = attempt_info["node_id"]
    record["resumed_from_checkpoint"] = resume_dir is not None
    record["tune_trial_id"] = context.get_trial_id()
    tune.report({"done": True, "record": json.dumps(record, default=str)})


def _resolve_weights(tc, store_settings: dict) -> str | None:
    """ImageNet weights from a local file or an s3:// URI (downloaded once to the local cache)."""
    path = tc.model.get("weights_path") if tc.model.get("weights") == "imagenet" else None
    if not path:
        return None
    if not path.startswith("s3://"):
        return path
    from workers.data.synthetic import default_cache_root

    bucket_uri, _, name = path.rpartition("/")
    store = open_store(bucket_uri, endpoint_url=store_settings.get("endpoint_url"))
    return str(_fetch_once(store, name, default_cache_root() / "weights" / name))
