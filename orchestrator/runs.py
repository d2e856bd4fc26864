"""Runs already in a store: open the store, find a run, list runs, rebuild or publish a run's report."""
from __future__ import annotations

from orchestrator.errors import BadInput, CorruptRun, RunNotFound
from orchestrator.run_store import RunPaths, list_runs, scan_trial_records
from workers.storage import Store, open_store


def open_existing_store(uri: str, endpoint_url: str | None = None) -> Store:
    """A store given on the command line or to the API; a one-line ``BadInput`` for a bad URI or an endpoint URL
    that is not http(s) or holds credentials."""
    from workers.storage import check_endpoint_url

    try:
        if endpoint_url is not None:
            check_endpoint_url(endpoint_url, "--endpoint-url")
        return open_store(uri, endpoint_url=endpoint_url)
    except ValueError as err:
        raise BadInput(str(err)) from None


def check_run_name(run: str, what: str = "run") -> str:
    """``run`` if it is a run id (or ``experiment/run_id``) made of safe names; ``BadInput`` otherwise."""
    from orchestrator.spec.schema import SAFE_NAME

    parts = run.split("/")
    if len(parts) > 2 or not all(SAFE_NAME.fullmatch(p) for p in parts):
        raise BadInput(f"{what}: '{run}' is not a run id (letters, digits, '_', '-', '.'; optionally experiment/run_id)")
    return run


def open_runs_store(uri: str, endpoint_url: str | None = None) -> Store:
    """A store that must already exist (the commands that read runs); ``BadInput`` if a local one does not."""
    store = open_existing_store(uri, endpoint_url)
    root = getattr(store, "root", None)
    if root is not None and not root.is_dir():
        raise BadInput(f"--store: '{uri}' does not exist (no runs there; see --store or $ORCHESTRATOR_STORE)")
    return store


def find_run(store: Store, run: str) -> RunPaths:
    """The run named ``run_id`` or ``experiment/run_id`` in ``store``."""
    check_run_name(run)
    if "/" in run:
        experiment, run_id = run.split("/", 1)
        paths = RunPaths(experiment, run_id)
        if store.exists(paths.run_info):
            return paths
        raise RunNotFound(f"run '{run}' not found in store {store.uri} (see 'orchestrator runs --store {store.uri}')")
    matches = [RunPaths(e, r) for e, r in list_runs(store) if r == run]
    if not matches:
        raise RunNotFound(f"run '{run}' not found in store {store.uri} (see 'orchestrator runs --store {store.uri}')")
    if len(matches) > 1:
        raise BadInput(f"run '{run}' is a run of {len(matches)} experiments in store {store.uri} "
                       f"({', '.join(m.experiment for m in matches)}); name it as experiment/run_id, e.g. "
                       f"{matches[0].experiment}/{run}")
    return matches[0]


def read_run_info(store: Store, paths: RunPaths) -> dict:
    """A run's ``run.json`` as a mapping; ``CorruptRun`` naming the file and the run when it is not one."""
    import json

    key = paths.run_info
    try:
        info = json.loads(store.get_text(key))
    except (ValueError, KeyError, FileNotFoundError):
        info = None
    if not isinstance(info, dict):
        raise CorruptRun(f"{store.url(key)}: run {paths.run_id}'s run.json is not a JSON object (damaged or "
                         "edited); restore it from a copy, nothing was started or written")
    return info


def read_run_spec(store: Store, paths: RunPaths):
    """The ``ExperimentSpec`` a run was started with (``spec.yaml``); ``CorruptRun`` when missing or invalid."""
    from orchestrator.errors import SpecError
    from orchestrator.spec.schema import parse_spec, parse_yaml

    source = store.url(paths.spec)
    if not store.exists(paths.spec):
        raise CorruptRun(f"{source}: run {paths.run_id} has no spec.yaml (deleted?); it cannot be resumed, "
                         "nothing was started or written")
    try:
        return parse_spec(parse_yaml(store.get_bytes(paths.spec), source), source)
    except SpecError as err:
        raise CorruptRun(f"run {paths.run_id}'s spec.yaml is not a valid experiment file: {err}") from None


