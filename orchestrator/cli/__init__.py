"""Thin command-line layer: ``orchestrator submit | resume | report | runs | ...``.

Exit codes: 0 success, 1 some trials failed or the store could not be written, 2 bad input (nothing started).
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep TensorFlow's C++ start-up chatter out of the terminal

from rich.console import Console
from rich.table import Table

console = Console(stderr=True, highlight=False)
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
HUGE_GRID = 500


class UserError(Exception):
    """Bad input: print one line, exit 2."""


def _fail(message: str, code: int = 2) -> int:
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    return code


def _load(path: str):
    from orchestrator.spec.schema import SpecError, load_spec

    try:
        return load_spec(path)
    except SpecError as err:
        raise UserError(str(err)) from None


def _override_storage(spec, store: str | None):
    if not store:
        return spec
    return spec.model_copy(update={"storage": spec.storage.model_copy(update={"uri": store})})


def _print_trials(trials, title: str) -> None:
    from orchestrator.execution.study_runner import trial_bundle

    table = Table(title=title)
    for col in ("#", "trial id", "arch", "epochs", "node", "aug", "framework", "repeat", "resources"):
        table.add_column(col)
    for i, t in enumerate(trials, 1):
        table.add_row(str(i), t.trial_id, t.architecture, str(t.epochs), t.node_type, t.augmentation, t.framework,
                      str(t.repeat), ", ".join(f"{k}={v:g}" for k, v in trial_bundle(t.resources).items()))
    out.print(table)


def _check_resources(spec) -> None:
    """Missing files a submission needs are reported before anything starts."""
    from pathlib import Path

    if spec.dataset.path and not spec.dataset.path.startswith("s3://") and not Path(spec.dataset.path).exists():
        raise UserError(f"dataset.path: '{spec.dataset.path}' does not exist")
    for arch, m in spec.models.items():
        if m.weights_path and not m.weights_path.startswith("s3://") and not Path(m.weights_path).is_file():
            raise UserError(f"models.{arch}.weights_path: file '{m.weights_path}' does not exist")


def cmd_submit(args) -> int:
    from orchestrator.spec.grid import expand_grid

    spec = _override_storage(_load(args.file), args.store)
    trials = expand_grid(spec)
    if args.dry_run:
        _print_trials(trials, f"{spec.name}: {len(trials)} trials (dry run, nothing started)")
        return 0
    if len(trials) > HUGE_GRID and not args.yes:
        if not sys.stdin.isatty():
            raise UserError(f"the grid has {len(trials)} trials (over {HUGE_GRID}); pass --yes to run it")
        if input(f"The grid has {len(trials)} trials. Run them all? [y/N] ").strip().lower() not in ("y", "yes"):
            return _fail("cancelled", 1)
    _check_resources(spec)
    if args.address and args.address.startswith(("http://", "https://")) and not args.local_driver:
        from orchestrator.cluster import jobs

        job_id = jobs.submit_job(args.file, address=args.address, store=args.store, strict=args.strict,
                                 run_id=args.run_id, notify=lambda m: console.print(m))
        out.print(f"Submitted job {job_id} to {args.address}. Follow it with: orchestrator logs {job_id} --follow "
                  f"--address {args.address}")
        return 0
    if args.address and args.address.startswith("ray://"):
        raise UserError("--address ray://... needs --local-driver (or give the dashboard address http://HEAD:8265 "
                        "to submit a Ray Job)")
    return _run_and_report(spec, run_id=args.run_id, address=args.address, strict=args.strict,
                           cluster_config=_cluster_config(args))


def _cluster_config(args):
    from orchestrator.spec.node_types import load_cluster_config

    path = getattr(args, "cluster_config", None)
    if not path:
        return None
    try:
        return load_cluster_config(path)
    except ValueError as err:
        raise UserError(str(err)) from None


def _run_and_report(spec, *, run_id=None, address=None, strict=False, cluster_config=None) -> int:
    from orchestrator.report import write_report
    from orchestrator.execution.study_runner import StudyError, execute_study

    try:
        outcome = execute_study(spec, run_id=run_id, address=address, strict=strict,
                                notify=lambda m: console.print(m, soft_wrap=True), cluster_config=cluster_config)
    except StudyError as err:
        return _fail(str(err))
    url = write_report(outcome.store, outcome.paths)  # a remote store that fails falls back to local disk
    if getattr(outcome.store, "degraded", False):
        local = outcome.store.fallback
        return _fail(f"the store {outcome.store.uri} became unreachable ({outcome.store.error}); results and report "
                     f"are kept locally under {local.uri}/{outcome.paths.root} (report: {url}); publish them with "
                     f"'orchestrator report {outcome.paths.run_id} --store {local.uri} --upload {outcome.store.uri}'", 1)
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(outcome.counts.items()))
    out.print(f"Run {outcome.paths.run_id} finished ({counts}).")
    out.print(f"Report: {url}")
    return 1 if outcome.counts.get("failed") else 0


def _find_run(store, run: str):
    from orchestrator.records import RunPaths, list_runs

    if "/" in run:
        exp, rid = run.split("/", 1)
        return RunPaths(exp, rid)
    matches = [RunPaths(e, r) for e, r in list_runs(store) if r == run]
    if not matches:
        raise UserError(f"run '{run}' not found in store {store.uri} (see 'orchestrator runs --store {store.uri}')")
    return matches[0]


def _open_store(uri: str, endpoint_url: str | None = None):
    from workers.storage import open_store

    try:
        return open_store(uri, endpoint_url=endpoint_url)
    except ValueError as err:
        raise UserError(str(err)) from None


def cmd_resume(args) -> int:
    from orchestrator.spec.schema import SpecError, parse_spec

    import yaml

    store = _open_store(args.store, args.endpoint_url)
    paths = _find_run(store, args.run)
    try:
        spec = parse_spec(yaml.safe_load(store.get_text(paths.spec)), store.url(paths.spec))
    except SpecError as err:
        raise UserError(str(err)) from None
    return _run_and_report(spec, run_id=paths.run_id, address=args.address, cluster_config=_cluster_config(args))


def cmd_report(args) -> int:
    from orchestrator.report import write_report
    from orchestrator.report.compare import write_comparison

    store = _open_store(args.store, args.endpoint_url)
    paths = _find_run(store, args.run)
    if args.upload:  # copy the run's files as they are; the report is rebuilt there, Tune state stays local
        target = _open_store(args.upload, args.endpoint_url)
        skip = (f"{paths.root}/report/", f"{paths.root}/tune/")
        for key in store.list(f"{paths.root}/"):
            if not key.startswith(skip):
                target.put_bytes(key, store.get_bytes(key))
        store = target
    if args.compare:
        other = _find_run(store, args.compare)
        url = write_comparison(store, paths, other)
    else:
        url = write_report(store, paths)
    out.print(f"Report: {url}")
    return 0


def cmd_runs(args) -> int:
    from orchestrator.records import list_runs

    store = _open_store(args.store, args.endpoint_url)
    table = Table(title=f"Runs in {store.uri}")
    for col in ("experiment", "run id"):
        table.add_column(col)
    for exp, rid in list_runs(store):
        table.add_row(exp, rid)
    out.print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="orchestrator", description="Hardware and architecture studies for skin-lesion "
                                "classification on a Ray cluster.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("submit", help="run an experiment file (embedded local Ray, or a cluster with --address)")
    s.add_argument("file")
    s.add_argument("--dry-run", action="store_true", help="validate, print the trial table and resource requests, run nothing")
    s.add_argument("--address", help="Ray cluster: http://HEAD:8265 submits a Ray Job; ray://... or auto joins as driver")
    s.add_argument("--local-driver", action="store_true", help="with --address: drive the study from this process")
    s.add_argument("--run-id", help="reuse a run id (continue a run)")
    s.add_argument("--store", help="override storage.uri (a directory or s3://bucket/prefix)")
    s.add_argument("--strict", action="store_true", help="fail if any trial cannot run on this cluster")
    s.add_argument("--yes", action="store_true", help=f"run grids of more than {HUGE_GRID} trials without asking")
    s.add_argument("--cluster-config", help="a `ray up` config: its node types count as feasible (autoscaling clusters)")
    s.set_defaults(func=cmd_submit)

    def store_args(parser):
        parser.add_argument("--store", default=os.environ.get("ORCHESTRATOR_STORE", "results"),
                            help="store holding the run (directory or s3://bucket/prefix; default: results)")
        parser.add_argument("--endpoint-url", default=None, help="S3 endpoint (MinIO, GCS interoperability, ...)")

    r = sub.add_parser("resume", help="continue an interrupted run; completed trials are kept")
    r.add_argument("run", help="run id or experiment/run_id")
    r.add_argument("--address")
    r.add_argument("--cluster-config", help="a `ray up` config: its node types count as feasible")
    store_args(r)
    r.set_defaults(func=cmd_resume)

    rep = sub.add_parser("report", help="rebuild a run's report from its stored trial records")
    rep.add_argument("run")
    rep.add_argument("--compare", help="a second run to put side by side")
    rep.add_argument("--upload", metavar="STORE_URI", help="publish the run's records and report to another store")
    store_args(rep)
    rep.set_defaults(func=cmd_report)

    ls = sub.add_parser("runs", help="list runs in a store")
    store_args(ls)
    ls.set_defaults(func=cmd_runs)

    try:
        from orchestrator.cluster import jobs

        jobs.add_commands(sub)
    except ImportError:
        pass
    from orchestrator.report import ensemble

    ensemble.add_commands(sub)
    try:
        from orchestrator.search import runner as tune_search

        tune_search.add_commands(sub)
    except ImportError:
        pass
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as err:
        return _fail(str(err))
    except KeyboardInterrupt:
        return _fail("interrupted; finished trials are stored; continue with 'orchestrator resume RUN'", 130)


if __name__ == "__main__":
    sys.exit(main())
