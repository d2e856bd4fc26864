"""``submit``, ``resume``, ``report``, ``runs``, ``predict`` and ``ensemble``: thin wrappers over ``orchestrator.Study``
and ``orchestrator.runs``."""
from __future__ import annotations

import sys

from orchestrator.cli.arguments import number, text
from orchestrator.cli.output import error_line, json_arg, out, print_json, say
from orchestrator.errors import BadInput
from workers.settings import default_store


def _print_plan(plan, title: str) -> None:
    from rich.table import Table

    table = Table(title=title)
    for col in ("#", "trial id", "arch", "epochs", "node", "aug", "framework", "repeat", "resources"):
        table.add_column(col)
    for i, p in enumerate(plan.trials, 1):
        t = p.trial
        table.add_row(str(i), t.trial_id, t.architecture, str(t.epochs), t.node_type, t.augmentation, t.framework,
                      str(t.repeat), ", ".join(f"{k}={v:g}" for k, v in p.bundle.items()))
    out.print(table)


def _print_stacks(spec) -> None:
    from orchestrator.spec.stack import stack_lines

    out.print("Stack per node type (backend, precision, XLA, devices x per-device batch, steps per execution):",
              markup=False)
    for line in stack_lines(spec):
        out.print(f"  {line}", soft_wrap=True, markup=False)
    types = spec.resolved_node_types()
    out.print("Prices: " + "; ".join(
        f"{n} " + (f"${types[n].price_per_hour:g}/h ({types[n].price_source})" if types[n].price_per_hour is not None
                   else "unknown") for n in dict.fromkeys(spec.grid.node_types)), soft_wrap=True, markup=False)


def _confirm_huge(n: int, yes: bool) -> bool:
    from orchestrator.study import HUGE_GRID

    if n <= HUGE_GRID or yes:
        return True
    if not sys.stdin.isatty():
        raise BadInput(f"the grid has {n} trials (over {HUGE_GRID}); pass --yes to run it")
    return input(f"The grid has {n} trials. Run them all? [y/N] ").strip().lower() in ("y", "yes")


def _run_notifier():
    """Progress lines on stderr; stage progress (data preparation) as one bar per stage in a terminal."""
    from orchestrator.execution.console import RunNotifier

    return RunNotifier(say)


def _finish(result, store: str) -> int:
    if result.store_problem:
        error_line(result.store_problem)
        return 1
    if result.unfinished:
        out.print(f"Report of the finished trials: {result.report_url}")
        error_line(f"interrupted: {len(result.unfinished)} trial(s) did not finish and are not recorded; finished "
                   f"trials are stored; continue with 'orchestrator resume {result.run_id} --store {store}'")
        return 130
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(result.counts.items()))
    out.print(f"Run {result.run_id} finished ({counts}).")
    out.print(f"Report: {result.report_url}")
    return 1 if result.num_failed else 0


def _say_skipped(unreadable: list[str], paths) -> None:
    """Name the records of a run that a report or ensemble leaves out because they cannot be read."""
    if unreadable:
        say(f"skipped {len(unreadable)} unreadable record(s) of run {paths.run_id}: {'; '.join(unreadable[:5])}"
            + (" ..." if len(unreadable) > 5 else ""))


def cmd_submit(args) -> int:
    from orchestrator.execution.plan import format_plan
    from orchestrator.study import Study, with_budget, with_calibration

    remote = bool(args.address and args.address.startswith(("http://", "https://")) and not args.local_driver)
    if args.address and args.address.startswith("ray://") and not args.local_driver:
        raise BadInput("--address ray://... needs --local-driver (or give the dashboard address http://HEAD:8265 "
                       "to submit a Ray Job)")
    study = Study.from_file(args.file, store=args.store, run_id=args.run_id, address=args.address,
                            cluster_config=args.cluster_config)
    study.spec = with_calibration(with_budget(study.spec, args.max_cost), args.calibrate)
    if study.spec.plan.calibrate and not args.dry_run and not remote:
        study.calibrate(notify=say)  # the plan below then estimates from these measurements
    plan = study.plan()
    if args.dry_run and args.json:
        print_json(plan.to_dict())
    elif args.dry_run:
        _print_plan(plan, f"{study.spec.name}: {len(plan)} trials (dry run, nothing started)")
        _print_stacks(study.spec)
        out.print(format_plan(plan.estimate), soft_wrap=True, markup=False)
    elif study.spec.plan.calibrate and not remote:
        out.print(format_plan(plan.estimate), soft_wrap=True, markup=False)
    plan.check_budget(study.spec.execution.budget_usd, "--max-cost" if args.max_cost is not None else
                      "execution.budget_usd")
    if args.dry_run:
        return 0
    if not _confirm_huge(len(plan), args.yes):
        error_line("cancelled")
        return 1
    if remote:
        job_id = study.submit(args.address, strict=args.strict, store=args.store, notify=say)
        out.print(f"Submitted job {job_id} to {args.address} (run {study.run_id}). Follow it with: orchestrator "
                  f"logs {job_id} --follow --address {args.address}")
        return 0
    return _finish(study.run(strict=args.strict, notify=_run_notifier()), study.spec.storage.uri)


