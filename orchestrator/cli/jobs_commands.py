"""``list``, ``status``, ``logs``, ``cancel`` and ``dashboard``: the Ray Jobs queue of a cluster
(``orchestrator.cluster.jobs``)."""
from __future__ import annotations

import sys
import time
from datetime import datetime

from orchestrator.cli.arguments import number, text
from orchestrator.cli.output import json_arg, out, print_json
from orchestrator.cluster import jobs
from orchestrator.run_store import run_state


def _fmt_time(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def _duration(start_ms: int | None, end_ms: int | None) -> str:
    if not start_ms:
        return "-"
    seconds = int(((end_ms or time.time() * 1000) - start_ms) / 1000)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _shown_status(job) -> str:
    """A job's status; a running study that waits for its trials' resources says so (from its run.json)."""
    status = jobs.status_name(job.status)
    if status == "RUNNING":
        said = run_state(jobs.run_info_of(job.metadata))
        if said and said.startswith("waiting"):
            return f"RUNNING ({said})"
    return status


def _iso(ms: int | None) -> str | None:
    from datetime import timezone

    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="seconds") if ms else None


def _job_dict(address: str, job) -> dict:
    meta = job.metadata or {}
    return {"job_id": job.submission_id or job.job_id, "status": jobs.status_name(job.status),
            "shown_status": _shown_status(job), "experiment": meta.get("experiment"), "run_id": meta.get("run_id"),
            "store": meta.get("store"), "git_commit": meta.get("git_commit"), "started": _iso(job.start_time),
            "ended": _iso(job.end_time), "entrypoint": job.entrypoint, "message": job.message}


def cmd_list(args) -> int:
    from rich.table import Table

    if args.json:
        print_json({"address": args.address, "jobs": [_job_dict(args.address, j) for j in jobs.list_jobs(args.address)]})
        return 0
    table = Table(title=f"Jobs on {args.address}")
    for col in ("job id", "status", "experiment", "run id", "started", "duration", "entrypoint"):
        table.add_column(col, overflow="fold")
    for job in jobs.list_jobs(args.address):
        meta = job.metadata or {}
        table.add_row(job.submission_id or job.job_id or "?", _shown_status(job), meta.get("experiment", "-"),
                      meta.get("run_id", "-"), _fmt_time(job.start_time),
                      _duration(job.start_time, job.end_time), job.entrypoint)
    out.print(table)
    return 0


def cmd_status(args) -> int:
    info = jobs.job_info(args.address, args.job_id, wait=args.wait, timeout=args.timeout)
    status, meta = jobs.status_name(info.status), info.metadata or {}
    run_info = jobs.run_info_of(meta)  # one read of run.json in the store; no log
    # a driver that died before its run ended left a queue state that no longer holds
    said = run_state(run_info) if status == "RUNNING" or (run_info or {}).get("finished") else None
    message = (info.message or "").strip().splitlines()
    if args.json:
        print_json({**_job_dict(args.address, info), "run_state": said,
                    "driver_node_id": getattr(info, "driver_node_id", None),
                    "error_type": getattr(info, "error_type", None),
                    "log_tail": jobs.log_tail(jobs.job_logs(args.address, args.job_id)) if status == "FAILED" else []})
        return 1 if status in ("FAILED", "STOPPED") else 0
    out.print(f"job:        {args.job_id}")
    out.print(f"status:     {status}" + (f" ({message[0]})" if message and status != "RUNNING" else ""))
    out.print(f"experiment: {meta.get('experiment', '-')}")
    out.print(f"run:        {meta.get('run_id', '-')}" + (f" ({said})" if said else ""), soft_wrap=True)
    out.print(f"store:      {meta.get('store', '-')}")
    out.print(f"git commit: {meta.get('git_commit', '-')}")
    out.print(f"started:    {_fmt_time(info.start_time)}   ended: {_fmt_time(info.end_time)}   "
              f"duration: {_duration(info.start_time, info.end_time)}")
    out.print(f"entrypoint: {info.entrypoint}", soft_wrap=True)
    if getattr(info, "driver_node_id", None):
        out.print(f"driver on:  node {info.driver_node_id}")
    if status == "FAILED":
        if getattr(info, "error_type", None):
            out.print(f"error:      {info.error_type}")
        out.print("log tail:", soft_wrap=True)
        for line in jobs.log_tail(jobs.job_logs(args.address, args.job_id)):
            out.print(f"  {line}", soft_wrap=True, markup=False, highlight=False)
    out.print(f"logs:       orchestrator logs {args.job_id} --address {args.address}")
    return 1 if status in ("FAILED", "STOPPED") else 0


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def cmd_logs(args) -> int:
    if not args.follow:
        _write(jobs.job_logs(args.address, args.job_id))
        return 0
    status = jobs.follow_logs(args.address, args.job_id, _write)
    print(f"\n[job {args.job_id} {status}]", file=sys.stderr)
    return 0 if status == "SUCCEEDED" else 1