def check_stored_run(store: Store, paths: RunPaths, *, records: bool = False) -> list[str]:
    """What reading a stored run needs, checked before anything starts: ``run.json`` a JSON object and, with
    ``records`` (resume), every ``record.json`` readable (``CorruptRun`` otherwise). Returns the unreadable
    records (report and ensemble skip them and say so)."""
    read_run_info(store, paths)
    _, unreadable = scan_trial_records(store, paths)
    if records and unreadable:
        raise CorruptRun(f"{store.url(unreadable[0].split(' (')[0])}: run {paths.run_id} has "
                         f"{len(unreadable)} unreadable record(s) ({unreadable[0].rsplit(' (', 1)[-1]}; move them "
                         "away to run those trials again); nothing was started or written")
    return unreadable


def run_status(run_info: dict) -> str:
    """``finished``, ``interrupted`` or ``not finished`` (still running, or its driver stopped) from run.json."""
    if run_info.get("interrupted"):
        return "interrupted"
    return "finished" if run_info.get("finished") else "not finished"


def run_summary(store: Store, paths: RunPaths) -> dict:
    """One run at a glance (``orchestrator runs``): status, start and end, trial counts, the best validation
    score (``report.target.metric`` at a trial's last epoch) with its trial, and the cost of the trials that ran
    (price_per_hour x trial wall time, as the report counts it)."""
    from orchestrator.models import validation_score
    from orchestrator.run_store import read_trial_records, status_counts

    info = read_run_info(store, paths)
    records = read_trial_records(store, paths)
    metric = (info.get("target") or {}).get("metric", "val_balanced_accuracy")
    mode = (info.get("target") or {}).get("mode", "min" if metric.endswith("loss") else "max")
    scored = [(validation_score(r, metric), r.trial_id) for r in records]
    scored = [s for s in scored if s[0] is not None]
    best = (max if mode == "max" else min)(scored) if scored else None
    costs = [r.config.get("price_per_hour") * r.timings.total_s / 3600 for r in records
             if r.config.get("price_per_hour") is not None and r.timings and r.timings.total_s is not None]
    return {"experiment": paths.experiment, "run_id": paths.run_id, "kind": info.get("kind", "study"),
            "status": run_status(info), "started": info.get("started"), "finished": info.get("finished"),
            "n_trials": info.get("n_trials", len(records)), "counts": status_counts(records),
            "best_validation": {"metric": metric, "value": best[0], "trial_id": best[1]} if best else None,
            "cost_usd": sum(costs) if costs else None}


def run_summaries(store: Store) -> list[dict]:
    """``run_summary`` of every run in ``store``, oldest first; a run whose run.json cannot be read is listed with
    status ``unreadable`` (and the reason under ``problem``) instead of hiding the others."""
    rows = []
    for experiment, run_id in list_runs(store):
        try:
            rows.append(run_summary(store, RunPaths(experiment, run_id)))
        except CorruptRun as err:
            rows.append({"experiment": experiment, "run_id": run_id, "status": "unreadable", "problem": str(err)})
    return rows


def publish_run(store: Store, paths: RunPaths, target: Store) -> None:
    """Copy a run's files as they are to ``target`` (its report is rebuilt there; Tune state stays behind)."""
    skip = (f"{paths.root}/report/", f"{paths.root}/tune/")
    for key in store.list(f"{paths.root}/"):
        if not key.startswith(skip) and key != f"{paths.root}/driver.lock":
            target.put_bytes(key, store.get_bytes(key))


def rebuild_report(store: Store, paths: RunPaths, compare: str | None = None) -> str:
    """Write the run's report (or, with ``compare``, a side-by-side comparison with that run); returns its URL."""
    from orchestrator.report import write_report
    from orchestrator.report.compare import write_comparison

    if compare:
        return write_comparison(store, paths, find_run(store, compare))
    return write_report(store, paths)