def cmd_resume(args) -> int:
    from orchestrator.study import Study

    if args.address and args.address.startswith(("http://", "https://")):
        job_id = Study.submit_resume(args.run, args.address, store=args.store, endpoint_url=args.endpoint_url,
                                     notify=say)
        out.print(f"Submitted job {job_id} to {args.address}: it resumes run {args.run} in the same store. Follow it "
                  f"with: orchestrator logs {job_id} --follow --address {args.address}")
        return 0
    study = Study.resume(args.run, store=args.store, endpoint_url=args.endpoint_url, address=args.address,
                         cluster_config=args.cluster_config)
    return _finish(study.run(notify=_run_notifier()), args.store)


def cmd_report(args) -> int:
    from orchestrator.runs import (check_stored_run, find_run, open_existing_store, open_runs_store, publish_run,
                                   rebuild_report)

    store = open_runs_store(args.store, args.endpoint_url)
    paths = find_run(store, args.run)
    _say_skipped(check_stored_run(store, paths), paths)
    if args.compare:
        check_stored_run(store, find_run(store, args.compare))
    mlflow = None
    if args.to_mlflow:  # checked before anything is written
        from orchestrator.tracking import mlflow_client, publish_to_mlflow

        mlflow = mlflow_client(args.to_mlflow, "--to-mlflow")
    if args.upload:
        target = open_existing_store(args.upload, args.endpoint_url)
        publish_run(store, paths, target)
        store = target
    url = rebuild_report(store, paths, args.compare)
    mlflow_run = publish_to_mlflow(store, paths, mlflow) if mlflow is not None else None
    if args.json:
        import json

        summary = paths.report("summary.json")
        print_json({"report": url, "mlflow_run": mlflow_run,
                    "summary": json.loads(store.get_text(summary)) if not args.compare and store.exists(summary)
                    else None})
        return 0
    out.print(f"Report: {url}")
    if mlflow_run is not None:
        out.print(f"Published to MLflow at {args.to_mlflow}: run {mlflow_run}")
    return 0


def _short_time(iso: str | None) -> str:
    return iso[:16].replace("T", " ") if iso else "-"


def cmd_runs(args) -> int:
    from rich.table import Table

    from orchestrator.runs import open_runs_store, run_summaries

    store = open_runs_store(args.store, args.endpoint_url)
    runs = run_summaries(store)
    if args.json:
        print_json({"store": store.uri, "runs": runs})
        return 0
    table = Table(title=f"Runs in {store.uri}")
    for col in ("experiment", "run id", "status", "started", "trials", "best validation", "cost USD"):
        table.add_column(col, overflow="fold")
    for r in runs:
        if r["status"] == "unreadable":
            table.add_row(r["experiment"], r["run_id"], "unreadable", "-", r["problem"], "-", "-")
            continue
        counts = ", ".join(f"{v} {k}" for k, v in sorted(r["counts"].items())) or "-"
        best = r["best_validation"]
        table.add_row(r["experiment"], r["run_id"], r["status"], _short_time(r["started"]),
                      f"{r['n_trials']} ({counts})",
                      f"{best['value']:.4f} {best['metric']} ({best['trial_id']})" if best else "-",
                      f"{r['cost_usd']:.4f}" if r["cost_usd"] is not None else "-")
    out.print(table)
    return 0


def cmd_ensemble(args) -> int:
    from orchestrator.report.ensemble import build_ensemble
    from orchestrator.runs import check_stored_run, find_run, open_runs_store

    store = open_runs_store(args.store, args.endpoint_url)
    paths = find_run(store, args.run)
    unreadable = check_stored_run(store, paths)
    record = build_ensemble(store, paths, args.trials, args.top, args.by)
    _say_skipped(unreadable, paths)
    if record["left_out"]:
        say(f"left out {len(record['left_out'])} trial(s): {'; '.join(record['left_out'][:5])}")
    m = record["metrics"]
    out.print(f"{record['name']} ({len(record['members'])} trials): accuracy {m['accuracy']:.4f}, "
              f"macro F1 {m['f1_macro']:.4f}, balanced accuracy {m['balanced_accuracy']:.4f} on the test split; "
              f"members selected on {record['selected_on']}")
    key = f"{paths.root}/ensembles/{record['name']}/record.json"
    out.print(f"Stored under {store.url(key)}")
    return 0


def cmd_predict(args) -> int:
    from pathlib import Path

    from orchestrator.models import predict_folder
    from orchestrator.runs import find_run, open_runs_store

    store = open_runs_store(args.store, args.endpoint_url)
    paths = find_run(store, args.run)
    table, summary = predict_folder(store, paths, args.folder, args.trial)
    if args.out:
        Path(args.out).write_text(table)
        say(f"{summary['n_images']} image(s) predicted by trial {summary['trial_id']} ({summary['architecture']}); "
            f"written to {args.out}")
    else:
        sys.stdout.write(table)
    for name in summary["unreadable"]:
        say(f"warning: {name} is not a readable image; skipped")
    return 0