def cmd_cancel(args) -> int:
    status, stopped = jobs.cancel_job(args.address, args.job_id)
    if not stopped:
        out.print(f"Job {args.job_id} already ended ({status}); nothing to cancel.")
        return 0
    meta = jobs.job_info(args.address, args.job_id).metadata or {}
    run, store = meta.get("run_id"), meta.get("store", "STORE")
    resume = (f"orchestrator resume {run or 'RUN_ID'} --store {store} --address {args.address}"
              + ("" if run else " (the run id is in 'orchestrator logs')"))
    out.print(f"Cancel requested for job {args.job_id} (was {status}). Finished trials stay in the store; to "
              f"continue the run on the cluster: {resume}", soft_wrap=True)
    return 0


def cmd_dashboard(args) -> int:
    url = jobs.dashboard_url(args.address)
    out.print(url)
    if args.open:
        import webbrowser

        if not webbrowser.open(url):
            print(f"could not open a browser; open {url} yourself", file=sys.stderr)
    return 0


def add_commands(sub) -> None:
    """Add list, status, logs, cancel and dashboard to the ``orchestrator`` command line."""

    def address_arg(p) -> None:
        p.add_argument("--address", type=text, default=jobs.default_address(),
                       help="Ray dashboard / Jobs API (default: $RAY_ADDRESS or http://127.0.0.1:8265; for a "
                            "`ray up` cluster run 'ray dashboard ray-cluster.yaml' first)")

    ls = sub.add_parser("list", help="list the jobs (submitted studies) on a cluster, queued, running and ended")
    address_arg(ls)
    json_arg(ls)
    ls.set_defaults(func=cmd_list)

    st = sub.add_parser("status", help="state of one submitted job")
    st.add_argument("job_id", type=text, help="submission id, as 'submit' and 'list' print it")
    st.add_argument("--wait", action="store_true", help="block until the job ends (exit 0 succeeded, 1 otherwise)")
    st.add_argument("--timeout", type=number(0, 30 * 86400, low_open=True), default=None, help="with --wait: give up after this many seconds")
    json_arg(st)
    address_arg(st)
    st.set_defaults(func=cmd_status)

    lg = sub.add_parser("logs", help="driver output of a submitted job")
    lg.add_argument("job_id", type=text, help="submission id, as 'submit' and 'list' print it")
    lg.add_argument("--follow", "-f", action="store_true", help="stream until the job ends")
    address_arg(lg)
    lg.set_defaults(func=cmd_logs)

    cn = sub.add_parser("cancel", help="stop a queued or running job (finished trials are kept)")
    cn.add_argument("job_id", type=text, help="submission id, as 'submit' and 'list' print it")
    address_arg(cn)
    cn.set_defaults(func=cmd_cancel)

    db = sub.add_parser("dashboard", help="print the Ray dashboard URL of a cluster")
    db.add_argument("--open", action="store_true", help="also open it in a browser")
    address_arg(db)
    db.set_defaults(func=cmd_dashboard)