def store_args(parser) -> None:
    parser.add_argument("--store", type=text, default=default_store(),
                        help="store holding the run (directory or s3://bucket/prefix; default: $ORCHESTRATOR_STORE or results)")
    parser.add_argument("--endpoint-url", type=text, default=None, help="S3 endpoint (MinIO, GCS interoperability, ...)")


def add_commands(sub) -> None:
    s = sub.add_parser("submit", help="run an experiment file (embedded local Ray, or a cluster with --address)")
    s.add_argument("file", type=text, help="experiment file (YAML), e.g. experiments/quickstart.yaml")
    s.add_argument("--dry-run", action="store_true", help="validate, print the trial table, resource requests and the "
                   "estimated time and cost, run nothing")
    s.add_argument("--json", action="store_true", help="with --dry-run: print the plan (trials, resources, estimate) "
                   "as JSON on stdout")
    s.add_argument("--address", type=text, help="Ray cluster: http://HEAD:8265 submits a Ray Job; ray://... or auto joins as driver")
    s.add_argument("--local-driver", action="store_true", help="with --address: drive the study from this process")
    s.add_argument("--run-id", type=text, help="reuse a run id (continue a run)")
    s.add_argument("--store", type=text, help="override storage.uri (a directory or s3://bucket/prefix)")
    s.add_argument("--strict", action="store_true", help="fail if any trial cannot run on this cluster")
    s.add_argument("--yes", action="store_true", help="run grids of more than 500 trials without asking")
    s.add_argument("--cluster-config", type=text, help="a `ray up` config: its node types count as feasible (autoscaling clusters)")
    s.add_argument("--calibrate", action="store_true", help="first run a short calibration trial per distinct "
                   "(architecture, node type, stack) on the cluster (cached in the store) and plan from it "
                   "(also: plan.calibrate in the file); with --dry-run only cached calibrations are used")
    s.add_argument("--max-cost", type=number(0, low_open=True), metavar="USD", help="refuse the study if its estimated cost exceeds this "
                   "(overrides execution.budget_usd)")
    s.set_defaults(func=cmd_submit)

    r = sub.add_parser("resume", help="continue an interrupted run; completed trials are kept")
    r.add_argument("run", type=text, help="run id or experiment/run_id")
    r.add_argument("--address", type=text, help="Ray cluster: http://HEAD:8265 submits a Ray Job that resumes the run there "
                   "(same store); ray://... or auto drives it from this process")
    r.add_argument("--cluster-config", type=text, help="a `ray up` config: its node types count as feasible")
    store_args(r)
    r.set_defaults(func=cmd_resume)

    rep = sub.add_parser("report", help="rebuild a run's report from its stored trial records")
    rep.add_argument("run", type=text, help="run id or experiment/run_id (see: orchestrator runs)")
    rep.add_argument("--compare", type=text, help="a second run to put side by side")
    rep.add_argument("--upload", metavar="STORE_URI", type=text, help="publish the run's records and report to another store")
    rep.add_argument("--to-mlflow", metavar="URI", type=text, help="publish the finished run to an MLflow tracking server "
                     "(a parent run with the report, one child run per trial)")
    json_arg(rep)
    store_args(rep)
    rep.set_defaults(func=cmd_report)

    ls = sub.add_parser("runs", help="list runs in a store: status, start, trial counts, best validation score, cost")
    json_arg(ls)
    store_args(ls)
    ls.set_defaults(func=cmd_runs)

    p = sub.add_parser("predict", help="predict the classes of a folder of images with a model the run kept "
                       "(storage.keep_models); CSV: image, predicted_class, p_<class>...")
    p.add_argument("run", type=text, help="run id or experiment/run_id")
    p.add_argument("folder", type=text, help="folder of images (searched recursively; decoded and resized as in training)")
    p.add_argument("--trial", type=text, help="trial id of a kept model (default: the best trial by validation)")
    p.add_argument("--out", metavar="CSV", type=text, help="write the predictions here instead of stdout")
    store_args(p)
    p.set_defaults(func=cmd_predict)

    e = sub.add_parser("ensemble", help="average the test probabilities of finished trials and score the ensemble")
    e.add_argument("run", type=text, help="run id or experiment/run_id")
    e.add_argument("--trials", nargs="+", type=text, help="trial ids to combine (default: all completed, or --top)")
    e.add_argument("--top", type=number(2, 10_000, whole=True),
                   help="combine the K completed trials best on the validation split")
    e.add_argument("--by", type=text, default="f1_macro",
                   help="validation metric that ranks trials for --top (default f1_macro)")
    store_args(e)
    e.set_defaults(func=cmd_ensemble)
